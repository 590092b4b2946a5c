"""nbws.protocol._compat on whatever websockets is installed (tests/test_websockets_versions.py
runs this file on the lowest supported one too)."""

from __future__ import annotations

import asyncio
import os

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import PayloadTooBig
from websockets.extensions.base import Extension
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.typing import ExtensionName
from websockets.version import version

from nbws.protocol import _compat
from nbws.protocol.framing import BINARY, CONT, TEXT, client_frame


def test_the_version_is_the_installed_one() -> None:
    assert tuple(int(p) for p in version.split(".")[:2]) == _compat.WEBSOCKETS_VERSION
    assert _compat.WEBSOCKETS_VERSION >= (15,)


def test_apply_mask_is_the_rfc_xor() -> None:
    data, key = os.urandom(1001), os.urandom(4)
    expected = bytes(b ^ key[i % 4] for i, b in enumerate(data))
    assert _compat.apply_mask(data, key) == expected
    assert _compat.apply_mask(memoryview(data), key) == expected
    assert _compat.apply_mask(bytearray(expected), key) == data


def test_accept_key_is_rfc_6455s_example() -> None:
    # RFC 6455 section 1.3
    assert _compat.accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_server_protocol_has_no_size_limit_of_its_own() -> None:
    protocol = _compat.server_protocol(state=State.OPEN)
    big = os.urandom(3 * 1024 * 1024)  # websockets' default limit is 1 MiB
    protocol.receive_data(client_frame(BINARY, big))
    [frame] = protocol.events_received()
    assert frame.data == big
    assert protocol.state is State.OPEN


class Limiter(Extension):
    """Sets the next frame's limit while each frame is decoded, as Session does."""

    name = ExtensionName("test-limiter")

    def __init__(self, protocol: object, limit: int) -> None:
        self.protocol, self.limit, self.in_flight = protocol, limit, 0

    def decode(self, frame: Frame, *, max_size: int | None = None) -> Frame:
        self.in_flight = 0 if frame.fin else self.in_flight + len(frame.data)
        _compat.set_frame_limit(self.protocol, self.limit, self.in_flight)  # type: ignore[arg-type]
        return frame

    def encode(self, frame: Frame) -> Frame:
        return frame


def test_set_frame_limit_bounds_each_frame_whatever_is_in_flight() -> None:
    protocol = _compat.server_protocol(state=State.OPEN)
    limiter = Limiter(protocol, 10)
    protocol.extensions = [limiter]
    _compat.set_frame_limit(protocol, 10, 0)
    assert not _compat.receiving_fragmented(protocol)
    protocol.receive_data(client_frame(TEXT, b"a" * 10, fin=False))
    assert _compat.receiving_fragmented(protocol)
    protocol.receive_data(client_frame(CONT, b"b" * 10, fin=False))  # 20 in flight: allowed
    protocol.receive_data(client_frame(CONT, b"c" * 10, fin=True))
    assert not _compat.receiving_fragmented(protocol)
    assert [len(f.data) for f in protocol.events_received()] == [10, 10, 10]
    protocol.receive_data(client_frame(BINARY, b"d" * 11)[:4])  # refused from the header
    assert isinstance(protocol.parser_exc, PayloadTooBig)
    assert protocol.close_sent is not None and protocol.close_sent.code == 1009


def test_no_limit_is_no_limit() -> None:
    protocol = _compat.server_protocol(state=State.OPEN)
    _compat.set_frame_limit(protocol, None, 0)
    protocol.receive_data(client_frame(BINARY, b"x" * (2 * 1024 * 1024)))
    assert len(protocol.events_received()) == 1


def test_sending_fragmented_follows_outbound_fragments() -> None:
    protocol = _compat.server_protocol(state=State.OPEN)
    assert not _compat.sending_fragmented(protocol)
    protocol.send_binary(b"a", fin=False)
    assert _compat.sending_fragmented(protocol)
    protocol.send_continuation(b"b", fin=True)
    assert not _compat.sending_fragmented(protocol)


class Recording(_compat.RawClientConnection):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.raw: list[bytes] = []

    def receive_raw(self, data: bytes) -> None:
        self.raw.append(data)
        super().receive_raw(data)


async def echo(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


async def test_raw_client_connection_sees_the_bytes_and_writes_frames() -> None:
    async with serve(echo, "127.0.0.1", 0, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        url = f"ws://127.0.0.1:{port}"
        async with connect(url, create_connection=Recording, compression=None) as ws:
            assert isinstance(ws, Recording)
            await ws.send("through the library")
            assert await asyncio.wait_for(ws.recv(), 60) == "through the library"
            await ws.write_raw(client_frame(TEXT, b"pre-built") + client_frame(BINARY, b"\x00"))
            assert await asyncio.wait_for(ws.recv(), 60) == "pre-built"
            assert await asyncio.wait_for(ws.recv(), 60) == b"\x00"
        received = b"".join(ws.raw)
    assert received.startswith(b"HTTP/1.1 101")
    assert received.count(b"pre-built") == 1  # the echo, unmasked, as read


@pytest.mark.parametrize("opcode", [Opcode.TEXT, Opcode.BINARY])
def test_frames_parse_on_this_version(opcode: Opcode) -> None:
    protocol = _compat.server_protocol(state=State.OPEN)
    protocol.receive_data(client_frame(int(opcode), b"hello"))
    [frame] = protocol.events_received()
    assert (frame.opcode, bytes(frame.data)) == (opcode, b"hello")


def test_the_expected_version_is_imported() -> None:
    """Run by tests/test_websockets_versions.py with the version its venv must import."""
    expected = os.environ.get("NBWS_EXPECT_WEBSOCKETS")
    if expected is None:
        pytest.skip("only checked in a pinned-version run")
    assert version == expected
