"""``nbws bench --only browser``: LiveTable + LiveChart + StreamMonitor on one stream in a
real JupyterLab page, fed by a paced publisher process, beside ipywidgets at the same rates.

One ``jupyter lab`` (fresh token, free port, temp dirs) and one headless Chromium; a
notebook whose kernel displays the views (a new stream per run). For each rate: the
recorder (``browser_page.INSTALL``) goes in, Playwright detaches, the publisher
(``browser_publisher``) publishes for the window, the page gets a few seconds to drain,
Playwright reattaches and reads what the page recorded (``browser_stats`` turns it into
figures). The idle page (views displayed, nothing published) is measured the same way, and
the baseline is a kernel setting an ipywidgets ``HTML`` widget's value at the same rate
(the page's iopub-rate-limit notices counted). Only run when named: it needs Chromium and
takes minutes.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .base import Row, percentile
from .browser_lab import Attached, Lab, chromium, jupyter_lab
from .browser_page import INSTALL, NOTEBOOK_READY, READ, RUN_CELL, WIDGET_SELECTOR
from .browser_publisher import TICK, TOKEN_VARIABLE
from .browser_stats import Render, RunFigures, figures, per_frame

__all__ = [
    "RATES",
    "RATES_QUICK",
    "Run",
    "browser",
    "nbws_renders",
    "per_view",
    "report_table",
    "view_drops",
]

RATES = (1_000, 5_000, 10_000, 20_000, 50_000)
RATES_QUICK = (1_000, 10_000, 50_000)
WIDE_WINDOW = 100_000
"""Points of the LiveChart in the wide-window runs (at the highest rates)."""

NOTEBOOK = "browser-bench.ipynb"
_CELL: dict[str, Any] = {
    "cell_type": "code",
    "execution_count": None,
    "metadata": {},
    "outputs": [],
    "source": "",
}
EMPTY_NOTEBOOK = {
    "nbformat": 4,
    "nbformat_minor": 5,
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3"}},
    "cells": [{**_CELL, "id": "views"}, {**_CELL, "id": "loop"}],
}
"""Two cells: the displayed views (or widget), and the ipywidgets loop."""
COLUMNS = ["offset", "i", "t", "v"]

VIEWS_CODE = """
from nbws.widgets import LiveChart, LiveTable, StreamMonitor
for _w in globals().get("_bench_views", []):
    _w.close()
_bench_views = [
    LiveTable({stream!r}, columns={columns!r}, max_rows=200),
    LiveChart({stream!r}, x="offset", y="v", window={window}),
    StreamMonitor({stream!r}),
]
display(*_bench_views)
"""

WIDGET_CODE = """
import ipywidgets as _ipw
for _w in globals().get("_bench_views", []):
    _w.close()
_bench_views = [_ipw.HTML("")]
display(*_bench_views)
"""

# Paced like the publisher process: one batch of value sets per 10 ms tick; starts after
# `delay` s (so the bench can detach first) and writes its schedule to `out`.
WIDGET_LOOP = """
import json as _json, time as _time
_widget, _sched, _done = _bench_views[0], [], 0
_time.sleep({delay})
_start = _time.perf_counter()
for _k in range(1, {ticks} + 1):
    _due = int({rate} * _k * {tick}) - _done
    _now = f"{{_time.time() * 1000:.1f}}"
    for _i in range(_done, _done + _due):
        _widget.value = f"{{_i}} {{_now}}"
    _done += max(0, _due)
    _sched.append((_time.time() * 1000, _done))
    _d = _start + _k * {tick} - _time.perf_counter()
    if _d > 0:
        _time.sleep(_d)
with open({out!r}, "w") as _fh:
    _json.dump({{"published": _done, "schedule": _sched,
                "achieved_rate": _done / (_time.perf_counter() - _start)}}, _fh)
