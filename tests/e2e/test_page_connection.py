"""One WebSocket per page: a notebook's LiveTable, LiveChart and StreamMonitor on one
stream, a LiveTable on a second, a StreamMonitor on a third, and the Streams panel's
viewers of the second and third all share one connection to ``nbws/ws``; when the server
drops it, every view resumes where it stopped.

The drop is the server's own: this lab closes connections after 2 s without a data message
from the page (``Nbws.idle_timeout``, close 1001), so a page that only listens is dropped
again and again while messages keep being published, some of them while it is away.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Locator, Page, WebSocket, expect

from .browser import open_notebook, run_cell, screenshot
from .lab import LabServer, start_lab, write_notebook

MAIN = "e2e-page/main"
SIDE = "e2e-page/side"
QUIET = "e2e-page/quiet"
BEFORE = 30
DURING = 40
SIDE_BEFORE = 10
SIDE_DURING = 10

STATS = """() => {
  const registry = globalThis[Symbol.for('nbws.page.v1')];
  return registry ? [...registry.connections.values()].map(c => ({ ...c.stats })) : [];
}"""


@pytest.fixture(scope="module")
def idle_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    """A lab whose server closes a WebSocket after 2 s without a data message from it."""
    server = start_lab(
        tmp_path_factory.mktemp("idle-lab"),
        token=secrets.token_hex(16),
        args=("--Nbws.idle_timeout=2",),
    )
    yield server
    server.stop()


class SocketWatch:
    """The page's WebSockets to ``nbws/ws``: how many were opened, how many are open."""

    def __init__(self, page: Page) -> None:
        self.opened = 0
        self.open = 0
        self.most_open = 0
        page.on("websocket", self._on_websocket)

    def _on_websocket(self, ws: WebSocket) -> None:
        if "/nbws/ws" not in ws.url:
            return
        self.opened += 1
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        ws.on("close", self._on_close)

    def _on_close(self, _ws: WebSocket) -> None:
        self.open -= 1


def _stats(page: Page) -> list[dict[str, Any]]:
    return list(page.evaluate(STATS))


def _viewer(page: Page, stream: str) -> Locator:
    """The table of the Streams panel's viewer of ``stream``."""
    label = page.locator(".nbws-status-label", has_text=f"LiveTable · {stream}")
    return page.locator(".nbws-stream-viewer .nbws-table", has=label)


def _publish_slowly(lab: LabServer, stream: str, first: int, count: int, every: float) -> None:
    for i in range(first, first + count):
        lab.publish(stream, {"n": i, "note": f"{stream}-{i}"})
        time.sleep(every)  # pacing a publisher, not waiting for the page


