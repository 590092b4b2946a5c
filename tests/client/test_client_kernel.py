"""A real ipykernel, started by a real jupyter-server through its REST API, runs
``nbws.stream("...")`` with no url or token: the client finds the server it runs under
(JPY_PARENT_PID -> jpserver-<pid>.json) and every message reaches a subscriber."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
from client_support import name
from conftest import JupyterProcess
from websockets.sync.client import ClientConnection, connect

import nbws
from nbws.client import Message

N = 20_000


class KernelClient:
    """Executes code over the kernel's websocket (Jupyter message protocol 5.3)."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.session = uuid.uuid4().hex

    def execute(self, code: str, timeout: float = 120.0) -> str:
        """Run ``code``; return its stdout; raise with the traceback if it failed.

        Output comes on iopub and the reply on shell, which the server may interleave
        either way: the request is over once both the reply and the kernel's ``idle``
        status (published on iopub after the request's output) have arrived."""
        msg_id = uuid.uuid4().hex
        self.ws.send(
            json.dumps(
                {
                    "header": {
                        "msg_id": msg_id,
                        "msg_type": "execute_request",
                        "username": "test",
                        "session": self.session,
                        "version": "5.3",
                        "date": datetime.now(timezone.utc).isoformat(),
                    },
                    "parent_header": {},
                    "metadata": {},
                    "buffers": [],
                    "channel": "shell",
                    "content": {
                        "code": code,
                        "silent": False,
                        "store_history": False,
                        "user_expressions": {},
                        "allow_stdin": False,
                        "stop_on_error": True,
                    },
                }
            )
        )
        out: list[str] = []
        errors: list[str] = []
        reply: dict[str, Any] | None = None
        idle = False
        while reply is None or not idle:
            msg = json.loads(self.ws.recv(timeout=timeout))
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = msg["header"]["msg_type"]
            if kind == "stream":
                out.append(msg["content"]["text"])
            elif kind == "error":
                errors.append("\n".join(msg["content"]["traceback"]))
            elif kind == "status" and msg["content"]["execution_state"] == "idle":
                idle = True
            elif kind == "execute_reply" and msg["channel"] == "shell":
                reply = msg
        if reply["content"]["status"] != "ok" or errors:
            raise AssertionError("kernel code failed:\n" + "\n".join(errors))
        return "".join(out)


@pytest.fixture
def kernel(jupyter_server: JupyterProcess) -> Iterator[KernelClient]:
    info = jupyter_server.rest("POST", "api/kernels", {"name": "python3"})
    url = jupyter_server.ws_url(f"api/kernels/{info['id']}/channels")
    try:
        with connect(url, max_size=None) as ws:
            client = KernelClient(ws)
            client.execute("1")  # the kernel is up
            yield client
    finally:
        jupyter_server.rest("DELETE", f"api/kernels/{info['id']}")


def test_kernel_finds_its_server_and_publishes_reliably(
    jupyter_server: JupyterProcess, kernel: KernelClient
) -> None:
    topic = name("kernel")
    reader = nbws.stream(topic, url=jupyter_server.http_url, token=jupyter_server.token)
    sub = reader.subscribe(since=0)
    out = kernel.execute(
        "import os, nbws\n"
        f"s = nbws.stream({topic!r})\n"
        "print(os.environ['JPY_PARENT_PID'], s.url, s.endpoint.source, sep='\\n')\n"
        f"for i in range({N}):\n"
        "    s.publish({'i': i, 'sym': 'AAPL'})\n"
        "s.flush(120)\n"
        "st = s.stats()\n"
        "print(st.acked, st.failed, st.outbox_messages)\n"
    )
    parent_pid, url, source, counts = out.strip().splitlines()
    assert int(parent_pid) == jupyter_server.process.pid
    assert url == f"ws://127.0.0.1:{jupyter_server.port}{jupyter_server.base_url}nbws/ws"
    assert f"jpserver-{jupyter_server.process.pid}.json" in source
    assert counts == f"{N} 0 0"
    got = [sub.get(timeout=60) for _ in range(N)]
    assert all(isinstance(m, Message) for m in got)
    assert [m.payload["i"] for m in got] == list(range(N))
    assert [m.offset for m in got] == list(range(N))
    # The kernel is free again at once (publishing ran in its background thread).
    assert kernel.execute("print(s.stats().connected, s.publish({'i': -1}).result(30))") == (
        f"True {N}\n"
    )
    sub.close()
    reader.close()


def test_kernel_subscribes_with_async_for_on_its_own_loop(
    jupyter_server: JupyterProcess, kernel: KernelClient
) -> None:
    topic = name("kernel-async")
    writer = nbws.stream(topic, url=jupyter_server.http_url, token=jupyter_server.token)
    for i in range(100):
        writer.publish(i)
    writer.flush(30)
    out = kernel.execute(
        "import nbws\n"
        f"r = nbws.stream({topic!r})\n"
        "got = []\n"
        "async with r.subscribe(since=0) as sub:\n"
        "    async for m in sub:\n"
        "        got.append(m.payload)\n"
        "        if len(got) == 100: break\n"
        "print(got == list(range(100)), len(r.history(90)))\n"
    )
    assert out == "True 10\n"
    writer.close()
