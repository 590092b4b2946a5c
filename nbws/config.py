"""The one settings object, read by the Jupyter extension and by ``nbws serve`` alike.

Set options in ``jupyter_server_config.py`` / ``jupyter_nbws_config.py`` as ``c.Nbws.<name>``
or on the command line as ``--Nbws.<name>=value``. ``docs/configuration.md`` lists each one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from traitlets import Bool, CaselessStrEnum, Dict, Float, HasTraits, Int, List, TraitError, Unicode
from traitlets import validate as cross_validate
from traitlets.config import Config, Configurable

from .protocol.messages import Policy

__all__ = [
    "BACKENDS",
    "ENDPOINTS",
    "ChoiceEnum",
    "Count",
    "Nbws",
    "Seconds",
    "endpoint_compression",
    "invalid",
    "redact_url",
    "unknown_options",
]

MiB = 1024 * 1024

BACKENDS = ("memory", "redis")
"""The brokers ``c.Nbws.backend`` can name."""

REDIS_SCHEMES = ("redis", "rediss", "unix")

ENDPOINTS = ("echo", "streams", "tap")
"""The WebSocket endpoints ``subprotocols`` and ``compression`` are keyed by."""

DEFLATE_SETTINGS = (
    "server_no_context_takeover",
    "client_no_context_takeover",
    "server_max_window_bits",
    "client_max_window_bits",
    "compress_settings",
)


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (safe to print)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "***" if "@" in url else url
    userinfo, at, hostpart = rest.partition("@")
    if not at or "/" in userinfo:
        return url
    user = userinfo.partition(":")[0]
    return f"{scheme}://{user}:***@{hostpart}" if ":" in userinfo else f"{scheme}://***@{hostpart}"


def invalid(name: str | None, value: object, allowed: str, owner: str = "Nbws") -> TraitError:
    """The one-line error for a bad option: it names the option and what it accepts."""
    shown = value if isinstance(value, str) and not value else repr(value)
    return TraitError(f"invalid c.{owner}.{name} {shown}: use {allowed}")


def _owner(obj: HasTraits | None) -> str:
    return type(obj).__name__ if obj is not None else "Nbws"


def _either(values: Iterable[str]) -> str:
    quoted = [repr(v) for v in values]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


def _with_allowed(kw: dict[str, Any], allowed: str) -> dict[str, Any]:
    """``kw`` with the allowed range added to its help (shown by ``--help-all``)."""
    if kw.get("help"):
        kw = {**kw, "help": f"{kw['help']} Allowed: {allowed}."}
    return kw


class ChoiceEnum(CaselessStrEnum[str]):
    """One of a fixed set of names (case-insensitive); a bad one names the allowed set."""

    def error(
        self,
        obj: HasTraits | None,
        value: Any,
        error: Exception | None = None,
        info: str | None = None,
    ) -> Any:
        raise invalid(self.name, value, _either(self.values or ()), _owner(obj))


class _OneLineError:
    """A trait whose refusal is nbws's one-line message naming what it allows."""

    def allowed(self) -> str:
        raise NotImplementedError

    def error(
        self,
        obj: HasTraits | None,
        value: Any,
        error: Exception | None = None,
        info: str | None = None,
    ) -> Any:
        raise invalid(getattr(self, "name", ""), value, self.allowed(), _owner(obj))


