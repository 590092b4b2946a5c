"""Finding the nbws server a client should talk to, without the user typing a URL.

In order:

1. an explicit ``url`` argument, else ``NBWS_URL`` (``http(s)://`` or ``ws(s)://``;
   ``nbws/ws`` is appended unless the path already ends with it), with ``token`` or
   ``NBWS_TOKEN``;
2. the Jupyter server this kernel runs under, if it has the nbws extension: a kernel
   started by jupyter-server has ``JPY_PARENT_PID`` set to the server's pid, and the
   server writes its url, base_url and token to ``jpserver-<pid>.json`` in Jupyter's
   runtime directory (a server without a token there, e.g. a JupyterHub single-user
   server, is sent ``NBWS_TOKEN`` or the kernel's ``JUPYTERHUB_API_TOKEN``); it has the
   extension unless ``nbws/api/health`` is a 404 (or the server does not answer);
3. the embedded server (:mod:`nbws.server.embedded`): ``nbws serve`` in a thread of this
   process, on 127.0.0.1 with a random port and token, started on first use with a
   one-line notice on stderr (never the token). This covers VS Code and ``jupyter
   console`` kernels, plain scripts and ``nbconvert --execute``.

:func:`endpoint` says which one is in use; its ``token`` never appears in its ``repr``.
"""

from __future__ import annotations

import json
import os
import ssl
import sys
import threading
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit, urlunsplit

from .._redact import redact_url
from ..server.embedded import EmbeddedServerError, embedded_server
from .errors import ServerNotFound

__all__ = ["Endpoint", "Kind", "discover", "endpoint", "normalize_url", "probe_jupyter"]

WS_PATH = "nbws/ws"
_ANY_HOST = ("", "0.0.0.0", "::", "[::]", "*")
PROBE_TIMEOUT = 10.0
"""Seconds to wait for a Jupyter server's ``nbws/api/health`` (loaded machines are slow)."""

Kind = Literal["explicit", "jupyter", "embedded"]


@dataclass(frozen=True)
class Endpoint:
    """Where to connect: the ``nbws/ws`` WebSocket URL, the token, and how it was found.

    ``kind`` is ``explicit`` (``url=`` or ``NBWS_URL``), ``jupyter`` (the kernel's Jupyter
    server) or ``embedded`` (a server in this process). ``token`` is an attribute only:
    ``repr``/``str`` never show it (a notebook saves what it displays);
    :meth:`connect_snippet` writes it out when asked to.
    """

    url: str
    token: str | None = field(repr=False)
    source: str
    kind: Kind = "explicit"

    def __repr__(self) -> str:
        token = "with token" if self.token else "no token"
        return f"<nbws.Endpoint {self.kind} {redact_url(self.url)} ({token}; {self.source})>"

    __str__ = __repr__

    def http_url(self, path: str = "") -> str:
        """The server's HTTP URL for ``path`` under its base_url (e.g. ``nbws/api/health``)."""
        parts = urlsplit(self.url)
        scheme = "https" if parts.scheme == "wss" else "http"
        base = parts.path[: -len(WS_PATH)] if parts.path.endswith(WS_PATH) else parts.path
        return urlunsplit((scheme, parts.netloc, base + path, "", ""))

    def connect_snippet(self, name: str = "my-stream") -> str:
        """What another process needs to use this endpoint: code and environment,
        token included (show it only where the token may be seen)."""
        url = self.http_url()
        lines = [
            "import nbws",
            f"s = nbws.stream({name!r}, url={url!r}, token={self.token!r})",
            "# or in the environment:",
            f"#   NBWS_URL={url}",
        ]
        if self.token:
            lines.append(f"#   NBWS_TOKEN={self.token}")
        return "\n".join(lines)


def normalize_url(url: str) -> str:
    """Turn a server or endpoint URL into the ``ws(s)://.../nbws/ws`` URL.

    Raises:
        ValueError: not an http(s)/ws(s) URL.
    """
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme.lower())
    if scheme is None or not parts.netloc:
        raise ValueError(f"not an http(s):// or ws(s):// URL: {url!r}")
    path = parts.path or "/"
    if not path.rstrip("/").endswith(WS_PATH):
        path = path if path.endswith("/") else path + "/"
        path += WS_PATH
    else:
        path = path.rstrip("/")
    return urlunsplit((scheme, parts.netloc, path, parts.query, ""))


def _runtime_dir() -> Path:
    from jupyter_core.paths import jupyter_runtime_dir

    return Path(jupyter_runtime_dir())


@dataclass(frozen=True)
class _JupyterServer:
    endpoint: Endpoint
    origins: tuple[str, ...]


def _from_runtime_file(path: Path) -> _JupyterServer:
    info = json.loads(path.read_text(encoding="utf-8"))
    if info.get("sock"):
        raise ServerNotFound(
            f"{path} describes a server on the Unix socket {info['sock']!r}, which the nbws "
            "client does not support; set NBWS_URL to a TCP address instead"
        )
    host = str(info.get("hostname") or "")
    if host in _ANY_HOST:
        host = "127.0.0.1"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    scheme = "https" if info.get("secure") else "http"
    port = int(info["port"])
    base_url = str(info.get("base_url") or "/")
    url = normalize_url(f"{scheme}://{host}:{port}{base_url}")
    token = info.get("token") or None
    origins = [f"{scheme}://{name}:{port}" for name in (host, "127.0.0.1", "localhost")]
    page = urlsplit(str(info.get("url") or ""))
    if page.scheme and page.netloc:
        origins.insert(0, f"{page.scheme}://{page.netloc}")
    endpoint = Endpoint(url, token, f"Jupyter server runtime file {path}", "jupyter")
    return _JupyterServer(endpoint, tuple(dict.fromkeys(origins)))


