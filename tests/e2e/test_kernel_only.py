"""Kernel-only installs in a real browser: the Jupyter server's environment has no nbws
(``kernel_envs.py`` builds it), the kernel's has (``%pip install nbws`` in a notebook).

- server with anywidget, page can reach the kernel's server → kernel-hosted;
- the same with the kernel's server unreachable from the page (Chromium sends everything
  but the Jupyter page through a proxy that does not exist) → relay through the kernel;
- server with ipywidgets only → the kernel-rendered fallback with its notice.

Each: the newest of 200 rows published by the kernel appears, the flush succeeds, and the
view says which transport (or fallback) is in use. No iopub rate-limit notice appears.
"""

from __future__ import annotations

import secrets
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright, expect

from .browser import CHROMIUM, CHROMIUM_ARGS, open_notebook, run_cell, screenshot
from .kernel_envs import start_kernel_only_lab, write
from .lab import LabServer

ROWS = 200
IOPUB_NOTICE = "IOPub message rate exceeded"


def _cells(stream: str) -> list[str]:
    return [
        f"import nbws\nfrom nbws.widgets import LiveTable\nrows = nbws.stream({stream!r})",
        f"table = LiveTable({stream!r}, columns=['offset', 'note'], max_rows=20)\ntable",
        f"for i in range({ROWS}):\n"
        "    rows.publish({'i': i, 'note': f'row-{i}'})\n"
        "rows.flush(timeout=60)\n"
        "print('flushed', nbws.endpoint().kind)",
        "print('transport:', table.transport)",
    ]


def _text(outputs: list[dict[str, object]]) -> str:
    return "".join(str(o.get("text", "")) for o in outputs)


def _lab(tmp_path_factory: pytest.TempPathFactory, kind: str, **env: str) -> Iterator[LabServer]:
    lab = start_kernel_only_lab(
        tmp_path_factory.mktemp(f"lab-{kind}"), kind, secrets.token_hex(16), **env
    )
    yield lab
    lab.stop()


@pytest.fixture(scope="module")
def anywidget_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    yield from _lab(tmp_path_factory, "anywidget")


@pytest.fixture(scope="module")
def widgets_only_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    yield from _lab(tmp_path_factory, "widgets-only", NBWS_FALLBACK_AFTER="2")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def walled_page(playwright: Playwright, anywidget_lab: LabServer) -> Iterator[Page]:
    """A page that reaches only its Jupyter server: every other address, loopback too, goes
    to a proxy port nothing listens on (so the kernel's own server is unreachable)."""
    browser: Browser = playwright.chromium.launch(
        executable_path=CHROMIUM,
        headless=True,
        args=[
            *CHROMIUM_ARGS,
            f"--proxy-server=http://127.0.0.1:{_closed_port()}",
            f"--proxy-bypass-list=<-loopback>;127.0.0.1:{anywidget_lab.port}",
        ],
    )
    context = browser.new_context(viewport={"width": 1400, "height": 1200})
    page = context.new_page()
    yield page
    screenshot(page, "kernel-only-relay")
    context.close()
    browser.close()


def _no_iopub_notice(page: Page, lab: LabServer) -> None:
    expect(page.get_by_text(IOPUB_NOTICE)).to_have_count(0)
    assert IOPUB_NOTICE not in lab.log()


def _live_table(page: Page, lab: LabServer, name: str, transport: str) -> None:
    open_notebook(page, lab, name)
    run_cell(page, 0)
    run_cell(page, 1)
    line = page.locator(".nbws-transport")
    expect(line).to_have_attribute("data-transport", transport, timeout=60_000)
    flushed = _text(run_cell(page, 2))
    assert "flushed embedded" in flushed, flushed
    table = page.locator(".nbws-table")
    expect(table.locator(f"[data-offset='{ROWS - 1}']")).to_contain_text(f"row-{ROWS - 1}")
    expect(page.get_by_text("Error displaying widget")).to_have_count(0)
    assert f"transport: {transport}" in _text(run_cell(page, 3))
    _no_iopub_notice(page, lab)


def test_kernel_hosted_without_nbws_in_the_server_environment(
    page: Page, anywidget_lab: LabServer
) -> None:
    name = write(anywidget_lab, "kernel-hosted.ipynb", _cells("ko-hosted"))
    _live_table(page, anywidget_lab, name, "kernel-hosted")
    screenshot(page, "kernel-only-hosted")


def test_relay_when_the_page_cannot_reach_the_kernels_server(
    walled_page: Page, anywidget_lab: LabServer
) -> None:
    name = write(anywidget_lab, "relay.ipynb", _cells("ko-relay"))
    _live_table(walled_page, anywidget_lab, name, "relay")
    expect(walled_page.locator(".nbws-transport")).to_contain_text("through the kernel")


