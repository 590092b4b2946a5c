"""I/O edges: drive sans-I/O sessions over tornado streams."""

from __future__ import annotations

from .connection import Connection, IncomingMessage
from .registry import ConnectionRegistry
from .upgrade import accept_websocket

__all__ = ["Connection", "ConnectionRegistry", "IncomingMessage", "accept_websocket"]
