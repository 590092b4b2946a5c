"""Plain-text and HTML tables of frame records and scenario results.

A terminal gets aligned columns from ``repr``; a notebook gets the same rows as an HTML
table from ``_repr_html_``. The FrameInspector widget reads :meth:`FrameRecord.as_dict`
instead and does its own layout.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from html import escape

from ..errors import describe_close_code
from ..protocol.tap import FrameRecord
from .frames import parse_close_payload

__all__ = [
    "FRAME_COLUMNS",
    "frame_rows",
    "frame_table_html",
    "frame_table_text",
    "html_table",
    "preview_text",
    "text_table",
]

FRAME_COLUMNS = (
    "#",
    "t ms",
    "dir",
    "opcode",
    "FIN",
    "RSV",
    "MASK",
    "length",
    "payload",
    "reply ms",
)

_ARROWS = {"out": "→", "in": "←"}


def preview_text(record: FrameRecord, width: int = 40) -> str:
    """A short readable rendering of a frame's payload preview."""
    data = record.preview
    if record.opcode == 0x8:
        code, reason = parse_close_payload(data)
        if code is None:
            return "(no status code)" if not data else f"malformed close body {data.hex(' ')}"
        shown = reason.decode("utf-8", "replace")
        return f"{code} {describe_close_code(code)}" + (f" {shown!r}" if shown else "")
    try:
        text = repr(data.decode("utf-8"))
    except UnicodeDecodeError:
        text = data.hex(" ")
    if len(text) > width:
        text = text[: width - 1] + "…"
    if record.length > len(data) and not text.endswith("…"):
        text += "…"
    return text


def frame_rows(records: Sequence[FrameRecord], start: float | None = None) -> list[list[str]]:
    """One row of strings per record, in :data:`FRAME_COLUMNS` order.

    ``reply ms`` is filled on frames sent: the time until the next frame received.
    """
    if not records:
        return []
    origin = records[0].time if start is None else start
    next_in: list[float | None] = [None] * len(records)
    upcoming: float | None = None
    for index in range(len(records) - 1, -1, -1):
        next_in[index] = upcoming
        if records[index].direction == "in":
            upcoming = records[index].time
    rows = []
    for index, record in enumerate(records):
        reply = ""
        replied = next_in[index]
        if record.direction == "out" and replied is not None:
            reply = f"{(replied - record.time) * 1000:.1f}"
        rows.append(
            [
                str(index + 1),
                f"{(record.time - origin) * 1000:.1f}",
                _ARROWS.get(record.direction, record.direction),
                record.opcode_name,
                "1" if record.fin else "0",
                "".join("1" if bit else "0" for bit in record.rsv),
                "M" if record.masked else "-",
                str(record.length),
                preview_text(record),
                reply,
            ]
        )
    return rows


def text_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], *, wrap: Sequence[int | None] = ()
) -> str:
    """Columns padded to their widest cell; ``wrap[i]`` folds column i at that width."""
    limits = list(wrap) + [None] * (len(headers) - len(wrap))
    cells = [
        [
            textwrap.wrap(cell, limit) or [""] if limit else [cell]
            for cell, limit in zip(row, limits, strict=False)
        ]
        for row in rows
    ]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [
            max(w, *(len(line) for line in cell)) for w, cell in zip(widths, row, strict=False)
        ]

    def line(parts: Sequence[str]) -> str:
        return "  ".join(p.ljust(w) for p, w in zip(parts, widths, strict=False)).rstrip()

    lines = [line(headers), "  ".join("-" * w for w in widths)]
    for row in cells:
        height = max(len(cell) for cell in row)
        for i in range(height):
            lines.append(line([cell[i] if i < len(cell) else "" for cell in row]))
    return "\n".join(lines)


def html_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], *, row_classes: Sequence[str] = ()
) -> str:
    """A plain HTML table (cells escaped)."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for index, row in enumerate(rows):
        css = f' class="{escape(row_classes[index])}"' if index < len(row_classes) else ""
        cells = "".join(f"<td>{escape(cell)}</td>" for cell in row)
        body.append(f"<tr{css}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def frame_table_text(records: Sequence[FrameRecord], start: float | None = None) -> str:
    """The frame table for a terminal."""
    if not records:
        return "(no frames yet)"
    return text_table(FRAME_COLUMNS, frame_rows(records, start))


def frame_table_html(records: Sequence[FrameRecord], start: float | None = None) -> str:
    """The frame table for a notebook."""
    if not records:
        return "<p>(no frames yet)</p>"
    return html_table(FRAME_COLUMNS, frame_rows(records, start))
