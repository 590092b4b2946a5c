"""nbws: real-time WebSocket streams for Jupyter."""

from __future__ import annotations

from typing import Any

from ._version import __version__

__all__ = ["__version__"]


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from .server.app import NbwsApp

    return [{"module": "nbws", "app": NbwsApp}]
