"""Explore what a WebSocket server does with any frame, from a notebook kernel or a terminal.

``connect(url)`` opens a :class:`RawConnection` that can send frames no browser would
(fragments, pings, RSV bits, unmasked or malformed frames, any close code) and records every
frame in and out; ``scenarios.run_all(url)`` runs named experiments and compares what the
server did with what RFC 6455 requires. It connects only where it is pointed, and every
wait has a timeout.
"""

from __future__ import annotations

from . import scenarios
from .client import RawConnection, WriteTimeout, connect
from .frames import FrameParser, ParsedFrame, build_frame, close_payload, parse_frames
from .handshake import HandshakeError, HttpResponse, probe

__all__ = [
    "FrameParser",
    "HandshakeError",
    "HttpResponse",
    "ParsedFrame",
    "RawConnection",
    "WriteTimeout",
    "build_frame",
    "close_payload",
    "connect",
    "parse_frames",
    "probe",
    "scenarios",
]
