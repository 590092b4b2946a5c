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

**Slow start.** A new connection does not get the whole window at once: it may carry
``initial_window`` messages (and ``initial_window_bytes``) unacked, and every ack of a
message sent on it adds one message (and that message's bytes), so the allowance doubles
per acked round trip until it reaches ``window``. A link that dies after a fraction of a
second or a few kilobytes then still gets acks back on every connection that lasts a
round trip or two, instead of spending its life on one large batch whose acks never
arrive. :class:`Backoff` is the other half: how long to wait before the next connection.

The driver (``nbws.client.thread``) loops::

    entries = window.take_many(now, limit)  # next messages to (re)send, in order
    ...send them in one write...
    window.ack(seq, now)           # on each ack; window.nack(...) on each nack
    window.expire(now)             # messages past their deadline -> fail their futures
    window.next_wakeup()           # when to call take_many()/expire() again if nothing happens

Timers are kept cheap for the common case: messages with the window's own deadline expire
in the order they were added, and transmissions time out in the order they were made, so
both are plain FIFO queues; only the exceptions (per-message deadlines, the shorter delay
after a ``retry`` nack, a clock that went backwards) go to heaps.
"""

from __future__ import annotations

import heapq
import math
import random as _random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .errors import OutboxFull

__all__ = ["DEFAULT_DEADLINE", "Backoff", "Entry", "Window", "WindowStats", "percentile"]

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
        wire: the connection generation it was last sent on (-1: not on the wire).
        receipt: the driver's handle on whoever waits for the outcome (opaque here).
    """

    seq: int
    item: T
    size: int
    added: float
    expires: float | None
    attempts: int = 0
    sent_at: float | None = None
    retransmit_at: float | None = None
    wire: int = -1
    receipt: Any = None


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
    congestion_window: int
    outbox_messages: int
    outbox_bytes: int
    next_seq: int
    latency_p50: float | None
    latency_p99: float | None


def _by_seq(entry: Entry[Any]) -> int:
    return entry.seq


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
        initial_window: unacked messages a new connection starts with; each ack of a
            message sent on it allows one more, up to ``window`` (None: ``window`` at once).
        initial_window_bytes: unacked bytes a new connection starts with, growing by the
            size of each acked message until ``window`` messages are allowed (one message
            is always allowed, however large).
        ack_timeout: seconds after a transmission before an unacked message is sent again.
        retransmit: retransmit on ``ack_timeout`` while connected (after a reconnect
            everything unacked is always sent again).
        retry_delay: seconds before resending a message nacked with ``retry: true``.
        max_messages: outbox bound in messages (queued + in flight).
        max_bytes: outbox bound in bytes; one message larger than this is still accepted
            when the outbox is empty (otherwise it could never be sent).
        max_unsent: while connected, messages queued and not yet sent beyond which
            :attr:`backlogged` is True, so a publisher waits for the sender (None: four
            windows). A soft bound: :meth:`has_room` ignores it; ``max_messages`` is what
            bounds the outbox while disconnected. It keeps the outbox small while a
            publisher outruns the link, so the garbage collector has little to scan.
        deadline: seconds after :meth:`add` at which an unacked message fails (None: never).
        first_seq: the first sequence number.
        latency_samples: how many recent ack latencies the percentiles are computed over.
    """

    def __init__(
        self,
        producer: str,
        *,
        window: int = 1000,
        initial_window: int | None = 8,
        initial_window_bytes: int = 16 * 1024,
        ack_timeout: float = 10.0,
        retransmit: bool = True,
        retry_delay: float = 1.0,
        max_messages: int = 100_000,
        max_bytes: int = 256 * 1024 * 1024,
        max_unsent: int | None = None,
        deadline: float | None = 300.0,
        first_seq: int = 0,
        latency_samples: int = 10_000,
    ) -> None:
        if window < 1:
            raise ValueError("window must be at least 1")
        if initial_window is not None and initial_window < 1:
            raise ValueError("initial_window must be at least 1 (or None)")
        if initial_window_bytes < 1:
            raise ValueError("initial_window_bytes must be at least 1")
        if max_messages < 1 or max_bytes < 1:
            raise ValueError("the outbox bounds must be at least 1")
        if ack_timeout <= 0:
            raise ValueError("ack_timeout must be positive")
        if max_unsent is not None and max_unsent < 1:
            raise ValueError("max_unsent must be at least 1 (or None)")
        self.producer = producer
        self.window = window
        self.initial_window = window if initial_window is None else min(initial_window, window)
        self.initial_window_bytes = initial_window_bytes
        self.ack_timeout = ack_timeout
        self.retransmit = retransmit
        self.retry_delay = retry_delay
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.max_unsent = 4 * window if max_unsent is None else max_unsent
        self.deadline = deadline
        self._entries: dict[int, Entry[T]] = {}  # insertion order == seq order
        self._next_seq = first_seq
        self._cursor = first_seq  # next seq not yet sent on this connection
        self._bytes = 0
        self._in_flight = 0
        self._bytes_in_flight = 0
        self._cwnd = window  # messages allowed in flight on this connection
        self._cwnd_bytes: float = math.inf  # bytes allowed (inf: slow start is over)
        self._byte_blocked = False  # the last take stopped at the byte allowance
        self._generation = 0
        self._connected = False
        self._timeouts: deque[tuple[float, int]] = deque()  # (due, seq), due ascending
        self._retransmits: list[tuple[float, int]] = []  # heap of (due, seq): the others
        self._default_expiries: deque[int] = deque()  # seqs with the window's deadline
        self._last_default_expiry = -math.inf
        self._expiries: list[tuple[float, int]] = []  # heap of (expires, seq): the others
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
    def congestion_window(self) -> int:
        """Messages the current connection may have in flight now (grows to ``window``)."""
        return self._cwnd

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

    @property
    def backlogged(self) -> bool:
        """True while connected with ``max_unsent`` or more messages not yet sent on the
        connection (counted from the send cursor, so it can overcount messages that
        failed before being sent): a publisher should wait until the sender takes some."""
        return self._connected and self._next_seq - self._cursor >= self.max_unsent

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
        entries = self._entries
        if not self.has_room(size):
            raise OutboxFull(
                f"outbox full: {len(entries)}/{self.max_messages} messages, "
                f"{self._bytes}+{size}/{self.max_bytes} bytes"
            )
        seq = self._next_seq
        if deadline is DEFAULT_DEADLINE:
            expires = None if self.deadline is None else now + self.deadline
            entry: Entry[T] = Entry(seq, item, size, now, expires)
            if expires is not None:
                if expires >= self._last_default_expiry:
                    self._last_default_expiry = expires
                    self._default_expiries.append(seq)
                else:  # the clock went backwards: keep the order exact
                    heapq.heappush(self._expiries, (expires, seq))
        else:
            if deadline is not None and not isinstance(deadline, (int, float)):
                raise TypeError("deadline must be a number of seconds or None")
            expires = None if deadline is None else now + float(deadline)
            entry = Entry(seq, item, size, now, expires)
            if expires is not None:
                heapq.heappush(self._expiries, (expires, seq))
        entries[seq] = entry
        self._next_seq = seq + 1
        self._bytes += size
        return entry

    def add_unchecked(self, item: T, size: int, now: float) -> Entry[T]:
        """:meth:`add` with the window's deadline, for a caller that has just seen
        :meth:`has_room` say yes (the publish hot path: one check instead of two)."""
        seq = self._next_seq
        deadline = self.deadline
        if deadline is None:
            entry: Entry[T] = Entry(seq, item, size, now, None)
        else:
            expires = now + deadline
            entry = Entry(seq, item, size, now, expires)
            if expires >= self._last_default_expiry:
                self._last_default_expiry = expires
                self._default_expiries.append(seq)
            else:  # the clock went backwards: keep the order exact
                heapq.heappush(self._expiries, (expires, seq))
        self._entries[seq] = entry
        self._next_seq = seq + 1
        self._bytes += size
        return entry

    def get(self, seq: int) -> Entry[T] | None:
        """The unacked entry with ``seq``, if any."""
        return self._entries.get(seq)

    def entries(self) -> list[Entry[T]]:
        """Every unacked entry, oldest first."""
        return list(self._entries.values())

    # --- connection ----------------------------------------------------------------------

    def connect(self) -> None:
        """A connection is up: sending may start (again) from the oldest unacked message,
        with the initial window (slow start)."""
        self._connected = True
        self._byte_blocked = False
        self._cwnd = self.initial_window
        self._cwnd_bytes = (
            math.inf if self.initial_window >= self.window else float(self.initial_window_bytes)
        )

    def disconnect(self) -> None:
        """The connection is gone: nothing is on the wire; all unacked will be resent."""
        self._connected = False
        self._generation += 1
        self._in_flight = 0
        self._bytes_in_flight = 0
        self._byte_blocked = False
        self._timeouts.clear()
        self._retransmits.clear()
        self._cursor = next(iter(self._entries), self._next_seq)

    # --- sending -------------------------------------------------------------------------

    def take(self, now: float) -> Entry[T] | None:
        """The next message to put on the wire, marked as sent at ``now``.

        Due retransmissions come first, then unsent messages in order while the
        connection's window (see slow start) has room. None when disconnected or nothing
        is due.
        """
        entries = self.take_many(now, 1)
        return entries[0] if entries else None

    def take_many(self, now: float, limit: int) -> list[Entry[T]]:
        """Up to ``limit`` messages to put on the wire, in the order to send them, each
        marked as sent at ``now`` (what ``limit`` calls of :meth:`take` would return)."""
        out: list[Entry[T]] = []
        if not self._connected:
            return out
        while len(out) < limit:
            entry = self._due_retransmit(now)
            if entry is None:
                break
            self.retransmitted += 1
            self._transmit(entry, now)
            out.append(entry)
        self._byte_blocked = False
        room = min(limit - len(out), self._cwnd - self._in_flight)
        entries, cursor, end = self._entries, self._cursor, self._next_seq
        if room <= 0 or cursor >= end:
            return out
        byte_room = self._cwnd_bytes - self._bytes_in_flight  # inf unless in slow start
        limited = byte_room != math.inf
        in_flight = self._in_flight
        generation = self._generation
        due = now + self.ack_timeout if self.retransmit else None
        timeouts = self._timeouts
        if due is not None and timeouts and timeouts[-1][0] > due:
            due = None  # the clock went backwards: schedule one by one (a heap)
        first = sent = size = 0
        while room and cursor < end:
            entry = entries.get(cursor)
            if entry is None:  # acked or failed before it was sent
                cursor += 1
                continue
            if limited and entry.size > byte_room - size and (in_flight or sent):
                self._byte_blocked = True  # over the slow-start byte allowance
                break  # (one message always goes)
            cursor += 1
            size += entry.size
            room -= 1
            entry.wire = generation
            if entry.attempts:
                self.retransmitted += 1
            else:
                first += 1
            sent += 1
            entry.attempts += 1
            entry.sent_at = now
            if due is not None:
                entry.retransmit_at = due
                timeouts.append((due, entry.seq))
            else:
                entry.retransmit_at = None
                if self.retransmit:
                    self._schedule(entry, now + self.ack_timeout)
            out.append(entry)
        self._cursor = cursor
        self._in_flight += sent
        self._bytes_in_flight += size
        self.sent += first
        return out

    @property
    def window_full(self) -> bool:
        """True when the last take found no room in the connection's window (messages, or
        bytes for the next message): only an ack can make some."""
        return self._in_flight >= self._cwnd or self._byte_blocked

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
        timeouts = self._timeouts
        if not timeouts or timeouts[-1][0] <= due:
            timeouts.append((due, entry.seq))
        else:
            heapq.heappush(self._retransmits, (due, entry.seq))

    def _valid_retransmit(self, due: float, seq: int) -> Entry[T] | None:
        entry = self._entries.get(seq)
        if entry is None or entry.wire != self._generation or entry.retransmit_at != due:
            return None
        return entry

    def _next_timer(self) -> tuple[float, int] | None:
        """The earliest valid retransmission timer (stale ones are dropped on the way)."""
        timeouts, heap = self._timeouts, self._retransmits
        while timeouts and self._valid_retransmit(*timeouts[0]) is None:
            timeouts.popleft()
        while heap and self._valid_retransmit(*heap[0]) is None:
            heapq.heappop(heap)
        if heap and (not timeouts or heap[0] < timeouts[0]):
            return heap[0]
        return timeouts[0] if timeouts else None

    def _due_retransmit(self, now: float) -> Entry[T] | None:
        timer = self._next_timer()
        if timer is None or timer[0] > now:
            return None
        if self._timeouts and self._timeouts[0] is timer:
            self._timeouts.popleft()
        else:
            heapq.heappop(self._retransmits)
        return self._entries[timer[1]]

    # --- outcomes ------------------------------------------------------------------------

    def ack(self, seq: int, now: float, *, duplicate: bool = False) -> Entry[T] | None:
        """Seq was appended (or was already): forget it. None for an unknown/stale seq."""
        entry = self._entries.pop(seq, None)
        if entry is None:
            return None
        if entry.wire == self._generation and self._cwnd < self.window:
            self._grow(entry.size)
        self._forget(entry)
        self.acked += 1
        if duplicate:
            self.duplicates += 1
        if entry.sent_at is not None:
            self._latencies.append(now - entry.sent_at)
        return entry

    def _grow(self, size: int) -> None:
        """Slow start: an ack of a message sent on this connection allows one more (and
        its bytes); at ``window`` messages the byte allowance is lifted."""
        self._cwnd += 1
        if self._cwnd >= self.window:
            self._cwnd_bytes = math.inf
        else:
            self._cwnd_bytes += size

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
        entries = self._entries
        queue = self._default_expiries
        while queue:
            entry = entries.get(queue[0])
            if entry is not None:
                if entry.expires is None or entry.expires > now:
                    break
                self._expire(entry, out)
            queue.popleft()
        heap = self._expiries
        while heap and heap[0][0] <= now:
            _, seq = heapq.heappop(heap)
            entry = entries.get(seq)
            if entry is not None:
                self._expire(entry, out)
        out.sort(key=_by_seq)
        return out

    def _expire(self, entry: Entry[T], out: list[Entry[T]]) -> None:
        del self._entries[entry.seq]
        self._forget(entry)
        self.expired += 1
        out.append(entry)

    def drain(self) -> list[Entry[T]]:
        """Remove and return every unacked message (the handle is closing)."""
        out = list(self._entries.values())
        for entry in out:
            self._forget(entry)
        self._entries.clear()
        self._timeouts.clear()
        self._retransmits.clear()
        self._default_expiries.clear()
        self._expiries.clear()
        return out

    def _forget(self, entry: Entry[T]) -> None:
        self._bytes -= entry.size
        if entry.wire == self._generation:
            self._in_flight -= 1
            self._bytes_in_flight -= entry.size
        entry.wire = -1

    # --- timing and stats ------------------------------------------------------------

    def next_wakeup(self) -> float | None:
        """The earliest time a retransmission or an expiry is due (None: nothing timed)."""
        times = []
        timer = self._next_timer()
        if timer is not None and self._connected:
            times.append(timer[0])
        entries = self._entries
        queue = self._default_expiries
        while queue and queue[0] not in entries:
            queue.popleft()
        if queue:
            expires = entries[queue[0]].expires
            if expires is not None:
                times.append(expires)
        expiries = self._expiries
        while expiries and expiries[0][1] not in entries:
            heapq.heappop(expiries)
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
            congestion_window=self._cwnd,
            outbox_messages=len(self._entries),
            outbox_bytes=self._bytes,
            next_seq=self._next_seq,
            latency_p50=p50,
            latency_p99=p99,
        )


class Backoff:
    """How long to wait before the next connection attempt.

    A link that cannot connect (refused, timed out, no ``welcome``) backs off
    exponentially with full jitter: the n-th consecutive failure waits a random time in
    ``[0, min(maximum, initial * 2**n))``. A connection that was up is judged by what it
    did, not by how long it lasted, since a path that resets every connection after a
    second still delivers if each connection is used at once:

    - it made progress (acks or messages): reconnect almost at once, after a random
      time in ``[0, min(initial, quick_rtts * rtt))``, and the failure count starts over;
    - it lived at least ``stable_rtts`` round trips (and ``stable_min`` seconds) without
      progress (e.g. nothing to send): the failure count starts over;
    - otherwise (it died right after the handshake) it counts as one more failure.

    ``rtt`` is the connection's handshake time (TCP connect, upgrade, ``welcome``): an
    overestimate of one round trip, so the thresholds err on the patient side.

    Pure: time spans come in as arguments and randomness from ``random`` (a function
    returning a float in ``[0, 1)``), so tests are exact.
    """

    def __init__(
        self,
        initial: float = 1.0,
        maximum: float = 30.0,
        *,
        quick_rtts: float = 4.0,
        stable_rtts: float = 10.0,
        stable_min: float = 0.1,
        random: Callable[[], float] = _random.random,
    ) -> None:
        if initial < 0 or maximum < 0:
            raise ValueError("backoff delays must not be negative")
        self.initial = initial
        self.maximum = maximum
        self.quick_rtts = quick_rtts
        self.stable_rtts = stable_rtts
        self.stable_min = stable_min
        self.random: Callable[[], float] = random
        self.failures = 0

    def ceiling(self) -> float:
        """The upper bound of the delay after the next failure."""
        return min(self.maximum, self.initial * 2.0 ** min(self.failures, 62))

    def failed(self) -> float:
        """A connection attempt failed: the delay before the next one."""
        delay = self.random() * self.ceiling()
        self.failures += 1
        return delay

    def ended(self, lived: float, rtt: float, progress: bool) -> float:
        """A connection that was up has ended: the delay before the next attempt.

        Args:
            lived: seconds from its ``welcome`` to its end.
            rtt: seconds its handshake took.
            progress: whether it delivered anything (acks, messages).
        """
        if progress:
            self.failures = 0
            return self.random() * min(self.initial, self.maximum, self.quick_rtts * rtt)
        if lived >= max(self.stable_min, self.stable_rtts * rtt):
            self.failures = 0
        return self.failed()
