"""Scale-out (docs/performance.md, "Batches"): publish->deliver throughput with two
``nbws serve --redis`` processes on one Redis against one process.

Two streams, each with one publisher and one subscriber. With two processes, stream i is
published through process i and subscribed through the other one, so every message
crosses Redis between processes; with one process, all four connections go to it. The
clients are raw WebSocket peers with pre-encoded ``publish_batch`` frames (acked, as the
reliable client sends them) and ``max_batch`` subscribers that parse what they get, so the
bench process costs less than the servers it measures. The clock runs from the first
publish to the last message delivered to both subscribers.

Each round also accounts the CPU time of every process involved (the servers, Redis, the
bench's own clients) per delivered message: on a machine with few cores that says which
one limits the rate, and so how much a second server process can add.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

import orjson
import psutil

from ..protocol.messages import PROTOCOL, Ack, Nack, PublishBatch, Subscribe, decode_event, encode
from .base import Row, delivered_in, server
from .publish_batches import redis_server_process
from .wsclient import Peer, client_frame, open_peer, read_json

__all__ = ["scale_out"]

STREAMS = 2
BATCH = 250  # messages per publish_batch: a quarter of the client's default window
MAX_BATCH = 1000  # the subscribers' max_batch


def _batches(stream: str, count: int) -> list[bytes]:
    """The ``publish_batch`` frames of ``count`` messages, encoded before the clock starts."""
    producer = f"bench-{uuid.uuid4().hex[:8]}"
    frames = []
    for seq in range(0, count, BATCH):
        payloads = [{"i": i, "v": 1.5} for i in range(seq, min(count, seq + BATCH))]
        frames.append(client_frame(encode(PublishBatch(stream, producer, seq, payloads)).data))
    return frames


async def _publish(peer: Peer, frames: list[bytes], count: int) -> None:
    """Send every batch (TCP backpressure paces it); fail on a nack."""

    async def read_acks() -> None:
        acked = 0
        while acked < count:
            _opcode, payload = await peer.next_frame()
            event = decode_event(payload)
            if isinstance(event, Nack):
                raise RuntimeError(f"publish refused: {event.code}: {event.reason}")
            if isinstance(event, Ack):
                acked += 1 if event.last is None else event.last - event.seq + 1

    reader = asyncio.ensure_future(read_acks())
    try:
        for frame in frames:
            peer.writer.write(frame)
            await peer.writer.drain()
            if reader.done():
                break
        await reader
    finally:
        reader.cancel()


async def _receive(peer: Peer, count: int) -> None:
    """Count delivered messages (batches unpacked) until ``count``; fail on a gap."""
    received = 0
    while received < count:
        _opcode, payload = await peer.next_frame()
        event = orjson.loads(payload)
        if event["type"] == "gap":
            raise RuntimeError(f"subscriber missed messages: {event}")
        received += delivered_in(event)


async def _run(ports: list[int], count: int) -> float:
    """Delivered msgs/s over both streams (``count`` messages each)."""
    names = [f"scale-{uuid.uuid4().hex[:8]}-{i}" for i in range(STREAMS)]
    subscribers: list[Peer] = []
    for i, stream in enumerate(names):
        peer = await open_peer(ports[(i + 1) % len(ports)], "/nbws/ws", PROTOCOL)
        await read_json(peer, "welcome")
        request = Subscribe(stream, since=0, max_batch=MAX_BATCH, max_messages=count + 1)
        peer.writer.write(client_frame(encode(request).data))
        await read_json(peer, "subscribed")
        subscribers.append(peer)
    publishers: list[Peer] = []
    for i in range(STREAMS):
        peer = await open_peer(ports[i % len(ports)], "/nbws/ws", PROTOCOL)
        await read_json(peer, "welcome")
        publishers.append(peer)
    frames = [_batches(stream, count) for stream in names]
    start = time.perf_counter()
    try:
        await asyncio.wait_for(
            asyncio.gather(
                *(_publish(p, f, count) for p, f in zip(publishers, frames, strict=True)),
                *(_receive(peer, count) for peer in subscribers),
            ),
            timeout=max(120, count / 1000),
        )
        elapsed = time.perf_counter() - start
    finally:
        for peer in [*publishers, *subscribers]:
            with contextlib.suppress(Exception):
                peer.writer.close()
    return STREAMS * count / elapsed


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def _accounted(
    ports: list[int], count: int, processes: dict[str, list[psutil.Process]]
) -> tuple[float, dict[str, float]]:
    """One :func:`_run`: its rate and the CPU microseconds per delivered message of each
    group of processes."""
    before = {name: sum(map(_cpu_seconds, group)) for name, group in processes.items()}
    rate = asyncio.run(_run(ports, count))
    delivered = STREAMS * count
    return rate, {
        name: (sum(map(_cpu_seconds, group)) - before[name]) / delivered * 1e6
        for name, group in processes.items()
    }


def _split(cpu: dict[str, float]) -> str:
    total = sum(cpu.values())
    parts = ", ".join(f"{name} {value:.1f}" for name, value in cpu.items())
    return f"{parts} (total {total:.1f}; 2 cores give {2e6 / total / 1000:,.0f}k msgs/s at most)"


def _compare(
    kind: str, quick: bool
) -> tuple[float, float, dict[str, float], dict[str, float], int]:
    """Best of alternated rounds, one process and two, of servers started as ``kind``:
    (two, one, CPU split of two, CPU split of one, rounds)."""
    count = 25_000 if quick else 100_000
    rounds = 2 if quick else 3
    # history long enough that a subscriber behind the publishers is not trimmed past
    history = [
        "--set",
        f"history_max_messages={4 * count}",
        "--set",
        "history_max_bytes=1073741824",
    ]
    single = double = 0.0
    single_cpu: dict[str, float] = {}
    double_cpu: dict[str, float] = {}
    with redis_server_process() as (url, redis_pid), contextlib.ExitStack() as stack:
        started = [stack.enter_context(server(kind, "--redis", url, *history)) for _ in range(2)]
        ports = [port for port, _ in started]
        servers = [psutil.Process(proc.pid) for _, proc in started]
        redis = [psutil.Process(redis_pid)]
        bench = [psutil.Process()]
        for _ in range(rounds):  # alternate on the same processes, keep the best of each
            rate, cpu = _accounted(
                ports[:1], count, {"server": servers[:1], "Redis": redis, "bench clients": bench}
            )
            if rate > single:
                single, single_cpu = rate, cpu
            rate, cpu = _accounted(
                ports,
                count,
                {
                    "server 1": servers[:1],
                    "server 2": servers[1:],
                    "Redis": redis,
                    "bench clients": bench,
                },
            )
            if rate > double:
                double, double_cpu = rate, cpu
    return double, single, double_cpu, single_cpu, count


def scale_out(quick: bool) -> list[Row]:
    kinds = [("nbws", "hiredis (the redis extra's default)")]
    if not quick:  # the server-bound variant: slow, so in full runs only
        kinds.append(
            ("nbws-python-parser", "redis-py's Python reply parser: the server is the bottleneck")
        )
    rows = []
    for kind, how in kinds:
        double, single, double_cpu, single_cpu, count = _compare(kind, quick)
        rows.append(
            Row(
                "scale-out",
                f"delivered msgs/s, {STREAMS} streams x {count:,}, 2 nbws serve --redis "
                f"processes, {how}",
                double,
                "1 nbws serve --redis process, same clients",
                single,
                target=">= 1.5x",
                extra={
                    f"CPU us per message, 1 process ({kind})": _split(single_cpu),
                    f"CPU us per message, 2 processes ({kind})": _split(double_cpu),
                },
            )
        )
    return rows
