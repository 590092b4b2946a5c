"""Stream brokers: where history lives and who assigns offsets."""

from __future__ import annotations

from ..config import Nbws
from .base import (
    AppendResult,
    BatchOutcome,
    Broker,
    BrokerUnavailable,
    HistoryLimits,
    PayloadTooLarge,
    ReadResult,
    StoredMessage,
    StreamInfo,
    UnknownStream,
)
from .memory import MemoryBroker

__all__ = [
    "AppendResult",
    "BatchOutcome",
    "Broker",
    "BrokerUnavailable",
    "HistoryLimits",
    "MemoryBroker",
    "PayloadTooLarge",
    "ReadResult",
    "StoredMessage",
    "StreamInfo",
    "UnknownStream",
    "create_broker",
    "default_limits",
]


def default_limits(config: Nbws) -> HistoryLimits:
    """History limits for streams created without their own."""
    return HistoryLimits.from_config(config)


def create_broker(config: Nbws) -> Broker:
    """The broker ``config.backend`` names."""
    if config.backend == "memory":
        return MemoryBroker(default_limits(config), config.dedupe_window)
    if config.backend == "redis":
        from .redis import RedisBroker  # optional dependency

        broker: Broker = RedisBroker(
            config.redis_url,
            default_limits(config),
            config.dedupe_window,
            prefix=config.redis_prefix,
            command_timeout=config.redis_command_timeout,
        )
        return broker
    raise ValueError(f"unknown nbws backend {config.backend!r}: use 'memory' or 'redis'")
