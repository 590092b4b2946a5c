"""Sans-I/O WebSocket protocol core: bytes in, events and bytes out, no sockets or loops."""

from __future__ import annotations

from .events import CloseReceived, Event, Fragment, Ping, Pong
from .framing import OPCODE_NAMES, encode_frame, encode_message, parse_frame_header
from .limits import Limits, RateLimiter
from .session import Response, Session, State, serialize_request
from .tap import FrameRecord, FrameTap

__all__ = [
    "OPCODE_NAMES",
    "CloseReceived",
    "Event",
    "Fragment",
    "FrameRecord",
    "FrameTap",
    "Limits",
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
