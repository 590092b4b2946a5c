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

    def remember(self, seq: int, offset: int) -> None:
        """Record that ``seq`` was appended at ``offset``."""
        seen = self._seen
        seen[seq] = offset
        while len(seen) > self.size:
            old, _ = seen.popitem(last=False)
            if old > self.forgotten_upto:
                self.forgotten_upto = old
