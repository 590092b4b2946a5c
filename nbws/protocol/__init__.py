"""Sans-I/O WebSocket protocol core: bytes in, events and bytes out, no sockets or loops."""

from __future__ import annotations

from .events import CloseReceived, Event, Fragment, Ping, Pong
from .limits import RateLimiter
from .session import Response, Session, State, encode_frame, encode_message, serialize_request
from .tap import OPCODE_NAMES, FrameRecord, FrameTap, parse_frame_header

__all__ = [
    "OPCODE_NAMES",
    "CloseReceived",
    "Event",
    "Fragment",
    "FrameRecord",
    "FrameTap",
    "Ping",
    "Pong",
    "RateLimiter",
    "Response",
    "Session",
    "State",
    "encode_frame",
    "encode_message",
    "parse_frame_header",
    "serialize_request",
]
