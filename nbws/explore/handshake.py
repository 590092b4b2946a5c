"""The opening handshake over a plain socket, with every header visible and overridable.

Kept apart from the frame client so the handshake itself can be explored: a wrong
``Sec-WebSocket-Version``, a missing key or a ``POST`` each get the server's plain HTTP
answer back from :func:`probe` instead of an exception deep inside a client library.
"""

from __future__ import annotations

import base64
import os
import socket
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .._redact import redact_url
from ..errors import NbwsError
from ..protocol._compat import accept_key

__all__ = [
    "HandshakeError",
    "Headers",
    "HttpResponse",
    "Target",
    "accept_key",
    "build_request",
    "open_socket",
    "parse_url",
    "probe",
    "read_response",
]

Headers = Mapping[str, "str | None"] | Sequence[tuple[str, "str | None"]]

MAX_HEAD = 64 * 1024
MAX_BODY = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Target:
    """Where a ``ws://`` or ``wss://`` URL points."""

    secure: bool
    host: str
    port: int
    resource: str  # path and query, as sent in the request line

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.secure else 80
        return host if self.port == default else f"{host}:{self.port}"


def parse_url(url: str) -> Target:
    """Split a WebSocket URL (``?token=...`` and other query options are kept).

    Raises:
        ValueError: not a ``ws://``/``wss://`` (or ``http(s)://``) URL with a host.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("ws", "wss", "http", "https"):
        raise ValueError(f"expected a ws:// or wss:// URL, not {redact_url(url)!r}")
    if not parts.hostname:
        raise ValueError(f"no host in {redact_url(url)!r}")
    secure = scheme in ("wss", "https")
    port = parts.port or (443 if secure else 80)
    resource = parts.path or "/"
    if parts.query:
        resource += "?" + parts.query
    return Target(secure, parts.hostname, port, resource)


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """The server's answer to the handshake request."""

    status: int
    reason: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), if present."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None

    def __str__(self) -> str:
        lines = [f"HTTP/1.1 {self.status} {self.reason}"]
        lines += [f"{name}: {value}" for name, value in self.headers]
        if self.body:
            lines += ["", self.body.decode("utf-8", "replace").rstrip()]
        return "\n".join(lines)


class HandshakeError(NbwsError):
    """The server did not accept the upgrade (or its 101 response was wrong).

    Attributes:
        response: what the server answered.
    """

    def __init__(self, message: str, response: HttpResponse) -> None:
        super().__init__(message)
        self.response = response


def _items(headers: Headers | None) -> list[tuple[str, str | None]]:
    if headers is None:
        return []
    if isinstance(headers, Mapping):
        return list(headers.items())
    return list(headers)


def build_request(
    target: Target,
    *,
    method: str = "GET",
    headers: Headers | None = None,
    subprotocols: Sequence[str] | None = None,
    origin: str | None = None,
) -> tuple[list[tuple[str, str]], bytes]:
    """The handshake request: default headers, then ``headers`` applied on top.

    A name in ``headers`` that matches a default header (case-insensitive) replaces its
    value, or removes it when the value is None; other names are appended.

    Returns:
        ``(headers as sent, request bytes)``.
    """
    key = base64.b64encode(os.urandom(16)).decode("ascii")
    sent: list[tuple[str, str]] = [
        ("Host", target.host_header),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", key),
        ("Sec-WebSocket-Version", "13"),
    ]
    if origin is not None:
        sent.append(("Origin", origin))
    if subprotocols:
        sent.append(("Sec-WebSocket-Protocol", ", ".join(subprotocols)))
    if method.upper() != "GET":
        sent.append(("Content-Length", "0"))
    for name, value in _items(headers):
        index = next((i for i, (k, _) in enumerate(sent) if k.lower() == name.lower()), None)
        if index is None:
            if value is not None:
                sent.append((name, value))
        elif value is None:
            del sent[index]
        else:
            sent[index] = (sent[index][0], value)
    lines = [f"{method} {target.resource} HTTP/1.1"] + [f"{k}: {v}" for k, v in sent]
    return sent, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def open_socket(
    target: Target,
    timeout: float,
    *,
    receive_buffer: int | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> socket.socket:
    """A connected TCP (or TLS) socket whose blocking calls time out after ``timeout``."""
    family = socket.AF_INET6 if ":" in target.host else socket.AF_INET
    infos = socket.getaddrinfo(target.host, target.port, 0, socket.SOCK_STREAM)
    family, kind, proto, _, address = next((info for info in infos if info[0] == family), infos[0])
    sock = socket.socket(family, kind, proto)
    try:
        sock.settimeout(timeout)
        if receive_buffer is not None:
            # Before connect(), so the advertised TCP window is small from the start.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.connect(address)
        if target.secure:
            context = ssl_context or ssl.create_default_context()
            sock = context.wrap_socket(sock, server_hostname=target.host)
            sock.settimeout(timeout)
    except BaseException:
        sock.close()
        raise
    return sock


def _recv(sock: socket.socket, deadline: float) -> bytes:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("timed out waiting for the handshake response")
    sock.settimeout(remaining)
    try:
        return sock.recv(65536)
    except TimeoutError:
        raise TimeoutError("timed out waiting for the handshake response") from None


def read_response(sock: socket.socket, timeout: float) -> tuple[HttpResponse, bytes]:
    """Read the response head (and, unless it is a 101, its body).

    Returns:
        ``(response, bytes after the head)``; after a 101 those are the first frames.

    Raises:
        TimeoutError: nothing complete within ``timeout``.
        ValueError: the server's answer is not HTTP.
    """
    deadline = time.monotonic() + timeout
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        if len(buffer) > MAX_HEAD:
            raise ValueError("handshake response head over 64 KiB")
        chunk = _recv(sock, deadline)
        if not chunk:
            if not buffer:
                raise ValueError("the server closed the connection without answering")
            break
        buffer += chunk
    head, _, rest = buffer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status_line = lines[0].split(" ", 2)
    if len(status_line) < 2 or not status_line[0].startswith("HTTP/"):
        raise ValueError(f"not an HTTP response: {lines[0]!r}")
    status = int(status_line[1])
    reason = status_line[2] if len(status_line) > 2 else ""
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    response = HttpResponse(status, reason, headers)
    if status == 101:
        return response, rest
    length = response.header("Content-Length")
    body = rest
    try:
        want = int(length) if length is not None else MAX_BODY
        while len(body) < min(want, MAX_BODY):
            chunk = _recv(sock, deadline)
            if not chunk:
                break
            body += chunk
    except TimeoutError:
        if length is not None:
            raise
    return HttpResponse(status, reason, headers, body[:MAX_BODY]), b""


def probe(
    url: str,
    *,
    method: str = "GET",
    headers: Headers | None = None,
    subprotocols: Sequence[str] | None = None,
    origin: str | None = None,
    timeout: float = 5.0,
    ssl_context: ssl.SSLContext | None = None,
) -> HttpResponse:
    """Send one handshake request (as malformed as you like) and return the answer.

    The connection is closed afterwards, whatever the status; use
    :func:`nbws.explore.connect` to go on with frames after a 101.
    """
    target = parse_url(url)
    _, request = build_request(
        target, method=method, headers=headers, subprotocols=subprotocols, origin=origin
    )
    with open_socket(target, timeout, ssl_context=ssl_context) as sock:
        sock.sendall(request)
        response, _ = read_response(sock, timeout)
    return response
