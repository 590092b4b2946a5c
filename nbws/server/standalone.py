"""``nbws serve``: the same endpoints in a plain tornado application with its own token.

Before any token or Origin check, the ``Host`` header must name this server (DNS
rebinding protection, as Jupyter does); ``/`` is a small landing page.
"""

from __future__ import annotations

import asyncio
import errno
import hmac
import html
import ipaddress
import logging
import re
import secrets
import signal
import ssl
import sys
from typing import Any
from urllib.parse import urlparse

from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application, HTTPError, RequestHandler

from .._redact import redact_url
from .._version import __version__
from ..config import Nbws
from .api import MetricsMixin
from .context import SETTINGS_KEY, WEBSOCKET_ROUTES, NbwsContext, create_context
from .routes import API_ROUTES
from .websocket import serve_endpoint

__all__ = [
    "LOCAL_HOSTNAMES",
    "CannotListen",
    "CannotServeTLS",
    "StandaloneServer",
    "host_allowed",
    "make_app",
    "new_token",
    "raise_open_file_limit",
    "tls_context",
]

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


class CannotListen(Exception):
    """The server's address cannot be bound; the message says why in one line."""

    def __init__(self, exc: OSError, host: str, port: int) -> None:
        if exc.errno == errno.EADDRINUSE:
            message = f"port {port} is in use on {host}; choose another --port"
        elif exc.errno == errno.EACCES:
            message = f"no permission to listen on port {port} of {host}; choose another --port"
        elif exc.errno == errno.EADDRNOTAVAIL:
            message = f"cannot listen on {host}: no such local address; choose another --host"
        else:
            message = f"cannot listen on {host}:{port}: {exc.strerror or exc}"
        super().__init__(message)
        self.errno = exc.errno


def _bind(port: int, host: str) -> list[Any]:
    try:
        return bind_sockets(port, host)
    except OSError as exc:
        raise CannotListen(exc, host, port) from exc


def token_from_request(handler: RequestHandler) -> str | None:
    """The token in ``Authorization: token|bearer X`` or ``?token=X``, if any."""
    header = handler.request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() in ("token", "bearer") and value.strip():
        return value.strip()
    return handler.get_query_argument("token", None)


def origin_allowed(origin: str | None, host: str | None, allowed: list[str]) -> bool:
    """Same-origin, no Origin (non-browser clients), or listed in ``allowed``.

    An entry ``scheme://*`` allows every origin of that scheme (VS Code's webviews have
    a random ``vscode-webview://<id>`` origin each).
    """
    if origin is None:
        return True
    if "*" in allowed:
        return True
    origin = origin.lower()
    if host is not None and urlparse(origin).netloc == host.lower():
        return True
    entries = [o.lower().rstrip("/") for o in allowed]
    schemes = {o[: -len("*")] for o in entries if o.endswith("://*")}
    if any(origin.startswith(scheme) for scheme in schemes):
        return True
    return origin in entries


LOCAL_HOSTNAMES = ("localhost",)
"""Names always accepted in ``Host`` (IP addresses are accepted too, see host_allowed)."""

_HOST_PORT = re.compile(r"^(.*?)(:\d+)?$")


def host_allowed(host_header: str, bound_host: str, allowed: list[str]) -> bool:
    """Whether a request's ``Host`` names this server.

    A DNS rebinding page reaches a local server under the attacker's own name, so names
    must be ours: ``localhost``, the ``--host`` we are bound to, or one in ``allowed``
    (``'*'`` allows any). An IP address is always fine: a browser sends one only when the
    page itself was loaded from that address, which is no rebinding. So is no ``Host`` at
    all (HTTP/1.0 tools): browsers always send one.
    """
    if "*" in allowed or not host_header.strip():
        return True
    match = _HOST_PORT.match(host_header.strip())
    name = (match.group(1) if match else host_header).lower().rstrip(".")
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    try:
        ipaddress.ip_address(name)
    except ValueError:
        pass
    else:
        return True
    names = {*LOCAL_HOSTNAMES, bound_host.lower().rstrip(".")}
    names.update(a.lower().rstrip(".") for a in allowed)
    return name in names


