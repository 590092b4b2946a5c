"""Two users' servers on one Redis, kept apart as docs/deploying.md tells hub admins:
a ``redis_prefix`` per server and a Redis ACL user per prefix (``~prefix:*``).

Two ``nbws serve --redis`` processes (each its own prefix, each logged in to Redis as its
own ACL user) share one real ``redis-server``. Each lists and delivers only its own
streams, even for a stream name both use; each ACL user is refused the other's keys.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from conftest import RunningServer, start_serve_process, stop_serve_process
from redis_support import RedisProcess, data_directory
from websockets.sync.client import connect

from nbws.protocol.messages import (
    PROTOCOL,
    Message,
    Subscribe,
    Subscribed,
    Welcome,
    decode_event,
    encode,
)

from .nginx import DOC

TENANTS = ("nbws-alice", "nbws-bob")


@dataclass
class Tenant:
    prefix: str
    password: str
    server: RunningServer
    redis_port: int

    def redis(self) -> redis.Redis:
        """A Redis connection as this tenant's ACL user (what code in their server could open)."""
        return redis.Redis(
            port=self.redis_port, username=self.prefix, password=self.password, socket_timeout=10
        )

    def rest(self, method: str, path: str, body: Any = None) -> Any:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.server.port}/nbws/api/{path}",
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={
                "Authorization": f"token {self.server.token}",
                "Content-Type": "application/json",
            },
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())


def documented_acl(prefix: str, password: str) -> list[str]:
    """The doc's ``ACL SETUSER`` line for ``nbws-alice``, for ``prefix``, as arguments."""
    text = DOC.read_text(encoding="utf-8")
    [line] = re.findall(r"^ACL SETUSER nbws-alice .*$", text, re.M)
    line = line.replace("nbws-alice", prefix).replace(">alice-secret", f">{password}")
    return line.split()[3:]


@pytest.fixture(scope="module")
def shared_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    server = RedisProcess(data_directory(tmp_path_factory.mktemp("redis")), fsync="everysec")
    server.start()
    admin = redis.Redis(port=server.port)
    admin.execute_command("ACL", "SETUSER", "default", "on", "nopass", "~*", "&*", "+@all")
    yield server
    server.stop()
    shutil.rmtree(server.directory, ignore_errors=True)


@pytest.fixture(scope="module")
def tenants(shared_redis: RedisProcess) -> Iterator[dict[str, Tenant]]:
    admin = redis.Redis(port=shared_redis.port)
    out: dict[str, Tenant] = {}
    try:
        for prefix in TENANTS:
            password = secrets.token_hex(12)
            admin.execute_command("ACL", "SETUSER", prefix, *documented_acl(prefix, password))
            url = f"redis://{prefix}:{password}@127.0.0.1:{shared_redis.port}/0"
            server = start_serve_process(
                "--redis", url, f"--set=redis_prefix={prefix}", token=secrets.token_hex(16)
            )
            out[prefix] = Tenant(prefix, password, server, shared_redis.port)
        yield out
    finally:
        for tenant in out.values():
            stop_serve_process(tenant.server)


def _publish(tenant: Tenant, stream: str, payloads: list[Any]) -> None:
    for payload in payloads:
        tenant.rest("POST", f"streams/{stream}/messages", {"payload": payload})


def _subscribe_all(tenant: Tenant, stream: str) -> tuple[Subscribed, list[Message]]:
    """Subscribe from offset 0 over nbws.v1; everything the server delivers."""
    url = f"ws://127.0.0.1:{tenant.server.port}/nbws/ws"
    with connect(
        url,
        subprotocols=[PROTOCOL],  # type: ignore[list-item]
        additional_headers={"Authorization": f"token {tenant.server.token}"},
        open_timeout=30,
    ) as ws:
        assert isinstance(decode_event(ws.recv(timeout=30)), Welcome)
        data, text = encode(Subscribe(stream=stream, since=0))
        ws.send(data.decode() if text else data)
        subscribed = decode_event(ws.recv(timeout=30))
        assert isinstance(subscribed, Subscribed), subscribed
        messages: list[Message] = []
        while len(messages) < subscribed.next - subscribed.first:
            event = decode_event(ws.recv(timeout=30))
            if isinstance(event, Message):
                messages.append(event)
        with contextlib.suppress(TimeoutError):
            extra = decode_event(ws.recv(timeout=1))
            raise AssertionError(f"delivered more than the stream holds: {extra}")
    return subscribed, messages


