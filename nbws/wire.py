"""The ``nbws.v1`` message codec, shared by the server, the Python client and the tests.

Control messages are JSON objects in text frames. Binary payloads travel as one binary
message: a 4-byte big-endian header length, the JSON header, then the payload bytes
(docs/protocol.md, "nbws.v1").
"""

from __future__ import annotations

import re
import struct
from typing import Any

import orjson

from .errors import InvalidPayload, PolicyViolation

__all__ = [
    "MAX_HEADER_BYTES",
    "PROTOCOL",
    "STREAM_NAME",
    "binary_prefix",
    "decode_json",
    "encode_binary",
    "encode_json",
    "encode_value",
    "split_binary",
    "valid_stream_name",
]

PROTOCOL = "nbws.v1"
MAX_HEADER_BYTES = 64 * 1024
STREAM_NAME = re.compile(r"^[A-Za-z0-9._:/-]{1,200}$")
_LEN = struct.Struct("!I")


def valid_stream_name(name: object) -> bool:
    """True for a string stream name nbws accepts."""
    return isinstance(name, str) and STREAM_NAME.match(name) is not None


def encode_json(message: dict[str, Any]) -> bytes:
    """Serialise a control message (UTF-8 JSON bytes, ready for a text frame)."""
    return orjson.dumps(message)


def encode_value(value: Any) -> bytes:
    """Serialise any JSON value (a publish payload) once, so it can be embedded as is.

    NumPy arrays and scalars are accepted (as JSON arrays and numbers).

    Raises:
        TypeError: the value is not JSON-serialisable.
    """
    try:
        return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)
    except orjson.JSONEncodeError as exc:
        raise TypeError(f"payload is not JSON-serialisable: {exc}") from None


def decode_json(data: bytes | str) -> dict[str, Any]:
    """Parse a control message.

    Raises:
        InvalidPayload: not JSON (close 1007).
        PolicyViolation: JSON, but not an object (close 1008 at once: the peer does
            not speak nbws.v1).
    """
    try:
        message = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidPayload(f"text frame is not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise PolicyViolation("a control message must be a JSON object")
    return message


def binary_prefix(header: dict[str, Any]) -> bytes:
    """The bytes that precede a binary payload: length + JSON header."""
    raw = orjson.dumps(header)
    return _LEN.pack(len(raw)) + raw


def encode_binary(header: dict[str, Any], payload: bytes) -> bytes:
    """A whole binary message: prefix + payload (one copy of the payload)."""
    return binary_prefix(header) + payload


def split_binary(data: bytes | memoryview) -> tuple[dict[str, Any], memoryview]:
    """Split a binary message (or its first fragment) into header and payload.

    Returns:
        The header dict and a zero-copy view of the payload that follows it.

    Raises:
        PolicyViolation: the header is missing, too long, or not a JSON object (1008).
    """
    view = memoryview(data)
    if len(view) < 4:
        raise PolicyViolation("binary message shorter than its 4-byte header length")
    (size,) = _LEN.unpack_from(view, 0)
    if size > MAX_HEADER_BYTES or size > len(view) - 4:
        raise PolicyViolation(f"binary header length {size} is invalid")
    try:
        header = orjson.loads(view[4 : 4 + size])
    except orjson.JSONDecodeError:
        raise PolicyViolation("binary header is not JSON") from None
    if not isinstance(header, dict):
        raise PolicyViolation("binary header must be a JSON object")
    return header, view[4 + size :]
