"""Several `nbws serve` processes on one real Redis act as one server.

- Publish on one process, subscribe on the others; resume on another process than the
  one a subscriber started on (no sticky sessions needed).
- The reliable client publishes 100k messages through a connection-killing proxy while
  the server process it talks to is killed (SIGKILL) and restarted, and a subscriber
  whose process died resumes on another: every subscriber sees each message exactly
  once, in order per producer.
- Redis itself crashes and is restarted, then is paused, while the client publishes:
  no acked message is lost or repeated.
"""

from __future__ import annotations

import itertools
import json
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import pytest
from chaos import ChaosProxy
from client_support import name, wait_until
from conftest import RunningServer, start_serve_process, stop_serve_process
from redis_support import RedisProcess

import nbws
from nbws.client import Gap, Message

pytestmark = pytest.mark.timeout(300)

HISTORY = ("--set", "history_max_messages=300000", "--set", "history_max_bytes=268435456")
FAST = {"backoff_initial": 0.05, "backoff_max": 0.3}


def serve_on(redis: RedisProcess, *args: str) -> RunningServer:
    return start_serve_process("--redis", redis.url, *HISTORY, *args)


@contextmanager
def servers(redis: RedisProcess, count: int) -> Iterator[list[RunningServer]]:
    running = [serve_on(redis) for _ in range(count)]
    try:
        yield running
    finally:
        for server in running:
            if server.process is not None and server.process.poll() is None:
                stop_serve_process(server)


def url(server: RunningServer | int) -> str:
    port = server if isinstance(server, int) else server.port
    return f"http://127.0.0.1:{port}/"


def get_json(server: RunningServer, path: str) -> Any:
    with urllib.request.urlopen(url(server) + path, timeout=10) as response:
        return json.loads(response.read())


def collect(subscription: Any, count: int, timeout: float = 120) -> list[Message | Gap]:
    end = time.monotonic() + timeout
    got: list[Message | Gap] = []
    try:
        while len(got) < count:
            got.append(subscription.get(timeout=max(0.1, end - time.monotonic())))
    except TimeoutError:
        offsets = [g.offset for g in got if isinstance(g, Message)]
        gaps = [g for g in got if isinstance(g, Gap)]
        holes = [o for a, o in itertools.pairwise(offsets) if o != a + 1][:5]
        raise AssertionError(
            f"got {len(got)} of {count}: {len(gaps)} gaps, last offset "
            f"{offsets[-1] if offsets else None}, jumps at {holes}; reconnects "
            f"{subscription.reconnects}; last error {subscription.last_error!r}"
        ) from None
    return got


def assert_exactly_once_in_order(got: list[Message | Gap], count: int, producer: str) -> None:
    assert [g for g in got if isinstance(g, Gap)] == []
    messages = [g for g in got if isinstance(g, Message)]
    assert [m.offset for m in messages] == list(range(count))
    assert [m.seq for m in messages] == list(range(count))
    assert {m.producer for m in messages} == {producer}


def test_processes_share_streams_and_resume_anywhere(redis_server: RedisProcess) -> None:
    with servers(redis_server, 3) as (a, b, c), ExitStack() as stack:
        stream_name = name("shared")
        live = nbws.stream(stream_name, url=url(b))
        stack.callback(live.close)
        live_sub = live.subscribe(since=0, policy="disconnect")  # lossless: resumes
        stack.callback(live_sub.close)

        publisher = nbws.stream(stream_name, url=url(a))
        stack.callback(publisher.close)
        receipts = [publisher.publish({"i": i}) for i in range(1000)]
        publisher.flush(timeout=60)
        assert [r.result(timeout=1) for r in receipts] == list(range(1000))

        assert_exactly_once_in_order(collect(live_sub, 1000), 1000, publisher.producer)
        infos = [get_json(s, f"nbws/api/streams/{stream_name}") for s in (a, b, c)]
        assert {(i["epoch"], i["first"], i["next"]) for i in infos} == {
            (infos[0]["epoch"], 0, 1000)
        }
        for server in (a, b, c):
            health = get_json(server, "nbws/api/health")
            assert health["status"] == "ok" and health["backend"] == "redis"

        # A reader that read half on A resumes on C from where it stopped.
        first = nbws.stream(stream_name, url=url(a)).history(since=0, until=500)
        assert [m.offset for m in first] == list(range(500))
        elsewhere = nbws.stream(stream_name, url=url(c))
        stack.callback(elsewhere.close)
        rest = elsewhere.history(since=first[-1].offset + 1)
        assert [m.offset for m in rest] == list(range(500, 1000))
        assert [m.payload for m in first + rest] == [{"i": i} for i in range(1000)]


