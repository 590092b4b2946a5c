"""``nbws serve`` on the command line: help, option errors, ``--set``, the printed URL."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import websockets
from conftest import RunningServer, start_serve_process, stop_serve_process
from websockets.exceptions import ConnectionClosed, InvalidStatus

SERVE = [sys.executable, "-m", "nbws.cli", "serve"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``nbws serve ARGS`` expecting it to exit by itself (help or an error)."""
    return subprocess.run(
        [*SERVE, *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def test_serve_help_lists_every_option() -> None:
    done = run("--help")
    assert done.returncode == 0
    for option in ("--host", "--port", "--token", "--no-token", "--allow-origin", "--set", "-v"):
        assert option in done.stdout
    assert "max_message_size" in done.stdout  # the --set example
    assert done.stderr == ""


def test_top_level_help_names_serve() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "nbws.cli", "--help"], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0
    assert "serve" in done.stdout


def test_token_and_no_token_are_exclusive() -> None:
    done = run("--token", "t", "--no-token")
    assert done.returncode == 2
    assert "not allowed with argument" in done.stderr


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("max_message_size", "--set takes NAME=VALUE, not 'max_message_size'"),
        ("=1024", "--set takes NAME=VALUE, not '=1024'"),
        ("no_such_option=1", "--set no_such_option: no such option"),
        ("max_message_size=lots", "expected an int, not the str 'lots'"),
        ("compression=[1, 2]", "'compression' trait of a Nbws instance expected a dict"),
        ("write_low_water=999999999", "write_low_water must not exceed write_high_water"),
    ],
)
def test_bad_set_values_exit_2_with_a_readable_message(setting: str, message: str) -> None:
    done = run("--port", "0", "--no-token", "--set", setting)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert "serving on" not in done.stdout


def test_port_must_be_a_number() -> None:
    done = run("--port", "eighty")
    assert done.returncode == 2
    assert "invalid int value" in done.stderr


def echo_url_of(banner: str) -> str:
    match = re.search(r"\(echo: (ws://\S+)\)", banner)
    assert match, banner
    return match.group(1)


async def test_printed_url_with_no_token_works() -> None:
    server, banner = start_with_banner("--no-token")
    try:
        assert banner.startswith(f"nbws serving on http://127.0.0.1:{server.port}/")
        url = echo_url_of(banner)
        assert url == f"ws://127.0.0.1:{server.port}/nbws/echo"
        async with websockets.connect(url) as ws:
            await ws.send("from the banner")
            assert await ws.recv() == "from the banner"
    finally:
        stop_serve_process(server)


@pytest.mark.parametrize("given", ["my-token", None], ids=["--token", "generated"])
async def test_printed_url_carries_the_token(given: str | None) -> None:
    server, banner = start_with_banner(*(["--token", given] if given else []))
    try:
        url = echo_url_of(banner)
        token = url.partition("?token=")[2]
        if given:
            assert token == given
        else:
            assert re.fullmatch(r"[0-9a-f]{48}", token), token
        async with websockets.connect(url) as ws:
            await ws.send("authorised by the printed URL")
            assert await ws.recv() == "authorised by the printed URL"
        with pytest.raises(InvalidStatus) as info:
            await websockets.connect(url.partition("?")[0])
        assert info.value.response.status_code == 403
    finally:
        stop_serve_process(server)


def start_with_banner(*args: str) -> tuple[RunningServer, str]:
    """Start ``nbws serve --port 0 ARGS`` and return it with its first output line."""
    proc = subprocess.Popen(
        [*SERVE, "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    banner = proc.stdout.readline()
    match = re.search(r"serving on http://([\d.]+):(\d+)/", banner)
    if match is None:
        proc.kill()
        raise AssertionError(f"unexpected first line: {banner!r}")
    return RunningServer(match.group(1), int(match.group(2)), None, process=proc), banner


async def test_set_values_reach_the_server() -> None:
    server = start_serve_process(
        "--set", "max_message_size=1024", "--set", "subprotocols={'echo': ['custom.v2']}"
    )
    try:
        async with websockets.connect(server.url(), subprotocols=["custom.v2"]) as ws:
            assert ws.subprotocol == "custom.v2"
            await ws.send(b"x" * 1024)
            assert await ws.recv() == b"x" * 1024
            await ws.send(b"x" * 1025)
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == 1009
    finally:
        stop_serve_process(server)
