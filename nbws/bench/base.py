"""What every scenario shares: the result row, server processes, fd limits, percentiles."""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Placement",
    "Row",
    "delivered_in",
    "free_port",
    "percentile",
    "placement",
    "raise_nofile",
    "server",
]


def delivered_in(event: dict[str, Any]) -> int:
    """Messages a decoded delivery event carries: a batch's length, 1 for a message, else 0."""
    kind = event["type"]
    if kind == "batch":
        return len(event["messages"])
    return 1 if kind == "message" else 0


@dataclass
class Row:
    """One measured comparison."""

    scenario: str
    metric: str
    nbws: float
    baseline_name: str
    baseline: float
    higher_is_better: bool = True
    target: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        """How many times better nbws is (>1) or worse (<1), whichever way is better."""
        if not self.baseline or not self.nbws:
            return 0.0
        return self.nbws / self.baseline if self.higher_is_better else self.baseline / self.nbws


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def raise_nofile(wanted: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE towards ``wanted`` (capped by the hard
    limit); return the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


# Runs a module as ``python -m`` would, after raising the fd limit: the baselines do not
# raise it themselves (``nbws serve`` does; both go through this so they start alike), and
# 10,000 sockets need more than the usual 1024.
_WITH_NOFILE = (
    "import sys, runpy; from nbws.bench.base import raise_nofile; "
    "raise_nofile(int(sys.argv[1])); sys.argv = sys.argv[2:]; "
    "runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)"
)


_WITHOUT_HIREDIS = (
    "import sys, runpy; sys.modules['hiredis'] = None; sys.argv = sys.argv[1:]; "
    "runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)"
)
"""Runs a module with ``hiredis`` unimportable: redis-py then parses replies in Python."""


def _command(kind: str, port: int, args: Sequence[str], nofile: int) -> list[str]:
    if kind in ("nbws", "nbws-python-parser"):
        module = ["nbws.cli", "serve", "--no-token", "--port", str(port), *args]
    else:
        module = ["nbws.bench.baselines", kind, str(port)]
    if nofile:
        return [sys.executable, "-c", _WITH_NOFILE, str(nofile), *module]
    if kind == "nbws-python-parser":
        return [sys.executable, "-c", _WITHOUT_HIREDIS, *module]
    return [sys.executable, "-m", *module]


@dataclass(frozen=True)
class Placement:
    """Which CPUs the server and its clients run on, as if they were separate machines:
    the server alone on its CPU, every client (the bench's own and any attacker process)
    on the others. A client process may also run in the idle scheduling class, so its
    own CPU never delays the bench's measuring client (on its own machine it would not)."""

    server: frozenset[int]
    clients: frozenset[int]

    def pin_server(self) -> None:
        os.sched_setaffinity(0, self.server)

    def pin_client(self, idle: bool = False) -> None:
        os.sched_setaffinity(0, self.clients)
        if idle:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


def placement() -> Placement | None:
    """A split of this process's CPUs between server and clients (None: fewer than two)."""
    if not hasattr(os, "sched_setaffinity"):  # pragma: no cover - not on Linux
        return None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    return Placement(frozenset(cpus[:1]), frozenset(cpus[1:]))


@contextlib.contextmanager
def server(
    kind: str, *args: str, nofile: int = 0, pinned: Placement | None = None
) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    """Start ``nbws serve`` (kind ``nbws``; ``nbws-python-parser``: without ``hiredis``)
    or a baseline in its own process; yield (port, process).

    ``nofile``: raise the server's fd limit to this many first (0: leave it).
    ``pinned``: run the server on that placement's server CPU."""
    port = free_port()
    proc = subprocess.Popen(
        _command(kind, port, args, nofile),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        preexec_fn=None if pinned is None else pinned.pin_server,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{kind} server did not start")
        yield port, proc
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile (0 < q <= 100) of ``values``."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return float(ordered[int(rank) - 1])
