"""Batched deliveries: one subscriber replaying a stream's history as ``batch`` events
(``max_batch``) vs one ``message`` frame per message, from the same ``nbws serve`` and the
same history. The clock runs from the ``subscribe`` to the ``end`` (``until``); every
frame is decoded (JSON parsed), so the subscriber pays for what it receives."""

from __future__ import annotations

import asyncio
import time

import orjson

from ..protocol.messages import PROTOCOL, InfoRequest, Publish, Subscribe, encode
from .base import Row, delivered_in, server
from .wsclient import Peer, client_frame, open_peer, read_json

__all__ = ["BATCH_STREAM", "batched_delivery"]

BATCH_STREAM = "bench-batches"
MAX_BATCH = 1000
PREFILL_CHUNK = 2000  # publishes per write while filling the history


async def _prefill(port: int, count: int) -> None:
    """Append ``count`` small JSON messages (fire-and-forget) and wait until they are in."""
    peer = await open_peer(port, "/nbws/ws", PROTOCOL)
    await read_json(peer, "welcome")
    bodies = [encode(Publish(BATCH_STREAM, {"i": i, "v": 1.5})).data for i in range(count)]
    for start in range(0, count, PREFILL_CHUNK):
        peer.writer.write(b"".join(client_frame(b) for b in bodies[start : start + PREFILL_CHUNK]))
        await peer.writer.drain()
    while True:
        peer.writer.write(client_frame(encode(InfoRequest(BATCH_STREAM)).data))
        info = await read_json(peer, "info")
        if info["next"] >= count:
            break
        await asyncio.sleep(0.05)
    peer.writer.close()


async def _count(peer: Peer) -> int:
    """Messages received until ``end``, batches unpacked."""
    received = 0
    while True:
        _opcode, payload = await peer.next_frame()
        event = orjson.loads(payload)
        if event["type"] == "end":
            return received
        received += delivered_in(event)


async def _replay_once(port: int, count: int, max_batch: int | None) -> float:
    peer = await open_peer(port, "/nbws/ws", PROTOCOL)
    await read_json(peer, "welcome")
    request = Subscribe(BATCH_STREAM, since=0, until=count, max_batch=max_batch)
    start = time.perf_counter()
    peer.writer.write(client_frame(encode(request).data))
    received = await _count(peer)  # `subscribed` is not counted
    elapsed = time.perf_counter() - start
    peer.writer.close()
    if received != count:
        raise RuntimeError(f"replay delivered {received} of {count} messages")
    return count / elapsed


async def _measure(port: int, count: int, rounds: int) -> tuple[float, float]:
    await _prefill(port, count)
    plain = batched = 0.0
    for _ in range(rounds):  # alternate, keep the best of each
        plain = max(plain, await _replay_once(port, count, None))
        batched = max(batched, await _replay_once(port, count, MAX_BATCH))
    return batched, plain


def batched_delivery(quick: bool) -> list[Row]:
    count = 100_000 if quick else 500_000
    rounds = 2 if quick else 3
    settings = [
        "--set",
        f"history_max_messages={count}",
        "--set",
        f"history_max_bytes={count * 64}",
    ]
    with server("nbws", *settings) as (port, _):
        batched, plain = asyncio.run(_measure(port, count, rounds))
    return [
        Row(
            "batched delivery",
            f"msgs/s to one subscriber, {count // 1000}k-message replay",
            batched,
            "one-message frames (nbws)",
            plain,
            target=">= 1M msgs/s",
            extra={"max_batch": MAX_BATCH},
        )
    ]
