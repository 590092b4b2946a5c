"""Handlers for the Jupyter extension: Jupyter's own auth, origin checks and XSRF."""

from __future__ import annotations

from typing import Any

from jupyter_server.auth.decorator import ws_authenticated
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from tornado import web

from .context import WEBSOCKET_ROUTES
from .routes import API_ROUTES
from .websocket import serve_endpoint

__all__ = ["jupyter_handlers"]

AUTH_RESOURCE = "nbws"


class NbwsWebSocketHandler(ExtensionHandlerMixin, JupyterHandler):
    """An nbws WebSocket endpoint inside Jupyter: 403 before the upgrade when the request
    is not authenticated, not authorised, or comes from a foreign Origin."""

    def initialize(self, name: str, endpoint: str) -> None:
        super().initialize(name)
        self.endpoint = endpoint

    async def prepare(self, *args: Any, **kwargs: Any) -> None:
        # A failed login is a 403 here, never a redirect to the login page.
        await super().prepare(_redirect_to_login=False)

    @ws_authenticated
    async def get(self) -> None:
        if not self.check_origin():
            raise web.HTTPError(403, "origin not allowed")
        if not self.authorizer.is_authorized(self, self.current_user, "write", AUTH_RESOURCE):
            raise web.HTTPError(403, "not authorised for nbws")
        await serve_endpoint(self, self.endpoint)


class NbwsAPIHandler(ExtensionHandlerMixin, APIHandler):
    """Base of the REST handlers: Jupyter's auth (and XSRF for cookie-authenticated
    writes), plus an authorisation check on resource ``nbws``."""

    async def prepare(self) -> None:  # type: ignore[override]
        await super().prepare()
        if self.current_user is None:
            raise web.HTTPError(403)
        action = "read" if self.request.method in ("GET", "HEAD") else "write"
        if not self.authorizer.is_authorized(self, self.current_user, action, AUTH_RESOURCE):
            raise web.HTTPError(403, "not authorised for nbws")


def jupyter_handlers(name: str) -> list[tuple[str, type, dict[str, Any]]]:
    """Routes (relative to ``base_url``) for the extension named ``name``."""
    routes: list[tuple[str, type, dict[str, Any]]] = [
        (f"/nbws/{segment}", NbwsWebSocketHandler, {"name": name, "endpoint": endpoint})
        for segment, endpoint in WEBSOCKET_ROUTES.items()
    ]
    for path, mixin in API_ROUTES:
        handler = type(f"Jupyter{mixin.__name__}", (mixin, NbwsAPIHandler), {})
        routes.append((f"/nbws/{path}", handler, {"name": name}))
    return routes
