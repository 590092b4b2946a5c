"""The browser bench: registered (run only with ``--only browser``) and its arithmetic on
fixed records (frame rate, long tasks, percentiles, lag, drops); no browser, no timing."""

from __future__ import annotations

import pytest

from nbws.bench import browser_stats as stats
from nbws.bench.browser import (
    RATES,
    RATES_QUICK,
    nbws_renders,
    per_view,
    report_table,
    view_drops,
)
from nbws.bench.browser_publisher import payloads
from nbws.bench.runner import OWN_RUN
from nbws.bench.scenarios import ONLY_WHEN_NAMED, SCENARIOS


def test_registered_only_when_named():
    assert "browser" in ONLY_WHEN_NAMED and "browser" in OWN_RUN
    assert "browser" not in SCENARIOS  # the default run never starts a browser
    assert RATES == (1_000, 5_000, 10_000, 20_000, 50_000)
    assert set(RATES_QUICK) < set(RATES)


def test_frame_rate_counts_frames_inside_the_window():
    frames = [1000.0 + 20 * k for k in range(150)]  # 50 fps for 3 s from t=1000
    assert stats.frame_rate(frames, 1000, 3000) == pytest.approx(50)
    assert stats.frame_rate(frames, 1000, 1000) == 0.0
    # a 500 ms stall in the second second
    stalled = [f for f in frames if not 2000 <= f < 2500]
    assert stats.worst_second_fps(stalled, 1000, 4000) == 25
    assert stats.worst_second_fps(frames, 1000, 1500) == 0.0


def test_long_tasks_are_clipped_to_the_window():
    tasks = [(500.0, 1000.0), (2000.0, 100.0), (2950.0, 200.0)]
    # 500 ms of the first (1000-1500), 100 of the second, 50 of the third, over 2 s
    assert stats.long_task_ms_per_s(tasks, 1000, 3000) == pytest.approx(325)


def test_published_by_reads_the_schedule_at_or_before():
    schedule = [(100.0, 10), (110.0, 20), (120.0, 30)]
    assert stats.published_by(schedule, 99) == 0
    assert stats.published_by(schedule, 110) == 20
    assert stats.published_by(schedule, 119.9) == 20
    assert stats.published_by(schedule, 500) == 30


def test_per_frame_keeps_the_newest_change_before_each_frame():
    changes = [(5.0, 0, 1.0), (7.0, 1, 2.0), (30.0, 2, 3.0)]
    frames = [0.0, 16.0, 32.0, 48.0]
    # frame 0: nothing yet; 16: newest is index 1; 32: index 2; 48: nothing new
    assert stats.per_frame(changes, frames) == [(16.0, 1, 2.0), (32.0, 2, 3.0)]


def test_latency_and_lag_from_renders():
    schedule = [(1000.0, 100), (2000.0, 200)]
    renders = [(1500.0, 49, 1400.0), (2500.0, 199, 2480.0), (2600.0, 250, 2590.0)]
    assert stats.latencies(renders) == [100.0, 20.0, 10.0]
    # 100 published by 1500, 50 shown; 200 by 2500, 200 shown; never negative
    assert stats.lags(renders, schedule) == [50, 0, 0]


def test_figures_of_a_run():
    frames = [1000.0 + 10 * k for k in range(200)]  # 100 fps for 2 s
    schedule = [(1000.0 + 100 * k, 10 * k) for k in range(21)]  # 100 msg/s
    renders = [(1000.0 + 100 * k, 10 * k - 3, 1000.0 + 100 * k - 5 * k) for k in range(1, 21)]
    renders.append((5000.0, 400, 4000.0))  # after the window: left out
    result = stats.figures(frames, [(1500.0, 60.0)], renders, schedule, (1000, 3000), 190, 200)
    assert result.fps == pytest.approx(100)
    assert result.long_task_ms_s == pytest.approx(30)
    assert result.renders == 19  # k = 1..19 (at 3000 is outside)
    # latencies 5k for k=1..19: nearest-rank p50 is the 10th (50), p99 the 19th (95)
    assert (result.latency_p50, result.latency_p99) == (50, 95)
    # each render shows 10k-3 of 10k published: lag 2 every time
    assert (result.lag_p50, result.lag_p99) == (2, 2)
    assert result.delivered_pct == pytest.approx(95)


def test_renders_come_from_page_stats_when_the_views_report():
    record = {
        "frames": [85.0, 100.0, 116.0],
        "table": [(80.0, 9, 0.0), (90.0, 12, 50.0)],  # offset 9: the warm-up, no time
        "stats": {
            "renders": [
                {"at": 120.0, "view": "chart", "stream": "s", "offset": 15, "time": 0.1},
                {"at": 110.0, "view": "table", "stream": "s", "offset": 14, "time": 0.09},
                {"at": 115.0, "view": "table", "stream": "other", "offset": 99, "time": 0.0},
            ]
        },
    }
    renders, source = nbws_renders(record, 10, "s")
    assert source == "__nbwsStats"
    assert renders == [(110.0, 4, 90.0), (120.0, 5, 100.0)]
    record["stats"] = None
    renders, source = nbws_renders(record, 10, "s")
    assert source == "table DOM"
    assert renders == [(100.0, 2, 50.0)]  # the table changed at 90, painted at frame 100


def test_publisher_payloads_carry_index_and_time():
    items = payloads(5, 3, 1234.56)
    assert [p["i"] for p in items] == [5, 6, 7]
    assert {p["t"] for p in items} == {"1234.6"}  # a string: the table shows it as is


def test_report_table_has_one_line_per_run():
    from nbws.bench.browser import Run

    run = Run("nbws", 1000, 2000, stats.figures([], [], [], [], (0, 1000), 5, 10))
    text = report_table([run], 60.0)
    assert text.count("\n") == 2 and "1,000 msg/s" in text and "50 %" in text


def test_drops_are_the_largest_any_view_reports():
    record = {
        "counts": {
            "table": {"received": 90, "skipped": 40, "missed": 7, "points": 0},
            "chart": {"received": 95, "skipped": 10, "missed": 3, "points": 500},
        },
        "stats": {
            "drops": {
                "table:s": {"view": "table", "stream": "s", "dropped": 9, "conflated": 2},
                "monitor:s": {"view": "monitor", "stream": "s", "dropped": 4, "conflated": 5},
                "table:x": {"view": "table", "stream": "x", "dropped": 99, "conflated": 99},
            }
        },
    }
    assert view_drops(record, "s") == (9, 5, 40)
    assert view_drops({"counts": {}, "stats": None}, "s") == (0, 0, 0)


def test_per_view_latency_from_page_stats():
    def render(at, view, time, stream="s"):
        return {"at": at, "view": view, "stream": stream, "offset": 1, "time": time}

    record = {
        "stats": {
            "renders": [
                render(1100.0, "table", 1.0),  # 100 ms
                render(1200.0, "table", 1.15),  # 50 ms
                render(1300.0, "chart", 1.0),  # 300 ms
                render(1400.0, "chart", 1.0, stream="other"),
                render(5000.0, "chart", 1.0),  # after the window
            ]
        }
    }
    views = per_view(record, "s", (1000, 2000))
    assert views == {
        "chart": {"renders": 1, "p50": 300.0, "p99": 300.0},
        "table": {"renders": 2, "p50": 50.0, "p99": 100.0},
    }
    assert per_view({"stats": None}, "s", (0, 1)) == {}
