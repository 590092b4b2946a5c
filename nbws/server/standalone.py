"""``nbws serve``: the same endpoints in a plain tornado application with its own token."""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import signal
import sys
from typing import Any
from urllib.parse import urlparse

from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application, HTTPError, RequestHandler

from ..config import Nbws
from .api import MetricsMixin
from .context import SETTINGS_KEY, WEBSOCKET_ROUTES, NbwsContext, create_context
from .routes import API_ROUTES
from .websocket import serve_endpoint

__all__ = ["StandaloneServer", "make_app", "raise_open_file_limit"]

log = logging.getLogger("nbws.server")


def raise_open_file_limit() -> int | None:
    """Raise this process's soft limit on open files to its hard limit.

    Every WebSocket is a file descriptor, and the usual soft limit (1024) would refuse
    connections long before memory runs out. Returns the soft limit now in force (None
    where the platform has no such limit).
    """
    if sys.platform == "win32":
        return None
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as exc:
        log.warning("open-file limit stays at %d (could not raise it to %d: %s)", soft, hard, exc)
        return soft
    log.info("raised the open-file limit from %d to %d (one per connection)", soft, hard)
    return hard


def token_from_request(handler: RequestHandler) -> str | None:
    """The token in ``Authorization: token|bearer X`` or ``?token=X``, if any."""
    header = handler.request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() in ("token", "bearer") and value.strip():
        return value.strip()
    return handler.get_query_argument("token", None)


def origin_allowed(origin: str | None, host: str | None, allowed: list[str]) -> bool:
    """Same-origin, no Origin (non-browser clients), or listed in ``allowed``."""
    if origin is None:
        return True
    if "*" in allowed:
        return True
    origin = origin.lower()
    if host is not None and urlparse(origin).netloc == host.lower():
        return True
    return origin in (o.lower().rstrip("/") for o in allowed)


class StandaloneHandler(RequestHandler):
    """Token and Origin checks for ``nbws serve``; 403 before any upgrade."""

    def prepare(self) -> None:
        token: str | None = self.settings.get("nbws_token")
        if token:
            given = token_from_request(self)
            if given is None or not hmac.compare_digest(given.encode(), token.encode()):
                raise HTTPError(403, "missing or wrong token")
        context: NbwsContext = self.settings[SETTINGS_KEY]
        if not origin_allowed(
            self.request.headers.get("Origin"),
            self.request.headers.get("Host"),
            list(context.config.allow_origins),
        ):
            raise HTTPError(403, "origin not allowed")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        reason = self._reason
        exc_info = kwargs.get("exc_info")
        if exc_info and isinstance(exc_info[1], HTTPError) and exc_info[1].log_message:
            reason = exc_info[1].log_message
        self.finish(f"{status_code}: {reason}\n")


class StandaloneWebSocketHandler(StandaloneHandler):
    """An nbws WebSocket endpoint in ``nbws serve``."""

    def initialize(self, endpoint: str) -> None:
        self.endpoint = endpoint

    async def get(self) -> None:
        await serve_endpoint(self, self.endpoint)


class StandaloneMetricsHandler(MetricsMixin, StandaloneHandler):
    """Prometheus metrics of ``nbws serve``."""


def make_app(config: Nbws, *, token: str | None, base_url: str = "/") -> Application:
    """Build the tornado application ``nbws serve`` runs (also used by tests and bench)."""
    context = create_context(config)
    root = base_url.rstrip("/")
    prefix = root + "/nbws"
    handlers: list[Any] = [
        (f"{prefix}/{segment}", StandaloneWebSocketHandler, {"endpoint": endpoint})
        for segment, endpoint in WEBSOCKET_ROUTES.items()
    ]
    for path, mixin in API_ROUTES:
        handler = type(f"Standalone{mixin.__name__}", (mixin, StandaloneHandler), {})
        handlers.append((f"{prefix}/{path}", handler))
    handlers.append((f"{root}/metrics", StandaloneMetricsHandler))
    settings: dict[str, Any] = {SETTINGS_KEY: context, "nbws_token": token}
    return Application(handlers, **settings)


class StandaloneServer:
    """Run ``nbws serve`` until SIGINT/SIGTERM, then close every connection with 1001."""

    def __init__(
        self, config: Nbws, *, host: str = "127.0.0.1", port: int = 8765, token: str | None = None
    ) -> None:
        self.config = config
        self.host = host
        self.port = port
        self.token = token
        self.app = make_app(config, token=token)
        self.context: NbwsContext = self.app.settings[SETTINGS_KEY]
        self.server: HTTPServer | None = None

    def listen(self) -> int:
        """Bind and start accepting; returns the port (useful with port 0)."""
        self.server = HTTPServer(self.app, xheaders=False)
        sockets = bind_sockets(self.port, self.host)
        self.server.add_sockets(sockets)
        self.port = sockets[0].getsockname()[1]
        return self.port

    async def start(self) -> int:
        """Connect the broker, then bind and accept; returns the port."""
        await self.context.start()
        return self.listen()

    async def stop(self) -> None:
        """Stop accepting, then close every connection with 1001 (going away)."""
        if self.server is not None:
            self.server.stop()
        await self.context.shutdown()

    async def run(self) -> None:
        """Serve until interrupted."""
        raise_open_file_limit()
        port = await self.start()
        url = f"ws://{self.host}:{port}/nbws/echo"
        if self.token:
            url += f"?token={self.token}"
        print(f"nbws serving on http://{self.host}:{port}/  (echo: {url})", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        print("nbws: closing connections (1001 going away)", flush=True)
        await self.stop()


def new_token() -> str:
    """A random token for ``nbws serve`` when none is given."""
    return secrets.token_hex(24)
