"""What every nbws handler needs, built once per server from the one config object."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..config import Nbws
from ..transport import ConnectionRegistry
from .endpoints import EchoEndpoint, Endpoint

__all__ = ["NbwsContext", "create_context"]

SETTINGS_KEY = "nbws"


@dataclass
class NbwsContext:
    """Shared state of one nbws server (Jupyter extension or ``nbws serve``)."""

    config: Nbws
    registry: ConnectionRegistry
    endpoints: dict[str, Endpoint] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    async def shutdown(self) -> None:
        """Close every connection with 1001 (going away)."""
        await self.registry.close_all()


def create_context(config: Nbws) -> NbwsContext:
    """Build the registry and endpoints for ``config``."""
    registry = ConnectionRegistry(
        max_connections=config.max_connections,
        heartbeat_interval=config.heartbeat_interval,
        heartbeat_timeout=config.heartbeat_timeout,
        idle_timeout=config.idle_timeout,
    )
    endpoints: dict[str, Endpoint] = {"echo": EchoEndpoint()}
    return NbwsContext(config=config, registry=registry, endpoints=endpoints)
