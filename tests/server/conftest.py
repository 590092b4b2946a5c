"""Targets for the streams tests: a real `jupyter server` and an in-process `nbws serve`."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import websockets
from conftest import make_config
from tornado.httpclient import AsyncHTTPClient
from websockets.frames import Frame, Opcode

from nbws.server.standalone import StandaloneServer


@dataclass
class Target:
    """Where a streams test talks to: WebSocket URLs, REST calls, auth."""

    kind: str
    host: str
    port: int
    base_url: str
    token: str | None

    def ws_url(self, path: str = "nbws/ws") -> str:
        url = f"ws://{self.host}:{self.port}{self.base_url}{path}"
        return url + (f"?token={self.token}" if self.token else "")

    async def rest(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"token {self.token}"} if self.token else {}
        response = await AsyncHTTPClient().fetch(
            f"http://{self.host}:{self.port}{self.base_url}{path}",
            method=method,
            body=None if body is None else json.dumps(body),
            headers=headers,
            raise_error=False,
            allow_nonstandard_methods=True,
        )
        data = json.loads(response.body) if response.body else None
        return response.code, data

    async def stream_info(self, name: str) -> dict[str, Any]:
        code, data = await self.rest("GET", f"nbws/api/streams/{name}")
        assert code == 200, data
        return data  # type: ignore[no-any-return]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Targets of a module's tests: ``TARGETS`` in the module, else Jupyter and standalone."""
    if "target" in metafunc.fixturenames:
        kinds = getattr(metafunc.module, "TARGETS", ("jupyter", "standalone"))
        metafunc.parametrize("target_kind", kinds)


@pytest.fixture
async def target(
    request: pytest.FixtureRequest, target_kind: str, server_options: dict[str, Any]
) -> AsyncIterator[Target]:
    """Each streams test runs against `jupyter server` (extension) and `nbws serve`; modules
    with ``"redis"`` in ``TARGETS`` also against `nbws serve` on a real Redis."""
    if target_kind == "jupyter":
        jp = request.getfixturevalue("jupyter_server")
        yield Target("jupyter", "127.0.0.1", jp.port, jp.base_url, jp.token)
        return
    options = dict(server_options)
    if target_kind == "redis":
        options.update(backend="redis", redis_url=request.getfixturevalue("redis_server").url)
    token = options.pop("token", None)
    server = StandaloneServer(make_config(**options), host="127.0.0.1", port=0, token=token)
    port = await server.start()
    try:
        yield Target(target_kind, "127.0.0.1", port, "/", token)
    finally:
        await server.stop()


def unique(prefix: str = "s") -> str:
    return f"{prefix}-{base64.b32encode(os.urandom(5)).decode().lower()}"


class Peer:
    """A `websockets` client speaking nbws.v1, with typed receive helpers."""

    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws
        self.welcome: dict[str, Any] = {}

    async def send(self, **message: Any) -> None:
        await self.ws.send(json.dumps(message))

    async def recv(self, timeout: float = 10.0) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        if isinstance(raw, bytes):
            from nbws.protocol.messages import split_binary

            header, payload = split_binary(raw)
            return {**header, "payload_bytes": bytes(payload)}
        return json.loads(raw)  # type: ignore[no-any-return]

    async def expect(self, kind: str, timeout: float = 10.0) -> dict[str, Any]:
        message = await self.recv(timeout)
        assert message["type"] == kind, message
        return message

    async def expect_bad_subscribe(self, options: dict[str, Any], mention: str) -> None:
        """A ``subscribe`` with ``options`` gets one readable ``bad-request`` line."""
        await self.send(type="subscribe", id=3, stream="s-opts", **options)
        error = await self.expect("error")
        assert error["code"] == "bad-request" and error["ref"] == 3
        assert mention in error["message"] and "\n" not in error["message"]

    async def subscribe(self, stream: str, **options: Any) -> dict[str, Any]:
        await self.send(type="subscribe", stream=stream, **options)
        return await self.expect("subscribed")

    async def publish_acked(
        self, stream: str, producer: str, seqs: range, **extra: Any
    ) -> list[dict]:
        for seq in seqs:
            await self.send(
                type="publish",
                stream=stream,
                producer=producer,
                seq=seq,
                payload={"seq": seq, **extra},
            )
        return [await self.expect("ack") for _ in seqs]


