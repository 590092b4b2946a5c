"""One connection's burst of requests is handled in bounded slices of the loop's time."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import websockets
from conftest import make_config

from nbws.server.standalone import StandaloneServer
from nbws.server.streams_endpoint import StreamsEndpoint

BURST = 200


@contextlib.asynccontextmanager
async def streams_connection() -> AsyncIterator[Any]:
    """An in-process ``nbws serve`` and one nbws.v1 connection to it (welcome read)."""
    server = StandaloneServer(make_config(), host="127.0.0.1", port=0)
    port = await server.start()
    try:
        async with websockets.connect(
            f"ws://127.0.0.1:{port}/nbws/ws", subprotocols=["nbws.v1"]
        ) as ws:
            await ws.recv()  # welcome
            yield ws
    finally:
        await server.stop()


COST = 0.0002  # seconds of server CPU per request


async def test_a_burst_of_costly_requests_yields_to_the_loop_between_slices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Requests that cost the server 200 us each (publishes to a stream with many
    subscribers, say) used to be handled 64 per loop turn whatever they cost: 13 ms in
    which no other connection was served. Now a connection yields once its handling
    budget for the turn is spent."""
    handled = 0
    original = StreamsEndpoint.handle

    async def costly(self: StreamsEndpoint, client: Any, request: Any) -> None:
        nonlocal handled
        until = time.perf_counter() + COST
        while time.perf_counter() < until:
            pass
        handled += 1
        await original(self, client, request)

    async with streams_connection() as ws:
        monkeypatch.setattr(StreamsEndpoint, "handle", costly)
        per_turn: list[int] = []

        async def count_per_loop_turn() -> None:
            last = 0
            while last < BURST:
                await asyncio.sleep(0)  # one loop turn
                if handled != last:
                    per_turn.append(handled - last)
                    last = handled

        counting = asyncio.ensure_future(count_per_loop_turn())
        frame = '{"type":"publish","stream":"burst","payload":1}'
        await asyncio.gather(*(ws.send(frame) for _ in range(BURST)))
        await asyncio.wait_for(counting, 60)
    assert sum(per_turn) == BURST
    assert max(per_turn) <= 16, f"requests handled per loop turn: {per_turn}"


async def test_a_request_s_reply_is_written_before_the_loop_moves_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The ack of a publish (and any delivery it caused) is on the wire when the
    connection stops handling, not one round of the loop later behind every other
    connection's next slice: a callback queued before the request was handled already
    sees the bytes written."""
    written: list[int] = []
    original = StreamsEndpoint.handle

    async def observed(self: StreamsEndpoint, client: Any, request: Any) -> None:
        conn = client.sink.conn
        before = conn.bytes_out
        asyncio.get_running_loop().call_soon(lambda: written.append(conn.bytes_out - before))
        await original(self, client, request)

    async with streams_connection() as ws:
        monkeypatch.setattr(StreamsEndpoint, "handle", observed)
        await ws.send('{"type":"publish","stream":"s","producer":"p","seq":0,"payload":1}')
        ack = await asyncio.wait_for(ws.recv(), 10)
    assert '"ack"' in str(ack)
    assert written and written[0] > 0, "the ack was still corked when the loop moved on"


async def test_a_quiet_request_waits_for_one_short_slice_of_a_burst_not_the_burst(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While one connection works through a burst of costly requests, another
    connection's request goes through its steps (read, parse, handle, reply) each ahead
    of the busy connection's next slice, and those slices are short while it is there.

    Before, the busy connection resumed from the ready queue, ahead of the quiet one's
    I/O, and kept 0.5 ms slices: a quiet request (its client in this same loop) waited
    for 21-24 of the burst's 200 us requests; with either change alone, 7-14; with both,
    3-5."""
    handled = 0
    underway = asyncio.Event()  # 20 of the burst handled
    original = StreamsEndpoint.handle

    async def costly(self: StreamsEndpoint, client: Any, request: Any) -> None:
        nonlocal handled
        if getattr(request, "stream", "") == "burst":
            until = time.perf_counter() + COST
            while time.perf_counter() < until:
                pass
            handled += 1
            if handled == 20:
                underway.set()
        await original(self, client, request)

    async with streams_connection() as busy:
        monkeypatch.setattr(StreamsEndpoint, "handle", costly)
        port = busy.remote_address[1]
        async with websockets.connect(
            f"ws://127.0.0.1:{port}/nbws/ws", subprotocols=["nbws.v1"]
        ) as quiet:
            await quiet.recv()  # welcome
            frame = '{"type":"publish","stream":"burst","payload":1}'
            await asyncio.gather(*(busy.send(frame) for _ in range(BURST)))
            await asyncio.wait_for(underway.wait(), 10)
            waited = []
            for n in range(5):
                before = handled
                await quiet.send(f'{{"type":"subscribe","stream":"quiet{n}"}}')
                reply = await asyncio.wait_for(quiet.recv(), 10)
                assert '"subscribed"' in str(reply)
                waited.append(handled - before)
            assert handled < BURST, "the burst ended before the quiet requests were answered"
    assert max(waited) <= 6, f"burst requests handled while a quiet one waited: {waited}"
