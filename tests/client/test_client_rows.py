"""DataFrames row by row: ``publish_rows`` (one message per row, batched on the wire) and
``history_df`` (rows back as a DataFrame), with NaN, timestamps and categoricals."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
from client_support import http_url, name, serving
from conftest import RunningServer

import nbws
from nbws.client.frames_pandas import df_rows_json

pd = pytest.importorskip("pandas")
np = pytest.importorskip("numpy")

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with serving() as running:
        yield running


def frame(n: int) -> object:
    df = pd.DataFrame(
        {
            "i": np.arange(n, dtype="int64"),
            "x": np.linspace(0.0, 1.0, n),
            "t": pd.date_range("2026-01-01", periods=n, freq="ms"),
            "utc": pd.date_range("2026-01-01", periods=n, freq="s", tz="UTC"),
            "c": pd.Categorical(np.where(np.arange(n) % 3, "a", "b"), categories=["a", "b"]),
            "s": [f"r{i}" for i in range(n)],
            "ok": np.arange(n) % 2 == 0,
        }
    )
    df.loc[1, "x"] = np.nan
    df.loc[2, "t"] = pd.NaT
    df.loc[3, "c"] = np.nan
    df.loc[4, "s"] = None
    return df


def test_rows_are_json_objects_with_null_for_missing_values() -> None:
    import orjson

    rows = [orjson.loads(r) for r in df_rows_json(frame(5))]
    assert rows[0] == {
        "i": 0,
        "x": 0.0,
        "t": "2026-01-01T00:00:00.000000",
        "utc": "2026-01-01T00:00:00.000000Z",
        "c": "b",
        "s": "r0",
        "ok": True,
    }
    assert rows[1]["x"] is None and rows[2]["t"] is None
    assert rows[3]["c"] is None and rows[4]["s"] is None


def test_publish_rows_round_trip_keeps_values_and_dtypes(server: RunningServer) -> None:
    df = frame(3000)
    stream = nbws.stream(name("rows"), url=http_url(server))
    receipts = stream.publish_rows(df)
    stream.flush(timeout=60)
    assert [r.result(0) for r in receipts] == list(range(3000))  # one offset per row
    assert stream._publisher.link.batches_sent >= 1
    back = stream.history_df(dtypes=df.dtypes)
    plain = stream.history_df(0, 10)
    stream.close()
    assert list(back.index) == list(range(3000)) and back.index.name == "offset"
    pd.testing.assert_frame_equal(back.reset_index(drop=True), df, check_exact=True)
    assert plain["t"].iloc[0] == "2026-01-01T00:00:00.000000" and math.isnan(plain["x"].iloc[1])
