"""LiveTable, LiveChart and StreamMonitor in a real JupyterLab, fed from the kernel
(``nbws.stream``) and from another process, while the kernel is busy, with a hostile payload,
after a reload, and under a burst."""

from __future__ import annotations

import json
import time

from playwright.sync_api import Page, expect
from websockets.sync.client import connect

from .browser import open_notebook, run_cell, screenshot, start_cell, wait_for_notebook
from .lab import LabServer, write_notebook

STREAM = "e2e-prices"
XSS = '<img src=x onerror="window.__nbwsXss=1">'


def _notebook(lab: LabServer) -> str:
    return write_notebook(
        lab.root,
        "dashboard.ipynb",
        [
            f"import math, time\nimport nbws\nprices_stream = nbws.stream({STREAM!r})",
            f"""
from nbws.widgets import LiveChart, LiveTable, StreamMonitor
table = LiveTable({STREAM!r}, columns=["offset", "symbol", "price", "note"], max_rows=200)
chart = LiveChart({STREAM!r}, x="offset", y=["price", "average"], window=300, title="price")
monitor = StreamMonitor({STREAM!r})
display(table, chart, monitor)
""",
            """
price, prices = 100.0, []
for i in range(120):
    price += 3 * math.sin(i / 7) + (i % 5 - 2) * 0.4
    average = round(100 + 15 * math.sin(i / 20), 2)
    prices.append({"symbol": "NBWS", "price": round(price, 2), "average": average,
                    "note": f"kernel-{i}"})
for payload in prices:
    prices_stream.publish(payload)
prices_stream.flush(timeout=30)
""",
            f"prices_stream.publish({{'symbol': 'XSS', 'note': {XSS!r}}})\n"
            "prices_stream.flush(timeout=30)",
            "time.sleep(120)",
        ],
    )


def _kernel_id(page: Page) -> str:
    return str(
        page.evaluate(
            "() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.id"
        )
    )


def _kernel_state(lab: LabServer, kernel: str) -> str:
    status, body = lab.api("GET", f"api/kernels/{kernel}")
    assert status == 200, (status, body)
    return str(body["execution_state"])


