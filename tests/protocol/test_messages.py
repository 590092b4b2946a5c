"""nbws.protocol.messages: every nbws.v1 message class, its checks, both layouts."""

from __future__ import annotations

import dataclasses
import math

import orjson
import pytest

from nbws.errors import (
    BadRequest,
    ErrorCode,
    InvalidPayload,
    NackCode,
    PolicyViolation,
    UnknownType,
)
from nbws.protocol import messages as m

E = "9b1c2d3e4f5a6b7c"

# One fully populated instance of every message class.
FULL: list[m.AnyMessage] = [
    m.Subscribe(
        "prices",
        id=1,
        since=-5,
        until=9,
        epoch=E,
        policy=m.Policy.CONFLATE,
        max_messages=10,
        max_bytes=2048,
    ),
    m.Unsubscribe("prices", id="u1"),
    m.Publish("prices", {"a": [1, 2.5, None]}, producer="p", seq=3, key="k", id=7),
    m.InfoRequest("prices", id=2),
    m.PublishBatch("prices", "p", 10, [{"a": 1}, None, 2], keys=["k", None, None], id=8),
    m.Welcome("nbws.v1", "nbws 0.1.0", "c0ffee", 16777216, 30.0, 4096),
    m.Subscribed("prices", E, 100, 130, m.Policy.BLOCK, 1000, 1 << 20, since=120, ref=1),
    m.Unsubscribed("prices", ref="u1"),
    m.Consumed("prices", 129, id=7),
    m.Message("prices", 121, E, 1764050400.125, {"x": 1}, producer="p", seq=3, key="k"),
    m.End("prices", 130),
    m.Ack("prices", "p", 3, E, False, offset=121),
    m.Nack("prices", NackCode.UNAVAILABLE, "broker down", True, producer="p", seq=4),
    m.Gap("prices", 100, m.GapReason.DROPPED, end=120, count=20, epoch=E),
    m.Info("prices", E, 100, 130, 30, 4120, 12.5, 2, 1, 0, ref=3),
    m.Error(ErrorCode.NOT_SUBSCRIBED, "not subscribed to 'prices'", ref=5),
    m.Status(m.HealthState.DEGRADED, reason="broker unavailable"),
    m.Batch(
        "prices",
        E,
        (
            m.Message("prices", 121, E, 1764050400.125, {"x": 1}, producer="p", seq=3, key="k"),
            m.Message("prices", 122, E, 1764050400.25, [None]),
        ),
    ),
]


def decoder_of(message: m.AnyMessage):
    return m.decode_request if type(message) in m.REQUESTS.values() else m.decode_event


def test_every_message_class_is_covered():
    assert {type(x) for x in FULL} == set(m.REQUESTS.values()) | set(m.EVENTS.values())


@pytest.mark.parametrize("message", FULL, ids=lambda x: type(x).__name__)
def test_round_trip_json(message):
    encoded = m.encode(message)
    assert encoded.text is True and encoded.data is encoded[0]
    assert decoder_of(message)(encoded.data) == message
    assert orjson.loads(encoded.data)["type"] == message.TYPE


@pytest.mark.parametrize("message", FULL, ids=lambda x: type(x).__name__)
def test_minimal_round_trip(message):
    """Only the required fields set: optional ones stay None (or null on the wire)."""
    cls = type(message)
    required = {c.name: getattr(message, c.name) for c in cls.COLUMNS if c.spec.required}
    if cls is m.Publish:
        required["payload"] = None
    if cls is m.PublishBatch:  # a batch carries at least one message
        required["payloads"] = [None]
    minimal = cls(**required)
    wire = orjson.loads(m.encode(minimal).data)
    for column in cls.COLUMNS:
        if column.spec.keep_null:
            assert wire[column.wire] is None
    assert decoder_of(minimal)(m.encode(minimal).data) == minimal


