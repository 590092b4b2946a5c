"""The reliable publisher's bookkeeping: sequence numbers, window, retransmits, deadlines.

Pure: no socket, thread, loop or clock. Every method that depends on time takes ``now``
(seconds, any monotonic origin), so tests drive it with exact times.

Theory of operation. Each message added gets the producer's next sequence number and
waits in the **outbox** (bounded in messages and bytes) until it is acked, fails, or its
delivery deadline passes. Messages go on the wire in sequence order, at most ``window``
unacked ones per connection. A sent message that is not acked within ``ack_timeout``
is due for retransmission (same seq: the server's dedupe acks it without appending it
twice). When the connection drops, nothing is on the wire any more: after the next
:meth:`Window.connect` every unacked message is sent again, in order, from the oldest.

The driver (``nbws.client.thread``) loops::

    entry = window.take(now)       # next message to (re)send, or None
    ...send it...
    window.ack(seq, now)           # on each ack; window.nack(...) on each nack
    window.expire(now)             # messages past their deadline -> fail their futures
    window.next_wakeup()           # when to call take()/expire() again if nothing happens
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass
from typing import Generic, TypeVar

from .errors import OutboxFull

__all__ = ["DEFAULT_DEADLINE", "Entry", "Window", "WindowStats", "percentile"]

T = TypeVar("T")


class _DefaultDeadline:
    def __repr__(self) -> str:
        return "<default deadline>"


DEFAULT_DEADLINE: object = _DefaultDeadline()
"""Sentinel for :meth:`Window.add`: use the window's own ``deadline``."""


@dataclass(slots=True, eq=False)
class Entry(Generic[T]):
    """One unacked message.

    Attributes:
        seq: its sequence number.
        item: what the driver needs to send it (opaque to the window).
        size: bytes counted against the outbox's byte bound.
        added: when it was added.
        expires: when its delivery deadline passes (None: never).
        attempts: transmissions so far, over all connections.
        sent_at: start of the latest transmission (None: never sent).
        retransmit_at: when it is due again if still unacked on this connection.
    """

    seq: int
    item: T
    size: int
    added: float
    expires: float | None
    attempts: int = 0
    sent_at: float | None = None
    retransmit_at: float | None = None
    wire: int = -1  # connection generation it was last sent on


@dataclass(frozen=True, slots=True)
class WindowStats:
    """Counters of one producer (see :meth:`Window.stats`)."""

    producer: str
    sent: int
    acked: int
    duplicates: int
    retransmitted: int
    failed: int
    expired: int
    in_flight: int
    queued: int
    outbox_messages: int
    outbox_bytes: int
    next_seq: int
    latency_p50: float | None
    latency_p99: float | None


def percentile(sorted_samples: list[float], p: float) -> float | None:
    """Nearest-rank percentile of already sorted samples (None when there are none)."""
    if not sorted_samples:
        return None
    rank = max(1, math.ceil(p / 100.0 * len(sorted_samples)))
    return sorted_samples[min(rank, len(sorted_samples)) - 1]


