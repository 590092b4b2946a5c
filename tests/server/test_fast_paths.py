"""The hot-path shortcuts of the message layer give exactly what the general functions
give: the same message object, or the same refusal."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from nbws.errors import RequestError
from nbws.protocol.messages import (
    Ack,
    decode_request,
    decode_request_fast,
    encode,
    encode_ack,
)

GOOD = {"type": "publish", "stream": "s", "producer": "p", "seq": 3, "payload": {"a": [1]}}

CASES: list[dict[str, Any]] = [
    GOOD,
    {"type": "publish", "stream": "s", "payload": None},
    {"type": "publish", "stream": "s", "payload": 1, "key": "k", "content_type": "x/y"},
    {"type": "publish", "stream": "s", "payload": 1, "id": 7},
    {"type": "publish", "stream": "s", "payload": 1, "id": "r" * 256},
    {"type": "publish", "stream": "s", "payload": 1, "id": "r" * 257},
    {"type": "publish", "stream": "s", "payload": 1, "id": 1.5},
    {"type": "publish", "stream": "s", "payload": 1, "id": True},
    {"type": "publish", "stream": "s"},
    {"type": "publish", "stream": "bad name", "payload": 1},
    {"type": "publish", "stream": 5, "payload": 1},
    {"type": "publish", "payload": 1},
    {"type": "publish", "stream": "s", "payload": 1, "producer": "p"},
    {"type": "publish", "stream": "s", "payload": 1, "seq": 1},
    {"type": "publish", "stream": "s", "payload": 1, "producer": "p", "seq": -1},
    {"type": "publish", "stream": "s", "payload": 1, "producer": "p", "seq": True},
    {"type": "publish", "stream": "s", "payload": 1, "producer": "p", "seq": 1.0},
    {"type": "publish", "stream": "s", "payload": 1, "producer": 3, "seq": 1},
    {"type": "publish", "stream": "s", "payload": 1, "producer": "p" * 257, "seq": 1},
    {"type": "publish", "stream": "s", "payload": 1, "key": 5},
    {"type": "publish", "stream": "s", "payload": 1, "key": "k" * 257},
    {"type": "publish", "stream": "s", "payload": 1, "content_type": ["x"]},
    {"type": "subscribe", "stream": "s", "since": -3},
    {"type": "nope"},
]


def outcome(decode: Any, raw: bytes) -> Any:
    try:
        return decode(raw)
    except RequestError as exc:
        return (type(exc), str(exc), exc.ref, exc.publish)


@pytest.mark.parametrize("obj", CASES, ids=range(len(CASES)))
def test_decode_request_fast_agrees(obj: dict[str, Any]) -> None:
    raw = orjson.dumps(obj)
    assert outcome(decode_request_fast, raw) == outcome(decode_request, raw)


def test_decode_request_fast_binary_is_the_general_path() -> None:
    header = orjson.dumps({"type": "publish", "stream": "s", "producer": "p", "seq": 1})
    blob = len(header).to_bytes(4, "big") + header + b"\x00\x01"
    assert decode_request_fast(blob, text=False) == decode_request(blob, text=False)


@pytest.mark.parametrize(("duplicate", "offset"), [(False, 7), (True, None), (True, 0)])
def test_encode_ack_agrees(duplicate: bool, offset: int | None) -> None:
    expected = encode(Ack("s", "p", 3, "e", duplicate, offset))
    assert expected.text and encode_ack("s", "p", 3, "e", duplicate, offset) == expected.data
