"""The raw client: handshake, sending, recording, state, listeners, and never hanging.

Real servers throughout: ``nbws serve`` in-process (the blocking client runs in a worker
thread so the server's loop keeps running), and tiny scripted socket servers where a server
has to misbehave on purpose.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed as WsConnectionClosed

from nbws.errors import ConnectionClosed
from nbws.explore import HandshakeError, WriteTimeout, connect, probe
from nbws.explore.frames import build_frame, parse_frames
from nbws.protocol import State

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3


def expected_accept(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def test_accept_computation_matches_the_rfc_example():
    assert expected_accept("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


class ScriptedServer:
    """One-connection TCP server that answers the handshake, then runs ``script(sock)``."""

    def __init__(
        self,
        script: Callable[[socket.socket], None],
        *,
        answer: bool = True,
        accept: str | None = None,
    ) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.script = script
        self.answer = answer
        self.accept = accept
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            conn.settimeout(5)
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(4096)
            if self.answer:
                key = next(
                    line.split(":", 1)[1].strip()
                    for line in head.decode().split("\r\n")
                    if line.lower().startswith("sec-websocket-key:")
                )
                accept = self.accept or expected_accept(key)
                conn.sendall(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept.encode() + b"\r\n\r\n"
                )
            self.script(conn)
            self.done.wait(10)

    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    def stop(self) -> None:
        self.done.set()
        self.thread.join(5)
        self.listener.close()


@contextlib.contextmanager
def scripted(
    script: Callable[[socket.socket], None], **options: object
) -> Iterator[ScriptedServer]:
    server = ScriptedServer(script, **options)  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.stop()


def silent(sock: socket.socket) -> None:
    """Say nothing, read nothing."""


def read_frames(sock: socket.socket, count: int) -> list:
    data = b""
    while True:
        frames, _ = parse_frames(data, "out")
        if len(frames) >= count:
            return frames
        chunk = sock.recv(65536)
        if not chunk:
            return frames
        data += chunk


async def test_handshake_headers_are_kept_and_shown(nbws_server):
    url = nbws_server.url()
    origin = f"http://127.0.0.1:{nbws_server.port}"

    def run() -> None:
        with connect(
            url, subprotocols=["nbws.echo"], origin=origin, headers={"X-Probe": "1"}
        ) as conn:
            sent = dict(conn.request_headers)
            assert sent["Sec-WebSocket-Version"] == "13"
            assert sent["Origin"] == origin and sent["X-Probe"] == "1"
            assert conn.response.status == 101
            assert conn.response.header("sec-websocket-accept") == expected_accept(
                sent["Sec-WebSocket-Key"]
            )
            assert conn.subprotocol == "nbws.echo"
            shown = repr(conn)
            assert f"> Sec-WebSocket-Key: {sent['Sec-WebSocket-Key']}" in shown
            assert "< HTTP/1.1 101 Switching Protocols" in shown
            assert "OPEN" in shown

    await asyncio.to_thread(run)


@pytest.mark.parametrize("server_options", [{"token": "s3cret"}])
async def test_token_in_the_url_is_sent(nbws_server):
    with_token, without = nbws_server.url(), nbws_server.url(token=False)

    def run() -> None:
        with connect(with_token) as conn:
            conn.text("in")
            assert conn.receive() == "in"
        with pytest.raises(HandshakeError) as info:
            connect(without)
        assert info.value.response.status == 403

    await asyncio.to_thread(run)


async def test_messages_fragments_and_records(nbws_server):
    url = nbws_server.url()

    def run() -> None:
        with connect(url) as conn:
            conn.text("héllo")
            conn.binary(b"\x00\x01")
            conn.fragments("abcdefgh", 3)
            conn.fragments([b"x", b"", b"yz"])
            assert [conn.receive() for _ in range(4)] == ["héllo", b"\x00\x01", "abcdefgh", b"xyz"]
            out = [r for r in conn.records if r.direction == "out"]
            assert [(r.opcode_name, r.fin, r.length) for r in out] == [
                ("TEXT", True, 6),
                ("BINARY", True, 2),
                ("TEXT", False, 3),
                ("CONT", False, 3),
                ("CONT", True, 2),
                ("BINARY", False, 1),
                ("CONT", False, 0),
                ("CONT", True, 2),
            ]
            assert all(r.masked for r in out)
            incoming = [r for r in conn.records if r.direction == "in"]
            assert all(not r.masked for r in incoming) and len(incoming) == 4
            pairs = conn.reply_times()
            assert pairs[0][0].opcode_name == "TEXT" and pairs[0][1].preview == "héllo".encode()
            assert pairs[0][2] >= 0
            assert conn.records[0].as_dict()["preview"] == "héllo"
            html = conn._repr_html_()
            assert html.count("<tr>") == 1 + len(conn.records) and "Sec-WebSocket-Accept" in html

    await asyncio.to_thread(run)


async def test_wait_for_returns_each_frame_once_and_times_out(nbws_server):
    url = nbws_server.url()

    def run() -> None:
        with connect(url, timeout=2) as conn:
            conn.ping("a")
            conn.ping("b")
            conn.text("t")
            assert conn.wait_for("text").payload == b"t"
            assert conn.wait_for(0xA).payload == b"a"
            assert conn.wait_for(lambda f: f.opcode == 0xA).payload == b"b"
            with pytest.raises(TimeoutError):
                conn.wait_for("pong", timeout=0.2)

    await asyncio.to_thread(run)


async def test_states_close_and_sending_after_close(nbws_server):
    url = nbws_server.url()

    def run() -> None:
        conn = connect(url)
        assert conn.state is State.OPEN
        assert conn.close(1000, "bye") == (1000, "bye")
        assert conn.state is State.CLOSED and conn.sent_close_code == 1000
        with pytest.raises(ConnectionClosed):
            conn.text("too late")
        with pytest.raises(ConnectionClosed):
            conn.receive(timeout=0.1)

    await asyncio.to_thread(run)


async def test_a_server_close_is_answered_and_reported(nbws_server):
    url = nbws_server.url("/nbws/echo?close=4001&reason=bye")

    def run() -> None:
        conn = connect(url)
        conn.text("x")
        assert conn.receive() == "x"
        assert conn.wait_closed() == (4001, "bye")
        closes = [(r.direction, r.preview) for r in conn.records if r.opcode_name == "CLOSE"]
        assert closes == [("in", b"\x0f\xa1bye"), ("out", b"\x0f\xa1bye")]
        assert "server closed with 4001 'bye'" in repr(conn)

    await asyncio.to_thread(run)


async def test_listeners_see_every_frame_and_a_failing_one_does_not_stop_reading(nbws_server):
    url = nbws_server.url()

    def run() -> None:
        seen = []

        def broken(record: object) -> None:
            raise RuntimeError("listener bug")

        with connect(url) as conn:
            conn.on_frame(seen.append)
            conn.on_frame(broken)
            conn.text("1")
            assert conn.receive() == "1"
            conn.off_frame(seen.append)
            conn.text("2")
            assert conn.receive() == "2"
            assert [(r.direction, r.preview) for r in seen] == [("out", b"1"), ("in", b"1")]
            assert len(conn.records) == 4

    await asyncio.to_thread(run)


async def test_to_dataframe(nbws_server):
    pytest.importorskip("pandas")
    url = nbws_server.url()

    def run() -> None:
        with connect(url) as conn:
            conn.text("df")
            conn.receive()
            frame = conn.to_dataframe()
            assert list(frame["direction"]) == ["out", "in"]
            assert list(frame["opcode_name"]) == ["TEXT", "TEXT"]

    await asyncio.to_thread(run)


def test_a_server_that_never_answers_the_handshake_times_out():
    with scripted(silent, answer=False) as server, pytest.raises(TimeoutError):
        connect(server.url(), timeout=0.3)


def test_a_silent_server_never_hangs_a_wait():
    with scripted(silent) as server:
        conn = connect(server.url(), timeout=0.3)
        with pytest.raises(TimeoutError):
            conn.receive()
        with pytest.raises(TimeoutError):
            conn.wait_for("close")
        with pytest.raises(TimeoutError):
            conn.wait_closed()
        assert conn.close(1000) == (1006, "")  # no close frame: dropped after the timeout
        assert conn.state is State.CLOSED


def test_a_wrong_accept_value_is_refused():
    with (
        scripted(silent, accept="d3JvbmcK") as server,
        pytest.raises(HandshakeError, match="Accept"),
    ):
        connect(server.url(), timeout=2)


def test_server_frames_are_recorded_as_seen_and_pings_answered():
    def script(sock: socket.socket) -> None:
        sock.sendall(
            build_frame(0x3, b"odd", rsv=(1, 0, 1), mask_key=b"abcd")
            + build_frame(0x9, b"are you there", mask=False)
        )
        (pong,) = read_frames(sock, 1)
        sock.sendall(build_frame(0x1, pong.payload, mask=False) + build_frame(0x8, b"", mask=False))

    with scripted(script) as server:
        conn = connect(server.url(), timeout=3)
        assert conn.receive() == "are you there"  # the server echoes our pong's payload
        first = conn.received[0]
        assert (first.opcode, first.rsv, first.masked, first.payload) == (
            0x3,
            (True, False, True),
            True,
            b"odd",
        )
        conn.wait_for("close")
        assert conn.close_code == 1005  # an empty close frame
        conn.abort()


def test_write_timeout_when_the_server_stops_reading_and_resume_write():
    size = 8 * 1024 * 1024  # more than the loopback socket buffers hold
    received = bytearray()
    start_reading, complete = threading.Event(), threading.Event()

    def script(sock: socket.socket) -> None:
        start_reading.wait(10)
        while len(received) < size + 14:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            received.extend(chunk)
        complete.set()

    with scripted(script) as server:
        conn = connect(server.url(), timeout=3)
        with pytest.raises(WriteTimeout) as info:
            conn.send_frame(0x2, b"w" * size, timeout=0.3)
        assert 0 < info.value.written < size
        assert len(info.value.remaining) == size + 14 - info.value.written
        start_reading.set()
        assert conn.resume_write(timeout=10) == len(info.value.remaining)
        assert complete.wait(10)
        frames, pending = parse_frames(bytes(received), "out")
        assert pending == 0 and len(frames) == 1 and frames[0].payload == b"w" * size
        conn.abort()


async def test_probe_returns_plain_http_answers(nbws_server):
    url = nbws_server.url()

    def run() -> None:
        response = probe(url, headers={"Sec-WebSocket-Version": "8"})
        assert response.status == 426 and response.header("Sec-WebSocket-Version") == "13"
        assert "426" in str(response)

    await asyncio.to_thread(run)


@pytest.fixture
def self_signed(tmp_path) -> tuple[str, str]:
    """A certificate and key for ``localhost``, made with the openssl command."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl command to make a self-signed certificate")
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    command = [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    command += ["-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"]
    subprocess.run([*command, "-keyout", key, "-out", cert], check=True, capture_output=True)
    return cert, key


async def test_wss_through_tls(self_signed):
    cert, key = self_signed
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    client_tls = ssl.create_default_context(cafile=cert)

    async def echo(ws: ServerConnection) -> None:
        with contextlib.suppress(WsConnectionClosed):
            async for message in ws:
                await ws.send(message)

    async with serve(echo, "localhost", 0, ssl=server_tls) as server:
        port = server.sockets[0].getsockname()[1]

        def run() -> None:
            with connect(f"wss://localhost:{port}/", ssl_context=client_tls) as conn:
                conn.fragments("over tls", 2)
                assert conn.receive() == "over tls"
            with pytest.raises(ssl.SSLError):
                connect(f"wss://localhost:{port}/", timeout=2)  # not in the system trust store

        await asyncio.to_thread(run)


async def test_received_frames_are_bounded_by_capacity(nbws_server):
    url = nbws_server.url()

    def run() -> None:
        with connect(url, capacity=4) as conn:
            for i in range(6):
                conn.ping(str(i))
            conn.text("last")
            assert conn.wait_for("text").payload == b"last"
            assert len(conn.received) == 4 and len(conn.records) == 4
            assert [f.payload for f in conn.received if f.opcode == 0xA] == [b"3", b"4", b"5"]
            assert conn.wait_for("pong").payload == b"3"  # older ones were dropped

    await asyncio.to_thread(run)
