"""`nbws bench --quick --only isolation` runs its attackers and reports each case against
the quiet victim (the numbers are reported, never asserted: the machine is shared)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

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
