"""DataFrames in and out of stream messages (pandas and pyarrow are imported lazily).

Encodings ``publish_df`` writes, and ``replay_df`` reads back:

- JSON (default): the payload is a list of row records, ``[{"col": value, ...}, ...]``,
  produced by ``DataFrame.to_json(orient="records", date_format="iso")``.
- Arrow: a binary message whose payload is an Arrow IPC *stream* and whose content type is
  ``application/vnd.apache.arrow.stream``; dtypes survive the round trip exactly.

``replay_df`` also accepts plain ``publish(dict)`` messages (one row each) and any other
JSON value (one row, column ``payload``). Every row is indexed by the offset of the
message it came from (index name ``offset``).
"""

from __future__ import annotations

import importlib.util
from typing import Any

from .frames import Message

__all__ = ["ARROW_STREAM", "df_to_arrow", "df_to_json", "have_pyarrow", "messages_to_df"]

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
