"""Timestamped messages from one process to another, through nbws or a kernel's iopub.

Each function returns ``(sent_ns, received_ns)`` pairs, one per message that arrived, from
which the scenarios derive latency (``latency.py``) or throughput (``comm.py``). Sender and
receiver run on the same machine, so both read the same clock (``time.time_ns``).

- nbws: the reliable client publishes ``{"t": time.time_ns(), "i": i}`` from its own process
  (``python -m nbws.bench.receipts URL STREAM RATE COUNT``; RATE 0 means unpaced) to
  ``nbws serve``; a raw ``nbws.v1`` subscriber in the bench process receives.
- kernel, ZMQ: a ``python3`` kernel runs code sending comm messages (``comm_code``,
  ``widget_code``); ``BlockingKernelClient`` reads them off the iopub socket.
- kernel, browser path: the same code in a kernel started by a Jupyter server, read from
  the server's kernel WebSocket (``/api/kernels/{id}/channels``) as a browser reads it,
  with the server's default iopub rate limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

from ..protocol.messages import EVENTS, Message, Policy, Subscribe, encode, message_from_dict
from .base import free_port
from .wsclient import client_frame, open_peer, read_json

__all__ = [
    "Receipts",
    "browser_path_receipts",
    "comm_code",
    "execute_collecting",
    "jupyter_server",
    "kernel_receipts",
    "nbws_receipts",
    "publish_paced",
    "widget_code",
]

Receipts = list[tuple[int, int]]


def _sleep_until(deadline: float) -> None:
    delay = deadline - time.perf_counter()
    if delay > 0:
        time.sleep(delay)


def publish_paced(url: str, name: str, rate: int, count: int) -> None:
    """The publisher process: connect (one flushed warm-up message), then ``count``
    timestamped messages, ``rate`` per second (0: as fast as publish() returns), then a
    ``done`` marker, all acked."""
    import nbws

    stream = nbws.stream(name, url=url)
    try:
        stream.publish({"warmup": True})
        stream.flush(timeout=30)
        start = time.perf_counter()
        for i in range(count):
            if rate:
                _sleep_until(start + i / rate)
            stream.publish({"t": time.time_ns(), "i": i})
        stream.publish({"done": True})
        stream.flush(timeout=120)
    finally:
        stream.close()


async def _nbws_receipts(port: int, rate: int, count: int, policy: str | None) -> Receipts:
    name = f"bench-{uuid.uuid4().hex[:8]}"
    peer = await open_peer(port, "/nbws/ws", "nbws.v1")
    await read_json(peer, "welcome")
    subscribe = Subscribe(stream=name, id=1, policy=Policy(policy) if policy else None)
    peer.writer.write(client_frame(encode(subscribe).data))
    await read_json(peer, "subscribed")
    args = [f"http://127.0.0.1:{port}/", name, str(rate), str(count)]
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", __name__, *args)
    receipts: Receipts = []
    try:
        while True:
            raw = await asyncio.wait_for(read_json(peer, "message"), 60)
            received = time.time_ns()
            message = message_from_dict(raw, EVENTS)
            assert isinstance(message, Message)
            payload = message.payload
            if "done" in payload:
                break
            if "t" in payload:
                receipts.append((payload["t"], received))
        if await asyncio.wait_for(proc.wait(), 60) != 0:
            raise RuntimeError(f"the publisher process exited with {proc.returncode}")
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        peer.writer.close()
    return receipts


def nbws_receipts(port: int, rate: int, count: int, policy: str | None = None) -> Receipts:
    """Messages from a reliable-client process to a raw subscriber via ``nbws serve``."""
    return asyncio.run(_nbws_receipts(port, rate, count, policy))


# --- the kernel's iopub path ---------------------------------------------------------


def comm_code(rate: int, count: int) -> str:
    """Kernel code: one ipywidgets-style comm update per message, ``rate`` per second."""
    return f"""
import time as _time
from comm import create_comm as _create_comm
_comm = _create_comm(target_name="nbws-bench")
_start = _time.perf_counter()
for _i in range({count}):
    _delay = _start + _i / {rate} - _time.perf_counter()
    if _delay > 0:
        _time.sleep(_delay)
    _comm.send({{"method": "update", "state": {{"value": {{"t": _time.time_ns(), "i": _i}}}},
                "buffer_paths": []}})
"""


def widget_code(count: int) -> str:
    """Kernel code: an ipywidgets Widget whose synced trait is set ``count`` times."""
    return f"""
import time as _time
import ipywidgets as _widgets
import traitlets as _traitlets

class _BenchWidget(_widgets.Widget):
    value = _traitlets.Dict().tag(sync=True)

_widget = _BenchWidget()
for _i in range({count}):
    _widget.value = {{"t": _time.time_ns(), "i": _i}}
