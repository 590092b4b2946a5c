"""The REST routes under ``nbws/api`` (WebSocket routes are ``context.WEBSOCKET_ROUTES``)."""

from __future__ import annotations

from .api import HealthMixin, MessagesMixin, StreamMixin, StreamsMixin

__all__ = ["API_ROUTES"]

API_ROUTES: list[tuple[str, type]] = [
    ("api/streams", StreamsMixin),
    ("api/streams/([^/]+)/messages", MessagesMixin),
    ("api/streams/([^/]+)", StreamMixin),
    ("api/health", HealthMixin),
]
"""Path under ``nbws/`` → handler mixin. Stream names with ``/`` are URL-encoded (%2F)."""
