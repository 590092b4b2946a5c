"""The benchmark scenarios and their registry, SCENARIOS. Throughput scenarios live here;
latency, idle connections, polling and widget updates have a module each."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from ..protocol.messages import Publish, Subscribe, encode
from .base import Row, server
from .browser import browser
from .chaos import chaos
from .comm import comm_updates
from .delivery_batches import batched_delivery
from .idle import idle_connections
from .latency import latency
from .polling import polling
from .publish_batches import batched_publish, dataframe_rows, redis_publish
from .scaleout import scale_out
from .wsclient import FrameCounter, client_frame, open_peer

__all__ = [
    "FANOUT_STREAM",
    "ONLY_WHEN_NAMED",
    "SCENARIOS",
    "Row",
    "acked_publish",
    "echo",
    "fanout",
    "fanout_bodies",
    "fragmented",
]


# --- fan-out -------------------------------------------------------------------------

FANOUT_STREAM = "bench"


def fanout_bodies(count: int) -> tuple[bytes, list[bytes]]:
    """The subscribe request and ``count`` publishes of the fan-out scenario, encoded
    once before any clock starts."""
    subscribe = encode(Subscribe(FANOUT_STREAM)).data
    return subscribe, [
        encode(Publish(FANOUT_STREAM, {"i": i, "v": 1.5})).data for i in range(count)
    ]


async def _fanout_once(port: int, path: str, subscribers: int, messages: int, nbws: bool) -> float:
    peers = [await open_peer(port, path, "nbws.v1" if nbws else None) for _ in range(subscribers)]
    overhead = 2 if nbws else 0  # welcome + subscribed
    subscribe, bodies = fanout_bodies(messages)
    if nbws:
        for peer in peers:
            peer.writer.write(client_frame(subscribe))
    publisher = await open_peer(port, path, "nbws.v1" if nbws else None)
    done = 0
    all_done = asyncio.get_running_loop().create_future()
    ready = asyncio.get_running_loop().create_future()
    subscribed = 0

    async def read(peer: Any) -> None:
        nonlocal done, subscribed
        counter = FrameCounter()
        announced = False
        while counter.frames < messages + overhead:
            data = await peer.reader.read(1 << 20)
            if not data:
                return
            counter.feed(data)
            if not announced and counter.frames >= overhead:
                announced = True
                subscribed += 1
                if subscribed == subscribers and not ready.done():
                    ready.set_result(None)
        done += 1
        if done == subscribers and not all_done.done():
            all_done.set_result(None)

    tasks = [asyncio.ensure_future(read(p)) for p in peers]
    if nbws:
        await asyncio.wait_for(ready, 30)
    else:
        await asyncio.sleep(0.2)  # tornado has no subscribe reply; let opens settle
    # The tornado baseline relays the same publish frames to its clients as they are.
    frames = [client_frame(body) for body in bodies]
    start = time.perf_counter()
    for i in range(0, messages, 100):
        publisher.writer.write(b"".join(frames[i : i + 100]))
        await publisher.writer.drain()
    try:
        # bounded, but slow baselines (tornado: ~35k deliveries/s) must be able to finish
        await asyncio.wait_for(all_done, max(120, subscribers * messages / 10_000))
    finally:
        elapsed = time.perf_counter() - start
        for task in tasks:
            task.cancel()
        for peer in [*peers, publisher]:
            peer.writer.close()
    return subscribers * messages / elapsed


def fanout(quick: bool) -> list[Row]:
    rows = []
    messages = 500 if quick else 4000
    for subscribers in (200,) if quick else (200, 1000):
        with server("nbws", "--set", "max_connections=5000") as (port, _):
            ours = asyncio.run(_fanout_once(port, "/nbws/ws", subscribers, messages, True))
        with server("tornado") as (port, _):
            base = asyncio.run(_fanout_once(port, "/broadcast", subscribers, messages, False))
        rows.append(
            Row(
                "fan-out",
                f"deliveries/s, {subscribers} subscribers",
                ours,
                "tornado write_message loop",
                base,
                target=">= 20x",
            )
        )
    return rows


# --- echo ----------------------------------------------------------------------------


async def _echo_once(port: int, path: str, clients: int, seconds: float) -> float:
    payload = client_frame(b"x" * 100)
    count = 0
    stop = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal count
        peer = await open_peer(port, path)
        counter = FrameCounter()
        while time.perf_counter() < stop:
            peer.writer.write(payload)
            want = counter.frames + 1
            while counter.frames < want:
                counter.feed(await peer.reader.read(65536))
            count += 1
        peer.writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return count / (time.perf_counter() - start)


def echo(quick: bool) -> list[Row]:
    seconds, clients = (2.0, 8) if quick else (8.0, 16)
    results = {}
    for kind, path in (("nbws", "/nbws/echo"), ("tornado", "/echo"), ("websockets", "/")):
        with server(kind) as (port, _):
            results[kind] = asyncio.run(_echo_once(port, path, clients, seconds))
    return [
        Row(
            "echo",
            f"round trips/s, 100 B, {clients} clients",
            results["nbws"],
            "tornado WebSocketHandler",
            results["tornado"],
            target=">= 1x",
        ),
        Row(
            "echo",
            f"round trips/s, 100 B, {clients} clients",
            results["nbws"],
            "websockets server",
            results["websockets"],
        ),
    ]


# --- acked publish ---------------------------------------------------------------------


def _publish_rate(port: int, window: int, count: int) -> float:
    import nbws

    stream = nbws.stream(
        f"bench-{uuid.uuid4().hex[:8]}", url=f"http://127.0.0.1:{port}/", window=window
    )
    try:
        start = time.perf_counter()
        for i in range(count):
            stream.publish({"i": i, "v": 1.5})
        stream.flush(timeout=120)
        return count / (time.perf_counter() - start)
    finally:
        stream.close()


def acked_publish(quick: bool) -> list[Row]:
    count = 5_000 if quick else 50_000
    with server("nbws") as (port, _):
        windowed = _publish_rate(port, 1000, count)
        stop_and_wait = _publish_rate(port, 1, max(200, count // 20))
    return [
        Row(
            "acked publish",
            "acked msgs/s, reliable client (window 1000)",
            windowed,
            "same client, window 1 (stop-and-wait)",
            stop_and_wait,
            target=">= 20x",
        )
    ]


# --- fragmented streaming ------------------------------------------------------------------


class _RssSampler:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.start = self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss(self) -> int:
        with open(f"/proc/{self.pid}/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError):
                self.peak = max(self.peak, self._rss())
            self._stop.wait(0.05)

    def __enter__(self) -> _RssSampler:
        self.start = self.peak = self._rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth(self) -> int:
        return self.peak - self.start


async def _stream_ws(port: int, size: int, chunk: int) -> float:
    peer = await open_peer(port, "/nbws/echo?stream=1")
    fragments = size // chunk
    data = os.urandom(chunk)

    async def send() -> None:
        for i in range(fragments):
            peer.writer.write(client_frame(data, text=False, fin=i == fragments - 1, cont=i > 0))
            await peer.writer.drain()

    counter = FrameCounter()
    start = time.perf_counter()
    sender = asyncio.ensure_future(send())
    while counter.frames < fragments:
        counter.feed(await peer.reader.read(1 << 20))
    await sender
    elapsed = time.perf_counter() - start
    peer.writer.close()
    return size / elapsed


async def _stream_tcp(port: int, size: int, chunk: int) -> float:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    data = os.urandom(chunk)

    async def send() -> None:
        for _ in range(size // chunk):
            writer.write(data)
            await writer.drain()

    received = 0
    start = time.perf_counter()
    sender = asyncio.ensure_future(send())
    while received < size:
        received += len(await reader.read(1 << 20))
    await sender
    elapsed = time.perf_counter() - start
    writer.close()
    return size / elapsed


def fragmented(quick: bool) -> list[Row]:
    size, chunk = (64 << 20 if quick else 1 << 30), 64 << 10
    with (
        server("nbws", "--set", f"max_message_size={2 * size}") as (port, proc),
        _RssSampler(proc.pid) as rss,
    ):
        ours = asyncio.run(_stream_ws(port, size, chunk))
    with server("tcp") as (port, _):
        base = asyncio.run(_stream_tcp(port, size, chunk))
    mib = 1 << 20
    return [
        Row(
            "fragmented streaming",
            f"MiB/s echoed, {size // mib} MiB as 64 KiB fragments",
            ours / mib,
            "raw loopback TCP echo",
            base / mib,
            target=">= 0.5x",
            extra={"server_rss_growth_mib": round(rss.growth / mib, 1)},
        ),
    ]


SCENARIOS: dict[str, Callable[[bool], list[Row]]] = {
    "fan-out": fanout,
    "echo": echo,
    "acked": acked_publish,
    "fragmented": fragmented,
    "latency": latency,
    "idle": idle_connections,
    "polling": polling,
    "comm": comm_updates,
    "chaos": chaos,
    "batches": batched_publish,
    "rows": dataframe_rows,
    "redis": redis_publish,
    "deliveries": batched_delivery,
    "scaleout": scale_out,
}

ONLY_WHEN_NAMED: dict[str, Callable[[bool], list[Row]]] = {"browser": browser}
"""Scenarios run only with ``--only``: a real JupyterLab and Chromium for minutes."""
