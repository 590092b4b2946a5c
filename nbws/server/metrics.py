"""Prometheus metrics (served by jupyter-server's /metrics, or /metrics in `nbws serve`).

Hot paths only bump plain integers on each stream (``stats.StreamStats``); one collector,
registered once per process, turns them into counters when /metrics is scraped, so
publishing and fan-out pay nothing for metrics.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from .hub import StreamHub

__all__ = ["ACK_LATENCY", "CONNECTIONS", "track_hub"]

CONNECTIONS = Gauge("nbws_connections", "Open nbws WebSocket connections", ["endpoint"])
ACK_LATENCY = Histogram(
    "nbws_ack_latency_seconds",
    "Time from receiving a publish to queueing its ack",
    buckets=(0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0),
)

_hubs: weakref.WeakSet[StreamHub] = weakref.WeakSet()


def track_hub(hub: StreamHub) -> None:
    """Include ``hub``'s streams in /metrics for as long as it lives."""
    _hubs.add(hub)


class _StreamCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        families = {
            "messages_in": CounterMetricFamily(
                "nbws_messages_in", "Messages published to a stream", labels=["stream"]
            ),
            "bytes_in": CounterMetricFamily(
                "nbws_bytes_in", "Payload bytes published to a stream", labels=["stream"]
            ),
            "messages_out": CounterMetricFamily(
                "nbws_messages_out", "Messages delivered to subscribers", labels=["stream"]
            ),
            "bytes_out": CounterMetricFamily(
                "nbws_bytes_out", "Frame bytes written to subscribers", labels=["stream"]
            ),
        }
        drops = CounterMetricFamily(
            "nbws_drops", "Messages subscribers did not get, by reason", labels=["stream", "reason"]
        )
        depth = GaugeMetricFamily(
            "nbws_queue_depth", "Messages waiting in subscriber buffers", labels=["stream"]
        )
        for hub in list(_hubs):
            for name, live in hub.streams.items():
                stats = live.stats
                for attr, family in families.items():
                    family.add_metric([name], getattr(stats, attr))
                for reason, count in stats.drops_by_reason.items():
                    drops.add_metric([name, reason], count)
                depth.add_metric([name], sum(s.buffer.messages for s in live.subscribers))
        yield from families.values()
        yield drops
        yield depth


REGISTRY.register(_StreamCollector())
