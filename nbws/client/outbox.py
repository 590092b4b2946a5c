"""The publisher's shared state: the pure :class:`Window` behind a lock, plus receipts.

Publishing threads call :meth:`Outbox.put`; the I/O thread takes, acks and fails
messages, many per call. Receipts are completed outside the lock. Producers that find
the outbox full wait on a condition the I/O thread signals as acks free room
(backpressure). While connected they also wait once ``max_unsent`` messages are queued
unsent (:attr:`Window.backlogged`), woken as the sender takes messages: the outbox stays
a few windows deep instead of up to ``max_messages``, which the garbage collector would
otherwise scan over and over while a publisher outruns the link.

Publishing is meant to cost little more than serialising the payload, so nothing per
message is heavier than it must be: a JSON publish is stored as the complete text the
I/O thread sends (built once, with its seq), receipts share one condition per handle
(a ``threading.Condition`` each would cost more than the rest of ``publish``), and the
outbox holds a receipt only weakly until someone attaches a callback to it, so a
receipt nobody kept is freed at once instead of living, and being scanned by the
garbage collector, until its ack.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import weakref
from collections.abc import Callable, Generator
from concurrent.futures import Future, InvalidStateError
from typing import Any

from ..errors import NackCode
from .errors import DeliveryFailed, FailureCode, StreamClosed
from .frames import KeyedJson
from .window import DEFAULT_DEADLINE, Entry, Window, WindowStats

__all__ = ["Ack", "Outbox", "Receipt"]

log = logging.getLogger("nbws.client")

MAX_REPORTED_FAILURES = 1000
"""Failures kept for ``flush`` to report in detail (all are counted)."""

YIELD_MASK = 1023
"""A publishing thread lets the GIL go after every 1024 puts (see :func:`_yield_gil`)."""


def _yield_gil() -> None:
    """Let another thread run now. A thread that publishes in a tight loop holds the GIL
    until the interpreter's switch interval (5 ms) forces it out, and the I/O thread
    needs it after every socket call (to send, to apply acks): without this, each of
    its steps waits up to 5 ms, and that, not the work, caps the acked rate."""
    time.sleep(0)


Ack = tuple[int, Any, Any, bool]
"""One ack as the I/O thread hands it over: (seq, offset, epoch, duplicate)."""


_PENDING, _DONE, _FAILED = 0, 1, 2


class Receipt:
    """The outcome of one publish: ``result(timeout)`` is the offset the server gave it.

    It answers as a :class:`concurrent.futures.Future` does (``result``, ``exception``,
    ``done``, ``add_done_callback``, ``cancel``), can be awaited, and :meth:`as_future`
    gives a real ``Future`` for ``concurrent.futures.wait`` and friends. It is a class of
    its own because a ``Future`` makes a ``threading.Condition`` each, which would cost
    more than the rest of ``publish``: the receipts of one handle share one condition.

    The offset is None only for a duplicate the server no longer remembers (its seq fell
    out of the dedupe window). ``epoch`` is the stream's epoch from the ack. A publish
    cannot be taken back: :meth:`cancel` returns False.

    Args:
        condition: the condition this receipt signals on completion, shared by all the
            receipts of one handle (a new one when None).
        seq: the message's sequence number.
        pin: called when a callback is attached, so the outbox keeps the receipt
            alive until it completes (it is otherwise held weakly).
    """

    __slots__ = (
        "__weakref__",
        "_callbacks",
        "_condition",
        "_future",
        "_pin",
        "_state",
        "_value",
        "duplicate",
        "epoch",
        "seq",
    )

    def __init__(
        self,
        condition: threading.Condition | None = None,
        seq: int = -1,
        pin: Callable[[Receipt], None] | None = None,
    ) -> None:
        self._condition = condition if condition is not None else threading.Condition()
        self._state = _PENDING
        self._value: Any = None  # the offset, or the exception
        self._callbacks: list[Callable[[Receipt], object]] | None = None
        self._future: Future[int | None] | None = None
        self._pin = pin
        self.seq = seq
        self.epoch: str | None = None
        self.duplicate = False

    def __repr__(self) -> str:
        state = ("pending", "acked", "failed")[self._state]
        return f"<Receipt seq={self.seq} {state}>"

    def done(self) -> bool:
        """True once acked or failed."""
        return self._state != _PENDING

    def cancel(self) -> bool:
        """A queued publish cannot be taken back: always False."""
        return False

    def cancelled(self) -> bool:
        return False

    def running(self) -> bool:
        return False

    def result(self, timeout: float | None = None) -> int | None:
        """The offset, once acked.

        Raises:
            DeliveryFailed: the message failed.
            TimeoutError: not done within ``timeout`` seconds.
        """
        self._wait(timeout)
        if self._state == _FAILED:
            raise self._value
        value: int | None = self._value
        return value

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """The :class:`DeliveryFailed` of a failed message, None for an acked one.

        Raises:
            TimeoutError: not done within ``timeout`` seconds.
        """
        self._wait(timeout)
        return self._value if self._state == _FAILED else None

    def add_done_callback(self, fn: Callable[[Receipt], object]) -> None:
        """Call ``fn(receipt)`` once done (at once if it is), in the I/O thread otherwise.
        A callback must not block on another receipt."""
        pin, self._pin = self._pin, None
        if pin is not None:
            pin(self)
        with self._condition:
            if self._state == _PENDING:
                if self._callbacks is None:
                    self._callbacks = []
                self._callbacks.append(fn)
                return
        _call(fn, self)

    def as_future(self) -> Future[int | None]:
        """A :class:`concurrent.futures.Future` completed with this receipt's outcome
        (the same one on every call; it keeps working when the receipt is dropped)."""
        pin, self._pin = self._pin, None
        if pin is not None:
            pin(self)
        with self._condition:
            future = self._future
            if future is None:
                future = self._future = Future()
                if self._state == _PENDING:
                    future.set_running_or_notify_cancel()
                    return future
            else:
                return future
        _settle_future(future, self)
        return future

    def __await__(self) -> Generator[Any, None, int | None]:
        """``await receipt``: the offset, without blocking the awaiting loop."""
        return asyncio.wrap_future(self.as_future()).__await__()

    def set_result(
        self, offset: int | None, epoch: str | None = None, duplicate: bool = False
    ) -> None:
        """Complete as acked at ``offset`` (what the outbox does on an ack)."""
        _complete([(self, offset, epoch, duplicate)], self._condition)

    def set_exception(self, error: BaseException) -> None:
        """Complete as failed with ``error``."""
        _complete([(self, error, None, None)], self._condition)

    def _wait(self, timeout: float | None) -> None:
        """Wait until done or ``timeout``; the shared condition also wakes us for others."""
        if self._state != _PENDING:
            return
        end = None if timeout is None else time.monotonic() + timeout
        with self._condition:
            while self._state == _PENDING:
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(f"message seq={self.seq} is not acked yet")
                self._condition.wait(left)


Outcome = tuple[Receipt, Any, Any, Any]
"""(receipt, offset or exception, epoch or None, duplicate or None for a failure)."""


def _complete(outcomes: list[Outcome], condition: threading.Condition) -> None:
    """Complete receipts sharing ``condition``: their states are set under it once, one
    ``notify_all`` wakes whoever waits, and callbacks run after, outside the lock."""
    later: list[Receipt] = []
    with condition:
        for receipt, value, epoch, duplicate in outcomes:
            if receipt._state != _PENDING:
                continue
            receipt._value = value
            if duplicate is None:
                receipt._state = _FAILED
            else:
                receipt._state = _DONE
                receipt.epoch = epoch
                receipt.duplicate = duplicate
            if receipt._callbacks is not None or receipt._future is not None:
                later.append(receipt)
        condition.notify_all()
    for receipt in later:
        if receipt._future is not None:
            _settle_future(receipt._future, receipt)
        for fn in receipt._callbacks or ():
            _call(fn, receipt)
        receipt._callbacks = None


def _settle_future(future: Future[int | None], receipt: Receipt) -> None:
    with contextlib.suppress(InvalidStateError):  # another thread settled it first
        if receipt._state == _FAILED:
            future.set_exception(receipt._value)
        else:
            future.set_result(receipt._value)


def _call(fn: Callable[[Receipt], object], receipt: Receipt) -> None:
    try:
        fn(receipt)
    except Exception:
        log.exception("exception calling a receipt callback for %r", receipt)


def _holder(receipt: Receipt | weakref.ref[Receipt] | None) -> Receipt | None:
    """The receipt an entry refers to, if it is still alive (see :meth:`Outbox.pin`)."""
    if isinstance(receipt, weakref.ref):
        return receipt()
    return receipt


class Outbox:
    """Thread-safe outbox of one stream handle.

    Args:
        window: the pure bookkeeping it guards.
        clock: monotonic time source (injectable for tests).
        text_prefix: unused (kept for callers of the earlier signature).

    Hooks the owner sets: ``wakeup`` (a put found the sender idle), ``may_wait`` (False
    where waiting for room would deadlock) and ``on_release`` (a message whose item is
    not plain text left the outbox: close its source).
    """

    def __init__(
        self,
        window: Window[Any],
        clock: Callable[[], float] = time.monotonic,
        text_prefix: bytes = b"",
    ) -> None:
        self.window = window
        self.clock = clock
        self.text_prefix = text_prefix
        self.lock = threading.Lock()
        self.receipts = threading.Condition()
        self._room = threading.Condition(self.lock)
        self._empty = threading.Condition(self.lock)
        self._failures: list[DeliveryFailed] = []
        self.failure_count = 0
        self._room_waiters = 0
        self._completing = 0  # batches removed from the window, receipts not yet completed
        self._sender_idle = False
        self.wakeup: Callable[[], None] = lambda: None
        self.may_wait: Callable[[], bool] = lambda: True
        self.on_release: Callable[[Entry[Any]], None] = lambda entry: None
        self.closed: str | None = None
        self._pin = self.pin  # one bound method for all receipts
        self._puts = 0

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
        return self._put(item, size, block, timeout, deadline)

    def put_json(
        self,
        payload: bytes,
        key: str | None = None,
        *,
        block: bool = True,
        timeout: float | None = None,
        deadline: object = DEFAULT_DEADLINE,
    ) -> Receipt:
        """Add a JSON publish of the serialised ``payload`` (sent alone or in a batch):
        :meth:`put` of its outbox item (the payload itself, or with a key a
        :class:`KeyedJson`), which is all the sender reads to build its frame."""
        item = payload if key is None else KeyedJson(payload, key)
        return self._put(item, len(payload), block, timeout, deadline)

    def _put(
        self, item: Any, size: int, block: bool, timeout: float | None, deadline: object
    ) -> Receipt:
        """Add under the lock."""
        with self.lock:
            window = self.window
            room = window.has_room(size)
            if block and (not room or window.backlogged) and self.may_wait():
                if self._sender_idle:  # let it send what is queued
                    self._sender_idle = False
                    self.wakeup()  # (only schedules a call in the I/O loop)
                self._wait_for_room(size, timeout)
                room = False  # check again below
            if self.closed is not None:
                raise StreamClosed(self.closed)
            if room and deadline is DEFAULT_DEADLINE:
                entry = window.add_unchecked(item, size, self.clock())
            else:
                entry = window.add(item, size, self.clock(), deadline=deadline)  # or OutboxFull
            receipt = Receipt(self.receipts, entry.seq, self._pin)
            entry.receipt = weakref.ref(receipt)
            wake = self._sender_idle
            self._sender_idle = False
            self._puts += 1
            yield_now = not self._puts & YIELD_MASK
        if wake:
            self.wakeup()
        elif yield_now:
            _yield_gil()
        return receipt

    def put_json_many(
        self,
        payloads: list[bytes],
        *,
        block: bool = True,
        timeout: float | None = None,
        deadline: object = DEFAULT_DEADLINE,
    ) -> list[Receipt]:
        """Add many JSON publishes (consecutive seqs) under one hold of the lock; when
        the outbox fills up midway, wake the sender and wait for room (``block``).

        Raises:
            OutboxFull: no room (``block=False``), or still none after ``timeout``; the
                messages added before it stay queued (``exc.receipts``).
            StreamClosed: the handle is closed.
        """
        receipts: list[Receipt] = []
        wake = False
        try:
            with self.lock:
                if self.closed is not None:
                    raise StreamClosed(self.closed)
                window = self.window
                now = self.clock()
                add, has_room = window.add_unchecked, window.has_room
                fast = deadline is DEFAULT_DEADLINE
                condition, pin = self.receipts, self._pin
                for payload in payloads:
                    size = len(payload)
                    if fast and has_room(size) and not window.backlogged:  # the common case
                        entry = add(payload, size, now)
                        receipt = Receipt(condition, entry.seq, pin)
                        entry.receipt = weakref.ref(receipt)
                        receipts.append(receipt)
                        if len(receipts) & YIELD_MASK == 0:
                            wake = wake or self._sender_idle
                            self._sender_idle = False
                            self.lock.release()
                            try:
                                if wake:
                                    wake = False
                                    self.wakeup()
                                _yield_gil()
                            finally:
                                self.lock.acquire()
                            if self.closed is not None:
                                raise StreamClosed(self.closed)
                            now = self.clock()
                        continue
                    full = not window.has_room(size) or window.backlogged
                    if full and block and self.may_wait():
                        if self._sender_idle or wake:  # let it send what is queued
                            self._sender_idle = wake = False
                            self.wakeup()  # (only schedules a call in the I/O loop)
                        self._wait_for_room(size, timeout)
                        now = self.clock()
                    if self.closed is not None:
                        raise StreamClosed(self.closed)
                    entry = window.add(payload, size, now, deadline=deadline)
                    receipt = Receipt(self.receipts, entry.seq, self._pin)
                    entry.receipt = weakref.ref(receipt)
                    receipts.append(receipt)
                    wake = wake or self._sender_idle
                    self._sender_idle = False
                    if len(receipts) & YIELD_MASK == 0:  # (see _yield_gil)
                        self.lock.release()
                        try:
                            if wake:
                                self._sender_idle = wake = False
                                self.wakeup()
                            _yield_gil()
                        finally:
                            self.lock.acquire()
                        now = self.clock()
        except Exception as exc:
            exc.receipts = receipts  # type: ignore[attr-defined]
            if receipts:
                self.wakeup()
            raise
        if wake or self._sender_idle:
            self._sender_idle = False
            self.wakeup()
        return receipts

    def rewind(self) -> None:
        """Send everything unacked again from the oldest (e.g. as single publishes after
        the server refused a batch), as after a reconnect."""
        with self.lock:
            self.window.disconnect()
            self.window.connect()

    def _wait_for_room(self, size: int, timeout: float | None) -> None:
        """Wait (lock held) until ``size`` bytes fit and the sender is not backlogged
        (see :attr:`Window.backlogged`), the outbox closes or ``timeout``."""
        window = self.window
        end = None if timeout is None else self.clock() + timeout
        self._room_waiters += 1
        try:
            while self.closed is None and (not window.has_room(size) or window.backlogged):
                left = None if end is None else end - self.clock()
                if left is not None and left <= 0:
                    break
                self._room.wait(left)
        finally:
            self._room_waiters -= 1

    def pin(self, receipt: Receipt) -> None:
        """Hold ``receipt`` strongly until it completes (a callback is attached to it)."""
        with self.lock:
            entry = self.window.get(receipt.seq)
            if entry is not None:
                entry.receipt = receipt

    def has_room(self, size: int) -> bool:
        with self.lock:
            return self.window.has_room(size)

    def wait_empty(self, timeout: float | None) -> bool:
        """Wait until every message is acked or failed, and its receipt completed;
        False on timeout."""
        end = None if timeout is None else self.clock() + timeout
        with self.lock:
            while self.window.outbox_messages or self._completing:
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
        """Up to ``limit`` messages to send now. When there are none and the window is
        not full, marks the sender idle so the next :meth:`put` calls :attr:`wakeup`
        (with a full window, the next ack is what makes room)."""
        with self.lock:
            window = self.window
            out = window.take_many(self.clock(), limit)
            self._sender_idle = not out and not window.window_full
            if out and self._room_waiters:  # sending shrinks the backlog
                self._room.notify_all()
        return out

    def connected(self) -> None:
        with self.lock:
            self.window.connect()

    def disconnected(self) -> None:
        with self.lock:
            self.window.disconnect()
            if self._room_waiters:  # no backlog bound while disconnected
                self._room.notify_all()

    def restart_timer(self, entry: Entry[Any]) -> None:
        with self.lock:
            self.window.restart_timer(entry, self.clock())

    def ack(self, seq: int, offset: int | None, epoch: str | None, duplicate: bool) -> bool:
        """Complete seq's receipt with its offset. False for an unknown (stale) seq."""
        return self.ack_many([(seq, offset, epoch, duplicate)]) == 1

    def ack_many(self, acks: list[Ack]) -> int:
        """Apply a batch of acks under one lock; returns how many were for unacked
        messages (the others are stale: acked before, or failed)."""
        done: list[tuple[Entry[Any], Ack]] = []
        with self.lock:
            ack, now = self.window.ack, self.clock()
            for one in acks:
                entry = ack(one[0], now, duplicate=one[3])
                if entry is not None:
                    done.append((entry, one))
            if not done:
                return 0
            self._completing += 1
            self._after_removal()
        try:
            release = self.on_release
            outcomes: list[Outcome] = []
            for entry, (_, offset, epoch, duplicate) in done:
                if not isinstance(entry.item, bytes):
                    release(entry)
                receipt = _holder(entry.receipt)
                if receipt is not None:
                    outcomes.append((receipt, offset, epoch, duplicate))
            if outcomes:
                _complete(outcomes, self.receipts)
        finally:
            self._completed()
        return len(done)

    def nack(self, seq: int, code: NackCode | FailureCode, reason: str, retry: bool) -> None:
        """A refused publish: resend later (``retry``) or fail its receipt."""
        with self.lock:
            entry = self.window.nack(seq, self.clock(), retry=retry)
            failed = self._record_failures([entry], code, reason) if entry else []
        self._complete_failures(failed)

    def fail(self, seq: int, code: FailureCode, reason: str) -> None:
        """Fail one message for a local reason (e.g. too big for the server)."""
        self.nack(seq, code, reason, retry=False)

    def expire(self) -> None:
        """Fail the messages past their delivery deadline."""
        with self.lock:
            expired = self.window.expire(self.clock())
            reason = "not acknowledged before its delivery deadline"
            failed = self._record_failures(expired, FailureCode.EXPIRED, reason) if expired else []
        self._complete_failures(failed)

    def next_wakeup(self) -> float | None:
        with self.lock:
            return self.window.next_wakeup()

    def close(self, reason: str) -> list[Entry[Any]]:
        """Refuse further puts; fail and return what is still unacked."""
        with self.lock:
            self.closed = reason
            entries = self.window.drain()
            self._room.notify_all()
            failed = self._record_failures(entries, FailureCode.CLOSED, reason) if entries else []
        self._complete_failures(failed)
        return entries

    def _after_removal(self) -> None:
        """Wake producers waiting for room and flushers waiting for empty (lock held)."""
        if self._room_waiters:
            self._room.notify_all()
        if not self.window.outbox_messages and not self._completing:
            self._empty.notify_all()

    def _completed(self) -> None:
        """Receipts of removed messages are completed (outside the lock, since their
        callbacks may publish): only now may ``flush`` see the outbox empty."""
        with self.lock:
            self._completing -= 1
            self._after_removal()

    def _record_failures(
        self, entries: list[Entry[Any]], code: NackCode | FailureCode, reason: str
    ) -> list[tuple[Entry[Any], DeliveryFailed]]:
        """Count failed messages for the next ``flush`` (lock held, in the same hold that
        removed them, so a flush never sees them gone but not failed)."""
        errors = []
        for entry in entries:
            error = DeliveryFailed(entry.seq, code, reason)
            self.failure_count += 1
            if len(self._failures) < MAX_REPORTED_FAILURES:
                self._failures.append(error)
            errors.append((entry, error))
        if errors:
            self._completing += 1
        self._after_removal()
        return errors

    def _complete_failures(self, failed: list[tuple[Entry[Any], DeliveryFailed]]) -> None:
        """Release the failed messages and fail their receipts (lock not held)."""
        if not failed:
            return
        try:
            outcomes: list[Outcome] = []
            for entry, error in failed:
                if not isinstance(entry.item, bytes):
                    self.on_release(entry)
                receipt = _holder(entry.receipt)
                if receipt is not None:
                    outcomes.append((receipt, error, None, None))
            if outcomes:
                _complete(outcomes, self.receipts)
        finally:
            self._completed()
