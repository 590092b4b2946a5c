"""Where the kernel client connects when nobody says: real processes, nothing mocked.

A plain ``python`` script, a kernel started by ``jupyter_client`` with no Jupyter server
(as VS Code and ``jupyter console`` do), ``nbconvert --execute`` and a kernel of a Jupyter
server without the extension all stream through the embedded server; a kernel of a
Jupyter server with the extension still uses that server. The embedded server refuses a
wrong token and a foreign Origin, listens on loopback only, and its token is shown only
when asked for.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.error import HTTPError

import psutil
import pytest
from client_support import name
from conftest import JupyterProcess, launch_jupyter, make_config
from test_client_kernel import KernelClient
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Origin

import nbws
from nbws.server.embedded import EmbeddedServer

NOTICE = "nbws: no Jupyter server with nbws found; streaming through a server in this process"
SNIPPET = re.compile(r"url='(?P<url>[^']+)', token='(?P<token>[^']+)'")


def isolated_env(tmp_path: Path) -> dict[str, str]:
    """This environment without any nbws or Jupyter-server hint, with Jupyter's dirs
    private to the test (so no user config and no other server's runtime file)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("NBWS_URL", "NBWS_TOKEN", "JPY_PARENT_PID", "JUPYTERHUB_API_TOKEN")
    }
    for sub in ("runtime", "config", "data", "ipython"):
        (tmp_path / sub).mkdir(exist_ok=True)
    env.update(
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
        JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
        JUPYTER_DATA_DIR=str(tmp_path / "data"),
        IPYTHONDIR=str(tmp_path / "ipython"),
        PYTHONUNBUFFERED="1",
    )
    return env


def connection_from(snippet: str) -> tuple[str, str]:
    match = SNIPPET.search(snippet)
    assert match, snippet
    return match.group("url"), match.group("token")


def read_all(url: str, token: str, stream: str, count: int) -> list[Any]:
    """Subscribe from this process (another process than the server's) and read."""
    reader = nbws.stream(stream, url=url, token=token)
    try:
        with reader.subscribe(since=0) as sub:
            return [sub.get(timeout=60).payload for _ in range(count)]
    finally:
        reader.close()


# --- a plain python script --------------------------------------------------------------

SCRIPT = """
import sys, nbws
s = nbws.stream(sys.argv[1])
for i in range(200):
    s.publish({"i": i})
s.flush(120)
e = nbws.endpoint()
print("KIND", e.kind, s.stats().acked)
print("REPR", repr(e), str(e))
print("SNIPPET", e.connect_snippet(sys.argv[1]).replace("\\n", " | "))
sys.stdout.flush()
sys.stdin.readline()  # the test publishes to sys.argv[2] meanwhile
back = nbws.stream(sys.argv[2]).history(0)
print("BACK", [m.payload for m in back])
"""


