"""Acked publishing over a link that keeps dying, against the same client on a clean link.

A seeded proxy between the reliable client and ``nbws serve`` resets (RST) every
connection once it has lived a random 0.05-1.5 s or carried a random 2-400 KB (both
directions counted), whichever comes first: a flaky Wi-Fi, a NAT that forgets, a proxy
that recycles connections. The client, with its default options, publishes N small
messages and flushes; the scenario reports acked messages per second and the time to
deliver all N, through the proxy and on a clean link, side by side. A run that does not
finish within the cap reports what was acked by then (``delivered`` in the extras).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass

from .base import Row, server

__all__ = ["KillingProxy", "chaos"]

LIFETIME = (0.05, 1.5)
"""Seconds a proxied connection lives at most (uniform in this range)."""
BUDGET = (2_000, 400_000)
"""Bytes a proxied connection carries at most, both directions (uniform in this range)."""
PAD = "x" * 100  # ~200-byte publishes


def _reset(writer: asyncio.StreamWriter) -> None:
    """Abort with RST (SO_LINGER 0), as a crashed peer or a dropped NAT entry would."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@dataclass
class _Doomed:
    """One proxied connection and what is left of its byte budget."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    budget: int
    cause: str | None = None  # why it is being killed, once it is
    dead: bool = False

    def kill(self, reason: str, kills: Counter[str]) -> None:
        if not self.dead:
            self.dead = True
            kills[reason] += 1
            _reset(self.client)
            _reset(self.upstream)


class KillingProxy:
    """A TCP proxy to ``127.0.0.1:upstream_port`` that kills every connection; use as
    ``with KillingProxy(port, seed=...) as proxy:`` and connect to ``proxy.port``.

    Attributes:
        connections: connections accepted so far.
        kills: resets by cause (``time``, ``bytes``; ``closed``: a side closed first).
    """

    def __init__(
        self,
        upstream_port: int,
        *,
        seed: int = 0,
        lifetime: tuple[float, float] = LIFETIME,
        budget: tuple[int, int] = BUDGET,
    ) -> None:
        self.upstream_port = upstream_port
        self.rng = random.Random(seed)
        self.lifetime = lifetime
        self.budget = budget
        self.port = 0
        self.connections = 0
        self.kills: Counter[str] = Counter()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.AbstractServer | None = None

    def __enter__(self) -> KillingProxy:
        self._thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _stop(self) -> None:
        assert self._server is not None
        self._server.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            _reset(writer)
            return
        self.connections += 1
        link = _Doomed(writer, up_writer, self.rng.randint(*self.budget))
        timer = self._loop.call_later(
            self.rng.uniform(*self.lifetime), link.kill, "time", self.kills
        )
        try:
            await asyncio.gather(
                self._pump(link, reader, up_writer), self._pump(link, up_reader, writer)
            )
        finally:
            timer.cancel()
            link.kill(link.cause or "closed", self.kills)

    async def _pump(
        self, link: _Doomed, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            while not link.dead:
                data = await reader.read(65536)
                if not data:
                    with contextlib.suppress(OSError):
                        writer.write_eof()
                    return
                if len(data) >= link.budget:  # forward up to the budget (mid-frame), reset
                    writer.write(data[: link.budget])
                    link.budget, link.cause = 0, link.cause or "bytes"
                    self._loop.call_later(0.01, link.kill, link.cause, self.kills)
                    return
                link.budget -= len(data)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            link.kill("error", self.kills)


def _deliver(url: str, count: int, cap: float) -> tuple[float, int, int]:
    """Publish ``count`` messages through ``url`` with default options and flush for at
    most ``cap`` seconds; returns (seconds, messages acked, connections opened)."""
    import nbws
    from nbws.client import FlushError

    stream = nbws.stream(f"bench-chaos-{uuid.uuid4().hex[:8]}", url=url, deadline=None)
    try:
        start = time.perf_counter()
        for i in range(count):
            stream.publish({"i": i, "pad": PAD})
        with contextlib.suppress(FlushError):
            stream.flush(timeout=cap)
        elapsed = time.perf_counter() - start
        stats = stream.stats()
        return elapsed, stats.acked, stats.reconnects + 1
    finally:
        with contextlib.suppress(FlushError):
            stream.close(timeout=1)


def chaos(quick: bool) -> list[Row]:
    count = 20_000 if quick else 100_000
    cap = 20.0 if quick else 300.0
    with server("nbws", "--set", "history_max_messages=200000") as (port, _):
        clean_time, clean_acked, _ = _deliver(f"http://127.0.0.1:{port}/", count, cap)
        with KillingProxy(port, seed=7) as proxy:
            time_, acked, connections = _deliver(f"http://127.0.0.1:{proxy.port}/", count, cap)
            kills = dict(proxy.kills)
    link = "reset after 0.05-1.5 s or 2-400 KB"
    extra = {
        "delivered": f"{acked}/{count} in {time_:.1f} s (cap {cap:.0f} s)",
        "connections": connections,
        "kills": kills,
    }
    return [
        Row(
            "chaos",
            f"acked msgs/s, link {link}",
            acked / time_,
            "same client, clean link",
            clean_acked / clean_time,
            target="progress on every connection",
            extra=extra,
        ),
        Row(
            "chaos",
            f"seconds to deliver {count:,}" + ("" if acked == count else " (not all: capped)"),
            time_,
            "same client, clean link",
            clean_time,
            higher_is_better=False,
        ),
    ]
