"""Per-stream figures: a cheap rate meter and plain counters.

The hot paths only bump integers here; ``metrics.py`` turns them into Prometheus
families when /metrics is scraped, and REST/``info`` read them on request.
"""

from __future__ import annotations

import time

__all__ = ["RateMeter", "StreamStats"]


class RateMeter:
    """Messages per second over the last full second (cheap: one comparison per tick)."""

    __slots__ = ("_count", "_second", "rate")

    def __init__(self) -> None:
        self._second = int(time.monotonic())
        self._count = 0
        self.rate = 0.0

    def tick(self, n: int = 1) -> None:
        second = int(time.monotonic())
        if second != self._second:
            self.rate = float(self._count) if second == self._second + 1 else 0.0
            self._second = second
            self._count = 0
        self._count += n

    def current(self) -> float:
        self.tick(0)
        return self.rate


class StreamStats:
    """Counters of one stream in this process (exported by ``metrics.py``)."""

    __slots__ = (
        "bytes_in",
        "bytes_out",
        "departed_drops",
        "drops_by_reason",
        "messages_in",
        "messages_out",
        "rate",
    )

    def __init__(self) -> None:
        self.rate = RateMeter()
        self.messages_in = 0
        self.bytes_in = 0
        self.messages_out = 0
        self.bytes_out = 0
        self.departed_drops = 0  # drops of subscribers that have left
        self.drops_by_reason: dict[str, int] = {}

    def published(self, size: int) -> None:
        """One message appended (not a duplicate)."""
        self.rate.tick()
        self.messages_in += 1
        self.bytes_in += size

    def delivered(self, messages: int, size: int = 0) -> None:
        """Messages (and frame bytes, when known) written to a subscriber."""
        self.messages_out += messages
        self.bytes_out += size

    def count_drops(self, reason: str, count: int) -> None:
        """Messages a subscriber did not get, by gap reason."""
        by_reason = self.drops_by_reason
        by_reason[reason] = by_reason.get(reason, 0) + count
