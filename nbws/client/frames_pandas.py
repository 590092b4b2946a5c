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
        out[missing] = None
    result: list[Any] = out.tolist()
    return result


def df_rows_json(df: Any, *, index: bool = False) -> list[bytes]:
    """Each row of ``df`` as the JSON bytes of one message (``{"col": value, ...}``).

    Columns are converted whole (NaN/NaT → null, datetimes → ISO 8601 with µs, ``Z``
    for tz-aware ones, timedeltas → seconds, categoricals → their values), then each row
    is serialised once by orjson.
    """
    import orjson

    frame = df.reset_index() if index else df
    names = [str(name) for name in frame.columns]
    columns = [_column_values(frame.iloc[:, i]) for i in range(len(names))]
    dumps = orjson.dumps
    option = orjson.OPT_SERIALIZE_NUMPY
    return [
        dumps(dict(zip(names, row, strict=True)), option=option)
        for row in zip(*columns, strict=True)
    ]


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
