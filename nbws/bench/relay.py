"""Messages/s delivered to a view through the relay, beside ipywidgets trait updates.

The relay (:mod:`nbws.widgets.relay`) runs where it runs in use: in a kernel started by a
Jupyter server. The "view" is this process on the server's kernel WebSocket
(``/api/kernels/{id}/channels``), as a browser's widget manager is: it opens a relay link
with custom comm messages, subscribes through it (policy ``block``, so nothing may be
dropped), acks every ``relay-batch`` as it arrives, and decodes the nbws.v1 batches in it.
A publisher process (``python -m nbws.bench.receipts``) paces timestamped messages into
``nbws serve`` at 1k, 10k and 50k msg/s; the kernel finds that server by ``NBWS_URL``.

The baseline is the same page path for ipywidgets: a kernel setting a synced trait once
per message at the same pace, read from the same kernel WebSocket, with the server's
default iopub rate limit (``IOPub message rate exceeded`` notices are counted for both).
Rate = messages received / (last receipt - first send).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from typing import Any

from ..protocol.messages import (
    Batch,
    Message,
    Policy,
    Subscribe,
    Subscribed,
    decode_event,
    encode,
)
from .base import Row, percentile, server
from .comm import delivered_rate
from .receipts import (
    QUIET,
    Receipts,
    _api,
    _shell_message,
    execute_collecting,
    jupyter_server,
)

__all__ = ["paced_widget_code", "relay_deliveries"]

RATES = (1_000, 10_000, 50_000)

SETUP = """
import ipywidgets as _w
from nbws.widgets.relay import Relay as _Relay
_relay_widget = _w.Widget()
_relay = _Relay(_relay_widget)
print("comm", _relay_widget.comm.comm_id)
"""


def paced_widget_code(rate: int, count: int) -> str:
    """Kernel code: a synced ipywidgets trait set once per message, ``rate`` per second."""
    return f"""
import time as _time
import ipywidgets as _widgets
import traitlets as _traitlets

class _BenchWidget(_widgets.Widget):
    value = _traitlets.Dict().tag(sync=True)

_widget = _BenchWidget()
_start = _time.perf_counter()
for _i in range({count}):
    _delay = _start + _i / {rate} - _time.perf_counter()
    if _delay > 0:
        _time.sleep(_delay)
    _widget.value = {{"t": _time.time_ns(), "i": _i}}
"""


class _View:
    """This process as the widget's view on the kernel WebSocket."""

    def __init__(self, ws: Any, session: str) -> None:
        self.ws = ws
        self.session = session
        self.comm_id = ""
        self.notices = 0

    def execute(self, code: str, timeout: float = 120) -> str:
        """Run ``code``; its stdout."""
        message = _shell_message(self.session, "execute_request", {"code": code, "silent": False})
        self.ws.send(json.dumps(message))
        out, deadline = "", time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = json.loads(self.ws.recv(timeout))
            ours = msg["parent_header"].get("msg_id") == message["header"]["msg_id"]
            kind = msg["header"]["msg_type"]
            if kind == "error" and ours:
                raise RuntimeError(f"kernel: {msg['content']['ename']}: {msg['content']['evalue']}")
            if kind == "stream" and ours:
                out += msg["content"]["text"]
            if kind == "status" and ours and msg["content"]["execution_state"] == "idle":
                return out
        raise TimeoutError("the kernel did not finish in time")

    def custom(self, content: dict[str, Any]) -> None:
        data = {"method": "custom", "content": content}
        message = _shell_message(self.session, "comm_msg", {"comm_id": self.comm_id, "data": data})
        self.ws.send(json.dumps(message))

    def next_custom(self, timeout: float) -> dict[str, Any] | None:
        """The next custom message from the widget (None: something else arrived)."""
        msg = json.loads(self.ws.recv(timeout))
        kind = msg["header"]["msg_type"]
        if kind == "stream" and "rate exceeded" in str(msg["content"].get("text")):
            self.notices += 1
        if kind != "comm_msg" or msg["content"].get("comm_id") != self.comm_id:
            return None
        data = msg["content"].get("data", {})
        return data.get("content") if data.get("method") == "custom" else None


