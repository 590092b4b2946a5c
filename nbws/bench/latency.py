"""Latency at a fixed rate (1000 msg/s): publish → subscriber receipt, p50 and p99.

nbws: the reliable client in its own process publishes to ``nbws serve``; a raw WebSocket
subscriber receives. Baselines: a kernel sending one ipywidgets-style comm update per
message at the same rate, read off iopub by ``BlockingKernelClient`` (ZMQ, no server in
between) and through a Jupyter server's kernel WebSocket (the browser's path). See
``receipts.py`` for how each side is driven.
"""

from __future__ import annotations

from .base import Row, percentile, server
from .receipts import Receipts, browser_path_receipts, comm_code, kernel_receipts, nbws_receipts

__all__ = ["latency"]

RATE = 1000
TARGET = "p99 < 30 ms"


def _ms(receipts: Receipts) -> list[float]:
    return [(received - sent) / 1e6 for sent, received in receipts]


def latency(quick: bool) -> list[Row]:
    seconds = 2 if quick else 10
    count = RATE * seconds
    with server("nbws") as (port, _):
        ours = _ms(nbws_receipts(port, RATE, count))
    code = comm_code(RATE, count)
    direct = _ms(kernel_receipts(code, seconds + 60))
    receipts, notices = browser_path_receipts(code, seconds + 60)
    browser = _ms(receipts)
    baselines: tuple[tuple[str, list[float], dict[str, object]], ...] = (
        (
            "kernel iopub comm_msg, ZMQ client",
            direct,
            {
                "received": f"{len(ours)} of {count}",
                "baseline_received": f"{len(direct)} of {count}",
            },
        ),
        (
            "kernel iopub comm_msg, Jupyter server WebSocket",
            browser,
            {
                "baseline_received": f"{len(browser)} of {count}",
                "iopub_rate_limit_notices": notices,
            },
        ),
    )
    rows = []
    for name, theirs, extra in baselines:
        for q in (50, 99):
            rows.append(
                Row(
                    "latency",
                    f"p{q} ms, {RATE} msg/s for {seconds} s",
                    percentile(ours, q),
                    name,
                    percentile(theirs, q),
                    higher_is_better=False,
                    target=TARGET if q == 99 else "",
                    extra=extra if q == 99 else {},
                )
            )
    return rows
