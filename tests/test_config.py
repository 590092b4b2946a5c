"""``Nbws``: every option is validated, and a bad one says which and what it accepts."""

from __future__ import annotations

from typing import Any

import pytest
from traitlets import TraitError
from traitlets.config import Config

from nbws.broker import HistoryLimits, default_limits
from nbws.config import Count, Nbws, Seconds
from nbws.protocol.messages import Policy


def from_config(**options: Any) -> Nbws:
    cfg = Config()
    for key, value in options.items():
        cfg.Nbws[key] = value
    return Nbws(config=cfg)


def test_unknown_buffer_policy_names_the_allowed_ones() -> None:
    with pytest.raises(TraitError) as info:
        Nbws(buffer_policy="foo")
    message = str(info.value)
    assert message.startswith("invalid c.Nbws.buffer_policy 'foo': use ")
    for policy in Policy:
        assert repr(policy.value) in message
    assert "\n" not in message


def test_buffer_policy_values_are_the_protocol_policies() -> None:
    trait = Nbws.class_traits()["buffer_policy"]
    assert list(trait.values) == [p.value for p in Policy]
    for policy in Policy:
        assert Nbws(buffer_policy=policy.value).buffer_policy == policy.value


def test_backend_typo_in_config_is_refused() -> None:
    with pytest.raises(
        TraitError, match=r"^invalid c.Nbws.backend 'redsi': use 'memory' or 'redis'$"
    ):
        from_config(backend="redsi")


def test_backend_is_case_insensitive() -> None:
    assert Nbws(backend="Redis").backend == "redis"


@pytest.mark.parametrize(
    ("option", "value", "allowed"),
    [
        ("max_frame_size", 0, "an integer >= 1"),
        ("max_frame_size", -1, "an integer >= 1"),
        ("max_connections", 0, "an integer >= 1"),
        ("max_message_size", -1, "an integer >= 0 (0 = no limit)"),
        ("history_max_bytes", -5, "an integer >= 0 (0 = no limit)"),
        ("history_max_messages", 0, "an integer >= 1"),
        ("buffer_max_bytes", 0, "an integer >= 1"),
        ("dedupe_window", -1, "an integer >= 1"),
        ("heartbeat_timeout", 0.0, "a number of seconds > 0"),
        ("close_timeout", -1.0, "a number of seconds > 0"),
        ("idle_timeout", -1.0, "a number of seconds >= 0 (0 = off)"),
        ("history_max_age", float("nan"), "a number of seconds >= 0"),
        ("rate_limit", -2.0, "a number of messages per second >= 0 (0 = no limit)"),
        ("redis_command_timeout", 0, "a number of seconds > 0"),
        ("max_message_size", "lots", "an integer >= 0"),
        ("read_high_water", 1.5, "an integer >= 1"),
        ("frame_tap_size", True, "an integer >= 1"),
    ],
)
def test_out_of_range_values_name_the_option_and_the_range(
    option: str, value: object, allowed: str
) -> None:
    with pytest.raises(TraitError) as info:
        from_config(**{option: value})
    message = str(info.value)
    assert message.startswith(f"invalid c.Nbws.{option} ")
    assert f": use {allowed}" in message


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("max_message_size", 0),
        ("history_max_bytes", 0),
        ("history_max_age", 0.0),
        ("rate_limit", 0.0),
        ("heartbeat_interval", 0),
        ("idle_timeout", 0.0),
        ("rate_limit_burst", 0),
        ("write_low_water", 0),
        ("max_frame_size", 4.0),  # an integral float is an integer
    ],
)
def test_zero_where_the_help_gives_it_a_meaning(option: str, value: object) -> None:
    assert getattr(from_config(**{option: value}), option) == value


def test_every_numeric_option_is_validated() -> None:
    for name, trait in Nbws.class_traits(config=True).items():
        if isinstance(trait.default_value, bool) or not isinstance(
            trait.default_value, int | float
        ):
            continue
        assert isinstance(trait, Count | Seconds), f"{name} has no bounds"


def test_low_water_above_high_water_is_refused_in_either_order() -> None:
    with pytest.raises(TraitError, match="write_low_water 999999999: use a value <= write_high"):
        from_config(write_low_water=999_999_999)
    with pytest.raises(TraitError, match="write_high_water 100: use a value >= write_low_water"):
        from_config(write_high_water=100)
    both = from_config(write_high_water=100, write_low_water=50)
    assert (both.write_high_water, both.write_low_water) == (100, 50)


def test_command_line_strings_are_parsed_and_checked() -> None:
    trait = Nbws.class_traits()["max_message_size"]
    assert trait.from_string("1_024") == 1024
    with pytest.raises(TraitError, match=r"invalid c\.Nbws\.max_message_size 'lots'"):
        trait.from_string("lots")


def test_history_limits_come_from_the_config() -> None:
    defaults = Nbws()
    assert HistoryLimits() == HistoryLimits.from_config(defaults) == default_limits(defaults)
    custom = from_config(history_max_messages=5, history_max_bytes=0, history_max_age=2.5)
    assert HistoryLimits.from_config(custom) == HistoryLimits(5, 0, 2.5)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("notaurl", "'notaurl'"),
        ("http://:s3cret@cache:6379/0", "'http://:***@cache:6379/0'"),
        ("https://user:s3cret@cache/0", "'https://user:***@cache/0'"),
    ],
)
def test_redis_url_must_be_a_redis_url_and_its_password_is_not_shown(url: str, shown: str) -> None:
    with pytest.raises(TraitError) as info:
        from_config(redis_url=url)
    assert str(info.value) == (
        f"invalid c.Nbws.redis_url {shown}: use a redis://, rediss:// or unix:// URL"
    )
    assert "s3cret" not in str(info.value)


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:6379/0", "rediss://:pw@host:6380/1", "unix:///tmp/redis.sock"]
)
def test_redis_urls_are_accepted(url: str) -> None:
    assert from_config(redis_url=url).redis_url == url


def test_endpoint_names_are_the_routed_ones() -> None:
    from nbws.config import ENDPOINTS
    from nbws.server.context import WEBSOCKET_ROUTES

    assert sorted(ENDPOINTS) == sorted(WEBSOCKET_ROUTES.values())


@pytest.mark.parametrize(
    "compression",
    [
        {"echo": {"bogus": 1}},
        {"echo": {"server_max_window_bits": 20}},
        {"ehco": {}},
        {"echo": True},
    ],
)
def test_bad_compression_fails_at_start_not_on_every_connection(compression: object) -> None:
    with pytest.raises(TraitError) as info:
        from_config(compression=compression)
    message = str(info.value)
    assert message.startswith("invalid c.Nbws.compression ")
    assert "with endpoints 'echo', 'streams' or 'tap'" in message


def test_compression_settings_are_accepted() -> None:
    settings = {
        "server_max_window_bits": 12,
        "client_max_window_bits": 12,
        "server_no_context_takeover": False,
        "client_no_context_takeover": False,
    }
    config = from_config(compression={"echo": {}, "streams": settings})
    assert config.compression == {"echo": {}, "streams": settings}


@pytest.mark.parametrize("subprotocols", [{"echo": "nbws.echo"}, {"nope": ["x"]}, {"echo": [""]}])
def test_bad_subprotocols_are_refused(subprotocols: object) -> None:
    with pytest.raises(TraitError, match=r"^invalid c\.Nbws\.subprotocols .*: use \{endpoint"):
        from_config(subprotocols=subprotocols)
