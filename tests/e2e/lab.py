"""A real ``jupyter lab`` for browser tests, started by the suite's ``launch_jupyter`` (free
port, token, temp runtime/config/data dirs so nothing leaks into or from the user's Jupyter
setup), plus what the browser tests add: no news pop-ups, ``window.jupyterapp`` exposed, and
REST helpers to publish from outside the kernel."""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
from conftest import JupyterProcess, launch_jupyter

__all__ = ["LabServer", "start_lab", "write_notebook"]

# No news or update pop-ups over the widgets being tested.
PAGE_CONFIG = {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}
NOTIFICATION_SETTINGS = {"checkForUpdates": False, "fetchNews": "false"}


@dataclass
class LabServer:
    """A running ``jupyter lab`` process."""

    jupyter: JupyterProcess

    @property
    def port(self) -> int:
        return self.jupyter.port

    @property
    def token(self) -> str:
        return self.jupyter.token

    @property
    def root(self) -> Path:
        return Path(self.jupyter.root_dir)

    @property
    def base(self) -> str:
        return self.jupyter.http_url

    def url(self, path: str, *, token: bool = True) -> str:
        url = self.base + path.lstrip("/")
        if token and self.token:
            url += ("&" if "?" in url else "?") + urllib.parse.urlencode({"token": self.token})
        return url

    def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """Call a REST endpoint with the token; returns (status, parsed JSON or None)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path.lstrip("/"), data=data, method=method)
        request.add_header("Authorization", f"token {self.token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                raw = response.read()
                status = response.status
        except urllib.error.HTTPError as exc:
            raw, status = exc.read(), exc.code
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, None

    def publish(self, stream: str, payload: Any) -> int:
        """Append one message through the REST API (a publisher outside the kernel)."""
        status, body = self.api(
            "POST",
            f"nbws/api/streams/{urllib.parse.quote(stream, safe='')}/messages",
            {"payload": payload},
        )
        assert status == 201, (status, body)
        return int(body["offset"])

    def log(self) -> str:
        return self.jupyter.log()

    def stop(self) -> None:
        """Stop Jupyter (it closes nbws connections with 1001 going away)."""
        self.jupyter.stop()


def _write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value))


def start_lab(
    base: Path,
    *,
    token: str,
    args: tuple[str, ...] = (),
    python: str | None = None,
    env: dict[str, str] | None = None,
) -> LabServer:
    """Start ``jupyter lab`` under ``base`` (root_dir ``base/root``) and wait until it answers.

    Args:
        token: Jupyter's token.
        args: extra command-line options (e.g. ``--Nbws.auto_create_streams=False``).
        python: the environment the server runs in (default: this one).
        env: environment variables added for the server (and its kernels).
    """
    config = base / "config"
    _write_json(config / "labconfig" / "page_config.json", PAGE_CONFIG)
    _write_json(
        config
        / "lab"
        / "user-settings"
        / "@jupyterlab"
        / "apputils-extension"
        / "notification.jupyterlab-settings",
        NOTIFICATION_SETTINGS,
    )
    jupyter = launch_jupyter(
        base,
        app="lab",
        token=token,
        args=["--LabApp.expose_app_in_browser=True", *args],
        env=env,
        python=python or sys.executable,
    )
    return LabServer(jupyter)


def write_notebook(root: Path, name: str, cells: list[str]) -> str:
    """Write a notebook of code cells; returns its path relative to the root."""
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    path = root / name
    nbformat.write(notebook, str(path))
    return name
