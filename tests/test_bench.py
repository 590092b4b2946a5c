"""`nbws bench --quick` works on a fresh install and reports ratios (no timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from nbws.bench.scenarios import FANOUT_STREAM, fanout_bodies
from nbws.protocol import messages

SCENARIOS = (
    "fan-out",
    "echo",
    "acked publish",
    "fragmented streaming",
    "latency",
    "idle connections",
    "polling vs WebSocket",
    "acked vs widget updates",
    "chaos",
    "batched publish",
    "dataframe rows",
    "redis publish",
    "batched delivery",
    "scale-out",
)


@pytest.mark.timeout(240)
def test_quick_bench_prints_ratios_and_writes_json(tmp_path):
    out = tmp_path / "bench"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "nbws.cli",
            "bench",
            "--quick",
            "--out",
            str(out),
            "--json",
            str(tmp_path / "r.json"),
        ],
        capture_output=True,
        text=True,
        timeout=230,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for scenario in SCENARIOS:
        assert scenario in result.stdout
    assert "ratio" in result.stdout and "x  " in result.stdout
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["quick"] is True and report["machine"]["cpus"]
    assert {r["scenario"] for r in report["results"]} == set(SCENARIOS)
    for row in report["results"]:
        assert row["nbws"] > 0 and row["baseline"] > 0 and row["ratio"] > 0
    assert (out / "results.json").exists() and (out / "ratios.png").exists()


def test_bench_rejects_unknown_scenarios():
    result = subprocess.run(
        [sys.executable, "-m", "nbws.cli", "bench", "--only", "nope"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "invalid choice" in result.stderr


def test_fanout_sends_valid_nbws_requests():
    """The bench's pre-encoded frames are what the message layer encodes and decodes."""
    subscribe, bodies = fanout_bodies(3)
    assert messages.decode_request(subscribe) == messages.Subscribe(FANOUT_STREAM)
    decoded = [messages.decode_request(body) for body in bodies]
    assert decoded == [messages.Publish(FANOUT_STREAM, {"i": i, "v": 1.5}) for i in range(3)]
    assert all(not p.acked for p in decoded)
