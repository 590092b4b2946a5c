"""The kernel-rendered fallback: pure renderers, the hello watch, and a live view fed by a
kernel-side subscription to a real ``nbws serve``."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from client.client_support import name, serving, wait_until

import nbws
from nbws.client.frames import Message
from nbws.widgets import LiveChart, LiveTable, StreamMonitor
from nbws.widgets.fallback import (
    NOTICE,
    HelloWatch,
    KernelRendered,
    chart_svg,
    fallback_after,
    monitor_html,
    table_html,
)


def message(offset: int, payload: Any) -> Message:
    return Message("s", offset, "e1", 1700000000.0 + offset, payload)


# --- renderers ------------------------------------------------------------------------------


def test_the_table_shows_the_rows_newest_last_with_html_escaped() -> None:
    rows = [message(0, {"a": 1, "b": "<script>x</script>"}), message(1, {"a": 2.5, "c": True})]
    out = table_html(rows)
    assert "<script>" not in out and "&lt;script&gt;" in out
    assert re.findall(r"<th>(\w+)</th>", out) == ["offset", "a", "b", "c"]
    assert out.index('data-offset="0"') < out.index('data-offset="1"')
    chosen = table_html(rows, ["a", "time"])
    assert re.findall(r"<th>(\w+)</th>", chosen) == ["a", "time"]


def test_scalar_payloads_get_a_value_column() -> None:
    out = table_html([message(3, 42)])
    assert re.findall(r"<th>(\w+)</th>", out) == ["offset", "value"]
    assert "<td>42</td>" in out


def test_the_chart_draws_one_line_per_field_and_skips_non_numbers() -> None:
    rows = [message(i, {"v": i * 2, "w": "n/a" if i == 1 else -i}) for i in range(5)]
    svg = chart_svg(rows, "offset", ["v", "w"], title="t<1>")
    lines = re.findall(r'data-field="(\w+)" points="([^"]*)"', svg)
    assert [field for field, _ in lines] == ["v", "w"]
    assert len(lines[0][1].split()) == 5 and len(lines[1][1].split()) == 4
    assert "t&lt;1&gt;" in svg
    assert "waiting for data" in chart_svg([], "offset", ["v"])


def test_the_monitor_lists_its_figures() -> None:
    out = monitor_html({"newest offset": 199, "gap notices": 0})
    assert "newest offset" in out and "<td>199</td>" in out


def test_the_notice_names_what_to_install_in_the_servers_environment() -> None:
    assert "pip install anywidget" in NOTICE and "pip install nbws" in NOTICE
    assert "server's environment" in NOTICE


def test_the_delay_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBWS_FALLBACK_AFTER", "7.5")
    assert fallback_after() == 7.5
    monkeypatch.setenv("NBWS_FALLBACK_AFTER", "0")
    assert fallback_after() == 0.0
    monkeypatch.setenv("NBWS_FALLBACK_AFTER", "soon")
    assert fallback_after() == 5.0


# --- the hello watch ---------------------------------------------------------------------------


class FakeWidget:
    def __init__(self) -> None:
        self.callbacks: list[Callable[..., Any]] = []
        self.comm: object | None = object()
        self.stream = "s"

    def on_msg(self, callback: Callable[..., Any], remove: bool = False) -> None:
        self.callbacks.append(callback)

    def say(self, content: dict[str, Any]) -> None:
        for callback in self.callbacks:
            callback(self, content, [])


@dataclass
class FakeHandle:
    updates: list[Any]

    def update(self, obj: Any) -> None:
        self.updates.append(obj)


@dataclass
class FakeFallback:
    view: str = "fallback view"


def test_no_hello_replaces_the_display_with_the_kernel_rendered_view() -> None:
    widget, handle = FakeWidget(), FakeHandle([])
    watch = HelloWatch(widget, handle, 0.2, grace=0.2, make=lambda w: FakeFallback())  # type: ignore[arg-type,return-value]
    wait_until(lambda: handle.updates, 30, "the fallback display")
    assert handle.updates == ["fallback view"]
    watch.show_fallback()  # only once
    assert len(handle.updates) == 1


def test_a_hello_keeps_the_live_view() -> None:
    widget, handle = FakeWidget(), FakeHandle([])
    watch = HelloWatch(widget, handle, 0.5, grace=0.2, make=lambda w: FakeFallback())  # type: ignore[arg-type,return-value]
    widget.say({"nbws": "hello", "view": "v1", "page": {}})
    assert watch.hello.is_set()
    time.sleep(1.0)  # the watch's whole deadline passes (a state that must NOT change)
    assert handle.updates == []


@pytest.fixture
def kernel_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop in a thread, standing in for the kernel's (which a cell can block)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def test_a_hello_queued_behind_a_running_cell_still_counts(
    kernel_loop: asyncio.AbstractEventLoop,
) -> None:
    widget, handle = FakeWidget(), FakeHandle([])
    cell_done = threading.Event()

    def long_cell() -> None:  # the kernel is busy past the deadline
        cell_done.wait(30)

    created: list[HelloWatch] = []

    async def make_watch() -> None:  # created inside the loop, as in a cell
        created.append(
            HelloWatch(widget, handle, 0.2, grace=0.3, make=lambda w: FakeFallback())  # type: ignore[arg-type,return-value]
        )

    asyncio.run_coroutine_threadsafe(make_watch(), kernel_loop).result(10)
    kernel_loop.call_soon_threadsafe(long_cell)
    time.sleep(1.0)  # well past the deadline while the "cell" runs
    assert handle.updates == []
    cell_done.set()
    kernel_loop.call_soon_threadsafe(widget.say, {"nbws": "hello"})  # processed after the cell
    wait_until(lambda: created[0].hello.is_set(), 10, "hello")
    time.sleep(0.6)
    assert handle.updates == []


# --- a live kernel-rendered view -------------------------------------------------------------


TOKEN = "fallback-secret-6d1e"


@pytest.fixture(scope="module")
def server() -> Iterator[Any]:
    with serving(token=TOKEN) as running:
        yield running


def subscriber(server: Any, stream: str) -> Callable[[int], Any]:
    url = f"http://{server.host}:{server.port}/"

    def subscribe(since: int) -> Any:
        return nbws.stream(stream, url=url, token=TOKEN).subscribe(since=since)

    return subscribe


def publish(server: Any, stream: str, count: int) -> None:
    url = f"http://{server.host}:{server.port}/"
    handle = nbws.stream(stream, url=url, token=TOKEN)
    try:
        for i in range(count):
            handle.publish({"i": i, "value": i % 17})
        handle.flush(timeout=60)
    finally:
        handle.close()


def test_the_kernel_rendered_table_fills_live(server: Any) -> None:
    stream = name("fb")
    table = LiveTable(stream, max_rows=20)
    view = KernelRendered(table, subscribe=subscriber(server, stream), refresh=0.05).start()
    try:
        assert "pip install anywidget" in view.notice.value
        publish(server, stream, 200)
        wait_until(lambda: 'data-offset="199"' in view.body.value, 30, "row 199 shown")
        shown = [int(o) for o in re.findall(r'data-offset="(\d+)"', view.body.value)]
        assert shown == list(range(180, 200))  # the newest max_rows, newest last
        assert TOKEN not in view.body.value + view.notice.value
    finally:
        view.close()
        table.close()


def test_a_view_displayed_late_starts_from_the_history(server: Any) -> None:
    stream = name("fb-late")
    publish(server, stream, 30)
    chart = LiveChart(stream, x="offset", y="value", window=10)
    view = KernelRendered(chart, subscribe=subscriber(server, stream), refresh=0.05).start()
    try:
        wait_until(lambda: "<polyline" in view.body.value, 30, "the chart")
        wait_until(lambda: len(view.rows) == 10, 30, "the last 10 points")
        assert [m.offset for m in view.rows] == list(range(20, 30))
    finally:
        view.close()
        chart.close()


def test_the_kernel_rendered_monitor_counts(server: Any) -> None:
    stream = name("fb-mon")
    publish(server, stream, 1)  # the stream exists
    monitor = StreamMonitor(stream)
    view = KernelRendered(monitor, subscribe=subscriber(server, stream), refresh=0.05).start()
    try:
        wait_until(lambda: view.figures()["messages received"] == 1, 30, "history")
        publish(server, stream, 50)
        wait_until(lambda: "<td>50</td>" in view.body.value, 30, "newest offset 50")
    finally:
        view.close()
        monitor.close()


def test_the_widget_is_displayed_with_a_display_id_and_watched() -> None:
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    from nbws.widgets.fallback import display_with_fallback

    InteractiveShell.instance()
    table = LiveTable(name("shown"))
    try:
        with capture_output() as captured:
            watch = display_with_fallback(table, after=30)
        assert watch is not None and watch.handle.display_id
        (shown,) = captured.outputs
        assert shown.data["application/vnd.jupyter.widget-view+json"]["model_id"] == (
            table.model_id
        )
        with capture_output() as captured:
            assert display_with_fallback(table, after=0) is None  # the fallback turned off
        assert len(captured.outputs) == 1
    finally:
        table.close()


def test_without_a_jupyter_server_the_kernel_cannot_tell_and_waits_for_a_hello() -> None:
    from nbws.widgets.fallback import page_serves_anywidget

    assert page_serves_anywidget({}) is None
    assert page_serves_anywidget({"JPY_PARENT_PID": "999999999"}) is None  # no runtime file
