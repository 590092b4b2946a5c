"""``LiveChart``: a streaming line chart (uPlot in the browser) of numeric fields."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from traitlets import Int, List, TraitError, Unicode, validate

from ._base import StreamWidget

__all__ = ["LiveChart"]

WINDOW_LIMIT = 100_000


class LiveChart(StreamWidget):
    """Lines of ``y`` fields against ``x`` over a sliding window of the newest messages.

    Args:
        stream: the stream to plot.
        x: the x field (a payload field, or ``time``/``offset`` from the message header;
            epoch seconds make a time axis).
        y: one or more numeric payload fields, one line each.
        window: points kept (the newest); a view displayed again replays this many.
    """

    _view = Unicode("chart").tag(sync=True)

    x = Unicode("time", help="Field on the x axis.").tag(sync=True)
    y = List(Unicode(), help="Fields drawn as lines.").tag(sync=True)
    window = Int(500, help="Points kept (the newest).").tag(sync=True)
    height = Int(300, help="Height in pixels.").tag(sync=True)
    title = Unicode("", help="Chart title.").tag(sync=True)

    def __init__(
        self,
        stream: str,
        x: str = "time",
        y: str | Sequence[str] = ("value",),
        window: int = 500,
        **kwargs: Any,
    ) -> None:
        fields = [y] if isinstance(y, str) else list(y)
        super().__init__(stream, x=x, y=fields, window=window, **kwargs)

    @validate("y")
    def _check_y(self, proposal: dict[str, Any]) -> list[str]:
        value = [str(name) for name in proposal["value"]]
        if not value:
            raise TraitError("y needs at least one field")
        return value

    @validate("x")
    def _check_x(self, proposal: dict[str, Any]) -> str:
        value = str(proposal["value"])
        if not value:
            raise TraitError("x needs a field name")
        return value

    @validate("window")
    def _check_window(self, proposal: dict[str, Any]) -> int:
        value = int(proposal["value"])
        if not 2 <= value <= WINDOW_LIMIT:
            raise TraitError(f"window must be 2-{WINDOW_LIMIT} points (got {value})")
        return value

    @validate("height")
    def _check_height(self, proposal: dict[str, Any]) -> int:
        value = int(proposal["value"])
        if value < 120:
            raise TraitError(f"height must be at least 120 pixels (got {value})")
        return value