def test_messages_are_frozen_and_slotted():
    message = FULL[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        message.stream = "other"  # type: ignore[misc]
    assert not hasattr(message, "__dict__")


def test_gap_uses_from_and_to_on_the_wire():
    wire = orjson.loads(m.encode(m.Gap("s", 1, m.GapReason.HISTORY, end=5, count=4)).data)
    assert wire == {
        "type": "gap",
        "stream": "s",
        "from": 1,
        "to": 5,
        "count": 4,
        "reason": "history",
        "epoch": None,
    }


def test_enums_decode_to_members():
    sub = m.decode_request(b'{"type":"subscribe","stream":"s","policy":"drop-newest"}')
    assert sub.policy is m.Policy.DROP_NEWEST
    error = m.decode_event(b'{"type":"error","code":"unavailable","message":"x"}')
    assert error.code is ErrorCode.UNAVAILABLE


# --- binary layout --------------------------------------------------------------------


@pytest.mark.parametrize("payload", [b"", b"\x00", bytes(range(256)) * 300, b'{"type":"x"}'])
def test_binary_publish_round_trip(payload):
    publish = m.Publish("frames", payload, producer="p", seq=1, content_type="a/b", binary=True)
    encoded = m.encode(publish)
    assert encoded.text is False
    header, rest = m.split_binary(encoded.data)
    assert header == {
        "type": "publish",
        "stream": "frames",
        "producer": "p",
        "seq": 1,
        "content_type": "a/b",
    }
    assert bytes(rest) == payload
    assert m.decode_request(encoded.data, text=False) == publish


def test_binary_message_round_trip():
    message = m.Message("frames", 3, E, 2.5, b"\xff\x00", content_type="image/png", binary=True)
    encoded = m.encode(message)
    header, rest = m.split_binary(encoded.data)
    assert header["binary"] is True and "payload" not in header
    assert bytes(rest) == b"\xff\x00"
    assert m.decode_event(encoded.data, text=False) == message


def test_split_binary_is_zero_copy():
    data = bytearray(m.binary_prefix({"type": "publish", "stream": "s"}) + b"abc")
    _, payload = m.split_binary(data)
    data[-1] = ord("z")
    assert bytes(payload) == b"abz"


def test_binary_header_length_limit():
    header = {"type": "publish", "stream": "s", "key": "k" * m.MAX_HEADER_BYTES}
    with pytest.raises(PolicyViolation, match="header length"):
        m.split_binary(m.binary_prefix(header) + b"x")


def test_binary_header_payload_field_is_ignored():
    data = m.binary_prefix({"type": "publish", "stream": "s", "payload": [1]}) + b"raw"
    assert m.decode_request(data, text=False).payload == b"raw"


# --- encode_delivery ------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [{}, {"producer": "p", "seq": 0}, {"key": "AAPL"}, {"producer": "p", "seq": 9, "key": "k"}],
)
@pytest.mark.parametrize("payload", [{"price": 1.5}, None, [1, "x"], "text", 0])
def test_encode_delivery_json_equals_encode(extra, payload):
    fast = m.encode_delivery("s", E, m.Message("s", 4, E, 1.25, orjson.dumps(payload), **extra))
    slow = m.encode(m.Message("s", 4, E, 1.25, payload, **extra))
    assert fast.text is slow.text is True
    assert orjson.loads(fast.data) == orjson.loads(slow.data)


@pytest.mark.parametrize("extra", [{}, {"content_type": "a/b"}, {"producer": "p", "seq": 2}])
def test_encode_delivery_binary_equals_encode(extra):
    stored = m.Message("s", 4, E, 1.25, b"\x01\x02", binary=True, **extra)
    fast = m.encode_delivery("s", E, stored)
    slow = m.encode(m.Message("s", 4, E, 1.25, b"\x01\x02", binary=True, **extra))
    assert fast.text is slow.text is False
    fast_header, fast_payload = m.split_binary(fast.data)
    slow_header, slow_payload = m.split_binary(slow.data)
    assert fast_header == slow_header
    assert bytes(fast_payload) == bytes(slow_payload) == b"\x01\x02"


def test_encode_delivery_splices_stored_json_unparsed():
    stored = b'{"b":1,  "a":2}'  # as stored: spacing and key order kept
    data = m.encode_delivery("s", E, m.Message("s", 0, E, 1.0, stored)).data
    assert data.endswith(b',"payload":' + stored + b"}")