"""

# Both views on the page and every status line they show (if any) live.
LIVE = """() => {
  if (document.querySelectorAll('.nbws-table, .nbws-chart').length < 2) return false;
  const nodes = document.querySelectorAll('.nbws-table .nbws-status, .nbws-chart .nbws-status');
  return [...nodes].every(n => n.dataset.state === undefined || n.dataset.state === 'live');
}"""


@dataclass
class Run:
    """One measured window: what ran, its figures and counts."""

    path: str  # "nbws" or "ipywidgets"
    rate: int
    window: int  # the chart's points (0 for ipywidgets)
    figures: RunFigures
    published: int = 0
    achieved_rate: float = 0.0
    dropped: int = 0
    conflated: int = 0
    skipped: int = 0
    notices: int = 0
    source: str = ""
    load: tuple[float, float, float] = (0.0, 0.0, 0.0)
    extra: dict[str, Any] = field(default_factory=dict)


def nbws_renders(
    record: dict[str, Any], first_offset: int, stream: str
) -> tuple[list[Render], str]:
    """The rendered frames of the nbws views: from ``__nbwsStats`` when the views report
    there (server ``time`` → render), else from the table's DOM (publisher ``t`` → the frame
    after the table changed)."""
    stats = record.get("stats") or {}
    reported = [r for r in stats.get("renders", []) if r.get("stream") == stream]
    if reported:
        renders = [(r["at"], int(r["offset"]) - first_offset, r["time"] * 1000) for r in reported]
        return sorted(renders), "__nbwsStats"
    # rows without a publisher time (the warm-up message, older rows) are not measured
    changes = [
        (at, int(off) - first_offset, sent)
        for at, off, sent in record["table"]
        if int(off) >= first_offset and sent and sent > 0
    ]
    return per_frame(changes, record["frames"]), "table DOM"


def per_view(
    record: dict[str, Any], stream: str, window: tuple[float, float]
) -> dict[str, dict[str, float]]:
    """Each reporting view's frames and publish → render p50/p99 (ms) inside ``window``,
    from ``__nbwsStats`` (empty when the views do not report)."""
    stats = record.get("stats") or {}
    start, end = window
    late: dict[str, list[float]] = {}
    for r in stats.get("renders", []):
        if r.get("stream") == stream and start <= r["at"] < end:
            late.setdefault(r["view"], []).append(r["at"] - r["time"] * 1000)
    return {
        view: {"renders": len(v), "p50": percentile(v, 50), "p99": percentile(v, 99)}
        for view, v in sorted(late.items())
    }


def view_drops(record: dict[str, Any], stream: str) -> tuple[int, int, int]:
    """(dropped, conflated, skipped by the views): the largest of any view's totals."""
    stats = record.get("stats") or {}
    reported = [d for d in (stats.get("drops") or {}).values() if d.get("stream") == stream]
    counts = record.get("counts", {}).values()
    dropped = max([int(d["dropped"]) for d in reported] + [c["missed"] for c in counts] + [0])
    conflated = max([int(d["conflated"]) for d in reported] + [0])
    skipped = max([c["skipped"] for c in counts] + [0])
    return dropped, conflated, skipped


