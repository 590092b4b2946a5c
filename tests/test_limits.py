"""Limits and liveness: connection cap, rate limit, size limits, heartbeat, idle timeout,
token and Origin checks, and Ctrl-C on ``nbws serve``.

Where a test must control exactly what reaches the socket (half a frame, no pongs), it
uses ``websockets``' Sans-I/O ``ClientProtocol`` over a bare asyncio stream: the library
frames and parses, the test decides when bytes are written and read.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import websockets
from conftest import RunningServer, start_serve_process, stop_serve_process
from waiting import until
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

KiB = 1024
MiB = 1024 * KiB


class SansIoClient:
    """A client that writes only what it is told to and never answers pings by itself."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, protocol: ClientProtocol
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.protocol = protocol
        self.frames: list[Frame] = []
        self.eof = False

    @classmethod
    async def connect(cls, url: str) -> SansIoClient:
        uri = parse_uri(url)
        reader, writer = await asyncio.open_connection(uri.host, uri.port)
        protocol = ClientProtocol(uri, max_size=None)
        protocol.send_request(protocol.connect())
        client = cls(reader, writer, protocol)
        client.write_pending()
        while True:
            data = await asyncio.wait_for(reader.read(65536), 10)
            assert data, "server closed during the handshake"
            protocol.receive_data(data)
            events = protocol.events_received()
            if events:
                response = events[0]
                assert isinstance(response, Response) and response.status_code == 101
                client.frames += [e for e in events[1:] if isinstance(e, Frame)]
                return client

    def write_pending(self) -> None:
        """Write what the protocol queued (handshake, frames the test asked for)."""
        for chunk in self.protocol.data_to_send():
            if chunk:
                self.writer.write(chunk)

    def discard_pending(self) -> None:
        """Drop what the protocol queued by itself (pongs, the close reply)."""
        self.protocol.data_to_send()

    async def read_until(self, done: Callable[[], bool], timeout: float = 10.0) -> None:
        """Read and parse server frames until ``done()`` or EOF."""
        deadline = time.monotonic() + timeout
        while not done() and not self.eof:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"timed out; frames so far: {self.frames}"
            data = await asyncio.wait_for(self.reader.read(65536), remaining)
            if data:
                self.protocol.receive_data(data)
            else:
                self.eof = True
                self.protocol.receive_eof()
            self.frames += [e for e in self.protocol.events_received() if isinstance(e, Frame)]

    def close_frame(self) -> tuple[int, str] | None:
        rcvd = self.protocol.close_rcvd
        return (int(rcvd.code), rcvd.reason) if rcvd is not None else None

    def close(self) -> None:
        self.writer.close()


def masked(frame: Frame) -> bytes:
    return frame.serialize(mask=True, extensions=[])


async def status_of(url: str, **kwargs: Any) -> int:
    """HTTP status of a refused upgrade (101 when it is accepted)."""
    try:
        async with websockets.connect(url, **kwargs):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


# --- connection limit ----------------------------------------------------------------------


@pytest.mark.parametrize("server_options", [{"max_connections": 2}])
async def test_over_max_connections_is_503_before_upgrade(nbws_server: RunningServer) -> None:
    registry = nbws_server.server.context.registry  # type: ignore[union-attr]
    first = await websockets.connect(nbws_server.url())
    second = await websockets.connect(nbws_server.url())
    with pytest.raises(InvalidStatus) as info:
        await websockets.connect(nbws_server.url())
    response = info.value.response
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert b"limit 2" in response.body
    assert registry.refused == 1
    # The two that were accepted still work.
    await second.send("still here")
    assert await second.recv() == "still here"
    await first.close()
    await until(lambda: len(registry) == 1)
    third = await websockets.connect(nbws_server.url())
    await third.send("room again")
    assert await third.recv() == "room again"
    await second.close()
    await third.close()


# --- rate limit ------------------------------------------------------------------------------