def _relayed(view: _View, url: str, link: int, rate: int, count: int) -> dict[str, Any]:
    """One run: a link, a subscription through it, a paced publisher; what arrived."""
    stream = f"relay-bench-{uuid.uuid4().hex[:8]}"
    view.custom({"nbws": "relay-open", "link": link})
    while (content := view.next_custom(60)) is None or content.get("nbws") != "relay-opened":
        pass
    subscribe = Subscribe(stream=stream, policy=Policy.BLOCK, max_batch=10_000)
    view.custom({"nbws": "relay-send", "link": link, "text": encode(subscribe)[0].decode()})
    subscribed = False
    while not subscribed:  # the subscription is live before the publisher starts
        content = view.next_custom(60)
        if content is None or content.get("nbws") != "relay-batch":
            continue
        view.custom({"nbws": "relay-ack", "link": link, "batch": content["batch"]})
        events = [decode_event(f) for f in content["frames"] if isinstance(f, str)]
        subscribed = any(isinstance(e, Subscribed) for e in events)
    publisher = subprocess.Popen(
        [sys.executable, "-m", "nbws.bench.receipts", url, stream, str(rate), str(count)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    receipts: Receipts = []
    batches = 0
    first = last = 0.0
    done = False
    deadline = time.monotonic() + 60 + count / rate * 4
    try:
        while not done and time.monotonic() < deadline:
            try:
                content = view.next_custom(QUIET * 10)
            except TimeoutError:
                if publisher.poll() not in (None, 0):
                    raise RuntimeError("the publisher failed") from None
                continue
            if content is None or content.get("nbws") != "relay-batch":
                continue
            received = time.time_ns()
            batches += 1
            first = first or time.monotonic()
            last = time.monotonic()
            view.custom({"nbws": "relay-ack", "link": link, "batch": content["batch"]})
            for frame in content["frames"]:
                if not isinstance(frame, str):
                    continue
                event = decode_event(frame)
                messages = event.messages if isinstance(event, Batch) else (event,)
                for message in messages:
                    if not isinstance(message, Message) or not isinstance(message.payload, dict):
                        continue
                    if message.payload.get("done"):
                        done = True
                    elif "t" in message.payload:
                        receipts.append((int(message.payload["t"]), received))
    finally:
        publisher.wait(60)
        view.custom({"nbws": "relay-close", "link": link, "code": 1000, "reason": "bench"})
    latencies = sorted((r - s) / 1e6 for s, r in receipts)
    return {
        "receipts": receipts,
        "comm_per_s": batches / (last - first) if last > first else float(batches),
        "p99_ms": percentile(latencies, 99) if latencies else 0.0,
    }


def _baseline(port: int, token: str, rate: int, count: int) -> tuple[Receipts, int]:
    """The ipywidgets trait path at the same pace, from a fresh kernel."""
    from websockets.sync.client import connect

    kernel = _api(port, token, "/api/kernels", {"name": "python3"})["id"]
    url = f"ws://127.0.0.1:{port}/api/kernels/{kernel}/channels?token={token}"
    session = uuid.uuid4().hex
    with connect(url, max_size=None, compression=None, open_timeout=60) as ws:
        code = paced_widget_code(rate, count)
        request = {"code": code, "silent": False}
        return execute_collecting(ws, session, request, 60 + count / rate * 4)


def relay_deliveries(quick: bool) -> list[Row]:
    from websockets.sync.client import connect

    seconds = 2 if quick else 5
    rows: list[Row] = []
    with server("nbws") as (nbws_port, _):
        url = f"http://127.0.0.1:{nbws_port}/"
        with jupyter_server({"NBWS_URL": url}) as (port, token):
            kernel = _api(port, token, "/api/kernels", {"name": "python3"})["id"]
            channels = f"ws://127.0.0.1:{port}/api/kernels/{kernel}/channels?token={token}"
            with connect(channels, max_size=None, compression=None, open_timeout=60) as ws:
                view = _View(ws, uuid.uuid4().hex)
                printed = view.execute(SETUP)
                view.comm_id = printed.split("comm", 1)[1].split()[0]
                for link, rate in enumerate(RATES, start=1):
                    count = rate * seconds
                    view.notices = 0
                    got = _relayed(view, url, link, rate, count)
                    base, base_notices = _baseline(port, token, rate, count)
                    ours: Receipts = got["receipts"]
                    rows.append(
                        Row(
                            "relay",
                            f"delivered msgs/s, {rate:,} msg/s published ({count:,})",
                            delivered_rate(ours),
                            "ipywidgets trait set, same pace, Jupyter kernel WebSocket",
                            delivered_rate(base),
                            extra={
                                "received": f"{len(ours)} of {count}",
                                "baseline_received": f"{len(base)} of {count}",
                                "relay_comm_msgs_per_s": round(got["comm_per_s"], 1),
                                "relay_p99_ms": round(got["p99_ms"], 1),
                                "iopub_rate_limit_notices": view.notices,
                                "baseline_iopub_rate_limit_notices": base_notices,
                            },
                        )
                    )
    return rows
