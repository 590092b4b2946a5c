"""``nbws serve`` on the command line: help, option errors, ``--set``, config files, the
printed URL, the Host check and the landing page."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import re
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from typing import Any

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
    for option in (
        "--host",
        "--port",
        "--token",
        "--no-token",
        "--allow-origin",
        "--allow-host",
        "--redis",
        "--set",
        "-v",
    ):
        assert option in done.stdout
    assert "max_message_size" in done.stdout  # the --set example
    assert "jupyter_nbws_config" in done.stdout  # where settings come from
    assert done.stderr == ""


def test_serve_help_shows_the_host_and_port_defaults() -> None:
    done = run("--help")
    host = done.stdout.partition("--host=")[2]
    port = done.stdout.partition("--port=")[2]
    assert host.split("--")[0].count("Default: '127.0.0.1'") == 1, done.stdout
    assert port.split("--")[0].count("Default: 8765") == 1, done.stdout


def test_help_all_lists_the_nbws_options() -> None:
    done = run("--help-all")
    assert done.returncode == 0
    assert "--Nbws.buffer_policy=<ChoiceEnum>" in done.stdout
    assert "'drop-oldest'" in done.stdout


def test_top_level_help_names_serve() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "nbws.cli", "--help"], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0
    assert "serve" in done.stdout


def assert_one_line_error(done: subprocess.CompletedProcess[str], message: str) -> None:
    """Exit 2, the message as the only line on stderr, nothing served."""
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [f"nbws: {message}"], done.stderr
    assert "serving on" not in done.stdout


def test_token_and_no_token_are_exclusive() -> None:
    assert_one_line_error(
        run("--token", "t", "--no-token"), "--token and --no-token exclude each other"
    )


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("max_message_size", "--set takes NAME=VALUE, not 'max_message_size'"),
        ("=1024", "--set takes NAME=VALUE, not '=1024'"),
        ("no_such_option=1", "--set no_such_option: no such option (see nbws serve --help-all)"),
        (
            "max_message_size=lots",
            "invalid c.Nbws.max_message_size 'lots': use an integer >= 0 (0 = no limit)",
        ),
        (
            "compression=[1, 2]",
            "The 'compression' trait of a Nbws instance expected a dict, not the list [1, 2].",
        ),
        (
            "write_low_water=999999999",
            "invalid c.Nbws.write_low_water 999999999: use a value <= write_high_water (1048576)",
        ),
        ("backend=redsi", "invalid c.Nbws.backend 'redsi': use 'memory' or 'redis'"),
        ("max_frame_size=-1", "invalid c.Nbws.max_frame_size -1: use an integer >= 1"),
    ],
)
def test_bad_set_values_exit_2_with_a_readable_message(setting: str, message: str) -> None:
    assert_one_line_error(run("--port", "0", "--no-token", "--set", setting), message)


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        ("--Nbws.backend=redsi", "invalid c.Nbws.backend 'redsi': use 'memory' or 'redis'"),
        (
            "--Nbws.history_max_bytes=-1",
            "invalid c.Nbws.history_max_bytes -1: use an integer >= 0 (0 = no limit)",
        ),
        (
            "--Nbws.heartbeat_timeout=0",
            "invalid c.Nbws.heartbeat_timeout 0.0: use a number of seconds > 0",
        ),
        (
            "--Nbws.buffer_policy=drop-all",
            "invalid c.Nbws.buffer_policy 'drop-all': use 'drop-oldest', 'drop-newest', "
            "'conflate', 'disconnect' or 'block'",
        ),
        (
            "--Nbws.no_such_option=1",
            "c.Nbws.no_such_option: no such option (see nbws serve --help-all)",
        ),
        ("stray", "unexpected argument 'stray' (see nbws serve --help)"),
    ],
)
def test_bad_traitlets_options_exit_2_with_one_line(argument: str, message: str) -> None:
    assert_one_line_error(run("--port", "0", "--no-token", argument), message)


def test_port_must_be_a_number() -> None:
    assert_one_line_error(
        run("--port", "eighty"),
        "invalid c.NbwsServe.port 'eighty': use an integer >= 0 (0 = any free port)",
    )


def test_redis_backend_without_the_redis_package_says_how_to_install_it() -> None:
    # The same interpreter with `import redis` failing as it does where it is not installed.
    code = (
        "import sys; sys.modules['redis'] = None\n"
        "from nbws.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "serve",
            "--port",
            "0",
            "--no-token",
            "--redis",
            "redis://127.0.0.1:1/0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert_one_line_error(
        done, 'the Redis backend needs the redis package: pip install "nbws[redis]"'
    )


def test_busy_port_is_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run("--port", str(port), "--no-token")
    assert_one_line_error(done, f"port {port} is in use on 127.0.0.1; choose another --port")


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


async def test_printed_url_carries_a_generated_token() -> None:
    server, banner = start_with_banner()
    try:
        url = echo_url_of(banner)
        token = url.partition("?token=")[2]
        assert re.fullmatch(r"[0-9a-f]{48}", token), token
        async with websockets.connect(url) as ws:
            await ws.send("authorised by the printed URL")
            assert await ws.recv() == "authorised by the printed URL"
        with pytest.raises(InvalidStatus) as info:
            await websockets.connect(url.partition("?")[0])
        assert info.value.response.status_code == 403
    finally:
        stop_serve_process(server)


def test_a_token_the_user_chose_is_never_printed() -> None:
    server, banner = start_with_banner("--token", "my-secret-token")
    try:
        assert "my-secret-token" not in banner
        assert banner.rstrip().endswith(", with your --token")
    finally:
        stop_serve_process(server)


def test_no_token_on_a_network_address_needs_an_explicit_flag() -> None:
    assert_one_line_error(
        run("--no-token", "--host", "0.0.0.0", "--port", "0"),
        "--no-token on 0.0.0.0 would let anyone on the network use this server; bind "
        "127.0.0.1, give a --token, or add --allow-unauthenticated-remote",
    )
    server, banner = start_with_banner(
        "--no-token", "--host", "0.0.0.0", "--allow-unauthenticated-remote"
    )
    try:
        assert banner.startswith("nbws serving on http://0.0.0.0:")
    finally:
        stop_serve_process(server)


def test_base_url_prefixes_every_route() -> None:
    server, banner = start_with_banner("--no-token", "--base-url", "/under/here")
    try:
        assert f"127.0.0.1:{server.port}/under/here/" in banner
        base = f"http://127.0.0.1:{server.port}"
        with urllib.request.urlopen(f"{base}/under/here/nbws/api/health", timeout=30) as r:
            assert json.loads(r.read())["status"] == "ok"
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"{base}/nbws/api/health", timeout=30)
        assert missing.value.code == 404
    finally:
        stop_serve_process(server)


def test_certfile_needs_its_keyfile() -> None:
    assert_one_line_error(
        run("--no-token", "--certfile", "cert.pem"), "--certfile and --keyfile go together"
    )


def test_unreadable_certificate_is_one_line(tmp_path: pathlib.Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("not a certificate")
    done = run("--no-token", "--certfile", str(cert), "--keyfile", str(cert))
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith(f"nbws: cannot use --certfile {str(cert)!r}: "), line


async def test_tls_serves_wss(tmp_path: pathlib.Path) -> None:
    from deploy.tls import make_certificates

    certs = make_certificates(tmp_path)
    server, banner = start_with_banner(
        "--no-token", "--certfile", str(certs.cert), "--keyfile", str(certs.key)
    )
    assert banner.startswith(f"nbws serving on https://127.0.0.1:{server.port}/"), banner
    assert f"wss://127.0.0.1:{server.port}/nbws/echo" in banner
    try:
        url = f"wss://127.0.0.1:{server.port}/nbws/echo"
        async with websockets.connect(url, ssl=certs.client_context()) as ws:
            await ws.send("over TLS")
            assert await ws.recv() == "over TLS"
    finally:
        stop_serve_process(server)


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


@pytest.mark.parametrize("trusted", [False, True], ids=["default", "--trust-proxy"])
async def test_forwarded_headers_only_with_trust_proxy(trusted: bool) -> None:
    server, _ = start_with_banner("--no-token", *(["--trust-proxy"] if trusted else []))
    try:
        url = f"ws://127.0.0.1:{server.port}/nbws/ws"
        headers = {"X-Forwarded-For": "203.0.113.9"}
        async with websockets.connect(
            url, subprotocols=["nbws.v1"], additional_headers=headers
        ) as ws:
            await ws.recv()  # welcome
            await ws.send('{"type":"subscribe","stream":"fwd","id":1}')
            await ws.recv()  # subscribed
            api = f"http://127.0.0.1:{server.port}/nbws/api/streams/fwd?subscribers=1"
            [sub] = (await asyncio.to_thread(get_json, api))["subscriptions"]
        assert sub["remote"] == ("203.0.113.9" if trusted else "127.0.0.1")
    finally:
        stop_serve_process(server)


def start_with_banner(*args: str, env: dict[str, str] | None = None) -> tuple[RunningServer, str]:
    """Start ``nbws serve --port 0 ARGS`` and return it with its first output line."""
    proc = subprocess.Popen(
        [*SERVE, "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    assert proc.stdout is not None
    banner = proc.stdout.readline()
    match = re.search(r"serving on https?://([\d.]+):(\d+)/", banner)
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


def config_env(folder: pathlib.Path) -> dict[str, str]:
    """Jupyter's config path pointed at ``folder`` alone (no user or system files)."""
    return {
        "JUPYTER_CONFIG_DIR": str(folder),
        "JUPYTER_CONFIG_PATH": "",
        "JUPYTER_PREFER_ENV_PATH": "0",
    }


