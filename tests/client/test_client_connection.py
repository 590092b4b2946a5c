"""The publisher connection's fast lanes (nbws.client.connection), against a scripted
server that writes real frames in arbitrary pieces: whole text messages reach
``on_text`` in order, everything else still goes through the library, unchanged."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.utils import accept_key

from nbws.client.connection import TextConnection


def server_frame(opcode: Opcode, data: bytes, *, fin: bool = True, mask: bool = False) -> bytes:
    return Frame(opcode, data, fin).serialize(mask=mask, extensions=[])


class ScriptedServer:
    """Accepts one WebSocket client; once the client has sent a first message, writes
    ``script`` in random pieces, then records the frames the client sends until it
    closes."""

    def __init__(self, script: bytes, seed: int, greeting: bytes = b"") -> None:
        self.script = script
        self.greeting = greeting  # written together with the handshake response
        self.rng = random.Random(seed)
        self.received: list[Frame] = []
        self.done = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        key = next(
            line.split(b":", 1)[1].strip()
            for line in request.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key:")
        )
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
            + accept_key(key.decode()).encode()
            + b"\r\n\r\n"
            + self.greeting
        )
        protocol = ServerProtocol(state=State.OPEN, max_size=None)  # parses client frames
        if await self._read(reader, protocol, until=Opcode.TEXT):
            position = 0
            while position < len(self.script):
                size = self.rng.choice([1, 2, 3, 7, 64, 1000, 70_000])
                writer.write(self.script[position : position + size])
                position += size
                await writer.drain()
            await self._read(reader, protocol, until=Opcode.CLOSE)
        writer.close()
        self.done.set()

    async def _read(
        self, reader: asyncio.StreamReader, protocol: ServerProtocol, until: Opcode
    ) -> bool:
        """Record client frames until one with opcode ``until`` came; False at EOF."""
        while True:
            data = await reader.read(65536)
            if data:
                protocol.receive_data(data)
            else:
                protocol.receive_eof()
            events = protocol.events_received()
            assert all(isinstance(event, Frame) for event in events)
            self.received += events
            if any(event.opcode is until for event in events):
                return True
            if not data:
                return False


@asynccontextmanager
async def client_of(
    script: bytes,
    on_text: Callable[[bytes], None],
    seed: int = 0,
    greeting: bytes = b"",
    first: bytes | None = None,
) -> AsyncIterator[tuple[TextConnection, ScriptedServer]]:
    """A connected TextConnection with ``on_text`` set; the server's script follows.
    With ``first``, the message the greeting starts with is received before that."""
    scripted = ScriptedServer(script, seed, greeting)
    server = await asyncio.start_server(scripted.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        ws = await connect(
            f"ws://127.0.0.1:{port}/",
            create_connection=TextConnection,
            compression=None,
            ping_interval=None,
            max_size=None,
            close_timeout=5,
        )
        assert isinstance(ws, TextConnection)
        if first is not None:
            assert await ws.recv(decode=False) == first
        ws.on_text = on_text
        await ws.send_texts([b"go"])
        yield ws, scripted
    finally:
        server.close()


async def messages_until_closed(ws: TextConnection) -> list[str | bytes]:
    out: list[str | bytes] = []
    with pytest.raises(ConnectionClosed):
        while True:
            out.append(await ws.recv())
    return out


@pytest.mark.parametrize("seed", range(5))
async def test_whole_texts_take_the_fast_lane_and_everything_else_the_library(
    seed: int,
) -> None:
    texts = [b"", b"a", b"x" * 125, b"y" * 126, "é".encode() * 40_000, b"z" * 65_536]
    fast = [b'{"i":%d}' % i for i in range(300)] + texts
    script = b"".join(server_frame(Opcode.TEXT, t) for t in fast[:100])
    script += server_frame(Opcode.PING, b"are you there")  # the library answers it
    script += server_frame(Opcode.TEXT, b"frag", fin=False)  # a fragmented message...
    script += server_frame(Opcode.PING, b"inside")  # (control frames may interleave)
    script += server_frame(Opcode.CONT, b"mented", fin=True)  # ...is the library's
    script += b"".join(server_frame(Opcode.TEXT, t) for t in fast[100:200])
    script += server_frame(Opcode.BINARY, b"\x00\x01binary")
    script += b"".join(server_frame(Opcode.TEXT, t) for t in fast[200:])
    script += server_frame(Opcode.CLOSE, b"\x03\xe8bye")

    got: list[bytes] = []
    async with client_of(script, got.append, seed) as (ws, scripted):
        library = await messages_until_closed(ws)
        await asyncio.wait_for(scripted.done.wait(), 10)

    assert got == fast
    assert library == ["fragmented", b"\x00\x01binary"]
    assert ws.close_code == 1000 and ws.close_reason == "bye"
    replies = [(f.opcode, f.data) for f in scripted.received]
    assert replies == [
        (Opcode.TEXT, b"go"),
        (Opcode.PONG, b"are you there"),
        (Opcode.PONG, b"inside"),
        (Opcode.CLOSE, b"\x03\xe8bye"),
    ]


async def test_a_masked_server_frame_is_still_a_protocol_error() -> None:
    script = server_frame(Opcode.TEXT, b"fine") + server_frame(Opcode.TEXT, b"no", mask=True)
    got: list[bytes] = []
    async with client_of(script, got.append) as (ws, scripted):
        assert await messages_until_closed(ws) == []
        await asyncio.wait_for(scripted.done.wait(), 10)
    assert got == [b"fine"]
    assert ws.protocol.close_sent is not None and ws.protocol.close_sent.code == 1002


async def test_a_text_inside_a_fragmented_message_is_still_a_protocol_error() -> None:
    script = server_frame(Opcode.BINARY, b"start", fin=False) + server_frame(Opcode.TEXT, b"x")
    got: list[bytes] = []
    async with client_of(script, got.append) as (ws, scripted):
        assert await messages_until_closed(ws) == []
        await asyncio.wait_for(scripted.done.wait(), 10)
    assert got == []
    assert ws.protocol.close_sent is not None and ws.protocol.close_sent.code == 1002


async def test_a_failing_handler_ends_the_connection_and_says_why() -> None:
    script = b"".join(server_frame(Opcode.TEXT, b"%d" % i) for i in range(10))
    got: list[bytes] = []

    def handler(data: bytes) -> None:
        if data == b"3":
            raise ValueError("not a message I know")
        got.append(data)

    async with client_of(script, handler) as (ws, _):
        await messages_until_closed(ws)
    assert got == [b"0", b"1", b"2"]
    assert isinstance(ws.lane_error, ValueError)


async def test_send_texts_writes_whole_masked_frames_in_order() -> None:
    got: list[bytes] = []
    async with client_of(b"", got.append) as (ws, scripted):
        await ws.send_texts([b"one", b"two" * 50_000])
        await ws.send_texts([b"three"])
        await ws.close()
        await asyncio.wait_for(scripted.done.wait(), 10)
    sent = [(f.opcode, f.data) for f in scripted.received]
    assert sent[:4] == [
        (Opcode.TEXT, b"go"),
        (Opcode.TEXT, b"one"),
        (Opcode.TEXT, b"two" * 50_000),
        (Opcode.TEXT, b"three"),
    ]
    with pytest.raises(ConnectionClosed):
        await ws.send_texts([b"after close"])


async def test_the_lane_opens_safely_after_messages_read_through_the_library() -> None:
    """A first message can arrive with the handshake response and the next one be cut
    anywhere: the fast lane, switched on later, still starts at a frame boundary."""
    welcome = server_frame(Opcode.TEXT, b'{"type":"welcome"}')
    texts = [b"x" * 130, b"after"]
    frames = b"".join(server_frame(Opcode.TEXT, t) for t in texts)
    for cut in [*range(4), *range(4, len(server_frame(Opcode.TEXT, texts[0])), 13)]:
        got: list[bytes] = []
        complete = asyncio.Event()

        def received(
            data: bytes, got: list[bytes] = got, complete: asyncio.Event = complete
        ) -> None:
            got.append(data)
            if len(got) == len(texts):
                complete.set()

        async with client_of(
            frames[cut:], received, greeting=welcome + frames[:cut], first=welcome[2:]
        ) as (ws, _):
            await asyncio.wait_for(complete.wait(), 10)
            await ws.close()
        assert got == texts, cut
