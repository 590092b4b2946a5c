"""Appends of one process sent to Redis in order, many per round trip.

Every append waits in one queue. A single writer takes what has queued up (up to
``max_batch``) and sends it as one pipeline of script calls, then the next batch once
that one has answered. One round trip carries many appends, so a publisher that keeps
many messages in flight is not limited to one append per round trip, and Redis runs them
in the order they were submitted.

Order per producer through outages: when an acked append fails because Redis is
unavailable, its (stream, producer) is *held back* at that seq. Later seqs of that
producer are refused (unavailable, retry) without being sent until the held seq is
appended, so a message refused during an outage cannot be overtaken by a later one that
happened to reach Redis after it came back. Clients resend refused messages in seq order.
A batch (one ``APPEND_BATCH`` script for seqs ``seq`` … ``last``) counts as resending the
held seq when its range contains it, and is held back itself at its first seq.
A hold whose seq never comes back (the client gave up on it) lapses after
``hold_timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from .base import BrokerUnavailable

__all__ = ["AppendQueue", "AppendRequest"]


@dataclass(slots=True)
class AppendRequest:
    """One append: script keys and arguments, and who waits for its reply."""

    keys: list[str]
    args: list[Any]
    producer: tuple[str, str] | None  # (stream, producer) of an acked append
    seq: int
    future: asyncio.Future[Any] = field(default_factory=lambda: _loop().create_future())
    script: str = "APPEND"  # or APPEND_BATCH: seqs ``seq`` to ``last`` in one script
    last: int = -1  # the last seq of a batch (-1: the same as ``seq``)

    @property
    def last_seq(self) -> int:
        return self.seq if self.last < 0 else self.last


def _loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


Execute = Callable[[list[AppendRequest]], Awaitable[list[Any]]]


class AppendQueue:
    """See module docstring. ``execute`` sends one batch and returns one reply (or
    exception) per request; it raises :class:`BrokerUnavailable` when nothing came back."""

    def __init__(self, execute: Execute, *, max_batch: int = 256, hold_timeout: float = 30.0):
        self.execute = execute
        self.max_batch = max_batch
        self.hold_timeout = hold_timeout
        self._queue: deque[AppendRequest] = deque()
        self._held: dict[tuple[str, str], tuple[int, float]] = {}
        self._writer: asyncio.Task[None] | None = None
        self._sending: list[AppendRequest] = []
        self._closed = False

    def submit(self, request: AppendRequest) -> asyncio.Future[Any]:
        """Queue ``request`` (in call order) and return the future of its reply."""
        if self._closed:
            request.future.set_exception(BrokerUnavailable("broker unavailable: closed"))
            return request.future
        self._queue.append(request)
        if self._writer is None:
            self._writer = asyncio.ensure_future(self._write())
        return request.future

    async def close(self) -> None:
        self._closed = True
        pending = [*self._sending, *self._queue]  # before the writer lets go of them
        self._queue.clear()
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer
        for request in pending:
            if not request.future.done():
                request.future.set_exception(BrokerUnavailable("broker unavailable: closed"))

    async def _write(self) -> None:
        try:
            while self._queue:
                batch = self._sending = self._take()
                if batch:
                    await self._send(batch)
        finally:
            self._sending = []
            self._writer = None

    def _take(self) -> list[AppendRequest]:
        """The next batch; refuses requests that would overtake a held-back seq."""
        batch: list[AppendRequest] = []
        opened: set[tuple[str, str]] = set()
        queue, held = self._queue, self._held
        now = time.monotonic()
        while queue and len(batch) < self.max_batch:
            request = queue.popleft()
            if request.future.done():  # its caller went away
                continue
            key = request.producer
            hold = held.get(key) if key is not None and held else None
            if hold is not None and key not in opened:
                if request.seq <= hold[0] <= request.last_seq:  # it resends the held seq
                    opened.add(key)  # type: ignore[arg-type]
                elif request.seq > hold[0]:
                    if now - hold[1] <= self.hold_timeout:
                        request.future.set_exception(
                            BrokerUnavailable(
                                f"broker unavailable: waiting for seq {hold[0]} of this "
                                "producer to be resent first"
                            )
                        )
                        continue
                    del held[key]  # type: ignore[arg-type]
            batch.append(request)
        return batch

    async def _send(self, batch: list[AppendRequest]) -> None:
        try:
            replies = await self.execute(batch)
        except BrokerUnavailable as exc:
            for request in batch:
                self._fail(request, exc)
            return
        except Exception as exc:  # a bug: every caller hears of it
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(exc)
            return
        for request, reply in zip(batch, replies, strict=True):
            if isinstance(reply, BrokerUnavailable):
                self._fail(request, reply)
            elif isinstance(reply, BaseException):
                if not request.future.done():
                    request.future.set_exception(reply)
            else:
                key = request.producer
                if key is not None and self._held:
                    hold = self._held.get(key)
                    if hold is not None and request.last_seq >= hold[0]:
                        del self._held[key]
                if not request.future.done():
                    request.future.set_result(reply)

    def _fail(self, request: AppendRequest, exc: BrokerUnavailable) -> None:
        key = request.producer
        if key is not None:
            hold = self._held.get(key)
            if hold is None or request.seq <= hold[0]:
                self._held[key] = (request.seq, time.monotonic())
        if not request.future.done():
            request.future.set_exception(exc)
