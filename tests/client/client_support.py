"""Helpers shared by the client tests: servers as subprocesses, free ports, polling."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from conftest import RunningServer, start_serve_process, stop_serve_process


def http_url(server: RunningServer) -> str:
    return f"http://{server.host}:{server.port}/"


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def name(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def wait_until(condition: Callable[[], object], timeout: float = 20.0, what: str = "") -> None:
    """Poll ``condition`` until it is true (the tests' only way to wait for a state)."""
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.01)


@contextmanager
def serving(*options: str, token: str | None = None) -> Iterator[RunningServer]:
    """`nbws serve` as a subprocess with ``--set NAME=VALUE`` options."""
    args: list[str] = []
    for option in options:
        args += ["--set", option]
    server = start_serve_process(*args, token=token)
    try:
        yield server
    finally:
        stop_serve_process(server)