@pytest.mark.parametrize("server_options", [{"rate_limit": 0.5, "rate_limit_burst": 2}])
async def test_rate_limit_closes_1008_and_spares_other_connections(
    nbws_server: RunningServer,
) -> None:
    async with (
        websockets.connect(nbws_server.url()) as calm,
        websockets.connect(nbws_server.url()) as flood,
    ):
        for i in range(10):
            await flood.send(f"m{i}")
        echoes = []
        with pytest.raises(ConnectionClosed) as info:
            while True:
                echoes.append(await flood.recv())
        # At most the burst is echoed (the close may overtake the echoes), then the limit.
        assert echoes == ["m0", "m1"][: len(echoes)]
        assert info.value.rcvd is not None
        assert info.value.rcvd.code == 1008
        assert info.value.rcvd.reason == "rate limit exceeded: more than 0.5 messages/s"
        # The other connection has its own bucket and stays open.
        await calm.send("a")
        await calm.send("b")
        assert [await calm.recv(), await calm.recv()] == ["a", "b"]


# --- size limits -----------------------------------------------------------------------------


@pytest.mark.parametrize("server_options", [{"max_message_size": 1 * MiB}])
async def test_oversize_frame_is_refused_from_its_header(nbws_server: RunningServer) -> None:
    client = await SansIoClient.connect(nbws_server.url())
    frame = masked(Frame(Opcode.BINARY, b"\x00" * (4 * MiB)))
    # Only the header and the first 16 KiB of a 4 MiB frame are ever sent.
    client.writer.write(frame[: 16 * KiB])
    await client.read_until(lambda: client.close_frame() is not None)
    code, reason = client.close_frame() or (0, "")
    assert code == 1009
    assert "1048576" in reason
    await client.read_until(lambda: False)  # then the server drops the TCP connection
    assert client.eof
    client.close()


@pytest.mark.parametrize("server_options", [{"max_message_size": 1 * MiB}])
async def test_message_over_the_limit_across_fragments_is_1009(nbws_server: RunningServer) -> None:
    client = await SansIoClient.connect(nbws_server.url())
    piece = b"\x01" * (256 * KiB)
    client.writer.write(masked(Frame(Opcode.BINARY, piece, fin=False)))
    for _ in range(2):
        client.writer.write(masked(Frame(Opcode.CONT, piece, fin=False)))
    client.writer.write(masked(Frame(Opcode.PING, b"alive?")))
    await client.read_until(lambda: any(f.opcode is Opcode.PONG for f in client.frames))
    assert client.close_frame() is None
    # A fourth fragment makes exactly 1 MiB: allowed. The fifth fragment's header alone
    # takes the message over the limit.
    client.writer.write(masked(Frame(Opcode.CONT, piece, fin=False)))
    client.writer.write(masked(Frame(Opcode.CONT, piece, fin=True))[:1024])
    await client.read_until(lambda: client.close_frame() is not None)
    code, reason = client.close_frame() or (0, "")
    assert code == 1009
    assert "after reading 1048576 bytes" in reason
    client.close()


@pytest.mark.parametrize(
    "server_options", [{"max_message_size": 1 * MiB, "max_frame_size": 64 * KiB}]
)
async def test_frame_over_max_frame_size_is_1009(nbws_server: RunningServer) -> None:
    async with websockets.connect(nbws_server.url(), max_size=None) as ws:
        # Frames under the frame limit make up a message over it: fine.
        pieces = [bytes([i]) * (60 * KiB) for i in range(4)]
        await ws.send(pieces)
        assert await ws.recv() == b"".join(pieces)
        await ws.send(b"\x02" * (64 * KiB + 1))
        with pytest.raises(ConnectionClosed) as info:
            await ws.recv()
    assert info.value.rcvd is not None
    assert info.value.rcvd.code == 1009


# --- liveness ------------------------------------------------------------------------------


@pytest.mark.parametrize("server_options", [{"heartbeat_interval": 0.2, "heartbeat_timeout": 1.0}])
async def test_a_peer_that_never_answers_pings_is_dropped(nbws_server: RunningServer) -> None:
    registry = nbws_server.server.context.registry  # type: ignore[union-attr]
    async with websockets.connect(nbws_server.url()) as healthy:
        mute = await SansIoClient.connect(nbws_server.url())
        await until(lambda: len(registry) == 2)
        # The mute client reads but never writes: its protocol's pongs are thrown away.
        await mute.read_until(lambda: mute.eof, timeout=15)
        pings = [f for f in mute.frames if f.opcode is Opcode.PING]
        assert pings and pings[0].data == b"nbws-heartbeat"
        close = mute.close_frame()
        assert close == (1011, "keepalive ping timeout")
        mute.discard_pending()
        mute.close()
        await until(lambda: len(registry) == 1)
        # The client that answers its pings was kept all along.
        survivor = next(iter(registry))
        assert survivor.latency is not None
        await healthy.send("still alive")
        assert await healthy.recv() == "still alive"