class Count(_OneLineError, Int[int, int]):
    """A whole number with a lower bound: ``minimum=1`` for sizes where 0 makes no sense,
    ``minimum=0, zero="..."`` where the help gives 0 a meaning (usually "off")."""

    def __init__(self, default_value: int, *, minimum: int = 1, zero: str = "", **kw: Any) -> None:
        self.minimum = minimum
        self.zero = zero
        super().__init__(default_value, **_with_allowed(kw, self.allowed()))

    def allowed(self) -> str:
        text = f"an integer >= {self.minimum}"
        return f"{text} (0 = {self.zero})" if self.zero else text

    def from_string(self, s: str) -> int:
        try:
            return int(s.replace("_", ""))
        except ValueError:
            raise invalid(self.name, s, self.allowed()) from None

    def validate(self, obj: Any, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                self.error(obj, value)
        if value < self.minimum:
            self.error(obj, value)
        return int(value)


class Seconds(_OneLineError, Float[float, float]):
    """A duration (or another ``unit``): ``> 0``, or ``>= 0`` with ``zero="..."`` saying
    what 0 means."""

    def __init__(
        self, default_value: float, *, zero: str = "", unit: str = "seconds", **kw: Any
    ) -> None:
        self.zero = zero
        self.unit = unit
        super().__init__(default_value, **_with_allowed(kw, self.allowed()))

    def allowed(self) -> str:
        if self.zero:
            return f"a number of {self.unit} >= 0 (0 = {self.zero})"
        return f"a number of {self.unit} > 0"

    def from_string(self, s: str) -> float:
        try:
            return float(s)
        except ValueError:
            raise invalid(self.name, s, self.allowed()) from None

    def validate(self, obj: Any, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.error(obj, value)
        seconds = float(value)
        if math.isnan(seconds) or seconds < 0 or (seconds == 0 and not self.zero):
            self.error(obj, value)
        return seconds


class Nbws(Configurable):
    """nbws settings: WebSocket limits and liveness, streams, buffers, broker."""

    # --- WebSocket protocol limits -------------------------------------------------------
    max_message_size = Count(
        16 * MiB,
        minimum=0,
        zero="no limit",
        help="Largest inbound message in bytes, summed across fragments; over it the "
        "connection closes with 1009. 0 means no limit.",
    ).tag(config=True)

    max_frame_size = Count(
        16 * MiB,
        help="Largest single inbound frame in bytes (each frame is held whole while it "
        "is parsed, so this bounds per-connection memory). Over it: close 1009.",
    ).tag(config=True)

    max_connections = Count(
        10_000,
        help="WebSocket connections this process accepts at once; past it the upgrade "
        "is refused with HTTP 503 before any WebSocket traffic.",
    ).tag(config=True)

    rate_limit = Seconds(
        0.0,
        zero="no limit",
        unit="messages per second",
        help="Inbound messages per second allowed on one connection (token bucket with "
        "a burst of rate_limit_burst). Exceeding it closes the connection with 1008. "
        "0 disables the limit.",
    ).tag(config=True)

    rate_limit_burst = Count(
        0,
        minimum=0,
        zero="one second's worth",
        help="Burst size of the per-connection rate limit; 0 means one second's worth.",
    ).tag(config=True)

    # --- liveness ----------------------------------------------------------------------------
    heartbeat_interval = Seconds(
        30.0,
        zero="no heartbeats",
        help="Seconds of silence from a peer after which the server sends a ping. 0 disables "
        "heartbeats.",
    ).tag(config=True)

    heartbeat_timeout = Seconds(
        20.0,
        help="Seconds to wait for the pong; a peer that does not answer is closed with 1011 "
        "and dropped.",
    ).tag(config=True)

    idle_timeout = Seconds(
        0.0,
        zero="off",
        help="Seconds without any data message from a peer after which the server closes "
        "the connection with 1001. 0 disables it (heartbeats still detect dead peers).",
    ).tag(config=True)

    close_timeout = Seconds(
        5.0,
        help="Seconds to wait for the peer to finish the closing handshake before the TCP "
        "connection is dropped.",
    ).tag(config=True)

    stall_timeout = Seconds(
        20.0,
        zero="off",
        help="Seconds a peer may read nothing at all while more than write_low_water bytes "
        "wait for it (reading from it is paused meanwhile); then it is closed with 1013 and "
        "dropped close_timeout later. 0 disables it.",
    ).tag(config=True)

    # --- flow control ------------------------------------------------------------------------
    write_high_water = Count(
        1 * MiB,
        help="Bytes queued in the transport above which a connection counts as not drained: "
        "streaming sends wait, echo stops reading, subscriber buffers start to fill.",
    ).tag(config=True)

    write_low_water = Count(
        256 * 1024,
        minimum=0,
        zero="resume once fully drained",
        help="Bytes queued in the transport below which a paused sender resumes.",
    ).tag(config=True)

    read_high_water = Count(
        4 * MiB,
        help="Bytes of received frames waiting for the application above which the server "
        "stops reading from the socket (TCP backpressure to the peer).",
    ).tag(config=True)

    # --- negotiation -----------------------------------------------------------------------
    subprotocols = Dict(
        {"echo": ["nbws.echo"], "streams": ["nbws.v1"]},
        help="Subprotocols each endpoint offers, in the server's order of preference. The "
        "first one the client also offers is selected; a client offering none of them is "
        "still accepted, without a subprotocol.",
    ).tag(config=True)

    compression = Dict(
        {},
        help="permessage-deflate per endpoint, off by default (see docs/security.md on "
        "CRIME/BREACH). Example: {'echo': {'server_max_window_bits': 12, "
        "'client_max_window_bits': 12, 'server_no_context_takeover': False, "
        "'client_no_context_takeover': False}}. An empty dict for an endpoint enables "
        "deflate with the defaults.",
    ).tag(config=True)

    frame_tap_size = Count(
        1000,
        help="Frames kept per connection by the frame tap once someone watches it (oldest "
        "are dropped first).",
    ).tag(config=True)

    # --- standalone server -----------------------------------------------------------------
    allow_origins = List(
        Unicode(),
        [],
        help="Origins allowed to open WebSockets to `nbws serve` besides the server's own. "
        "'*' allows any origin. Inside Jupyter, Jupyter's own allow_origin settings apply.",
    ).tag(config=True)

    allow_hosts = List(
        Unicode(),
        [],
        help="Host names `nbws serve` answers to besides localhost, 127.0.0.1, ::1, any IP "
        "address and the --host it is bound to; other Host headers get HTTP 403 (protection "
        "against DNS rebinding). '*' allows any host. Inside Jupyter, Jupyter's own "
        "local_hostnames/allow_remote_access settings apply.",
    ).tag(config=True)

    # --- streams -------------------------------------------------------------------------
    backend = ChoiceEnum(
        list(BACKENDS),
        "memory",
        help="Stream broker: 'memory' (embedded, one process) or 'redis' (scale-out).",
    ).tag(config=True)

    redis_url = Unicode(
        "redis://127.0.0.1:6379/0",
        help="Redis URL used when backend = 'redis' (rediss:// for TLS, "
        "redis://:password@host:port/db with a password).",
    ).tag(config=True)

    redis_prefix = Unicode(
        "nbws",
        help="Prefix of every Redis key nbws writes. Processes that share streams must use "
        "the same prefix; different prefixes keep deployments apart on one Redis.",
    ).tag(config=True)

    redis_command_timeout = Seconds(
        2.0,
        help="Seconds a Redis command may take before it counts as a failure: the publish "
        "is nacked with retry and health shows degraded until Redis answers again.",
    ).tag(config=True)

    auto_create_streams = Bool(
        True,
        help="Create a stream on its first publish or subscribe. When False, streams must "
        "be created through the REST API and unknown streams are refused.",
    ).tag(config=True)

    history_max_messages = Count(
        10_000,
        help="Messages of history each stream keeps by default (for replay and resume).",
    ).tag(config=True)

    history_max_bytes = Count(
        64 * MiB,
        minimum=0,
        zero="no limit",
        help="Bytes of payload history each stream keeps by default; 0 means no limit.",
    ).tag(config=True)

    history_max_age = Seconds(
        0.0,
        zero="no age limit",
        help="Seconds of history each stream keeps by default; 0 keeps messages regardless of age.",
    ).tag(config=True)

    dedupe_window = Count(
        4096,
        help="Per producer, how many of its most recent sequence numbers the server "
        "remembers to acknowledge a retransmitted publish without appending it twice.",
    ).tag(config=True)

    buffer_max_messages = Count(
        10_000,
        help="Default bound of each subscriber's outbound buffer, in messages.",
    ).tag(config=True)

    buffer_max_bytes = Count(
        8 * MiB,
        help="Default bound of each subscriber's outbound buffer, in bytes.",
    ).tag(config=True)

    buffer_policy = ChoiceEnum(
        [p.value for p in Policy],
        Policy.DROP_OLDEST.value,
        help="Default policy when a subscriber's buffer is full: drop-oldest, drop-newest, "
        "conflate, disconnect or block.",
    ).tag(config=True)

    @cross_validate("subprotocols")
    def _subprotocols_per_endpoint(self, proposal: Any) -> dict[str, Any]:
        value = dict(proposal["value"])
        for endpoint, names in value.items():
            if endpoint not in ENDPOINTS or not (
                isinstance(names, list | tuple) and all(isinstance(n, str) and n for n in names)
            ):
                raise invalid(
                    "subprotocols",
                    value,
                    f"{{endpoint: [names]}} with endpoints {_either(ENDPOINTS)}",
                )
        return value

    @cross_validate("compression")
    def _compression_per_endpoint(self, proposal: Any) -> dict[str, Any]:
        from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory

        value = dict(proposal["value"])
        allowed = (
            f"{{endpoint: {{setting: value}}}} with endpoints {_either(ENDPOINTS)} and "
            f"settings {', '.join(DEFLATE_SETTINGS)} (window bits 8-15)"
        )
        for endpoint, settings in value.items():
            if endpoint not in ENDPOINTS or not isinstance(settings, dict):
                raise invalid("compression", value, allowed)
            if set(settings) - set(DEFLATE_SETTINGS):
                raise invalid("compression", value, allowed)
            try:
                ServerPerMessageDeflateFactory(**settings)
            except (ValueError, TypeError):
                raise invalid("compression", value, allowed) from None
        return value

    @cross_validate("redis_url")
    def _redis_url_scheme(self, proposal: Any) -> str:
        value = str(proposal["value"])
        if value.partition("://")[0].lower() not in REDIS_SCHEMES:
            raise invalid("redis_url", redact_url(value), "a redis://, rediss:// or unix:// URL")
        return value

    @cross_validate("write_low_water")
    def _low_below_high(self, proposal: Any) -> int:
        value = int(proposal["value"])
        if value > self.write_high_water:
            raise invalid(
                "write_low_water",
                value,
                f"a value <= write_high_water ({self.write_high_water})",
            )
        return value

    @cross_validate("write_high_water")
    def _high_above_low(self, proposal: Any) -> int:
        value = int(proposal["value"])
        if value < self.write_low_water:
            raise invalid(
                "write_high_water",
                value,
                f"a value >= write_low_water ({self.write_low_water})",
            )
        return value


def unknown_options(config: Config) -> list[str]:
    """Names under ``c.Nbws`` in ``config`` that are not options (typos, removed ones)."""
    section = config.get("Nbws", {})
    return sorted(set(section) - set(Nbws.class_trait_names(config=True)))


def endpoint_compression(config: Nbws, endpoint: str) -> dict[str, Any] | None:
    """Return the permessage-deflate settings for ``endpoint``, or None when it is off."""
    settings = config.compression.get(endpoint)
    return None if settings is None else dict(settings)
