"""Transitional: the parts of the old codec that callers still import.

Everything here is defined in :mod:`nbws.protocol.messages`, the one nbws.v1 message
layer; this module goes away once every caller uses message objects.
"""

from __future__ import annotations

from typing import Any

import orjson

from .errors import InvalidPayload, PolicyViolation
from .protocol.messages import (
    MAX_HEADER_BYTES,
    PROTOCOL,
    STREAM_NAME,
    binary_prefix,
    encode_value,
    split_binary,
    valid_stream_name,
)

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


def encode_json(message: dict[str, Any]) -> bytes:
    """Serialise a control message (UTF-8 JSON bytes, ready for a text frame)."""
    return orjson.dumps(message)


def decode_json(data: bytes | str) -> dict[str, Any]:
    """Parse a control message (InvalidPayload: not JSON; PolicyViolation: not an object)."""
    try:
        message = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidPayload(f"text frame is not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise PolicyViolation("a control message must be a JSON object")
    return message


def encode_binary(header: dict[str, Any], payload: bytes) -> bytes:
    """A whole binary message: prefix + payload (one copy of the payload)."""
    return binary_prefix(header) + payload
