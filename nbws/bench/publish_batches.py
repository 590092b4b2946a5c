"""Batched publishing (docs/performance.md, "Batches"): the same reliable client with
batches on and off, DataFrame rows, and the Redis backend against raw pipelined XADD.

Every row is acked messages per second measured from the first ``publish`` to the end of
``flush`` (every message acked), from one thread, with the default options unless named.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from typing import Any

from .base import Row, free_port, server

__all__ = [
    "batched_publish",
    "dataframe_rows",
    "redis_publish",
    "redis_server",
    "redis_server_process",
]

PAYLOAD = {"i": 0, "v": 1.5}


def _stream(port: int, **options: Any) -> Any:
    import nbws

    return nbws.stream(f"bench-{uuid.uuid4().hex[:8]}", url=f"http://127.0.0.1:{port}/", **options)


def _publish_rate(port: int, count: int, **options: Any) -> float:
    """Acked msgs/s of ``count`` plain ``publish`` calls."""
    stream = _stream(port, **options)
    try:
        stream.publish(PAYLOAD)  # connected before the clock starts
        stream.flush(timeout=60)
        start = time.perf_counter()
        for i in range(count):
            stream.publish({"i": i, "v": 1.5})
        stream.flush(timeout=300)
        return count / (time.perf_counter() - start)
    finally:
        stream.close()


def batched_publish(quick: bool) -> list[Row]:
    count = 50_000 if quick else 300_000
    with server("nbws") as (port, _):
        batched = _publish_rate(port, count)
        single = _publish_rate(port, max(5_000, count // 4), batch=False)
    return [
        Row(
            "batched publish",
            "acked msgs/s, plain publish() from one thread (batches on)",
            batched,
            "same client, batch=False (one publish + one ack per message)",
            single,
            target=">= 250k msgs/s, >= 4x",
        )
    ]


def _frame(rows: int) -> Any:
    import numpy as np
    import pandas as pd

    return pd.DataFrame(
        {
            "i": np.arange(rows, dtype="int64"),
            "x": np.linspace(0.0, 1.0, rows),
            "t": pd.date_range("2026-01-01", periods=rows, freq="ms"),
            "c": pd.Categorical(np.where(np.arange(rows) % 2, "a", "b")),
        }
    )


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used, all its threads (0 off Linux)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def dataframe_rows(quick: bool) -> list[Row]:
    from ..client import frames_pandas

    rows = 100_000 if quick else 1_000_000
    df = _frame(rows)
    with server("nbws", "--set", f"history_max_messages={2 * rows + 10}") as (port, proc):
        stream = _stream(port)
        try:
            stream.publish(PAYLOAD)
            stream.flush(timeout=60)
            server_cpu, client_cpu = _cpu_seconds(proc.pid), time.process_time()
            start = time.perf_counter()
            stream.publish_rows(df)
            stream.flush(timeout=600)
            ours = rows / (time.perf_counter() - start)
            # CPU per row on each side (this process is the client): which one limits
            client_us = (time.process_time() - client_cpu) * 1e6 / rows
            server_us = (_cpu_seconds(proc.pid) - server_cpu) * 1e6 / rows
        finally:
            stream.close()
        # The same rows as per-message publishes (batch=False), a tenth of them.
        few = max(10_000, rows // 10)
        payloads = frames_pandas.df_rows_json(df.iloc[:few])
        stream = _stream(port, batch=False)
        try:
            stream.publish(PAYLOAD)
            stream.flush(timeout=60)
            start = time.perf_counter()
            outbox = stream._outbox()
            for payload in payloads:
                outbox.put_json(payload)
            stream.flush(timeout=600)
            base = few / (time.perf_counter() - start)
        finally:
            stream.close()
    return [
        Row(
            "dataframe rows",
            f"rows/s, publish_rows of {rows:,} rows x 4 columns (one message per row)",
            ours,
            "the same rows as per-message publishes (batch=False)",
            base,
            target=">= 1M rows/s, >= 15x",
            extra={
                "client_cpu_us_per_row": round(client_us, 3),
                "server_cpu_us_per_row": round(server_us, 3),
            },
        )
    ]


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """A throwaway ``redis-server`` (no persistence: engine speed); yields its URL."""
    with redis_server_process() as (url, _pid):
        yield url


@contextlib.contextmanager
def redis_server_process() -> Iterator[tuple[str, int]]:
    """:func:`redis_server`, yielding its URL and process id (to account its CPU)."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = free_port()
    with tempfile.TemporaryDirectory() as directory:
        command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", directory]
        command += ["--save", "", "--appendonly", "no"]
        proc = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), 0.5).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise RuntimeError("redis-server did not start") from None
                    time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0", proc.pid
        finally:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _raw_xadd_rate(url: str, payloads: list[bytes]) -> float:
    """redis-py pipelined XADD of the same payloads (1000 per pipeline), one stream."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        key = f"raw-{uuid.uuid4().hex[:8]}"
        start = time.perf_counter()
        for first in range(0, len(payloads), 1000):
            pipe = client.pipeline(transaction=False)
            for payload in payloads[first : first + 1000]:
                pipe.xadd(key, {"p": payload})
            pipe.execute()
        return len(payloads) / (time.perf_counter() - start)
    finally:
        client.close()


def redis_publish(quick: bool) -> list[Row]:
    import orjson

    count = 20_000 if quick else 200_000
    with redis_server() as url:
        with server("nbws", "--redis", url) as (port, _):
            ours = _publish_rate(port, count)
        raw = _raw_xadd_rate(url, [orjson.dumps({"i": i, "v": 1.5}) for i in range(count)])
    return [
        Row(
            "redis publish",
            "acked msgs/s into Redis, plain publish() via nbws serve --redis",
            ours,
            "raw redis-py pipelined XADD of the same payloads",
            raw,
            target=">= 0.5x",
        )
    ]
