"""The tests' one way to wait for a state that has no event to await (a counter, a flag
another process or thread changes): poll it with a deadline, fail with what was awaited."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["until", "wait_for", "wait_until"]

T = TypeVar("T")


def _failure(condition: Callable[[], object], timeout: float, what: str) -> AssertionError:
    return AssertionError(f"still waiting after {timeout} s for {what or condition}")


async def until(condition: Callable[[], object], timeout: float = 10.0, what: str = "") -> None:
    """Wait until ``condition()`` is true, polling between event-loop turns."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise _failure(condition, timeout, what)
        await asyncio.sleep(0.005)


def wait_until(condition: Callable[[], object], timeout: float = 20.0, what: str = "") -> None:
    """Wait until ``condition()`` is true, from a thread without an event loop."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise _failure(condition, timeout, what)
        time.sleep(0.01)


async def wait_for(predicate: Callable[[], Awaitable[T]], what: str, timeout: float = 30.0) -> T:
    """Poll an async condition (e.g. REST state) until it is truthy; return its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