def test_plain_script_streams_through_its_own_server(tmp_path: Path) -> None:
    topic, reply = name("script"), name("script-back")
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, topic, reply],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=isolated_env(tmp_path),
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        lines = {}
        for _ in range(3):
            key, _, rest = proc.stdout.readline().partition(" ")
            lines[key] = rest.strip()
        assert lines["KIND"] == "embedded 200", lines
        url, token = connection_from(lines["SNIPPET"])
        assert url.startswith("http://127.0.0.1:")
        assert token not in lines["REPR"]
        assert url.replace("http://", "ws://") + "nbws/ws" in lines["REPR"]
        # Another process (this one) reads what the script published, and publishes back.
        assert read_all(url, token, topic, 200) == [{"i": i} for i in range(200)]
        writer = nbws.stream(reply, url=url, token=token)
        for i in range(3):
            writer.publish(i)
        writer.flush(60)
        writer.close()
        out, err = proc.communicate("go\n", timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert out.strip() == "BACK [0, 1, 2]"
    assert err.count(NOTICE) == 1, err
    assert f"at {url} (nbws.endpoint() shows how to connect)" in err
    assert token not in err


EXIT_SCRIPT = """
import sys, nbws
s = nbws.stream(sys.argv[1])
s.publish(0).result(120)
print(nbws.endpoint().connect_snippet().replace("\\n", " | "), flush=True)
sys.stdin.readline()
for i in range(1, 5001):
    s.publish(i)
"""  # no flush: the client's exit handler drains before the server stops


def test_messages_published_before_exit_are_delivered_before_the_server_stops(
    tmp_path: Path,
) -> None:
    topic = name("exit")
    proc = subprocess.Popen(
        [sys.executable, "-c", EXIT_SCRIPT, topic],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=isolated_env(tmp_path),
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        url, token = connection_from(proc.stdout.readline())
        reader = nbws.stream(topic, url=url, token=token)
        sub = reader.subscribe(since=0)
        assert sub.get(timeout=60).payload == 0  # subscribed, live
        _, err = proc.communicate("go\n", timeout=180)
        got = [sub.get(timeout=60).payload for _ in range(5000)]
        sub.close()
        reader.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert got == list(range(1, 5001))
    assert "unacknowledged" not in err


def test_explicit_nbws_url_is_used_without_starting_a_server(tmp_path: Path) -> None:
    env = isolated_env(tmp_path) | {"NBWS_URL": "http://127.0.0.1:9/", "NBWS_TOKEN": "t"}
    code = "import nbws; e = nbws.endpoint(); print(e.kind, e.url)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "explicit ws://127.0.0.1:9/nbws/ws\n"
    assert NOTICE not in done.stderr


# --- a kernel with no Jupyter server (VS Code, jupyter console) -------------------------


class ZmqKernel:
    """A real ipykernel started by jupyter_client, as VS Code and jupyter console do."""

    def __init__(self, env: dict[str, str]) -> None:
        from jupyter_client.manager import KernelManager

        self.manager = KernelManager(kernel_name="python3")
        self.manager.start_kernel(env=env)
        self.client = self.manager.blocking_client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=120)

    def execute(self, code: str, timeout: float = 120.0) -> tuple[str, str]:
        """Run ``code``; its (stdout, stderr); raise with the traceback if it failed."""
        out: list[str] = []
        err: list[str] = []

        def output(msg: dict[str, Any]) -> None:
            kind = msg["header"]["msg_type"]
            if kind == "stream":
                (out if msg["content"]["name"] == "stdout" else err).append(msg["content"]["text"])
            elif kind == "error":
                err.append("\n".join(msg["content"]["traceback"]))

        reply = self.client.execute_interactive(
            code, timeout=timeout, output_hook=output, allow_stdin=False
        )
        if reply["content"]["status"] != "ok":
            raise AssertionError("kernel code failed:\n" + "".join(err))
        return "".join(out), "".join(err)

    def stop(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)


@pytest.fixture
def zmq_kernel(tmp_path: Path) -> Iterator[ZmqKernel]:
    kernel = ZmqKernel(isolated_env(tmp_path))
    try:
        yield kernel
    finally:
        kernel.stop()


def test_kernel_without_a_jupyter_server_streams_and_keeps_executing(
    zmq_kernel: ZmqKernel,
) -> None:
    topic = name("zmq")
    out, err = zmq_kernel.execute(
        "import nbws\n"
        f"s = nbws.stream({topic!r})\n"
        "for i in range(500):\n"
        "    s.publish({'i': i})\n"
        "s.flush(120)\n"
        "print(nbws.endpoint().kind, s.stats().acked, s.stats().failed)\n"
    )
    assert out == "embedded 500 0\n"
    assert err.count(NOTICE) == 1, err
    snippet, _ = zmq_kernel.execute("print(nbws.endpoint().connect_snippet())")
    url, token = connection_from(snippet)
    assert token not in err
    # The kernel's own loop keeps running cells (top-level await included) while the
    # embedded server serves another process.
    assert read_all(url, token, topic, 500) == [{"i": i} for i in range(500)]
    out, _ = zmq_kernel.execute("import asyncio\nawait asyncio.sleep(0)\nprint(6 * 7)")
    assert out == "42\n"
    out, err = zmq_kernel.execute(
        "print(repr(nbws.endpoint()).count('embedded'), s.publish(-1).result(60))"
    )
    assert out == "2 500\n" and NOTICE not in err  # the notice came once


# --- nbconvert --execute ----------------------------------------------------------------


def test_nbconvert_execute_publishes_without_a_server(tmp_path: Path) -> None:
    import nbformat

    topic = name("nbconvert")
    nb = nbformat.v4.new_notebook()  # type: ignore[no-untyped-call]
    nb.cells = [
        nbformat.v4.new_code_cell(  # type: ignore[no-untyped-call]
            textwrap.dedent(
                f"""\
                import nbws
                s = nbws.stream({topic!r})
                for i in range(50):
                    s.publish(i)
                s.flush(120)
                print(nbws.endpoint().kind, s.stats().acked)
                """
            )
        )
    ]
    path = tmp_path / "publish.ipynb"
    nbformat.write(nb, path)  # type: ignore[no-untyped-call]
    done = subprocess.run(
        [
            *(sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute"),
            *(str(path), "--output", "executed.ipynb"),
        ],
        capture_output=True,
        text=True,
        env=isolated_env(tmp_path),
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    executed = nbformat.read(tmp_path / "executed.ipynb", as_version=4)  # type: ignore[no-untyped-call]
    outputs = executed.cells[0].outputs
    stdout = "".join(o.get("text", "") for o in outputs if o.get("name") == "stdout")
    stderr = "".join(o.get("text", "") for o in outputs if o.get("name") == "stderr")
    assert stdout == "embedded 50\n"
    assert NOTICE in stderr


# --- kernels of a Jupyter server, with and without the extension --------------------------


def kernel_of(server: JupyterProcess) -> Iterator[KernelClient]:
    info = server.rest("POST", "api/kernels", {"name": "python3"})
    try:
        with connect(server.ws_url(f"api/kernels/{info['id']}/channels"), max_size=None) as ws:
            client = KernelClient(ws)
            client.execute("1")
            yield client
    finally:
        server.rest("DELETE", f"api/kernels/{info['id']}")


def test_kernel_of_a_jupyter_server_with_nbws_uses_that_server(
    jupyter_server: JupyterProcess,
) -> None:
    for kernel in kernel_of(jupyter_server):
        out = kernel.execute(
            "import nbws\n"
            f"s = nbws.stream({name('jp')!r})\n"
            "print(s.publish(1).result(60) >= 0)\n"
            "e = nbws.endpoint()\n"
            "print(e.kind, e.url)\n"
        )
        assert out == (
            f"True\njupyter ws://127.0.0.1:{jupyter_server.port}{jupyter_server.base_url}nbws/ws\n"
        )


@pytest.fixture(scope="module")
def jupyter_without_nbws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterProcess]:
    """A Jupyter server with the nbws extension disabled (a kernel-only install)."""
    server = launch_jupyter(
        tmp_path_factory.mktemp("jupyter-no-nbws"),
        args=["--ServerApp.jpserver_extensions=nbws=False"],
    )
    try:
        yield server
    finally:
        server.stop()


def test_kernel_of_a_jupyter_server_without_nbws_uses_the_embedded_server(
    jupyter_without_nbws: JupyterProcess,
) -> None:
    server = jupyter_without_nbws
    with pytest.raises(HTTPError) as info:  # the extension really is off
        server.rest("GET", "nbws/api/health")
    assert info.value.code == 404
    topic = name("no-ext")
    for kernel in kernel_of(server):
        out = kernel.execute(
            "import sys, nbws\n"
            f"s = nbws.stream({topic!r})\n"
            "s.publish('hello'); s.flush(120)\n"
            "e = nbws.endpoint()\n"
            "print(e.kind, 'no nbws extension' in e.source)\n"
            "print(e.connect_snippet())\n"
        )
        notice, first, snippet = out.split("\n", 2)  # the kernel's stderr comes first
        assert notice.startswith(NOTICE)
        assert first == "embedded True"
        url, token = connection_from(snippet)
        assert read_all(url, token, topic, 1) == ["hello"]
        # The Jupyter page's origin may open WebSockets to the kernel's server.
        ws_url = url.replace("http://", "ws://") + "nbws/echo"
        headers = {"Authorization": f"token {token}"}
        page = f"http://127.0.0.1:{server.port}"
        with connect(ws_url, origin=Origin(page), additional_headers=headers, open_timeout=60):
            pass


# --- the embedded server's security -------------------------------------------------------


@pytest.fixture
def embedded() -> Iterator[EmbeddedServer]:
    server = EmbeddedServer(make_config(), origins=["http://localhost:8888"])
    server.start()
    try:
        yield server
    finally:
        server.stop()


def http_status(url: str, headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return int(response.status)
    except HTTPError as exc:
        return exc.code


def upgrade_status(server: EmbeddedServer, *, token: str, origin: str | None = None) -> int:
    """The status of a WebSocket upgrade to the echo endpoint (101 when accepted)."""
    url = f"ws://127.0.0.1:{server.port}/nbws/echo"
    try:
        with connect(
            url,
            origin=None if origin is None else Origin(origin),
            additional_headers={"Authorization": f"token {token}"},
            open_timeout=60,
        ):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


def test_embedded_server_refuses_a_wrong_token(embedded: EmbeddedServer) -> None:
    health = f"{embedded.url}nbws/api/health"
    assert http_status(health) == 403
    assert http_status(health, {"Authorization": "token wrong"}) == 403
    assert http_status(health, {"Authorization": f"token {embedded.token}"}) == 200
    assert upgrade_status(embedded, token="wrong") == 403
    assert upgrade_status(embedded, token=embedded.token) == 101


@pytest.mark.parametrize(
    ("origin", "status"),
    [
        ("https://evil.example", 403),
        ("http://localhost:9999", 403),
        ("null", 403),
        ("http://localhost:8888", 101),  # the page origin it was given
        ("vscode-webview://1a2b3c4d", 101),  # VS Code's notebook webviews
    ],
)
def test_embedded_server_checks_the_origin(
    embedded: EmbeddedServer, origin: str, status: int
) -> None:
    assert upgrade_status(embedded, token=embedded.token, origin=origin) == status


def test_embedded_server_listens_on_loopback_only(embedded: EmbeddedServer) -> None:
    listening = [
        c
        for c in psutil.Process().net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == embedded.port
    ]
    assert listening
    assert {c.laddr.ip for c in listening} == {"127.0.0.1"}


def test_embedded_server_keeps_its_token_out_of_repr_and_logs(
    embedded: EmbeddedServer, caplog: pytest.LogCaptureFixture
) -> None:
    assert embedded.token not in repr(embedded) and embedded.url in repr(embedded)
    with caplog.at_level(logging.INFO, logger="tornado.access"):
        health = f"{embedded.url}nbws/api/health"
        assert http_status(f"{health}?token={embedded.token}") == 200
        assert http_status(f"{health}?token=wrong-token-value") == 403
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "/nbws/api/health" in logged  # the requests were logged...
    assert embedded.token not in logged and "wrong-token-value" not in logged  # ...redacted


def test_embedded_server_reads_jupyter_nbws_config(tmp_path: Path) -> None:
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    (config_dir / "jupyter_nbws_config.json").write_text(
        json.dumps({"Nbws": {"max_message_size": 12345}})
    )
    env = isolated_env(tmp_path) | {"JUPYTER_CONFIG_DIR": str(config_dir)}
    code = (
        "from nbws.server.embedded import embedded_server\n"
        "server, started = embedded_server()\n"
        "print(server.config.max_message_size, started)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "12345 True\n"


def test_broken_config_is_one_clear_error(tmp_path: Path) -> None:
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    (config_dir / "jupyter_nbws_config.json").write_text(json.dumps({"Nbws": {"nope": 1}}))
    env = isolated_env(tmp_path) | {"JUPYTER_CONFIG_DIR": str(config_dir)}
    done = subprocess.run(
        [sys.executable, "-c", "import nbws; nbws.stream('x')"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("nbws.client.errors.ServerNotFound: cannot find an nbws server")
    assert "c.Nbws.nope: no such option" in last