async def echo_subprotocol(server: RunningServer, offered: str) -> str | None:
    async with websockets.connect(server.url(), subprotocols=[offered]) as ws:  # type: ignore[list-item]
        await ws.send("hi")
        assert await ws.recv() == "hi"
        return ws.subprotocol


@pytest.mark.parametrize("kind", ["py", "json"])
async def test_serve_reads_jupyter_nbws_config_from_the_config_dir(
    tmp_path: pathlib.Path, kind: str
) -> None:
    if kind == "py":
        (tmp_path / "jupyter_nbws_config.py").write_text(
            "c.Nbws.subprotocols = {'echo': ['from.file']}\nc.NbwsServe.token = 'file-token'\n"
        )
    else:
        (tmp_path / "jupyter_nbws_config.json").write_text(
            json.dumps(
                {
                    "Nbws": {"subprotocols": {"echo": ["from.file"]}},
                    "NbwsServe": {"token": "file-token"},
                }
            )
        )
    server, banner = start_with_banner(env=config_env(tmp_path))
    try:
        assert "file-token" not in banner  # the token came from the file: never printed
        server.token = "file-token"
        assert await echo_subprotocol(server, "from.file") == "from.file"
    finally:
        stop_serve_process(server)


async def test_command_line_wins_over_the_config_file(tmp_path: pathlib.Path) -> None:
    (tmp_path / "jupyter_nbws_config.py").write_text(
        "c.Nbws.subprotocols = {'echo': ['from.file']}\n"
    )
    server, _ = start_with_banner(
        "--no-token", "--Nbws.subprotocols={'echo': ['from.cli']}", env=config_env(tmp_path)
    )
    try:
        assert await echo_subprotocol(server, "from.cli") == "from.cli"
    finally:
        stop_serve_process(server)


