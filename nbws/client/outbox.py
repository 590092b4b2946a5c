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

Runs (``publish_rows``, ``publish_many``: :meth:`Outbox.put_rows`) cost no object per
message at all: each run is one window entry holding its payloads, and the receipts of
one call are one :class:`Receipts`, a lazy sequence over one :class:`RowsOutcome` (the
offsets in an ``array``, filled a range at a time when read); a :class:`Receipt`
is made only for the rows someone looks at.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import weakref
from array import array
from bisect import bisect_right
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import Future, InvalidStateError
from itertools import accumulate
from typing import Any, overload

from ..errors import NackCode
from .errors import DeliveryFailed, FailureCode, StreamClosed
from .frames import KeyedJson
from .window import DEFAULT_DEADLINE, Entry, Rows, Window, WindowStats

__all__ = ["Ack", "Outbox", "RangeAck", "Receipt", "Receipts", "RowsOutcome"]

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

RangeAck = tuple[int, int, Any, Any, Any]
"""A range ack as the I/O thread hands it over: (seq, last, offset, epoch, duplicates),
``duplicates`` the ack's map of already appended seqs (as strings) to offsets, or None;
the other seqs were appended at consecutive offsets from ``offset``."""


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


def _settle(receipt: Receipt, value: Any, epoch: Any, duplicate: bool | None) -> None:
    """Record a receipt's outcome (under its condition): ``duplicate`` None means it
    failed, ``value`` then being the error."""
    receipt._value = value
    if duplicate is None:
        receipt._state = _FAILED
    else:
        receipt._state = _DONE
        receipt.epoch = epoch
        receipt.duplicate = duplicate


def _complete(outcomes: list[Outcome], condition: threading.Condition) -> None:
    """Complete receipts sharing ``condition``: their states are set under it once, one
    ``notify_all`` wakes whoever waits, and callbacks run after, outside the lock."""
    later: list[Receipt] = []
    with condition:
        for receipt, value, epoch, duplicate in outcomes:
            if receipt._state != _PENDING:
                continue
            _settle(receipt, value, epoch, duplicate)
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


_PENDING_ROW, _NO_OFFSET, _FAILED_ROW = -2, -1, -3
"""What :meth:`RowsOutcome.values` holds for a row that is not acked at an offset."""


