"""Finding the nbws server a client should talk to, without the user typing a URL.

In order:

1. an explicit ``url`` (``http(s)://`` or ``ws(s)://``; ``nbws/ws`` is appended unless the
   path already ends with it), with ``token`` or ``NBWS_TOKEN``;
2. the Jupyter server this kernel runs under: a kernel started by jupyter-server has
   ``JPY_PARENT_PID`` set to the server's pid, and the server writes its url, base_url
   and token to ``jpserver-<pid>.json`` in Jupyter's runtime directory (a server without a
   token there, e.g. a JupyterHub single-user server, is sent ``NBWS_TOKEN`` or the
   kernel's ``JUPYTERHUB_API_TOKEN``);
3. ``NBWS_URL`` (and ``NBWS_TOKEN``), e.g. for ``nbws serve`` or a plain Python process.

If none applies, :class:`ServerNotFound` says what was tried.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from .errors import ServerNotFound

__all__ = ["Endpoint", "discover", "normalize_url"]

WS_PATH = "nbws/ws"
_ANY_HOST = ("", "0.0.0.0", "::", "[::]", "*")


@dataclass(frozen=True)
class Endpoint:
    """Where to connect: the ``nbws/ws`` WebSocket URL, the token, and how it was found."""

    url: str
    token: str | None
    source: str

    def http_url(self, path: str = "") -> str:
        """The server's HTTP URL for ``path`` under its base_url (e.g. ``nbws/api/health``)."""
        parts = urlsplit(self.url)
        scheme = "https" if parts.scheme == "wss" else "http"
        base = parts.path[: -len(WS_PATH)] if parts.path.endswith(WS_PATH) else parts.path
        return urlunsplit((scheme, parts.netloc, base + path, "", ""))


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


def _from_runtime_file(path: Path) -> Endpoint:
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
    base_url = str(info.get("base_url") or "/")
    url = normalize_url(f"{scheme}://{host}:{int(info['port'])}{base_url}")
    token = info.get("token") or None
    return Endpoint(url, token, f"Jupyter server runtime file {path}")


def discover(
    url: str | None = None,
    token: str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    runtime_dir: str | os.PathLike[str] | None = None,
) -> Endpoint:
    """Find the server (see the module docstring for the order).

    Args:
        url: an explicit server or endpoint URL.
        token: an explicit token (wins over any discovered one).
        env: environment to read (default ``os.environ``).
        runtime_dir: Jupyter's runtime directory (default ``jupyter_runtime_dir()``).

    Raises:
        ServerNotFound: nothing applies; the message lists every place looked at.
        ValueError: ``url`` (or ``NBWS_URL``) is not an http(s)/ws(s) URL.
    """
    env = os.environ if env is None else env
    env_token = env.get("NBWS_TOKEN") or None
    if url is not None:
        return Endpoint(normalize_url(url), token or env_token, "the url argument")
    tried: list[str] = ["no url argument"]
    parent = env.get("JPY_PARENT_PID", "").strip()
    if parent:
        folder = Path(runtime_dir) if runtime_dir is not None else _runtime_dir()
        path = folder / f"jpserver-{parent}.json"
        if path.is_file():
            try:
                found = _from_runtime_file(path)
            except (OSError, ValueError, KeyError) as exc:
                tried.append(f"JPY_PARENT_PID={parent}, but {path} is unreadable ({exc})")
            else:
                hub_token = env.get("JUPYTERHUB_API_TOKEN") or None
                chosen = token or found.token or env_token or hub_token
                return Endpoint(found.url, chosen, found.source)
        else:
            tried.append(f"JPY_PARENT_PID={parent}, but there is no {path}")
    else:
        tried.append("JPY_PARENT_PID is not set (not a kernel started by a Jupyter server)")
    env_url = env.get("NBWS_URL", "").strip()
    if env_url:
        return Endpoint(normalize_url(env_url), token or env_token, "NBWS_URL")
    tried.append("NBWS_URL is not set")
    raise ServerNotFound(
        "cannot find an nbws server: "
        + "; ".join(tried)
        + ". Pass url=... (e.g. url='http://127.0.0.1:8765/' for `nbws serve`) or set NBWS_URL."
    )