class _Bench:
    def __init__(self, lab: Lab, attached: Attached, quick: bool) -> None:
        self.lab, self.attached = lab, attached
        self.seconds = 5.0 if quick else 10.0
        self.drain = 5.0 if quick else 10.0
        self.page = attached.attach()
        (lab.root / NOTEBOOK).write_text(json.dumps(EMPTY_NOTEBOOK))
        self.page.goto(lab.url(f"lab/workspaces/bench-{uuid.uuid4().hex[:6]}/tree/{NOTEBOOK}"))
        self.page.wait_for_function(NOTEBOOK_READY, arg=NOTEBOOK, timeout=180_000)

    def cell(self, index: int, code: str, wait: bool = True) -> None:
        outputs = self.page.evaluate(RUN_CELL, [index, code, wait])
        for output in outputs:
            if output.get("output_type") == "error":
                raise RuntimeError(f"bench cell failed: {output['ename']}: {output['evalue']}")

    def _reattach(self) -> dict[str, Any]:
        self.page = self.attached.attach()
        record: dict[str, Any] = self.page.evaluate(READ)
        return record

    def _views(self, window: int) -> str:
        stream = f"bench-browser-{uuid.uuid4().hex[:8]}"
        code = VIEWS_CODE.format(stream=stream, columns=COLUMNS, window=window)
        self.cell(0, code)
        self.page.wait_for_function(LIVE, timeout=120_000)
        self.page.wait_for_timeout(1000)  # the first layout and replay settle
        return stream

    def idle(self, window: int) -> RunFigures:
        """The views displayed on a stream nothing is published to."""
        self._views(window)
        self.page.evaluate(INSTALL, {"timeColumn": "t", "widgetSelector": WIDGET_SELECTOR})
        self.attached.detach()
        time.sleep(self.seconds + 0.5)
        record = self._reattach()
        start = record["frames"][0] if record["frames"] else 0.0
        return figures(
            record["frames"],
            record["longTasks"],
            [],
            [],
            (start, start + self.seconds * 1000),
            0,
            0,
        )

    def nbws(self, rate: int, window: int) -> Run:
        stream = self._views(window)
        self.page.evaluate(INSTALL, {"timeColumn": "t", "widgetSelector": WIDGET_SELECTOR})
        load = os.getloadavg()
        self.attached.detach()
        with tempfile.TemporaryDirectory() as tmp:
            out = pathlib.Path(tmp) / "publisher.json"
            args = [self.lab.base, stream, str(rate), str(self.seconds), str(out)]
            subprocess.run(
                [sys.executable, "-m", "nbws.bench.browser_publisher", *args],
                env={**os.environ, TOKEN_VARIABLE: self.lab.token},
                check=True,
                timeout=self.seconds + 360,
            )
            report = json.loads(out.read_text())
        time.sleep(self.drain)
        record = self._reattach()
        schedule = [(float(t), int(n)) for t, n in report["schedule"]]
        renders, source = nbws_renders(record, report["first_offset"], stream)
        dropped, conflated, skipped = view_drops(record, stream)
        published = int(report["published"])
        table = record.get("counts", {}).get("table")
        # the table also received the publisher's warm-up message; views that do not
        # count what they received: all that was not dropped or conflated
        if table and table["received"]:
            received = table["received"] - 1
        else:
            received = published - dropped - conflated
        window_ms = (schedule[0][0] - TICK * 1000, schedule[-1][0])
        run = Run(
            "nbws",
            rate,
            window,
            figures(
                record["frames"],
                record["longTasks"],
                renders,
                schedule,
                window_ms,
                min(received, published),
                published,
            ),
            published=published,
            achieved_rate=float(report["achieved_rate"]),
            dropped=dropped,
            conflated=conflated,
            skipped=skipped,
            source=source,
            load=load,
        )
        if views := per_view(record, stream, window_ms):
            run.extra["views"] = views
        if record.get("subscribers") is not None:  # the stream's, as the monitor shows
            run.extra["stream_subscribers"] = record["subscribers"]
        if record.get("counts", {}).get("chart"):
            run.extra["chart_points"] = record["counts"]["chart"]["points"]
        return run

    def ipywidgets(self, rate: int) -> Run:
        self.cell(0, WIDGET_CODE)
        self.page.wait_for_selector(WIDGET_SELECTOR, state="attached")
        self.page.evaluate(INSTALL, {"timeColumn": "t", "widgetSelector": WIDGET_SELECTOR})
        out = self.lab.root / f"widget-{uuid.uuid4().hex[:8]}.json"
        ticks = max(1, round(self.seconds / TICK))
        code = WIDGET_LOOP.format(delay=1.0, ticks=ticks, rate=rate, tick=TICK, out=str(out))
        self.cell(1, code, wait=False)
        load = os.getloadavg()
        self.attached.detach()
        deadline = time.monotonic() + self.seconds + 360
        while not out.exists() and time.monotonic() < deadline:
            time.sleep(0.2)  # the kernel's file, not the page: nothing attached to poll
        time.sleep(self.drain)
        record = self._reattach()
        if not out.exists():
            raise RuntimeError("the ipywidgets loop did not finish in time")
        report = json.loads(out.read_text())
        # No wait for the kernel's idle status: iopub (a ZMQ PUB socket) may have dropped it
        # for the server under this load; the loop wrote its file last, and the next cell
        # runs after it all the same.
        schedule = [(float(t), int(n)) for t, n in report["schedule"]]
        changes = [(float(a), int(i), float(t)) for a, i, t in record["widget"]]
        published = int(report["published"])
        delivered = len({i for _, i, _ in changes})
        return Run(
            "ipywidgets",
            rate,
            0,
            figures(
                record["frames"],
                record["longTasks"],
                per_frame(changes, record["frames"]),
                schedule,
                (schedule[0][0] - TICK * 1000, schedule[-1][0]),
                delivered,
                published,
            ),
            published=published,
            achieved_rate=float(report["achieved_rate"]),
            notices=int(record["notices"]),
            source="HTML widget DOM",
            load=load,
        )