class RowsOutcome:
    """The outcomes of the rows queued by one :meth:`Outbox.put_rows`, in arrays: no
    object per row. Settled a range at a time (under the receipts' condition) by the
    outbox as acks, nacks and expiries come.

    An ack of a range costs one tuple (a segment): the offsets are written into the
    array only when someone reads them (:meth:`values`), so a publisher that only
    flushes never pays per row for its receipts.

    Attributes:
        pending: rows queued and not yet settled.
    """

    __slots__ = (
        "_offsets",
        "_segments",
        "condition",
        "duplicates",
        "epoch",
        "epochs",
        "failures",
        "pending",
        "queued",
        "run_rows",
        "run_seqs",
        "watchers",
    )

    def __init__(self, condition: threading.Condition) -> None:
        self.condition = condition
        self._offsets = array("q")  # grows as rows are queued
        self._segments: list[tuple[int, int, int | None]] = []  # (index, count, offset)
        self.run_rows: list[int] = []  # the first row of each run queued, ascending
        self.run_seqs: list[int] = []  # and its seq
        self.queued = 0
        self.pending = 0
        self.epoch: str | None = None
        self.epochs: dict[int, str | None] = {}  # rows whose epoch is not ``epoch``
        self.duplicates: set[int] = set()
        self.failures: list[tuple[int, int, DeliveryFailed]] = []  # (start, stop, error)
        self.watchers: dict[int, Receipt] = {}  # receipts made for pending rows

    def queue(self, seq: int, count: int) -> None:
        """``count`` more rows were queued at seqs from ``seq``."""
        self._offsets.extend(array("q", [_PENDING_ROW]) * count)
        self.run_rows.append(self.queued)
        self.run_seqs.append(seq)
        self.queued += count
        self.pending += count

    def seq(self, i: int) -> int:
        """The seq of queued row ``i``."""
        k = bisect_right(self.run_rows, i) - 1
        return self.run_seqs[k] + i - self.run_rows[k]

    def settle(
        self,
        index: int,
        count: int,
        offset: int | None,
        epoch: str | None,
        duplicates: list[tuple[int, int | None]] | None = None,
    ) -> list[Outcome]:
        """Rows ``index`` to ``index + count`` were acked at consecutive offsets from
        ``offset`` (or at the ``(offset, duplicate)`` given per row). Condition held.
        Returns the outcomes of the receipts made for them."""
        stop = index + count
        if duplicates is not None:
            offsets = self._offsets
            for i, (row_offset, duplicate) in enumerate(duplicates, index):
                offsets[i] = _NO_OFFSET if row_offset is None else row_offset
                if duplicate:
                    self.duplicates.add(i)
        else:
            self._segments.append((index, count, offset))
        if self.epoch is None and not self.epochs:
            self.epoch = epoch
        elif epoch != self.epoch:
            self.epochs.update(dict.fromkeys(range(index, stop), epoch))
        self.pending -= count
        return self._watched(index, stop)

    def fail(self, index: int, count: int, error: DeliveryFailed) -> list[Outcome]:
        """Rows ``index`` to ``index + count`` failed with ``error`` (its seq: the first
        row's). Condition held."""
        stop = index + count
        self._offsets[index:stop] = array("q", [_FAILED_ROW]) * count
        self.failures.append((index, stop, error))
        self.pending -= count
        return self._watched(index, stop)

    def values(self) -> array[int]:
        """Per row, its offset, or -1 (acked, offset unknown), -2 (pending), -3 (failed).
        Condition held."""
        segments, offsets = self._segments, self._offsets
        if segments:
            for index, count, offset in segments:
                if offset is None:
                    offsets[index : index + count] = array("q", [_NO_OFFSET]) * count
                else:
                    offsets[index : index + count] = array("q", range(offset, offset + count))
            segments.clear()
        return offsets

    def _watched(self, start: int, stop: int) -> list[Outcome]:
        watchers = self.watchers
        if not watchers:
            return []
        out: list[Outcome] = []
        for i in [i for i in watchers if start <= i < stop]:
            receipt = watchers.pop(i)
            state = self.state(i)
            out.append((receipt, state[1], state[2], state[3]))
        return out

    def error(self, i: int) -> DeliveryFailed:
        """The error of failed row ``i``."""
        for start, stop, error in self.failures:
            if start <= i < stop:
                if i == start:
                    return error
                return DeliveryFailed(self.seq(i), error.code, error.reason)
        raise LookupError(i)  # pragma: no cover - only asked for failed rows

    def state(self, i: int) -> tuple[int, Any, str | None, bool | None]:
        """``(offset code, offset or error, epoch, duplicate)`` of row ``i`` (duplicate
        None for a failed row). Condition held."""
        value = self.values()[i]
        if value == _FAILED_ROW:
            return value, self.error(i), None, None
        epoch = self.epochs.get(i, self.epoch) if self.epochs else self.epoch
        offset = None if value == _NO_OFFSET else value
        return value, offset, epoch, i in self.duplicates

    def receipt(self, i: int) -> Receipt:
        """A :class:`Receipt` for row ``i``: completed if it is settled, else one that
        completes when it is (the same one while it is pending)."""
        with self.condition:
            receipt = self.watchers.get(i)
            if receipt is not None:
                return receipt
            seq = self.seq(i) if i < self.queued else -1
            receipt = Receipt(self.condition, seq)
            value, offset, epoch, duplicate = self.state(i)
            if value == _PENDING_ROW:
                self.watchers[i] = receipt
                return receipt
            _settle(receipt, offset, epoch, duplicate)
            return receipt


