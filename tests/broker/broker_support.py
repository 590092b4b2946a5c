"""Brokers under test: the in-memory one, and Redis ones on a real `redis-server`."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from nbws.broker import Broker, HistoryLimits, MemoryBroker, StoredMessage


class Collector:
    """A broker listener that records (epoch, message) and lets a test await a count."""

    def __init__(self) -> None:
        self.items: list[tuple[str, StoredMessage]] = []
        self._changed = asyncio.Event()

    def __call__(self, stream: str, epoch: str, message: StoredMessage) -> None:
        self.items.append((epoch, message))
        self._changed.set()

    @property
    def offsets(self) -> list[int]:
        return [m.offset for _, m in self.items]

    async def wait_for(self, count: int, timeout: float = 10.0) -> None:
        async def reached() -> None:
            while len(self.items) < count:
                self._changed.clear()
                await self._changed.wait()

        try:
            await asyncio.wait_for(reached(), timeout)
        except TimeoutError:
            raise AssertionError(f"listener got {len(self.items)} of {count} messages") from None


async def wait_until(condition: Callable[[], object], timeout: float = 15.0) -> None:
    """Poll a state the code under test exposes (health flags have no event to await)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not condition():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {condition}")
        await asyncio.sleep(0.01)


def redis_broker(url: str, prefix: str, **options: Any) -> Broker:
    from nbws.broker.redis import RedisBroker

    return RedisBroker(url, prefix=prefix, **options)


@asynccontextmanager
async def started(*brokers: Broker) -> AsyncIterator[None]:
    for broker in brokers:
        await broker.start()
    try:
        yield
    finally:
        for broker in brokers:
            await broker.close()


def unique_prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


def memory_broker(limits: HistoryLimits | None = None, dedupe_window: int = 4096) -> Broker:
    return MemoryBroker(limits, dedupe_window)
