"""`nbws bench --quick --only isolation` runs its attackers and reports each case against
the quiet victim (the numbers are reported, never asserted: the machine is shared)."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys

import pytest

from nbws.bench.base import placement
from nbws.bench.isolation import CASES


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_quick_isolation_bench_reports_every_case(tmp_path):
    command = ["nbws.cli", "bench", "--quick", "--only", "isolation", "--out", str(tmp_path)]
    result = subprocess.run(
        [sys.executable, "-m", *command, "--json", str(tmp_path / "r.json")],
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rows = json.loads((tmp_path / "r.json").read_text())["results"]
    assert [r["metric"] for r in rows] == [f"victim p99 ms, {name}" for name in CASES.values()]
    for row in rows:
        assert row["scenario"] == "isolation"
        assert row["nbws"] > 0 and row["baseline"] > 0 and row["ratio"] > 0
        assert any("RSS growth" in key for key in row["extra"])
    assert "isolation: " in result.stdout


def test_isolation_attacker_refuses_an_unknown_attack():
    result = subprocess.run(
        [sys.executable, "-m", "nbws.bench.isolation", "nope", "1", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "unknown attack 'nope'" in result.stderr


def test_placement_puts_the_server_alone_on_one_cpu_and_clients_on_the_rest():
    cpus = os.sched_getaffinity(0)
    placed = placement()
    if len(cpus) < 2:
        assert placed is None
        return
    assert placed is not None
    assert len(placed.server) == 1
    assert placed.server | placed.clients == cpus and not placed.server & placed.clients


def test_a_placed_attacker_runs_on_the_client_cpus_in_the_idle_class():
    placed = placement()
    if placed is None:
        pytest.skip("one CPU: nothing to place")
    probe = "import os; print(os.sched_getscheduler(0), sorted(os.sched_getaffinity(0)))"
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=functools.partial(placed.pin_client, idle=True),
    )
    policy, cpus = result.stdout.split(" ", 1)
    assert int(policy) == os.SCHED_IDLE
    assert cpus.strip() == str(sorted(placed.clients))