def _monitor_cells(stream: str) -> list[str]:
    return [
        f"import nbws\nfrom nbws.widgets import StreamMonitor\nrows = nbws.stream({stream!r})\n"
        "for i in range(50):\n    rows.publish({'i': i})\nrows.flush(timeout=60)",
        f"m = StreamMonitor({stream!r})\nm",
    ]


def _monitor_figures(page: Page, lab: LabServer, name: str, transport: str) -> None:
    """The monitor's server figures come over its own link (nbws.v1 ``info``), not REST on
    the page's server, so they show on every transport."""
    open_notebook(page, lab, name)
    run_cell(page, 0)
    run_cell(page, 1)
    line = page.locator(".nbws-transport")
    expect(line).to_have_attribute("data-transport", transport, timeout=60_000)
    monitor = page.locator(".nbws-monitor")
    expect(monitor.locator('[data-stat="subscribers"]')).to_have_text("1", timeout=30_000)
    expect(monitor.locator('[data-stat="history"]')).to_contain_text("offsets 0-49")


def test_monitor_figures_kernel_hosted(page: Page, anywidget_lab: LabServer) -> None:
    name = write(anywidget_lab, "monitor-hosted.ipynb", _monitor_cells("ko-mon-hosted"))
    _monitor_figures(page, anywidget_lab, name, "kernel-hosted")


def test_monitor_figures_relay(walled_page: Page, anywidget_lab: LabServer) -> None:
    name = write(anywidget_lab, "monitor-relay.ipynb", _monitor_cells("ko-mon-relay"))
    _monitor_figures(walled_page, anywidget_lab, name, "relay")


def _fallback(page: Page, lab: LabServer, name: str) -> None:
    notice = page.locator(".nbws-fallback-notice")
    expect(notice).to_contain_text("pip install anywidget", timeout=60_000)
    expect(notice).to_contain_text("pip install nbws")
    flushed = _text(run_cell(page, 2))
    assert "flushed embedded" in flushed, flushed
    newest = page.locator(f".nbws-fallback-table tr[data-offset='{ROWS - 1}']")
    expect(newest).to_contain_text(f"row-{ROWS - 1}", timeout=60_000)
    expect(page.get_by_text("Error displaying widget")).to_have_count(0)
    _no_iopub_notice(page, lab)


def test_kernel_rendered_fallback_without_anywidget_in_the_server_environment(
    page: Page, widgets_only_lab: LabServer
) -> None:
    """The kernel sees that its server serves ipywidgets but not anywidget: the
    kernel-rendered view is the output from the start, never an error."""
    cells = _cells("ko-fallback")
    # The hello watch would take 10 minutes: the view below can only be the immediate one.
    cells[0] = "import os\nos.environ['NBWS_FALLBACK_AFTER'] = '600'\n" + cells[0]
    name = write(widgets_only_lab, "fallback.ipynb", cells)
    open_notebook(page, widgets_only_lab, name)
    run_cell(page, 0)
    run_cell(page, 1)
    expect(page.locator(".nbws-fallback-notice")).to_be_visible()
    expect(page.get_by_text("Error displaying widget")).to_have_count(0)
    _fallback(page, widgets_only_lab, name)
    screenshot(page, "kernel-only-fallback")


def test_kernel_rendered_fallback_when_no_view_says_hello(
    page: Page, widgets_only_lab: LabServer
) -> None:
    """A kernel that cannot ask its server (as a remote one): the widget is displayed,
    no view greets the kernel, and the display becomes the kernel-rendered view."""
    cells = _cells("ko-fallback-hello")
    cells[0] = "import os\nos.environ.pop('JPY_PARENT_PID', None)\n" + cells[0]
    name = write(widgets_only_lab, "fallback-hello.ipynb", cells)
    open_notebook(page, widgets_only_lab, name)
    run_cell(page, 0)
    run_cell(page, 1)
    _fallback(page, widgets_only_lab, name)


def test_the_server_environments_have_no_nbws() -> None:
    """The premise: what the servers above run from cannot import nbws."""
    import subprocess

    from .kernel_envs import server_env

    for kind in ("anywidget", "widgets-only"):
        python = server_env(kind)
        found = subprocess.run(
            [str(python), "-c", "import nbws"],
            capture_output=True,
            env={"PATH": "/usr/bin:/bin"},
            cwd="/",
        )
        assert found.returncode != 0, f"{kind}: nbws importable from {Path(python)}"