def test_encode_value():
    assert m.encode_value({"a": [1, None]}) == b'{"a":[1,null]}'
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        m.encode_value(object())


# --- validation -----------------------------------------------------------------------


def test_missing_required_field():
    with pytest.raises(BadRequest, match=r"^ack needs 'epoch'$"):
        m.message_from_dict(
            {"type": "ack", "stream": "s", "producer": "p", "seq": 1, "duplicate": False},
            m.EVENTS,
        )


@pytest.mark.parametrize("value", [True, False])
def test_bool_is_not_an_integer(value):
    with pytest.raises(BadRequest, match="'since' must be an integer"):
        m.message_from_dict({"type": "subscribe", "stream": "s", "since": value})


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_are_refused(value):
    obj = {"type": "message", "stream": "s", "offset": 0, "epoch": "e", "time": value}
    with pytest.raises(BadRequest, match="'time' must be a finite number"):
        m.message_from_dict(obj, m.EVENTS)


def test_non_finite_json_is_not_json():
    with pytest.raises(InvalidPayload) as info:
        m.decode_event(b'{"type":"end","stream":"s","next":1e999}')
    assert info.value.close_code == 1007


def test_integer_beyond_64_bits_is_refused():
    with pytest.raises(BadRequest, match="'until' must be an integer"):
        m.decode_request(b'{"type":"subscribe","stream":"s","until":18446744073709551616}')


def test_too_long_strings():
    with pytest.raises(BadRequest, match="'producer' is longer than 256 characters"):
        m.message_from_dict(
            {"type": "publish", "stream": "s", "producer": "p" * 257, "seq": 1, "payload": 1}
        )
    assert m.message_from_dict(
        {"type": "publish", "stream": "s", "producer": "p" * 256, "seq": 1, "payload": 1}
    ).acked


@pytest.mark.parametrize("name", ["", "a b", "é", "a" * 201, "x\n", "\nx", "a;b", 5, None])
def test_bad_stream_names(name):
    assert not m.valid_stream_name(name)
    with pytest.raises(BadRequest, match="'stream'"):
        m.message_from_dict({"type": "unsubscribe", "stream": name})


@pytest.mark.parametrize("name", ["a", "A-z_0.9:/x", "a" * 200])
def test_good_stream_names(name):
    assert m.valid_stream_name(name)
    assert m.message_from_dict({"type": "unsubscribe", "stream": name}).stream == name


@pytest.mark.parametrize("value", ["DROP-OLDEST", "", 3, [1], {"a": 1}])
def test_bad_enum_value_lists_the_allowed_ones(value):
    with pytest.raises(BadRequest) as info:
        m.message_from_dict({"type": "subscribe", "stream": "s", "policy": value})
    assert str(info.value).endswith(
        "use one of drop-oldest, drop-newest, conflate, disconnect, block"
    )
    assert repr(value) in str(info.value)


def test_unknown_type_names_it_and_carries_the_ref():
    with pytest.raises(UnknownType, match="unknown message type 'bogus'") as info:
        m.decode_request(b'{"type":"bogus","id":"r9"}')
    assert info.value.ref == "r9"
    assert info.value.error_code is ErrorCode.UNKNOWN_TYPE


def test_not_json_and_not_an_object():
    with pytest.raises(InvalidPayload):
        m.decode_request(b"{nope")
    with pytest.raises(PolicyViolation):
        m.decode_request(b"[1]")
    with pytest.raises(InvalidPayload):
        m.decode_request(b"\xff\xfe")


# --- exc.ref and exc.publish ----------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "expected"),
    [(4, 4), ("r", "r"), ("r" * 256, "r" * 256), ("r" * 257, None), (True, None), ([1], None)],
)
def test_ref_of_a_refused_request(ref, expected):
    with pytest.raises(BadRequest) as info:
        m.message_from_dict({"type": "subscribe", "id": ref, "stream": 1})
    assert info.value.ref == expected


