"""Every example notebook runs top to bottom in a real kernel against a real Jupyter server.

The kernel is started by the server through its REST API (as JupyterLab does), so it has
the server's environment: ``JPY_PARENT_PID`` is the server's pid and
``JUPYTER_RUNTIME_DIR`` its runtime directory, and ``nbws.stream("...")`` finds the server
by itself exactly as in a real notebook. nbclient then connects to that kernel through the
connection file the server wrote and executes the cells. No ``NBWS_URL`` is set.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
from collections.abc import Callable, Iterator

import nbformat
import psutil
import pytest
from conftest import JupyterProcess
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbformat import NotebookNode
from redis_support import redis_server_binary
from waiting import wait_until

NOTEBOOK_DIR = pathlib.Path(__file__).resolve().parent.parent / "notebooks"
EXPECTED = [
    "01_live_dashboard",
    "02_reliable_streaming",
    "03_backpressure",
    "04_protocol_explorer",
    "05_scale_out",
    "06_pandas",
]
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

pytestmark = pytest.mark.timeout(300)


class ServerKernel(AsyncKernelManager):
    """A kernel the Jupyter server started and owns: nbclient connects to it (through the
    connection file) and never launches, restarts or shuts one down itself."""

    @property
    def has_kernel(self) -> bool:
        return True


class ServerKernelHandle:
    """A kernel started through the server's REST API, shut down through it too."""

    def __init__(self, server: JupyterProcess) -> None:
        self.server = server
        self.id = server.rest("POST", "api/kernels", {"name": "python3"})["id"]
        connection_file = pathlib.Path(server.runtime_dir) / f"kernel-{self.id}.json"
        self.km = ServerKernel(connection_file=str(connection_file), owns_kernel=False)
        self.km.load_connection_file()
        self.running = True

    def shutdown(self) -> None:
        """Shut the kernel down as JupyterLab does (the kernel exits, its atexit runs)."""
        if self.running:
            self.running = False
            self.server.rest("DELETE", f"api/kernels/{self.id}")


@pytest.fixture
def server_kernel(jupyter_server: JupyterProcess) -> Iterator[ServerKernelHandle]:
    """A python3 kernel started by the Jupyter server, as a notebook tab would start it."""
    assert "NBWS_URL" not in os.environ, "discovery must go through the Jupyter server"
    kernel = ServerKernelHandle(jupyter_server)
    try:
        yield kernel
    finally:
        kernel.shutdown()


def read_notebook(name: str) -> NotebookNode:
    path = NOTEBOOK_DIR / f"{name}.ipynb"
    nb: NotebookNode = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
    return nb


def execute(nb: NotebookNode, kernel: ServerKernelHandle) -> None:
    """Run every cell of ``nb`` in ``kernel``; outputs are stored in ``nb``."""
    client = NotebookClient(nb, km=kernel.km, timeout=120, kernel_name="python3")
    try:
        client.execute()  # raises CellExecutionError naming the cell if any cell fails
    finally:
        if client.kc is not None:
            client.kc.stop_channels()


def code_outputs(nb: NotebookNode) -> list[NotebookNode]:
    return [output for cell in nb.cells if cell.cell_type == "code" for output in cell.outputs]


def outputs_text(nb: NotebookNode) -> str:
    """Everything the notebook printed or displayed as text, in order."""
    parts = []
    for output in code_outputs(nb):
        parts.append(output.get("text", ""))
        parts.append(str(output.get("data", {}).get("text/plain", "")))
    return "\n".join(parts)


def widget_views(nb: NotebookNode) -> int:
    return sum(WIDGET_VIEW in output.get("data", {}) for output in code_outputs(nb))


def test_every_notebook_is_here_and_stored_without_outputs() -> None:
    """The repository keeps exactly the expected notebooks, valid and without outputs,
    execution counts or saved widget state (CI produces those)."""
    assert sorted(p.stem for p in NOTEBOOK_DIR.glob("*.ipynb")) == EXPECTED
    assert list(CHECKS) == EXPECTED
    for name in EXPECTED:
        nb = read_notebook(name)
        nbformat.validate(nb)
        assert nb.metadata.kernelspec.name == "python3", name
        assert "widgets" not in nb.metadata, f"{name}: saved widget state"
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [], f"{name}: outputs must be stripped in the repo"
                assert cell.execution_count is None, f"{name}: execution counts in the repo"


@pytest.mark.parametrize("name", EXPECTED)
def test_notebook_runs_top_to_bottom(name: str, server_kernel: ServerKernelHandle) -> None:
    """No cell fails, and the outputs show the notebook did what its text says."""
    nb = read_notebook(name)
    execute(nb, server_kernel)
    CHECKS[name](nb, outputs_text(nb))
    # What would be saved (outputs and widget state): the server's token must not be in it.
    saved = nbformat.writes(nb)  # type: ignore[no-untyped-call]
    assert server_kernel.server.token not in saved, f"{name}: the token is in the saved notebook"


def check_01(nb: NotebookNode, text: str) -> None:
    assert "found the server through Jupyter server runtime file" in text
    assert "published and acked 2000 messages" in text
    assert widget_views(nb) == 3  # LiveTable, LiveChart, StreamMonitor


