"""A minimal asyncio WebSocket client for load generation: masked frames built by the
``websockets`` library, server frames counted by their headers without decoding payloads,
so the client stays cheaper than the servers it measures."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
from collections import deque
from typing import Any

from websockets.frames import Frame, Opcode

__all__ = ["FrameCounter", "FrameParser", "Peer", "client_frame", "open_peer", "read_json"]


def client_frame(
    payload: bytes, *, text: bool = True, fin: bool = True, cont: bool = False
) -> bytes:
    """A masked client frame (the masking and header are the library's)."""
    opcode = Opcode.CONT if cont else Opcode.TEXT if text else Opcode.BINARY
    return Frame(opcode, payload, fin).serialize(mask=True, extensions=[])


class FrameCounter:
    """Counts whole frames in a byte stream, reading only headers."""

    def __init__(self) -> None:
        self.frames = 0
        self.bytes = 0
        self._skip = 0
        self._head = b""

    def feed(self, data: bytes) -> None:
        self.bytes += len(data)
        view = memoryview(self._head + data) if self._head else memoryview(data)
        self._head = b""
        pos, end = self._skip, len(view)
        frames = 0
        while pos < end:
            if end - pos < 2:
                self._head = bytes(view[pos:])
                pos = end
                break
            size = view[pos + 1] & 0x7F
            if size < 126:
                pos += 2 + size
            elif size == 126:
                if end - pos < 4:
                    self._head = bytes(view[pos:])
                    pos = end
                    break
                pos += 4 + struct.unpack_from("!H", view, pos + 2)[0]
            else:
                if end - pos < 10:
                    self._head = bytes(view[pos:])
                    pos = end
                    break
                pos += 10 + struct.unpack_from("!Q", view, pos + 2)[0]
            frames += 1
        self._skip = pos - end
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
        frames = []
        pos = 0
        while len(buf) - pos >= 2:
            size, head = buf[pos + 1] & 0x7F, 2
            if size == 126:
                if len(buf) - pos < 4:
                    break
                size, head = struct.unpack_from("!H", buf, pos + 2)[0], 4
            elif size == 127:
                if len(buf) - pos < 10:
                    break
                size, head = struct.unpack_from("!Q", buf, pos + 2)[0], 10
            if len(buf) - pos < head + size:
                break
            frames.append((buf[pos] & 0x0F, bytes(buf[pos + head : pos + head + size])))
            pos += head + size
        del buf[:pos]
        return frames


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


async def open_peer(port: int, path: str, protocol: str | None = None) -> Peer:
    """Connect and complete the opening handshake."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 24)
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
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    status = await reader.readuntil(b"\r\n\r\n")
    if not status.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(status.decode(errors="replace").splitlines()[0])
    return Peer(reader, writer)


async def read_json(peer: Peer, type_: str) -> dict[str, Any]:
    """Read text frames until a JSON object whose ``type`` is ``type_``; return it."""
    while True:
        opcode, payload = await peer.next_frame()
        if opcode == Opcode.TEXT.value:
            message = json.loads(payload)
            if message.get("type") == type_:
                return message  # type: ignore[no-any-return]
