"""The Streams side panel lists streams from the REST API and opens a live view of one."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from .browser import screenshot, wait_for_lab
from .lab import LabServer

STREAM = "e2e-panel/sensors"


def test_side_panel_lists_streams_and_opens_a_live_view(page: Page, lab: LabServer) -> None:
    for i in range(3):
        lab.publish(STREAM, {"sensor": "t1", "celsius": 20 + i, "note": f"panel-{i}"})
    wait_for_lab(page, lab)
    page.get_by_role("tab", name="nbws streams").click()
    row = page.locator(f'.nbws-streams-row[data-stream="{STREAM}"]')
    expect(row).to_be_visible()
    cells = row.locator("td")
    expect(cells.nth(0)).to_have_text(STREAM)
    expect(cells.nth(2)).to_have_text("2")  # offset of the newest message
    expect(cells.nth(3)).to_have_text("0")  # nobody subscribed yet

    row.get_by_role("button", name=STREAM).click()
    viewer = page.locator(".nbws-stream-viewer")
    expect(page.get_by_role("tab", name=f"stream: {STREAM}")).to_be_visible()
    expect(viewer.locator(".nbws-row", has_text="panel-2")).to_be_visible()
    expect(viewer.locator(".nbws-table-header")).to_contain_text("celsius")

    lab.publish(STREAM, {"sensor": "t1", "celsius": 30, "note": "panel-live"})
    expect(viewer.locator(".nbws-row", has_text="panel-live")).to_be_visible()
    expect(cells.nth(2)).to_have_text("3")  # the panel polls while it is visible
    expect(cells.nth(3)).to_have_text("1")  # the viewer is a subscriber now
    screenshot(page, "streams-panel")
