"""The view↔kernel handshake that decides how a widget's view reaches its stream.

Each view, once rendered, sends a custom comm message ``{"nbws": "hello", "view": ID,
"page": {"origin": ..., "jupyter": bool}}`` saying what it knows about its page (its
origin, and whether the page carries Jupyter's ``#jupyter-config-data``). The kernel answers
``{"nbws": "endpoint", "view": ID, "kind": ...}`` with where it publishes:

- ``jupyter``: the kernel's Jupyter server has the nbws extension; the view subscribes on
  the page's own server with the page's credentials (transport ``direct``);
- ``embedded`` / ``explicit``: the kernel publishes to its embedded server or to
  ``NBWS_URL``; the answer adds ``url`` (``ws(s)://.../nbws/ws``) and ``token``, and the view
  opens a WebSocket to it (transport ``kernel-hosted`` for embedded, ``direct`` for
  explicit), or falls back to the relay when the page cannot reach it;
- ``none``: no server at all; ``error`` says why in one line.

The token travels only in this one custom message: custom messages are not widget state,
so they are neither synced to other views nor saved in the notebook. The view reports the
transport it ended up with in the synced ``transport`` trait (no secret in it).

Everything here is pure (no comm, no socket): :func:`parse_hello` reads the view's message,
:func:`endpoint_message` builds the answer from a discovered endpoint.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..client.discovery import Endpoint

__all__ = [
    "HELLO",
    "REPLY",
    "TRANSPORTS",
    "Hello",
    "endpoint_message",
    "failure_message",
    "page_origin",
    "parse_hello",
]

HELLO = "hello"
REPLY = "endpoint"
TRANSPORTS = ("direct", "kernel-hosted", "relay")
"""The values a view may report in the ``transport`` trait (``""`` before any view)."""

_ORIGIN = re.compile(r"^(https?://[A-Za-z0-9.\-\[\]:]+|vscode-webview://[A-Za-z0-9.\-]+)$")
_VIEW_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True, slots=True)
class Hello:
    """What a view told the kernel about its page.

    ``origin`` is the page's origin when it is a plain ``scheme://host[:port]`` (else None);
    ``jupyter`` whether the page carries Jupyter page config (so it can reach its own server
    with its own credentials).
    """

    view: str
    origin: str | None
    jupyter: bool


def page_origin(value: object) -> str | None:
    """``value`` if it is an origin the embedded server may allow, else None."""
    if not isinstance(value, str) or len(value) > 200:
        return None
    return value.rstrip("/") if _ORIGIN.match(value.rstrip("/")) else None


def parse_hello(content: Mapping[str, Any]) -> Hello | None:
    """The view's hello, or None when ``content`` is some other custom message."""
    if content.get("nbws") != HELLO:
        return None
    view = content.get("view")
    page = content.get("page")
    page = page if isinstance(page, Mapping) else {}
    return Hello(
        view=view if isinstance(view, str) and _VIEW_ID.match(view) else "",
        origin=page_origin(page.get("origin")),
        jupyter=page.get("jupyter") is True,
    )


def endpoint_message(hello: Hello, found: Endpoint) -> dict[str, Any]:
    """The kernel's answer to ``hello``: where it publishes (see the module docstring).

    The Jupyter server's own URL and token are never sent: a page on that server reaches
    it with its own credentials, and a page elsewhere goes through the relay.
    """
    message: dict[str, Any] = {"nbws": REPLY, "view": hello.view, "kind": found.kind}
    if found.kind != "jupyter":
        message["url"] = found.url
        message["token"] = found.token or ""
    return message


def failure_message(hello: Hello, error: str) -> dict[str, Any]:
    """The answer when the kernel has no server to publish to (``error``: one line)."""
    return {"nbws": REPLY, "view": hello.view, "kind": "none", "error": error}