@pytest.mark.parametrize("server_options", [{"idle_timeout": 0.3}])
async def test_idle_connection_is_closed_1001(nbws_server: RunningServer) -> None:
    async with websockets.connect(nbws_server.url()) as ws:
        await ws.send("one message, then silence")
        assert await ws.recv() == "one message, then silence"
        with pytest.raises(ConnectionClosed) as info:
            await ws.recv()
    assert info.value.rcvd is not None
    assert info.value.rcvd.code == 1001
    assert info.value.rcvd.reason == "idle for 0.3s"


# --- token and Origin on nbws serve ----------------------------------------------------------

TOKEN = "s3cret-token"
ALLOWED = "http://allowed.example"


@pytest.fixture(scope="module")
def guarded() -> Iterator[RunningServer]:
    """``nbws serve --token ... --allow-origin ...`` as its own process."""
    server = start_serve_process("--allow-origin", ALLOWED, token=TOKEN)
    try:
        yield server
    finally:
        stop_serve_process(server)


async def test_missing_or_wrong_token_is_403_before_upgrade(guarded: RunningServer) -> None:
    bare = guarded.url(token=False)
    assert await status_of(bare) == 403
    assert await status_of(bare + "?token=wrong") == 403
    assert await status_of(bare, additional_headers={"Authorization": "token wrong"}) == 403
    assert await status_of(bare, additional_headers={"Authorization": f"basic {TOKEN}"}) == 403
    with pytest.raises(InvalidStatus) as info:
        await websockets.connect(bare)
    assert b"missing or wrong token" in info.value.response.body


@pytest.mark.parametrize(
    ("query", "headers"),
    [
        (f"?token={TOKEN}", {}),
        ("", {"Authorization": f"token {TOKEN}"}),
        ("", {"Authorization": f"Bearer {TOKEN}"}),
    ],
    ids=["query", "token-header", "bearer-header"],
)
async def test_token_in_header_or_query_is_accepted(
    guarded: RunningServer, query: str, headers: dict[str, str]
) -> None:
    async with websockets.connect(
        guarded.url(token=False) + query, additional_headers=headers
    ) as ws:
        await ws.send("authorised")
        assert await ws.recv() == "authorised"


async def test_origin_must_be_same_or_allowed(guarded: RunningServer) -> None:
    url = guarded.url()
    assert await status_of(url, origin="http://evil.example") == 403
    assert await status_of(url, origin=f"http://{guarded.host}:{guarded.port + 1}") == 403
    with pytest.raises(InvalidStatus) as info:
        await websockets.connect(url, origin="http://evil.example")
    assert b"origin not allowed" in info.value.response.body
    assert await status_of(url, origin=f"http://{guarded.host}:{guarded.port}") == 101
    assert await status_of(url, origin=ALLOWED) == 101
    assert await status_of(url) == 101  # no Origin: not a browser


# --- Ctrl-C ----------------------------------------------------------------------------------


async def test_sigint_closes_every_connection_with_1001_before_exit() -> None:
    server = start_serve_process()
    process = server.process
    assert process is not None and process.stdout is not None
    try:
        clients = [await websockets.connect(server.url()) for _ in range(3)]
        for i, ws in enumerate(clients):
            await ws.send(f"client {i}")
            assert await ws.recv() == f"client {i}"
        process.send_signal(signal.SIGINT)
        for ws in clients:
            with pytest.raises(ConnectionClosed) as info:
                await asyncio.wait_for(ws.recv(), 10)
            assert info.value.rcvd is not None
            assert (info.value.rcvd.code, info.value.rcvd.reason) == (1001, "server shutting down")
        returncode = await asyncio.to_thread(process.wait, 10)
    finally:
        if process.poll() is None:
            stop_serve_process(server)
    assert returncode == 0
    assert "closing connections (1001 going away)" in process.stdout.read()
