"""Prometheus metrics (served by jupyter-server's /metrics, or /metrics in `nbws serve`).

Created once per process in the default registry; per-stream children are cached by the
hub so hot paths do one ``inc`` without a label lookup.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "ACK_LATENCY",
    "BYTES_IN",
    "BYTES_OUT",
    "CONNECTIONS",
    "DROPS",
    "MESSAGES_IN",
    "MESSAGES_OUT",
    "QUEUE_DEPTH",
]

MESSAGES_IN = Counter("nbws_messages_in", "Messages published to a stream", ["stream"])
BYTES_IN = Counter("nbws_bytes_in", "Payload bytes published to a stream", ["stream"])
MESSAGES_OUT = Counter("nbws_messages_out", "Messages delivered to subscribers", ["stream"])
BYTES_OUT = Counter("nbws_bytes_out", "Frame bytes written to subscribers", ["stream"])
DROPS = Counter("nbws_drops", "Messages a subscriber did not get (policy)", ["stream", "reason"])
CONNECTIONS = Gauge("nbws_connections", "Open nbws WebSocket connections", ["endpoint"])
QUEUE_DEPTH = Gauge("nbws_queue_depth", "Messages waiting in subscriber buffers", ["stream"])
ACK_LATENCY = Histogram(
    "nbws_ack_latency_seconds",
    "Time from receiving a publish to sending its ack",
    buckets=(0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0),
)
