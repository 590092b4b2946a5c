"""A real ``redis-server`` for tests: own port, own temporary directory, stopped by PID.

Redis runs with ``appendonly yes``; with ``appendfsync always`` (what docs/scaling.md
recommends when an acked message must survive a crash) a test may kill, restart or pause
it and check that nothing acked is lost. Data directories go to ``/dev/shm`` when there
is one: fsync on every write would otherwise dominate the tests' run time.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest


def redis_server_binary() -> str:
    """Path of ``redis-server``; fail under CI (``.ci/run`` installs it), skip elsewhere."""
    path = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None
    )
    if path is None:
        message = "redis-server is not installed (Debian: apt-get install redis-server)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisProcess:
    """One ``redis-server`` process; :meth:`restart` keeps its port and data directory."""

    def __init__(self, directory: Path, port: int | None = None, *, fsync: str = "always") -> None:
        self.directory = directory
        self.fsync = fsync
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = directory / "redis.log"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        cmd = [
            redis_server_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--appendonly", "yes",
            "--appendfsync", self.fsync,
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(self.log_path),
        ]  # fmt: skip
        self.process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited early:\n{self.log()[-2000:]}")
            if self.ping():
                return
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"redis-server did not answer in {timeout}s:\n{self.log()[-2000:]}")

    def ping(self) -> bool:
        """True once Redis answers PING with PONG (not while it is loading its data)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM (Redis flushes its append-only file) and wait."""
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def kill(self) -> None:
        """SIGKILL: a crash. With ``appendfsync always`` every acked append is on disk."""
        proc = self.process
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(5)

    def pause(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def restart(self, *, crash: bool = False) -> None:
        self.kill() if crash else self.stop()
        self.start()


def data_directory(fallback: Path) -> Path:
    """A fresh directory on a memory file system if the machine has one."""
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        return Path(tempfile.mkdtemp(prefix="nbws-redis-", dir="/dev/shm"))
    return fallback
