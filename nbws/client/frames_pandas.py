"""DataFrames in and out of stream messages (pandas and pyarrow are imported lazily).

Encodings ``publish_df`` writes, and ``replay_df`` reads back:

- JSON (default): the payload is a list of row records, ``[{"col": value, ...}, ...]``,
  produced by ``DataFrame.to_json(orient="records", date_format="iso")``.
- Arrow: a binary message whose payload is an Arrow IPC *stream* and whose content type is
  ``application/vnd.apache.arrow.stream``; dtypes survive the round trip exactly.

``publish_rows`` sends each row as a message of its own (a JSON object per row, built
column by column: NaN and NaT become null, timestamps ISO strings, categoricals their
values), batched on the wire; ``history_df`` reads such rows back, one row per message,
optionally restoring the original dtypes.

``replay_df`` also accepts plain ``publish(dict)`` messages (one row each) and any other
JSON value (one row, column ``payload``). Every row is indexed by the offset of the
message it came from (index name ``offset``).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from itertools import repeat
from typing import Any

from .frames import Message

__all__ = [
    "ARROW_STREAM",
    "df_rows_json",
    "df_to_arrow",
    "df_to_json",
    "have_pyarrow",
    "messages_to_df",
    "rows_to_df",
]

ARROW_STREAM = "application/vnd.apache.arrow.stream"


def have_pyarrow() -> bool:
    return importlib.util.find_spec("pyarrow") is not None


def df_to_json(df: Any, *, index: bool = False) -> bytes:
    """JSON records of ``df`` (UTF-8 bytes), with the index as columns if ``index``."""
    frame = df.reset_index() if index else df
    text: str = frame.to_json(orient="records", date_format="iso", date_unit="us")
    return text.encode("utf-8")


def df_to_arrow(df: Any, *, index: bool = False) -> bytes:
    """Arrow IPC stream bytes of ``df``.

    Raises:
        ImportError: pyarrow is not installed (``pip install nbws[arrow]``).
    """
    try:
        import pyarrow as pa
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("encoding='arrow' needs pyarrow: pip install 'nbws[arrow]'") from None
    table = pa.Table.from_pandas(df, preserve_index=index)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue())


def _message_frame(message: Message) -> Any:
    import pandas as pd

    payload = message.payload
    if isinstance(payload, bytes):
        if message.content_type == ARROW_STREAM:
            import pyarrow as pa

            with pa.ipc.open_stream(payload) as reader:
                return reader.read_pandas()
        return pd.DataFrame({"payload": [payload]})
    if isinstance(payload, list) and all(isinstance(row, dict) for row in payload):
        return pd.DataFrame.from_records(payload)
    if isinstance(payload, dict):
        return pd.DataFrame.from_records([payload])
    return pd.DataFrame({"payload": [payload]})


def messages_to_df(messages: list[Message]) -> Any:
    """One DataFrame of all rows in ``messages``, indexed by their message's offset."""
    import pandas as pd

    frames = []
    for message in messages:
        frame = _message_frame(message)
        frame.index = pd.Index([message.offset] * len(frame), name="offset")
        frames.append(frame)
    if not frames:
        return pd.DataFrame(index=pd.Index([], name="offset", dtype="int64"))
    return pd.concat(frames)


def _column_values(series: Any) -> list[Any]:
    """One column as JSON-ready Python values, converted as a whole (no per-row pandas)."""
    import numpy as np
    import pandas as pd

    dtype = series.dtype
    missing = series.isna().to_numpy()
    if pd.api.types.is_datetime64_any_dtype(dtype):
        values = series.dt.tz_convert("UTC") if getattr(dtype, "tz", None) else series
        text = np.datetime_as_string(values.to_numpy(dtype="datetime64[us]"), unit="us")
        out = text.astype(object)
        if getattr(dtype, "tz", None):
            out = out + "Z"
    elif pd.api.types.is_timedelta64_dtype(dtype):
        out = (series.dt.total_seconds()).to_numpy(dtype=object)
    elif isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_object_dtype(dtype):
        out = series.to_numpy(dtype=object)
    else:
        listed: list[Any] = series.tolist()  # numbers and bools as Python values
        if missing.any():
            for i in np.flatnonzero(missing):
                listed[i] = None
        return listed
    if missing.any():
        out = out.copy()  # (to_numpy may give a read-only view of the column)
        out[missing] = None
    result: list[Any] = out.tolist()
    return result


