"""The client reads the server through the message layer: what it skips, what fails the
connection (and with which close code), and how a subscription resumes. A scripted
``nbws.v1`` server in this process plays the server's side."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import pytest
from client_support import name, wait_until
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

import nbws
from nbws.protocol.messages import (
    Message,
    Subscribe,
    Subscribed,
    Welcome,
    decode_request,
    encode,
)

Handler = Callable[["Script", ServerConnection, int], Awaitable[None]]

WELCOME = Welcome(
    protocol="nbws.v1",
    server="scripted",
    connection="c",
    max_message_size=1 << 20,
    heartbeat_interval=20.0,
    dedupe_window=4096,
)
OPTIONS = {"backoff_initial": 0.05, "backoff_max": 0.1}


class Script:
    """A server running ``handler(script, ws, n)`` for its n-th connection (from 0) after
    sending ``welcome``; records the close code each connection got from the client."""

    def __init__(self, handler: Handler, welcome: Any = WELCOME) -> None:
        self.handler = handler
        self.welcome = welcome
        self.connections = 0
        self.close_codes: list[int | None] = []
        self.requests: list[Any] = []
        self.port = 0

    async def serve(self, ws: ServerConnection) -> None:
        n = self.connections
        self.connections += 1
        if isinstance(self.welcome, bytes):
            await ws.send(self.welcome, text=True)
        else:
            await send(ws, self.welcome)
        try:
            await self.handler(self, ws, n)
            await ws.wait_closed()
        except ConnectionClosed:
            pass
        self.close_codes.append(ws.close_code)

    async def receive(self, ws: ServerConnection) -> Any:
        data = await ws.recv()
        request = decode_request(data, text=isinstance(data, str))
        self.requests.append(request)
        return request


async def send(ws: ServerConnection, message: Any) -> None:
    data, text = encode(message)
    await ws.send(data, text=text)


@contextmanager
def scripted(handler: Handler, welcome: Any = WELCOME) -> Iterator[Script]:
    script = Script(handler, welcome)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> Any:
        return await serve(script.serve, "127.0.0.1", 0, subprotocols=["nbws.v1"])  # type: ignore[list-item]

    server = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    script.port = server.sockets[0].getsockname()[1]
    try:
        yield script
    finally:

        async def stop() -> None:
            server.close()
            await server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


def url(script: Script) -> str:
    return f"ws://127.0.0.1:{script.port}/nbws/ws"


def ack_for(publish: Any, offset: int, **override: Any) -> bytes:
    fields = {
        "type": "ack",
        "stream": publish.stream,
        "producer": publish.producer,
        "seq": publish.seq,
        "offset": offset,
        "epoch": "e1",
        "duplicate": False,
    }
    fields.update(override)
    return orjson.dumps(fields)


def test_an_unknown_message_type_is_skipped_and_the_connection_kept() -> None:
    async def handler(script: Script, ws: ServerConnection, n: int) -> None:
        publish = await script.receive(ws)
        await ws.send(orjson.dumps({"type": "from-the-future", "x": 1}).decode())
        await ws.send(ack_for(publish, 0).decode())

    with scripted(handler) as script:
        stream = nbws.stream(name(), url=url(script), **OPTIONS)
        assert stream.publish({"a": 1}).result(timeout=30) == 0
        assert script.connections == 1 and stream.stats().reconnects == 0
        stream.close()


@pytest.mark.parametrize(
    ("bad", "code"),
    [
        ({"seq": "seven"}, 1002),  # a field of the wrong type
        ({"epoch": None}, 1002),  # a required field missing
        (b"not json", 1007),
        (b"[1, 2]", 1008),  # JSON, but not an object
    ],
)
def test_a_malformed_server_message_fails_the_connection_with_its_close_code(
    bad: dict[str, Any] | bytes, code: int
) -> None:
    async def handler(script: Script, ws: ServerConnection, n: int) -> None:
        publish = await script.receive(ws)
        if n == 0:
            await ws.send(bad if isinstance(bad, bytes) else ack_for(publish, 0, **bad), text=True)
        else:  # the client came back and sent the publish again: ack it
            await ws.send(ack_for(publish, 0).decode())

    with scripted(handler) as script:
        stream = nbws.stream(name(), url=url(script), **OPTIONS)
        receipt = stream.publish({"a": 1})
        assert receipt.result(timeout=30) == 0
        wait_until(lambda: script.close_codes, what="the first connection closed")
        assert script.close_codes[0] == code
        assert f"closed the connection with {code}" in (stream.stats().last_error or "")
        assert script.connections == 2
        assert [r.seq for r in script.requests] == [0, 0]  # resent with the same seq
        stream.close()


def test_a_subscription_resumes_after_the_last_offset_it_received() -> None:
    async def handler(script: Script, ws: ServerConnection, n: int) -> None:
        request = await script.receive(ws)
        assert isinstance(request, Subscribe)
        start = request.since or 0
        subscribed = Subscribed(
            stream=request.stream,
            epoch="e1",
            first=0,
            next=start,
            policy="drop-oldest",  # type: ignore[arg-type]
            max_messages=10,
            max_bytes=1000,
            since=request.since,
            ref=request.id,
        )
        await send(ws, subscribed)
        for offset in range(start, start + 3):
            message = Message(request.stream, offset, "e1", 0.0, payload={"o": offset})
            await send(ws, message)
        if n == 0:
            await ws.close()  # drop the subscriber after offsets 0-2

    with scripted(handler) as script:
        stream = nbws.stream(name(), url=url(script), **OPTIONS)
        sub = stream.subscribe(since=0)
        got = [sub.get(timeout=30) for _ in range(6)]
        assert [m.offset for m in got] == list(range(6))
        assert [m.payload for m in got] == [{"o": i} for i in range(6)]
        subscribes = [r for r in script.requests if isinstance(r, Subscribe)]
        assert [(r.since, r.epoch) for r in subscribes] == [(0, None), (3, "e1")]
        assert sub.skipped_duplicates == 0
        sub.close()
        stream.close()


def test_acks_for_another_producer_are_ignored() -> None:
    async def handler(script: Script, ws: ServerConnection, n: int) -> None:
        publish = await script.receive(ws)
        await ws.send(ack_for(publish, 5, producer="someone-else").decode())
        await ws.send(ack_for(publish, 6).decode())

    with scripted(handler) as script:
        stream = nbws.stream(name(), url=url(script), **OPTIONS)
        receipt = stream.publish(1)
        assert receipt.result(timeout=30) == 6 and receipt.epoch == "e1"
        stream.close()


def test_a_malformed_welcome_is_a_failed_attempt_closed_with_1002() -> None:
    async def handler(script: Script, ws: ServerConnection, n: int) -> None:
        await ws.wait_closed()

    with scripted(handler, welcome=b'{"type": "welcome", "protocol": "nbws.v1"}') as script:
        stream = nbws.stream(name(), url=url(script), **OPTIONS)
        receipt = stream.publish(1)
        wait_until(lambda: len(script.close_codes) >= 2, what="two attempts")
        assert set(script.close_codes) == {1002}
        assert "invalid message" in (stream.stats().last_error or "")
        assert stream.stats().connected is False and not receipt.done()
        with pytest.raises(nbws.client.FlushError):
            stream.close(timeout=0)