class Window(Generic[T]):
    """Outbox + send window of one producer.

    Args:
        producer: the producer id (reported in stats; the window numbers its messages).
        window: most unacked messages on the wire per connection (1 = stop-and-wait).
            Keep it at or below the server's ``dedupe_window``.
        ack_timeout: seconds after a transmission before an unacked message is sent again.
        retransmit: retransmit on ``ack_timeout`` while connected (after a reconnect
            everything unacked is always sent again).
        retry_delay: seconds before resending a message nacked with ``retry: true``.
        max_messages: outbox bound in messages (queued + in flight).
        max_bytes: outbox bound in bytes; one message larger than this is still accepted
            when the outbox is empty (otherwise it could never be sent).
        deadline: seconds after :meth:`add` at which an unacked message fails (None: never).
        first_seq: the first sequence number.
        latency_samples: how many recent ack latencies the percentiles are computed over.
    """

    def __init__(
        self,
        producer: str,
        *,
        window: int = 1000,
        ack_timeout: float = 10.0,
        retransmit: bool = True,
        retry_delay: float = 1.0,
        max_messages: int = 100_000,
        max_bytes: int = 256 * 1024 * 1024,
        deadline: float | None = 300.0,
        first_seq: int = 0,
        latency_samples: int = 10_000,
    ) -> None:
        if window < 1:
            raise ValueError("window must be at least 1")
        if max_messages < 1 or max_bytes < 1:
            raise ValueError("the outbox bounds must be at least 1")
        if ack_timeout <= 0:
            raise ValueError("ack_timeout must be positive")
        self.producer = producer
        self.window = window
        self.ack_timeout = ack_timeout
        self.retransmit = retransmit
        self.retry_delay = retry_delay
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.deadline = deadline
        self._entries: dict[int, Entry[T]] = {}  # insertion order == seq order
        self._next_seq = first_seq
        self._cursor = first_seq  # next seq not yet sent on this connection
        self._bytes = 0
        self._in_flight = 0
        self._generation = 0
        self._connected = False
        self._retransmits: list[tuple[float, int]] = []  # heap of (due, seq)
        self._expiries: list[tuple[float, int]] = []  # heap of (expires, seq)
        self._latencies: deque[float] = deque(maxlen=max(1, latency_samples))
        self.sent = 0
        self.acked = 0
        self.duplicates = 0
        self.retransmitted = 0
        self.failed = 0
        self.expired = 0

    # --- outbox --------------------------------------------------------------------------

    @property
    def outbox_messages(self) -> int:
        """Messages added and not yet acked, failed or expired."""
        return len(self._entries)

    @property
    def outbox_bytes(self) -> int:
        """Bytes of those messages."""
        return self._bytes

    @property
    def in_flight(self) -> int:
        """Messages sent on the current connection and not acked yet."""
        return self._in_flight

    @property
    def next_seq(self) -> int:
        """The sequence number the next added message gets."""
        return self._next_seq

    @property
    def connected(self) -> bool:
        return self._connected

    def has_room(self, size: int) -> bool:
        """True if a message of ``size`` bytes fits in the outbox now."""
        if len(self._entries) >= self.max_messages:
            return False
        return not self._entries or self._bytes + size <= self.max_bytes

    def add(
        self, item: T, size: int, now: float, *, deadline: object = DEFAULT_DEADLINE
    ) -> Entry[T]:
        """Queue a message; it gets the next sequence number.

        Args:
            item: what the driver will send.
            size: its size in bytes (counted against ``max_bytes``).
            now: the current time.
            deadline: this message's delivery deadline in seconds (None: never);
                defaults to the window's.

        Raises:
            OutboxFull: no room (see :meth:`has_room`).
        """
        if not self.has_room(size):
            raise OutboxFull(
                f"outbox full: {len(self._entries)}/{self.max_messages} messages, "
                f"{self._bytes}+{size}/{self.max_bytes} bytes"
            )
        limit = self.deadline if deadline is DEFAULT_DEADLINE else deadline
        if limit is not None and not isinstance(limit, (int, float)):
            raise TypeError("deadline must be a number of seconds or None")
        expires = None if limit is None else now + float(limit)
        entry: Entry[T] = Entry(self._next_seq, item, size, now, expires)
        self._entries[entry.seq] = entry
        self._next_seq += 1
        self._bytes += size
        if expires is not None:
            heapq.heappush(self._expiries, (expires, entry.seq))
        return entry

    def get(self, seq: int) -> Entry[T] | None:
        """The unacked entry with ``seq``, if any."""
        return self._entries.get(seq)

    def entries(self) -> list[Entry[T]]:
        """Every unacked entry, oldest first."""
        return list(self._entries.values())

    # --- connection ----------------------------------------------------------------------

    def connect(self) -> None:
        """A connection is up: sending may start (again) from the oldest unacked message."""
        self._connected = True

    def disconnect(self) -> None:
        """The connection is gone: nothing is on the wire; all unacked will be resent."""
        self._connected = False
        self._generation += 1
        self._in_flight = 0
        self._retransmits.clear()
        self._cursor = next(iter(self._entries), self._next_seq)

    # --- sending -------------------------------------------------------------------------

    def take(self, now: float) -> Entry[T] | None:
        """The next message to put on the wire, marked as sent at ``now``.

        Due retransmissions come first, then unsent messages in order while fewer than
        ``window`` are in flight. None when disconnected or nothing is due.
        """
        if not self._connected:
            return None
        entry = self._due_retransmit(now)
        if entry is not None:
            self.retransmitted += 1
            self._transmit(entry, now)
            return entry
        if self._in_flight >= self.window:
            return None
        entries, cursor, end = self._entries, self._cursor, self._next_seq
        while cursor < end and cursor not in entries:
            cursor += 1
        self._cursor = cursor
        if cursor >= end:
            return None
        entry = entries[cursor]
        self._cursor = cursor + 1
        self._in_flight += 1
        entry.wire = self._generation
        if entry.attempts:
            self.retransmitted += 1
        else:
            self.sent += 1
        self._transmit(entry, now)
        return entry

    def restart_timer(self, entry: Entry[T], now: float) -> None:
        """Restart ``entry``'s ack timer (call when a long, streamed send completes)."""
        alive = self._entries.get(entry.seq) is entry and entry.wire == self._generation
        if alive and self.retransmit:
            self._schedule(entry, now + self.ack_timeout)

    def _transmit(self, entry: Entry[T], now: float) -> None:
        entry.attempts += 1
        entry.sent_at = now
        entry.retransmit_at = None
        if self.retransmit:
            self._schedule(entry, now + self.ack_timeout)

    def _schedule(self, entry: Entry[T], due: float) -> None:
        entry.retransmit_at = due
        heapq.heappush(self._retransmits, (due, entry.seq))

    def _valid_retransmit(self, due: float, seq: int) -> Entry[T] | None:
        entry = self._entries.get(seq)
        if entry is None or entry.wire != self._generation or entry.retransmit_at != due:
            return None
        return entry

    def _due_retransmit(self, now: float) -> Entry[T] | None:
        heap = self._retransmits
        while heap:
            due, seq = heap[0]
            entry = self._valid_retransmit(due, seq)
            if entry is None:
                heapq.heappop(heap)
                continue
            if due > now:
                return None
            heapq.heappop(heap)
            return entry
        return None

    # --- outcomes ------------------------------------------------------------------------

    def ack(self, seq: int, now: float, *, duplicate: bool = False) -> Entry[T] | None:
        """Seq was appended (or was already): forget it. None for an unknown/stale seq."""
        entry = self._entries.pop(seq, None)
        if entry is None:
            return None
        self._forget(entry)
        self.acked += 1
        if duplicate:
            self.duplicates += 1
        if entry.sent_at is not None:
            self._latencies.append(now - entry.sent_at)
        return entry

    def nack(self, seq: int, now: float, *, retry: bool) -> Entry[T] | None:
        """Seq was refused. With ``retry`` it is resent after ``retry_delay`` and None is
        returned; otherwise it is removed and returned (the caller fails its future)."""
        entry = self._entries.get(seq)
        if entry is None:
            return None
        if retry:
            if entry.wire == self._generation:
                self._schedule(entry, now + self.retry_delay)
            return None
        del self._entries[seq]
        self._forget(entry)
        self.failed += 1
        return entry

    def expire(self, now: float) -> list[Entry[T]]:
        """Remove and return the messages whose delivery deadline is at or before ``now``."""
        out: list[Entry[T]] = []
        heap = self._expiries
        while heap and heap[0][0] <= now:
            _, seq = heapq.heappop(heap)
            entry = self._entries.pop(seq, None)
            if entry is None:
                continue
            self._forget(entry)
            self.expired += 1
            out.append(entry)
        return out

    def drain(self) -> list[Entry[T]]:
        """Remove and return every unacked message (the handle is closing)."""
        out = list(self._entries.values())
        for entry in out:
            self._forget(entry)
        self._entries.clear()
        self._retransmits.clear()
        self._expiries.clear()
        return out

    def _forget(self, entry: Entry[T]) -> None:
        self._bytes -= entry.size
        if entry.wire == self._generation:
            self._in_flight -= 1
        entry.wire = -1

    # --- timing and stats ------------------------------------------------------------

    def next_wakeup(self) -> float | None:
        """The earliest time a retransmission or an expiry is due (None: nothing timed)."""
        heap = self._retransmits
        while heap and self._valid_retransmit(*heap[0]) is None:
            heapq.heappop(heap)
        expiries = self._expiries
        while expiries and expiries[0][1] not in self._entries:
            heapq.heappop(expiries)
        times = []
        if heap and self._connected:
            times.append(heap[0][0])
        if expiries:
            times.append(expiries[0][0])
        return min(times) if times else None

    def latency_percentiles(self) -> tuple[float | None, float | None]:
        """Ack latency p50 and p99 (seconds from the latest transmission to its ack)."""
        samples = sorted(self._latencies)
        return percentile(samples, 50), percentile(samples, 99)

    def stats(self) -> WindowStats:
        """A snapshot of the counters."""
        p50, p99 = self.latency_percentiles()
        return WindowStats(
            producer=self.producer,
            sent=self.sent,
            acked=self.acked,
            duplicates=self.duplicates,
            retransmitted=self.retransmitted,
            failed=self.failed,
            expired=self.expired,
            in_flight=self._in_flight,
            queued=len(self._entries) - self._in_flight,
            outbox_messages=len(self._entries),
            outbox_bytes=self._bytes,
            next_seq=self._next_seq,
            latency_p50=p50,
            latency_p99=p99,
        )
