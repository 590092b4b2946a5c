"""Driving JupyterLab in Chromium: open a notebook, run cells, read what the views show.

Cells run through JupyterLab's own commands (``window.jupyterapp``, exposed by the test
server), so a cell runs exactly as when the user presses Shift+Enter.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Page, Playwright

from nbws.bench.browser_page import NOTEBOOK_READY

from .lab import LabServer

__all__ = [
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "SCREENSHOTS",
    "launch_chromium",
    "open_notebook",
    "run_cell",
    "screenshot",
    "start_cell",
    "wait_for_lab",
    "wait_for_notebook",
]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
TIMEOUT_MS = 60_000


def launch_chromium(playwright: Playwright) -> Browser:
    """Debian's Chromium, headless; never a downloaded browser."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)


def _workspace() -> str:
    """A fresh JupyterLab workspace, so tabs left open by other tests stay closed."""
    return f"lab/workspaces/e2e-{uuid.uuid4().hex[:8]}"


def wait_for_lab(page: Page, lab: LabServer) -> None:
    """Open JupyterLab (in a fresh workspace) and wait until it is restored."""
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(lab.url(_workspace()))
    page.wait_for_function(
        "() => window.jupyterapp && window.jupyterapp.restored", timeout=TIMEOUT_MS
    )
    page.evaluate("() => window.jupyterapp.restored")


def open_notebook(page: Page, lab: LabServer, name: str, *, token: bool = True) -> None:
    """Open ``name`` in JupyterLab (in a fresh workspace) and wait until its kernel is idle
    (``token=False``: rely on the login cookie the browser already has)."""
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(lab.url(f"{_workspace()}/tree/{name}", token=token))
    wait_for_notebook(page, name)


_RUN = """async ([index, wait]) => {
    const app = window.jupyterapp;
    const panel = app.shell.currentWidget;
    const notebook = panel.content;
    notebook.activeCellIndex = index;
    notebook.deselectAll();
    const done = app.commands.execute('notebook:run-cell');
    if (!wait) return [];
    await done;
    return notebook.widgets[index].model.outputs.toJSON();
}"""


def wait_for_notebook(page: Page, name: str) -> None:
    """Wait until ``name`` is the current notebook and its kernel is idle (after a reload)."""
    page.wait_for_function(NOTEBOOK_READY, arg=name, timeout=TIMEOUT_MS)


def run_cell(page: Page, index: int) -> list[dict[str, Any]]:
    """Run cell ``index`` and wait for it to finish; fails on a Python error."""
    outputs: list[dict[str, Any]] = page.evaluate(_RUN, [index, True])
    for output in outputs:
        if output.get("output_type") == "error":
            trace = "\n".join(output.get("traceback", []))
            raise AssertionError(
                f"cell {index} failed: {output.get('ename')}: {output.get('evalue')}\n{trace}"
            )
    return outputs


_RUN_ALL = """async () => {
    const app = window.jupyterapp;
    const notebook = app.shell.currentWidget.content;
    await app.commands.execute('notebook:run-all-cells');
    return notebook.widgets.map(cell => cell.model.outputs ? cell.model.outputs.toJSON() : []);
}"""


def run_all(page: Page) -> list[list[dict[str, Any]]]:
    """Run every cell in one go ("Run All"), wait until all finished; fails on an error."""
    cells: list[list[dict[str, Any]]] = page.evaluate(_RUN_ALL)
    for index, outputs in enumerate(cells):
        for output in outputs:
            if output.get("output_type") == "error":
                raise AssertionError(
                    f"cell {index} failed: {output.get('ename')}: {output.get('evalue')}"
                )
    return cells


def start_cell(page: Page, index: int) -> None:
    """Start running cell ``index`` without waiting for it (e.g. a long ``time.sleep``)."""
    page.evaluate(_RUN, [index, False])


def screenshot(target: Page | Any, name: str) -> Path:
    """Save a PNG under artifacts/screenshots/ (kept by CI)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    target.screenshot(path=str(path))
    return path
