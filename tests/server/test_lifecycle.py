"""Connections come and go while messages flow: nothing leaks, nothing raises."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
import websockets

pytestmark = pytest.mark.timeout(180)


async def test_thousand_connect_disconnect_cycles_leave_nothing_behind(nbws_server, caplog):
    caplog.set_level(logging.ERROR)
    context = nbws_server.server.context
    url = nbws_server.url("/nbws/ws")
    tasks_before = len(asyncio.all_tasks())
    sockets: list[websockets.ClientConnection] = []

    async with websockets.connect(url, subprotocols=["nbws.v1"]) as pub:
        await pub.recv()
        for i in range(1000):
            # Messages keep flowing to the subscribers that are still (half) there.
            for n in range(10):
                await pub.send(
                    json.dumps({"type": "publish", "stream": "churn", "payload": {"i": i, "n": n}})
                )
            ws = await websockets.connect(url, subprotocols=["nbws.v1"])
            await ws.recv()
            await ws.send(
                json.dumps(
                    {
                        "type": "subscribe",
                        "stream": "churn",
                        "since": -5,
                        "policy": ["drop-oldest", "block", "conflate"][i % 3],
                    }
                )
            )
            await ws.recv()
            if i % 2:
                await ws.close()
            else:
                ws.transport.abort()  # vanish without a closing handshake
            sockets.append(ws)
        await pub.send(json.dumps({"type": "info", "stream": "churn"}))
        info = json.loads(await pub.recv())
        assert info["next"] == 10_000

    async def settled() -> bool:
        live = context.hub.streams.get("churn")
        return len(context.registry) == 0 and (live is None or not live.subscribers)

    deadline = asyncio.get_running_loop().time() + 20
    while not await settled():
        assert asyncio.get_running_loop().time() < deadline, "connections were not cleaned up"
        await asyncio.sleep(0.05)
    live = context.hub.streams["churn"]
    assert not live.blocked and not live.held_acks
    assert context.hub._dirty == []
    assert "churn" not in context.hub._listeners
    assert len(asyncio.all_tasks()) <= tasks_before + 1
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_shutdown_closes_every_connection_with_1001(nbws_server):
    url = nbws_server.url("/nbws/ws")
    clients = [await websockets.connect(url, subprotocols=["nbws.v1"]) for _ in range(3)]
    for ws in clients:
        await ws.recv()
    await nbws_server.server.stop()
    for ws in clients:
        with pytest.raises(websockets.ConnectionClosed) as info:
            await ws.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == 1001
