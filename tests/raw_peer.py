"""A hostile or buggy WebSocket peer: a blocking socket that did the handshake by hand and
then sends exactly what it is told, reading nothing unless asked. Driven from a thread,
so its ``send`` can block on a full socket (the backpressure under test) while the server
shares the test's event loop."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import threading
import time

from websockets.frames import Frame, Opcode

__all__ = ["RawPeer", "masked"]

KiB = 1024
MiB = 1024 * KiB


def masked(opcode: Opcode, data: bytes = b"", fin: bool = True) -> bytes:
    return Frame(opcode, data, fin).serialize(mask=True, extensions=[])


class RawPeer:
    """A blocking socket that has done the WebSocket handshake and then sends what it is
    told, reading nothing unless asked."""

    @classmethod
    async def open(cls, host: str, port: int, path: str, subprotocol: str | None = None) -> RawPeer:
        """Connect and do the handshake (in a thread: the server shares this loop)."""
        return await asyncio.to_thread(cls, host, port, path, subprotocol)

    def __init__(self, host: str, port: int, path: str, subprotocol: str | None = None):
        self.sock = socket.create_connection((host, port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Small socket buffers, so "the peer does not read" shows up after little data.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * KiB)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {host}:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
        ]
        if subprotocol:
            lines.append(f"Sec-WebSocket-Protocol: {subprotocol}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            assert chunk, "server closed during the handshake"
            head += chunk
        assert head.startswith(b"HTTP/1.1 101"), head
        self.sent = 0
        self.blocked = threading.Event()  # a send could not complete: backpressure
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def flood(self, frame: bytes, limit: int) -> None:
        """Send ``frame`` over and over (up to ``limit`` bytes) until told to stop; note
        when a send stays blocked for a while (the server stopped reading)."""
        self.sock.settimeout(0.5)
        view = b""
        try:
            while self.sent < limit and not self.stop.is_set():
                if not view:
                    view = frame * max(1, 16 * KiB // len(frame))
                try:
                    n = self.sock.send(view)
                except TimeoutError:
                    self.blocked.set()
                    continue
                self.sent += n
                view = view[n:]
        except OSError as exc:  # the server closed it
            self.error = exc

    def start_flood(self, frame: bytes, limit: int = 400 * MiB) -> threading.Thread:
        thread = threading.Thread(target=self.flood, args=(frame, limit), daemon=True)
        thread.start()
        return thread

    def read_close_code(self, timeout: float = 60.0) -> int | None:
        """Read everything the server sent until EOF; the code of its close frame."""
        self.sock.settimeout(timeout)
        data = bytearray()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = self.sock.recv(1 << 20)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            data += chunk
        # Server frames are unmasked: walk the headers to the close frame.
        position = 0
        while position + 2 <= len(data):
            opcode, length = data[position] & 0x0F, data[position + 1] & 0x7F
            header = 2
            if length == 126:
                length, header = int.from_bytes(data[position + 2 : position + 4], "big"), 4
            elif length == 127:
                length, header = int.from_bytes(data[position + 2 : position + 10], "big"), 10
            if opcode == Opcode.CLOSE:
                start = position + header
                return int.from_bytes(data[start : start + 2], "big")
            position += header + length
        return None

    def close(self) -> None:
        self.stop.set()
        self.sock.close()
