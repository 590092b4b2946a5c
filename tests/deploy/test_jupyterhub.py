"""nbws in a real JupyterHub, reached the way users reach it: through nginx terminating TLS
(the snippet of docs/deploying.md) in front of the Hub's configurable-http-proxy.

alice logs in through the Hub's login form; in her server and in her named server a
``LiveTable`` fills live over ``wss://`` with the Hub's OAuth cookie (no token in any URL),
the kernel's ``nbws.stream`` finds its server by itself and ``flush()`` succeeds, and the
Streams panel lists her streams. bob, logged in too, is refused (403) by alice's
``nbws/ws`` and ``nbws/api/streams`` and sees none of her streams in his own server.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from http.cookies import SimpleCookie

import pytest
from e2e.browser import run_cell, screenshot, wait_for_notebook
from e2e.lab import write_notebook
from playwright.sync_api import Browser, BrowserContext, Page, expect
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

import nbws
from nbws.protocol.messages import PROTOCOL, Welcome, decode_event

from .hub import Hub, start_hub
from .nginx import Nginx, start_nginx
from .tls import Certificates

SERVERS = [("alice", ""), ("alice", "second"), ("bob", "")]

# Runs before the page's scripts: keeps the URL of every WebSocket the page opens.
_TRACK_SOCKETS = """
window.__socketUrls = [];
const Native = window.WebSocket;
window.WebSocket = class extends Native {
  constructor(url, ...rest) { super(url, ...rest); window.__socketUrls.push(String(url)); }
};
"""


@dataclass
class Deployment:
    hub: Hub
    proxy: Nginx
    certificates: Certificates
    prefixes: dict[tuple[str, str], str]

    @property
    def proxy_ssl(self) -> ssl.SSLContext:
        return self.certificates.client_context()

    def url(self, path: str) -> str:
        return self.proxy.url + path.lstrip("/")


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory, certificates: Certificates
) -> Iterator[Deployment]:
    hub = start_hub(tmp_path_factory.mktemp("hub"))
    proxy: Nginx | None = None
    try:
        proxy = start_nginx(tmp_path_factory.mktemp("nginx"), certificates, hub.port)
        for user, server in SERVERS:
            hub.spawn(user, server)
        prefixes = {(u, s): hub.wait_ready(u, s) for u, s in SERVERS}
        yield Deployment(hub, proxy, certificates, prefixes)
    finally:
        if proxy is not None:
            proxy.stop()
        hub.stop()


def _login(browser: Browser, deployment: Deployment, user: str) -> BrowserContext:
    """A browser session of ``user``, logged in through the Hub's login form."""
    context = browser.new_context(
        viewport={"width": 1400, "height": 1100}, ignore_https_errors=True
    )
    page = context.new_page()
    page.goto(deployment.url("hub/login"))
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", deployment.hub.password)
    page.click("#login_submit")
    page.wait_for_url(lambda url: "/hub/login" not in url)
    page.close()
    return context


@pytest.fixture
def alice(browser: Browser, deployment: Deployment) -> Iterator[BrowserContext]:
    context = _login(browser, deployment, "alice")
    yield context
    context.close()


@pytest.fixture
def bob(browser: Browser, deployment: Deployment) -> Iterator[BrowserContext]:
    context = _login(browser, deployment, "bob")
    yield context
    context.close()


def _open_notebook(page: Page, deployment: Deployment, prefix: str, name: str) -> None:
    page.add_init_script(_TRACK_SOCKETS)
    page.goto(deployment.url(f"{prefix}lab/workspaces/deploy/tree/{name}"))
    wait_for_notebook(page, name)


def _cells(stream: str, rows: int) -> list[str]:
    return [
        f"import nbws\nfeed = nbws.stream({stream!r})\nprint(feed.endpoint.source)\n"
        "print(feed.url)",
        f"from nbws.widgets import LiveTable\nLiveTable({stream!r}, max_rows=100)",
        f"for i in range({rows}):\n    feed.publish({{'n': i, 'note': f'{stream}-{{i}}'}})\n"
        "feed.flush(timeout=60)\nprint('flushed', feed.stats().acked)",
    ]


def _text(outputs: list[dict[str, object]]) -> str:
    return "".join(str(o.get("text", "")) for o in outputs)