def test_bad_value_in_the_config_file_is_one_line(tmp_path: pathlib.Path) -> None:
    (tmp_path / "jupyter_nbws_config.py").write_text("c.Nbws.backend = 'redsi'\n")
    done = subprocess.run(
        [*SERVE, "--port", "0", "--no-token"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **config_env(tmp_path)},
    )
    assert_one_line_error(done, "invalid c.Nbws.backend 'redsi': use 'memory' or 'redis'")


def test_broken_config_file_is_one_line(tmp_path: pathlib.Path) -> None:
    (tmp_path / "jupyter_nbws_config.py").write_text("c.Nbws.backend = \n")
    done = subprocess.run(
        [*SERVE, "--port", "0", "--no-token"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **config_env(tmp_path)},
    )
    assert done.returncode == 2
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stderr.startswith("nbws: error in config file ")
    assert "Traceback" not in done.stderr


# --- Host header (DNS rebinding) ---------------------------------------------------------


async def raw_request(port: int, request: str) -> tuple[int, str]:
    """Send one raw HTTP/1.1 request; the status code and the body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request.encode())
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 60)
        status = int(head.split(b" ", 2)[1])
        length = re.search(rb"(?i)content-length: (\d+)", head)
        body = await reader.readexactly(int(length.group(1))) if length else b""
        return status, body.decode()
    finally:
        writer.close()


def upgrade(host: str, path: str = "/nbws/ws") -> str:
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Protocol: nbws.v1\r\n\r\n"
    )


def get(host: str, path: str) -> str:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"


async def test_http_1_0_without_host_is_served(nbws_server: RunningServer) -> None:
    request = "GET /nbws/api/health HTTP/1.0\r\n\r\n"
    status, _ = await raw_request(nbws_server.port, request)
    assert status == 200


@pytest.mark.parametrize("path", ["/nbws/api/streams", "/nbws/api/health", "/metrics", "/"])
async def test_foreign_host_is_403_for_rest(nbws_server: RunningServer, path: str) -> None:
    status, body = await raw_request(nbws_server.port, get("evil.example", path))
    assert status == 403
    assert "host not allowed" in body


async def test_foreign_host_is_403_before_the_websocket_upgrade(nbws_server: RunningServer) -> None:
    status, body = await raw_request(nbws_server.port, upgrade(f"evil.example:{nbws_server.port}"))
    assert status == 403
    assert "host not allowed" in body
    assert nbws_server.server is not None
    assert len(nbws_server.server.context.registry) == 0


@pytest.mark.parametrize(
    "host", ["localhost:{port}", "127.0.0.1:{port}", "[::1]:{port}", "LOCALHOST", "10.1.2.3:{port}"]
)
async def test_local_names_and_addresses_are_served(nbws_server: RunningServer, host: str) -> None:
    host = host.format(port=nbws_server.port)
    status, body = await raw_request(nbws_server.port, get(host, "/nbws/api/streams"))
    assert (status, json.loads(body)) == (200, {"streams": []})
    status, _ = await raw_request(nbws_server.port, upgrade(host))
    assert status == 101


@pytest.mark.parametrize("server_options", [{"allow_hosts": ["nbws.example"]}])
async def test_allow_hosts_adds_names(nbws_server: RunningServer) -> None:
    status, _ = await raw_request(nbws_server.port, get("nbws.example:80", "/nbws/api/health"))
    assert status == 200
    status, _ = await raw_request(nbws_server.port, get("other.example", "/nbws/api/health"))
    assert status == 403


@pytest.mark.parametrize("server_options", [{"allow_hosts": ["*"]}])
async def test_allow_hosts_star_allows_any(nbws_server: RunningServer) -> None:
    status, _ = await raw_request(nbws_server.port, get("evil.example", "/nbws/api/health"))
    assert status == 200


def test_allow_host_flag_reaches_the_server() -> None:
    server = start_serve_process("--allow-host", "box.example")
    try:
        status, _ = asyncio.run(raw_request(server.port, get("box.example", "/nbws/api/health")))
        assert status == 200
        status, _ = asyncio.run(raw_request(server.port, get("evil.example", "/nbws/api/health")))
        assert status == 403
    finally:
        stop_serve_process(server)


def test_host_check_unit() -> None:
    from nbws.server.standalone import host_allowed

    assert host_allowed("myhost:8765", "myhost", [])
    assert not host_allowed("myhost.evil.example", "myhost", [])
    assert host_allowed("[::1]", "127.0.0.1", [])
    assert host_allowed("", "127.0.0.1", [])  # HTTP/1.0 without Host: not a browser
    assert not host_allowed("localhost.evil.example:80", "127.0.0.1", [])
    assert host_allowed("nbws.example.", "127.0.0.1", ["NBWS.example"])


# --- landing page ---------------------------------------------------------------------------


async def publish(server: RunningServer, stream: str) -> None:
    async with websockets.connect(server.url("/nbws/ws"), subprotocols=["nbws.v1"]) as ws:  # type: ignore[list-item]
        assert json.loads(await ws.recv())["type"] == "welcome"
        await ws.send(
            json.dumps(
                {"type": "publish", "stream": stream, "producer": "p", "seq": 0, "payload": 1}
            )
        )
        assert json.loads(await ws.recv())["type"] == "ack"


async def test_landing_page_lists_endpoints_and_streams(nbws_server: RunningServer) -> None:
    await publish(nbws_server, "landing/demo-1")
    status, page = await raw_request(nbws_server.port, get(f"127.0.0.1:{nbws_server.port}", "/"))
    assert status == 200
    assert page.startswith("<!doctype html>")
    for endpoint in ("/nbws/ws", "/nbws/echo", "/nbws/tap", "/nbws/api/streams", "/metrics"):
        assert f"127.0.0.1:{nbws_server.port}{endpoint}" in page
    assert "<code>landing/demo-1</code>" in page
    assert "nbws.stream(" in page


@pytest.mark.parametrize("server_options", [{"token": "landing-secret-token"}])
async def test_landing_page_never_shows_the_token(nbws_server: RunningServer) -> None:
    await publish(nbws_server, "landing-private")
    host = f"127.0.0.1:{nbws_server.port}"
    status, anonymous = await raw_request(nbws_server.port, get(host, "/"))
    assert status == 200
    assert "landing-private" not in anonymous  # names only for token holders
    assert "opened with the server's token" in anonymous
    status, authorised = await raw_request(
        nbws_server.port, get(host, "/?token=landing-secret-token")
    )
    assert status == 200
    assert "<code>landing-private</code>" in authorised
    for page in (anonymous, authorised):
        assert "landing-secret-token" not in page


def test_landing_page_escapes_what_it_shows() -> None:
    from nbws.server.standalone import landing_page

    page = landing_page(
        host="h<1>",
        root="",
        streams=[("<script>alert(1)</script>", 3, 1)],
        problem="",
        needs_token=False,
        backend="memory",
    )
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "h&lt;1&gt;" in page


def test_banner_url_answers() -> None:
    server, banner = start_with_banner("--no-token")
    try:
        assert banner.startswith(f"nbws serving on http://127.0.0.1:{server.port}/ ")
        status, page = asyncio.run(raw_request(server.port, get(f"127.0.0.1:{server.port}", "/")))
        assert status == 200 and "nbws serve" in page
    finally:
        stop_serve_process(server)


def test_generate_config_writes_the_file_serve_reads_and_exits(tmp_path: pathlib.Path) -> None:
    done = subprocess.run(
        [*SERVE, "--generate-config"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **config_env(tmp_path)},
    )
    assert done.returncode == 0, done.stderr
    assert "serving on" not in done.stdout
    text = (tmp_path / "jupyter_nbws_config.py").read_text()
    assert "# c.Nbws.backend = 'memory'" in text
    assert "# c.NbwsServe.port = 8765" in text


def test_config_option_names_one_file(tmp_path: pathlib.Path) -> None:
    chosen = tmp_path / "elsewhere.py"
    chosen.write_text("c.Nbws.backend = 'redsi'\n")
    done = run("--port", "0", "--no-token", "--config", str(chosen))
    assert_one_line_error(done, "invalid c.Nbws.backend 'redsi': use 'memory' or 'redis'")
    missing = tmp_path / "missing.py"
    done = run("--port", "0", "--no-token", "--config", str(missing))
    assert_one_line_error(done, f"no config file {missing} (--config)")


def test_a_repeated_single_valued_option_means_the_last_one():
    from nbws.cli import last_wins

    argv = ["--port", "0", "--no-token", "--port=9000", "--set", "a=1", "--set", "b=2"]
    assert last_wins(argv) == ["--no-token", "--port=9000", "--set", "a=1", "--set", "b=2"]
    assert last_wins(["--host", "a", "--port", "1", "--host", "b"]) == [
        "--port",
        "1",
        "--host",
        "b",
    ]


def test_serve_accepts_a_port_given_twice():
    server = start_serve_process("--port", "0")  # the helper already passes --port 0
    try:
        assert server.port > 0
    finally:
        stop_serve_process(server)
