"""Every example notebook runs top to bottom in a real kernel against a real Jupyter server.

The kernel finds the server through ``NBWS_URL``/``NBWS_TOKEN`` (jupyter_client sets
``JPY_PARENT_PID`` to the launching process, here pytest; the ``JPY_PARENT_PID`` path is
tested with a kernel started by the server itself in tests/client/test_client_kernel.py).
"""

from __future__ import annotations

import os
import pathlib

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((pathlib.Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))

pytestmark = pytest.mark.timeout(300)


def test_there_are_notebooks():
    assert NOTEBOOKS, "notebooks/ holds the example notebooks"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path, jupyter_server, tmp_path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs, f"{path.name}: outputs must be stripped in the repo"
    env = {
        **os.environ,
        **jupyter_server.env,
        "NBWS_URL": jupyter_server.http_url,
        "NBWS_TOKEN": jupyter_server.token,
    }
    client = NotebookClient(nb, timeout=240, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute(env=env)
    text = "\n".join(
        output.get("text", "") + str(output.get("data", {}).get("text/plain", ""))
        for cell in nb.cells if cell.cell_type == "code" for output in cell.outputs
    )
    if path.stem == "01_live_dashboard":
        assert "published and acked 2000 messages" in text
        widgets = [
            output for cell in nb.cells if cell.cell_type == "code" for output in cell.outputs
            if "application/vnd.jupyter.widget-view+json" in output.get("data", {})
        ]
        assert len(widgets) == 3  # LiveTable, LiveChart, StreamMonitor
    if path.stem == "04_protocol_explorer":
        assert "invalid UTF-8: (1007" in text and "unmasked frame: (1002" in text
        assert " PASS, 0 FAIL, " in text  # the scenario table's summary line
    if path.stem == "02_reliable_streaming":
        assert "acked 10000/10000" in text and "0 lost, 0 duplicated, in order: True" in text
    if path.stem == "03_backpressure":
        assert "every buffer stayed within its bound; every drop was reported" in text
    if path.stem == "06_pandas":
        assert "2 messages acked" in text
