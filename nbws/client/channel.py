"""A bounded hand-off from the I/O thread to a consumer in any thread or event loop.

The I/O thread ``await``s :meth:`Channel.put`; when the channel is full it stops reading
that connection, so backpressure reaches the server (whose per-subscriber policy then
applies) instead of memory growing here. Consumers block in :meth:`get` (plain threads)
or ``await`` :meth:`get_async` (any event loop, e.g. the kernel's): nobody blocks the
other side's loop.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from typing import Any

__all__ = ["Channel", "ChannelClosed"]


class ChannelClosed(Exception):
    """No more items will come (the ``end`` of a history read, or the subscription closed)."""


class Channel:
    """Bounded multi-thread queue with a closing reason.

    Args:
        loop: the I/O thread's loop (where :meth:`put` runs).
        maxsize: items held before :meth:`put` waits.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, maxsize: int) -> None:
        self.loop = loop
        self.maxsize = max(1, maxsize)
        self._items: deque[Any] = deque()
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._async_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._space: asyncio.Future[None] | None = None
        self._closed = False
        self._error: BaseException | None = None

    def __len__(self) -> int:
        return len(self._items)

    @property
    def closed(self) -> bool:
        return self._closed

    # --- I/O side ------------------------------------------------------------------------

    async def put(self, item: Any) -> None:
        """Append ``item``, waiting (in the I/O loop) while the channel is full."""
        while True:
            with self._lock:
                if self._closed:
                    return
                if len(self._items) < self.maxsize:
                    self._items.append(item)
                    self._notify()
                    return
                space = self._space = self.loop.create_future()
            await space

    def close(self, error: BaseException | None = None) -> None:
        """No more items; consumers get what is queued, then ``error`` or the end."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._error = error
            self._notify()
            self._wake_putter()

    def _notify(self) -> None:
        self._not_empty.notify_all()
        waiters, self._async_waiters = self._async_waiters, []
        for loop, future in waiters:
            loop.call_soon_threadsafe(_resolve, future)

    def _wake_putter(self) -> None:
        space, self._space = self._space, None
        if space is not None:
            self.loop.call_soon_threadsafe(_resolve, space)

    # --- consumer side -------------------------------------------------------------------

    def _pop(self) -> Any:
        item = self._items.popleft()
        if self._space is not None and len(self._items) < self.maxsize:
            self._wake_putter()
        return item

    def _end(self) -> BaseException:
        return self._error if self._error is not None else ChannelClosed()

    def get(self, timeout: float | None = None) -> Any:
        """Next item, waiting up to ``timeout`` seconds.

        Raises:
            TimeoutError: nothing arrived in time.
            ChannelClosed: closed and empty (or the closing error, if one was given).
        """
        end = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while not self._items:
                if self._closed:
                    raise self._end()
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError("no message within the timeout")
                self._not_empty.wait(left)
            return self._pop()

    async def get_async(self, timeout: float | None = None) -> Any:
        """Like :meth:`get`, awaited in the caller's own event loop."""
        loop = asyncio.get_running_loop()
        end = None if timeout is None else loop.time() + timeout
        while True:
            with self._lock:
                if self._items:
                    return self._pop()
                if self._closed:
                    raise self._end()
                future: asyncio.Future[None] = loop.create_future()
                self._async_waiters.append((loop, future))
            left = None if end is None else end - loop.time()
            if left is not None and left <= 0:
                raise TimeoutError("no message within the timeout")
            try:
                await asyncio.wait_for(future, left)
            except asyncio.TimeoutError:
                raise TimeoutError("no message within the timeout") from None


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
