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


def reference_rows_json(df: object, *, index: bool = False) -> list[bytes]:
    """The earlier builder (a dict per row, orjson per row): what the column-wise one
    must reproduce byte for byte."""
    import orjson

    from nbws.client.frames_pandas import _column_values

    frame = df.reset_index() if index else df  # type: ignore[attr-defined]
    names = [str(n) for n in frame.columns]
    columns = [_column_values(frame.iloc[:, i]) for i in range(len(names))]
    return [
        orjson.dumps(dict(zip(names, row, strict=True)), option=orjson.OPT_SERIALIZE_NUMPY)
        for row in zip(*columns, strict=True)
    ]


def mixed_frame(seed: int, n: int) -> object:
    rng = np.random.default_rng(seed)
    floats = rng.normal(0, 10.0 ** rng.integers(-300, 300, n), n)
    floats[rng.random(n) < 0.1] = np.nan
    floats[: min(n, 4)] = [np.inf, -np.inf, -0.0, 5e-324][: min(n, 4)]
    micros = rng.integers(-(2**62), 2**62, n)  # years ~-144000..148000
    near = rng.integers(-62_135_596_800_000_000, 253_402_300_799_999_999, n)  # years 1-9999
    naive = pd.Series(near.astype("datetime64[us]"))
    naive[rng.random(n) < 0.1] = pd.NaT
    ns = pd.Series(rng.integers(-(2**62), 2**62, n).astype("datetime64[ns]"))
    ns[rng.random(n) < 0.1] = pd.NaT
    delta = pd.Series(rng.integers(-(10**15), 10**15, n).astype("timedelta64[ns]"))
    delta[rng.random(n) < 0.1] = pd.NaT
    objects = np.array([None, "x", 1, 2.5, float("nan"), {"a": [1]}, 'q"\\\n', "é"], object)
    return pd.DataFrame(
        {
            "i8": rng.integers(-128, 127, n).astype("int8"),
            "i64": rng.integers(-(2**63), 2**63 - 1, n, dtype="int64"),
            "u64": rng.integers(0, 2**64 - 1, n, dtype="uint64"),
            "f64": floats,
            "f32": np.clip(floats, -1e38, 1e38).astype("float32"),
            "f16": rng.normal(0, 100, n).astype("float16"),
            "b": rng.random(n) < 0.5,
            "naive": naive,
            "aware": pd.Series(near.astype("datetime64[us]")).dt.tz_localize("Asia/Kolkata"),
            "ns": ns,
            "wide": pd.Series(micros.astype("datetime64[us]")),
            "delta": delta,
            "cat": pd.Categorical(rng.choice(["a", "b", None], n)),
            "icat": pd.Categorical(rng.choice([1, 2, 3], n)),
            "obj": pd.Series(objects[rng.integers(0, len(objects), n)], dtype=object),
            "str": pd.array(rng.choice(["s", None, ',"]'], n), dtype="string"),
            "Int64": pd.array(rng.choice([1, None, -5], n), dtype="Int64"),
            7: rng.integers(0, 10, n),
            'k"\u2028': rng.integers(0, 10, n),
        },
        index=pd.Index(rng.integers(0, 100, n), name="idx"),
    )


@pytest.mark.parametrize("seed", range(6))
def test_column_wise_rows_are_the_bytes_of_a_dict_per_row(seed: int) -> None:
    df = mixed_frame(seed, 2000 + seed)
    assert df_rows_json(df) == reference_rows_json(df)
    assert df_rows_json(df, index=True) == reference_rows_json(df, index=True)
    part = df.iloc[::3, ::2]  # not contiguous
    assert df_rows_json(part) == reference_rows_json(part)


def test_rows_of_odd_frames() -> None:
    empty = pd.DataFrame({"a": pd.Series([], dtype="int64")})
    assert df_rows_json(empty) == []
    assert df_rows_json(pd.DataFrame(index=range(3))) == [b"{}"] * 3
    twice = pd.DataFrame([[1, 2], [3, 4]], columns=["a", "a"])  # one key per row, as a dict
    assert df_rows_json(twice) == reference_rows_json(twice) == [b'{"a":2}', b'{"a":4}']
    nat = pd.DataFrame({"t": pd.Series([pd.NaT, pd.NaT], dtype="datetime64[ns]")})
    assert df_rows_json(nat) == [b'{"t":null}', b'{"t":null}']
