"""Duplicate suppression by (producer, seq), bounded per producer."""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["DedupeWindow"]


class DedupeWindow:
    """Remembers the offsets of one producer's last ``size`` sequence numbers.

    A seq below the oldest one still remembered (or at or below one forgotten) counts as
    already appended (producers number their publishes in increasing order), so a very
    late retransmit is still not appended twice; its original offset is then unknown
    (None). "Oldest" is by append order, which is what the Redis broker can see too.
    """

    __slots__ = ("_seen", "forgotten_upto", "size")

    def __init__(self, size: int) -> None:
        self.size = max(1, size)
        self._seen: OrderedDict[int, int] = OrderedDict()
        self.forgotten_upto = -1

    def lookup(self, seq: int) -> tuple[bool, int | None]:
        """``(seen, offset)`` for ``seq``."""
        offset = self._seen.get(seq)
        if offset is not None:
            return True, offset
        if seq <= self.forgotten_upto:
            return True, None
        if self._seen and seq < next(iter(self._seen)):
            return True, None
        return False, None

    def fresh_from(self, seq: int) -> bool:
        """True when ``seq`` and every later seq are unseen: above every seq remembered
        or forgotten (a producer's new messages; one check for a whole batch)."""
        seen = self._seen
        return seq > self.forgotten_upto and (not seen or seq > next(reversed(seen)))

    def remember_run(self, seq: int, offset: int, count: int) -> None:
        """:meth:`remember` of ``seq + i`` at ``offset + i`` for ``i < count``, at once
        (seqs above every one remembered, as :meth:`fresh_from` said)."""
        seen = self._seen
        skip = count - self.size
        if skip > 0:  # a run longer than the window: its first seqs are forgotten at once
            seen.clear()
            self.forgotten_upto = max(self.forgotten_upto, seq + skip - 1)
            seq, offset, count = seq + skip, offset + skip, self.size
        seen.update(zip(range(seq, seq + count), range(offset, offset + count), strict=True))
        extra = len(seen) - self.size
        if extra > 0:
            old = -1
            popitem = seen.popitem
            for _ in range(extra):
                old = max(old, popitem(last=False)[0])
            if old > self.forgotten_upto:
                self.forgotten_upto = old

    def remember(self, seq: int, offset: int) -> None:
        """Record that ``seq`` was appended at ``offset``."""
        seen = self._seen
        seen[seq] = offset
        while len(seen) > self.size:
            old, _ = seen.popitem(last=False)
            if old > self.forgotten_upto:
                self.forgotten_upto = old
