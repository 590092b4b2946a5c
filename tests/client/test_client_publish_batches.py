"""Batched publishing from the client's side: runs of queued messages go out as
``publish_batch`` and every message still gets exactly one offset, in order, through
killed connections (batches cut mid-frame, partly acked batches retransmitted), across
server processes sharing a Redis (a retransmitted batch lands on another process), a
server restart, mixed with per-message clients, and against a server without batches.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import pytest
from chaos import ChaosProxy
from client_support import http_url, name, serving, wait_until
from conftest import RunningServer, make_config, start_serve_process, stop_serve_process
from redis_support import RedisProcess

import nbws
from nbws.client import Gap, Message
from nbws.protocol import messages

pytestmark = pytest.mark.timeout(300)

BLOB = bytes(range(256)) * 40  # 10 KiB, sent as 5 fragments
PAD = "x" * 50  # ~70-byte messages: 4 MB of batches, dozens of kills
FAST = {"backoff_initial": 0.05, "backoff_max": 0.3}
HISTORY = ("--set", "history_max_messages=300000", "--set", "history_max_bytes=268435456")


def collect(subscription: Any, count: int, timeout: float = 120) -> list[Message | Gap]:
    end = time.monotonic() + timeout
    got: list[Message | Gap] = []
    while len(got) < count:
        got.append(subscription.get(timeout=max(0.1, end - time.monotonic())))
    return got


def by_producer(got: list[Message | Gap]) -> dict[str, list[Message]]:
    assert [g for g in got if isinstance(g, Gap)] == []
    out: dict[str, list[Message]] = {}
    for m in got:
        assert isinstance(m, Message)
        out.setdefault(m.producer or "", []).append(m)
    return out


def test_publish_many_is_batched_and_acked_per_message(tmp_path: Any) -> None:
    with serving() as server:
        stream = nbws.stream(name("many"), url=http_url(server))
        receipts = stream.publish_many({"i": i} for i in range(5000))
        stream.flush(timeout=60)
        assert [r.result(0) for r in receipts] == list(range(5000))
        assert stream._publisher.link.batches_sent >= 1
        history = stream.history(0)
        stream.close()
    assert [(m.offset, m.seq, m.payload) for m in history] == [
        (i, i, {"i": i}) for i in range(5000)
    ]


def test_chaos_batches_exactly_once_in_order() -> None:
    """Connections reset mid-frame (inside batches), after a batch and before its ack,
    and with acks lost: each message is appended once and in order."""
    n = 60_000
    with (
        serving("history_max_messages=200000", "history_max_bytes=268435456") as server,
        ChaosProxy(
            server.port,
            seed=11,
            kill_after=(20_000, 200_000),
            modes=("upstream-cut", "ack-loss", "mid-fragment"),
        ) as proxy,
    ):
        stream = nbws.stream(name("bchaos"), url=f"http://127.0.0.1:{proxy.port}/", **FAST)
        receipts = []
        for start in range(0, n, 5000):  # publish_many and plain publishes, interleaved
            receipts += stream.publish_many(
                {"i": i, "pad": PAD} for i in range(start, start + 2500)
            )
            receipts += [
                stream.publish({"i": i, "pad": PAD}) for i in range(start + 2500, start + 4999)
            ]  # and a fragmented binary message between two batches:
            receipts.append(stream.publish_bytes(BLOB, chunk_size=2048, progress=False))
        stream.flush(timeout=180)
        stats = stream.stats()
        batches = stream._publisher.link.batches_sent
        reader = nbws.stream(stream.name, url=http_url(server))
        history = reader.history(0)
        reader.close()
        stream.close()
        kills = proxy.stats.kills
    assert [r.result(0) for r in receipts] == list(range(n))
    assert [(m.offset, m.seq) for m in history] == [(i, i) for i in range(n)]
    for m in history:
        if m.seq % 5000 == 4999:
            assert m.payload == BLOB
        else:
            assert m.payload == {"i": m.seq, "pad": PAD}
    assert batches > 0 and sum(kills.values()) >= 3, (batches, dict(kills))
    # batches cut mid-frame, acks of appended batches lost, a fragmented message cut
    assert kills["upstream-cut"] >= 1 and kills["ack-loss"] >= 1 and kills["mid-fragment"] >= 1
    assert stats.retransmitted > 0 and stats.duplicates > 0  # partly acked batches resent
    assert stats.acked == n and stats.failed == 0


def test_batches_on_a_link_that_kills_every_connection_within_a_fraction_of_a_second() -> None:
    """Every connection is reset 0.05-0.3 s after it opens, whatever it carries: with
    default options every message is still acked once and in order. (Publishing goes
    on, 50,000 at a time, until it has outlived three connections: a fast client and
    server deliver 200,000 within one or two.)"""
    n, chunk = 200_000, 50_000
    with (
        serving("history_max_messages=2000000", "history_max_bytes=1073741824") as server,
        ChaosProxy(server.port, seed=13, kill_within=(0.05, 0.3)) as proxy,
    ):
        stream = nbws.stream(name("bdying"), url=f"http://127.0.0.1:{proxy.port}/")
        receipts: list[Any] = []
        while len(receipts) < n or (stream.stats().reconnects < 3 and len(receipts) < 10 * n):
            start = len(receipts)
            receipts += stream.publish_many(
                {"i": i, "pad": PAD} for i in range(start, start + chunk)
            )
            stream.flush(timeout=240)
        n = len(receipts)
        stats = stream.stats()
        kills = proxy.stats.kills
        reader = nbws.stream(stream.name, url=http_url(server))
        history = reader.history(0)
        reader.close()
        stream.close()
    assert [r.result(0) for r in receipts] == list(range(n))
    assert [(m.offset, m.seq) for m in history] == [(i, i) for i in range(n)]
    assert stats.acked == n and stats.failed == 0
    assert kills["timer"] >= 3 and stats.reconnects >= 3, (dict(kills), stats.reconnects)


@contextmanager
def two_servers(redis: RedisProcess) -> Iterator[tuple[RunningServer, RunningServer]]:
    a = start_serve_process("--redis", redis.url, *HISTORY)
    b = start_serve_process("--redis", redis.url, *HISTORY)
    try:
        yield a, b
    finally:
        for server in (a, b):
            stop_serve_process(server)


def test_retransmitted_batches_are_deduplicated_across_server_processes(
    redis_server: RedisProcess,
) -> None:
    """The proxy sends each new connection to the other process: a batch whose ack was
    lost is resent to a process that did not append it, and Redis recognises it."""
    n = 40_000
    with two_servers(redis_server) as (a, b), ExitStack() as stack:
        proxy = stack.enter_context(
            ChaosProxy(
                a.port, seed=12, kill_after=(20_000, 100_000), modes=("upstream-cut", "ack-loss")
            )
        )
        stop = threading.Event()

        def alternate() -> None:
            while not stop.wait(0.05):
                proxy.upstream_port = b.port if proxy.upstream_port == a.port else a.port

        flipper = threading.Thread(target=alternate, daemon=True)
        flipper.start()
        stack.callback(flipper.join, 10)
        stack.callback(stop.set)
        publisher = nbws.stream(name("two"), url=f"http://127.0.0.1:{proxy.port}/", **FAST)
        stack.callback(publisher.close)
        receipts = publisher.publish_many({"i": i, "pad": PAD} for i in range(n))
        publisher.flush(timeout=180)
        stats = publisher.stats()
        reader = nbws.stream(publisher.name, url=http_url(b))
        stack.callback(reader.close)
        history = reader.history(0)
        assert publisher._publisher.link.batches_sent > 0
    assert [r.result(0) for r in receipts] == list(range(n))
    assert [(m.offset, m.seq) for m in history] == [(i, i) for i in range(n)]
    assert stats.duplicates > 0 and stats.reconnects >= 1


def test_server_restart_on_redis_mid_batches_loses_and_repeats_nothing(
    redis_server: RedisProcess,
) -> None:
    n = 100_000
    server = start_serve_process("--redis", redis_server.url, *HISTORY)
    try:
        publisher = nbws.stream(name("restart"), url=http_url(server), **FAST)
        first = publisher.publish_many({"i": i} for i in range(n // 2))
        wait_until(lambda: publisher.stats().acked >= 1000, what="the first acks")
        assert publisher.stats().acked < n // 2  # batches are in flight when it dies
        assert server.process is not None
        server.process.kill()  # a crash, with batches in flight
        server.process.wait(10)
        server = start_serve_process(
            "--redis", redis_server.url, *HISTORY, "--port", str(server.port)
        )
        rest = publisher.publish_many({"i": i} for i in range(n // 2, n))
        publisher.flush(timeout=180)
        stats = publisher.stats()
        history = nbws.stream(publisher.name, url=http_url(server)).history(0)
        publisher.close()
    finally:
        stop_serve_process(server)
    assert [r.result(0) for r in first + rest] == list(range(n))
    assert [(m.offset, m.seq, m.payload["i"]) for m in history] == [(i, i, i) for i in range(n)]
    assert stats.reconnects >= 1


def test_per_message_and_batching_clients_share_a_stream() -> None:
    with serving() as server:
        reader = nbws.stream(name("mixed"), url=http_url(server))
        sub = reader.subscribe(since=0, policy="block", yield_gaps=True)
        old = nbws.stream(reader.name, url=http_url(server), batch=False)
        new = nbws.stream(reader.name, url=http_url(server))
        done = []

        def publish(stream: Any) -> None:
            for i in range(5000):
                stream.publish({"i": i})
            stream.flush(timeout=60)
            done.append(stream.producer)

        threads = [threading.Thread(target=publish, args=(s,)) for s in (old, new)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        got = collect(sub, 10_000)
        old_batches, new_batches = (
            old._publisher.link.batches_sent,
            new._publisher.link.batches_sent,
        )
        for handle in (sub, old, new, reader):
            handle.close()
    assert sorted(done) == sorted([old.producer, new.producer])
    assert [m.offset for m in got if isinstance(m, Message)] == list(range(10_000))
    for producer, items in by_producer(got).items():
        assert [m.seq for m in items] == list(range(5000)), producer
        assert [m.payload["i"] for m in items] == list(range(5000))
    assert old_batches == 0 and new_batches > 0


async def test_a_server_without_batches_gets_single_publishes(monkeypatch: Any) -> None:
    """A server that answers publish_batch with ``error unknown-type`` (one that predates
    it) still gets every message, once and in order, as single publishes."""
    from nbws.server.standalone import StandaloneServer

    monkeypatch.delitem(messages.REQUESTS, "publish_batch")
    server = StandaloneServer(make_config(), host="127.0.0.1", port=0, token=None)
    port = await server.start()
    try:

        def publish() -> tuple[list[int | None], list[Any], int, int]:
            stream = nbws.stream(name("old"), url=f"http://127.0.0.1:{port}/")
            receipts = stream.publish_many({"i": i} for i in range(3000))
            stream.flush(timeout=60)
            link = stream._publisher.link
            history = stream.history(0)
            stream.close()
            return [r.result(0) for r in receipts], history, link.batches_sent, int(link.batch)

        offsets, history, batches, batching = await asyncio.to_thread(publish)
    finally:
        await server.stop()
    assert offsets == list(range(3000))
    assert [(m.offset, m.seq) for m in history] == [(i, i) for i in range(3000)]
    assert batches >= 1 and batching == 0  # it tried, was refused, and fell back
