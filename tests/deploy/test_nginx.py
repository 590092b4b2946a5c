"""nbws behind Debian's nginx terminating TLS, configured with docs/deploying.md's snippet.

``nbws serve`` (its own process, with a token) is the upstream; clients speak ``wss://``
and trust only the test CA. The proxy's idle timeout is cut to 3 s, far below the default
heartbeat interval (30 s): with ``heartbeat_interval`` set as the doc says (at most half
the proxy's timeout) a quiet subscriber stays connected; with the default it is cut, and
it resumes after its last offset with nothing missing and nothing twice.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import RunningServer, start_serve_process, stop_serve_process
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

import nbws
from nbws.protocol.messages import (
    PROTOCOL,
    Message,
    Subscribe,
    Subscribed,
    Welcome,
    decode_event,
    encode,
    resume_since,
)

from .nginx import Nginx, start_nginx
from .tls import Certificates
from .tools import wait_for

PROXY_TIMEOUT = "3s"
QUIET = 8.0  # seconds of silence: more than twice the proxy's idle timeout


def _serve(*options: str) -> RunningServer:
    return start_serve_process(*(f"--set={o}" for o in options), token=secrets.token_hex(16))


@pytest.fixture(scope="module")
def tuned(
    tmp_path_factory: pytest.TempPathFactory, certificates: Certificates
) -> Iterator[tuple[RunningServer, Nginx]]:
    """``nbws serve`` with heartbeat_interval=1 (half of 3 s, rounded down) behind nginx."""
    server = _serve("heartbeat_interval=1")
    proxy = start_nginx(
        tmp_path_factory.mktemp("nginx"), certificates, server.port, timeout=PROXY_TIMEOUT
    )
    yield server, proxy
    proxy.stop()
    stop_serve_process(server)


@pytest.fixture(scope="module")
def default(
    tmp_path_factory: pytest.TempPathFactory, certificates: Certificates
) -> Iterator[tuple[RunningServer, Nginx]]:
    """``nbws serve`` with the default heartbeat (30 s) behind the same nginx settings."""
    server = _serve()
    proxy = start_nginx(
        tmp_path_factory.mktemp("nginx"), certificates, server.port, timeout=PROXY_TIMEOUT
    )
    yield server, proxy
    proxy.stop()
    stop_serve_process(server)


@contextlib.contextmanager
def _open(
    proxy: Nginx, server: RunningServer, certificates: Certificates
) -> Iterator[ClientConnection]:
    """A raw nbws.v1 connection through the proxy; the client never pings on its own, so only
    the server's heartbeats can keep it alive."""
    with connect(
        f"{proxy.ws_url}nbws/ws",
        subprotocols=[PROTOCOL],  # type: ignore[list-item]
        ssl=certificates.client_context(),
        additional_headers={"Authorization": f"token {server.token}"},
        ping_interval=None,
        open_timeout=30,
    ) as ws:
        assert isinstance(decode_event(ws.recv(timeout=30)), Welcome)
        yield ws


def _subscribe(ws: ClientConnection, stream: str, since: int | None, epoch: str | None) -> Any:
    data, text = encode(Subscribe(stream=stream, since=since, epoch=epoch))
    ws.send(data.decode() if text else data)
    reply = decode_event(ws.recv(timeout=30))
    assert isinstance(reply, Subscribed), reply
    return reply


def _receive(ws: ClientConnection, count: int) -> list[Message]:
    out: list[Message] = []
    while len(out) < count:
        event = decode_event(ws.recv(timeout=30))
        if isinstance(event, Message):
            out.append(event)
    return out


def _publish(proxy: Nginx, server: RunningServer, certs: Certificates, stream: str, n: int) -> None:
    """REST publishes through the proxy (``https://``)."""
    for i in range(n):
        request = urllib.request.Request(
            f"{proxy.url}nbws/api/streams/{stream}/messages",
            data=json.dumps({"payload": {"n": i}}).encode(),
            method="POST",
            headers={
                "Authorization": f"token {server.token}",
                "Content-Type": "application/json",
            },
        )
        with urllib.request.urlopen(request, timeout=30, context=certs.client_context()) as r:
            assert r.status == 201