def check_02(nb: NotebookNode, text: str) -> None:
    assert "cut 4 times: acked 10000/10000" in text
    reconnects = re.search(r"reconnects (\d+)", text)
    assert reconnects, text
    # With batches the publisher is fast: a cut may come after everything was acked, and
    # an idle connection is re-opened only when there is something to send. The
    # guarantees checked below (all acked, none lost or repeated) hold either way.
    assert int(reconnects.group(1)) >= 1, "a cut with messages in flight was recovered"
    assert "10000 messages: 0 lost, 0 duplicated, in order: True, gap notices: 0" in text
    assert "the stream holds 10000 messages" in text


def check_03(nb: NotebookNode, text: str) -> None:
    for policy in ("drop-oldest", "drop-newest", "conflate", "disconnect", "block"):
        assert f"\n{policy} " in text, policy  # a row of the results table
    assert "block: the producer stalled at" in text
    assert "the slow reader then got all 1000 messages, no gaps, in order: True" in text
    assert "every buffer stayed within its bound; every drop was reported" in text


def check_04(nb: NotebookNode, text: str) -> None:
    assert "invalid UTF-8: (1007" in text and "unmasked frame: (1002" in text
    assert "reserved bit set: (1002" in text and "426 Upgrade Required" in text
    assert "server closed with 4000 'done exploring'" in text
    assert " PASS, 0 FAIL, " in text  # the scenario table's summary line
    assert widget_views(nb) == 3  # two kernel connections and one browser-driven inspector


def started_pids(text: str) -> dict[str, int]:
    """The processes notebook 05 says it started: name -> pid."""
    return {name: int(pid) for name, pid in re.findall(r"started (\S+) \(pid (\d+)\)", text)}


def running(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def check_05(nb: NotebookNode, text: str) -> None:
    if shutil.which("redis-server") is None and not os.environ.get("CI"):
        assert "redis-server is not installed" in text  # CI installs it: there it really runs
        return
    assert "published 1000 on server A and 1000 on server B at the same time, all acked" in text
    assert "together they are 0..1999, each exactly once: True" in text
    for server in "AB":
        seen = f"subscriber on server {server}: 2000 messages, offsets 0..1999, gap notices: 0"
        assert seen in text
    assert (
        "both saw the same messages at the same offsets: True; offsets as acked: True; "
        "each server's messages in publishing order: True"
    ) in text
    assert "history read on A: 2000 messages, on B: 2000; identical: True" in text
    views = re.findall(
        r"server ([AB]): backend redis, status ok, epoch (\w+), offsets 0..1999", text
    )
    assert [server for server, _ in views] == ["A", "B"] and views[0][1] == views[1][1]
    assert (
        "stopped 3 processes: redis-server exit code 0, nbws-serve-A exit code 0, "
        "nbws-serve-B exit code 0"
    ) in text
    pids = started_pids(text)
    assert sorted(pids) == ["nbws-serve-A", "nbws-serve-B", "redis-server"]
    assert not [name for name, pid in pids.items() if running(pid)]


def check_06(nb: NotebookNode, text: str) -> None:
    assert "2 messages acked" in text
    assert "10 rows from 2 messages" in text


CHECKS: dict[str, Callable[[NotebookNode, str], None]] = {
    "01_live_dashboard": check_01,
    "02_reliable_streaming": check_02,
    "03_backpressure": check_03,
    "04_protocol_explorer": check_04,
    "05_scale_out": check_05,
    "06_pandas": check_06,
}


def test_scale_out_stops_its_processes_when_the_kernel_exits(
    server_kernel: ServerKernelHandle,
) -> None:
    """Notebook 05 run up to (not including) its stop cell, then the kernel is shut down:
    its atexit handler stops redis-server and both `nbws serve` processes."""
    redis_server_binary()  # skips (or fails under CI) without redis-server
    nb = read_notebook("05_scale_out")
    stop = next(i for i, c in enumerate(nb.cells) if "stop" in c.metadata.get("tags", []))
    nb.cells = nb.cells[:stop]
    execute(nb, server_kernel)
    pids = started_pids(outputs_text(nb))
    assert len(pids) == 3 and all(running(pid) for pid in pids.values()), pids
    server_kernel.shutdown()
    wait_until(lambda: not any(running(pid) for pid in pids.values()), 30, f"{pids} to be stopped")


def test_scale_out_without_redis_server_says_so_and_skips(tmp_path: pathlib.Path) -> None:
    """Where `redis-server` is not on PATH, notebook 05 runs through without failing and
    says why it skipped its demo (it needs no Jupyter server: it uses explicit URLs)."""
    path = [
        d
        for d in os.environ["PATH"].split(os.pathsep)
        if not (pathlib.Path(d) / "redis-server").exists()
    ]
    env = {**os.environ, "PATH": os.pathsep.join(path)}
    nb = read_notebook("05_scale_out")
    client = NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute(env=env)
    text = outputs_text(nb)
    assert "skipping this notebook's demo: redis-server is not installed" in text
    assert "started " not in text and "stopped 0 processes" in text
