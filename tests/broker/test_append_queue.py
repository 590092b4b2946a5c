"""The Redis broker's append queue on its own: batching in call order, and the hold that
keeps a producer's order through an outage (the Redis side is tested end to end in
test_redis_failures.py and tests/client/test_client_scale_out.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from nbws.broker import BrokerUnavailable
from nbws.broker.redis_appends import AppendQueue, AppendRequest


class Store:
    """What ``execute`` talks to: appends in order while up, refuses batches while down."""

    def __init__(self) -> None:
        self.up = True
        self.log: list[int] = []
        self.batches: list[int] = []

    async def execute(self, batch: list[AppendRequest]) -> list[Any]:
        await asyncio.sleep(0)  # a round trip
        self.batches.append(len(batch))
        if not self.up:
            raise BrokerUnavailable("broker unavailable: down")
        self.log.extend(r.seq for r in batch)
        return [r.seq for r in batch]


def request(seq: int, producer: str | None = "p") -> AppendRequest:
    return AppendRequest([], [], ("s", producer) if producer else None, seq)


async def outcome(future: asyncio.Future[Any]) -> Any:
    try:
        return await future
    except BrokerUnavailable as exc:
        return str(exc)


async def test_appends_go_in_call_order_many_per_round_trip() -> None:
    store = Store()
    queue = AppendQueue(store.execute, max_batch=64)
    futures = [queue.submit(request(seq)) for seq in range(200)]
    assert await asyncio.gather(*futures) == list(range(200))
    assert store.log == list(range(200))
    assert store.batches == [64, 64, 64, 8]
    await queue.close()


async def test_a_refused_seq_holds_back_later_ones_until_it_is_resent() -> None:
    store = Store()
    queue = AppendQueue(store.execute)
    await queue.submit(request(0))
    store.up = False
    first = [queue.submit(request(seq)) for seq in (1, 2)]
    assert [await outcome(f) for f in first] == ["broker unavailable: down"] * 2
    store.up = True
    # Redis is back, but seq 3 must not overtake 1 and 2: refused without being sent.
    refused = await outcome(queue.submit(request(3)))
    assert "waiting for seq 1" in refused and store.log == [0]
    other = await queue.submit(request(7, producer="other"))  # other producers go on
    assert other == 7
    # The client resends 1, 2, 3 in order: all go through, in order.
    resent = [queue.submit(request(seq)) for seq in (1, 2, 3)]
    assert await asyncio.gather(*resent) == [1, 2, 3]
    assert store.log == [0, 7, 1, 2, 3]
    await queue.close()


async def test_a_hold_lapses_when_its_seq_never_comes_back() -> None:
    store = Store()
    queue = AppendQueue(store.execute, hold_timeout=0.0)
    store.up = False
    await outcome(queue.submit(request(5)))
    store.up = True
    await asyncio.sleep(0.01)  # the behaviour under test is the passing of time
    assert await queue.submit(request(6)) == 6


async def test_close_fails_what_is_queued_or_being_sent() -> None:
    store = Store()
    queue = AppendQueue(store.execute, max_batch=1)
    sending, queued = queue.submit(request(0)), queue.submit(request(1))
    await asyncio.sleep(0)  # the writer has taken the first and is in its round trip
    await queue.close()
    for future in (sending, queued):
        with pytest.raises(BrokerUnavailable, match="closed"):
            await future
    with pytest.raises(BrokerUnavailable, match="closed"):
        await queue.submit(request(1))


def batch(seq: int, last: int) -> AppendRequest:
    return AppendRequest([], [], ("s", "p"), seq, script="APPEND_BATCH", last=last)


async def test_a_batch_that_contains_the_held_seq_releases_the_hold() -> None:
    """A refused batch holds back at its first seq; a later batch overlapping it goes
    through (a client's retransmit may cut batches differently), a later one after it
    does not overtake it."""
    store = Store()
    queue = AppendQueue(store.execute)
    store.up = False
    assert "down" in await outcome(queue.submit(batch(10, 19)))
    store.up = True
    refused = await outcome(queue.submit(batch(20, 29)))
    assert "waiting for seq 10" in refused and store.log == []
    assert await queue.submit(batch(5, 14)) == 5  # contains 10: resends it
    assert await queue.submit(batch(20, 29)) == 20  # the hold is gone
    assert store.log == [5, 20]
    await queue.close()