def report_table(runs: Sequence[Run], idle: float) -> str:
    """The per-rate text table printed after the run (and pasted into the docs)."""
    head = (
        "| path | published | page fps (worst s) | fps / idle | long tasks ms/s "
        "| publish → render p50 / p99 | lag p50 / p99 msgs | dropped / conflated / skipped "
        "| delivered | load |"
    )
    lines = [head, "|" + "---|" * 10]
    for r in runs:
        f = r.figures
        name = r.path if not r.window or r.window == 2000 else f"{r.path}, {r.window:,}-pt chart"
        lines.append(
            f"| {name} | {r.rate:,} msg/s (achieved {r.achieved_rate:,.0f}) "
            f"| {f.fps:.0f} ({f.worst_fps:.0f}) | {f.fps / idle if idle else 0:.2f} "
            f"| {f.long_task_ms_s:.0f} | {f.latency_p50:,.0f} / {f.latency_p99:,.0f} ms "
            f"| {f.lag_p50:,.0f} / {f.lag_p99:,.0f} "
            f"| {r.dropped:,} / {r.conflated:,} / {r.skipped:,} "
            f"| {f.delivered_pct:.0f} %{f' ({r.notices} iopub notices)' if r.notices else ''} "
            f"| {r.load[0]:.1f} |"
        )
    return "\n".join(lines)


