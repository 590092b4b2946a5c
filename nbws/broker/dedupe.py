"""Duplicate suppression by (producer, seq), bounded per producer."""

from __future__ import annotations

from collections import deque

__all__ = ["DedupeWindow"]


class DedupeWindow:
    """Remembers the offsets of one producer's last ``size`` sequence numbers.

    A seq below the oldest one still remembered (or at or below one forgotten) counts as
    already appended (producers number their publishes in increasing order), so a very
    late retransmit is still not appended twice; its original offset is then unknown
    (None). "Oldest" is by append order, which is what the Redis broker can see too.

    A batch's seqs are remembered as one run ``(seq, offset, count)`` (seq ``seq + i`` at
    offset ``offset + i``), so a batch of a thousand messages costs one record, not a
    thousand dictionary entries; single appends are indexed by seq.
    """

    __slots__ = (
        "_newest",
        "_records",
        "_remembered",
        "_runs",
        "_singles",
        "forgotten_upto",
        "size",
    )

    def __init__(self, size: int) -> None:
        self.size = max(1, size)
        # (seq, offset, count) in append order: tuples of ints, which the garbage
        # collector stops tracking (a window per producer, thousands of records each).
        self._records: deque[tuple[int, int, int]] = deque()
        self._runs: deque[tuple[int, int, int]] = deque()  # the records with count > 1
        self._singles: dict[int, int] = {}  # seq -> offset of the records with count 1
        self._remembered = 0  # seqs in all records
        self._newest = -1  # the highest seq ever remembered
        self.forgotten_upto = -1

    def lookup(self, seq: int) -> tuple[bool, int | None]:
        """``(seen, offset)`` for ``seq``."""
        if seq > self._newest and seq > self.forgotten_upto:
            return False, None  # above anything seen (the usual single append)
        offset = self._singles.get(seq)
        if offset is not None:
            return True, offset
        for start, first, count in reversed(self._runs):
            if start <= seq < start + count:
                return True, first + seq - start
        if seq <= self.forgotten_upto or (self._records and seq < self._records[0][0]):
            return True, None
        return False, None

    def fresh_from(self, seq: int) -> bool:
        """True when ``seq`` and every later seq are unseen: above every seq remembered
        or forgotten (a producer's new messages; one check for a whole batch)."""
        return seq > self._newest and seq > self.forgotten_upto

    def remember_run(self, seq: int, offset: int, count: int) -> None:
        """:meth:`remember` of ``seq + i`` at ``offset + i`` for ``i < count``, at once
        (seqs above every one remembered, as :meth:`fresh_from` said)."""
        if count <= 1:
            if count == 1:
                self.remember(seq, offset)
            return
        record = (seq, offset, count)
        self._records.append(record)
        self._runs.append(record)
        self._remembered += count
        self._newest = max(self._newest, seq + count - 1)
        self._evict()

    def remember(self, seq: int, offset: int) -> None:
        """Record that ``seq`` was appended at ``offset``."""
        records = self._records
        records.append((seq, offset, 1))
        self._singles[seq] = offset
        if seq > self._newest:
            self._newest = seq
        if self._remembered < self.size:
            self._remembered += 1
            return
        head = records[0]
        runs = self._runs
        if head[2] == 1 and not (runs and runs[0] is head):  # one single out, one in
            records.popleft()
            self._singles.pop(head[0], None)
            if head[0] > self.forgotten_upto:
                self.forgotten_upto = head[0]
        else:
            self._remembered += 1
            self._evict()

    def _evict(self) -> None:
        """Forget the oldest seqs beyond ``size`` (a run loses its head)."""
        excess = self._remembered - self.size
        if excess <= 0:
            return
        self._remembered -= excess
        records = self._records
        forgotten = self.forgotten_upto
        while excess:
            record = records[0]
            start, first, count = record
            if count <= excess:
                records.popleft()
                runs = self._runs
                if runs and runs[0] is record:  # a run (perhaps shrunk to one seq)
                    runs.popleft()
                else:
                    self._singles.pop(start, None)
                excess -= count
                forgotten = max(forgotten, start + count - 1)
            else:
                shrunk = (start + excess, first + excess, count - excess)
                records[0] = self._runs[0] = shrunk  # the oldest record is the oldest run
                forgotten = max(forgotten, start + excess - 1)
                excess = 0
        self.forgotten_upto = forgotten
