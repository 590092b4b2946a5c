"""Views say why they cannot receive: a missing stream, refused credentials, a server gone.

The page here authenticates with its login cookie only (the token is taken out of the page
config, as for a password-protected server), so clearing the cookies makes every new
request unauthorised while the kernel's open connection still runs cells.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from .browser import open_notebook, run_cell, screenshot
from .lab import LabServer, start_lab, write_notebook

STREAM = "errors-live"
MISSING = "errors-missing"


@pytest.fixture
def strict_lab(tmp_path: Path) -> Iterator[LabServer]:
    """A lab whose unknown streams are refused (no auto-creation), and which drops a page's
    connection after 2 s without a data message from it, so the page has to connect again."""
    server = start_lab(
        tmp_path,
        token=secrets.token_hex(16),
        args=("--Nbws.auto_create_streams=False", "--Nbws.idle_timeout=2"),
    )
    yield server
    server.stop()


# Runs before JupyterLab reads its page config: drop the token from it.
_DROP_TOKEN = """
new MutationObserver((records, observer) => {
  const node = document.getElementById('jupyter-config-data');
  if (node && node.textContent.includes('"token"')) {
    node.textContent = node.textContent.replace(/"token": "[^"]*"/, '"token": ""');
    observer.disconnect();
  }
}).observe(document, {childList: true, subtree: true});
"""


def test_views_explain_why_they_cannot_receive(page: Page, strict_lab: LabServer) -> None:
    lab = strict_lab
    status, _ = lab.api("POST", f"nbws/api/streams/{STREAM}", {})
    assert status == 201
    lab.publish(STREAM, {"note": "before-errors"})
    name = write_notebook(
        lab.root,
        "errors.ipynb",
        [
            f"from nbws.widgets import LiveTable\nLiveTable({STREAM!r})",
            f"LiveTable({MISSING!r})",
            f"LiveTable({STREAM!r}, max_rows=10)",
        ],
    )
    page.goto(lab.url("api/status"))  # the token in the URL sets the login cookie
    page.add_init_script(_DROP_TOKEN)
    open_notebook(page, lab, name, token=False)
    assert page.evaluate("() => window.jupyterapp.serviceManager.serverSettings.token") == ""
    tables = page.locator(".nbws-table")

    run_cell(page, 0)
    expect(tables.nth(0).locator(".nbws-row", has_text="before-errors")).to_be_visible()
    expect(tables.nth(0).locator(".nbws-status")).to_have_attribute("data-state", "live")

    run_cell(page, 1)
    missing = tables.nth(1).locator(".nbws-status")
    expect(missing).to_contain_text(f'stream "{MISSING}" does not exist')
    expect(missing).to_have_class(re.compile("nbws-mod-problem"))

    # The views share the page's connection: a new view joins it; once the server drops
    # it (idle), connecting again without the cookie is refused, and every view says so.
    page.context.clear_cookies()
    run_cell(page, 2)
    expect(tables.nth(2).locator(".nbws-row", has_text="before-errors")).to_be_visible()
    refused = tables.nth(2).locator(".nbws-status")
    expect(refused).to_contain_text("not authorised (403)", timeout=20_000)
    expect(tables.nth(0).locator(".nbws-status")).to_contain_text("not authorised (403)")
    screenshot(page.locator(".jp-NotebookPanel"), "connection-errors")

    lab.stop()
    expect(tables.nth(0).locator(".nbws-status")).to_contain_text("server gone", timeout=30_000)
    screenshot(page.locator(".jp-NotebookPanel"), "connection-errors-server-gone")
