"""The widget models the kernel syncs: the views module, defaults and validation."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from anywidget import AnyWidget
from traitlets import TraitError

import nbws
from nbws.widgets import (
    MODULE_NAME,
    MODULE_VERSION,
    FrameInspector,
    LiveChart,
    LiveTable,
    StreamMonitor,
)
from nbws.widgets._base import ESM_PATH

LABEXTENSION = Path(__file__).resolve().parents[2] / "labextension"
ANYWIDGET_TS = (LABEXTENSION / "src" / "anywidget.ts").read_text()


def synced(widget: Any) -> dict[str, Any]:
    return dict(widget.get_state())


def test_module_and_version_match_the_labextension() -> None:
    package = json.loads((LABEXTENSION / "package.json").read_text())
    assert MODULE_NAME == package["name"] == "nbws"
    assert package["version"] == nbws.__version__
    expected = f"^{package['version']}"
    assert expected == MODULE_VERSION
    version_ts = (LABEXTENSION / "src" / "version.ts").read_text()
    assert f"MODULE_VERSION = '{package['version']}'" in version_ts


@pytest.mark.parametrize(
    ("widget", "view"),
    [
        (LiveTable("s"), "table"),
        (LiveChart("s", y="v"), "chart"),
        (StreamMonitor("s"), "monitor"),
        (FrameInspector(), "inspector"),
    ],
)
def test_widgets_are_anywidgets_rendered_by_the_views_module(widget: Any, view: str) -> None:
    state = synced(widget)
    # anywidget's own model and view: no labextension has to register anything.
    assert (state["_model_module"], state["_model_name"]) == ("anywidget", "AnyModel")
    assert (state["_view_module"], state["_view_name"]) == ("anywidget", "AnyView")
    assert state["_view"] == view
    assert re.search(rf"\b{view}: ", ANYWIDGET_TS), f"anywidget.ts renders no {view!r} view"
    if ESM_PATH.is_file():
        assert state["_esm"] == ESM_PATH.read_text()
    assert state["transport"] == ""
    own = set(widget.trait_names(sync=True)) - set(AnyWidget().trait_names(sync=True))
    for name in own - {"_view", "_esm", "_anywidget_id", "transport"}:
        assert re.search(rf"['\"]{name}['\"]", ANYWIDGET_TS), f"anywidget.ts never reads {name}"


def test_live_table_defaults_and_limits() -> None:
    table = LiveTable("prices")
    assert (table.stream, table.columns, table.max_rows) == ("prices", None, 1000)
    table = LiveTable("a/b:c.d-e_f", columns=["price", "offset"], max_rows=5)
    assert synced(table)["columns"] == ["price", "offset"]
    with pytest.raises(TraitError, match="max_rows"):
        LiveTable("prices", max_rows=0)
    with pytest.raises(TraitError, match="max_rows"):
        table.max_rows = 100_001
    assert LiveTable("prices", columns="price").columns == ["price"]  # type: ignore[arg-type]
    with pytest.raises(TraitError, match="must not be empty"):
        LiveTable("prices", columns=["price", ""])


@pytest.mark.parametrize("name", ["", "has space", "x" * 201, "semi;colon", "é"])
def test_stream_names_are_checked_like_the_server_does(name: str) -> None:
    with pytest.raises(TraitError, match="stream names"):
        StreamMonitor(name)


def test_live_chart_fields_and_window() -> None:
    chart = LiveChart("prices", x="time", y="price", window=50)
    assert synced(chart)["y"] == ["price"]
    chart = LiveChart("prices", x="offset", y=["bid", "ask"])
    assert (chart.x, chart.y, chart.window) == ("offset", ["bid", "ask"], 500)
    with pytest.raises(TraitError, match="at least one"):
        LiveChart("prices", y=[])
    with pytest.raises(TraitError, match="window"):
        LiveChart("prices", y="v", window=1)
    with pytest.raises(TraitError, match="x needs"):
        LiveChart("prices", x="", y="v")


def test_changing_a_trait_changes_the_synced_state() -> None:
    table = LiveTable("prices")
    table.stream = "other"
    table.columns = ["a"]
    state = synced(table)
    assert (state["stream"], state["columns"]) == ("other", ["a"])
    with pytest.raises(TraitError):
        table.stream = "bad name"
    assert table.stream == "other"


def test_frame_inspector_options() -> None:
    inspector = FrameInspector(options={"delay_ms": 10})
    state = synced(inspector)
    assert state["endpoint"] == "echo"
    assert state["source"] == "browser"
    assert state["options"] == {"delay_ms": "10"}
    assert re.fullmatch(r"inspector-[0-9a-f]{8}", state["label"])
    assert FrameInspector().label != inspector.label
    with pytest.raises(TraitError, match="unknown echo options"):
        FrameInspector(options={"evil": "1"})
    with pytest.raises(TraitError, match="path segment"):
        FrameInspector(endpoint="../api")
    with pytest.raises(TraitError):
        FrameInspector(source="elsewhere")
