"""Interoperability: the ``websockets`` Python client and Node's ``ws`` client against a
real ``nbws serve`` process (default settings, and with permessage-deflate on for echo)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import websockets
from conftest import RunningServer, start_serve_process, stop_serve_process
from websockets.exceptions import ConnectionClosed

NODE_DIR = Path(__file__).parent / "node"
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def plain() -> Iterator[RunningServer]:
    """``nbws serve --no-token`` with default settings."""
    server = start_serve_process()
    try:
        yield server
    finally:
        stop_serve_process(server)


@pytest.fixture(scope="module")
def deflate() -> Iterator[RunningServer]:
    """``nbws serve`` with permessage-deflate enabled for the echo endpoint only."""
    server = start_serve_process("--set", "compression={'echo': {}}")
    try:
        yield server
    finally:
        stop_serve_process(server)


# --- websockets (Python) ------------------------------------------------------------------


async def test_python_text_and_binary(plain: RunningServer) -> None:
    async with websockets.connect(plain.url()) as ws:
        await ws.send("héllo ✓")
        assert await ws.recv() == "héllo ✓"
        await ws.send(bytes(range(256)))
        assert await ws.recv() == bytes(range(256))
        await ws.send("")
        assert await ws.recv() == ""


async def test_python_large_message(plain: RunningServer) -> None:
    payload = os.urandom(MiB)
    async with websockets.connect(plain.url(), max_size=2 * MiB) as ws:
        await ws.send(payload)
        assert await ws.recv() == payload


async def test_python_fragmented_both_ways(plain: RunningServer) -> None:
    async with websockets.connect(plain.url("/nbws/echo?fragment=4")) as ws:
        await ws.send([b"abc", b"defgh", b"ij"])  # three fragments in
        assert [f async for f in ws.recv_streaming()] == [b"abcd", b"efgh", b"ij"]
        await ws.send(["ré", "sumé"])
        assert await ws.recv() == "résumé"


async def test_python_ping_pong(plain: RunningServer) -> None:
    async with websockets.connect(plain.url()) as ws:
        pong = await ws.ping(b"are you there")
        latency = await pong
        assert latency >= 0


@pytest.mark.parametrize(("code", "reason"), [(1000, ""), (1001, "bye"), (4000, "app code")])
async def test_python_client_close_is_echoed(plain: RunningServer, code: int, reason: str) -> None:
    async with websockets.connect(plain.url()) as ws:
        await ws.close(code, reason)
        assert ws.close_code == code
        assert ws.close_reason == reason


@pytest.mark.parametrize(("code", "reason"), [(1000, ""), (1011, "oops"), (4001, "é bye")])
async def test_python_server_close(plain: RunningServer, code: int, reason: str) -> None:
    url = plain.url(f"/nbws/echo?close={code}&reason={quote(reason)}")
    async with websockets.connect(url) as ws:
        await ws.send("x")
        assert await ws.recv() == "x"
        with pytest.raises(ConnectionClosed) as info:
            await ws.recv()
    assert info.value.rcvd is not None
    assert (info.value.rcvd.code, info.value.rcvd.reason) == (code, reason)


async def test_python_subprotocol(plain: RunningServer) -> None:
    async with websockets.connect(plain.url(), subprotocols=["nope", "nbws.echo"]) as ws:
        assert ws.subprotocol == "nbws.echo"
    async with websockets.connect(plain.url()) as ws:
        assert ws.subprotocol is None


async def test_python_deflate_only_when_enabled(
    plain: RunningServer, deflate: RunningServer
) -> None:
    text = "compress me " * 20000
    # websockets offers permessage-deflate by default.
    async with websockets.connect(plain.url()) as ws:
        assert ws.response is not None
        assert "Sec-WebSocket-Extensions" not in ws.response.headers
        await ws.send(text)
        assert await ws.recv() == text
    async with websockets.connect(deflate.url()) as ws:
        assert ws.response is not None
        assert ws.response.headers["Sec-WebSocket-Extensions"].startswith("permessage-deflate")
        await ws.send(text)
        assert await ws.recv() == text
        await ws.send([b"frag", b"mented"])
        assert await ws.recv() == b"fragmented"


# --- ws (Node) -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def node() -> str:
    """The ``node`` executable, with ``ws`` installed from the lock file when missing."""
    executable = shutil.which("node")
    if executable is None:
        pytest.skip("node is not on PATH: the Node ws interop tests need Node.js")
    if not (NODE_DIR / "node_modules" / "ws").is_dir():
        npm = shutil.which("npm")
        assert npm is not None, "node is installed but npm is not"
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True, timeout=180
        )
    return executable


def run_node(node: str, scenario: str, url: str) -> dict[str, Any]:
    done = subprocess.run(
        [node, "client.mjs", scenario, url],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"node {scenario} failed:\n{done.stderr}"
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_node_text(node: str, plain: RunningServer) -> None:
    result = run_node(node, "text", plain.url())
    assert result == {
        "text": "héllo wörld ✓",
        "isBinary": False,
        "close": {"code": 1000, "reason": ""},
    }


def test_node_binary(node: str, plain: RunningServer) -> None:
    assert run_node(node, "binary", plain.url()) == {
        "equal": True,
        "isBinary": True,
        "length": 4096,
    }


def test_node_large(node: str, plain: RunningServer) -> None:
    result = run_node(node, "large", plain.url())
    assert result["length"] == MiB
    assert result["isBinary"] is True
    assert result["received"] == result["sent"]


def test_node_fragmented(node: str, plain: RunningServer) -> None:
    # The last fragment boundary splits a two-byte character.
    result = run_node(node, "fragmented", plain.url())
    assert result == {"text": "part one, part two, é", "isBinary": False}


def test_node_ping_pong(node: str, plain: RunningServer) -> None:
    assert run_node(node, "ping", plain.url()) == {"pong": "are you there"}


def test_node_close_codes(node: str, plain: RunningServer) -> None:
    assert run_node(node, "client_close", plain.url()) == {"code": 4000, "reason": "client done"}
    result = run_node(node, "server_close", plain.url("/nbws/echo?close=4001&reason=bye"))
    assert result == {"echo": "last", "code": 4001, "reason": "bye"}


def test_node_subprotocol(node: str, plain: RunningServer) -> None:
    assert run_node(node, "subprotocol", plain.url()) == {"chosen": "nbws.echo", "none": ""}


def test_node_deflate_only_when_enabled(
    node: str, plain: RunningServer, deflate: RunningServer
) -> None:
    off = run_node(node, "deflate", plain.url())
    assert off == {"extensions": "", "equal": True, "length": 240000}
    on = run_node(node, "deflate", deflate.url())
    assert on == {"extensions": "permessage-deflate", "equal": True, "length": 240000}
    large = run_node(node, "large", deflate.url())
    assert large["received"] == large["sent"]
