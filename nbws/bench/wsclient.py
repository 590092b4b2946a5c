"""A minimal asyncio WebSocket client for load generation: masked frames and header reads
from :mod:`nbws.protocol.framing`, server frames counted by their headers without decoding
payloads, so the client stays cheaper than the servers it measures."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections import deque
from typing import Any

from ..protocol.framing import BINARY, CONT, TEXT, count_frames, split_frames
from ..protocol.framing import client_frame as _client_frame

__all__ = [
    "FrameCounter",
    "FrameParser",
    "Peer",
    "client_frame",
    "handshake_request",
    "open_peer",
    "read_json",
]


def client_frame(
    payload: bytes, *, text: bool = True, fin: bool = True, cont: bool = False
) -> bytes:
    """A masked client data frame."""
    return _client_frame(CONT if cont else TEXT if text else BINARY, payload, fin=fin)


class FrameCounter:
    """Counts whole frames in a byte stream, reading only headers."""

    def __init__(self) -> None:
        self.frames = 0
        self.bytes = 0
        self._skip = 0  # payload bytes of the last frame still to come
        self._head = b""  # the start of a header cut off at the end of the last feed

    def feed(self, data: bytes) -> None:
        self.bytes += len(data)
        if self._head:
            data = self._head + data
            self._head = b""
        end = len(data)
        frames, stop = count_frames(data, self._skip)
        if stop < end:
            self._head = data[stop:]
            stop = end
        self._skip = stop - end
        self.frames += frames


class FrameParser:
    """Splits a server byte stream into whole (opcode, payload) frames. Server frames are
    unmasked; fragmentation and extensions are not handled (the small control and
    message frames the scenarios read never use them)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        buf = self._buffer
        buf += data
        frames, stop, _ = split_frames(buf)
        out = [(first & 0x0F, bytes(buf[start:end])) for first, start, end in frames]
        del buf[:stop]
        return out


class Peer:
    """One raw client connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.parser = FrameParser()
        self.pending: deque[tuple[int, bytes]] = deque()

    async def next_frame(self) -> tuple[int, bytes]:
        """The next whole server frame; ``ConnectionError`` if the server hung up."""
        while not self.pending:
            data = await self.reader.read(1 << 16)
            if not data:
                raise ConnectionError("server closed the connection")
            self.pending.extend(self.parser.feed(data))
        return self.pending.popleft()


def handshake_request(port: int, path: str, protocol: str | None = None) -> bytes:
    """The opening handshake a bench client sends to 127.0.0.1:``port``."""
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    if protocol:
        lines.append(f"Sec-WebSocket-Protocol: {protocol}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def open_peer(port: int, path: str, protocol: str | None = None) -> Peer:
    """Connect and complete the opening handshake."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 24)
    writer.write(handshake_request(port, path, protocol))
    status = await reader.readuntil(b"\r\n\r\n")
    if not status.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(status.decode(errors="replace").splitlines()[0])
    return Peer(reader, writer)


async def read_json(peer: Peer, type_: str) -> dict[str, Any]:
    """Read text frames until a JSON object whose ``type`` is ``type_``; return it."""
    while True:
        opcode, payload = await peer.next_frame()
        if opcode == TEXT:
            message = json.loads(payload)
            if message.get("type") == type_:
                return message  # type: ignore[no-any-return]