class StandaloneHandler(RequestHandler):
    """Host, token and Origin checks for ``nbws serve``; 403 before any upgrade."""

    def check_host(self) -> None:
        """403 unless the ``Host`` header names this server."""
        context: NbwsContext = self.settings[SETTINGS_KEY]
        host = self.request.headers.get("Host", "")
        if not host_allowed(host, self.settings["nbws_host"], list(context.config.allow_hosts)):
            log.info("refused a request for Host %r (not one of this server's names)", host)
            raise HTTPError(
                403,
                "host not allowed: this server answers to localhost, its IP addresses and "
                "the names in c.Nbws.allow_hosts (--allow-host)",
            )

    def token_ok(self) -> bool:
        """Whether the request carries the server's token (always, when it has none)."""
        token: str | None = self.settings.get("nbws_token")
        if not token:
            return True
        given = token_from_request(self)
        return given is not None and hmac.compare_digest(given.encode(), token.encode())

    def prepare(self) -> None:
        self.check_host()
        if not self.token_ok():
            raise HTTPError(403, "missing or wrong token")
        context: NbwsContext = self.settings[SETTINGS_KEY]
        if not origin_allowed(
            self.request.headers.get("Origin"),
            self.request.headers.get("Host"),
            list(context.config.allow_origins),
        ):
            raise HTTPError(403, "origin not allowed")

    def _request_summary(self) -> str:
        # tornado's access and error log lines quote the URL: never with a ?token=.
        request = self.request
        return f"{request.method} {redact_url(request.uri or '')} ({request.remote_ip})"

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


class LandingHandler(StandaloneHandler):
    """``/``: what this server is, its endpoints, its streams and how to connect.

    Open without the token (the banner prints this URL); stream names are listed only
    to a request that carries it. The token itself is never written into the page.
    """

    def prepare(self) -> None:
        self.check_host()

    async def get(self) -> None:
        context: NbwsContext = self.settings[SETTINGS_KEY]
        host = self.request.host
        root = self.settings.get("nbws_root", "")
        streams: list[tuple[str, int, int]] | None = None
        problem = ""
        if self.token_ok():
            try:
                infos = await context.hub.broker.streams()
            except Exception as exc:  # broker down: say so instead of failing the page
                problem = f"streams are unavailable: {exc}"
            else:
                streams = []
                for info in sorted(infos, key=lambda i: i.name):
                    live = context.hub.streams.get(info.name)
                    streams.append((info.name, info.next, len(live.subscribers) if live else 0))
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(
            landing_page(
                host=host,
                root=root,
                streams=streams,
                problem=problem,
                needs_token=bool(self.settings.get("nbws_token")),
                backend=context.config.backend,
            )
        )


