"""Front ends other than JupyterLab for browser tests: Notebook 7, Voila and marimo, each a
real server process on a free port with isolated Jupyter dirs (as ``lab.py`` does for
``jupyter lab``), plus the small widget app every front-end test shows.

Each test app displays one ``LiveTable``, publishes 200 rows from the kernel, prints
``flushed`` once ``flush`` succeeded, and writes the widget's ``transport`` (set by the view)
to a report file, so a test can read what the kernel sees without driving the kernel (and,
beside it, the token of the server it publishes to, which the page must never show).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from conftest import JupyterProcess, launch_jupyter

from .lab import write_notebook

__all__ = [
    "ROWS",
    "FrontEnd",
    "marimo_app",
    "read_report",
    "secret_path",
    "start_marimo",
    "start_notebook7",
    "start_voila",
    "widget_cells",
    "write_cells",
]

ROWS = 200
START_TIMEOUT = 120.0


def widget_cells(stream: str, report: Path) -> list[str]:
    """The test app's cells: show a LiveTable, report its transport, publish and flush."""
    return [
        textwrap.dedent(
            f"""\
            import json, pathlib
            import nbws
            from nbws.widgets import LiveTable
            table = LiveTable({stream!r}, columns=["offset", "i", "note"], max_rows=50)
            def _report(change):
                pathlib.Path({str(report)!r}).write_text(json.dumps({{"transport": change["new"]}}))
            table.observe(_report, "transport")
            table"""
        ),
        textwrap.dedent(
            f"""\
            rows = nbws.stream({stream!r})
            for i in range({ROWS}):
                rows.publish({{"i": i, "note": f"row-{{i}}"}})
            rows.flush(timeout=60)
            pathlib.Path({str(secret_path(report))!r}).write_text(nbws.endpoint().token or "")
            print("flushed", rows.stats().acked)"""
        ),
    ]


def write_cells(root: Path, name: str, cells: list[str]) -> Path:
    """A notebook of ``cells`` (python3 kernel) at ``root/name``."""
    write_notebook(root, name, cells)
    return root / name


def marimo_app(stream: str, report: Path) -> str:
    """A marimo app with the same table (wrapped by ``mo.ui.anywidget``) and publisher."""
    return textwrap.dedent(
        f"""\
        import marimo

        app = marimo.App()


        @app.cell
        def _():
            import json, pathlib
            import marimo as mo
            import nbws
            from nbws.widgets import LiveTable

            table = LiveTable({stream!r}, columns=["offset", "i", "note"], max_rows=50)

            def _report(change):
                pathlib.Path({str(report)!r}).write_text(json.dumps({{"transport": change["new"]}}))

            table.observe(_report, "transport")
            view = mo.ui.anywidget(table)
            view
            return mo, nbws, pathlib


        # Not a reader of `view`: marimo reruns the cells that read a UI element whenever its
        # value changes (the view setting `transport` does), which would publish again.
        @app.cell
        def _(mo, nbws, pathlib):
            rows = nbws.stream({stream!r})
            for i in range({ROWS}):
                rows.publish({{"i": i, "note": f"row-{{i}}"}})
            rows.flush(timeout=60)
            pathlib.Path({str(secret_path(report))!r}).write_text(nbws.endpoint().token or "")
            mo.md(f"flushed {{rows.stats().acked}}")
            return


        if __name__ == "__main__":
            app.run()
        """
    )


def secret_path(report: Path) -> Path:
    """Where the test app writes the token of the server it publishes to (for the test to
    check that the page never shows it)."""
    return report.with_suffix(".secret")


def read_report(report: Path) -> str | None:
    """The transport the kernel's widget reported, or None before the view set it."""
    try:
        return str(json.loads(report.read_text())["transport"])
    except (OSError, ValueError, KeyError):
        return None


@dataclass
class FrontEnd:
    """A running front-end server: where to point the browser, and how to stop it."""

    name: str
    url: str
    process: subprocess.Popen[bytes] | None
    log_path: Path
    jupyter: JupyterProcess | None = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.jupyter is not None:
            self.jupyter.stop()
            return
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(30)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _isolated_env(base: Path) -> dict[str, str]:
    for sub in ("root", "runtime", "config", "data", "ipython"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    return {
        **os.environ,
        "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
        "JUPYTER_CONFIG_DIR": str(base / "config"),
        "JUPYTER_DATA_DIR": str(base / "data"),
        "IPYTHONDIR": str(base / "ipython"),
        "PYTHONUNBUFFERED": "1",
    }


def _spawn(name: str, base: Path, cmd: list[str], url: str, ready_path: str) -> FrontEnd:
    """Start ``cmd`` and wait until ``url + ready_path`` answers HTTP (any status < 500)."""
    log_path = base / f"{name}.log"
    env = _isolated_env(base)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=base / "root"
        )
    front = FrontEnd(name, url, process, log_path)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited early:\n{front.log()[-3000:]}")
        try:
            with urllib.request.urlopen(url + ready_path, timeout=5):
                return front
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                return front
        except OSError:
            pass
        time.sleep(0.2)
    front.stop()
    raise RuntimeError(f"{name} did not answer in {START_TIMEOUT}s:\n{front.log()[-3000:]}")


def start_notebook7(base: Path, *, token: str) -> FrontEnd:
    """``jupyter notebook`` (Notebook 7) with nbws installed, ``window.jupyterapp`` exposed."""
    jupyter = launch_jupyter(
        base, app="notebook", token=token, args=["--JupyterNotebookApp.expose_app_in_browser=True"]
    )
    return FrontEnd("notebook", jupyter.http_url, None, Path(jupyter.log_path), jupyter=jupyter)


def start_voila(base: Path, notebook: Path) -> FrontEnd:
    """``voila notebook.ipynb``: runs the notebook and serves its outputs (no token)."""
    port = _free_port()
    cmd = [
        sys.executable,
        "-m",
        "voila",
        str(notebook),
        "--no-browser",
        f"--port={port}",
        "--Voila.ip=127.0.0.1",
        "--token=",
    ]
    return _spawn("voila", base, cmd, f"http://127.0.0.1:{port}/", "api/status")


def start_marimo(base: Path, app: Path) -> FrontEnd:
    """``marimo run app.py`` (read-only app mode, no token)."""
    port = _free_port()
    cmd = [
        sys.executable,
        "-m",
        "marimo",
        "run",
        str(app),
        "--headless",
        "--no-token",
        "--host=127.0.0.1",
        f"--port={port}",
    ]
    return _spawn("marimo", base, cmd, f"http://127.0.0.1:{port}/", "health")
