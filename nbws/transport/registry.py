"""All open connections of one process: the connection limit, one heartbeat sweep, shutdown.

One periodic sweep walks every connection instead of a timer per connection, so an idle
connection costs no timer and no task besides its reader.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import Any

from tornado.ioloop import PeriodicCallback

from ..errors import CloseCode, InternalError, TryAgainLater
from ..protocol import State
from .connection import Connection

__all__ = ["ConnectionRegistry"]

log = logging.getLogger("nbws.connection")


class ConnectionRegistry:
    """Tracks open connections and keeps them alive or drops them.

    Args:
        max_connections: connections accepted at once (0: unlimited).
        heartbeat_interval: seconds of silence before a ping (0: no heartbeats).
        heartbeat_timeout: seconds to wait for the pong before closing with 1011.
        idle_timeout: seconds without a data message before closing with 1001 (0: off).

    Each connection's own ``stall_timeout`` says how long its peer may read nothing while
    a backlog waits for it before the sweep closes it with 1013.
    """

    def __init__(
        self,
        *,
        max_connections: int = 0,
        heartbeat_interval: float = 30.0,
        heartbeat_timeout: float = 20.0,
        idle_timeout: float = 0.0,
    ) -> None:
        self.max_connections = max_connections
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_timeout = heartbeat_timeout
        self.idle_timeout = idle_timeout
        self.connections: set[Connection] = set()
        self._forget = self.connections.discard  # one bound method for every connection
        self.accepted = 0
        self.refused = 0
        self._sweeper: PeriodicCallback | None = None
        self._labels: dict[str, Connection] = {}
        self._label_waiters: dict[str, list[asyncio.Future[Connection]]] = {}

    def __len__(self) -> int:
        return len(self.connections)

    def __iter__(self) -> Iterator[Connection]:
        return iter(list(self.connections))

    @property
    def full(self) -> bool:
        """True when one more connection would exceed ``max_connections``."""
        return 0 < self.max_connections <= len(self.connections)

    def add(self, connection: Connection) -> None:
        """Track ``connection`` until it closes."""
        self.connections.add(connection)
        self.accepted += 1
        connection.on_close(self._forget)
        self._ensure_sweeper(connection.stall_timeout)
        label = connection.query.get("tap")
        if label:
            self._label(label, connection)

    def _label(self, label: str, connection: Connection) -> None:
        """Record frames of ``connection`` and let a tap find it by ``label``."""
        connection.tap.watch()
        self._labels[label] = connection

        def forget(conn: Connection) -> None:
            if self._labels.get(label) is conn:
                del self._labels[label]

        connection.on_close(forget)
        for waiter in self._label_waiters.pop(label, []):
            if not waiter.done():
                waiter.set_result(connection)

    async def wait_for_label(
        self, label: str, cancelled: asyncio.Future[None]
    ) -> Connection | None:
        """The open connection opened with ``?tap=label``, waiting for one if needed;
        None once ``cancelled`` completes first."""
        current = self._labels.get(label)
        if current is not None and not current.closed.done():
            return current
        waiter: asyncio.Future[Connection] = asyncio.get_running_loop().create_future()
        self._label_waiters.setdefault(label, []).append(waiter)
        both: list[asyncio.Future[Any]] = [waiter, cancelled]
        done, _ = await asyncio.wait(both, return_when=asyncio.FIRST_COMPLETED)
        if waiter in done:
            return waiter.result()
        waiter.cancel()
        waiters = self._label_waiters.get(label)
        if waiters and waiter in waiters:
            waiters.remove(waiter)
            if not waiters:
                del self._label_waiters[label]
        return None

    def _sweep_period(self, stall_timeout: float = 0.0) -> float:
        timeouts = (
            self.heartbeat_interval,
            self.heartbeat_timeout,
            self.idle_timeout,
            stall_timeout,
        )
        periods = [p for p in timeouts if p > 0]
        if not periods:
            return 0.0
        return max(0.02, min(min(periods) / 4, 5.0))

    def _ensure_sweeper(self, stall_timeout: float = 0.0) -> None:
        if self._sweeper is not None:
            return
        period = self._sweep_period(stall_timeout)
        if period <= 0:
            return
        self._sweeper = PeriodicCallback(self.sweep, period * 1000)
        self._sweeper.start()

    def sweep(self, now: float | None = None) -> None:
        """Close stalled peers, ping quiet ones, drop ones that missed their pong, close
        idle ones."""
        now = time.monotonic() if now is None else now
        interval, timeout, idle = self.heartbeat_interval, self.heartbeat_timeout, self.idle_timeout
        for conn in list(self.connections):
            if conn.session.state is not State.OPEN:
                continue
            stall = conn.stall_timeout
            if stall > 0 and conn.stalled_for(now) >= stall:
                log.info(
                    "closing %s: read nothing for %.1fs with %d bytes waiting",
                    conn.remote,
                    stall,
                    conn.pending_write,
                )
                # The close frame queues behind the backlog: a peer that reads again
                # sees it; one that does not is dropped after close_timeout.
                conn.fail_with(TryAgainLater(f"peer read nothing for {stall:g}s"))
                continue
            if idle > 0 and now - conn.last_data_received >= idle:
                log.info("closing idle connection %s after %.1fs", conn.remote, idle)
                conn.start_close(CloseCode.GOING_AWAY, f"idle for {idle:g}s")
                continue
            if interval <= 0:
                continue
            if conn.ping_sent_at is not None:
                if stall > 0 and conn.pending_write > conn.write_low_water:
                    # Reading is paused, so its pong may be unread in the socket: the
                    # stall deadline is in charge of this peer, not the heartbeat.
                    continue
                if now - conn.ping_sent_at >= timeout:
                    log.info("dropping %s: no pong within %.1fs", conn.remote, timeout)
                    conn.fail_with(InternalError("keepalive ping timeout"))
                    conn.abort()
            elif now - conn.last_received >= interval:
                conn.send_heartbeat(now)

    def stop(self) -> None:
        """Stop the heartbeat sweep."""
        if self._sweeper is not None:
            self._sweeper.stop()
            self._sweeper = None

    async def close_all(
        self,
        code: int = CloseCode.GOING_AWAY,
        reason: str = "server shutting down",
        timeout: float = 2.0,
    ) -> None:
        """Close every connection with ``code`` and wait (at most ``timeout``) for them."""
        self.stop()
        conns = list(self.connections)
        for conn in conns:
            conn.start_close(code, reason)
        if conns:
            waiters = [asyncio.shield(c.closed) for c in conns]
            await asyncio.wait(waiters, timeout=timeout)
            for conn in conns:
                if not conn.closed.done():
                    conn.abort()
