"""The shared nbws.v1 vectors (tests/vectors/*.json) against nbws.protocol.messages.

The TypeScript decoder runs the same files (labextension/src/__tests__/vectors.spec.ts),
so the two sides cannot drift apart.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import orjson
import pytest

from nbws.errors import ConnectionError_, RequestError
from nbws.protocol import messages as m

VECTORS = pathlib.Path(__file__).resolve().parent.parent / "vectors"


def cases(name: str) -> list[dict[str, Any]]:
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))["cases"]


def wire(case: dict[str, Any]) -> tuple[bytes | str, bool]:
    """(data, text) of a case's WebSocket message."""
    if "hex" in case:
        return bytes.fromhex(case["hex"]), False
    if "text" in case:
        return case["text"], True
    return json.dumps(case["json"]), True


def ids(items: list[dict[str, Any]]) -> list[str]:
    return [c["name"] for c in items]


REQUESTS, EVENTS, INVALID, RESUME = (
    cases(n) for n in ("requests.json", "events.json", "invalid.json", "resume.json")
)
BATCH = json.loads((VECTORS / "batch.json").read_text(encoding="utf-8"))
EVENTS += BATCH["cases"]
INVALID += BATCH["invalid"]


def test_vector_names_are_unique():
    for items in (REQUESTS, EVENTS, INVALID, RESUME):
        assert len(ids(items)) == len(set(ids(items)))


def check_decoded(message: m.AnyMessage, case: dict[str, Any], registry: dict[str, Any]) -> None:
    kind = case["json"]["type"] if "json" in case else None
    assert registry[message.TYPE] is type(message)
    if kind is not None:
        assert kind == message.TYPE
    assert m.to_dict(message) == {"type": message.TYPE, **case["fields"]}
    if "payload_hex" in case:
        assert message.binary is True  # type: ignore[union-attr]
        assert message.payload == bytes.fromhex(case["payload_hex"])  # type: ignore[union-attr]


@pytest.mark.parametrize("case", REQUESTS, ids=ids(REQUESTS))
def test_request_vectors_decode(case):
    data, text = wire(case)
    message = m.decode_request(data, text=text)
    check_decoded(message, case, m.REQUESTS)
    # Encoding gives the same fields back, and the bytes decode to an equal message.
    encoded = m.encode(message)
    assert encoded.text == text
    assert m.decode_request(encoded.data, text=encoded.text) == message
    if text:
        assert orjson.loads(encoded.data) == {"type": message.TYPE, **case["fields"]}


@pytest.mark.parametrize("case", EVENTS, ids=ids(EVENTS))
def test_event_vectors_decode(case):
    data, text = wire(case)
    message = m.decode_event(data, text=text)
    check_decoded(message, case, m.EVENTS)
    encoded = m.encode(message)
    assert encoded.text == text
    assert m.decode_event(encoded.data, text=encoded.text) == message
    if "hex" in case:
        assert encoded.data.hex() == case["hex"]


@pytest.mark.parametrize("case", INVALID, ids=ids(INVALID))
def test_invalid_vectors_are_refused(case):
    data, text = wire(case)
    decode = m.decode_request if case["direction"] == "request" else m.decode_event
    expect = case["expect"]
    with pytest.raises((RequestError, ConnectionError_)) as info:
        decode(data, text=text)
    exc = info.value
    if "close" in expect:
        assert isinstance(exc, ConnectionError_)
        assert exc.close_code == expect["close"]
    else:
        assert isinstance(exc, RequestError)
        assert exc.error_code == expect["error"]
        if "ref" in case:
            assert exc.ref == case["ref"]
        if "publish" in case:
            publish = case["publish"]
            assert exc.publish == (None if publish is None else tuple(publish))
    text_of = str(exc)
    assert "\n" not in text_of
    for fragment in case.get("mentions", []):
        assert fragment in text_of


@pytest.mark.parametrize("case", RESUME, ids=ids(RESUME))
def test_resume_vectors(case):
    bounds = None if case["bounds"] is None else tuple(case["bounds"])
    assert m.resume_since(case["last_offset"], case["requested"], bounds) == case["expected"]


def test_every_message_type_has_a_valid_vector():
    assert {c["json"]["type"] if "json" in c else "?" for c in REQUESTS} - {"?"} == set(m.REQUESTS)
    assert {orjson.loads(wire(c)[0])["type"] for c in EVENTS if "hex" not in c} == set(m.EVENTS)