def landing_page(
    *,
    host: str,
    root: str,
    streams: list[tuple[str, int, int]] | None,
    problem: str,
    needs_token: bool,
    backend: str,
) -> str:
    """The landing page's HTML; every value from outside is escaped."""
    e = html.escape
    base = f"{host}{root}"
    rows = "".join(
        f"<tr><td><code>{e(path)}</code></td><td>{e(what)}</td></tr>"
        for path, what in (
            (f"ws://{base}/nbws/ws", "streams: publish and subscribe (subprotocol nbws.v1)"),
            (f"ws://{base}/nbws/echo", "echo playground (subprotocol nbws.echo)"),
            (f"ws://{base}/nbws/tap", "frame tap of labelled connections"),
            (f"http://{base}/nbws/api/streams", "REST: the streams (one: /nbws/api/streams/NAME)"),
            (f"http://{base}/nbws/api/health", "REST: broker health"),
            (f"http://{base}/metrics", "Prometheus metrics"),
        )
    )
    if streams is None:
        listing = (
            f"<p>{e(problem)}</p>"
            if problem
            else "<p>Stream names are listed when this page is opened with the server's "
            "token (<code>?token=...</code>, as printed at start).</p>"
        )
    elif not streams:
        listing = "<p>No streams yet: the first publish or subscribe creates one.</p>"
    else:
        listing = (
            "<table><tr><th>stream</th><th>next offset</th><th>subscribers here</th></tr>"
            + "".join(
                f"<tr><td><code>{e(name)}</code></td><td>{nxt}</td><td>{subs}</td></tr>"
                for name, nxt, subs in streams
            )
            + "</table>"
        )
    token_arg = ', token="..."' if needs_token else ""
    auth = (
        "Clients send the token as <code>Authorization: token ...</code> or "
        "<code>?token=...</code>."
        if needs_token
        else "This server was started with <code>--no-token</code>: anyone who can reach it "
        "may use it."
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>nbws serve</title>
<style>body{{font-family:sans-serif;max-width:50em;margin:2em auto;padding:0 1em}}
td,th{{text-align:left;padding:.2em .8em .2em 0}}</style></head>
<body>
<h1>nbws {e(__version__)}</h1>
<p>This is <code>nbws serve</code>: real-time WebSocket streams (named streams with history,
acknowledged publishes and backpressure) outside Jupyter. Broker: <code>{e(backend)}</code>.</p>
<h2>Endpoints</h2>
<table>{rows}</table>
<h2>Streams</h2>
{listing}
<h2>Connect a client</h2>
<pre>import nbws
s = nbws.stream("my-stream", url="http://{e(base)}/"{e(token_arg)})
s.publish({{"x": 1}})</pre>
<p>or set <code>NBWS_URL=http://{e(base)}/</code> (and <code>NBWS_TOKEN</code>). {auth}</p>
</body></html>
"""


def make_app(
    config: Nbws, *, token: str | None, base_url: str = "/", host: str = "127.0.0.1"
) -> Application:
    """Build the tornado application ``nbws serve`` runs (also used by tests and bench).

    ``host`` is the interface it is bound to: a name given there is accepted in ``Host``.
    """
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
    handlers.append((f"{root}/", LandingHandler))
    settings: dict[str, Any] = {
        SETTINGS_KEY: context,
        "nbws_token": token,
        "nbws_host": host,
        "nbws_root": root,
    }
    return Application(handlers, **settings)


class StandaloneServer:
    """Run ``nbws serve`` until SIGINT/SIGTERM, then close every connection with 1001."""

    def __init__(
        self,
        config: Nbws,
        *,
        host: str = "127.0.0.1",
        port: int = 8765,
        token: str | None = None,
        token_generated: bool = False,
        base_url: str = "/",
        certfile: str | None = None,
        keyfile: str | None = None,
        trust_proxy: bool = False,
    ) -> None:
        """Args:
        token: what clients must send (None: no token).
        token_generated: the token was made up at start, so the banner shows it once
            (a token the user chose is never printed).
        base_url: path prefix of every route.
        certfile, keyfile: serve TLS (https://, wss://) with this PEM pair.
        trust_proxy: honour X-Forwarded-For/-Proto (tornado's ``xheaders``); only
            behind a reverse proxy that sets them.
        """
        self.config = config
        self.host = host
        self.port = port
        self.token = token
        self.token_generated = token_generated
        self.base_url = "/" + base_url.strip("/") + "/" if base_url.strip("/") else "/"
        self.ssl_context = tls_context(certfile, keyfile) if certfile else None
        self.trust_proxy = trust_proxy
        self.app = make_app(config, token=token, host=host, base_url=self.base_url)
        self.context: NbwsContext = self.app.settings[SETTINGS_KEY]
        self.server: HTTPServer | None = None

    def _http_server(self) -> HTTPServer:
        return HTTPServer(self.app, xheaders=self.trust_proxy, ssl_options=self.ssl_context)

    def listen(self) -> int:
        """Bind and start accepting; returns the port (useful with port 0).

        Raises:
            CannotListen: the address cannot be bound (in use, not local, no permission).
        """
        sockets = _bind(self.port, self.host)
        self.server = self._http_server()
        self.server.add_sockets(sockets)
        self.port = sockets[0].getsockname()[1]
        return self.port

    async def start(self) -> int:
        """Bind (so a busy port fails before anything starts), connect the broker, then
        accept; returns the port.

        Raises:
            CannotListen: the address cannot be bound.
        """
        sockets = _bind(self.port, self.host)
        try:
            await self.context.start()
        except BaseException:
            for sock in sockets:
                sock.close()
            raise
        self.server = self._http_server()
        self.server.add_sockets(sockets)
        self.port = sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        """Stop accepting, then close every connection with 1001 (going away)."""
        if self.server is not None:
            self.server.stop()
        await self.context.shutdown()

    async def run(self) -> None:
        """Serve until interrupted."""
        raise_open_file_limit()
        port = await self.start()
        secure = "s" if self.ssl_context is not None else ""
        root = f"{self.host}:{port}{self.base_url}"
        url = f"ws{secure}://{root}nbws/echo"
        note = ""
        if self.token and self.token_generated:
            url += f"?token={self.token}"  # made up just now: the only way to learn it
        elif self.token:
            note = ", with your --token"
        print(f"nbws serving on http{secure}://{root}  (echo: {url}){note}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        print("nbws: closing connections (1001 going away)", flush=True)
        await self.stop()


def tls_context(certfile: str, keyfile: str | None) -> ssl.SSLContext:
    """A server TLS context for a PEM certificate and key.

    Raises:
        CannotServeTLS: a file is missing or not a matching PEM pair (one-line reason).
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise CannotServeTLS(f"cannot use --certfile {certfile!r}: {exc}") from None
    return context


class CannotServeTLS(Exception):
    """The TLS certificate or key cannot be loaded; the message says why in one line."""


def new_token() -> str:
    """A random token for ``nbws serve`` when none is given."""
    return secrets.token_hex(24)
