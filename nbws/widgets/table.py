"""``LiveTable``: the newest rows of a stream, appended live in the browser."""

from __future__ import annotations

from typing import Any

from traitlets import Int, List, TraitError, Unicode, validate

from ._base import StreamWidget

__all__ = ["LiveTable"]

MAX_ROWS_LIMIT = 100_000


class LiveTable(StreamWidget):
    """A table of the newest ``max_rows`` messages of ``stream``, newest at the bottom.

    Args:
        stream: the stream to show.
        columns: payload fields to show (also ``offset``, ``time``, ``key``, ``producer``,
            ``seq`` from the message header); None shows ``offset`` and every payload field.
        max_rows: rows kept (older ones scroll away); a view displayed again replays this
            many from the stream's history.
    """

    _view = Unicode("table").tag(sync=True)

    columns = List(
        Unicode(),
        default_value=None,
        allow_none=True,
        help="Fields to show; None: offset and every payload field.",
    ).tag(sync=True)
    max_rows = Int(1000, help="Rows kept and replayed.").tag(sync=True)
    height = Int(320, help="Height of the scrolling area in pixels.").tag(sync=True)

    def __init__(
        self, stream: str, columns: list[str] | None = None, max_rows: int = 1000, **kwargs: Any
    ) -> None:
        super().__init__(stream, columns=columns, max_rows=max_rows, **kwargs)

    @validate("max_rows")
    def _check_max_rows(self, proposal: dict[str, Any]) -> int:
        value = int(proposal["value"])
        if not 1 <= value <= MAX_ROWS_LIMIT:
            raise TraitError(f"max_rows must be 1-{MAX_ROWS_LIMIT} (got {value})")
        return value

    @validate("columns")
    def _check_columns(self, proposal: dict[str, Any]) -> list[str] | None:
        value = proposal["value"]
        if value is None:
            return None
        names = [str(name) for name in value]
        if not all(names):
            raise TraitError("column names must not be empty")
        return names

    @validate("height")
    def _check_height(self, proposal: dict[str, Any]) -> int:
        value = int(proposal["value"])
        if value < 60:
            raise TraitError(f"height must be at least 60 pixels (got {value})")
        return value
