"""nbws: real-time WebSocket streams for Jupyter."""

from __future__ import annotations

from typing import Any

from ._version import __version__

__all__ = ["__version__", "endpoint", "stream"]


def stream(name: str, url: str | None = None, token: str | None = None, **options: Any) -> Any:
    """Open a reliable handle on stream ``name`` (see ``nbws.client.Stream``; imported
    on first use so ``import nbws`` stays cheap)."""
    from .client import stream as open_stream

    return open_stream(name, url, token, **options)


def endpoint(url: str | None = None, token: str | None = None) -> Any:
    """The endpoint ``nbws.stream(name)`` connects to: its url, its ``kind`` (``explicit``,
    ``jupyter`` or ``embedded``) and ``token`` (never in its repr; ``connect_snippet()``
    shows what another process needs). See ``nbws.client.discovery``."""
    from .client.discovery import endpoint as find

    return find(url, token)


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from .server.app import NbwsApp

    return [{"module": "nbws", "app": NbwsApp}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """Where the prebuilt JupyterLab extension is (``jupyter labextension develop``)."""
    return [{"src": "labextension", "dest": "nbws"}]
