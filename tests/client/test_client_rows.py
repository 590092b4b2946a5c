"""DataFrames row by row: ``publish_rows`` (one message per row, batched on the wire) and
``history_df`` (rows back as a DataFrame), with NaN, timestamps and categoricals."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
from chaos import ChaosProxy
from client_support import http_url, name, serving, wait_until
from conftest import RunningServer

import nbws
from nbws.client import Receipts
from nbws.client.errors import DeliveryFailed, FlushError
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
    assert isinstance(receipts, Receipts) and len(receipts) == 3000
    receipts.wait(60)
    stream.flush(timeout=60)
    assert [r.result(0) for r in receipts] == list(range(3000))  # one offset per row
    assert receipts.offsets() == list(range(3000)) and receipts.failures() == []
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
    close = pd.Series(1_767_225_600_000_000 + rng.integers(0, 3 * 86_400_000_000, n))
    close = close.astype("datetime64[us]")  # a few days: each day formatted once
    close[rng.random(n) < 0.1] = pd.NaT
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
            "close": close,
            "close_utc": close.dt.tz_localize("America/New_York", ambiguous="NaT"),
            "old": close - pd.Timedelta(days=365 * 1980),  # the 1st century
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


FAST = {"backoff_initial": 0.05, "backoff_max": 0.3}


def padded(n: int, start: int = 0) -> object:
    return pd.DataFrame(
        {
            "i": np.arange(start, start + n, dtype="int64"),
            "x": np.arange(start, start + n) / 8,
            "pad": "p" * 40,
        }
    )


def test_rows_through_killed_connections_are_appended_once_in_order() -> None:
    """Runs cut mid-frame, runs whose acks are lost (appended, then retransmitted),
    and runs acked in part (each run goes as several batches under a small
    max_message_size) before the connection dies: every row once, in order."""
    n = 80_000
    with (
        serving(
            "history_max_messages=200000",
            "history_max_bytes=268435456",
            "max_message_size=16384",
        ) as server,
        ChaosProxy(
            server.port,
            seed=5,
            kill_after=(30_000, 300_000),
            modes=("upstream-cut", "ack-loss"),
        ) as proxy,
    ):
        stream = nbws.stream(name("rchaos"), url=f"http://127.0.0.1:{proxy.port}/", **FAST)
        first = stream.publish_rows(padded(n // 2))
        middle = stream.publish({"i": -1})  # a single publish between two publish_rows
        rest = stream.publish_rows(padded(n // 2, n // 2))
        stream.flush(timeout=240)
        stats = stream.stats()
        reader = nbws.stream(stream.name, url=http_url(server))
        history = reader.history(0)
        reader.close()
        stream.close()
        kills = proxy.stats.kills
    assert first.offsets() == list(range(n // 2))
    assert middle.result(0) == n // 2
    assert rest.offsets() == list(range(n // 2 + 1, n + 1))
    assert [(m.offset, m.seq) for m in history] == [(i, i) for i in range(n + 1)]
    assert [m.payload["i"] for m in history] == [*range(n // 2), -1, *range(n // 2, n)]
    assert sum(kills.values()) >= 3, dict(kills)
    assert kills["upstream-cut"] >= 1 and kills["ack-loss"] >= 1
    assert stats.retransmitted > 0 and stats.duplicates > 0  # appended runs resent
    assert stats.acked == n + 1 and stats.failed == 0 and stats.outbox_messages == 0


def test_an_oversize_row_fails_alone_and_the_rest_of_its_run_is_acked() -> None:
    """The server refuses one row of a batch (larger than the stream's history may
    hold): that row's receipt fails, every other row of the run gets its offset."""
    with serving("history_max_bytes=20000") as server:
        df = padded(200)
        df.loc[57, "pad"] = "x" * 30_000
        stream = nbws.stream(name("roversize"), url=http_url(server))
        receipts = stream.publish_rows(df)
        receipts.wait(60)
        with pytest.raises(FlushError, match="1 messages failed"):
            stream.flush(timeout=60)
        history = stream.history(0)
        stream.close()
    error = receipts[57].exception(0)
    assert isinstance(error, DeliveryFailed) and error.code == "oversize" and error.seq == 57
    assert [f.seq for f in receipts.failures()] == [57]
    expected = [*range(57), None, *range(57, 199)]
    assert receipts.offsets() == expected
    assert [m.seq for m in history][-5:] == [195, 196, 197, 198, 199]


def test_a_row_over_the_servers_message_size_fails_before_it_is_sent() -> None:
    with serving("max_message_size=4096") as server:
        df = padded(100)
        df.loc[10, "pad"] = "y" * 5000
        stream = nbws.stream(name("rtoobig"), url=http_url(server))
        receipts = stream.publish_rows(df)
        receipts.wait(60)
        with pytest.raises(FlushError):
            stream.flush(timeout=60)
        stats = stream.stats()
        stream.close()
    assert receipts[10].exception(0).code == "too-big"  # type: ignore[union-attr]
    assert receipts.offsets() == [*range(10), None, *range(10, 99)]
    assert stats.acked == 99 and stats.failed == 1


def test_rows_whose_acks_were_lost_keep_their_original_offsets() -> None:
    """Rows on the wire when the connection dies, appended but not acked, are resent
    after the reconnect: the server recognises every one of them (the rows window stays
    within its dedupe window) and acks it with the offset it was appended at."""
    with serving("history_max_messages=100000") as server, ChaosProxy(server.port) as proxy:
        url = f"http://127.0.0.1:{proxy.port}/"
        stream = nbws.stream(name("rlost"), url=url, rows_window=16_384, **FAST)
        stream.publish_rows(padded(10_000)).wait(60)  # slow start is over
        proxy.hold()  # acks stop coming back
        held = stream.publish_rows(padded(20_000, 10_000), block=False)  # (no backlog wait)
        wait_until(lambda: stream.stats().in_flight >= 3000, 60, "a full rows window")
        in_flight = stream.stats().in_flight
        reader = nbws.stream(stream.name, url=http_url(server))
        wait_until(lambda: len(reader.history(10_000)) == in_flight, 60, "appended")
        proxy.kill_all()
        proxy.release()
        stream.flush(timeout=120)
        stats = stream.stats()
        history = reader.history(0)
        reader.close()
        stream.close()
    assert 3000 <= in_flight <= 4096  # capped at the server's dedupe window (4096)
    assert held.offsets() == list(range(10_000, 30_000))  # none unknown (None)
    assert stats.duplicates == in_flight and stats.reconnects >= 1
    assert [(m.offset, m.seq) for m in history] == [(i, i) for i in range(30_000)]


def test_building_rows_of_text_columns_holds_no_serialiser_buffer_per_value() -> None:
    """orjson hands back its working buffer (4 KiB for the smallest value): the texts of
    an object column are copied to their size, so 20,000 of them are not 80 MB."""
    import tracemalloc

    df = pd.DataFrame({"s": [f"r{i}" for i in range(20_000)], "o": [None, 1.5] * 10_000})
    tracemalloc.start()
    try:
        rows = df_rows_json(df)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert rows[3] == b'{"s":"r3","o":1.5}'
    assert peak < 20 * 1024 * 1024, peak
