"""Memory per idle connection: N open WebSockets that completed the handshake and then
say nothing, nbws (``/nbws/ws``, ``nbws.v1``, each has received ``welcome``) vs tornado's
``WebSocketHandler`` (``/echo``). Server RSS is read with psutil after a warm-up batch and
after all N are open; the growth divided by the connections opened in between is the cost
of one connection."""

from __future__ import annotations

import asyncio

from websockets.frames import Opcode

from ..protocol.messages import PROTOCOL, Welcome, decode_event
from .base import Row, raise_nofile, server
from .wsclient import Peer, open_peer

__all__ = ["idle_connections"]

TARGET = "<= 20 KB"
CONCURRENT_OPENS = 100  # in-flight handshakes; more only overflows the listen backlog


async def _welcome(peer: Peer) -> Welcome:
    """The connection's ``welcome``, checked by the message layer."""
    while True:
        opcode, payload = await peer.next_frame()
        if opcode == Opcode.TEXT:
            event = decode_event(payload)
            if isinstance(event, Welcome):
                return event


async def _open_many(port: int, path: str, protocol: str | None, count: int) -> list[Peer]:
    """Open ``count`` connections, at most CONCURRENT_OPENS handshakes at a time; with
    ``nbws.v1`` each also waits for its ``welcome``."""
    gate = asyncio.Semaphore(CONCURRENT_OPENS)

    async def one() -> Peer:
        async with gate:
            peer = await open_peer(port, path, protocol)
            if protocol == PROTOCOL:
                await _welcome(peer)
            return peer

    return list(await asyncio.gather(*(one() for _ in range(count))))


def _rss(pid: int) -> int:
    import psutil

    return int(psutil.Process(pid).memory_info().rss)


async def _per_connection(
    port: int, pid: int, path: str, protocol: str | None, count: int
) -> tuple[float, int]:
    """(bytes of server RSS per connection, server RSS with all open). A received
    ``welcome`` (nbws) or 101 (tornado) means the server has set the connection up."""
    warm = max(10, count // 20)
    peers = await _open_many(port, path, protocol, warm)
    before = _rss(pid)
    try:
        peers += await _open_many(port, path, protocol, count - warm)
        after = _rss(pid)
    finally:
        for peer in peers:
            peer.writer.close()
    return (after - before) / (count - warm), after


def idle_connections(quick: bool) -> list[Row]:
    count = 1_000 if quick else 10_000
    fds = count + 1_000
    if raise_nofile(fds) < fds:
        raise RuntimeError(f"idle: need {fds} file descriptors; the hard limit is lower")
    limit = f"max_connections={count + 100}"
    with server("nbws", "--set", limit, nofile=fds) as (port, proc):
        ours, ours_total = asyncio.run(_per_connection(port, proc.pid, "/nbws/ws", PROTOCOL, count))
    with server("tornado", nofile=fds) as (port, proc):
        theirs, theirs_total = asyncio.run(_per_connection(port, proc.pid, "/echo", None, count))
    kib = 1024
    return [
        Row(
            "idle connections",
            f"server KB per idle connection, {count:,} open",
            ours / kib,
            "tornado WebSocketHandler",
            theirs / kib,
            higher_is_better=False,
            target=TARGET,
            extra={
                "nbws_server_rss_mib": round(ours_total / kib**2, 1),
                "baseline_server_rss_mib": round(theirs_total / kib**2, 1),
            },
        )
    ]
