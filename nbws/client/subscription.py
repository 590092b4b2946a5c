"""Reading a stream from Python: ``for msg in sub`` or ``async for msg in sub``.

Each subscription has its own connection in the I/O thread, so a consumer that stops
iterating only slows its own connection (the server's policy for it then applies) and
never the publisher's acks. After a drop it resubscribes from the next offset it has not
handed out yet, in the same epoch: no message is repeated or skipped.

Gaps (offsets the server says will not come) are never silent: each is appended to
:attr:`Subscription.gaps`, passed to ``on_gap`` if given, yielded in place if
``yield_gaps=True``, and otherwise reported with a :class:`GapWarning`.

Deliveries are batched by default (``max_batch=1000``, ``linger_ms=0``): the server
sends what has queued up for this subscriber in one ``batch`` event per loop turn,
which adds no latency and saves a WebSocket message and a decode per message; they are
still handed out one message at a time. A batch is never larger than ``queue_size``, so
a slow consumer holds about as much locally as without batches and the server's policy
for it (drops, gaps, disconnect) still acts. ``max_batch=None`` asks for one ``message``
event per message; ``linger_ms`` (up to 100) lets the server wait to fill batches.
"""

from __future__ import annotations

import asyncio
import warnings
import weakref
from collections.abc import Callable
from typing import Any

from .channel import Channel, ChannelClosed
from .discovery import Endpoint
from .frames import Gap, Message
from .thread import DEFAULT_MAX_BATCH, IOThread, LinkOptions, SubscriberLink, io_thread

__all__ = ["GapWarning", "Subscription"]


class GapWarning(UserWarning):
    """Messages of a subscription were skipped (see :class:`nbws.client.Gap`)."""


class Subscription:
    """A live (or history) read of one stream. Create it with ``Stream.subscribe``.

    Iteration yields :class:`Message` objects in offset order (and :class:`Gap` objects
    when ``yield_gaps=True``). It ends when the subscription is closed, when ``until`` is
    reached, or after ``idle_timeout`` seconds without a message. ``max_batch`` and
    ``linger_ms`` are how the server batches deliveries (see the module docstring).
    """

    def __init__(
        self,
        endpoint: Endpoint,
        stream: str,
        options: LinkOptions,
        *,
        since: int | None = None,
        until: int | None = None,
        epoch: str | None = None,
        policy: str | None = None,
        max_messages: int | None = None,
        max_bytes: int | None = None,
        max_batch: int | None = DEFAULT_MAX_BATCH,
        linger_ms: int | None = None,
        queue_size: int = 10_000,
        on_gap: Callable[[Gap], Any] | None = None,
        yield_gaps: bool = False,
        idle_timeout: float | None = None,
    ) -> None:
        self.stream = stream
        self.on_gap = on_gap
        self.yield_gaps = yield_gaps
        self.idle_timeout = idle_timeout
        self.gaps: list[Gap] = []
        if max_batch is not None:
            # A batch is read whole before it is handed out one message at a time, and the
            # connection reads a few frames ahead: batches larger than the local queue
            # would let a slow consumer hold many times queue_size messages here instead
            # of letting the server's policy for it act.
            max_batch = max(1, min(max_batch, queue_size))
        self._io = io_thread()
        self._channel = Channel(self._io.loop, queue_size)
        self._link = SubscriberLink(
            endpoint,
            stream,
            self._channel,
            options,
            since=since,
            until=until,
            epoch=epoch,
            policy=policy,
            max_messages=max_messages,
            max_bytes=max_bytes,
            max_batch=max_batch,
            linger_ms=linger_ms,
        )
        self._closed = False
        self._link.start(self._io)
        # A subscription dropped without close() must not keep its connection forever.
        weakref.finalize(self, _stop_link, self._io, self._link)

    # --- state ---------------------------------------------------------------------------

    @property
    def cursor(self) -> int | None:
        """The next offset this subscription expects (None before the server answered)."""
        return self._link.cursor

    @property
    def epoch(self) -> str | None:
        """The epoch the cursor refers to."""
        return self._link.epoch

    @property
    def reconnects(self) -> int:
        return self._link.reconnects

    @property
    def last_error(self) -> str | None:
        return self._link.last_error

    @property
    def skipped_duplicates(self) -> int:
        """Messages the server sent again after a resume, dropped here (normally 0)."""
        return self._link.skipped_duplicates

    @property
    def connected(self) -> bool:
        return self._link.connected

    def __repr__(self) -> str:
        return (
            f"<Subscription {self.stream!r} cursor={self.cursor} epoch={self.epoch} "
            f"gaps={len(self.gaps)} reconnects={self.reconnects}>"
        )

    # --- reading -------------------------------------------------------------------------

    def _filter(self, item: Message | Gap) -> Message | Gap | None:
        if isinstance(item, Gap):
            self.gaps.append(item)
            if self.on_gap is not None:
                self.on_gap(item)
            elif not self.yield_gaps:
                warnings.warn(
                    f"nbws: {item.count if item.count is not None else 'some'} messages of "
                    f"{self.stream!r} skipped (offsets {item.start} to {item.end}, reason "
                    f"{item.reason})",
                    GapWarning,
                    stacklevel=3,
                )
            return item if self.yield_gaps else None
        return item

    def get(self, timeout: float | None = None) -> Message | Gap:
        """The next message (or gap, with ``yield_gaps``), waiting up to ``timeout`` s.

        Raises:
            TimeoutError: nothing arrived in time.
            StopIteration: the subscription ended.
        """
        while True:
            try:
                item = self._channel.get(timeout)
            except ChannelClosed:
                raise StopIteration from None
            out = self._filter(item)
            if out is not None:
                return out

    async def get_async(self, timeout: float | None = None) -> Message | Gap:
        """Like :meth:`get`, awaited in the caller's event loop (which never blocks).

        Raises:
            TimeoutError: nothing arrived in time.
            StopAsyncIteration: the subscription ended.
        """
        while True:
            try:
                item = await self._channel.get_async(timeout)
            except ChannelClosed:
                raise StopAsyncIteration from None
            out = self._filter(item)
            if out is not None:
                return out

    def __iter__(self) -> Subscription:
        return self

    def __next__(self) -> Message | Gap:
        try:
            return self.get(self.idle_timeout)
        except TimeoutError:
            raise StopIteration from None

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Message | Gap:
        try:
            return await self.get_async(self.idle_timeout)
        except TimeoutError:
            raise StopAsyncIteration from None

    # --- closing ---------------------------------------------------------------------------

    def close(self, timeout: float = 5.0) -> None:
        """Unsubscribe and close the connection (messages not yet read are discarded)."""
        if self._closed:
            return
        self._closed = True
        if self._io.in_thread:
            self._io.loop.create_task(self._link.stop())
            return
        try:
            self._io.submit(self._link.stop()).result(timeout)
        except Exception:
            self._channel.close()

    async def aclose(self) -> None:
        """:meth:`close` for async code: waits in the caller's loop, never blocking it."""
        if self._closed:
            return
        self._closed = True
        await asyncio.wrap_future(self._io.submit(self._link.stop()))

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _stop_link(io: IOThread, link: SubscriberLink) -> None:
    if io.thread.is_alive():
        io.call_soon(lambda: io.loop.create_task(link.stop()))