def _plot(runs: Sequence[Run], idle: float, path: pathlib.Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (fps_ax, late_ax) = plt.subplots(1, 2, figsize=(11, 4))
    for label, chosen in (
        ("nbws views (2,000-pt chart)", [r for r in runs if r.path == "nbws" and r.window == 2000]),
        (f"nbws views ({WIDE_WINDOW:,}-pt chart)", [r for r in runs if r.window == WIDE_WINDOW]),
        ("ipywidgets HTML value", [r for r in runs if r.path == "ipywidgets"]),
    ):
        if not chosen:
            continue
        rates = [r.rate for r in chosen]
        fps_ax.plot(rates, [r.figures.fps for r in chosen], marker="o", label=label)
        late_ax.plot(
            rates, [max(r.figures.latency_p99, 1) for r in chosen], marker="o", label=label
        )
    fps_ax.axhline(idle, color="grey", linestyle="--", linewidth=1, label="idle page")
    fps_ax.set(xscale="log", xlabel="published msg/s", ylabel="page fps", ylim=(0, 65))
    late_ax.set(xscale="log", yscale="log", xlabel="published msg/s")
    late_ax.set_ylabel("publish → render p99 (ms)")
    fps_ax.legend(fontsize=7)
    late_ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _rows(runs: Sequence[Run], idle: float, load: tuple[float, ...]) -> list[Row]:
    rows = []
    base = {r.rate: r for r in runs if r.path == "ipywidgets"}
    for r in runs:
        if r.path != "nbws" or r.window != 2000 or r.rate not in base:
            continue
        b = base[r.rate]
        chart = f", {r.window:,}-pt chart"
        common = {
            "idle_fps": round(idle, 1),
            "load_average": [round(x, 2) for x in load],
            "source": r.source,
            "nbws": {
                **asdict(r.figures),
                "dropped": r.dropped,
                "conflated": r.conflated,
                "skipped": r.skipped,
                "achieved_rate": round(r.achieved_rate),
                **r.extra,
            },
            "ipywidgets": {
                **asdict(b.figures),
                "iopub_notices": b.notices,
                "achieved_rate": round(b.achieved_rate),
            },
        }
        fps_target = (
            ">= 0.8x idle fps" if r.rate == 10_000 else ">= 30 fps" if r.rate >= 50_000 else ""
        )
        late_target = (
            "p99 < 100 ms" if r.rate == 10_000 else "p99 < 250 ms" if r.rate >= 50_000 else ""
        )
        rows.append(
            Row(
                "browser",
                f"page fps, {r.rate:,} msg/s{chart}",
                r.figures.fps,
                "ipywidgets HTML value set in the kernel",
                b.figures.fps,
                target=fps_target,
                extra=common,
            )
        )
        rows.append(
            Row(
                "browser",
                f"publish → render p99 ms, {r.rate:,} msg/s{chart}",
                r.figures.latency_p99,
                "ipywidgets HTML value set in the kernel",
                b.figures.latency_p99,
                higher_is_better=False,
                target=late_target,
            )
        )
    return rows


def browser(quick: bool) -> list[Row]:
    from playwright.sync_api import sync_playwright

    rates = RATES_QUICK if quick else RATES
    started_load = os.getloadavg()
    runs: list[Run] = []
    with (
        tempfile.TemporaryDirectory(prefix="nbws-browser-") as tmp,
        jupyter_lab(pathlib.Path(tmp) / "lab") as lab,
        chromium(pathlib.Path(tmp)) as endpoint,
        sync_playwright() as playwright,
    ):
        attached = Attached(playwright, endpoint)
        bench = _Bench(lab, attached, quick)
        try:
            idle = bench.idle(2000).fps
            print(f"  idle page: {idle:.1f} fps", flush=True)
            for rate in rates:
                for run in (bench.nbws(rate, 2000), bench.ipywidgets(rate)):
                    runs.append(run)
                    print(
                        f"  {run.path} {rate:,} msg/s: {run.figures.fps:.1f} fps, "
                        f"p99 {run.figures.latency_p99:,.0f} ms, "
                        f"delivered {run.figures.delivered_pct:.0f} %",
                        flush=True,
                    )
            for rate in rates[-1:] if quick else rates[-2:]:
                runs.append(bench.nbws(rate, WIDE_WINDOW))
        finally:
            attached.detach()
    load = (*started_load, *os.getloadavg())
    print(f"\nbrowser: load average at start {started_load}, at end {os.getloadavg()}")
    print(report_table(runs, idle))
    if _plot(runs, idle, pathlib.Path("bench-results") / "browser.png"):
        print("browser plot: bench-results/browser.png")
    rows = _rows(runs, idle, load)
    for run in runs:
        if run.window == WIDE_WINDOW:
            rows.append(
                Row(
                    "browser",
                    f"page fps, {run.rate:,} msg/s, {WIDE_WINDOW:,}-pt chart",
                    run.figures.fps,
                    "idle page",
                    idle,
                    target=">= 30 fps",
                    extra={
                        "nbws": {**asdict(run.figures), "dropped": run.dropped, **run.extra},
                        "source": run.source,
                    },
                )
            )
    return rows