def test_one_connection_per_page_resumed_after_the_server_drops_it(
    page: Page, idle_lab: LabServer
) -> None:
    lab = idle_lab
    for i in range(BEFORE):
        lab.publish(MAIN, {"n": i, "note": f"{MAIN}-{i}"})
    for i in range(SIDE_BEFORE):
        lab.publish(SIDE, {"n": i, "note": f"{SIDE}-{i}"})
    for i in range(5):
        lab.publish(QUIET, {"n": i, "note": f"{QUIET}-{i}"})
    name = write_notebook(
        lab.root,
        "page-connection.ipynb",
        [
            "from nbws.widgets import LiveChart, LiveTable, StreamMonitor\n"
            f"display(LiveTable({MAIN!r}, columns=['offset', 'n', 'note'], max_rows=500),\n"
            f"        LiveChart({MAIN!r}, x='offset', y='n', window=500),\n"
            f"        StreamMonitor({MAIN!r}),\n"
            f"        LiveTable({SIDE!r}, columns=['offset', 'n', 'note'], max_rows=500),\n"
            f"        StreamMonitor({QUIET!r}))",
        ],
    )
    sockets = SocketWatch(page)
    open_notebook(page, lab, name)
    run_cell(page, 0)
    tables = page.locator(".jp-Notebook .nbws-table")
    main_table, side_table = tables.nth(0), tables.nth(1)
    chart = page.locator(".nbws-chart")
    monitor = page.locator(".nbws-monitor").first
    expect(main_table).to_have_attribute("data-received", str(BEFORE))
    expect(side_table).to_have_attribute("data-received", str(SIDE_BEFORE))
    expect(chart).to_have_attribute("data-points", str(BEFORE))

    # The Streams panel's viewers join the same connection. The quiet stream's only view so
    # far is a monitor (live only), so its viewer's history comes from a second subscribe
    # that replaces the first on the server; the side stream's from what the page kept.
    page.get_by_role("tab", name="nbws streams").click()
    page.locator(f'.nbws-streams-row[data-stream="{QUIET}"]').get_by_role(
        "button", name=QUIET
    ).click()
    quiet_viewer = _viewer(page, QUIET)
    expect(quiet_viewer).to_have_attribute("data-received", "5")
    expect(quiet_viewer.locator(".nbws-row", has_text=f"{QUIET}-4")).to_be_visible()
    page.locator(f'.nbws-streams-row[data-stream="{SIDE}"]').get_by_role(
        "button", name=SIDE
    ).click()
    viewer = _viewer(page, SIDE)
    expect(viewer).to_have_attribute("data-received", str(SIDE_BEFORE))
    expect(page.locator(".nbws-streams-panel .nbws-panel-page")).to_contain_text(
        "7 views on 3 streams over 1 connection"
    )
    # One WebSocket for seven views; the server sees one subscriber per stream.
    stats = _stats(page)
    assert len(stats) == 1, stats
    assert stats[0]["views"] == 7 and stats[0]["streams"] == 3, stats
    assert sockets.most_open == 1
    expect(monitor.locator('[data-stat="subscribers"]')).to_have_text("1")

    # Publish while the server drops the listening page every couple of seconds.
    publishers = [
        threading.Thread(target=_publish_slowly, args=(lab, MAIN, BEFORE, DURING, 0.15)),
        threading.Thread(target=_publish_slowly, args=(lab, SIDE, SIDE_BEFORE, SIDE_DURING, 0.6)),
    ]
    for thread in publishers:
        thread.start()
    for thread in publishers:
        thread.join(timeout=120)
    deadline = time.monotonic() + 60
    while _stats(page)[0]["reconnects"] < 1:
        assert time.monotonic() < deadline, f"the server never dropped the page: {_stats(page)}"
        page.wait_for_timeout(200)

    total, side_total = BEFORE + DURING, SIDE_BEFORE + SIDE_DURING
    # Every view resumed: the newest rows are shown and nothing is missing or doubled.
    # The viewer's tab is in front: its rows first, then the notebook's.
    expect(viewer).to_have_attribute("data-received", str(side_total), timeout=60_000)
    expect(viewer.locator(".nbws-row", has_text=f"{SIDE}-{side_total - 1}")).to_be_visible()
    page.get_by_role("tab", name=name).click()
    expect(main_table).to_have_attribute("data-received", str(total), timeout=60_000)
    expect(main_table.locator(".nbws-row", has_text=f"{MAIN}-{total - 1}")).to_be_visible()
    expect(chart).to_have_attribute("data-points", str(total))
    expect(monitor.locator('[data-stat="offset"]')).to_have_text(str(total - 1))
    expect(side_table).to_have_attribute("data-received", str(side_total))
    expect(side_table.locator(".nbws-row", has_text=f"{SIDE}-{side_total - 1}")).to_be_visible()
    for view in (main_table, side_table, chart, viewer):
        assert view.get_attribute("data-missed") == "0"
    for status in page.locator(".jp-Notebook .nbws-status").all():
        expect(status).to_have_attribute("data-state", "live", timeout=30_000)
    screenshot(page, "page-connection-resumed")

    # Every WebSocket the page opened to nbws/ws is one the page connection opened, and
    # never two at once.
    deadline = time.monotonic() + 30
    while sockets.opened != _stats(page)[0]["sockets"]:
        assert time.monotonic() < deadline, (sockets.opened, _stats(page))
        page.wait_for_timeout(100)
    stats = _stats(page)
    print(f"\npage connection after the drops: {stats[0]}; sockets seen {sockets.opened}")
    assert stats[0]["reconnects"] >= 1
    assert sockets.most_open == 1, "a second WebSocket was open at the same time"
