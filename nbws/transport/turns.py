"""Turns of the event loop for connections that have more work than fits in one.

A peer that sends a burst (hundreds of small frames already in the socket buffer) gives
its connection milliseconds of parsing and handling. The connection does it in slices and
yields between them, so that a quiet neighbour waits for one slice at each step of its
request (its bytes noticed, parsed, handled, its reply written), not for the whole burst.
Two things decide what one step costs the neighbour:

- **Where the busy connection resumes.** :func:`yield_turn` resumes from a due timer,
  which asyncio runs after the I/O callbacks of the round it is due in. ``sleep(0)``
  resumes from the ready queue, *ahead* of the I/O found in that round, so the busy
  connection took a slice before every step of the neighbour's request.
- **How long a slice is.** :func:`slice_for` gives ``LONG_SLICE`` while no other
  connection has read anything for ``CONTENDED_FOR`` (a lone bulk publisher or replay
  loses nothing to yielding), and ``SHORT_SLICE`` while others are active.

Reads are recorded with :func:`read_by`; the two most recent distinct readers are kept,
so "the latest read by anyone but me" is O(1). They are kept by ``id()``, so a closed
connection is not held alive by them (a reused id only decides one slice). Only nbws
connections record reads: in a Jupyter server, kernels' own WebSockets and HTTP requests
do not shorten the slices, but they still run ahead of every yield, so they wait for at
most one long slice.
"""

from __future__ import annotations

import asyncio

__all__ = ["CONTENDED_FOR", "LONG_SLICE", "SHORT_SLICE", "read_by", "slice_for", "yield_turn"]

LONG_SLICE = 0.0005
"""Seconds a connection may parse or handle in a row while it has the loop to itself."""

SHORT_SLICE = 0.0001
"""The same while other connections are active: each step of their requests waits for at
most this much of the busy one's work."""

CONTENDED_FOR = 0.01
"""Seconds after another connection's read during which slices are short: longer than
the steps of one request (read, parse, handle, write), so every step is covered."""

_latest: tuple[int, float] = (0, float("-inf"))  # (id of the reader, when)
_runner_up: tuple[int, float] = (0, float("-inf"))


def read_by(reader: object, now: float) -> None:
    """``reader`` read input at ``now`` (``time.monotonic()``)."""
    global _latest, _runner_up
    key = id(reader)
    if _latest[0] != key:
        _runner_up = _latest
    _latest = (key, now)


def slice_for(reader: object, now: float) -> float:
    """How long ``reader``'s next slice may run: short while anyone else is active."""
    other = _latest[1] if _latest[0] != id(reader) else _runner_up[1]
    return SHORT_SLICE if now - other < CONTENDED_FOR else LONG_SLICE


def _resume(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


async def yield_turn() -> None:
    """Let every connection whose input is ready run before this task goes on (from a due
    timer: behind that round's I/O, not ahead of it as ``sleep(0)`` would be)."""
    loop = asyncio.get_running_loop()
    waiter = loop.create_future()
    loop.call_at(loop.time(), _resume, waiter)
    await waiter