def test_ref_of_a_refused_event_comes_from_ref():
    with pytest.raises(BadRequest) as info:
        m.decode_event(b'{"type":"unsubscribed","ref":12,"id":13}')
    assert info.value.ref == 12


def test_ref_of_a_refused_binary_publish():
    data = m.binary_prefix({"type": "publish", "stream": "s", "id": 3, "seq": 1}) + b"x"
    with pytest.raises(BadRequest, match="go together") as info:
        m.decode_request(data, text=False)
    assert info.value.ref == 3


def test_publish_identity_on_a_refused_acked_publish():
    obj = {"type": "publish", "stream": "s", "producer": "p", "seq": 5, "key": 3, "payload": 1}
    with pytest.raises(BadRequest) as info:
        m.message_from_dict(obj)
    assert info.value.publish == ("s", "p", 5)
    assert info.value.nack_code is NackCode.BAD_REQUEST


def test_binary_publish_identity():
    header = {"type": "publish", "stream": "s", "producer": "p", "seq": 5, "content_type": 1}
    with pytest.raises(BadRequest) as info:
        m.decode_request(m.binary_prefix(header) + b"x", text=False)
    assert info.value.publish == ("s", "p", 5)


@pytest.mark.parametrize(
    "obj",
    [
        {"type": "publish", "stream": "bad name", "producer": "p", "seq": 1, "payload": 1},
        {"type": "publish", "stream": "s", "producer": "p", "seq": True, "payload": 1},
        {"type": "publish", "stream": "s", "producer": 1, "seq": 1, "payload": 1},
        {"type": "publish", "stream": "s", "seq": 1, "payload": 1},
    ],
)
def test_no_publish_identity_without_a_valid_one(obj):
    with pytest.raises(BadRequest) as info:
        m.message_from_dict(obj)
    assert info.value.publish is None


def test_non_publish_errors_carry_no_identity():
    with pytest.raises(BadRequest) as info:
        m.message_from_dict({"type": "subscribe", "stream": "s", "producer": "p", "since": "x"})
    assert info.value.publish is None


# --- resume ---------------------------------------------------------------------------


def test_resume_since_continues_after_the_last_offset():
    assert m.resume_since(None, -100) == -100
    assert m.resume_since(99, -100) == 100
    assert m.resume_since(99, -100, (0, 100)) == 100


def test_resume_since_after_an_empty_subscription():
    """Nothing arrived: resume where the confirmed subscription started delivering."""
    assert m.resume_since(None, None, (10, 40)) == 40  # live only: not what came since
    assert m.resume_since(None, -10, (0, 40)) == 30  # the same last 10, not newer ones
    assert m.resume_since(None, -100, (25, 40)) == 25
    assert m.resume_since(None, 7, (25, 40)) == 7


@pytest.mark.parametrize(
    ("producer", "seq", "key", "binary"),
    [
        (None, None, None, False),
        ("kernel-1", 7, None, False),
        ('odd "name" é', 2**53 - 1, None, False),
        ("kernel-1", 7, "AAPL", False),
        (None, None, "k", False),
        ("kernel-1", 7, None, True),
    ],
)
def test_a_batch_element_decodes_to_the_stored_message(
    producer: str | None, seq: int | None, key: str | None, binary: bool
) -> None:
    """Every shape of ``batch_item`` (the formatted fast ones and the general one) says the
    same as the stored message, field for field."""
    from nbws.broker.base import StoredMessage
    from nbws.protocol.messages import batch_item, decode_event, encode_batch

    payload = b"\x00\x01" if binary else b'{"price":189.5}'
    stored = StoredMessage(41, 1700000000.25, payload, binary, producer, seq, key, None)
    data, text = encode_batch("s", "e1", [batch_item(stored)])
    (message,) = decode_event(data, text=text).messages  # type: ignore[union-attr]
    assert (message.offset, message.time, message.producer, message.seq, message.key) == (
        41, 1700000000.25, producer, seq, key,
    )  # fmt: skip
    assert message.payload == (payload if binary else {"price": 189.5})
