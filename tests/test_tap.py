"""The frame tap: header parsing, records, the bounded log, and what a live connection's
tap shows for plain and compressed traffic."""

from __future__ import annotations

from typing import Any

import pytest
import websockets
from conftest import RunningServer
from waiting import until

from nbws.protocol import OPCODE_NAMES, FrameRecord, FrameTap, encode_frame, parse_frame_header
from nbws.transport import Connection


def record(**overrides: Any) -> FrameRecord:
    fields: dict[str, Any] = {
        "time": 1.5,
        "direction": "in",
        "opcode": 0x1,
        "fin": True,
        "rsv": (False, False, False),
        "masked": True,
        "length": 2,
        "preview": b"hi",
    }
    fields.update(overrides)
    return FrameRecord(**fields)


# --- parse_frame_header ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("length", "header"),
    [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10), (1 << 20, 10)],
)
def test_parse_frame_header_reads_every_length_form(length: int, header: int) -> None:
    frame = encode_frame(b"\x00" * length, text=False)
    assert parse_frame_header(frame) == (0x2, True, (False, False, False), False, length, header)
    assert parse_frame_header(frame[:header]) == parse_frame_header(frame)


def test_parse_frame_header_reads_flags_and_mask() -> None:
    # FIN=0, RSV1 and RSV3 set, opcode CONT; masked, 5 bytes; then the 4-byte key.
    data = bytes([0b0101_0000, 0x80 | 5]) + b"KEY!" + b"xxxxx"
    assert parse_frame_header(data) == (0x0, False, (True, False, True), True, 5, 6)


@pytest.mark.parametrize(
    "data", [b"", b"\x81", b"\x82\x7e\x01", b"\x82\x7f" + b"\x00" * 7, b"\x81\x85ab"]
)
def test_parse_frame_header_refuses_incomplete_headers(data: bytes) -> None:
    with pytest.raises(ValueError, match="incomplete"):
        parse_frame_header(data)


# --- records and the log ---------------------------------------------------------------------


def test_record_as_dict_shows_text_or_hex() -> None:
    as_text = record().as_dict()
    assert as_text == {
        "time": 1.5,
        "direction": "in",
        "opcode": 1,
        "opcode_name": "TEXT",
        "fin": True,
        "rsv": [False, False, False],
        "masked": True,
        "length": 2,
        "preview": "hi",
        "preview_kind": "text",
    }
    as_hex = record(opcode=0xB, preview=b"\xff\x00").as_dict()
    assert (as_hex["opcode_name"], as_hex["preview"], as_hex["preview_kind"]) == (
        "0xB",
        "ff 00",
        "hex",
    )
    assert {OPCODE_NAMES[op] for op in (0x0, 0x1, 0x2, 0x8, 0x9, 0xA)} == {
        "CONT",
        "TEXT",
        "BINARY",
        "CLOSE",
        "PING",
        "PONG",
    }


def test_tap_is_bounded_and_counts_what_it_drops() -> None:
    tap = FrameTap(2)
    for i in range(5):
        tap.record(record(length=i))
    assert [r.length for r in tap] == [3, 4]
    assert tap.dropped == 3


def test_each_watch_is_undone_by_one_unwatch() -> None:
    tap = FrameTap(10)
    first: list[FrameRecord] = []
    second: list[FrameRecord] = []
    assert not tap.active
    tap.watch(first.append)
    tap.watch(second.append)
    tap.watch()
    tap.record(record())
    assert len(first) == len(second) == 1
    tap.unwatch(first.append)
    tap.record(record())
    assert (len(first), len(second)) == (1, 2)
    tap.unwatch(second.append)
    assert tap.active  # the anonymous watch() is still there
    tap.unwatch()
    assert not tap.active
    tap.unwatch()  # one too many is harmless
    assert not tap.active


# --- a live connection -----------------------------------------------------------------------


async def server_side(server: RunningServer) -> Connection:
    registry = server.server.context.registry  # type: ignore[union-attr]
    await until(lambda: len(registry) == 1)
    return next(iter(registry))


async def test_live_tap_sees_client_frames_masked_and_server_frames_plain(
    nbws_server: RunningServer,
) -> None:
    async with websockets.connect(nbws_server.url("/nbws/echo?fragment=3"), compression=None) as ws:
        conn = await server_side(nbws_server)
        await ws.send("unseen")
        assert await ws.recv() == "unseen"
        assert len(conn.tap) == 0  # nobody watched yet
        seen: list[FrameRecord] = []
        conn.tap.watch(seen.append)
        await ws.send(b"abcdefg")
        assert [f async for f in ws.recv_streaming()] == [b"abc", b"def", b"g"]
        await ws.ping(b"hb")
        await until(lambda: len(seen) >= 6)
        conn.tap.unwatch(seen.append)
    rows = [(r.direction, r.opcode_name, r.fin, r.masked, r.length, r.preview) for r in seen]
    assert rows[:6] == [
        ("in", "BINARY", True, True, 7, b"abcdefg"),
        ("out", "BINARY", False, False, 3, b"abc"),
        ("out", "CONT", False, False, 3, b"def"),
        ("out", "CONT", True, False, 1, b"g"),
        ("in", "PING", True, True, 2, b"hb"),
        ("out", "PONG", True, False, 2, b"hb"),
    ]


@pytest.mark.parametrize("server_options", [{"compression": {"echo": {}}}])
async def test_live_tap_shows_rsv1_and_wire_size_of_compressed_frames(
    nbws_server: RunningServer,
) -> None:
    text = "squeeze " * 5000
    async with websockets.connect(nbws_server.url()) as ws:
        conn = await server_side(nbws_server)
        assert conn.session.compressed
        conn.tap.watch()
        await ws.send(text)
        assert await ws.recv() == text
        await ws.send(["part one ", "part two"])
        assert await ws.recv() == "part one part two"
        await until(lambda: len(conn.tap) >= 4)
    first_in, first_out = list(conn.tap)[:2]
    assert (first_in.direction, first_in.opcode_name, first_in.rsv) == (
        "in",
        "TEXT",
        (True, False, False),
    )
    assert first_in.length < len(text) // 10  # compressed on the wire
    assert first_in.preview == text.encode()[:64]  # shown decompressed
    assert (first_out.direction, first_out.opcode_name, first_out.rsv) == (
        "out",
        "TEXT",
        (True, False, False),
    )
    assert first_out.length < len(text) // 10
    data = ("TEXT", "BINARY", "CONT")
    fragments = [r for r in conn.tap if r.direction == "in" and r.opcode_name in data][1:]
    # Only the first frame of a compressed message carries RSV1.
    assert (fragments[0].opcode_name, fragments[0].rsv[0], fragments[0].fin) == (
        "TEXT",
        True,
        False,
    )
    assert [(r.opcode_name, r.rsv[0]) for r in fragments[1:]] == [("CONT", False)] * (
        len(fragments) - 1
    )
    assert [r.fin for r in fragments] == [False] * (len(fragments) - 1) + [True]
