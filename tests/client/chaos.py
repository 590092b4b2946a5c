"""A TCP proxy for tests that breaks connections on purpose.

It forwards bytes between a client and an upstream server and, per connection, picks one
way to kill it (seeded, so a run is reproducible):

- ``upstream-cut``: after a random number of client→server bytes, forward only part of
  the chunk in hand (usually mid-frame) and reset both sides;
- ``downstream-cut``: the same for server→client bytes (mid-ack, mid-delivery);
- ``mid-fragment``: reset while the client is inside a fragmented WebSocket message
  (frames are tracked, so this is known, not hoped for);
- ``ack-loss``: after the server has received client data, swallow its next reply (the
  acks of publishes it has just appended) and reset: a publish landed, its ack did not.

With ``kill_within``, every connection is also reset after a random lifetime (a link that
keeps dying whatever is sent over it). Connections are reset with SO_LINGER 0 (RST), like
a crashed peer or a NAT timeout. The proxy can also refuse connections (server down),
hold server→client bytes (a stalled path), and switch upstream (a restarted server). It
runs in its own thread and loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import threading
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = ["MODES", "ChaosProxy", "FrameTracker"]

T = TypeVar("T")

MODES = ("upstream-cut", "downstream-cut", "mid-fragment", "ack-loss")


class FrameTracker:
    """Follows the client→server WebSocket byte stream (after the HTTP upgrade) to know
    where fragmented messages are."""

    def __init__(self) -> None:
        self.handshake = b""
        self.upgraded = False
        self.header = b""
        self.remaining = 0
        self.fragmented = False
        self.ends_fragmented = False
        self.frames = 0

    def feed(self, data: bytes) -> list[int]:
        """Consume ``data``; return cut points ``k`` such that after forwarding
        ``data[:k]`` the stream is inside a fragmented message's payload."""
        cuts: list[int] = []
        pos, n = 0, len(data)
        if not self.upgraded:
            self.handshake += data
            end = self.handshake.find(b"\r\n\r\n")
            if end < 0:
                return cuts
            self.upgraded = True
            pos = n - (len(self.handshake) - (end + 4))
            self.handshake = b""
        while pos < n:
            if self.remaining:
                take = min(self.remaining, n - pos)
                if self.fragmented and take > 1:
                    cuts.append(pos + 1 + (take - 1) // 2)
                pos += take
                self.remaining -= take
                if not self.remaining:
                    self._frame_done()
                continue
            need = self._header_size()
            take = min(need - len(self.header), n - pos)
            self.header += data[pos : pos + take]
            pos += take
            if len(self.header) == need and need == self._header_size():
                self._parse_header()
        return cuts

    def _header_size(self) -> int:
        head = self.header
        if len(head) < 2:
            return 2
        length = head[1] & 0x7F
        extended = 2 if length == 126 else 8 if length == 127 else 0
        return 2 + extended + (4 if head[1] & 0x80 else 0)

    def _parse_header(self) -> None:
        head, self.header = self.header, b""
        length = head[1] & 0x7F
        if length == 126:
            length = struct.unpack("!H", head[2:4])[0]
        elif length == 127:
            length = struct.unpack("!Q", head[2:10])[0]
        fin, opcode = bool(head[0] & 0x80), head[0] & 0x0F
        self.frames += 1
        if opcode in (1, 2) and not fin:
            self.fragmented = True
        if opcode < 8:  # control frames may sit between fragments without ending them
            self.ends_fragmented = opcode == 0 and fin
        self.remaining = length
        if not length:
            self._frame_done()

    def _frame_done(self) -> None:
        if self.ends_fragmented:
            self.fragmented = False
            self.ends_fragmented = False


@dataclass
class ProxyStats:
    connections: int = 0
    refused: int = 0
    kills: Counter[str] = field(default_factory=Counter)


class ChaosProxy:
    """Run with ``with ChaosProxy(port, ...) as proxy:``; connect to ``proxy.port``.

    Args:
        upstream_port: the server's port (on 127.0.0.1).
        seed: seeds every random choice.
        kill_after: range of bytes a connection may carry before its kill starts
            (None: never kill).
        modes: kill modes to choose from per connection (see module docstring).
        kill_within: range of seconds after which a connection is reset whatever it
            carried (None: no time limit); counted as ``timer`` kills.
    """

    def __init__(
        self,
        upstream_port: int,
        *,
        seed: int = 0,
        kill_after: tuple[int, int] | None = None,
        modes: tuple[str, ...] = MODES,
        kill_within: tuple[float, float] | None = None,
    ) -> None:
        unknown = set(modes) - set(MODES)
        if unknown:
            raise ValueError(f"unknown modes {unknown}")
        self.upstream_port = upstream_port
        self.rng = random.Random(seed)
        self.kill_after = kill_after
        self.modes = modes
        self.kill_within = kill_within
        self.refuse = False
        self.stats = ProxyStats()
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="chaos", daemon=True)
        self._server: asyncio.AbstractServer | None = None
        self._links: set[_Link] = set()
        self._downstream_open: asyncio.Event | None = None

    # --- lifecycle (called from the test's thread) ---------------------------------------

    def __enter__(self) -> ChaosProxy:
        self._thread.start()
        self.port = self._call(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    def kill_all(self) -> int:
        """Reset every open connection now; returns how many."""
        return self._call(self._kill_all())

    def hold(self) -> None:
        """Stop forwarding server→client bytes (they wait in the proxy); in effect on return."""
        self._call(self._set_downstream(False))

    def release(self) -> None:
        """Forward server→client bytes again."""
        self._call(self._set_downstream(True))

    @property
    def open_connections(self) -> int:
        return len(self._links)

    # --- the proxy (in its own loop) -----------------------------------------------------

    def _downstream(self) -> asyncio.Event:
        assert self._downstream_open is not None
        return self._downstream_open

    async def _set_downstream(self, flowing: bool) -> None:
        if flowing:
            self._downstream().set()
        else:
            self._downstream().clear()

    async def _start(self) -> int:
        self._downstream_open = asyncio.Event()
        self._downstream_open.set()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._kill_all()

    async def _kill_all(self) -> int:
        links = list(self._links)
        for link in links:
            link.kill("manual")
        return len(links)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refuse:
            self.stats.refused += 1
            _reset(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            self.stats.refused += 1
            _reset(writer)
            return
        self.stats.connections += 1
        mode = self.rng.choice(self.modes) if self.kill_after else None
        budget = self.rng.randint(*self.kill_after) if self.kill_after else 0
        link = _Link(self, writer, up_writer, mode, budget, self.rng.random())
        self._links.add(link)
        timer = None
        if self.kill_within:
            lifetime = self.rng.uniform(*self.kill_within)
            timer = asyncio.get_running_loop().call_later(lifetime, link.kill, "timer")
        try:
            await asyncio.gather(
                link.pump(reader, up_writer, upstream=True),
                link.pump(up_reader, writer, upstream=False),
            )
        finally:
            if timer is not None:
                timer.cancel()
            self._links.discard(link)
            link.kill(None)


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class _Link:
    """One proxied connection and its planned death."""

    def __init__(
        self,
        proxy: ChaosProxy,
        client: asyncio.StreamWriter,
        server: asyncio.StreamWriter,
        mode: str | None,
        budget: int,
        fraction: float,
    ) -> None:
        self.proxy = proxy
        self.client = client
        self.server = server
        self.mode = mode
        self.budget = budget
        self.fraction = fraction
        self.up_bytes = 0
        self.down_bytes = 0
        self.tracker = FrameTracker() if mode == "mid-fragment" else None
        self.swallow_next_reply = False
        self.closing = False
        self.dead = False

    def kill(self, reason: str | None) -> None:
        if self.dead:
            return
        self.dead = True
        if reason is not None:
            self.proxy.stats.kills[reason] += 1
        _reset(self.client)
        _reset(self.server)

    async def pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, upstream: bool
    ) -> None:
        try:
            while not self.dead:
                data = await reader.read(65536)
                if not data:
                    with contextlib.suppress(OSError):
                        writer.write_eof()
                    return
                if not upstream:
                    await self.proxy._downstream().wait()
                data = self.chaos(data, upstream)
                if data and not self.closing:
                    writer.write(data)
                    await writer.drain()
                if self.dead:
                    return
        except (ConnectionError, OSError):
            self.kill(None)

    def chaos(self, data: bytes, upstream: bool) -> bytes:
        """What of ``data`` to forward; may plan or carry out the kill."""
        mode = self.mode
        if mode is None or self.dead:
            return data
        if upstream:
            before = self.up_bytes
            self.up_bytes += len(data)
            if mode == "upstream-cut" and self.up_bytes >= self.budget:
                cut = max(0, self.budget - before)
                self._kill_after_send(data[:cut], "upstream-cut", to_server=True)
                return b""
            if mode == "mid-fragment":
                assert self.tracker is not None
                cuts = self.tracker.feed(data)
                if cuts and self.up_bytes >= self.budget // 4:
                    cut = cuts[int(self.fraction * len(cuts))]
                    self._kill_after_send(data[:cut], "mid-fragment", to_server=True)
                    return b""
                if self.up_bytes >= self.budget * 4:  # no fragmented message came: give up
                    self._kill_after_send(data, "upstream-cut", to_server=True)
                    return b""
            if mode == "ack-loss" and self.up_bytes >= self.budget:
                self.swallow_next_reply = True
            return data
        before = self.down_bytes
        self.down_bytes += len(data)
        if mode == "downstream-cut" and self.down_bytes >= self.budget:
            cut = max(0, self.budget - before)
            self._kill_after_send(data[:cut], "downstream-cut", to_server=False)
            return b""
        if mode == "ack-loss" and self.swallow_next_reply:
            self.kill("ack-loss")
            return b""
        return data

    def _kill_after_send(self, data: bytes, reason: str, *, to_server: bool) -> None:
        """Forward ``data`` (a partial chunk), stop forwarding, reset a moment later (an
        immediate RST could discard the partial chunk before the peer reads it)."""
        writer = self.server if to_server else self.client
        if data:
            writer.write(data)
        self.mode = None
        self.closing = True
        asyncio.get_running_loop().call_later(0.02, self.kill, reason)
