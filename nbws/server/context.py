"""What every nbws handler needs, built once per server from the one config object,
and the one route table both ``nbws serve`` and the Jupyter extension mount."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..broker import Broker, create_broker
from ..config import Nbws
from ..transport import ConnectionRegistry
from .endpoints import EchoEndpoint, Endpoint
from .hub import StreamHub

__all__ = ["SETTINGS_KEY", "WEBSOCKET_ROUTES", "NbwsContext", "create_context"]

SETTINGS_KEY = "nbws"

WEBSOCKET_ROUTES: dict[str, str] = {"ws": "streams", "echo": "echo", "tap": "tap"}
"""URL segment under ``nbws/`` → endpoint name."""


@dataclass
class NbwsContext:
    """Shared state of one nbws server (Jupyter extension or ``nbws serve``)."""

    config: Nbws
    registry: ConnectionRegistry
    broker: Broker
    hub: StreamHub
    endpoints: dict[str, Endpoint] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    async def start(self) -> None:
        """Connect the broker."""
        await self.broker.start()

    async def shutdown(self) -> None:
        """Close every connection with 1001 (going away), then the broker."""
        await self.registry.close_all()
        await self.broker.close()


def create_context(config: Nbws) -> NbwsContext:
    """Build registry, broker, hub and endpoints for ``config``."""
    from .streams_endpoint import StreamsEndpoint
    from .tap import TapEndpoint

    registry = ConnectionRegistry(
        max_connections=config.max_connections,
        heartbeat_interval=config.heartbeat_interval,
        heartbeat_timeout=config.heartbeat_timeout,
        idle_timeout=config.idle_timeout,
    )
    broker = create_broker(config)
    hub = StreamHub(broker, config)
    endpoints: dict[str, Endpoint] = {
        "echo": EchoEndpoint(),
        "streams": StreamsEndpoint(hub, config),
        "tap": TapEndpoint(registry),
    }
    return NbwsContext(
        config=config, registry=registry, broker=broker, hub=hub, endpoints=endpoints
    )
