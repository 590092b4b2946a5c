"""The view↔kernel handshake: what the kernel answers a view's hello, and what it never shares."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import make_config
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Origin

from nbws.client.discovery import Endpoint
from nbws.server.embedded import EmbeddedServer
from nbws.widgets import FrameInspector, LiveChart, LiveTable, StreamMonitor
from nbws.widgets.handshake import Hello, endpoint_message, page_origin, parse_hello

TOKEN = "s3cret-token-value-never-shown"


def hello(view: str = "v1", **page: Any) -> dict[str, Any]:
    return {"nbws": "hello", "view": view, "page": page}


class Sent:
    """Captures what a widget sends to its views (instead of a comm)."""

    def __init__(self, widget: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.messages: list[dict[str, Any]] = []
        monkeypatch.setattr(
            widget, "send", lambda content, buffers=None: self.messages.append(content)
        )


def say_hello(widget: Any, content: dict[str, Any]) -> None:
    """Deliver ``content`` as the view's custom message (as the comm would)."""
    widget._handle_custom_msg(content, [])


def test_parse_hello_reads_only_what_it_trusts() -> None:
    assert parse_hello({"action": "replay"}) is None
    assert parse_hello(hello("abc", origin="http://localhost:2718", jupyter=True)) == Hello(
        "abc", "http://localhost:2718", True
    )
    odd = parse_hello(hello("bad id!", origin="javascript:alert(1)", jupyter="yes"))
    assert odd == Hello("", None, False)
    assert page_origin("http://127.0.0.1:8866/") == "http://127.0.0.1:8866"
    assert page_origin("https://x.example/path") is None
    assert page_origin("vscode-webview://1abc") == "vscode-webview://1abc"


def test_jupyter_answer_carries_no_url_or_token() -> None:
    found = Endpoint("ws://127.0.0.1:8888/nbws/ws", TOKEN, "runtime file", "jupyter")
    answer = endpoint_message(Hello("v", None, True), found)
    assert answer == {"nbws": "endpoint", "view": "v", "kind": "jupyter"}


@pytest.mark.parametrize(
    "widget",
    [LiveTable("s"), LiveChart("s", y="v"), StreamMonitor("s"), FrameInspector()],
    ids=["table", "chart", "monitor", "inspector"],
)
def test_explicit_endpoint_goes_to_the_view_in_a_message_never_in_state(
    widget: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NBWS_URL", "http://127.0.0.1:9/")
    monkeypatch.setenv("NBWS_TOKEN", TOKEN)
    sent = Sent(widget, monkeypatch)
    assert not widget.wait_for_view(0)
    say_hello(widget, hello("view-1", origin="http://localhost:8866", jupyter=False))
    assert widget.wait_for_view(0)
    assert sent.messages == [
        {
            "nbws": "endpoint",
            "view": "view-1",
            "kind": "explicit",
            "url": "ws://127.0.0.1:9/nbws/ws",
            "token": TOKEN,
        }
    ]
    # Synced state is what other views get and what the notebook saves.
    assert TOKEN not in json.dumps(widget.get_state(), default=str)


def test_other_custom_messages_get_no_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    table = LiveTable("s")
    sent = Sent(table, monkeypatch)
    say_hello(table, {"nbws": "something-else"})
    say_hello(table, {"action": "replay"})
    assert sent.messages == []
    assert not table.wait_for_view(0)


def test_no_server_is_a_one_line_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBWS_URL", "ftp://nowhere/")
    table = LiveTable("s")
    sent = Sent(table, monkeypatch)
    say_hello(table, hello())
    (answer,) = sent.messages
    assert answer["kind"] == "none"
    assert "\n" not in answer["error"] and "ftp://nowhere/" in answer["error"]


def test_transport_takes_only_the_known_names() -> None:
    table = LiveTable("s")
    assert table.transport == ""
    for name in ("direct", "kernel-hosted", "relay", ""):
        table.transport = name
        assert table.get_state()["transport"] == name
    with pytest.raises(Exception, match="transport is one of"):
        table.transport = "carrier-pigeon"


# --- the page's origin reaches the embedded server ----------------------------------------


@pytest.fixture
def embedded() -> Iterator[EmbeddedServer]:
    server = EmbeddedServer(make_config())
    server.start()
    try:
        yield server
    finally:
        server.stop()


def upgrade_status(server: EmbeddedServer, origin: str) -> int:
    url = f"ws://127.0.0.1:{server.port}/nbws/echo?token={server.token}"
    try:
        with connect(url, origin=Origin(origin), open_timeout=60):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


def test_a_page_origin_told_through_the_comm_is_allowed(embedded: EmbeddedServer) -> None:
    marimo = "http://localhost:2718"
    assert upgrade_status(embedded, marimo) == 403
    embedded.allow_origin(marimo + "/")
    assert upgrade_status(embedded, marimo) == 101
    assert upgrade_status(embedded, "http://evil.example") == 403


def test_hello_adds_the_page_origin_to_the_embedded_server(
    embedded: EmbeddedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = Endpoint(f"ws://127.0.0.1:{embedded.port}/nbws/ws", embedded.token, "test", "embedded")
    monkeypatch.setattr("nbws.client.discovery.discover", lambda *a, **k: found)
    monkeypatch.setattr("nbws.server.embedded.shared_server", lambda: embedded)
    chart = LiveChart("s", y="v")
    sent = Sent(chart, monkeypatch)
    say_hello(chart, hello("v2", origin="http://127.0.0.1:8866", jupyter=True))
    assert sent.messages[0]["kind"] == "embedded"
    assert sent.messages[0]["token"] == embedded.token
    assert upgrade_status(embedded, "http://127.0.0.1:8866") == 101
