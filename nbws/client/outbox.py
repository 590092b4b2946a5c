"""The publisher's shared state: the pure :class:`Window` behind a lock, plus futures.

Publishing threads call :meth:`Outbox.put`; the I/O thread takes, acks and fails
messages. Futures are completed outside the lock. Producers that find the outbox full
wait on a condition the I/O thread signals as acks free room (backpressure).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from .errors import DeliveryFailed, StreamClosed
from .window import DEFAULT_DEADLINE, Entry, Window, WindowStats

__all__ = ["Outbox", "Receipt"]

MAX_REPORTED_FAILURES = 1000
"""Failures kept for ``flush`` to report in detail (all are counted)."""


class Receipt(Future):  # type: ignore[type-arg]
    """The future of one publish: ``result(timeout)`` is the offset the server gave it.

    The offset is None only for a duplicate the server no longer remembers (its seq fell
    out of the dedupe window). ``epoch`` is the stream's epoch from the ack.
    """

    def __init__(self, seq: int = -1) -> None:
        super().__init__()
        self.seq = seq
        self.epoch: str | None = None
        self.duplicate = False


class Outbox:
    """Thread-safe outbox of one stream handle.

    Args:
        window: the pure bookkeeping it guards.
        clock: monotonic time source (injectable for tests).
    """

    def __init__(self, window: Window[Any], clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self.clock = clock
        self.lock = threading.Lock()
        self._room = threading.Condition(self.lock)
        self._empty = threading.Condition(self.lock)
        self._receipts: dict[int, Receipt] = {}
        self._failures: list[DeliveryFailed] = []
        self.failure_count = 0
        self._room_waiters = 0
        self._sender_idle = False
        self.wakeup: Callable[[], None] = lambda: None
        self.on_release: Callable[[Entry[Any]], None] = lambda entry: None
        self.closed: str | None = None

    # --- publishing threads --------------------------------------------------------------

    def put(
        self,
        item: Any,
        size: int,
        *,
        block: bool = True,
        timeout: float | None = None,
        deadline: object = DEFAULT_DEADLINE,
    ) -> Receipt:
        """Add a message; wait for room if the outbox is full and ``block``.

        Raises:
            OutboxFull: no room (``block=False``), or still none after ``timeout``.
            StreamClosed: the handle is closed.
        """
        receipt = Receipt()
        wake = False
        with self.lock:
            window = self.window
            if not window.has_room(size) and block:
                end = None if timeout is None else self.clock() + timeout
                self._room_waiters += 1
                try:
                    while self.closed is None and not window.has_room(size):
                        left = None if end is None else end - self.clock()
                        if left is not None and left <= 0:
                            break
                        self._room.wait(left)
                finally:
                    self._room_waiters -= 1
            if self.closed is not None:
                raise StreamClosed(self.closed)
            entry = window.add(item, size, self.clock(), deadline=deadline)  # or OutboxFull
            receipt.seq = entry.seq
            self._receipts[entry.seq] = receipt
            if self._sender_idle:
                self._sender_idle = False
                wake = True
        if wake:
            self.wakeup()
        return receipt

    def has_room(self, size: int) -> bool:
        with self.lock:
            return self.window.has_room(size)

    def wait_empty(self, timeout: float | None) -> bool:
        """Wait until every message is acked or failed; False on timeout."""
        end = None if timeout is None else self.clock() + timeout
        with self.lock:
            while self.window.outbox_messages:
                left = None if end is None else end - self.clock()
                if left is not None and left <= 0:
                    return False
                self._empty.wait(left)
            return True

    def take_failures(self) -> tuple[int, list[DeliveryFailed]]:
        """How many failed since the last call, and the first of them (what ``flush``
        reports)."""
        with self.lock:
            failures, self._failures = self._failures, []
            count, self.failure_count = self.failure_count, 0
            return count, failures

    def stats(self) -> WindowStats:
        with self.lock:
            return self.window.stats()

    # --- the I/O thread ------------------------------------------------------------------

    def take(self, limit: int) -> list[Entry[Any]]:
        """Up to ``limit`` messages to send now; when none, marks the sender idle so the
        next :meth:`put` calls :attr:`wakeup`."""
        out: list[Entry[Any]] = []
        with self.lock:
            now = self.clock()
            take = self.window.take
            while len(out) < limit:
                entry = take(now)
                if entry is None:
                    break
                out.append(entry)
            self._sender_idle = not out
        return out

    def connected(self) -> None:
        with self.lock:
            self.window.connect()

    def disconnected(self) -> None:
        with self.lock:
            self.window.disconnect()

    def restart_timer(self, entry: Entry[Any]) -> None:
        with self.lock:
            self.window.restart_timer(entry, self.clock())

    def ack(self, seq: int, offset: int | None, epoch: str | None, duplicate: bool) -> bool:
        """Complete seq's future with its offset. False for an unknown (stale) seq."""
        with self.lock:
            entry = self.window.ack(seq, self.clock(), duplicate=duplicate)
            if entry is None:
                return False
            receipt = self._receipts.pop(seq, None)
            self._after_removal()
        self.on_release(entry)
        if receipt is not None:
            receipt.epoch = epoch
            receipt.duplicate = duplicate
            receipt.set_result(offset)
        return True

    def nack(self, seq: int, code: str, reason: str, retry: bool) -> None:
        """A refused publish: resend later (``retry``) or fail its future."""
        with self.lock:
            entry = self.window.nack(seq, self.clock(), retry=retry)
        if entry is not None:
            self._fail([entry], code, reason)

    def fail(self, seq: int, code: str, reason: str) -> None:
        """Fail one message for a local reason (e.g. too big for the server)."""
        with self.lock:
            entry = self.window.nack(seq, self.clock(), retry=False)
        if entry is not None:
            self._fail([entry], code, reason)

    def expire(self) -> None:
        """Fail the messages past their delivery deadline."""
        with self.lock:
            expired = self.window.expire(self.clock())
        if expired:
            self._fail(expired, "expired", "not acknowledged before its delivery deadline")

    def next_wakeup(self) -> float | None:
        with self.lock:
            return self.window.next_wakeup()

    def close(self, reason: str) -> list[Entry[Any]]:
        """Refuse further puts; fail and return what is still unacked."""
        with self.lock:
            self.closed = reason
            entries = self.window.drain()
            self._room.notify_all()
        if entries:
            self._fail(entries, "closed", reason)
        return entries

    def _after_removal(self) -> None:
        """Wake producers waiting for room and flushers waiting for empty (lock held)."""
        if self._room_waiters:
            self._room.notify_all()
        if not self.window.outbox_messages:
            self._empty.notify_all()

    def _fail(self, entries: list[Entry[Any]], code: str, reason: str) -> None:
        errors: list[tuple[Receipt | None, DeliveryFailed]] = []
        with self.lock:
            for entry in entries:
                error = DeliveryFailed(entry.seq, code, reason)
                self.failure_count += 1
                if len(self._failures) < MAX_REPORTED_FAILURES:
                    self._failures.append(error)
                errors.append((self._receipts.pop(entry.seq, None), error))
            self._after_removal()
        for entry in entries:
            self.on_release(entry)
        for receipt, error in errors:
            if receipt is not None and not receipt.done():
                receipt.set_exception(error)