def _live_table_through_the_hub(
    page: Page, deployment: Deployment, prefix: str, stream: str
) -> None:
    home = deployment.hub.home(prefix.strip("/").split("/")[1])
    name = write_notebook(home, f"{stream}.ipynb", _cells(stream, 30))
    _open_notebook(page, deployment, prefix, name)

    found = _text(run_cell(page, 0))
    assert "runtime file" in found, found  # the kernel found its own server by itself
    assert f"{prefix}nbws/ws" in found, found

    run_cell(page, 1)
    table = page.locator(".nbws-table")
    expect(table.locator(".nbws-status")).to_have_attribute("data-state", "live")
    assert "flushed" in _text(run_cell(page, 2))
    expect(table.locator(".nbws-row", has_text=f"{stream}-29")).to_be_visible()
    expect(table).to_have_attribute("data-received", "30")

    # The view's WebSocket went through the TLS proxy under the server's prefix.
    urls = page.evaluate("() => window.__socketUrls")
    nbws_urls = [u for u in urls if "/nbws/ws" in u]
    assert nbws_urls, urls
    assert all(u.startswith(f"{deployment.proxy.ws_url}{prefix.lstrip('/')}") for u in nbws_urls)

    # The Streams side panel (REST with cookie + XSRF) lists the stream.
    page.get_by_role("tab", name="nbws streams").click()
    row = page.locator(f'.nbws-streams-row[data-stream="{stream}"]')
    expect(row.locator("td").nth(2)).to_have_text("29")


def test_a_live_table_and_the_kernel_client_in_a_users_server(
    alice: BrowserContext, deployment: Deployment
) -> None:
    page = alice.new_page()
    prefix = deployment.prefixes[("alice", "")]
    assert prefix == "/user/alice/"
    _live_table_through_the_hub(page, deployment, prefix, "alice-prices")
    screenshot(page, "jupyterhub-alice")


def test_a_named_server_has_its_own_streams(alice: BrowserContext, deployment: Deployment) -> None:
    page = alice.new_page()
    prefix = deployment.prefixes[("alice", "second")]
    assert prefix == "/user/alice/second/"
    _live_table_through_the_hub(page, deployment, prefix, "second-feed")
    # A named server is its own process: the default server's streams are not here.
    rows = page.locator(".nbws-streams-row")
    expect(rows).to_have_count(1)
    screenshot(page, "jupyterhub-named-server")


def _open_stream_viewer(page: Page, deployment: Deployment, stream: str) -> list[str]:
    """Open alice's Lab, then the Streams panel's live view of ``stream``; the WebSocket
    URLs the page opened."""
    page.add_init_script(_TRACK_SOCKETS)
    page.goto(deployment.url("user/alice/lab/workspaces/deploy-panel"))
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.restored")
    page.get_by_role("tab", name="nbws streams").click()
    row = page.locator(f'.nbws-streams-row[data-stream="{stream}"]')
    row.get_by_role("button", name=stream).click()
    expect(page.locator(".nbws-stream-viewer .nbws-row", has_text="hi")).to_be_visible()
    urls: list[str] = page.evaluate("() => window.__socketUrls")
    assert [u for u in urls if "/nbws/ws" in u], urls  # the viewer's socket was opened
    return urls


@pytest.fixture(scope="module")
def viewer_urls(browser: Browser, deployment: Deployment) -> tuple[list[str], str]:
    """The WebSocket URLs of alice's stream viewer, and the token JupyterHub gave her page."""
    stream = "alice-panel"
    status, body = deployment.hub.request(
        "POST", f"user/alice/nbws/api/streams/{stream}/messages", {"payload": {"note": "hi"}}
    )
    assert status == 201, (status, body)
    context = _login(browser, deployment, "alice")
    try:
        page = context.new_page()
        urls = _open_stream_viewer(page, deployment, stream)
        token = page.evaluate(
            "() => JSON.parse(document.getElementById('jupyter-config-data').textContent).token"
        )
    finally:
        context.close()
    assert token, "JupyterHub gives the page a token (the user's OAuth access token)"
    return urls, str(token)


def test_the_documented_proxy_log_keeps_no_token(
    viewer_urls: tuple[list[str], str], deployment: Deployment
) -> None:
    _, token = viewer_urls
    log = deployment.proxy.access_log()
    assert "/user/alice/nbws/ws" in log  # the viewer's upgrade is logged ...
    assert token not in log  # ... without its query string


def test_no_token_in_websocket_urls(viewer_urls: tuple[list[str], str]) -> None:
    urls, token = viewer_urls
    assert not [u for u in urls if "token=" in u or token in u], urls


