"""The REST API: bodies checked with the nbws.v1 field rules, one-line JSON errors with
no side effect, listings that survive a bad stored value, and health's stream count."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from conftest import make_config
from tornado.httpclient import AsyncHTTPClient

from nbws.broker import HistoryLimits
from nbws.server.standalone import StandaloneServer

TARGETS = ("jupyter", "standalone", "redis")

pytestmark = pytest.mark.timeout(120)


def unique() -> str:
    return f"rest-{uuid.uuid4().hex[:10]}"


def one_line_error(data: Any) -> str:
    assert isinstance(data, dict) and isinstance(data["message"], str), data
    assert "\n" not in data["message"] and "Traceback" not in data["message"], data
    return data["message"]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"max_messages": 99999999999999999999999}, "max_messages"),
        ({"max_messages": 2**53}, "at most"),
        ({"max_messages": 0}, "at least 1"),
        ({"max_messages": -5}, "at least 1"),
        ({"max_messages": 1.5}, "integer"),
        ({"max_messages": "10"}, "integer"),
        ({"max_messages": True}, "integer"),
        ({"max_bytes": -1}, "at least 0"),
        ({"max_bytes": 1e30}, "integer"),
        ({"max_age": "NaN"}, "number"),
        ({"max_age": -1.0}, "at least 0"),
        ({"max_age": 1e300}, "at most"),
        ([1, 2], "object"),
    ],
)
async def test_bad_create_bodies_are_400_and_create_nothing(target, body, words):
    stream = unique()
    code, data = await target.rest("POST", f"nbws/api/streams/{stream}", body)
    assert code == 400, data
    assert words in one_line_error(data)
    code, _ = await target.rest("GET", f"nbws/api/streams/{stream}")
    assert code == 404  # no side effect
    code, listing = await target.rest("GET", "nbws/api/streams")
    assert code == 200 and stream not in {s["name"] for s in listing["streams"]}


async def test_body_that_is_not_json_is_400(target):
    stream = unique()
    headers = {"Authorization": f"token {target.token}"} if target.token else {}
    response = await AsyncHTTPClient().fetch(
        f"http://{target.host}:{target.port}{target.base_url}nbws/api/streams/{stream}",
        method="POST",
        body="{nope",
        headers=headers,
        raise_error=False,
    )
    assert response.code == 400
    assert "not JSON" in one_line_error(json.loads(response.body))


async def test_create_with_limits_then_update(target):
    stream = unique()
    body = {"max_messages": 50, "max_bytes": 0, "max_age": 2.5}
    code, data = await target.rest("POST", f"nbws/api/streams/{stream}", body)
    assert code == 201, data
    assert data["limits"] == body and data["name"] == stream and data["next"] == 0
    code, data = await target.rest("POST", f"nbws/api/streams/{stream}", {"max_messages": 7})
    assert code == 200 and data["limits"]["max_messages"] == 7


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({}, "payload"),
        ({"payload": 1, "key": 5}, "key"),
        ({"payload": 1, "key": "k" * 300}, "longer"),
        ("just a string", "object"),
    ],
)
async def test_bad_publish_bodies_are_400_and_append_nothing(target, body, words):
    stream = unique()
    code, _ = await target.rest("POST", f"nbws/api/streams/{stream}", {})
    assert code == 201
    code, data = await target.rest("POST", f"nbws/api/streams/{stream}/messages", body)
    assert code == 400, data
    assert words in one_line_error(data)
    assert (await target.stream_info(stream))["next"] == 0


async def test_publish_body_with_null_payload_and_key(target):
    stream = unique()
    code, data = await target.rest(
        "POST", f"nbws/api/streams/{stream}/messages", {"payload": None, "key": "k"}
    )
    assert code == 201 and data["offset"] == 0 and data["stream"] == stream
    code, page = await target.rest("GET", f"nbws/api/streams/{stream}/messages")
    assert code == 200
    assert page["messages"][0]["payload"] is None and page["messages"][0]["key"] == "k"


async def test_health_counts_the_brokers_streams(target):
    names = [unique() for _ in range(3)]
    for name in names:
        code, _ = await target.rest("POST", f"nbws/api/streams/{name}", {})
        assert code == 201

    async def counts() -> tuple[int, int]:
        code, health = await target.rest("GET", "nbws/api/health")
        assert code == 200 and health["status"] == "ok"
        code, listing = await target.rest("GET", "nbws/api/streams")
        assert code == 200
        return health["streams"], len(listing["streams"])

    count, listed = await counts()
    assert count == listed and count >= 3
    code, _ = await target.rest("DELETE", f"nbws/api/streams/{names[0]}")
    assert code == 204
    assert await counts() == (count - 1, listed - 1)  # deleted streams no longer count


@pytest.mark.parametrize("query", ["limit=0", "limit=-3", "since=x", "until=99999999999999999999"])
async def test_bad_history_queries_are_400(target, query):
    stream = unique()
    code, _ = await target.rest("POST", f"nbws/api/streams/{stream}/messages", {"payload": 1})
    assert code == 201
    code, data = await target.rest("GET", f"nbws/api/streams/{stream}/messages?{query}")
    assert code == 400 and one_line_error(data)


async def test_missing_stream_errors_are_json(target):
    code, data = await target.rest("GET", f"nbws/api/streams/{unique()}")
    assert code == 404 and "no stream named" in one_line_error(data)
    code, data = await target.rest("GET", "nbws/api/streams/bad%20name")
    assert code == 400 and "stream names" in one_line_error(data)


async def test_a_bad_stored_limit_never_breaks_the_listing_memory(nbws_server):
    """Limits stored before they were checked (here put straight into the broker)."""
    broker = nbws_server.server.context.broker
    await broker.create("bad", HistoryLimits(max_messages=10**23, max_bytes=5))
    await broker.create("good")
    response = await AsyncHTTPClient().fetch(
        f"http://127.0.0.1:{nbws_server.port}/nbws/api/streams"
    )
    assert response.code == 200
    assert [s["name"] for s in json.loads(response.body)["streams"]] == ["good"]


async def test_a_bad_stored_limit_never_breaks_the_listing_redis(redis_server):
    """A stream hash with an unreadable limit (as an unchecked create left it, surviving
    restarts): listed with the value clamped, and every other stream still listed."""
    import redis.asyncio as aioredis

    prefix = f"t{uuid.uuid4().hex[:8]}"
    config = make_config(backend="redis", redis_url=redis_server.url, redis_prefix=prefix)
    server = StandaloneServer(config, host="127.0.0.1", port=0)
    port = await server.start()
    client = aioredis.from_url(redis_server.url)
    try:
        url = f"http://127.0.0.1:{port}/nbws/api/streams"
        for name in ("bad", "good"):
            response = await AsyncHTTPClient().fetch(
                f"{url}/{name}", method="POST", body="{}", raise_error=False
            )
            assert response.code == 201
        await client.hset(f"{prefix}:{{bad}}:meta", mapping={"mm": "1e+23", "ma": "nan"})
        response = await AsyncHTTPClient().fetch(url, raise_error=False)
        assert response.code == 200, response.body
        streams = {s["name"]: s for s in json.loads(response.body)["streams"]}
        assert set(streams) == {"bad", "good"}
        assert streams["bad"]["limits"]["max_messages"] == 2**53 - 1
        health = await AsyncHTTPClient().fetch(f"http://127.0.0.1:{port}/nbws/api/health")
        assert json.loads(health.body)["streams"] == 2
    finally:
        await client.aclose()
        await server.stop()
