"""The Redis broker when Redis goes away: clear errors, health reports, recovery by
itself, and nothing acknowledged lost (each test has a `redis-server` of its own)."""

from __future__ import annotations

import asyncio
import shutil
import time
from typing import Any

import pytest
from broker_support import Collector, redis_broker, started, unique_prefix, wait_until
from redis_support import RedisProcess, free_port

from nbws.broker import BrokerUnavailable
from nbws.protocol.messages import Publish, PublishBatch

FAST = {"command_timeout": 0.5, "connect_timeout": 0.5, "block": 0.2, "backoff": (0.02, 0.2)}


class Health:
    def __init__(self) -> None:
        self.changes: list[tuple[bool, str | None]] = []

    def __call__(self, healthy: bool, reason: str | None) -> None:
        self.changes.append((healthy, reason))


async def append_until_ok(broker: Any, stream: str, payload: bytes, seq: int) -> int:
    """What the reliable client does: retry an acked append until it is acked."""
    while True:
        try:
            result = await broker.append(Publish(stream, producer="p", seq=seq), payload)
        except BrokerUnavailable:
            await asyncio.sleep(0.02)
            continue
        assert result.offset is not None
        return int(result.offset)


async def test_redis_down_at_start_then_up(tmp_path: Any) -> None:
    redis = RedisProcess(tmp_path / "redis", port=free_port())
    broker = redis_broker(redis.url, unique_prefix(), **FAST)
    health = Health()
    broker.on_health_change(health)
    async with started(broker):  # a Redis that is down is not a start-up error
        started_at = time.monotonic()
        with pytest.raises(BrokerUnavailable, match="broker unavailable"):
            await broker.append(Publish("s", producer="p", seq=0), b"1")
        assert time.monotonic() - started_at < 3
        assert not broker.healthy
        assert health.changes and health.changes[0][0] is False and health.changes[0][1]
        got = Collector()
        broker.listen("s", got)
        redis.start()
        try:
            assert await append_until_ok(broker, "s", b"1", 0) == 0
            await got.wait_for(1)
            await wait_until(lambda: broker.healthy)
            assert health.changes[-1] == (True, None)
        finally:
            redis.kill()


@pytest.mark.parametrize("crash", [False, True], ids=["restart", "crash"])
async def test_restart_mid_stream_loses_nothing_acked(own_redis: RedisProcess, crash: bool) -> None:
    prefix = unique_prefix()
    writer = redis_broker(own_redis.url, prefix, **FAST)
    reader = redis_broker(own_redis.url, prefix, **FAST)
    got = Collector()
    async with started(writer, reader):
        reader.listen("s", got)
        acked: dict[int, int] = {}
        for seq in range(600):
            if seq == 300:
                own_redis.restart(crash=crash)
            acked[seq] = await append_until_ok(writer, "s", b"%d" % seq, seq)
        assert sorted(acked.values()) == list(range(600))
        page = await reader.read("s", 0, 1000)
        assert [m.seq for m in page.messages] == list(range(600))
        await got.wait_for(600)
        assert got.offsets == list(range(600))  # exactly once, in order, across the restart
        await wait_until(lambda: writer.healthy and reader.healthy)  # recovered by itself


async def test_paused_redis_fails_fast_and_recovers(own_redis: RedisProcess) -> None:
    broker = redis_broker(own_redis.url, unique_prefix(), **FAST)
    health = Health()
    broker.on_health_change(health)
    got = Collector()
    async with started(broker):
        broker.listen("s", got)
        await broker.append(Publish("s", producer="p", seq=0), b"0")
        own_redis.pause()
        try:
            started_at = time.monotonic()
            with pytest.raises(BrokerUnavailable):
                await broker.append(Publish("s", producer="p", seq=1), b"1")
            assert time.monotonic() - started_at < 2.5
            assert not broker.healthy and health.changes[-1][0] is False
        finally:
            own_redis.resume()
        # The append that timed out may have run once Redis woke up: the retry says so.
        assert await append_until_ok(broker, "s", b"1", 1) == 1
        await got.wait_for(2)
        assert got.offsets == [0, 1]
        await wait_until(lambda: broker.healthy)
        assert health.changes[-1] == (True, None)


async def test_redis_losing_its_data_gives_a_new_epoch(own_redis: RedisProcess) -> None:
    broker = redis_broker(own_redis.url, unique_prefix(), **FAST)
    got = Collector()
    async with started(broker):
        broker.listen("s", got)
        for seq in range(5):
            await broker.append(Publish("s", producer="p", seq=seq), b"old")
        await got.wait_for(5)
        own_redis.kill()
        shutil.rmtree(own_redis.directory)  # an empty Redis comes back
        own_redis.start()
        result = await append_until_ok(broker, "s", b"new", 0)  # seq 0 is new again
        assert result == 0
        await got.wait_for(6)
        epochs = [e for e, _ in got.items]
        assert epochs[5] != epochs[0] and got.offsets == [0, 1, 2, 3, 4, 0]
        page = await broker.read("s", 0, 10)
        assert [m.payload for m in page.messages] == [b"new"] and page.epoch == epochs[5]


async def test_a_window_kept_from_before_the_newest_hash_still_catches_duplicates(
    own_redis: RedisProcess,
) -> None:
    """Data written before ``P:{name}:newest`` existed has a window but no highest seq:
    the scripts rebuild it from the window instead of taking a batch as new."""
    broker = redis_broker(own_redis.url, unique_prefix(), **FAST)
    async with started(broker):
        await broker.append_batch(PublishBatch("old", "p", 0), [b"a", b"b", b"c"])
        await broker._client.delete(broker._stream_keys("old").newest)
        outcome = await broker.append_batch(PublishBatch("old", "p", 2), [b"c", b"d"])
        results = outcome.per_message()
        assert [(r.offset, r.duplicate) for r in results] == [(2, True), (3, False)]
