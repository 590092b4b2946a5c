"""Compatibility name for :mod:`nbws.server.hub` (``context.py`` imports the hub here).

The stream path is split by job: ``subscriber.py`` (pure state machine), ``hub.py``
(``StreamHub``: broker calls, flushes, ack hold-back), ``sink.py`` (the connection
seam), ``stats.py`` (counters) and ``buffers.py`` (bounded buffers).
"""

from __future__ import annotations

from .hub import StreamHub

__all__ = ["StreamHub"]
