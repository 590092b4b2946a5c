"""The extension inside a real `jupyter server` subprocess, enabled by installation alone."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
import websockets
from conftest import launch_jupyter
from tornado.httpclient import AsyncHTTPClient, HTTPClientError


async def test_extension_is_enabled_by_install(jupyter_server):
    assert "nbws | extension was successfully loaded" in jupyter_server.log()


async def test_streams_endpoint_without_token_is_403_before_upgrade(jupyter_server):
    with pytest.raises(websockets.exceptions.InvalidStatus) as info:
        async with websockets.connect(jupyter_server.ws_url("nbws/ws", token=False)):
            pass
    assert info.value.response.status_code == 403


async def test_wrong_token_is_403(jupyter_server):
    url = jupyter_server.ws_url("nbws/ws", token=False) + "?token=wrong"
    with pytest.raises(websockets.exceptions.InvalidStatus) as info:
        async with websockets.connect(url):
            pass
    assert info.value.response.status_code == 403


async def test_cookie_from_foreign_origin_is_403(jupyter_server):
    # Log in like a browser (token -> cookie), then open the socket from another site.
    client = AsyncHTTPClient()
    response = await client.fetch(
        f"{jupyter_server.http_url}?token={jupyter_server.token}",
        follow_redirects=False,
        raise_error=False,
    )
    cookies = "; ".join(c.split(";")[0] for c in response.headers.get_list("Set-Cookie"))
    assert cookies, "logging in with the token set no cookie"
    headers = {"Cookie": cookies, "Origin": "http://evil.example"}
    with pytest.raises(websockets.exceptions.InvalidStatus) as info:
        async with websockets.connect(
            jupyter_server.ws_url("nbws/ws", token=False), additional_headers=headers
        ):
            pass
    assert info.value.response.status_code == 403
    # The same cookie from the server's own origin is accepted.
    headers["Origin"] = f"http://127.0.0.1:{jupyter_server.port}"
    async with websockets.connect(
        jupyter_server.ws_url("nbws/echo", token=False), additional_headers=headers
    ) as ws:
        await ws.send("ok")
        assert await ws.recv() == "ok"


async def test_publish_subscribe_and_rest_inside_jupyter(jupyter_server):
    url = jupyter_server.ws_url("nbws/ws")
    async with websockets.connect(url, subprotocols=["nbws.v1"]) as ws:
        assert ws.subprotocol == "nbws.v1"
        assert json.loads(await ws.recv())["type"] == "welcome"
        await ws.send(json.dumps({"type": "subscribe", "stream": "jx", "since": 0}))
        assert json.loads(await ws.recv())["type"] == "subscribed"
        await ws.send(
            json.dumps(
                {"type": "publish", "stream": "jx", "producer": "p", "seq": 0, "payload": {"x": 1}}
            )
        )
        got = [json.loads(await ws.recv()) for _ in range(2)]
        assert sorted(m["type"] for m in got) == ["ack", "message"]
        message = next(m for m in got if m["type"] == "message")
        assert message["payload"] == {"x": 1} and message["offset"] == 0
    response = await AsyncHTTPClient().fetch(
        f"{jupyter_server.http_url}nbws/api/streams/jx",
        headers={"Authorization": f"token {jupyter_server.token}"},
    )
    assert json.loads(response.body)["next"] == 1


async def test_rest_requires_auth(jupyter_server):
    with pytest.raises(HTTPClientError) as info:
        await AsyncHTTPClient().fetch(f"{jupyter_server.http_url}nbws/api/streams")
    assert info.value.code == 403


async def test_rest_write_with_cookie_needs_xsrf(jupyter_server):
    client = AsyncHTTPClient()
    login = await client.fetch(
        f"{jupyter_server.http_url}?token={jupyter_server.token}",
        follow_redirects=False,
        raise_error=False,
    )
    cookies = "; ".join(c.split(";")[0] for c in login.headers.get_list("Set-Cookie"))
    with pytest.raises(HTTPClientError) as info:
        await client.fetch(
            f"{jupyter_server.http_url}nbws/api/streams/xsrf-test",
            method="POST",
            body="{}",
            headers={"Cookie": cookies},
        )
    assert info.value.code == 403


async def test_echo_inside_jupyter(jupyter_server):
    async with websockets.connect(jupyter_server.ws_url("nbws/echo")) as ws:
        await ws.send(b"\x01\x02")
        assert await ws.recv() == b"\x01\x02"


def test_metrics_are_served_by_jupyter(jupyter_server):
    url = f"{jupyter_server.http_url}metrics?token={jupyter_server.token}"
    try:
        body = urllib.request.urlopen(url, timeout=10).read().decode()
    except urllib.error.HTTPError as exc:  # pragma: no cover - shows what Jupyter said
        raise AssertionError(f"/metrics answered {exc.code}") from exc
    assert "nbws_messages_in" in body


def jupyter_failure(workdir: pathlib.Path, *args: str) -> str:
    """Start `jupyter server` expecting it to exit at start-up; the log it left."""
    try:
        server = launch_jupyter(workdir, args=args, timeout=120)
    except RuntimeError as exc:
        return str(exc)
    server.stop()
    pytest.fail("jupyter server started despite the bad nbws setting")


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (
            {"backend": "redsi"},
            "nbws: invalid c.Nbws.backend 'redsi': use 'memory' or 'redis'",
        ),
        (
            {"history_max_bytes": -1},
            "nbws: invalid c.Nbws.history_max_bytes -1: use an integer >= 0 (0 = no limit)",
        ),
    ],
    ids=["backend", "negative-size"],
)
def test_bad_setting_in_jupyter_nbws_config_stops_the_server(
    tmp_path: pathlib.Path, setting: dict[str, object], message: str
) -> None:
    # The file the extension reads from Jupyter's config dir, as a user would write it.
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "jupyter_nbws_config.json").write_text(json.dumps({"Nbws": setting}))
    log = jupyter_failure(tmp_path)
    assert "exited early" in log
    lines = [line for line in log.splitlines() if "nbws: " in line]
    assert len(lines) == 1 and lines[0].endswith(message), log
    assert "Traceback" not in log
    assert "nbws | extension was successfully loaded" not in log


def test_bad_setting_on_the_jupyter_command_line_stops_the_server(tmp_path: pathlib.Path) -> None:
    log = jupyter_failure(tmp_path, "--Nbws.buffer_policy=drop-all")
    assert "nbws: invalid c.Nbws.buffer_policy 'drop-all': use 'drop-oldest'" in log
    assert "Traceback" not in log


def test_jupyter_server_exit_status_for_a_bad_setting(tmp_path: pathlib.Path) -> None:
    for sub in ("root", "config", "runtime", "data"):
        (tmp_path / sub).mkdir()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "jupyter",
            "server",
            "--allow-root",
            "--no-browser",
            "--ServerApp.port=0",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.root_dir={tmp_path / 'root'}",
            "--Nbws.max_connections=0",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={
            **os.environ,
            "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
            "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
            "JUPYTER_DATA_DIR": str(tmp_path / "data"),
        },
    )
    assert done.returncode == 2
    assert "nbws: invalid c.Nbws.max_connections 0: use an integer >= 1" in done.stderr


def test_unknown_nbws_option_stops_the_server(tmp_path: pathlib.Path) -> None:
    log = jupyter_failure(tmp_path, "--Nbws.max_mesage_size=1024")
    assert "nbws: c.Nbws.max_mesage_size: no such option (see docs/configuration.md)" in log
    assert "Traceback" not in log
