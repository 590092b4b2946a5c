"""docs/client.md stays true to the code: every handle option is documented with its default."""

from __future__ import annotations

import dataclasses
import pathlib

from nbws.client import StreamOptions

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "client.md"


def human(name: str, value: object) -> str:
    """How the docs write a default: sizes (of bytes) in KiB/MiB, everything else (counts
    too) as Python prints it."""
    sized = name.endswith(("_bytes", "_size"))
    if sized and isinstance(value, int) and not isinstance(value, bool) and value % 1024 == 0:
        if value % (1024 * 1024) == 0:
            return f"{value // (1024 * 1024)} MiB"
        return f"{value // 1024} KiB"
    return str(value)


def test_every_stream_option_is_documented_with_its_default() -> None:
    rows = {}
    for line in DOC.read_text().splitlines():
        if line.startswith("| `"):
            for name in line.split("|")[1].replace("`", "").split("/"):
                rows[name.strip()] = line
    for field in dataclasses.fields(StreamOptions):
        assert field.name in rows, f"docs/client.md does not document {field.name}"
        default = "random" if field.name == "producer" else human(field.name, field.default)
        assert default in rows[field.name], f"{field.name}: default {default} not in the docs"
