"""What the browser bench computes from what the page recorded (pure: no browser, no clock).

The page records, while no debugger is attached, the time of every animation frame, every
long task (start, duration), and what each view showed: ``(at, index, sent)`` triples, with
``at`` the epoch ms the view showed message ``index`` (0 = the publisher's first) and
``sent`` the epoch ms that message was published (or appended by the server, for records
from ``__nbwsStats``). The publisher process reports its schedule: ``(epoch ms, messages
published so far)`` after each batch. From these this module derives the figures of one run.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass

from .base import percentile

__all__ = [
    "Render",
    "RunFigures",
    "figures",
    "frame_rate",
    "lags",
    "latencies",
    "long_task_ms_per_s",
    "per_frame",
    "published_by",
    "worst_second_fps",
]

Render = tuple[float, int, float]
"""(shown at, epoch ms; message index; sent at, epoch ms)."""


def published_by(schedule: Sequence[tuple[float, int]], at: float) -> int:
    """Messages the publisher had published by ``at`` (its last report at or before it)."""
    times = [t for t, _ in schedule]
    i = bisect.bisect_right(times, at)
    return schedule[i - 1][1] if i else 0


def _inside(values: Sequence[float], start: float, end: float) -> list[float]:
    return [v for v in values if start <= v < end]


def frame_rate(frames: Sequence[float], start: float, end: float) -> float:
    """Animation frames per second between ``start`` and ``end`` (epoch ms)."""
    seconds = (end - start) / 1000
    return len(_inside(frames, start, end)) / seconds if seconds > 0 else 0.0


def worst_second_fps(frames: Sequence[float], start: float, end: float) -> float:
    """The fewest frames in any whole second of the window (0 for a window under 1 s)."""
    whole = math.floor((end - start) / 1000)
    if whole < 1:
        return 0.0
    counts = [0] * whole
    for f in _inside(frames, start, start + whole * 1000):
        counts[int((f - start) // 1000)] += 1
    return float(min(counts))


def long_task_ms_per_s(tasks: Sequence[tuple[float, float]], start: float, end: float) -> float:
    """Milliseconds of long tasks per second of the window, each clipped to the window."""
    seconds = (end - start) / 1000
    if seconds <= 0:
        return 0.0
    busy = sum(max(0.0, min(s + d, end) - max(s, start)) for s, d in tasks)
    return busy / seconds


def per_frame(changes: Sequence[Render], frames: Sequence[float]) -> list[Render]:
    """What each frame showed, from DOM changes: for every frame after which something new
    is on screen, the newest change before it, timed at that frame (when it was painted)."""
    out: list[Render] = []
    i, shown = 0, None
    for frame in sorted(frames):
        while i < len(changes) and changes[i][0] <= frame:
            i += 1
        if i and changes[i - 1] is not shown:
            shown = changes[i - 1]
            out.append((frame, shown[1], shown[2]))
    return out


def latencies(renders: Sequence[Render]) -> list[float]:
    """Publish → render of each rendered frame, in ms."""
    return [at - sent for at, _, sent in renders]


def lags(renders: Sequence[Render], schedule: Sequence[tuple[float, int]]) -> list[int]:
    """Messages published but not yet shown at each rendered frame."""
    return [max(0, published_by(schedule, at) - (index + 1)) for at, index, _ in renders]


@dataclass(frozen=True)
class RunFigures:
    """One run's figures, as the report shows them."""

    fps: float
    worst_fps: float
    long_task_ms_s: float
    latency_p50: float
    latency_p99: float
    lag_p50: float
    lag_p99: float
    renders: int
    delivered_pct: float


def figures(
    frames: Sequence[float],
    tasks: Sequence[tuple[float, float]],
    renders: Sequence[Render],
    schedule: Sequence[tuple[float, int]],
    window: tuple[float, float],
    delivered: int,
    published: int,
) -> RunFigures:
    """The figures of one run: ``renders`` already one per rendered frame; only frames,
    tasks and renders inside ``window`` (epoch ms) count; ``delivered`` of ``published``
    messages reached the view."""
    start, end = window
    inside = [r for r in renders if start <= r[0] < end]
    late = latencies(inside)
    behind = [float(x) for x in lags(inside, schedule)]
    return RunFigures(
        fps=frame_rate(frames, start, end),
        worst_fps=worst_second_fps(frames, start, end),
        long_task_ms_s=long_task_ms_per_s(tasks, start, end),
        latency_p50=percentile(late, 50),
        latency_p99=percentile(late, 99),
        lag_p50=percentile(behind, 50),
        lag_p99=percentile(behind, 99),
        renders=len(inside),
        delivered_pct=100.0 * delivered / published if published else 0.0,
    )
