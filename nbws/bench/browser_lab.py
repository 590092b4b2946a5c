"""The processes of the browser bench: a real ``jupyter lab`` and a headless Chromium that
Playwright attaches to over the DevTools protocol and detaches from while measuring.

A DevTools client attached to a page makes Chromium copy every WebSocket frame to it (at
1k msg/s: 11 fps attached against 50 detached), so the bench launches Chromium itself with
``--remote-debugging-port``, drives it with ``connect_over_cdp`` and closes that connection
for the measured window; the page, in the browser's default context, keeps running.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import secrets
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["CHROMIUM", "Attached", "Lab", "chromium", "jupyter_lab"]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-background-timer-throttling",
    "--disable-backgrounding-occluded-windows",
    "--disable-renderer-backgrounding",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1400,1400",
]
# No news or update pop-ups over the views being measured.
PAGE_CONFIG = {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}
NOTIFICATIONS = {"checkForUpdates": False, "fetchNews": "false"}


@dataclass
class Lab:
    """A running ``jupyter lab``: where it listens, its token, its notebook root."""

    port: int
    token: str
    root: pathlib.Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def url(self, path: str) -> str:
        return f"{self.base}{path}?token={self.token}"

    def api(self, path: str) -> Any:
        """GET a REST endpoint (token in a header); the decoded JSON."""
        request = urllib.request.Request(
            self.base + path, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())


def _write_json(path: pathlib.Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value))


def _wait_up(proc: subprocess.Popen[bytes], info_file: pathlib.Path, log: pathlib.Path) -> int:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"jupyter lab exited at start:\n{tail}")
        with contextlib.suppress(OSError, ValueError):
            return int(json.loads(info_file.read_text())["port"])
        time.sleep(0.1)
    raise RuntimeError("jupyter lab did not start within 120 s")


@contextlib.contextmanager
def jupyter_lab(work: pathlib.Path) -> Iterator[Lab]:
    """``jupyter lab`` with a fresh token, a free port and its own runtime, config and data
    directories under ``work`` (the nbws server extension and labextension as installed)."""
    dirs = {name: work / name for name in ("root", "runtime", "config", "data", "ipython")}
    for path in dirs.values():
        path.mkdir(parents=True, exist_ok=True)
    _write_json(dirs["config"] / "labconfig" / "page_config.json", PAGE_CONFIG)
    _write_json(
        dirs["config"]
        / "lab/user-settings/@jupyterlab/apputils-extension/notification.jupyterlab-settings",
        NOTIFICATIONS,
    )
    token = secrets.token_hex(16)
    env = {
        **os.environ,
        "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]),
        "JUPYTER_CONFIG_DIR": str(dirs["config"]),
        "JUPYTER_DATA_DIR": str(dirs["data"]),
        "IPYTHONDIR": str(dirs["ipython"]),
        "PYTHONUNBUFFERED": "1",
    }
    cmd = [
        sys.executable,
        "-m",
        "jupyter",
        "lab",
        "--allow-root",
        "--no-browser",
        "--ServerApp.port=0",
        "--ServerApp.ip=127.0.0.1",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={dirs['root']}",
        "--LabApp.expose_app_in_browser=True",
    ]
    log = work / "jupyter-lab.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        port = _wait_up(proc, dirs["runtime"] / f"jpserver-{proc.pid}.json", log)
        lab = Lab(port, token, dirs["root"])
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(lab.url("api/status"), timeout=5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield lab
    finally:
        _stop(proc, signal_twice=True)


def _stop(proc: subprocess.Popen[bytes], *, signal_twice: bool = False) -> None:
    if proc.poll() is None:
        proc.send_signal(2)
        if signal_twice:
            proc.send_signal(2)  # Jupyter asks for confirmation on the first one
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@contextlib.contextmanager
def chromium(work: pathlib.Path) -> Iterator[str]:
    """Debian's Chromium, headless, with a DevTools port; yields its ``http://`` endpoint."""
    if not os.access(CHROMIUM, os.X_OK):
        raise RuntimeError(f"{CHROMIUM} is missing: apt-get install chromium")
    profile = work / "chromium"
    profile.mkdir(parents=True, exist_ok=True)
    cmd = [
        CHROMIUM,
        *CHROMIUM_ARGS,
        "--remote-debugging-port=0",
        "--remote-debugging-address=127.0.0.1",
        f"--user-data-dir={profile}",
        "about:blank",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        active = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not active.exists() or not active.read_text().strip():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("chromium did not open its DevTools port")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{active.read_text().split()[0]}"
    finally:
        _stop(proc)


class Attached:
    """Playwright attached to the Chromium at ``endpoint``, or not: ``attach()`` returns the
    bench's page (opening it the first time), ``detach()`` closes the DevTools connection
    (the page goes on running, unobserved)."""

    def __init__(self, playwright: Any, endpoint: str) -> None:
        self.playwright = playwright
        self.endpoint = endpoint
        self.browser: Any = None

    def attach(self) -> Any:
        self.browser = self.playwright.chromium.connect_over_cdp(self.endpoint, timeout=60_000)
        context = self.browser.contexts[0]
        pages = [p for p in context.pages if p.url != "about:blank"]
        page = pages[0] if pages else context.pages[0] if context.pages else context.new_page()
        page.set_default_timeout(120_000)
        return page

    def detach(self) -> None:
        if self.browser is not None:
            self.browser.close()
            self.browser = None
