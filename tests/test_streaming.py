"""Streaming both ways: fragments consumed as they arrive, fragments sent from iterators
under flow control, and a 1 GiB message through a real ``nbws serve`` at flat memory.

Most tests drive :class:`nbws.transport.Connection` directly through a tiny tornado app
("probe") whose handler only runs :func:`nbws.transport.accept_websocket` and hands the
connection to the test, so the test plays the server application.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psutil
import pytest
import websockets
from conftest import start_serve_process, stop_serve_process
from raw_peer import RawPeer, masked
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application, RequestHandler
from traitlets.config import Config
from waiting import until
from websockets.exceptions import ConnectionClosed as WsConnectionClosed
from websockets.frames import Opcode

from nbws.config import Nbws
from nbws.errors import ConnectionClosed, InvalidState
from nbws.protocol import State, encode_frame
from nbws.transport import Connection, ConnectionRegistry, accept_websocket
from nbws.transport.connection import FRAGMENT_COST, READ_CHUNK

KiB = 1024
MiB = 1024 * KiB


# --- a server whose application is the test ---------------------------------------------------


class ProbeHandler(RequestHandler):
    """Upgrade and hand the connection over; the test decides what the server does."""

    def initialize(self, probe: Probe) -> None:
        self.probe = probe

    def get(self) -> None:
        conn = accept_websocket(
            self, endpoint="probe", config=self.probe.config, registry=self.probe.registry
        )
        if conn is not None:
            self.probe.accepted.put_nowait(conn)


@dataclass
class Probe:
    config: Nbws
    registry: ConnectionRegistry
    port: int = 0
    accepted: asyncio.Queue[Connection] = field(default_factory=asyncio.Queue)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/probe"

    async def connection(self) -> Connection:
        """The server side of the next accepted connection."""
        return await asyncio.wait_for(self.accepted.get(), 10)


@pytest.fixture
def probe_options() -> dict[str, Any]:
    return {}


@pytest.fixture
async def probe(probe_options: dict[str, Any]) -> AsyncIterator[Probe]:
    cfg = Config()
    for key, value in {"heartbeat_interval": 0.0, **probe_options}.items():
        cfg.Nbws[key] = value
    config = Nbws(config=cfg)
    registry = ConnectionRegistry(heartbeat_interval=config.heartbeat_interval)
    state = Probe(config, registry)
    server = HTTPServer(Application([("/probe", ProbeHandler, {"probe": state})]))
    sockets = bind_sockets(0, "127.0.0.1")
    server.add_sockets(sockets)
    state.port = sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        server.stop()
        await registry.close_all(timeout=2)


# --- receiving -----------------------------------------------------------------------------------


async def test_receive_message_yields_each_fragment_as_it_arrives(probe: Probe) -> None:
    first_seen = asyncio.Event()

    async def fragments() -> AsyncIterator[bytes]:
        yield b"one-"
        # The rest is only sent once the server application has the first fragment in hand.
        await first_seen.wait()
        yield b"two-"
        yield b"three"

    async with websockets.connect(probe.url) as ws:
        conn = await probe.connection()
        sending = asyncio.ensure_future(ws.send(fragments()))
        message = await conn.receive_message()
        assert message.text is False
        chunks = []

        async def consume() -> None:
            async for chunk in message:
                chunks.append(chunk)
                first_seen.set()

        # A receiver that waited for the whole message would wait forever here.
        await asyncio.wait_for(consume(), 10)
        await sending
        # websockets ends a streamed message with an empty final frame.
        assert chunks == [b"one-", b"two-", b"three", b""]
        assert message.size == len(b"one-two-three")

        await ws.send(["un ", "deux ", "trois é"])
        message = await conn.receive_message()
        assert message.text is True
        assert b"".join([c async for c in message]).decode() == "un deux trois é"


async def test_receive_reassembles_whole_messages_and_iteration_ends_at_close(probe: Probe) -> None:
    async with websockets.connect(probe.url) as ws:
        conn = await probe.connection()
        await ws.send("texte é")
        await ws.send(b"\x00\x01")
        await ws.send([b"frag", b"mented"])
        await ws.send("")
        assert await conn.receive() == "texte é"
        assert await conn.receive() == b"\x00\x01"
        assert await conn.receive() == b"fragmented"
        assert await conn.receive() == ""
        await ws.send("last")
        await ws.close(4000, "bye")
        received = [message async for message in conn]
    assert received == ["last"]
    with pytest.raises(ConnectionClosed) as info:
        await conn.receive()
    assert (info.value.code, info.value.reason) == (4000, "bye")


@pytest.mark.parametrize(
    "probe_options",
    [{"read_high_water": 64 * KiB, "write_high_water": 64 * MiB, "write_low_water": MiB}],
)
async def test_a_burst_already_in_the_socket_is_handled_in_bounded_slices(probe: Probe) -> None:
    """However much a peer has already sent, its reader hands the loop back after each read
    (READ_CHUNK bytes), so other connections and callbacks get their turn."""
    peer = await RawPeer.open("127.0.0.1", probe.port, "/probe")
    conn = await probe.connection()
    # One message over read_high_water that the application leaves unread: reading pauses...
    await asyncio.to_thread(peer.sock.sendall, masked(Opcode.BINARY, b"m" * 128 * KiB))
    await until(lambda: conn._resume_reading is not None)
    # ...while a ping flood fills the socket buffers behind it.
    flood = peer.start_flood(masked(Opcode.PING, b"p" * 125), limit=6 * MiB)
    await until(peer.blocked.is_set)
    samples: list[int] = []
    loop = asyncio.get_running_loop()
    done = False

    def tick() -> None:  # runs once per loop turn: how far the reader got in between
        samples.append(conn.bytes_in)
        if not done:
            loop.call_soon(tick)

    tick()
    assert await conn.receive() == b"m" * 128 * KiB  # resumes reading: the burst is there
    await until(lambda: not flood.is_alive() and conn.bytes_in >= peer.sent, timeout=60)
    done = True
    steps = [b - a for a, b in itertools.pairwise(samples)]
    assert sum(steps) >= 4 * MiB  # the burst went through while the ticker ran
    assert max(steps) <= 2 * READ_CHUNK, max(steps)
    peer.close()


@pytest.mark.parametrize(
    "probe_options",
    [{"read_high_water": MiB, "write_high_water": 64 * MiB, "write_low_water": MiB}],
)
async def test_one_read_of_many_small_messages_is_parsed_over_several_loop_turns(
    probe: Probe,
) -> None:
    """A full read of small messages (hundreds of frames) is not parsed in one go: the
    reader hands the loop back whenever its parsing budget for the turn is spent, so one
    peer's burst does not stall every other connection for the whole read."""
    peer = await RawPeer.open("127.0.0.1", probe.port, "/probe")
    conn = await probe.connection()
    # One message over read_high_water that the application leaves unread: reading pauses...
    await asyncio.to_thread(peer.sock.sendall, masked(Opcode.BINARY, b"m" * (3 * MiB // 2)))
    await until(lambda: conn._resume_reading is not None)
    # ...while many small messages (the size of a typical publish) queue in the socket.
    small = masked(Opcode.BINARY, b"s" * 130)
    count = 4000
    flood = peer.start_flood(small, limit=count * len(small))
    await until(lambda: peer.blocked.is_set() or not flood.is_alive())
    per_read = READ_CHUNK // len(small)  # frames one full read holds
    samples: list[int] = []
    loop = asyncio.get_running_loop()
    done = False

    def tick() -> None:  # runs once per loop turn: messages the reader parsed in between
        samples.append(conn.messages_in)
        if not done:
            loop.call_soon(tick)

    tick()
    assert len(await conn.receive()) == 3 * MiB // 2  # reading resumes on the burst
    for _ in range(count):
        assert await asyncio.wait_for(conn.receive(), 30) == b"s" * 130
    done = True
    steps = [b - a for a, b in itertools.pairwise(samples)]
    assert sum(steps) >= count
    assert max(steps) <= per_read // 2, (max(steps), per_read)
    peer.close()
    flood.join(10)


@pytest.mark.parametrize("probe_options", [{"read_high_water": 64 * KiB}])
async def test_queued_tiny_messages_count_what_they_hold_not_just_their_payload(
    probe: Probe,
) -> None:
    """A flood of 1-byte messages the application has not read yet is bounded by memory:
    each queued fragment counts its own cost against read_high_water."""
    peer = await RawPeer.open("127.0.0.1", probe.port, "/probe")
    conn = await probe.connection()
    flood = peer.start_flood(masked(Opcode.BINARY, b"."), limit=2 * MiB)
    await until(
        lambda: (
            conn._resume_reading is not None and (peer.blocked.is_set() or not flood.is_alive())
        ),
        timeout=60,
    )
    inbox = conn._inbox
    assert inbox is not None
    per_read = READ_CHUNK // 7  # 1-byte masked frames are 7 bytes: what one read can add
    assert len(inbox) <= 64 * KiB // FRAGMENT_COST + per_read, len(inbox)
    peer.close()
    flood.join(10)


@pytest.mark.parametrize("probe_options", [{"read_high_water": 256 * KiB}])
async def test_a_slow_application_pauses_reading_from_the_socket(probe: Probe) -> None:
    """Unread inbound data is bounded: the server stops reading and TCP pushes back."""
    count, size = 256, 64 * KiB  # 16 MiB, far more than the socket buffers below hold
    sock = sized_socket(sndbuf=64 * KiB)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", probe.port))
    async with websockets.connect(probe.url, sock=sock, write_limit=64 * KiB) as ws:
        conn = await probe.connection()
        assert conn.stream.socket is not None
        conn.stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * KiB)
        queued: list[int] = []
        original = conn._dispatch

        def dispatch(events: list[Any], now: float) -> None:
            original(events, now)
            queued.append(conn._inbox_bytes)

        conn._dispatch = dispatch  # type: ignore[method-assign]

        async def send_all() -> None:
            for i in range(count):
                await ws.send(bytes([i]) * size)

        sender = asyncio.ensure_future(send_all())
        await until(lambda: conn._resume_reading is not None)
        read_when_paused = conn.bytes_in
        # Give a server that ignored backpressure every chance to read on.
        await asyncio.sleep(0.2)
        assert conn.bytes_in == read_when_paused
        assert not sender.done()
        for i in range(count):
            assert await conn.receive() == bytes([i]) * size
        await sender
    # Never more than the high-water mark plus what one read can complete.
    assert max(queued) <= 256 * KiB + 2 * size


# --- sending -------------------------------------------------------------------------------------


@dataclass
class WriteProbe:
    """Records how many bytes sat in the server transport after every write to the socket
    stream: the connection's own count, and tornado's write buffer."""

    conn: Connection
    pending: list[int] = field(default_factory=list)
    tornado_buffer: list[int] = field(default_factory=list)

    def install(self) -> None:
        stream = self.conn.stream
        original = stream.write

        def write(data: bytes | memoryview) -> asyncio.Future[None]:
            future = original(data)
            self.pending.append(self.conn.pending_write)
            self.tornado_buffer.append(len(stream._write_buffer))
            return future

        stream.write = write  # type: ignore[method-assign]


def sized_socket(*, sndbuf: int = 0, rcvbuf: int = 0) -> socket.socket:
    """A non-blocking client socket with small kernel buffers, so backpressure shows fast."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if sndbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    return sock


@pytest.mark.parametrize(
    "probe_options", [{"write_high_water": 256 * KiB, "write_low_water": 64 * KiB}]
)
async def test_send_fragments_waits_for_drain_when_the_peer_stops_reading(probe: Probe) -> None:
    fragment, count = 64 * KiB, 64
    high = 256 * KiB
    produced = 0
    sent_hash = hashlib.sha256()

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal produced
        for i in range(count):
            chunk = i.to_bytes(4, "big") * (fragment // 4)
            sent_hash.update(chunk)
            produced += 1
            yield chunk

    sock = sized_socket(rcvbuf=32 * KiB)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", probe.port))
    # The client buffers at most a few frames and then stops reading from its socket.
    async with websockets.connect(probe.url, sock=sock, max_size=None, max_queue=(2, 1)) as ws:
        conn = await probe.connection()
        assert conn.stream.socket is not None
        conn.stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32 * KiB)
        writes = WriteProbe(conn)
        writes.install()
        sending = asyncio.ensure_future(conn.send_fragments(chunks()))
        await until(lambda: not conn.drained)
        # Give a sender that ignored flow control every chance to run ahead.
        await asyncio.sleep(0.2)
        stalled_at = produced
        assert stalled_at < count // 2, f"sender produced {stalled_at} fragments unread"
        assert not sending.done()

        received_hash = hashlib.sha256()
        total = 0
        async for piece in ws.recv_streaming():
            received_hash.update(piece)
            total += len(piece)
        assert await sending == fragment * count
    assert total == fragment * count
    assert received_hash.hexdigest() == sent_hash.hexdigest()
    bound = high + fragment + 14
    assert max(writes.pending) <= bound
    assert max(writes.tornado_buffer) <= bound
    assert max(writes.pending) > high  # the limit was actually reached


async def test_send_fragments_takes_plain_iterables_of_text_split_anywhere(probe: Probe) -> None:
    async with websockets.connect(probe.url) as ws:
        conn = await probe.connection()
        raw = "flux 😀 de données".encode()
        pieces = [raw[i : i + 3] for i in range(0, len(raw), 3)]  # splits characters
        assert await conn.send_fragments(pieces, text=True) == len(raw)
        assert await ws.recv() == raw.decode()
        assert await conn.send_fragments(iter(["a", "é"]), text=True) == 3
        assert await ws.recv() == "aé"
        assert await conn.send_fragments([b"only"]) == 4
        assert await ws.recv() == b"only"
        assert await conn.send_fragments([]) == 0
        assert await ws.recv() == b""


# --- closed connections refuse to send ----------------------------------------------------------


async def test_sends_on_a_closing_or_closed_connection_are_refused_and_never_written(
    probe: Probe,
) -> None:
    async with websockets.connect(probe.url) as ws:
        conn = await probe.connection()
        await until(lambda: conn.pending_write == 0)
        written = conn.bytes_out
        conn.start_close(1000, "done")
        assert conn.state is State.CLOSING
        attempts: list[Callable[[], Awaitable[object] | object]] = [
            lambda: conn.send_nowait("late"),
            lambda: conn.send(b"late"),
            lambda: conn.send_fragments([b"late", b"r"]),
            lambda: conn.ping(b"late"),
        ]
        for attempt in attempts:
            with pytest.raises(InvalidState, match="closing"):
                result = attempt()
                if asyncio.iscoroutine(result):
                    await result
        assert conn.send_encoded(encode_frame(b"late", text=False)) is False
        # The peer sees the close and nothing after it.
        with pytest.raises(WsConnectionClosed) as info:
            await ws.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == 1000
    await asyncio.wait_for(conn.closed, 10)
    assert conn.state is State.CLOSED
    with pytest.raises(InvalidState, match="closed"):
        conn.send_nowait("later")
    assert conn.send_encoded(encode_frame(b"later", text=True)) is False
    # Only the close frame was written: 2 header bytes, 2 code bytes, "done".
    assert conn.bytes_out == written + 8


async def test_closing_in_the_middle_of_send_fragments_stops_it(probe: Probe) -> None:
    async with websockets.connect(probe.url) as ws:
        conn = await probe.connection()

        async def chunks() -> AsyncIterator[bytes]:
            yield b"first"
            yield b"second"
            conn.start_close(1001, "going away")
            yield b"third"
            yield b"never"

        await until(lambda: conn.pending_write == 0)
        written = conn.bytes_out
        with pytest.raises(InvalidState, match="closing"):
            await conn.send_fragments(chunks())
        with pytest.raises(WsConnectionClosed) as info:
            await ws.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == 1001
    await asyncio.wait_for(conn.closed, 10)
    # Only "first" (2 + 5 bytes) and the close (2 + 2 + 10) went out: "second" was held
    # back until the next chunk showed it was not the last, and by then the close was sent.
    assert conn.bytes_out == written + 7 + 14


# --- 1 GiB through nbws serve ---------------------------------------------------------------------


class RssSampler:
    """Samples a process's resident set size every ``period`` seconds in a thread."""

    def __init__(self, pid: int, period: float = 0.05) -> None:
        self.process = psutil.Process(pid)
        self.period = period
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self.process.memory_info().rss)
            self._stop.wait(self.period)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture
def big_serve() -> Iterator[Any]:
    server = start_serve_process("--set", f"max_message_size={2 * 1024 * MiB}")
    try:
        yield server
    finally:
        stop_serve_process(server)


@pytest.mark.slow
async def test_one_gib_message_streams_through_nbws_serve_with_flat_memory(big_serve: Any) -> None:
    fragment, count = 64 * KiB, 16 * KiB  # 16384 x 64 KiB = 1 GiB
    base = os.urandom(fragment)
    sent_hash, received_hash = hashlib.sha256(), hashlib.sha256()
    sent = received = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        for i in range(count):
            chunk = i.to_bytes(8, "big") + base[8:]
            sent_hash.update(chunk)
            sent += len(chunk)
            yield chunk

    async with websockets.connect(
        big_serve.url("/nbws/echo?stream=1"), max_size=None, compression=None
    ) as ws:
        await ws.send(b"warm up")
        assert await ws.recv() == b"warm up"
        pid = big_serve.process.pid
        baseline = psutil.Process(pid).memory_info().rss
        with RssSampler(pid) as rss:
            started = time.perf_counter()
            sending = asyncio.ensure_future(ws.send(chunks()))
            fragments = 0
            async for piece in ws.recv_streaming():
                received_hash.update(piece)
                received += len(piece)
                fragments += 1
            await sending
            elapsed = time.perf_counter() - started
    assert sent == received == 1024 * MiB
    assert received_hash.hexdigest() == sent_hash.hexdigest()
    # Echoed fragment by fragment (websockets ends a streamed message with an empty frame).
    assert fragments == count + 1
    growth = max(rss.samples) - baseline
    print(
        f"\n1 GiB echoed in {elapsed:.2f}s ({received / MiB / elapsed:.0f} MiB/s each way); "
        f"server RSS {baseline / MiB:.1f} MiB -> peak {max(rss.samples) / MiB:.1f} MiB "
        f"(+{growth / MiB:.1f} MiB, {len(rss.samples)} samples)"
    )
    assert len(rss.samples) > 10
    assert growth < 64 * MiB
