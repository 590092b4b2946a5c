"""A minimal asyncio WebSocket client for load generation: masked frames built by the
``websockets`` library, server frames counted by their headers without decoding payloads,
so the client stays cheaper than the servers it measures."""

from __future__ import annotations

import asyncio
import base64
import os
import struct

from websockets.frames import Frame, Opcode

__all__ = ["FrameCounter", "Peer", "client_frame", "open_peer"]


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


class Peer:
    """One raw client connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer


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
