"""Secrets are never shown: a notebook saves what it displays, so a token in a repr, a
widget's synced state, a status line, a log line or an error message ends up in the
``.ipynb``. Each test connects (or pretends to) with a token and greps for it."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest

from nbws._redact import REDACTED, redact_headers, redact_text, redact_url
from nbws.explore import connect
from nbws.explore.handshake import parse_url
from nbws.widgets import FrameInspector, LiveChart, LiveTable, StreamMonitor, inspect_connection

TOKEN = "tok3n-Zq8v1ceb7a0d2f9e4"


# --- the helper -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"ws://h:1/nbws/echo?token={TOKEN}", f"ws://h:1/nbws/echo?token={REDACTED}"),
        (
            f"wss://h/nbws/ws?stream=a&access_token={TOKEN}&fragment=4",
            f"wss://h/nbws/ws?stream=a&access_token={REDACTED}&fragment=4",
        ),
        (f"ws://me:{TOKEN}@h:8888/x", f"ws://me:{REDACTED}@h:8888/x"),
        (f"https://{TOKEN}@h/repo", f"https://{REDACTED}@h/repo"),
        (f"http://h/?password={TOKEN}#frag", f"http://h/?password={REDACTED}#frag"),
        ("ws://h/nbws/echo?fragment=4&delay_ms=10", "ws://h/nbws/echo?fragment=4&delay_ms=10"),
        ("ws://h/nbws/echo?token=", "ws://h/nbws/echo?token="),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_redact_headers_keeps_the_scheme_and_hides_the_credential() -> None:
    headers = [
        ("Host", "h:1"),
        ("Authorization", f"token {TOKEN}"),
        ("Cookie", f"_xsrf=1; session={TOKEN}"),
        ("X-Probe", f"see ws://h/?token={TOKEN}"),
    ]
    shown = redact_headers(headers)
    assert shown[0] == ("Host", "h:1")
    assert shown[1] == ("Authorization", f"token {REDACTED}")
    assert shown[2] == ("Cookie", REDACTED)
    assert shown[3] == ("X-Probe", f"see ws://h/?token={REDACTED}")
    assert TOKEN not in json.dumps(shown)


def test_redact_text_finds_urls_pairs_and_quoted_headers() -> None:
    text = (
        f"expected a ws:// URL, not 'ftp://h/?token={TOKEN}'; "
        f"sent {{'Authorization': 'Bearer {TOKEN}'}} and api_key={TOKEN}"
    )
    shown = redact_text(text)
    assert TOKEN not in shown
    assert "expected a ws:// URL" in shown and "Authorization" in shown


# --- explore: RawConnection and its errors ------------------------------------------------


@pytest.mark.parametrize("server_options", [{"token": TOKEN}])
async def test_raw_connection_never_shows_its_token(nbws_server: Any) -> None:
    url = nbws_server.url()
    assert TOKEN in url

    def run() -> None:
        with connect(url, headers={"Authorization": f"token {TOKEN}"}) as conn:
            conn.text("hello")
            assert conn.receive() == "hello"
            for shown in (repr(conn), str(conn), conn._repr_html_()):
                assert TOKEN not in shown
                assert f"token={REDACTED}" in shown and "/nbws/echo" in shown
            assert f"Authorization: token {REDACTED}" in repr(conn)
            assert conn.url == url  # the connection itself still knows where it went

    await asyncio.to_thread(run)


def test_a_bad_url_error_does_not_quote_the_token() -> None:
    with pytest.raises(ValueError) as info:
        parse_url(f"ftp://h/nbws/echo?token={TOKEN}")
    assert TOKEN not in str(info.value) and "ftp://h/nbws/echo" in str(info.value)
    with pytest.raises(ValueError) as info:
        parse_url(f"ws:///nbws/echo?token={TOKEN}")
    assert TOKEN not in str(info.value)


# --- widgets: synced state and the status line ------------------------------------------


class TokenConnection:
    """A kernel connection made with a token in its URL (what inspect_connection reads)."""

    url = f"ws://127.0.0.1:8888/nbws/echo?token={TOKEN}"
    state = "OPEN"
    close_code: int | None = None
    close_reason = ""

    def __init__(self) -> None:
        self.records: list[Any] = []
        self.listeners: list[Callable[[Any], None]] = []

    def on_frame(self, listener: Callable[[Any], None]) -> None:
        self.listeners.append(listener)

    def off_frame(self, listener: Callable[[Any], None]) -> None:
        self.listeners.remove(listener)

    def reconnect(self) -> TokenConnection:
        again = TokenConnection()
        again.url = f"{self.url}&fragment=4"
        return again


def custom_messages(widget: Any) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    def capture(data: Any = None, metadata: Any = None, buffers: Any = None) -> None:
        if data and data.get("method") == "custom":
            sent.append(data["content"])

    widget.comm.send = capture
    return sent


def test_every_synced_trait_of_every_widget_is_free_of_the_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NBWS_URL", f"ws://127.0.0.1:8888/nbws/ws?token={TOKEN}")
    monkeypatch.setenv("NBWS_TOKEN", TOKEN)
    inspector = inspect_connection(TokenConnection())  # type: ignore[arg-type]
    widgets = [
        LiveTable("s"),
        LiveChart("s", y="v"),
        StreamMonitor("s"),
        FrameInspector(endpoint="echo"),
        inspector,
    ]
    try:
        for widget in widgets:
            state = json.dumps(widget.get_state(), default=str)
            assert TOKEN not in state, type(widget).__name__
        assert inspector.url == f"ws://127.0.0.1:8888/nbws/echo?token={REDACTED}"
    finally:
        for widget in widgets:
            widget.close()


def test_the_inspector_status_line_and_a_reconnect_do_not_show_the_token() -> None:
    conn = TokenConnection()
    widget = inspect_connection(conn)  # type: ignore[arg-type]
    sent = custom_messages(widget)
    try:
        widget._handle_custom_msg({"action": "replay", "view": "v"}, [])
        widget._handle_custom_msg({"action": "reconnect"}, [])
        states = [m for m in sent if m.get("type") == "state"]
        assert states, sent
        assert all("/nbws/echo?token=" in m["detail"] for m in states)
        assert TOKEN not in json.dumps(sent)
        assert TOKEN not in json.dumps(widget.get_state(), default=str)
        assert "fragment=4" in widget.url
    finally:
        widget.close()


def test_a_failing_action_note_does_not_quote_the_token() -> None:
    conn: Any = TokenConnection()

    def text(data: str) -> None:
        raise ConnectionError(f"cannot reach {conn.url}")

    conn.text = text
    widget = inspect_connection(conn)
    sent = custom_messages(widget)
    try:
        widget._handle_custom_msg({"action": "text", "data": "x"}, [])
        [note] = [m for m in sent if m.get("type") == "note"]
        assert "cannot reach ws://127.0.0.1:8888/nbws/echo" in note["text"]
        assert TOKEN not in note["text"]
    finally:
        widget.close()


@pytest.mark.parametrize("server_options", [{"token": TOKEN}])
async def test_a_failing_frame_listener_logs_no_token(
    nbws_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    url = nbws_server.url()

    def run() -> None:
        with connect(url) as conn:

            def broken(record: Any) -> None:
                raise RuntimeError(f"listener on {conn.url} failed")

            conn.on_frame(broken)
            conn.text("x")
            deadline = time.monotonic() + 10
            while not caplog.records and time.monotonic() < deadline:
                time.sleep(0.01)

    with caplog.at_level(logging.ERROR, logger="nbws.explore"):
        await asyncio.to_thread(run)
    assert caplog.records
    assert TOKEN not in caplog.text


@pytest.mark.parametrize("server_options", [{"token": TOKEN}])
async def test_a_scenario_that_fails_does_not_quote_the_token(nbws_server: Any) -> None:
    from nbws.explore.scenarios import Scenario, ScenarioTable

    def body(conn: Any, ctx: Any) -> Any:
        raise RuntimeError(f"gave up on {conn.url}")

    scenario = Scenario("leaky", "a failing experiment", "nothing", body)
    outcome = await asyncio.to_thread(scenario.run, nbws_server.url())
    assert "gave up on ws://" in outcome.observed
    table = ScenarioTable([outcome])
    for shown in (outcome.observed, str(outcome), repr(table), table._repr_html_()):
        assert TOKEN not in shown