"""


def _iopub_receipt(msg: dict[str, Any], received: int) -> tuple[int, int] | None:
    """(sent, received) of a comm update carrying a timestamp; None for anything else."""
    if msg["header"]["msg_type"] != "comm_msg":
        return None
    value = msg["content"]["data"].get("state", {}).get("value", {})
    return (value["t"], received) if "t" in value else None


QUIET = 1.0  # seconds of iopub silence after the execute_reply that end a run


class _Collector:
    """Receipts of the comm updates answering one execute request, and when it is over:
    at the kernel's ``idle`` status, or, because iopub (a ZMQ PUB socket) silently drops
    messages for a subscriber whose queue is full, ``idle`` included, once the
    ``execute_reply`` has come and iopub has then been quiet for QUIET seconds."""

    def __init__(self, execute_id: str, timeout: float) -> None:
        self.execute_id = execute_id
        self.deadline = time.monotonic() + timeout
        self.receipts: Receipts = []
        self.notices = 0  # the Jupyter server's "IOPub message rate exceeded" notices
        self.replied = False
        self.done = False

    def feed(self, msg: dict[str, Any], received: int) -> None:
        kind = msg["header"]["msg_type"]
        ours = msg["parent_header"].get("msg_id") == self.execute_id
        if kind == "error":
            raise RuntimeError(f"kernel: {msg['content']['ename']}: {msg['content']['evalue']}")
        if (receipt := _iopub_receipt(msg, received)) is not None:
            self.receipts.append(receipt)
        elif kind == "stream" and "rate exceeded" in str(msg["content"].get("text")):
            self.notices += 1
        elif kind == "execute_reply" and ours:
            self.replied = True
        elif kind == "status" and ours and msg["content"]["execution_state"] == "idle":
            self.done = True

    def quiet(self) -> None:
        """No iopub message for QUIET seconds."""
        if self.replied:
            self.done = True
        elif time.monotonic() > self.deadline:
            raise TimeoutError("the kernel did not finish in time")


def kernel_receipts(code: str, timeout: float) -> Receipts:
    """Run ``code`` in a fresh kernel; comm updates as read by ``BlockingKernelClient``."""
    from jupyter_client.manager import KernelManager

    manager = KernelManager(kernel_name="python3")
    manager.start_kernel(stderr=subprocess.DEVNULL)
    client = manager.client()
    try:
        client.start_channels()
        client.wait_for_ready(timeout=60)
        run = _Collector(client.execute(code), timeout)
        while not run.done:
            try:
                run.feed(client.get_iopub_msg(timeout=QUIET), time.time_ns())
            except queue.Empty:
                with contextlib.suppress(queue.Empty):
                    while not run.replied:
                        run.feed(client.get_shell_msg(timeout=0), time.time_ns())
                run.quiet()
        return run.receipts
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


@contextlib.contextmanager
def jupyter_server(env: dict[str, str] | None = None) -> Iterator[tuple[int, str]]:
    """A Jupyter server in its own process with a fresh token (its kernels inherit
    ``env`` on top of this process's environment); yield (port, token)."""
    port, token = free_port(), secrets.token_hex(16)
    with tempfile.TemporaryDirectory() as root:
        cmd = [
            sys.executable,
            "-m",
            "jupyter_server",
            "--no-browser",
            "--allow-root",
            f"--port={port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root}",
        ]
        full_env = {**os.environ, "JUPYTER_RUNTIME_DIR": root, **(env or {})}
        proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=full_env
        )
        try:
            _wait_until_up(port, token, proc)
            yield port, token
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _api(port: int, token: str, path: str, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
        method="GET" if body is None else "POST",
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def _wait_until_up(port: int, token: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the Jupyter server exited at start")
        try:
            _api(port, token, "/api/status")
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the Jupyter server did not start within 60 s")


def _shell_message(session: str, msg_type: str, content: dict[str, Any]) -> dict[str, Any]:
    header = {
        "msg_id": uuid.uuid4().hex,
        "username": "bench",
        "session": session,
        "msg_type": msg_type,
        "version": "5.3",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return {
        "header": header,
        "parent_header": {},
        "metadata": {},
        "content": content,
        "channel": "shell",
        "buffers": [],
    }


def browser_path_receipts(code: str, timeout: float) -> tuple[Receipts, int]:
    """Run ``code`` in a kernel of a fresh Jupyter server; comm updates as read from the
    server's kernel WebSocket, and how many iopub rate-limit notices the server sent."""
    from websockets.sync.client import connect

    with jupyter_server() as (port, token):
        kernel = _api(port, token, "/api/kernels", {"name": "python3"})["id"]
        url = f"ws://127.0.0.1:{port}/api/kernels/{kernel}/channels?token={token}"
        session = uuid.uuid4().hex
        with connect(url, max_size=None, compression=None, open_timeout=60) as ws:
            ws.send(json.dumps(_shell_message(session, "kernel_info_request", {})))
            while json.loads(ws.recv(60))["header"]["msg_type"] != "kernel_info_reply":
                pass
            request = {"code": code, "silent": False, "store_history": False}
            return execute_collecting(ws, session, request, timeout)


def execute_collecting(
    ws: Any, session: str, request: dict[str, Any], timeout: float
) -> tuple[Receipts, int]:
    """Send an ``execute_request`` on a kernel WebSocket and collect what its cell sends
    (comm updates with their receipt times) until it is done or quiet for ``timeout``;
    returns the receipts and how many iopub rate-limit notices came."""
    execute = _shell_message(session, "execute_request", request)
    ws.send(json.dumps(execute))
    run = _Collector(execute["header"]["msg_id"], timeout)
    while not run.done:
        try:
            run.feed(json.loads(ws.recv(QUIET)), time.time_ns())
        except TimeoutError:
            run.quiet()
    return run.receipts, run.notices


if __name__ == "__main__":
    publish_paced(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
