"""One hostile or buggy peer never costs another connection: a peer that does not read what
it is sent is throttled (the server stops reading from it) and eventually closed, a peer
that vanishes releases everything, and a burst already read is handled in bounded slices.

The hostile peers are plain blocking sockets driven from a thread, so they can write into
a full socket (their ``send`` blocks: that is the backpressure being tested) while the
server and the well-behaved client share this test's event loop.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import websockets
from conftest import RunningServer
from raw_peer import RawPeer, masked
from tornado.httpclient import AsyncHTTPClient
from websockets.frames import Opcode

from nbws.transport import Connection

pytestmark = pytest.mark.timeout(120)

KiB = 1024
MiB = 1024 * KiB
HIGH = 256 * KiB  # write_high_water of the servers below
LOW = 64 * KiB


async def until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Wait until ``condition()`` holds, polling the event loop, or fail at ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def server_conns(server: RunningServer) -> list[Connection]:
    return list(server.server.context.registry)  # type: ignore[union-attr]


async def echo_round_trip(server: RunningServer, payload: str = "are you there?") -> str:
    async with websockets.connect(server.url(), open_timeout=30) as ws:
        await ws.send(payload)
        reply = await asyncio.wait_for(ws.recv(), 30)
    assert isinstance(reply, str)
    return reply


async def health_connections(server: RunningServer) -> int:
    response = await AsyncHTTPClient().fetch(
        f"http://{server.host}:{server.port}/nbws/api/health", raise_error=False
    )
    data: dict[str, Any] = json.loads(response.body)
    return int(data["connections"])


FLOOD_OPTIONS = {
    "write_high_water": HIGH,
    "write_low_water": LOW,
    "heartbeat_interval": 0,
    "heartbeat_timeout": 3.0,
    "stall_timeout": 3.0,
}
# A peer that starts reading late still gets its close frame if it reads within
# close_timeout; give the test's flood thread ample time to stop first.
LATE_READER_OPTIONS = {**FLOOD_OPTIONS, "close_timeout": 60.0}


# --- a peer that never reads its replies --------------------------------------------------


@pytest.mark.parametrize("server_options", [FLOOD_OPTIONS])
async def test_ping_flood_is_throttled_then_closed_and_spares_others(
    nbws_server: RunningServer,
) -> None:
    flooder = await RawPeer.open(nbws_server.host, nbws_server.port, "/nbws/echo")
    await until(lambda: len(server_conns(nbws_server)) == 1)
    (conn,) = server_conns(nbws_server)
    thread = flooder.start_flood(masked(Opcode.PING, b"x" * 125))
    peak = 0

    def note_peak() -> bool:
        nonlocal peak
        peak = max(peak, conn.pending_write)
        return flooder.blocked.is_set()

    # The server stops reading from the flooder: its sends block although the flood
    # would go on for hundreds of MiB...
    await until(note_peak, timeout=60)
    for _ in range(20):  # ...and stay blocked while the server's backlog stays bounded
        note_peak()
        await asyncio.sleep(0.05)
    assert flooder.sent < 100 * MiB
    # A pong answers each ping of one read (64 KiB): at most that much over high water.
    assert peak <= HIGH + 70 * KiB, peak
    # Meanwhile another connection is served.
    assert await echo_round_trip(nbws_server) == "are you there?"
    # Stuck past the deadline: closed with 1013, its resources released.
    await until(lambda: conn.closed.done(), timeout=60)
    assert conn.session.sent_close_code == 1013
    await until(lambda: not server_conns(nbws_server), timeout=30)
    flooder.close()
    thread.join(10)


@pytest.mark.parametrize("server_options", [FLOOD_OPTIONS])
async def test_unread_info_replies_stop_reading_from_that_peer(
    nbws_server: RunningServer,
) -> None:
    async with websockets.connect(nbws_server.url("/nbws/ws"), subprotocols=["nbws.v1"]) as pub:
        await pub.recv()  # welcome
        await pub.send(json.dumps({"type": "publish", "stream": "iso-info", "payload": 1}))
        (publisher,) = server_conns(nbws_server)
        flooder = await RawPeer.open(nbws_server.host, nbws_server.port, "/nbws/ws", "nbws.v1")
        await until(lambda: len(server_conns(nbws_server)) == 2)
        (conn,) = [c for c in server_conns(nbws_server) if c is not publisher]
        request = json.dumps({"type": "info", "stream": "iso-info"}).encode()
        thread = flooder.start_flood(masked(Opcode.TEXT, request))
        peak = 0

        def note_peak() -> bool:
            nonlocal peak
            peak = max(peak, conn.pending_write)
            return flooder.blocked.is_set()

        await until(note_peak, timeout=60)
        for _ in range(20):
            note_peak()
            await asyncio.sleep(0.05)
        # Replies stop being produced once they reach high water: the inbox is not
        # turned into megabytes of unread replies.
        assert peak <= HIGH + 64 * KiB, peak
        # The publisher is still served.
        await pub.send(json.dumps({"type": "info", "stream": "iso-info", "id": 7}))
        reply = json.loads(await asyncio.wait_for(pub.recv(), 30))
        assert reply["ref"] == 7
        await until(lambda: conn.closed.done(), timeout=60)
        assert conn.session.sent_close_code == 1013
        flooder.close()
        thread.join(10)


@pytest.mark.parametrize("server_options", [LATE_READER_OPTIONS])
async def test_flooder_that_reads_late_sees_the_1013_close(nbws_server: RunningServer) -> None:
    flooder = await RawPeer.open(nbws_server.host, nbws_server.port, "/nbws/echo")
    await until(lambda: len(server_conns(nbws_server)) == 1)
    (conn,) = server_conns(nbws_server)
    thread = flooder.start_flood(masked(Opcode.PING, b"p" * 64))
    await until(lambda: conn.session.sent_close_code is not None, timeout=60)
    flooder.stop.set()
    thread.join(10)
    # Everything queued before the close frame, then the close frame itself.
    assert await asyncio.to_thread(flooder.read_close_code) == 1013
    flooder.close()


@pytest.mark.parametrize("server_options", [FLOOD_OPTIONS])
async def test_a_slow_but_steady_reader_is_throttled_not_closed(nbws_server: RunningServer) -> None:
    peer = await RawPeer.open(nbws_server.host, nbws_server.port, "/nbws/echo")
    await until(lambda: len(server_conns(nbws_server)) == 1)
    (conn,) = server_conns(nbws_server)
    read = 0

    def read_slowly() -> None:  # the peer's behaviour: ~320 KB/s, well past stall_timeout
        nonlocal read
        while read < 2 * MiB:
            read += len(peer.sock.recv(16 * KiB))
            time.sleep(0.05)

    reader = threading.Thread(target=read_slowly, daemon=True)
    reader.start()
    flood = peer.start_flood(masked(Opcode.PING, b"s" * 125))
    await until(lambda: not reader.is_alive(), timeout=90)
    assert conn.session.sent_close_code is None and conn.open
    assert peer.blocked.is_set()  # it was throttled all along
    peer.close()
    flood.join(10)


# --- a peer that vanishes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "server_options",
    [{"heartbeat_interval": 0.3, "heartbeat_timeout": 1.0, "write_high_water": HIGH}],
)
@pytest.mark.parametrize("query", ["", "?stream=1", "?fragment=4096"])
async def test_abandoned_echo_connection_is_released(
    nbws_server: RunningServer, query: str
) -> None:
    before = await health_connections(nbws_server)
    peer = await RawPeer.open(nbws_server.host, nbws_server.port, "/nbws/echo" + query)
    await until(lambda: len(server_conns(nbws_server)) == before + 1)
    message = masked(Opcode.BINARY, os.urandom(MiB))
    thread = peer.start_flood(message, limit=10 * MiB)
    await until(lambda: peer.blocked.is_set() or not thread.is_alive(), timeout=60)
    peer.close()  # unread echoes in its receive buffer: the kernel resets the connection
    thread.join(10)

    async def released() -> bool:
        return await health_connections(nbws_server) == before

    deadline = time.monotonic() + 20
    while not await released():
        assert time.monotonic() < deadline, f"still {server_conns(nbws_server)} open"
        await asyncio.sleep(0.05)
    assert await echo_round_trip(nbws_server) == "are you there?"


@pytest.mark.parametrize(
    "server_options",
    [{"heartbeat_interval": 0.3, "heartbeat_timeout": 1.0, "write_high_water": HIGH}],
)
async def test_abandoned_tap_and_streams_connections_are_released(
    nbws_server: RunningServer,
) -> None:
    before = await health_connections(nbws_server)
    # A tap that never reads, following a labelled echo connection kept busy...
    tap = await RawPeer.open(nbws_server.host, nbws_server.port, "/nbws/tap?label=iso")
    async with websockets.connect(nbws_server.url("/nbws/echo?tap=iso")) as tapped:
        for _ in range(200):
            await tapped.send("x" * 1000)
            await tapped.recv()
        # ...and an nbws.v1 peer that floods publishes, reading nothing.
        streams = await RawPeer.open(nbws_server.host, nbws_server.port, "/nbws/ws", "nbws.v1")
        publish = masked(
            Opcode.TEXT, b'{"type":"publish","stream":"iso-gone","payload":"' + b"y" * 500 + b'"}'
        )
        sub = masked(Opcode.TEXT, b'{"type":"subscribe","stream":"iso-gone"}')
        await asyncio.to_thread(streams.sock.sendall, sub)
        await until(lambda: len(server_conns(nbws_server)) == before + 3)
        flood = streams.start_flood(publish, limit=20 * MiB)
        await until(lambda: streams.blocked.is_set() or not flood.is_alive(), timeout=60)
        tap.close()
        streams.close()
        flood.join(10)

        async def released() -> bool:
            return await health_connections(nbws_server) == before + 1  # the tapped one

        deadline = time.monotonic() + 20
        while not await released():
            assert time.monotonic() < deadline, f"still {server_conns(nbws_server)} open"
            await asyncio.sleep(0.05)
        await tapped.send("still served")
        assert await tapped.recv() == "still served"
