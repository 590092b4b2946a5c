"""The anywidget views in real front ends, in Chromium: JupyterLab 4 with nbws (direct),
Notebook 7, Voila and marimo. Each: the widget renders (never "Error displaying widget"),
the newest of the 200 rows published from the kernel appears, the kernel's flush succeeds,
the view's transport line names the transport, and the kernel's ``widget.transport`` says
the same."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from .browser import TIMEOUT_MS, open_notebook, run_cell, wait_for_notebook
from .frontends import (
    ROWS,
    FrontEnd,
    marimo_app,
    read_report,
    secret_path,
    start_marimo,
    start_notebook7,
    start_voila,
    widget_cells,
    write_cells,
)
from .lab import PAGE_CONFIG, LabServer, start_lab

NEWEST = f"row-{ROWS - 1}"


def wait_for_report(report: Path, timeout: float = 60) -> str | None:
    """The transport the kernel's widget reported (polled with a deadline)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = read_report(report)
        if value:
            return value
        time.sleep(0.2)
    return read_report(report)


_PAGE_TEXT = """() => {
    const parts = [document.documentElement.outerHTML];
    const walk = root => {
        for (const node of root.querySelectorAll('*')) {
            if (node.shadowRoot) { parts.push(node.shadowRoot.innerHTML); walk(node.shadowRoot); }
        }
    };
    walk(document);
    return parts.join('\\n');
}"""


def check_token_not_shown(page: Page, report: Path) -> None:
    """The kernel-hosted server's token reached the view in a custom message only: it is
    nowhere in the page (DOM, shadow roots, widget state rendered into the page)."""
    token = secret_path(report).read_text()
    assert len(token) >= 16, "the test app did not record the token"
    assert token not in page.evaluate(_PAGE_TEXT)


def check_view(page: Page, transport: str, report: Path) -> None:
    """What every front end must show (see the module docstring)."""
    table = page.locator(".nbws-table")
    expect(table.locator(".nbws-row", has_text=NEWEST)).to_be_visible(timeout=TIMEOUT_MS)
    line = page.locator(".nbws-transport")
    expect(line).to_have_attribute("data-transport", transport, timeout=TIMEOUT_MS)
    expect(line).to_contain_text(transport)
    assert page.get_by_text("Error displaying widget").count() == 0
    assert wait_for_report(report) == transport
    # Neither the view nor the kernel shows a token.
    assert "token=" not in line.inner_text()


def outputs_text(outputs: list[dict[str, object]]) -> str:
    return "".join(str(o.get("text", "")) for o in outputs)


def test_jupyterlab_with_nbws_is_direct(page: Page, lab: LabServer, tmp_path: Path) -> None:
    report = tmp_path / "lab-transport.json"
    name = "frontend-lab.ipynb"
    write_cells(lab.root, name, widget_cells("fe-lab", report))
    open_notebook(page, lab, name)
    run_cell(page, 0)
    assert f"flushed {ROWS}" in outputs_text(run_cell(page, 1))
    check_view(page, "direct", report)


@pytest.fixture(scope="module")
def lab_without_nbws_frontend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    """JupyterLab with the nbws labextension disabled (its page config), nbws's server
    extension still on: the widgets must not need the labextension."""
    base = tmp_path_factory.mktemp("lab-no-ext")
    server = start_lab(base, token=secrets.token_hex(16))
    disabled = {**PAGE_CONFIG["disabledExtensions"], "nbws": True}
    page_config = base / "config" / "labconfig" / "page_config.json"
    page_config.write_text(json.dumps({**PAGE_CONFIG, "disabledExtensions": disabled}))
    yield server
    server.stop()


def test_jupyterlab_without_the_nbws_labextension_renders_widgets(
    page: Page, lab_without_nbws_frontend: LabServer, tmp_path: Path
) -> None:
    lab = lab_without_nbws_frontend
    report = tmp_path / "noext-transport.json"
    name = "frontend-noext.ipynb"
    write_cells(lab.root, name, widget_cells("fe-noext", report))
    open_notebook(page, lab, name)
    disabled = page.evaluate(
        "() => window.jupyterapp.hasPlugin('nbws:streams-panel') &&"
        " window.jupyterapp.isPluginActivated('nbws:streams-panel')"
    )
    assert disabled is False, "the nbws labextension is still active"
    run_cell(page, 0)
    assert f"flushed {ROWS}" in outputs_text(run_cell(page, 1))
    check_view(page, "direct", report)


@pytest.fixture(scope="module")
def notebook7(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FrontEnd]:
    front = start_notebook7(tmp_path_factory.mktemp("nb7"), token=secrets.token_hex(16))
    yield front
    front.stop()


def test_notebook7_is_direct(page: Page, notebook7: FrontEnd, tmp_path: Path) -> None:
    assert notebook7.jupyter is not None
    report = tmp_path / "nb7-transport.json"
    name = "frontend-nb7.ipynb"
    write_cells(Path(notebook7.jupyter.root_dir), name, widget_cells("fe-nb7", report))
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(f"{notebook7.url}notebooks/{name}?token={notebook7.jupyter.token}")
    wait_for_notebook(page, name)
    run_cell(page, 0)
    assert f"flushed {ROWS}" in outputs_text(run_cell(page, 1))
    check_view(page, "direct", report)


def test_voila(page: Page, tmp_path: Path) -> None:
    report = tmp_path / "voila-transport.json"
    (tmp_path / "root").mkdir()
    notebook = write_cells(tmp_path / "root", "app.ipynb", widget_cells("fe-voila", report))
    voila = start_voila(tmp_path, notebook)
    try:
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(voila.url)
        expect(page.get_by_text(f"flushed {ROWS}")).to_be_visible(timeout=TIMEOUT_MS)
        check_view(page, "kernel-hosted", report)
        check_token_not_shown(page, report)
    finally:
        voila.stop()


def test_marimo(page: Page, tmp_path: Path) -> None:
    report = tmp_path / "marimo-transport.json"
    (tmp_path / "root").mkdir()
    app = tmp_path / "root" / "app.py"
    app.write_text(marimo_app("fe-marimo", report))
    marimo = start_marimo(tmp_path, app)
    try:
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(marimo.url)
        expect(page.get_by_text(f"flushed {ROWS}")).to_be_visible(timeout=TIMEOUT_MS)
        check_view(page, "kernel-hosted", report)
        check_token_not_shown(page, report)
    finally:
        marimo.stop()