def test_a_publisher_outside_the_hub_with_a_hub_token(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``nbws.stream(url=<the server's public URL>, token=<a Hub API token>)`` publishes over
    ``wss://`` through both proxies (the CA trusted through ``SSL_CERT_FILE``)."""
    monkeypatch.setenv("SSL_CERT_FILE", str(deployment.certificates.ca))
    url = deployment.url("user/alice/")
    with nbws.stream("from-outside", url=url, token=deployment.hub.token) as feed:
        assert feed.url == f"{deployment.proxy.ws_url}user/alice/nbws/ws"
        for i in range(3):
            feed.publish({"n": i})
        feed.flush(timeout=60)
    status, body = deployment.hub.request("GET", "user/alice/nbws/api/streams/from-outside")
    assert status == 200 and body["next"] == 3, (status, body)


def test_health_and_metrics_with_a_hub_token(deployment: Deployment) -> None:
    """What a monitoring service of the Hub (a token with access:servers) can read."""
    hub = deployment.hub
    for prefix in ("user/alice/", "user/alice/second/", "user/bob/"):
        status, health = hub.request("GET", f"{prefix}nbws/api/health")
        assert status == 200 and health["status"] == "ok", (prefix, status, health)
        assert health["backend"] == "memory"
    status, metrics = hub.request("GET", "user/alice/metrics")
    assert status == 200, (status, str(metrics)[:300])
    assert "nbws_connections" in metrics


def _cookie_header(context: BrowserContext) -> str:
    jar = SimpleCookie()
    for cookie in context.cookies():
        jar[cookie["name"]] = cookie["value"]
    return "; ".join(f"{k}={m.value}" for k, m in jar.items())


def test_another_user_is_refused_and_sees_none_of_the_streams(
    bob: BrowserContext, deployment: Deployment
) -> None:
    hub = deployment.hub
    secret = "alice-private"
    status, body = hub.request(
        "POST", f"user/alice/nbws/api/streams/{secret}/messages", {"payload": {"pin": 1234}}
    )
    assert status == 201, (status, body)
    status, body = hub.request("GET", "user/alice/nbws/api/streams")
    assert status == 200 and secret in [s["name"] for s in body["streams"]], (status, body)

    # bob's own server, in his browser: his stream is listed, alice's are not.
    page = bob.new_page()
    status, body = hub.request("POST", "user/bob/nbws/api/streams/bob-own/messages", {"payload": 1})
    assert status == 201, (status, body)
    page.goto(deployment.url("user/bob/lab/workspaces/deploy"))
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.restored")
    page.get_by_role("tab", name="nbws streams").click()
    expect(page.locator('.nbws-streams-row[data-stream="bob-own"]')).to_be_visible()
    assert page.locator(".nbws-streams-row").count() == 1
    own = page.request.get(deployment.url("user/bob/nbws/api/streams"))
    assert own.status == 200
    assert [s["name"] for s in own.json()["streams"]] == ["bob-own"]

    # alice's REST API and WebSocket, with bob's browser session: 403.
    for path in ("user/alice/nbws/api/streams", f"user/alice/nbws/api/streams/{secret}/messages"):
        answer = page.request.get(deployment.url(path), max_redirects=0)
        assert answer.status == 403, (path, answer.status, answer.text()[:300])
        assert "1234" not in answer.text()
    cookies = _cookie_header(bob)
    assert "jupyterhub-user-bob" in cookies  # bob is logged in to his own server
    for prefix in ("user/alice/", "user/alice/second/"):
        for headers in ({"Cookie": cookies}, {}):
            with pytest.raises(InvalidStatus) as refused:
                connect(
                    f"{deployment.proxy.ws_url}{prefix}nbws/ws",
                    subprotocols=[PROTOCOL],  # type: ignore[list-item]
                    ssl=deployment.proxy_ssl,
                    additional_headers=headers,
                    origin=deployment.proxy.url.rstrip("/"),  # type: ignore[arg-type]
                    open_timeout=30,
                )
            assert refused.value.response.status_code == 403, (prefix, headers.keys())
    # The same socket with bob's credentials to his own server is accepted.
    with connect(
        f"{deployment.proxy.ws_url}user/bob/nbws/ws",
        subprotocols=[PROTOCOL],  # type: ignore[list-item]
        ssl=deployment.proxy_ssl,
        additional_headers={"Cookie": cookies},
        origin=deployment.proxy.url.rstrip("/"),  # type: ignore[arg-type]
        open_timeout=30,
    ) as ws:
        assert isinstance(decode_event(ws.recv(timeout=30)), Welcome)

    # Opening alice's notebook UI as bob ends at the Hub refusing (no page of alice's).
    response = page.goto(deployment.url("user/alice/lab"))
    assert response is not None and response.status == 403, response and response.url
    assert page.evaluate("() => typeof window.jupyterapp") == "undefined"
