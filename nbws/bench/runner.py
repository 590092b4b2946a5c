"""Run the scenarios, print the table, write JSON and a ratio plot."""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import time
from dataclasses import asdict

from .base import Row
from .isolation import isolation
from .scenarios import ONLY_WHEN_NAMED, SCENARIOS

OWN_RUN = {"isolation": isolation, **ONLY_WHEN_NAMED}
"""Scenarios run only when named with ``--only``: they load the machine on purpose (one
peer flooding the server) or need a browser for minutes, so they would skew the others and
the default run's time."""

__all__ = ["run"]


def machine() -> dict[str, object]:
    """What the numbers were measured on."""
    with open("/proc/meminfo") as fh:
        mem_kib = int(fh.readline().split()[1])
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(mem_kib / 2**20, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def number(value: float) -> str:
    """Large values as integers with separators, small ones (latencies, KB) with decimals."""
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def ratio_text(ratio: float) -> str:
    return f"{ratio:.1f}x" if ratio >= 0.95 else f"{ratio:.2f}x"


def table(rows: list[Row]) -> str:
    header = ("scenario", "metric", "nbws", "baseline", "baseline value", "ratio", "target")
    lines = [
        (
            r.scenario,
            r.metric,
            number(r.nbws),
            r.baseline_name,
            number(r.baseline),
            ratio_text(r.ratio),
            r.target,
        )
        for r in rows
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines, strict=False)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=False))]
    out.append("  ".join("-" * w for w in widths))
    out += [
        "  ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=False)) for line in lines
    ]
    for r in rows:
        for key, value in r.extra.items():
            out.append(f"  {r.scenario}: {key} = {value}")
    return "\n".join(out)


def plot(rows: list[Row], path: pathlib.Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(11, 0.55 * len(rows) + 1.5))
    positions = range(len(rows))
    ratios = [r.ratio for r in rows]
    ax.barh(positions, ratios, color=["#4a7bd0" if x >= 1 else "#d0804a" for x in ratios])
    ax.set_yticks(
        positions, [f"{r.scenario}: {r.metric}\nvs {r.baseline_name}" for r in rows], fontsize=7
    )
    for y, x in zip(positions, ratios, strict=True):
        ax.annotate(ratio_text(x), (x, y), xytext=(3, 0), textcoords="offset points", va="center")
    ax.set_xscale("log")  # ratios span 0.01x (latency) to 50x (fan-out)
    shown = [x for x in ratios if x > 0] or [1.0]
    ax.set_xlim(min(0.5, min(shown) / 2), max(2.0, max(shown) * 3))
    ax.axvline(1.0, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("times better than the baseline (log scale; > 1: nbws better)")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return True


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nbws bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes (< 2 minutes)")
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted({**SCENARIOS, **OWN_RUN}),
        metavar="NAME",
        help=f"run only this scenario ({', '.join({**SCENARIOS, **OWN_RUN})}); repeatable",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON here")
    parser.add_argument(
        "--out",
        metavar="DIR",
        default="bench-results",
        help="directory for results.json and ratios.png (default: bench-results)",
    )
    args = parser.parse_args(argv)
    rows: list[Row] = []
    started = time.perf_counter()
    for name, scenario in {**SCENARIOS, **OWN_RUN}.items():
        if (args.only and name not in args.only) or (not args.only and name in OWN_RUN):
            continue
        print(f"running {name} ...", flush=True)
        rows += scenario(args.quick)
    print()
    print(table(rows))
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {
        "machine": machine(),
        "quick": args.quick,
        "seconds": round(time.perf_counter() - started, 1),
        "results": [{**asdict(r), "ratio": r.ratio} for r in rows],
    }
    text = json.dumps(report, indent=2)
    (out / "results.json").write_text(text)
    if args.json:
        pathlib.Path(args.json).write_text(text)
    if plot(rows, out / "ratios.png"):
        print(f"\nplot: {out / 'ratios.png'}")
    print(f"results: {out / 'results.json'} ({report['seconds']} s)")
    return 0