def _column_texts(series: Any, dumps: Any, option: int) -> list[bytes]:
    """The JSON text of every value of one column, made in C a column at a time: the
    same bytes orjson gives each value inside a row object (see :func:`df_rows_json`)."""
    import numpy as np
    import pandas as pd

    dtype = series.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "iubf" and dtype.itemsize <= 8:
        # numbers and bools: one array serialised at once; a number's text has no comma
        values = series.to_numpy()
        if dtype.kind == "f" and dtype.itemsize < 8:  # as Python floats (tolist) would be
            values = values.astype("float64")
        return _split_array(dumps(np.ascontiguousarray(values), None, option))
    if pd.api.types.is_timedelta64_dtype(dtype):
        seconds = series.dt.total_seconds().to_numpy(dtype="float64")  # NaT -> NaN -> null
        return _split_array(dumps(np.ascontiguousarray(seconds), None, option))
    if pd.api.types.is_datetime64_any_dtype(dtype):
        texts = _iso_texts(series)
        if texts is not None:
            return texts
        # outside years 0-9999: ISO strings (null for NaT) in one list (no commas)
        return _split_array(dumps(_column_values(series), None, option))
    if isinstance(dtype, pd.CategoricalDtype):
        try:  # each category's text once, then picked by code (-1, missing: null)
            texts = [dumps(v, None, option) for v in series.cat.categories.to_numpy(object)]
        except TypeError:
            pass  # the generic path below raises what a row would
        else:
            table = np.array([*texts, b"null"], dtype=object)
            codes = series.cat.codes.to_numpy()
            picked: list[bytes] = table[codes].tolist()
            return picked
    values = _column_values(series)
    # each text copied to its size: orjson returns its working buffer (4 KiB at least)
    dumped = map(dumps, values, repeat(None), repeat(option))
    return list(map(b"".join, zip(dumped, repeat(b""), strict=False)))


_US_PER_DAY = 86_400_000_000
_tables: dict[str, Any] = {}


def _digits(values: Any, width: int) -> Any:
    """The ASCII digits of non-negative integers, ``width`` of them each (zero-padded),
    as a ``(len(values), width)`` uint8 array."""
    import numpy as np

    out = np.empty((len(values), width), dtype=np.uint8)
    for i in range(width):
        out[:, width - 1 - i] = values // 10**i % 10 + 48
    return out


