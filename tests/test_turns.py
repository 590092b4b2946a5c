"""Slices of the loop: long for a connection alone, short while others read; a yield
resumes behind the I/O that became ready meanwhile."""

from __future__ import annotations

import asyncio
import gc
import socket
import weakref
from collections.abc import Awaitable, Callable

from nbws.transport import turns
from nbws.transport.turns import CONTENDED_FOR, LONG_SLICE, SHORT_SLICE, read_by, slice_for

T = 1e9  # far from any real connection's monotonic clock in this process


def test_a_connection_reading_alone_gets_long_slices() -> None:
    busy = object()
    read_by(busy, T)
    read_by(busy, T + 0.001)
    assert slice_for(busy, T + 0.002) == LONG_SLICE


def test_slices_are_short_while_another_connection_has_read_recently() -> None:
    busy, quiet = object(), object()
    read_by(busy, T + 10)
    read_by(quiet, T + 10.001)
    read_by(busy, T + 10.002)  # its own reads do not hide the other's
    assert slice_for(busy, T + 10.003) == SHORT_SLICE
    assert slice_for(quiet, T + 10.003) == SHORT_SLICE  # the busy one is active too
    assert slice_for(busy, T + 10.001 + CONTENDED_FOR + 0.001) == LONG_SLICE
    assert SHORT_SLICE < LONG_SLICE


def test_a_connection_never_seen_reading_counts_every_reader_as_other() -> None:
    reader, newcomer = object(), object()
    read_by(reader, T + 20)
    assert slice_for(newcomer, T + 20.001) == SHORT_SLICE


async def _order_of(yielder: Callable[[], Awaitable[None]]) -> list[str]:
    """Which runs first: a task yielding with ``yielder`` right after input arrived on a
    socket, or that socket's reader callback."""
    loop = asyncio.get_running_loop()
    ours, theirs = socket.socketpair()
    order: list[str] = []
    read = asyncio.Event()

    def readable() -> None:
        ours.recv(16)
        order.append("io")
        read.set()

    loop.add_reader(ours.fileno(), readable)
    try:
        theirs.send(b"x")  # input arrives while this task runs
        await yielder()
        order.append("resumed")
        await asyncio.wait_for(read.wait(), 10)
    finally:
        loop.remove_reader(ours.fileno())
        ours.close()
        theirs.close()
    return order


async def test_yield_turn_resumes_behind_io_that_became_ready() -> None:
    assert await _order_of(turns.yield_turn) == ["io", "resumed"]


async def test_sleep_zero_would_resume_ahead_of_that_io() -> None:
    """Why :func:`yield_turn` is not ``asyncio.sleep(0)``."""

    async def sleep_zero() -> None:
        await asyncio.sleep(0)

    assert await _order_of(sleep_zero) == ["resumed", "io"]


def test_a_closed_connection_is_not_kept_alive_by_its_reads() -> None:
    class Reader:
        pass

    gone = Reader()
    ref = weakref.ref(gone)
    other = object()
    read_by(gone, T + 30)
    read_by(other, T + 30.001)
    del gone
    gc.collect()
    assert ref() is None