def _stays_open(ws: ClientConnection, seconds: float) -> float | None:
    """Wait ``seconds`` in silence; the time at which the connection was cut, or None."""
    started = time.monotonic()
    try:
        ws.recv(timeout=seconds)
    except TimeoutError:
        return None
    except ConnectionClosed:
        return time.monotonic() - started
    raise AssertionError("a quiet stream delivered something")


def test_the_snippet_proxies_health_over_tls(
    tuned: tuple[RunningServer, Nginx], certificates: Certificates
) -> None:
    server, proxy = tuned
    request = urllib.request.Request(
        f"{proxy.url}nbws/api/health", headers={"Authorization": f"token {server.token}"}
    )
    with urllib.request.urlopen(request, timeout=30, context=certificates.client_context()) as r:
        assert r.status == 200
        assert json.loads(r.read())["status"] == "ok"


def test_heartbeats_keep_a_quiet_connection_through_a_short_proxy_timeout(
    tuned: tuple[RunningServer, Nginx], certificates: Certificates
) -> None:
    server, proxy = tuned
    with _open(proxy, server, certificates) as ws:
        _subscribe(ws, "quiet-tuned", None, None)
        assert _stays_open(ws, QUIET) is None, "the proxy cut a connection with heartbeats"
        _publish(proxy, server, certificates, "quiet-tuned", 1)
        [message] = _receive(ws, 1)
        assert message.offset == 0


def test_a_connection_the_proxy_cuts_resumes_with_no_gap(
    default: tuple[RunningServer, Nginx], certificates: Certificates
) -> None:
    server, proxy = default
    stream = "cut-and-resume"
    _publish(proxy, server, certificates, stream, 5)
    with _open(proxy, server, certificates) as ws:
        subscribed = _subscribe(ws, stream, 0, None)
        received = _receive(ws, 5)
        # No heartbeat for 30 s: the proxy's 3 s idle timeout cuts the connection.
        cut = _stays_open(ws, QUIET)
        assert cut is not None, "nginx did not cut a quiet connection (is the timeout applied?)"
    assert "timed out" in proxy.log()
    _publish(proxy, server, certificates, stream, 4)  # while nobody is connected
    since = resume_since(received[-1].offset, 0, (subscribed.first, subscribed.next))
    assert since == 5
    with _open(proxy, server, certificates) as ws:
        again = _subscribe(ws, stream, since, received[-1].epoch)
        assert again.epoch == subscribed.epoch
        received += _receive(ws, 4)
        assert _stays_open(ws, 0.5) is None  # nothing more, nothing twice
    assert [m.offset for m in received] == list(range(9))
    assert [m.payload["n"] for m in received] == [0, 1, 2, 3, 4, 0, 1, 2, 3]


def test_the_reliable_client_resumes_through_the_proxy_with_no_gap(
    default: tuple[RunningServer, Nginx],
    certificates: Certificates,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``nbws.stream`` over ``wss://`` (trusting a private CA through ``SSL_CERT_FILE``): its
    subscription, cut by the proxy while quiet, reconnects and resumes after its last
    offset; what was published meanwhile arrives once, in order."""
    server, proxy = default
    monkeypatch.setenv("SSL_CERT_FILE", str(certificates.ca))
    with nbws.stream("reliable-cut", url=proxy.url, token=server.token) as feed:
        assert feed.url.startswith("wss://")
        with feed.subscribe(since=0) as sub:
            for i in range(5):
                feed.publish({"n": i})
            feed.flush(timeout=60)
            got = [sub.get(timeout=30) for _ in range(5)]
            wait_for(lambda: sub.reconnects or None, 30, "the proxy to cut the quiet subscriber")
            for i in range(5, 10):
                feed.publish({"n": i})
            feed.flush(timeout=60)
            got += [sub.get(timeout=30) for _ in range(5)]
            with pytest.raises(TimeoutError):
                sub.get(timeout=1)  # nothing twice
            assert not sub.gaps
            assert "1006" in str(sub.last_error)  # cut without a close frame: the proxy
    assert [m.offset for m in got] == list(range(10))  # type: ignore[union-attr]
    assert [m.payload["n"] for m in got] == list(range(10))  # type: ignore[union-attr]
