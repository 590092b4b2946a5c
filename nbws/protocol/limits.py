"""Per-connection inbound limits: the sizes and rate one connection may send, and the
token bucket that enforces the rate with explicit times."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Protocol

__all__ = ["LimitSettings", "Limits", "RateLimiter"]


class LimitSettings(Protocol):
    """The traits :meth:`Limits.from_config` reads (``nbws.config.Nbws`` has them)."""

    max_message_size: int
    max_frame_size: int
    rate_limit: float
    rate_limit_burst: int


@dataclass(frozen=True, slots=True)
class Limits:
    """What one connection may send; None (or 0 for the rate) means no limit.

    Built from the settings object with :meth:`from_config`, so every default lives in
    ``nbws.config``; :meth:`default` is that object's defaults.

    Attributes:
        max_message_size: inbound message limit in bytes, summed across fragments (1009).
        max_frame_size: inbound frame limit in bytes (1009); bounds memory per frame.
        rate_limit: inbound messages per second (1008 when exceeded).
        rate_limit_burst: bucket size for the rate limit (0: one second's worth).
    """

    max_message_size: int | None = None
    max_frame_size: int | None = None
    rate_limit: float = 0.0
    rate_limit_burst: int = 0

    @classmethod
    def from_config(cls, config: LimitSettings) -> Limits:
        """The limits ``config`` sets, where 0 means no limit as in ``c.Nbws``."""
        return cls(
            max_message_size=config.max_message_size or None,
            max_frame_size=config.max_frame_size or None,
            rate_limit=max(config.rate_limit, 0.0),
            rate_limit_burst=config.rate_limit_burst,
        )

    @staticmethod
    @functools.cache
    def default() -> Limits:
        """The limits of an unconfigured ``Nbws()``."""
        from ..config import Nbws  # the settings object is built only when asked for

        return Limits.from_config(Nbws())


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