_probed: dict[tuple[str, str | None], str | None] = {}
_probe_lock = threading.Lock()


def probe_jupyter(found: Endpoint, timeout: float = PROBE_TIMEOUT) -> str | None:
    """Ask a Jupyter server's ``nbws/api/health`` whether it has the extension.

    Returns:
        None when it has (any answer but 404: a 403 or 503 is nbws refusing, and the
        client's own error will say why), else why not, in a few words. Remembered per
        server for the life of the process, so every stream of it goes to one place.
    """
    key = (found.url, found.token)
    with _probe_lock:
        if key in _probed:
            return _probed[key]
    headers = {"Authorization": f"token {found.token}"} if found.token else {}
    request = urllib.request.Request(found.http_url("nbws/api/health"), headers=headers)
    context = ssl.create_default_context()
    context.check_hostname = False  # the runtime file names the server; a local probe
    context.verify_mode = ssl.CERT_NONE
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
    )
    problem: str | None = None
    try:
        with opener.open(request, timeout=timeout):
            pass
    except HTTPError as exc:
        if exc.code == 404:
            problem = "it has no nbws extension (nbws/api/health is a 404)"
    except (URLError, OSError) as exc:
        reason = exc.reason if isinstance(exc, URLError) else exc
        problem = f"it does not answer ({reason})"
    with _probe_lock:
        _probed[key] = problem
    return problem


_noticed: set[int] = set()


def _notice(url: str) -> None:
    """Say once per process that streams go to the embedded server (never the token)."""
    if os.getpid() in _noticed:
        return
    _noticed.add(os.getpid())
    print(
        "nbws: no Jupyter server with nbws found; streaming through a server in this process "
        f"at {url} (nbws.endpoint() shows how to connect)",
        file=sys.stderr,
        flush=True,
    )


def discover(
    url: str | None = None,
    token: str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    runtime_dir: str | os.PathLike[str] | None = None,
    embedded: bool = True,
    probe: Callable[[Endpoint], str | None] | None = None,
) -> Endpoint:
    """Find the server (see the module docstring for the order).

    Args:
        url: an explicit server or endpoint URL.
        token: an explicit token (wins over any discovered one).
        env: environment to read (default ``os.environ``).
        runtime_dir: Jupyter's runtime directory (default ``jupyter_runtime_dir()``).
        embedded: fall back to the embedded server (False: raise instead).
        probe: asks a Jupyter server whether it has nbws (default :func:`probe_jupyter`).

    Raises:
        ServerNotFound: nothing applies (or the embedded server cannot start); the
            message lists every place looked at.
        ValueError: ``url`` (or ``NBWS_URL``) is not an http(s)/ws(s) URL.
    """
    env = os.environ if env is None else env
    env_token = env.get("NBWS_TOKEN") or None
    if url is not None:
        return Endpoint(normalize_url(url), token or env_token, "the url argument")
    env_url = env.get("NBWS_URL", "").strip()
    if env_url:
        return Endpoint(normalize_url(env_url), token or env_token, "NBWS_URL")
    tried: list[str] = ["no url argument", "NBWS_URL is not set"]
    origins: tuple[str, ...] = ()
    parent = env.get("JPY_PARENT_PID", "").strip()
    if parent:
        folder = Path(runtime_dir) if runtime_dir is not None else _runtime_dir()
        path = folder / f"jpserver-{parent}.json"
        if path.is_file():
            try:
                server = _from_runtime_file(path)
            except (OSError, ValueError, KeyError) as exc:
                tried.append(f"JPY_PARENT_PID={parent}, but {path} is unreadable ({exc})")
            else:
                hub_token = env.get("JUPYTERHUB_API_TOKEN") or None
                chosen = token or server.endpoint.token or env_token or hub_token
                found = Endpoint(server.endpoint.url, chosen, server.endpoint.source, "jupyter")
                problem = (probe or probe_jupyter)(found)
                if problem is None:
                    return found
                tried.append(f"the Jupyter server of {path}: {problem}")
                origins = server.origins
        else:
            tried.append(f"JPY_PARENT_PID={parent}, but there is no {path} (no Jupyter server)")
    else:
        tried.append("JPY_PARENT_PID is not set (not a kernel started by a Jupyter server)")
    if not embedded:
        raise ServerNotFound(
            "cannot find an nbws server: "
            + "; ".join(tried)
            + ". Pass url=... (e.g. url='http://127.0.0.1:8765/' for `nbws serve`) or set "
            "NBWS_URL."
        )
    try:
        local, started = embedded_server(origins=origins)
    except EmbeddedServerError as exc:
        raise ServerNotFound(
            f"cannot find an nbws server: {'; '.join(tried)}; and {exc}. Pass url=... or set "
            "NBWS_URL."
        ) from None
    if started:
        _notice(local.url)
    source = "the embedded server in this process (" + "; ".join(tried) + ")"
    return Endpoint(normalize_url(local.url), local.token, source, "embedded")


def endpoint(url: str | None = None, token: str | None = None, **kwargs: Any) -> Endpoint:
    """The endpoint ``nbws.stream(name, url, token)`` connects to (found as it would be).

    ``print(nbws.endpoint())`` shows the URL and how it was found, never the token;
    ``print(nbws.endpoint().connect_snippet())`` shows what another process needs.
    """
    return discover(url, token, **kwargs)