def _table(name: str) -> Any:
    """Texts made once: ``"HH:MM:SS"`` for each second of a day (``S8``), ``"000"`` to
    ``"999"`` (``S3``)."""
    table = _tables.get(name)
    if table is None:
        import numpy as np

        if name == "time":
            seconds = np.arange(86_400)
            chars = np.full((86_400, 8), ord(":"), dtype=np.uint8)
            chars[:, 0:2] = _digits(seconds // 3600, 2)
            chars[:, 3:5] = _digits(seconds // 60 % 60, 2)
            chars[:, 6:8] = _digits(seconds % 60, 2)
        else:
            chars = _digits(np.arange(1000), 3)
        table = _tables[name] = chars.view(f"S{chars.shape[1]}").ravel()
    return table


def _dates(days: Any) -> tuple[Any, Any]:
    """``(year, "YYYY-MM-DD" as S10)`` of day counts since 1970-01-01 (proleptic
    Gregorian; H. Hinnant's civil_from_days), for years 0-9999."""
    import numpy as np

    z = days + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = np.where(mp < 10, mp + 3, mp - 9)
    year = yoe + era * 400 + (month <= 2)
    texts = np.char.add(
        np.char.add(np.char.zfill(year.astype("S4"), 4), b"-"),
        np.char.add(np.char.add(np.char.zfill(month.astype("S2"), 2), b"-"),
                    np.char.zfill(day.astype("S2"), 2)),
    )  # fmt: skip
    return year, texts.astype("S10")


def _iso_texts(series: Any) -> list[bytes] | None:
    """The JSON strings of a datetime column as ``np.datetime_as_string(unit="us")``
    writes them (``"2026-01-01T00:00:00.000000"``, ``Z`` added for tz-aware ones, null
    for NaT), assembled from tables of texts (dates of the days the column spans,
    times of day, microseconds) into one buffer of fixed-width records: much faster
    than numpy's string formatting. None when a year is outside 0-9999 (the caller
    formats those as before)."""
    import numpy as np

    dtype = series.dtype
    aware = getattr(dtype, "tz", None) is not None
    values = series.dt.tz_convert("UTC") if aware else series
    us = values.to_numpy(dtype="datetime64[us]").view("int64")
    missing = np.isnat(us.view("datetime64[us]"))
    rows = len(us)
    if missing.any():
        present = us[~missing]
        if not len(present):
            return [b"null"] * rows
        us = np.where(missing, present[0], us)  # (a day the column has anyway)
    days, rem = np.divmod(us, _US_PER_DAY)
    first, last = int(days.min()), int(days.max())
    years, _ = _dates(np.array([first, last], dtype="int64"))  # (years grow with days)
    if years[0] < 0 or years[1] > 9999:
        return None
    if last - first <= 4 * rows + 1000:  # the days spanned, each formatted once
        _, dates = _dates(np.arange(first, last + 1, dtype="int64"))
        index = days - first
    else:
        _, dates = _dates(days)
        index = np.arange(rows)
    seconds, micros = np.divmod(rem, 1_000_000)
    fields = [("q", "S1"), ("date", "S10"), ("t", "S1"), ("time", "S8"), ("dot", "S1")]
    fields += [("ms", "S3"), ("us", "S3"), ("end", "S3" if aware else "S2")]
    out = np.empty(rows, dtype=fields)
    out["q"], out["t"], out["dot"] = b'"', b"T", b"."
    out["end"] = b'Z",' if aware else b'",'
    out["date"] = dates[index]
    out["time"] = _table("time")[seconds]
    thousand = _table("thousand")
    millis, micro = np.divmod(micros, 1000)
    out["ms"] = thousand[millis]
    out["us"] = thousand[micro]
    texts = out.tobytes()[:-1].split(b",")
    for i in np.flatnonzero(missing).tolist():
        texts[i] = b"null"
    return texts


def _split_array(text: bytes) -> list[bytes]:
    """The element texts of a JSON array whose elements contain no comma."""
    return text[1:-1].split(b",")


def df_rows_json(df: Any, *, index: bool = False) -> list[bytes]:
    """Each row of ``df`` as the JSON bytes of one message (``{"col": value, ...}``).

    Columns are converted whole (NaN/NaT → null, datetimes → ISO 8601 with µs, ``Z``
    for tz-aware ones, timedeltas → seconds, categoricals → their values), each column
    to the JSON texts of its values in one call, and rows are joined from those texts
    and the constant key pieces by ``map``: no Python code runs per row. The bytes are
    what ``orjson.dumps`` of each row's dict gives.
    """
    import orjson

    frame = df.reset_index() if index else df
    rows = len(frame)
    names = [str(name) for name in frame.columns]
    if not rows:
        return []
    option = orjson.OPT_SERIALIZE_NUMPY
    if len(set(names)) != len(names):  # a dict keeps one value per name: build dicts
        columns = [_column_values(frame.iloc[:, i]) for i in range(len(names))]
        return [
            orjson.dumps(dict(zip(names, row, strict=True)), option=option)
            for row in zip(*columns, strict=True)
        ]
    if not names:
        return [b"{}"] * rows
    dumps = orjson.dumps
    parts: list[Iterable[bytes]] = []
    for i, name in enumerate(names):
        parts.append(repeat((b"{" if i == 0 else b",") + dumps(name) + b":"))
        parts.append(_column_texts(frame.iloc[:, i], dumps, option))
    parts.append(repeat(b"}"))
    return list(map(b"".join, zip(*parts, strict=False)))  # (the repeats never end)


def rows_to_df(messages: list[Message], dtypes: Any = None) -> Any:
    """One row per message (dict payloads; any other payload as column ``payload``),
    indexed by offset, built in one call. ``dtypes`` (e.g. the published frame's
    ``df.dtypes``) converts the columns back: datetimes are parsed, categoricals
    rebuilt."""
    import pandas as pd

    offsets = [m.offset for m in messages]
    records = [
        m.payload if isinstance(m.payload, dict) else {"payload": m.payload} for m in messages
    ]
    frame = pd.DataFrame.from_records(records, index=pd.Index(offsets, name="offset"))
    if not messages:
        frame.index = frame.index.astype("int64")
    if dtypes is not None:
        for column, dtype in dict(dtypes).items():
            if column not in frame.columns:
                continue
            if pd.api.types.is_datetime64_any_dtype(dtype):
                frame[column] = pd.to_datetime(
                    frame[column], utc=getattr(dtype, "tz", None) is not None
                )
                if getattr(dtype, "tz", None) is not None:
                    frame[column] = frame[column].dt.tz_convert(dtype.tz)
                frame[column] = frame[column].astype(dtype)
            elif pd.api.types.is_timedelta64_dtype(dtype):
                frame[column] = pd.to_timedelta(frame[column], unit="s").astype(dtype)
            else:
                frame[column] = frame[column].astype(dtype)
    return frame