class Receipts(Sequence[Receipt]):
    """The receipts of many messages queued at once (``publish_rows``, ``publish_many``):
    a lazy sequence, one :class:`Receipt` made per index looked at (``receipts[i]``,
    iteration), so a million rows cost two arrays, not a million objects.

    ``len()`` is the number of messages queued; :meth:`wait` waits for all of them;
    :meth:`offsets` and :meth:`failures` read every outcome at once.
    """

    __slots__ = ("_outcome", "_start", "_stop")

    def __init__(self, outcome: RowsOutcome, start: int = 0, stop: int | None = None) -> None:
        self._outcome = outcome
        self._start = start
        self._stop = outcome.queued if stop is None else stop

    def __repr__(self) -> str:
        return f"<Receipts of {len(self)} messages, {self.pending()} pending>"

    def __len__(self) -> int:
        return self._stop - self._start

    @overload
    def __getitem__(self, index: int) -> Receipt: ...

    @overload
    def __getitem__(self, index: slice) -> Receipts: ...

    def __getitem__(self, index: int | slice) -> Receipt | Receipts:
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step != 1:
                raise ValueError("Receipts slices take no step")
            return Receipts(self._outcome, self._start + start, self._start + max(start, stop))
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError("receipt index out of range")
        return self._outcome.receipt(self._start + index)

    def __add__(self, other: Sequence[Receipt]) -> list[Receipt]:
        """``receipts + more``: a list of both (as with the lists this once was)."""
        return [*self, *other]

    def __radd__(self, other: Sequence[Receipt]) -> list[Receipt]:
        return [*other, *self]

    def __iter__(self) -> Iterator[Receipt]:
        receipt = self._outcome.receipt
        for i in range(self._start, self._stop):
            yield receipt(i)

    def pending(self) -> int:
        """How many are not acked or failed yet."""
        outcome = self._outcome
        with outcome.condition:
            if self._start == 0 and self._stop == outcome.queued:
                return outcome.pending
            return outcome.values()[self._start : self._stop].count(_PENDING_ROW)

    def done(self) -> bool:
        """True once every one is acked or failed."""
        return not self.pending()

    def wait(self, timeout: float | None = None) -> None:
        """Wait until every one is acked or failed (see :meth:`failures`).

        Raises:
            TimeoutError: some are still pending after ``timeout`` seconds.
        """
        end = None if timeout is None else time.monotonic() + timeout
        condition = self._outcome.condition
        with condition:
            while left := self.pending():
                wait = None if end is None else end - time.monotonic()
                if wait is not None and wait <= 0:
                    raise TimeoutError(f"{left} of {len(self)} messages are not acked yet")
                condition.wait(wait)

    def offsets(self) -> list[int | None]:
        """Every one's offset so far (None: pending, failed, or a duplicate whose offset
        the server no longer knew)."""
        with self._outcome.condition:
            values = self._outcome.values()[self._start : self._stop].tolist()
        return [None if v < 0 else v for v in values]

    def failures(self) -> list[DeliveryFailed]:
        """The errors of the ones that failed, in order."""
        outcome = self._outcome
        with outcome.condition:
            rows = [
                i
                for begin, end, _ in outcome.failures
                for i in range(max(begin, self._start), min(end, self._stop))
            ]
            return [outcome.error(i) for i in sorted(rows)]


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
        self._runs_idle = False  # idle, and a run could be sent now (run window not full)
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

    def put_rows(
        self,
        payloads: list[bytes],
        *,
        run_messages: int = 1000,
        run_bytes: int = 1024 * 1024,
        block: bool = True,
        timeout: float | None = None,
        deadline: object = DEFAULT_DEADLINE,
        outcome: RowsOutcome | None = None,
    ) -> Receipts:
        """Add many JSON publishes as runs (consecutive seqs, one window entry each, of at
        most ``run_messages`` messages and ``run_bytes`` bytes, so a run is one batch on
        the wire); between runs the lock is let go and, when the outbox is full or the
        sender backlogged, the caller waits for room (``block``).

        Args:
            outcome: where to record the outcomes (a new one when None); one call's
                rows are at ``outcome.queued`` onwards.

        Returns:
            The receipts of the rows queued by this call.

        Raises:
            OutboxFull: no room (``block=False``), or still none after ``timeout``; the
                runs added before it stay queued (``exc.receipts``).
            StreamClosed: the handle is closed.
        """
        if outcome is None:
            outcome = RowsOutcome(self.receipts)
        base = outcome.queued
        run_messages = max(1, run_messages)
        ends = list(accumulate(map(len, payloads)))  # byte offsets, to cut runs by size
        start = 0
        total = len(payloads)
        try:
            while start < total:
                stop = min(total, start + run_messages)
                before = ends[start - 1] if start else 0
                by_bytes = bisect_right(ends, before + run_bytes, start, stop)
                stop = max(start + 1, by_bytes)
                size = ends[stop - 1] - before
                rows = Rows(payloads[start:stop], base + start)
                with self.lock:
                    window = self.window
                    count = stop - start
                    full = not window.has_room(size, count) or window.backlogged
                    if full and block and self.may_wait():
                        if self._sender_idle or self._runs_idle:  # let it send what is queued
                            self._sender_idle = self._runs_idle = False
                            self.wakeup()  # (only schedules a call in the I/O loop)
                        self._wait_for_room(size, timeout, count)
                    if self.closed is not None:
                        raise StreamClosed(self.closed)
                    entry = window.add_run(
                        rows, size, self.clock(), receipt=outcome, deadline=deadline
                    )  # or OutboxFull
                    with outcome.condition:
                        outcome.queue(entry.seq, count)
                    wake = self._sender_idle or self._runs_idle
                    self._sender_idle = self._runs_idle = False
                start = stop
                if wake:
                    self.wakeup()
                else:
                    _yield_gil()  # (see _yield_gil: one per run)
        except Exception as exc:
            exc.receipts = Receipts(outcome, base, base + start)  # type: ignore[attr-defined]
            if start:
                self.wakeup()
            raise
        return Receipts(outcome, base, base + total)

    def rewind(self) -> None:
        """Send everything unacked again from the oldest (e.g. as single publishes after
        the server refused a batch), as after a reconnect."""
        with self.lock:
            self.window.disconnect()
            self.window.connect()

    def _wait_for_room(self, size: int, timeout: float | None, count: int = 1) -> None:
        """Wait (lock held) until ``count`` messages of ``size`` bytes fit and the sender
        is not backlogged (see :attr:`Window.backlogged`), the outbox closes or
        ``timeout``."""
        window = self.window
        end = None if timeout is None else self.clock() + timeout
        self._room_waiters += 1
        try:
            while self.closed is None and (not window.has_room(size, count) or window.backlogged):
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
            self._runs_idle = not out and not window.run_window_full
            if out and self._room_waiters:  # sending shrinks the backlog
                self._room.notify_all()
        return out

    def connected(self, dedupe_window: int | None = None) -> None:
        with self.lock:
            self.window.connect(dedupe_window)

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

    def ack_many(self, acks: Sequence[Ack | RangeAck]) -> int:
        """Apply a batch of acks (single ones and range ones) under one lock; returns how
        many messages they settled (the others are stale: acked before, or failed)."""
        done: list[tuple[Entry[Any], Ack]] = []
        ranges: list[tuple[list[Entry[Any]], RangeAck]] = []
        settled = 0
        with self.lock:
            window, now = self.window, self.clock()
            ack, held = window.ack, window._entries
            for one in acks:
                if len(one) == 4:
                    entry = ack(one[0], now, duplicate=one[3])
                    if entry is not None:
                        done.append((entry, one))
                        settled += 1
                else:
                    first, last, offset, epoch, duplicates = one
                    head = held.get(first)
                    if head is not None and type(head.item) is not Rows and not duplicates:
                        # single publishes sent as a batch: acked one by one
                        for seq in range(first, last + 1):
                            entry = ack(seq, now)
                            if entry is not None:
                                done.append((entry, (seq, offset, epoch, False)))
                                settled += 1
                            if offset is not None:
                                offset += 1
                        continue
                    removed = window.ack_range(
                        first, last, now, duplicates=len(duplicates) if duplicates else 0
                    )
                    if removed:
                        ranges.append((removed, one))
                        settled += sum(entry.count for entry in removed)
            if not settled:
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
                if isinstance(receipt, RowsOutcome):
                    with receipt.condition:
                        outcomes += receipt.settle(
                            entry.item.index, 1, None, epoch, [(offset, duplicate)]
                        )
                elif receipt is not None:
                    outcomes.append((receipt, offset, epoch, duplicate))
            rows = False
            for entries, (first, _, offset, epoch, duplicates) in ranges:
                settle = self._settle_range
                rows = settle(entries, first, offset, epoch, duplicates, outcomes) or rows
            if outcomes or rows:
                _complete(outcomes, self.receipts)
        finally:
            self._completed()
        return settled

    def _settle_range(
        self,
        entries: list[Entry[Any]],
        first: int,
        offset: int | None,
        epoch: str | None,
        duplicates: dict[str, int | None] | None,
        outcomes: list[Outcome],
    ) -> bool:
        """Complete the receipts of the entries a range ack removed (a run's with one
        slice assignment); adds the single receipts' outcomes. True if a run settled."""
        known = {int(k): v for k, v in duplicates.items()} if duplicates else None
        rows = False
        for entry in entries:
            seq, count = entry.seq, entry.count
            if known is None:
                start = None if offset is None else offset + seq - first
                each = None
            else:  # offsets count only the seqs appended now, in order
                appended = sum(1 for k in known if first <= k < seq)
                start = None if offset is None else offset + (seq - first) - appended
                each = []
                for s in range(seq, seq + count):
                    if s in known:
                        each.append((known[s], True))
                    else:
                        each.append((start, False))
                        start = None if start is None else start + 1
            receipt = _holder(entry.receipt)
            if isinstance(receipt, RowsOutcome):
                rows = True
                with receipt.condition:
                    outcomes += receipt.settle(entry.item.index, count, start, epoch, each)
            else:
                if not isinstance(entry.item, bytes):
                    self.on_release(entry)
                if receipt is not None:
                    if each is None:
                        outcomes.append((receipt, start, epoch, False))
                    else:
                        outcomes.append((receipt, each[0][0], epoch, each[0][1]))
        return rows

    def nack(self, seq: int, code: NackCode | FailureCode, reason: str, retry: bool) -> None:
        """A refused publish: resend later (``retry``) or fail its receipt."""
        self.nack_range(seq, seq, code, reason, retry)

    def nack_range(
        self, first: int, last: int, code: NackCode | FailureCode, reason: str, retry: bool
    ) -> None:
        """Refused publishes ``first`` to ``last``: resend later (``retry``) or fail their
        receipts (a run holding some of them is split: the rest stays queued)."""
        with self.lock:
            entries = self.window.nack_range(first, last, self.clock(), retry=retry)
            failed = self._record_failures(entries, code, reason) if entries else []
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
            self.failure_count += entry.count
            room = MAX_REPORTED_FAILURES - len(self._failures)
            if room > 0:
                self._failures.append(error)
                for seq in range(entry.seq + 1, entry.seq + min(entry.count, room)):
                    self._failures.append(DeliveryFailed(seq, code, reason))
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
            rows = False
            for entry, error in failed:
                receipt = _holder(entry.receipt)
                if isinstance(receipt, RowsOutcome):
                    rows = True
                    with receipt.condition:
                        outcomes += receipt.fail(entry.item.index, entry.count, error)
                    continue
                if not isinstance(entry.item, bytes):
                    self.on_release(entry)
                if receipt is not None:
                    outcomes.append((receipt, error, None, None))
            if outcomes or rows:
                _complete(outcomes, self.receipts)
        finally:
            self._completed()