def test_servers_with_their_own_prefix_see_only_their_own_streams(
    tenants: dict[str, Tenant],
) -> None:
    alice, bob = tenants["nbws-alice"], tenants["nbws-bob"]
    _publish(alice, "grades", [{"who": "alice", "n": i} for i in range(3)])
    _publish(alice, "alice-notes", ["private"])
    _publish(bob, "grades", [{"who": "bob", "n": 0}])

    assert alice.rest("GET", "health")["backend"] == "redis"
    listed = {
        name: sorted(s["name"] for s in t.rest("GET", "streams")["streams"])
        for name, t in tenants.items()
    }
    assert listed == {"nbws-alice": ["alice-notes", "grades"], "nbws-bob": ["grades"]}

    _, theirs = _subscribe_all(bob, "grades")
    assert [(m.offset, m.payload) for m in theirs] == [(0, {"who": "bob", "n": 0})]
    _, mine = _subscribe_all(alice, "grades")
    assert [m.payload["who"] for m in mine] == ["alice"] * 3
    subscribed, none = _subscribe_all(bob, "alice-notes")  # created empty in bob's prefix
    assert (subscribed.first, subscribed.next, none) == (0, 0, [])


def test_an_acl_user_cannot_read_the_other_prefix(tenants: dict[str, Tenant]) -> None:
    alice, bob = tenants["nbws-alice"], tenants["nbws-bob"]
    _publish(alice, "acl-check", [{"secret": 42}])
    _publish(bob, "acl-check", [{"secret": 7}])
    as_bob = bob.redis()
    # bob's own keys: readable (so the refusal below is the ACL, not a broken login).
    assert len(as_bob.xrange("nbws-bob:{acl-check}:log")) == 1
    for command in (
        lambda: as_bob.xrange("nbws-alice:{acl-check}:log"),
        lambda: as_bob.hgetall("nbws-alice:{acl-check}:meta"),
        lambda: as_bob.smembers("nbws-alice:streams"),
        lambda: as_bob.delete("nbws-alice:{acl-check}:log"),
        lambda: as_bob.keys("*"),
        lambda: as_bob.flushall(),
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            command()
    # alice's stream is intact after bob's attempts.
    _, messages = _subscribe_all(alice, "acl-check")
    assert [m.payload for m in messages] == [{"secret": 42}]


def test_an_acl_missing_a_command_reports_the_broker_unavailable(
    shared_redis: RedisProcess,
) -> None:
    """A too-narrow ACL (here without ``TIME``, which the append script calls) is a 503
    with a reason naming the ACL, not a 500."""
    admin = redis.Redis(port=shared_redis.port)
    prefix, password = "nbws-carol", secrets.token_hex(12)
    acl = [arg for arg in documented_acl(prefix, password) if arg != "+time"]
    admin.execute_command("ACL", "SETUSER", prefix, *acl)
    url = f"redis://{prefix}:{password}@127.0.0.1:{shared_redis.port}/0"
    server = start_serve_process(
        "--redis", url, f"--set=redis_prefix={prefix}", token=secrets.token_hex(16)
    )
    carol = Tenant(prefix, password, server, shared_redis.port)
    try:
        with pytest.raises(urllib.error.HTTPError) as refused:
            carol.rest("POST", "streams/notes/messages", {"payload": 1})
        assert refused.value.code == 503
        body = json.loads(refused.value.read())
        assert "ACL" in body["message"], body
    finally:
        stop_serve_process(server)
