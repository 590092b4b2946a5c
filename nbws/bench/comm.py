"""Delivered messages/s: nbws acked publish vs ipywidgets trait updates over iopub.

The same small messages, sent as fast as the sender can: by the reliable client (its own
process, every message acked; the raw subscriber uses policy ``block`` so none is dropped)
and by a kernel setting a synced ``Dict`` trait of an ipywidgets ``Widget`` subclass once
per message, read off iopub by ``BlockingKernelClient`` and through a Jupyter server's
kernel WebSocket. Rate = messages received / (last receipt - first send).
"""

from __future__ import annotations

from .base import Row, server
from .receipts import Receipts, browser_path_receipts, kernel_receipts, nbws_receipts, widget_code

__all__ = ["comm_updates"]


def delivered_rate(receipts: Receipts) -> float:
    """Messages received per second, from the first send to the last receipt."""
    if not receipts:
        return 0.0
    elapsed = max(r for _, r in receipts) - min(s for s, _ in receipts)
    return len(receipts) / (elapsed / 1e9) if elapsed > 0 else 0.0


def comm_updates(quick: bool) -> list[Row]:
    count = 5_000 if quick else 50_000
    timeout = 120.0
    with server("nbws") as (port, _):
        ours = nbws_receipts(port, 0, count, policy="block")
    code = widget_code(count)
    direct = kernel_receipts(code, timeout)
    browser, notices = browser_path_receipts(code, timeout)
    metric = f"delivered msgs/s, {count:,} unpaced"
    return [
        Row(
            "acked vs widget updates",
            metric,
            delivered_rate(ours),
            "ipywidgets trait set, iopub ZMQ client",
            delivered_rate(direct),
            extra={
                "received": f"{len(ours)} of {count}",
                "baseline_received": f"{len(direct)} of {count}",
            },
        ),
        Row(
            "acked vs widget updates",
            metric,
            delivered_rate(ours),
            "ipywidgets trait set, Jupyter server WebSocket",
            delivered_rate(browser),
            extra={
                "baseline_received": f"{len(browser)} of {count}",
                "iopub_rate_limit_notices": notices,
            },
        ),
    ]
