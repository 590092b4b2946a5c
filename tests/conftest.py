"""Shared fixtures: real nbws servers, in-process (fast) or as a subprocess (for RSS/interop)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from traitlets.config import Config

from nbws.config import Nbws
from nbws.server.standalone import StandaloneServer


@dataclass
class RunningServer:
    host: str
    port: int
    token: str | None
    server: StandaloneServer | None = None
    process: subprocess.Popen[str] | None = None

    def url(self, path: str = "/nbws/echo", *, scheme: str = "ws", token: bool = True) -> str:
        url = f"{scheme}://{self.host}:{self.port}{path}"
        if token and self.token:
            url += ("&" if "?" in url else "?") + f"token={self.token}"
        return url

    @property
    def config(self) -> Nbws:
        assert self.server is not None
        return self.server.config


def make_config(**options: Any) -> Nbws:
    cfg = Config()
    for key, value in options.items():
        cfg.Nbws[key] = value
    return Nbws(config=cfg)


@pytest.fixture
def server_options() -> dict[str, Any]:
    """Override in a test module (or parametrize) to configure the in-process server."""
    return {}


@pytest.fixture
async def nbws_server(server_options: dict[str, Any]) -> AsyncIterator[RunningServer]:
    """`nbws serve` running in this test's event loop, on a free port, no token."""
    options = dict(server_options)
    token = options.pop("token", None)
    server = StandaloneServer(make_config(**options), host="127.0.0.1", port=0, token=token)
    port = server.listen()
    try:
        yield RunningServer("127.0.0.1", port, token, server=server)
    finally:
        await server.stop()


def start_serve_process(*args: str, token: str | None = None) -> RunningServer:
    """Start `nbws serve` as its own process on a free port and wait until it listens."""
    cmd = [sys.executable, "-m", "nbws.cli", "serve", "--port", "0"]
    cmd += ["--token", token] if token else ["--no-token"]
    cmd += list(args)
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        match = re.search(r"serving on http://([\d.]+):(\d+)/", line)
        if match:
            return RunningServer(match.group(1), int(match.group(2)), token, process=proc)
    proc.wait(5)
    raise RuntimeError(f"nbws serve exited with {proc.returncode} before listening")


def stop_serve_process(server: RunningServer) -> str:
    proc = server.process
    assert proc is not None
    proc.send_signal(2)
    try:
        out, _ = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out or ""


@pytest.fixture
def serve_process() -> Iterator[RunningServer]:
    """`nbws serve --no-token` as a separate process."""
    server = start_serve_process()
    try:
        yield server
    finally:
        stop_serve_process(server)