@pytest.fixture
async def connect(target: Target) -> AsyncIterator[Any]:
    peers: list[Peer] = []

    async def open_peer(**kwargs: Any) -> Peer:
        ws = await websockets.connect(
            target.ws_url(), subprotocols=["nbws.v1"], max_size=None, **kwargs
        )
        peer = Peer(ws)
        peer.welcome = await peer.expect("welcome")
        peers.append(peer)
        return peer

    yield open_peer
    for peer in peers:
        await peer.ws.close()


class StalledSubscriber:
    """A raw-socket nbws.v1 subscriber that stops reading after subscribing.

    Its receive buffer is tiny, so the server's transport backs up almost at once; call
    :meth:`resume` to read everything that was eventually sent.
    """

    def __init__(self, target: Target) -> None:
        self.target = target
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.stalled = False

    async def open(self) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (self.target.host, self.target.port))
        self.reader, self.writer = await asyncio.open_connection(sock=sock, limit=2**16)
        path = self.target.ws_url().split(f":{self.target.port}", 1)[1]
        key = base64.b64encode(os.urandom(16)).decode()
        self.writer.write(
            (
                f"GET {path} HTTP/1.1\r\nHost: {self.target.host}:{self.target.port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                "Sec-WebSocket-Protocol: nbws.v1\r\n\r\n"
            ).encode()
        )
        status = await self.reader.readuntil(b"\r\n\r\n")
        assert status.startswith(b"HTTP/1.1 101"), status
        welcome = await self.read_frame()
        assert json.loads(welcome.data)["type"] == "welcome"

    def send(self, **message: Any) -> None:
        assert self.writer is not None
        frame = Frame(Opcode.TEXT, json.dumps(message).encode())
        self.writer.write(frame.serialize(mask=True, extensions=[]))

    async def read_frame(self) -> Frame:
        frame = await self._next_frame()
        assert frame is not None, "connection ended"
        return frame

    async def resume(self, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Read until the server closes (or goes quiet after a close) and return messages;
        a close frame is returned as {"type": "close", "code": ..., "reason": ...}."""
        messages: list[dict[str, Any]] = []
        while True:
            frame = await asyncio.wait_for(self._next_frame(), timeout)
            if frame is None:
                return messages
            if frame.opcode is Opcode.CLOSE:
                from websockets.frames import Close

                close = Close.parse(frame.data)
                messages.append({"type": "close", "code": close.code, "reason": close.reason})
                return messages
            if frame.opcode is Opcode.TEXT:
                messages.append(json.loads(frame.data))

    async def subscribe_and_stall(self, **request: Any) -> dict[str, Any]:
        """Subscribe, wait for the reply, then stop reading."""
        self.send(type="subscribe", **request)
        (reply,) = [m for m in await self.read_until(lambda m: m["type"] == "subscribed")]
        self.stall()
        return reply

    async def read_until(self, predicate: Any, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Read messages until one satisfies ``predicate``; return all read."""
        messages: list[dict[str, Any]] = []
        while True:
            frame = await asyncio.wait_for(self._next_frame(), timeout)
            assert frame is not None, "connection ended first"
            if frame.opcode is Opcode.TEXT:
                message = json.loads(frame.data)
                messages.append(message)
                if predicate(message):
                    return messages
            elif frame.opcode is Opcode.CLOSE:
                raise AssertionError(f"closed: {frame.data!r}")

    def stall(self) -> None:
        """Stop reading from the socket (the kernel buffers fill, then the server's)."""
        assert self.writer is not None
        self.writer.transport.pause_reading()  # type: ignore[attr-defined]
        self.stalled = True

    async def _next_frame(self) -> Frame | None:
        assert self.reader is not None and self.writer is not None
        if self.stalled:
            self.writer.transport.resume_reading()  # type: ignore[attr-defined]
            self.stalled = False
        try:
            head = await self.reader.readexactly(2)
        except asyncio.IncompleteReadError:
            return None
        length = head[1] & 0x7F
        extra = b""
        if length == 126:
            extra = await self.reader.readexactly(2)
            length = int.from_bytes(extra, "big")
        elif length == 127:
            extra = await self.reader.readexactly(8)
            length = int.from_bytes(extra, "big")
        payload = await self.reader.readexactly(length)
        return Frame(Opcode(head[0] & 0x0F), payload, bool(head[0] & 0x80))

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


@pytest.fixture
async def stalled(target: Target) -> AsyncIterator[Any]:
    subs: list[StalledSubscriber] = []

    async def make() -> StalledSubscriber:
        sub = StalledSubscriber(target)
        await sub.open()
        subs.append(sub)
        return sub

    yield make
    for sub in subs:
        await sub.close()
