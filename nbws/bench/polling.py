"""Request/response vs WebSocket for frequent small messages, on the same ``nbws serve``.

The same small messages are published one by one (a) as HTTP POSTs to
``nbws/api/streams/{name}/messages`` over one keep-alive connection, each waiting for its
201, and (b) over one WebSocket by the reliable client, acked, with its default window
of 1000 and with window 1 (each message waits for its ack, like each POST waits for its
response). Connections are open and warm before the clock starts.
"""

from __future__ import annotations

import http.client
import json
import statistics
import time
import uuid

from .base import Row, server

__all__ = ["polling"]

TARGET = "10-50x"


def _payload(i: int) -> dict[str, object]:
    return {"i": i, "v": 1.5, "sym": "AAPL"}


def _http_rate(port: int, count: int) -> float:
    """Messages/s as POSTs on one keep-alive connection, each waiting for its answer."""
    path = f"/nbws/api/streams/poll-{uuid.uuid4().hex[:8]}/messages"
    headers = {"Content-Type": "application/json"}
    bodies = [json.dumps({"payload": _payload(i)}).encode() for i in range(count + 1)]
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def post(body: bytes) -> None:
        connection.request("POST", path, body, headers)
        response = connection.getresponse()
        response.read()
        if response.status != 201:
            raise RuntimeError(f"POST {path}: HTTP {response.status}")

    try:
        post(bodies[-1])  # connect and create the stream before the clock starts
        start = time.perf_counter()
        for body in bodies[:count]:
            post(body)
        return count / (time.perf_counter() - start)
    finally:
        connection.close()


def _ws_rate(port: int, count: int, window: int) -> float:
    """Messages/s published by the reliable client over one WebSocket, all acked."""
    import nbws

    name = f"ws-{uuid.uuid4().hex[:8]}"
    stream = nbws.stream(name, url=f"http://127.0.0.1:{port}/", window=window)
    try:
        stream.publish(_payload(-1))
        stream.flush(timeout=30)  # connected and the stream exists
        start = time.perf_counter()
        for i in range(count):
            stream.publish(_payload(i))
        stream.flush(timeout=60)
        return count / (time.perf_counter() - start)
    finally:
        stream.close()


def polling(quick: bool) -> list[Row]:
    count, rounds = 1000, (3 if quick else 7)
    rates: dict[str, list[float]] = {"http": [], "ws": [], "ws1": []}
    with server("nbws") as (port, _):
        for _ in range(rounds):  # interleaved, so drift in machine load hits all alike
            rates["http"].append(_http_rate(port, count))
            rates["ws"].append(_ws_rate(port, count, 1000))
            rates["ws1"].append(_ws_rate(port, count, 1))
    http_rate, ws, ws1 = (statistics.median(rates[k]) for k in ("http", "ws", "ws1"))
    baseline = "HTTP POST per message, keep-alive"
    metric = f"msgs/s, {count:,} small msgs"
    extra = {"median_of_rounds": rounds}
    return [
        Row(
            "polling vs WebSocket",
            f"{metric}, WebSocket window 1000",
            ws,
            baseline,
            http_rate,
            target=TARGET,
            extra=extra,
        ),
        Row(
            "polling vs WebSocket",
            f"{metric}, WebSocket window 1",
            ws1,
            baseline,
            http_rate,
        ),
    ]
