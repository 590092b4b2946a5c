"""Shared fixtures: real nbws servers, in-process (fast) or as a subprocess (for RSS/interop)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from redis_support import RedisProcess, data_directory
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
    port = await server.start()
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
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
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


@dataclass
class JupyterProcess:
    """A real `jupyter server` / `jupyter lab` subprocess with nbws enabled by install."""

    process: subprocess.Popen[bytes]
    port: int
    token: str
    base_url: str
    root_dir: str
    runtime_dir: str
    env: dict[str, str]
    log_path: str

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.base_url}"

    def ws_url(self, path: str = "nbws/ws", *, token: bool = True) -> str:
        url = f"ws://127.0.0.1:{self.port}{self.base_url}{path}"
        if token:
            url += ("&" if "?" in url else "?") + f"token={self.token}"
        return url

    def log(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as fh:
            return fh.read()

    def rest(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """Call the server's REST API with its token; the decoded JSON reply (or None)."""
        import json
        import urllib.request

        request = urllib.request.Request(
            f"{self.http_url}{path}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            data = response.read()
        return json.loads(data) if data else None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(2)
            self.process.send_signal(2)  # Jupyter asks for confirmation on the first one
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def launch_jupyter(
    workdir: Any,
    *,
    app: str = "server",
    args: Sequence[str] = (),
    env: dict[str, str] | None = None,
    token: str = "nbws-test-token",
    timeout: float = 90.0,
    python: str = sys.executable,
) -> JupyterProcess:
    """Start `jupyter <app>` on a free port with isolated dirs; wait until it answers
    (``python``: the environment the server runs in)."""
    import json
    import pathlib
    import time
    import urllib.request

    work = pathlib.Path(workdir)
    for sub in ("root", "runtime", "config", "data", "ipython"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    full_env = {
        **os.environ,
        "JUPYTER_RUNTIME_DIR": str(work / "runtime"),
        "JUPYTER_CONFIG_DIR": str(work / "config"),
        "JUPYTER_DATA_DIR": str(work / "data"),
        "IPYTHONDIR": str(work / "ipython"),
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    log_path = str(work / f"jupyter-{app}.log")
    cmd = [
        python,
        "-m",
        "jupyter",
        app,
        "--allow-root",
        "--no-browser",
        "--ServerApp.port=0",
        "--ServerApp.ip=127.0.0.1",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={work / 'root'}",
        *args,
    ]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=full_env)
    deadline = time.monotonic() + timeout
    info_file = work / "runtime" / f"jpserver-{proc.pid}.json"
    info = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = pathlib.Path(log_path).read_text(errors="replace")[-3000:]
            raise RuntimeError(f"jupyter {app} exited early:\n{tail}")
        if info_file.exists():
            try:
                info = json.loads(info_file.read_text())
                break
            except ValueError:
                pass
        time.sleep(0.1)
    if info is None:
        proc.kill()
        raise RuntimeError(f"jupyter {app} did not start in {timeout}s")
    jp = JupyterProcess(
        proc,
        int(info["port"]),
        token,
        info["base_url"],
        str(work / "root"),
        str(work / "runtime"),
        full_env,
        log_path,
    )
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{jp.http_url}api/status?token={token}", timeout=2):
                return jp
        except OSError:
            time.sleep(0.1)
    jp.stop()
    raise RuntimeError(f"jupyter {app} did not answer in {timeout}s")


@pytest.fixture(scope="session")
def jupyter_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterProcess]:
    """One real `jupyter server` for the session (use unique stream names per test)."""
    server = launch_jupyter(tmp_path_factory.mktemp("jupyter"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    """One real `redis-server` for the session (tests use unique stream names)."""
    server = RedisProcess(data_directory(tmp_path_factory.mktemp("redis")), fsync="everysec")
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.directory, ignore_errors=True)


@pytest.fixture
def own_redis(tmp_path: Any) -> Iterator[RedisProcess]:
    """A `redis-server` of this test alone: it may stop, kill or pause it."""
    server = RedisProcess(data_directory(tmp_path / "redis"))
    server.start()
    try:
        yield server
    finally:
        if server.process is not None and server.process.poll() is None:
            server.resume()
        server.kill()
        shutil.rmtree(server.directory, ignore_errors=True)
