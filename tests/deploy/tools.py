"""Finding the programs the deployment tests start, and ports for them.

Each is a real component: Debian's ``nginx``, npm's ``configurable-http-proxy`` (installed
into a cache folder on first use), ``openssl``-free certificates from ``cryptography``.
Under CI (``CI`` set) a missing component fails the test; elsewhere it skips with the
command that installs it.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

__all__ = [
    "CHP_VERSION",
    "chp_binary",
    "free_port",
    "missing",
    "nginx_binary",
    "wait_for",
    "wait_http",
]

CHP_VERSION = "5"
CHP_CACHE = Path(os.environ.get("NBWS_CHP_CACHE", Path.home() / ".cache" / "nbws" / "chp"))

T = TypeVar("T")


def missing(message: str) -> None:
    """Fail under CI (``.ci/run`` installs every component), skip elsewhere."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def nginx_binary() -> str:
    path = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/bin/nginx") if os.access(p, os.X_OK)), None
    )
    if path is None:
        missing("nginx is not installed (Debian: apt-get install nginx; .ci/run does)")
    assert path is not None
    return path


def chp_binary() -> str:
    """``configurable-http-proxy`` (JupyterHub's proxy), npm-installed into a cache folder."""
    found = shutil.which("configurable-http-proxy")
    if found:
        return found
    binary = CHP_CACHE / "node_modules" / ".bin" / "configurable-http-proxy"
    if not binary.exists():
        npm = shutil.which("npm")
        if npm is None:
            missing("npm is missing, so configurable-http-proxy cannot be installed")
        assert npm is not None
        CHP_CACHE.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--prefix", str(CHP_CACHE),
             f"configurable-http-proxy@{CHP_VERSION}"],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        if result.returncode != 0 or not binary.exists():
            missing(f"npm install configurable-http-proxy failed:\n{result.stderr[-2000:]}")
    return str(binary)


def wait_for(check: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll ``check`` until it returns something other than None (or fail after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


def wait_http(
    url: str,
    timeout: float,
    *,
    alive: Callable[[], bool] = lambda: True,
    context: ssl.SSLContext | None = None,
    any_status: bool = False,
) -> None:
    """Wait until ``url`` answers 200 (``any_status``: any HTTP answer, the server listens)."""

    def answers() -> bool | None:
        if not alive():
            raise AssertionError(f"the process behind {url} exited")
        try:
            with urllib.request.urlopen(url, timeout=2, context=context):
                return True
        except urllib.error.HTTPError:
            return True if any_status else None
        except OSError:
            return None

    wait_for(answers, timeout, url)