def _wait_kernel(lab: LabServer, kernel: str, state: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while _kernel_state(lab, kernel) != state:
        assert time.monotonic() < deadline, f"kernel never became {state}"
        time.sleep(0.1)


def test_live_dashboard(page: Page, lab: LabServer) -> None:
    name = _notebook(lab)
    open_notebook(page, lab, name)
    run_cell(page, 0)
    run_cell(page, 1)
    table = page.locator(".nbws-table")
    chart = page.locator(".nbws-chart")
    monitor = page.locator(".nbws-monitor")
    expect(table.locator(".nbws-status")).to_have_attribute("data-state", "live")
    expect(chart.locator(".nbws-status")).to_have_attribute("data-state", "live")

    # Published from the kernel: rows and points appear in the browser.
    run_cell(page, 2)
    expect(table.locator(".nbws-row", has_text="kernel-119")).to_be_visible()
    expect(table).to_have_attribute("data-received", "120")
    expect(chart).to_have_attribute("data-points", "120")
    expect(chart.locator("canvas")).to_be_visible()
    expect(monitor.locator('[data-stat="offset"]')).to_have_text("119")
    # The three views share the page's one connection: one subscriber on the server.
    expect(monitor.locator('[data-stat="subscribers"]')).to_have_text("1")

    # A hostile payload is shown as text, never parsed as HTML.
    run_cell(page, 3)
    cell = table.locator(".nbws-row .nbws-cell", has_text="onerror")
    expect(cell).to_have_text(XSS)
    assert table.locator("img").count() == 0
    assert page.evaluate("() => window.__nbwsXss") is None
    widgets = page.locator(".jp-Cell").nth(1)
    screenshot(widgets, "dashboard")

    # The kernel is busy for two minutes; another process publishes; the views update.
    kernel = _kernel_id(page)
    start_cell(page, 4)
    _wait_kernel(lab, kernel, "busy")
    for i in range(5):
        lab.publish(STREAM, {"symbol": "EXT", "price": 150 + i, "note": f"outside-{i}"})
    expect(table.locator(".nbws-row", has_text="outside-4")).to_be_visible()
    expect(chart).to_have_attribute("data-points", "126")
    assert _kernel_state(lab, kernel) == "busy"
    expect(monitor.locator('[data-stat="offset"]')).to_have_text("125")
    expect(monitor.locator('[data-stat="next"]')).to_have_text("126")
    screenshot(page.locator(".jp-NotebookPanel"), "dashboard-kernel-busy")
    screenshot(widgets, "dashboard-kernel-busy-widgets")
    status, _ = lab.api("POST", f"api/kernels/{kernel}/interrupt")
    assert status == 204
    _wait_kernel(lab, kernel, "idle")

    # Saved and reloaded: the views are rebuilt from the widget models kept by the kernel
    # (the saved outputs only name them) and replay the stream's history.
    page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
    expect(page.locator(".jp-mod-dirty")).to_have_count(0)
    page.reload()
    wait_for_notebook(page, name)
    table = page.locator(".nbws-table")
    expect(table.locator(".nbws-row", has_text="outside-4")).to_be_visible()
    expect(table).to_have_attribute("data-received", "126")
    expect(page.locator(".nbws-chart")).to_have_attribute("data-points", "126")
    # The replay is over: the status says so instead of "replaying 126 messages".
    for view in (table, page.locator(".nbws-chart")):
        expect(view.locator(".nbws-status-text")).to_have_text("live")
    lab.publish(STREAM, {"symbol": "EXT", "price": 160, "note": "after-reload"})
    expect(table.locator(".nbws-row", has_text="after-reload")).to_be_visible()
    screenshot(page.locator(".jp-Cell").nth(1), "dashboard-after-reload")


BURST = 20_000


def _publish_burst(lab: LabServer, stream: str, count: int) -> None:
    """``count`` publishes as fast as one connection sends them; only the last is acked."""
    with connect(lab.jupyter.ws_url("nbws/ws"), subprotocols=["nbws.v1"]) as ws:
        assert json.loads(ws.recv())["type"] == "welcome"
        for i in range(count - 1):
            ws.send(
                json.dumps(
                    {
                        "type": "publish",
                        "stream": stream,
                        "payload": {"v": i % 97, "note": f"burst-{i}"},
                    }
                )
            )
        ws.send(
            json.dumps(
                {
                    "type": "publish",
                    "stream": stream,
                    "producer": "burst",
                    "seq": 1,
                    "payload": {"v": 0, "note": f"burst-{count - 1}"},
                }
            )
        )
        while json.loads(ws.recv(timeout=30))["type"] != "ack":
            pass


def test_a_burst_is_coalesced_into_bounded_views(page: Page, lab: LabServer) -> None:
    stream = "e2e-burst"
    name = write_notebook(
        lab.root,
        "burst.ipynb",
        [
            "from nbws.widgets import LiveChart, LiveTable\n"
            f"display(LiveTable({stream!r}, max_rows=100), "
            f"LiveChart({stream!r}, x='offset', y='v', window=500))",
        ],
    )
    open_notebook(page, lab, name)
    run_cell(page, 0)
    table, chart = page.locator(".nbws-table"), page.locator(".nbws-chart")
    expect(table.locator(".nbws-status")).to_have_attribute("data-state", "live")
    expect(chart.locator(".nbws-status")).to_have_attribute("data-state", "live")
    started = time.monotonic()
    _publish_burst(lab, stream, BURST)
    expect(table.locator(".nbws-row", has_text=f"burst-{BURST - 1}")).to_be_visible(timeout=60_000)
    expect(chart).to_have_attribute("data-points", "500", timeout=60_000)
    print(f"\n{BURST} messages published and shown in {time.monotonic() - started:.1f} s")
    for view in (table, chart):
        page.wait_for_function(
            "([node, total]) => Number(node.dataset.received) + Number(node.dataset.missed)"
            " === total",
            arg=[view.element_handle(), BURST],
        )
    assert table.get_attribute("data-rows") == "100"
    assert table.locator(".nbws-row").count() <= 100  # virtualised: only rows in view exist
    # Pooled rows: the displayed ones, top to bottom, are consecutive offsets ending with
    # the newest (a row that left the view is not displayed, however its element is reused).
    shown = table.evaluate(
        """node => [...node.querySelectorAll('.nbws-row')]
            .filter(row => getComputedStyle(row).display !== 'none')
            .map(row => [row.getBoundingClientRect().top, Number(row.dataset.offset)])
            .sort((a, b) => a[0] - b[0]).map(([, offset]) => offset)"""
    )
    assert shown == list(range(shown[0], BURST)), shown
    print(
        f"table: received {table.get_attribute('data-received')}, "
        f"skipped unseen {table.get_attribute('data-skipped')}, "
        f"missed (gaps) {table.get_attribute('data-missed')}"
    )
    screenshot(page.locator(".jp-Cell").nth(0), "burst")


# Runs before the page's scripts: keeps every WebSocket and what it sends, so the test can
# drop a view's connection the way a network failure would and read its resubscribe.
_TRACK_SOCKETS = """
window.__sockets = [];
const Native = window.WebSocket;
window.WebSocket = class extends Native {
  constructor(...args) { super(...args); this.sent = []; window.__sockets.push(this); }
  send(data) { this.sent.push(data); return super.send(data); }
};
"""


def test_a_dropped_connection_resumes_after_the_last_offset(page: Page, lab: LabServer) -> None:
    stream = "e2e-resume"
    for i in range(5):
        lab.publish(stream, {"note": f"before-{i}"})
    name = write_notebook(
        lab.root,
        "resume.ipynb",
        [
            f"from nbws.widgets import LiveTable\nLiveTable({stream!r}, max_rows=50)",
        ],
    )
    page.add_init_script(_TRACK_SOCKETS)
    open_notebook(page, lab, name)
    run_cell(page, 0)
    table = page.locator(".nbws-table")
    expect(table.locator(".nbws-row", has_text="before-4")).to_be_visible()
    subscribes = """() => window.__sockets.filter(s => s.url.includes('/nbws/ws'))
        .flatMap(s => s.sent.map(m => JSON.parse(m))).filter(m => m.type === 'subscribe')"""
    [first] = page.evaluate(subscribes)
    assert first["since"] == -50 and "epoch" not in first

    page.evaluate("""() => window.__sockets.filter(s => s.url.includes('/nbws/ws'))
        .forEach(s => s.close(4000, 'network lost (test)'))""")
    for i in range(3):
        lab.publish(stream, {"note": f"while-away-{i}"})
    expect(table.locator(".nbws-row", has_text="while-away-2")).to_be_visible()
    # Resumed, and the three messages missed meanwhile have arrived: no "replaying" left.
    resumed = table.locator(".nbws-status-text")
    expect(resumed).to_have_text("live again, resumed at offset 5")
    _, again = page.evaluate(subscribes)
    assert again["since"] == 5 and again["epoch"]
    expect(table).to_have_attribute("data-received", "8")  # nothing twice
    for i in range(3):
        expect(table.locator(".nbws-row", has_text=f"while-away-{i}")).to_have_count(1)
