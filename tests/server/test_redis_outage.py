"""What a client sees over nbws.v1 while Redis is down: retryable nacks, a clear error on
subscribe, status messages, and recovery by itself (a real `redis-server`, stopped)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import websockets
from conftest import make_config
from redis_support import RedisProcess
from tornado.httpclient import AsyncHTTPClient

from nbws.server.standalone import StandaloneServer

from .conftest import Peer, unique

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def server(own_redis: RedisProcess) -> AsyncIterator[str]:
    config = make_config(backend="redis", redis_url=own_redis.url, redis_command_timeout=0.3)
    app = StandaloneServer(config, host="127.0.0.1", port=0, token=None)
    port = await app.start()
    try:
        yield f"ws://127.0.0.1:{port}/nbws/ws"
    finally:
        await app.stop()


async def open_peer(url: str) -> Peer:
    ws = await websockets.connect(url, subprotocols=["nbws.v1"])
    peer = Peer(ws)
    peer.welcome = await peer.expect("welcome")
    return peer


async def next_of(peer: Peer, kind: str, statuses: list[dict[str, Any]]) -> dict[str, Any]:
    """The next message of ``kind``; status notices on the way go to ``statuses``."""
    while True:
        message = await peer.recv()
        if message["type"] == kind:
            return message
        assert message["type"] == "status", message
        statuses.append(message)


async def test_publishes_are_nacked_with_retry_while_redis_is_down(
    server: str, own_redis: RedisProcess
) -> None:
    stream = unique()
    pub, bystander = await open_peer(server), await open_peer(server)
    await pub.publish_acked(stream, "p", range(1))
    own_redis.kill()

    await pub.send(type="publish", stream=stream, producer="p", seq=1, payload={"seq": 1})
    statuses: list[dict[str, Any]] = []
    nack = await next_of(pub, "nack", statuses)
    assert (nack["code"], nack["retry"], nack["seq"]) == ("unavailable", True, 1)
    assert "broker unavailable" in nack["reason"]

    await bystander.send(type="subscribe", stream=stream, id="s1")
    error = await next_of(bystander, "error", [])
    assert (error["code"], error["ref"]) == ("unavailable", "s1")
    if not statuses:  # the reader or the append noticed first: either way, one notice
        statuses.append(await pub.expect("status"))
    assert statuses[0]["state"] == "degraded" and "unavailable" in statuses[0]["reason"]

    own_redis.start()  # same port and data: the retry lands, as the client's would
    states = []
    while True:
        await pub.send(type="publish", stream=stream, producer="p", seq=1, payload={"seq": 1})
        reply = await pub.recv()
        while reply["type"] == "status":
            states.append(reply["state"])
            reply = await pub.recv()
        if reply["type"] == "ack":
            break
        assert (reply["type"], reply["code"]) == ("nack", "unavailable"), reply
        await asyncio.sleep(0.05)  # the client's retry pacing
    assert reply["offset"] == 1 and reply["duplicate"] is False
    if not states or states[-1] != "ok":  # the reader may recover after the commands
        states.append((await pub.expect("status"))["state"])
    assert states[-1] == "ok"  # told of the recovery
    sub = await open_peer(server)
    await sub.subscribe(stream, since=0)
    got = [await sub.expect("message") for _ in range(2)]
    assert [m["payload"]["seq"] for m in got] == [0, 1]
    for peer in (pub, bystander, sub):
        await peer.ws.close()


async def test_rest_answers_503_and_health_stays_200_while_redis_is_down(
    server: str, own_redis: RedisProcess
) -> None:
    base = server.replace("ws://", "http://").replace("/nbws/ws", "/nbws/api")
    http = AsyncHTTPClient()
    assert (await http.fetch(f"{base}/streams/{unique()}", method="POST", body="{}")).code == 201
    own_redis.kill()
    response = await http.fetch(f"{base}/streams", raise_error=False)
    assert response.code == 503 and response.headers["Retry-After"] == "1"
    body = json.loads(response.body)
    assert body["status"] == 503 and "\n" not in body["message"] and body["message"]
    health = await http.fetch(f"{base}/health", raise_error=False)
    assert health.code == 200
    answer = json.loads(health.body)
    assert answer["status"] == "degraded" and answer["streams"] is None