def test_server_killed_mid_stream_loses_and_repeats_nothing(redis_server: RedisProcess) -> None:
    n, binary_every = 100_000, 5_000
    blob = bytes(range(256)) * 64  # 16 KiB, sent as 8 fragments
    with servers(redis_server, 3) as running, ExitStack() as stack:
        a, b, c = running
        pub_proxy = stack.enter_context(ChaosProxy(a.port, seed=3, kill_after=(100_000, 600_000)))
        sub_proxy = stack.enter_context(
            ChaosProxy(a.port, seed=4, kill_after=(200_000, 1_000_000), modes=("downstream-cut",))
        )
        stream_name = name("killed")
        roaming = nbws.stream(stream_name, url=url(sub_proxy.port), **FAST)
        stack.callback(roaming.close)
        roaming_sub = roaming.subscribe(since=0, policy="block", yield_gaps=True)
        stack.callback(roaming_sub.close)
        steady = nbws.stream(stream_name, url=url(b), **FAST)
        stack.callback(steady.close)
        # A reader that falls behind is disconnected (1013) and catches up from history.
        steady_sub = steady.subscribe(since=0, policy="disconnect", yield_gaps=True)
        stack.callback(steady_sub.close)
        publisher = nbws.stream(stream_name, url=url(pub_proxy.port), **FAST)
        stack.callback(publisher.close)

        for i in range(n):
            if i == n // 3:
                assert a.process is not None
                a.process.kill()  # a crash: no goodbye to anyone
                a.process.wait(10)
                sub_proxy.upstream_port = c.port  # the balancer sends the reader elsewhere
                sub_proxy.kill_all()
                running[0] = a = serve_on(redis_server, "--port", str(a.port))
            if i % binary_every == binary_every - 1:
                publisher.publish_bytes(blob, chunk_size=2048, progress=False)
            else:
                publisher.publish({"i": i})
        publisher.flush(timeout=180)
        stats = publisher.stats()

        for subscription in (steady_sub, roaming_sub):
            got = collect(subscription, n)
            assert_exactly_once_in_order(got, n, publisher.producer)
            for m in got:
                assert isinstance(m, Message)
                expected = blob if m.seq % binary_every == binary_every - 1 else {"i": m.seq}
                assert m.payload == expected
        assert stats.acked == n and stats.failed == 0
        assert stats.reconnects >= 2 and stats.retransmitted > 0
        assert roaming_sub.reconnects >= 1
        print(
            f"\nscale-out: {n} messages; publisher proxy kills {dict(pub_proxy.stats.kills)}, "
            f"reconnects {stats.reconnects}, retransmitted {stats.retransmitted}, "
            f"duplicates {stats.duplicates}"
        )


def test_redis_crash_restart_and_pause_lose_nothing_acked(own_redis: RedisProcess) -> None:
    n = 20_000
    server = serve_on(own_redis, "--set", "redis_command_timeout=0.5")
    try:
        stream_name = name("redis-down")
        publisher = nbws.stream(stream_name, url=url(server), ack_timeout=3.0, **FAST)
        reader = nbws.stream(stream_name, url=url(server), **FAST)
        sub = reader.subscribe(since=0, policy="disconnect", yield_gaps=True)
        try:
            for i in range(n):
                publisher.publish({"i": i})
                if i == n // 4:  # crash Redis while appends are in flight
                    wait_until(lambda: publisher.stats().acked > 100, what="first acks")
                    own_redis.restart(crash=True)
                if i == n // 2:  # freeze it once the server has recovered
                    wait_until(
                        lambda: get_json(server, "nbws/api/health")["status"] == "ok",
                        what="recovery from the crash",
                    )
                    own_redis.pause()
                    publisher.publish({"i": i + 1})  # in flight while Redis is frozen
                    wait_until(
                        lambda: get_json(server, "nbws/api/health")["status"] == "degraded",
                        what="health to show degraded",
                    )
                    assert "unavailable" in get_json(server, "nbws/api/health")["reason"]
                    own_redis.resume()
            publisher.publish({"i": n})
            publisher.flush(timeout=120)
            stats = publisher.stats()
            total = n + 2
            assert_exactly_once_in_order(collect(sub, total), total, publisher.producer)
            history = reader.history(since=0)
            assert [m.seq for m in history] == list(range(total))
        finally:
            own_redis.resume()
            sub.close()
            publisher.close()
            reader.close()
        assert stats.acked == total and stats.failed == 0
        assert stats.retransmitted > 0  # the outages were felt and retried through
        assert get_json(server, "nbws/api/health")["status"] == "ok"
    finally:
        log = stop_serve_process(server)
    assert "unavailable" in log  # the server said why it nacked
