"""The browser bench's paced publisher: its own process, the nbws client, batched publishing.

``python -m nbws.bench.browser_publisher URL STREAM RATE SECONDS OUT`` publishes ``RATE``
messages per second for ``SECONDS`` to the Jupyter server at ``URL`` (token from the
``NBWS_BENCH_TOKEN`` variable, never on the command line), one ``publish_many`` batch per
10 ms tick, then flushes (every message acked) and writes to ``OUT`` what the bench needs to
read the page's records: the offset of message 0 and the schedule ``(epoch ms, published
so far)`` after each batch. Each message is ``{"i": index, "t": "<epoch ms>", "v": float}``;
``t`` is a string so the table shows it unformatted, for the DOM fallback's latency.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from typing import Any

__all__ = ["TICK", "paced_publish", "payloads"]

TICK = 0.01
"""Seconds between batches."""

TOKEN_VARIABLE = "NBWS_BENCH_TOKEN"


def payloads(first: int, count: int, now_ms: float) -> list[dict[str, Any]]:
    """Messages ``first`` .. ``first + count - 1``, all stamped ``now_ms``."""
    stamp = f"{now_ms:.1f}"
    return [
        {"i": i, "t": stamp, "v": round(math.sin(i / 500), 4)} for i in range(first, first + count)
    ]


def paced_publish(
    url: str, token: str | None, name: str, rate: int, seconds: float
) -> dict[str, Any]:
    """Publish at ``rate`` msg/s for ``seconds``; returns the report written to OUT."""
    import nbws

    stream = nbws.stream(name, url=url, token=token)
    try:
        warmup = stream.publish({"warmup": True})
        first_offset = int(warmup.result(60)) + 1
        schedule: list[tuple[float, int]] = []
        published, ticks = 0, max(1, round(seconds / TICK))
        start = time.perf_counter()
        for k in range(1, ticks + 1):
            due = int(rate * k * TICK) - published
            if due > 0:
                stream.publish_many(payloads(published, due, time.time() * 1000))
                published += due
            schedule.append((time.time() * 1000, published))
            delay = start + k * TICK - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        elapsed = time.perf_counter() - start
        stream.flush(timeout=300)
        return {
            "first_offset": first_offset,
            "published": published,
            "achieved_rate": published / elapsed,
            "schedule": schedule,
        }
    finally:
        stream.close()


if __name__ == "__main__":
    url, name, rate, seconds, out = sys.argv[1:6]
    report = paced_publish(url, os.environ.get(TOKEN_VARIABLE), name, int(rate), float(seconds))
    with open(out, "w") as fh:
        json.dump(report, fh)
