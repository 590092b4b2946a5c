"""Per-connection limits that need a clock: a token bucket fed explicit times."""

from __future__ import annotations

__all__ = ["RateLimiter"]


class RateLimiter:
    """Token bucket: ``rate`` tokens per second, holding at most ``burst``.

    Pure: the caller passes ``now`` (seconds, any monotonic origin), so tests are exact.
    """

    __slots__ = ("_stamp", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: int = 0) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = float(burst) if burst > 0 else max(rate, 1.0)
        self._tokens = self.burst
        self._stamp: float | None = None

    def allow(self, now: float) -> bool:
        """Take one token at time ``now``; False when the bucket is empty."""
        if self._stamp is not None:
            elapsed = now - self._stamp
            if elapsed > 0:
                self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False
