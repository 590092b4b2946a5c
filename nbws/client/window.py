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

**Runs.** :meth:`Window.add_run` queues many consecutive seqs (``publish_rows``,
``publish_many``) as ONE entry whose item is :class:`Rows` (the payloads): it is sent,
acked, retransmitted and expired as a whole, so a run costs the same bookkeeping as one
message. What touches part of it splits it where the part begins and ends (a slow-start
allowance smaller than the run, an ack of part of it, a nack or a failure of one row):
the parts are entries of their own, each with the rest of the run's state. Counters
(``sent``, ``acked``, ``in_flight``, the outbox bounds) still count messages. Runs may
have ``run_window`` messages in flight (a larger allowance than ``window``, capped by the
server's dedupe window), since a run costs no more per message to track and a window of
1000 rows would cap rows at 1000 per round trip.

Timers are kept cheap for the common case: messages with the window's own deadline expire
in the order they were added, and transmissions time out in the order they were made, so
both are plain FIFO queues; only the exceptions (per-message deadlines, the shorter delay
after a ``retry`` nack, a clock that went backwards) go to heaps.
"""

from __future__ import annotations

import bisect
import heapq
import math
import random as _random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .errors import OutboxFull

__all__ = [
    "DEFAULT_DEADLINE",
    "Backoff",
    "Entry",
    "Rows",
    "Window",
    "WindowStats",
    "percentile",
]

T = TypeVar("T")


class _DefaultDeadline:
    def __repr__(self) -> str:
        return "<default deadline>"


DEFAULT_DEADLINE: object = _DefaultDeadline()
"""Sentinel for :meth:`Window.add`: use the window's own ``deadline``."""


@dataclass(slots=True, eq=False)
class Rows:
    """The item of a run entry: the serialised payloads of consecutive seqs.

    Attributes:
        payloads: one JSON text per message, in seq order.
        index: the position of the first of them in what was queued together (the
            driver's handle on the receipts: see ``receipt``).
    """

    payloads: list[bytes]
    index: int = 0

    def split(self, at: int) -> Rows:
        """Keep the first ``at`` payloads; return the rest as a run of their own."""
        rest = Rows(self.payloads[at:], self.index + at)
        self.payloads = self.payloads[:at]
        return rest


@dataclass(slots=True, eq=False)
class Entry(Generic[T]):
    """One unacked message, or a run of consecutive ones (``count`` > 1 or a
    :class:`Rows` item).

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
        count: how many consecutive seqs it holds, from ``seq``.
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
    count: int = 1


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
        run_window: most unacked messages on the wire per connection while sending runs
            (:meth:`add_run`); :meth:`connect` caps it at the server's dedupe window.
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
        run_window: int = 4096,
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
        if run_window < 1:
            raise ValueError("run_window must be at least 1")
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
        self.run_window = run_window
        self._run_cap = max(window, run_window)  # run_window, capped on connect
        self._entries: dict[int, Entry[T]] = {}  # by first seq (not in seq order: splits)
        self._runs: list[int] = []  # first seqs of the run entries, ascending
        self._messages = 0
        self._next_seq = first_seq
        self._cursor = first_seq  # next seq not yet sent on this connection
        self._bytes = 0
        self._in_flight = 0
        self._bytes_in_flight = 0
        self._cwnd = window  # messages allowed in flight on this connection
        self._cwnd_bytes: float = math.inf  # bytes allowed (inf: slow start is over)
        self._byte_blocked = False  # the last take stopped at an allowance (bytes, messages)
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
        return self._messages

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

    def has_room(self, size: int, count: int = 1) -> bool:
        """True if ``count`` messages of ``size`` bytes in all fit in the outbox now
        (into an empty outbox anything fits, or it could never be sent)."""
        messages = self._messages
        if not messages:
            return True
        return messages + count <= self.max_messages and self._bytes + size <= self.max_bytes

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
                f"outbox full: {self._messages}/{self.max_messages} messages, "
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
        self._messages += 1
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
        self._messages += 1
        return entry

    def add_run(
        self,
        rows: Rows,
        size: int,
        now: float,
        *,
        receipt: Any = None,
        deadline: object = DEFAULT_DEADLINE,
    ) -> Entry[T]:
        """Queue ``rows`` (one message per payload) as one entry with consecutive seqs.

        Args:
            rows: the payloads.
            size: their bytes in all.
            now: the current time.
            receipt: the driver's handle for their outcomes.
            deadline: as for :meth:`add`.

        Raises:
            OutboxFull: no room (see :meth:`has_room`).
            ValueError: no payloads.
        """
        count = len(rows.payloads)
        if not count:
            raise ValueError("a run needs at least one payload")
        if not self.has_room(size, count):
            raise OutboxFull(
                f"outbox full: {self._messages}+{count}/{self.max_messages} messages, "
                f"{self._bytes}+{size}/{self.max_bytes} bytes"
            )
        if deadline is DEFAULT_DEADLINE:
            deadline = self.deadline
        elif deadline is not None and not isinstance(deadline, (int, float)):
            raise TypeError("deadline must be a number of seconds or None")
        seq = self._next_seq
        expires = None if deadline is None else now + float(deadline)
        entry: Entry[T] = Entry(seq, rows, size, now, expires, receipt=receipt, count=count)  # type: ignore[arg-type]
        if expires is not None:
            heapq.heappush(self._expiries, (expires, seq))
        self._entries[seq] = entry
        self._runs.append(seq)
        self._next_seq = seq + count
        self._bytes += size
        self._messages += count
        return entry

    def get(self, seq: int) -> Entry[T] | None:
        """The unacked entry with ``seq``, if any (a run's: the one that holds it)."""
        entry = self._entries.get(seq)
        if entry is None and self._runs:
            return self._holding(seq)
        return entry

    def _holding(self, seq: int) -> Entry[T] | None:
        """The run entry that holds ``seq``, if any."""
        runs = self._runs
        i = bisect.bisect_right(runs, seq) - 1
        if i < 0:
            return None
        entry = self._entries[runs[i]]
        return entry if seq < entry.seq + entry.count else None

    def _split(self, entry: Entry[T], at: int) -> Entry[T]:
        """Cut run ``entry`` before seq ``at``: it keeps the seqs before, the returned
        new entry (with the same state: timers, deadline, attempts) holds the rest."""
        rows: Rows = entry.item  # type: ignore[assignment]
        cut = at - entry.seq
        rest_rows = rows.split(cut)
        rest_size = sum(map(len, rest_rows.payloads))
        rest: Entry[T] = Entry(
            at,
            rest_rows,  # type: ignore[arg-type]
            rest_size,
            entry.added,
            entry.expires,
            entry.attempts,
            entry.sent_at,
            entry.retransmit_at,
            entry.wire,
            entry.receipt,
            entry.count - cut,
        )
        entry.count = cut
        entry.size -= rest_size
        self._entries[at] = rest
        bisect.insort(self._runs, at)
        if rest.expires is not None:
            heapq.heappush(self._expiries, (rest.expires, at))
        if rest.wire == self._generation and rest.retransmit_at is not None:
            heapq.heappush(self._retransmits, (rest.retransmit_at, at))
        return rest  # (in flight or not, the parts' sums are the whole's)

    def _isolate(self, first: int, last: int) -> list[Entry[T]]:
        """The entries that hold seqs ``first`` to ``last`` (inclusive), runs split so
        that each one returned lies within them, in seq order."""
        out: list[Entry[T]] = []
        entries = self._entries
        seq = first
        while seq <= last:
            entry = entries.get(seq)
            if entry is None:
                entry = self._holding(seq) if self._runs else None
                if entry is None:
                    seq += 1  # acked or failed already
                    continue
                entry = self._split(entry, seq)
            end = entry.seq + entry.count
            if end - 1 > last:
                self._split(entry, last + 1)
                end = last + 1
            out.append(entry)
            seq = end
        return out

    def entries(self) -> list[Entry[T]]:
        """Every unacked entry, oldest first."""
        return sorted(self._entries.values(), key=_by_seq)

    # --- connection ----------------------------------------------------------------------

    def connect(self, dedupe_window: int | None = None) -> None:
        """A connection is up: sending may start (again) from the oldest unacked message,
        with the initial window (slow start).

        Args:
            dedupe_window: the server's (from its ``welcome``): runs never have more
                messages in flight than it remembers, so a retransmit after a reconnect is
                always recognised with its offset.
        """
        self._run_cap = max(self.window, self.run_window)
        if dedupe_window:
            self._run_cap = max(self.window, min(self._run_cap, dedupe_window))
        self._connected = True
        self._byte_blocked = False
        slow = self.initial_window < self.window
        self._cwnd = self.initial_window if slow else self._run_cap  # (None: all at once)
        self._cwnd_bytes = float(self.initial_window_bytes) if slow else math.inf

    def disconnect(self) -> None:
        """The connection is gone: nothing is on the wire; all unacked will be resent."""
        self._connected = False
        self._generation += 1
        self._in_flight = 0
        self._bytes_in_flight = 0
        self._byte_blocked = False
        self._timeouts.clear()
        self._retransmits.clear()
        self._cursor = min(self._entries, default=self._next_seq)

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
            self.retransmitted += entry.count
            self._transmit(entry, now)
            out.append(entry)
        self._byte_blocked = False
        cwnd = self._cwnd
        room = min(cwnd, self.window) - self._in_flight  # messages, for single ones
        run_room = min(cwnd, self._run_cap) - self._in_flight  # messages, for runs
        entries, cursor, end = self._entries, self._cursor, self._next_seq
        if (room <= 0 and run_room <= 0) or cursor >= end:
            if cursor < end:
                self._byte_blocked = True  # (only an ack makes room)
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
        taken = len(out)
        while cursor < end and taken < limit:
            entry = entries.get(cursor)
            if entry is None:  # acked or failed before it was sent
                cursor += 1
                continue
            count = entry.count
            if count == 1 and type(entry.item) is not Rows:
                if room <= 0:
                    self._byte_blocked = True  # (only an ack makes room)
                    break
                if limited and entry.size > byte_room - size and (in_flight or sent):
                    self._byte_blocked = True  # over the slow-start byte allowance
                    break  # (one message always goes)
            else:  # a run: as much of it as the allowances take, the rest split off
                fits = min(count, run_room)
                if limited and fits and entry.size > byte_room - size:
                    fits = min(fits, int((byte_room - size) * count / entry.size))
                if fits < count and (in_flight or sent) and cwnd >= self._run_cap:
                    fits = 0  # a grown window waits for room for the whole run (one batch)
                if fits <= 0:
                    if in_flight or sent:
                        self._byte_blocked = True
                        break
                    fits = 1  # (one message always goes)
                if fits < count:
                    self._split(entry, cursor + fits)
                    count = fits
                    self._byte_blocked = True
            cursor += count
            size += entry.size
            room -= count
            run_room -= count
            taken += 1
            entry.wire = generation
            if entry.attempts:
                self.retransmitted += count
            else:
                first += count
            sent += count
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
        return self._in_flight >= min(self._cwnd, self.window) or self._byte_blocked

    @property
    def run_window_full(self) -> bool:
        """:attr:`window_full` for a run: no room left in the run window either."""
        return self._in_flight >= min(self._cwnd, self._run_cap) or self._byte_blocked

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
        """Seq was appended (or was already): forget it. None for an unknown/stale seq.
        (A seq inside a run splits it: the entry returned holds that seq alone.)"""
        entry = self._entries.get(seq)
        if entry is None or entry.count != 1 or type(entry.item) is Rows:
            acked = self.ack_range(seq, seq, now, duplicates=int(duplicate))
            return acked[0] if acked else None
        del self._entries[seq]
        if entry.wire == self._generation and self._cwnd < self.window:
            self._grow(entry.size, 1, self.window)
        self._forget(entry)
        self.acked += 1
        if duplicate:
            self.duplicates += 1
        if entry.sent_at is not None:
            self._latencies.append(now - entry.sent_at)
        return entry

    def ack_range(
        self, first: int, last: int, now: float, *, duplicates: int = 0
    ) -> list[Entry[T]]:
        """Seqs ``first`` to ``last`` (inclusive) were appended (``duplicates`` of them
        already were): forget them. Returns the entries removed, in seq order, each
        within the range (runs are split where the range cuts them); stale seqs are
        skipped. A run acked whole costs one step, however long."""
        out = self._isolate(first, last)
        acked = 0
        generation = self._generation
        for entry in out:
            self._remove(entry)
            if entry.wire == generation:
                cap = self._run_cap if type(entry.item) is Rows else self.window
                if self._cwnd < cap:
                    self._grow(entry.size, entry.count, cap)
            self._forget(entry)
            acked += entry.count
            if entry.sent_at is not None:
                self._latencies.append(now - entry.sent_at)
        self.acked += acked
        self.duplicates += min(duplicates, acked)
        return out

    def _remove(self, entry: Entry[T]) -> None:
        """Take ``entry`` out of the outbox (its counts: :meth:`_forget`)."""
        del self._entries[entry.seq]
        if type(entry.item) is Rows:
            runs = self._runs
            i = bisect.bisect_left(runs, entry.seq)
            if i < len(runs) and runs[i] == entry.seq:
                del runs[i]

    def _grow(self, size: int, count: int, cap: int) -> None:
        """Slow start: an ack of messages sent on this connection allows as many more
        (and their bytes) up to ``cap`` (``window``; for runs, the run window); at
        ``window`` messages the byte allowance is lifted."""
        self._cwnd = min(self._cwnd + count, cap)
        if self._cwnd >= self.window:
            self._cwnd_bytes = math.inf
        else:
            self._cwnd_bytes += size

    def nack(self, seq: int, now: float, *, retry: bool) -> Entry[T] | None:
        """Seq was refused. With ``retry`` it is resent after ``retry_delay`` and None is
        returned; otherwise it is removed and returned (the caller fails its future)."""
        entries = self.nack_range(seq, seq, now, retry=retry)
        return entries[0] if entries else None

    def nack_range(self, first: int, last: int, now: float, *, retry: bool) -> list[Entry[T]]:
        """Seqs ``first`` to ``last`` (inclusive) were refused. With ``retry`` they are
        resent after ``retry_delay`` (whole runs: a run holding one of them is resent
        whole) and nothing is returned; otherwise they are removed and returned, runs
        split where the range cuts them (the caller fails their receipts)."""
        if retry:
            seq = first
            while seq <= last:
                entry = self.get(seq)
                if entry is None:
                    seq += 1
                    continue
                if entry.wire == self._generation:
                    self._schedule(entry, now + self.retry_delay)
                seq = entry.seq + entry.count
            return []
        out = self._isolate(first, last)
        for entry in out:
            self._remove(entry)
            self._forget(entry)
            self.failed += entry.count
        return out

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
            if entry is not None and entry.expires is not None and entry.expires <= now:
                self._expire(entry, out)
        out.sort(key=_by_seq)
        return out

    def _expire(self, entry: Entry[T], out: list[Entry[T]]) -> None:
        self._remove(entry)
        self._forget(entry)
        self.expired += entry.count
        out.append(entry)

    def drain(self) -> list[Entry[T]]:
        """Remove and return every unacked message (the handle is closing)."""
        out = self.entries()
        for entry in out:
            self._forget(entry)
        self._entries.clear()
        self._runs.clear()
        self._timeouts.clear()
        self._retransmits.clear()
        self._default_expiries.clear()
        self._expiries.clear()
        return out

    def _forget(self, entry: Entry[T]) -> None:
        self._bytes -= entry.size
        self._messages -= entry.count
        if entry.wire == self._generation:
            self._in_flight -= entry.count
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
            queued=self._messages - self._in_flight,
            congestion_window=self._cwnd,
            outbox_messages=self._messages,
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
