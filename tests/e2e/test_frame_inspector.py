"""FrameInspector: the browser's echo connection through the server's frame tap, and a
kernel-side raw connection (nbws.explore) that can send what a browser cannot."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
from playwright.sync_api import Locator, Page, expect

from .browser import open_notebook, run_all, run_cell, screenshot
from .lab import LabServer, write_notebook

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
XSS = '<img src=x onerror="window.__nbwsXss=1">'


def _frames(view: Locator, direction: str, opcode: str, fin: bool) -> Locator:
    return view.locator(
        f'.nbws-frame-row[data-direction="{direction}"][data-opcode="{opcode}"]'
        f'[data-fin="{str(fin).lower()}"]'
    )


def test_browser_inspector_shows_a_fragmented_echo(page: Page, lab: LabServer) -> None:
    name = write_notebook(
        lab.root,
        "inspector.ipynb",
        [
            "from nbws.widgets import FrameInspector\nFrameInspector(endpoint='echo')",
        ],
    )
    open_notebook(page, lab, name)
    run_cell(page, 0)
    view = page.locator(".nbws-inspector")
    expect(view.locator(".nbws-status")).to_have_attribute("data-state", "open")

    # The browser sends one 12-byte text frame; the echo comes back as 3 fragments.
    view.get_by_label("message").fill("abcdefghijkl")
    view.get_by_label("fragments").fill("3")
    view.get_by_role("button", name="Send as N fragments").click()
    expect(view.locator(".nbws-frame-note", has_text="?fragment=4")).to_be_visible()
    sent = _frames(view, "in", "TEXT", True)
    expect(sent).to_have_count(1)
    expect(sent.locator(".nbws-frame-masked")).to_have_text("yes")
    expect(sent.locator(".nbws-frame-length")).to_have_text("12")
    first = _frames(view, "out", "TEXT", False)
    expect(first).to_have_count(1)
    expect(first.locator(".nbws-frame-payload")).to_have_text("abcd")
    expect(_frames(view, "out", "CONT", False).locator(".nbws-frame-payload")).to_have_text("efgh")
    last = _frames(view, "out", "CONT", True)
    expect(last.locator(".nbws-frame-payload")).to_have_text("ijkl")
    expect(last.locator(".nbws-frame-masked")).to_have_text("no")

    # The browser cannot ping, but the server's heartbeat (after 1 s of silence here) and the
    # browser's automatic pong are on the list.
    expect(_frames(view, "out", "PING", True).first).to_be_visible()
    pong = _frames(view, "in", "PONG", True).first
    expect(pong.locator(".nbws-frame-masked")).to_have_text("yes")

    # Payload previews are text, never HTML.
    view.get_by_label("message").fill(XSS)
    view.get_by_role("button", name="Send text").click()
    expect(_frames(view, "out", "TEXT", True).locator(".nbws-frame-payload")).to_have_text(XSS)
    assert view.locator("img").count() == 0
    assert page.evaluate("() => window.__nbwsXss") is None

    # What a browser cannot do is said plainly.
    view.get_by_role("button", name="Ping").click()
    no_ping = view.locator(".nbws-frame-note", has_text="Browsers cannot send WebSocket pings")
    expect(no_ping).to_be_visible()
    view.get_by_label("close code").fill("1001")
    view.get_by_role("button", name="Close").click()
    expect(view.locator(".nbws-frame-note", has_text="1000 or 3000-4999")).to_be_visible()

    view.get_by_label("close code").fill("4001")
    view.get_by_label("reason").fill("done")
    view.get_by_role("button", name="Close").click()
    closing = _frames(view, "in", "CLOSE", True).filter(has_text="4001")
    expect(closing.locator(".nbws-frame-payload")).to_have_text('4001 application "done"')
    expect(_frames(view, "out", "CLOSE", True).filter(has_text="4001")).to_have_count(1)
    expect(view.locator(".nbws-status")).to_have_attribute("data-state", "closed")
    screenshot(view, "frame-inspector-browser")


def test_kernel_inspector_sends_fragments_and_pings(page: Page, lab: LabServer) -> None:
    url = f"ws://127.0.0.1:{lab.port}/nbws/echo?token={lab.token}"
    name = write_notebook(
        lab.root,
        "inspector-kernel.ipynb",
        [
            "from nbws.explore import connect\nfrom nbws.widgets import inspect_connection\n"
            f"conn = connect({url!r})\ninspector = inspect_connection(conn)\ndisplay(inspector)",
            "records = conn.fragments('hello kernel', 3)",
        ],
    )
    open_notebook(page, lab, name)
    run_cell(page, 0)
    view = page.locator(".nbws-inspector")
    expect(view.locator(".nbws-status")).to_have_attribute("data-state", "open")
    run_cell(page, 1)
    # The kernel sent 3 masked fragments; the echo answers with one unmasked frame.
    expect(_frames(view, "out", "TEXT", False)).to_have_count(1)
    expect(_frames(view, "out", "CONT", True)).to_have_count(1)
    expect(_frames(view, "out", "CONT", True).locator(".nbws-frame-masked")).to_have_text("yes")
    echo = _frames(view, "in", "TEXT", True)
    expect(echo.locator(".nbws-frame-payload")).to_have_text("hello kernel")

    # The buttons act in the kernel: a real ping, answered by the server's pong.
    view.get_by_label("message").fill("are you there")
    view.get_by_role("button", name="Ping").click()
    ping = _frames(view, "out", "PING", True).locator(".nbws-frame-payload")
    expect(ping).to_have_text("are you there")
    pong = _frames(view, "in", "PONG", True).locator(".nbws-frame-payload")
    expect(pong).to_have_text("are you there")
    view.get_by_label("close code").fill("1000")
    view.get_by_label("reason").fill("bye")
    view.get_by_role("button", name="Close").click()
    expect(_frames(view, "in", "CLOSE", True).locator(".nbws-frame-payload")).to_have_text(
        '1000 normal closure "bye"'
    )
    screenshot(view, "frame-inspector-kernel")


def test_kernel_inspector_under_run_all_lists_each_frame_once(page: Page, lab: LabServer) -> None:
    """Notebook 04's pattern run in one go: the view attaches while the next cells send
    frames, gets them live, then gets its replay once the kernel is idle. Each frame is
    listed once (it was listed twice: 30 rows for 15 frames)."""
    url = f"ws://127.0.0.1:{lab.port}/nbws/echo?token={lab.token}"
    name = write_notebook(
        lab.root,
        "inspector-run-all.ipynb",
        [
            f"from nbws.explore import connect\nconn = connect({url!r})\nconn",
            "import time\ntime.sleep(2)  # the view attaches while the kernel is busy",
            "for i in range(5):\n    conn.text(f'message {i}')\n    conn.receive()",
            "time.sleep(2)\nconn.text('last')\nconn.receive()",
        ],
    )
    open_notebook(page, lab, name)
    run_all(page)
    view = page.locator(".nbws-inspector")
    expect(view.locator(".nbws-status")).to_have_attribute("data-state", "open")
    texts = view.locator('.nbws-frame-row[data-opcode="TEXT"]')
    expect(texts.filter(has_text="last")).to_have_count(2)  # sent and echoed
    expect(texts).to_have_count(12)
    indices = view.locator(".nbws-frame-row:not(.nbws-frame-header) .nbws-frame-index")
    shown = indices.all_text_contents()
    assert len(shown) == len(set(shown)), shown
    assert [int(i) for i in shown] == sorted(int(i) for i in shown)
    assert view.get_attribute("data-frames") == str(len(shown))


def test_notebook_04_run_all_lists_each_frame_of_its_connection_once(
    page: Page, lab: LabServer
) -> None:
    """The protocol explorer notebook itself, run in one go: its first inspector lists
    exactly the frames its connection recorded, each once (it listed them twice), and
    no output or widget shows the server's token."""
    notebook = nbformat.read(NOTEBOOKS / "04_protocol_explorer.ipynb", as_version=4)
    cells = [c.source for c in notebook.cells if c.cell_type == "code"]
    cells.append("print('recorded', len(conn.records))")
    name = write_notebook(lab.root, "04-run-all.ipynb", cells)
    open_notebook(page, lab, name)
    outputs = run_all(page)
    [recorded] = [
        int(o["text"].split()[1])
        for o in outputs[-1]
        if o.get("output_type") == "stream" and o["text"].startswith("recorded")
    ]
    view = page.locator(".nbws-inspector").first
    expect(view).to_have_attribute("data-frames", str(recorded))
    indices = view.locator(".nbws-frame-row:not(.nbws-frame-header) .nbws-frame-index")
    expect(indices).to_have_count(recorded)
    shown = [int(i) for i in indices.all_text_contents()]
    assert shown == list(range(1, recorded + 1))
    for inspector in page.locator(".nbws-inspector").all():
        assert lab.token not in inspector.inner_text()
    assert lab.token not in json.dumps(outputs)
