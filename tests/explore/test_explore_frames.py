"""The frame builder and parser, byte for byte (RFC 6455 section 5.7 examples), and against
the websockets library's own parser as an independent reader."""

from __future__ import annotations

import struct

import pytest
from websockets.exceptions import ProtocolError
from websockets.frames import Frame
from websockets.streams import StreamReader

from nbws.explore.frames import (
    FrameParser,
    FrameTooLarge,
    build_frame,
    close_payload,
    opcode_from,
    parse_close_payload,
    parse_frames,
    split_payload,
)

KEY = bytes.fromhex("37fa213d")


def ws_parse(data: bytes, *, mask: bool = True) -> Frame:
    """Parse one frame with websockets' parser (as a server would when ``mask``)."""
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    parser = Frame.parse(reader.read_exact, mask=mask)
    try:
        next(parser)
    except StopIteration as done:
        return done.value
    raise AssertionError("incomplete frame")


def test_rfc_examples_unmasked_and_masked_hello():
    assert build_frame("text", "Hello", mask=False) == bytes.fromhex("810548656c6c6f")
    assert build_frame(0x1, b"Hello", mask_key=KEY) == bytes.fromhex("818537fa213d7f9f4d5158")


def test_rfc_examples_fragmented_hello_and_ping():
    assert build_frame(0x1, "Hel", fin=False, mask=False) == bytes.fromhex("010348656c")
    assert build_frame(0x0, "lo", mask=False) == bytes.fromhex("80026c6f")
    assert build_frame("ping", "Hello", mask=False) == bytes.fromhex("890548656c6c6f")


def test_length_forms_follow_the_shortest_encoding():
    assert build_frame(0x2, b"\0" * 125, mask=False)[:2] == b"\x82\x7d"
    assert build_frame(0x2, b"\0" * 256, mask=False)[:4] == bytes.fromhex("827e0100")
    assert build_frame(0x2, b"\0" * 65536, mask=False)[:10] == bytes.fromhex("827f0000000000010000")


def test_length_form_and_declared_length_can_be_forced():
    wire = build_frame(0x1, "hello", mask=False, length_form=64)
    assert wire == b"\x81\x7f" + struct.pack("!Q", 5) + b"hello"
    wire = build_frame(0x1, "hello", mask=False, length_form=16)
    assert wire == b"\x81\x7e\x00\x05hello"
    lying = build_frame(0x1, "hello", mask=False, length=9)
    assert lying == b"\x81\x09hello"
    with pytest.raises(ValueError):
        build_frame(0x1, "x" * 200, length_form=7)
    with pytest.raises(ValueError):
        build_frame(0x1, "x", length=1 << 64)


def test_header_bits_are_written_as_asked():
    wire = build_frame(0xB, b"", fin=False, rsv=(1, 0, 1), mask=False)
    assert wire == bytes([0b0101_1011, 0x00])
    with pytest.raises(ValueError):
        build_frame(16, b"")
    with pytest.raises(ValueError):
        build_frame(0x1, b"", rsv=(1, 0))
    with pytest.raises(ValueError):
        build_frame(0x1, b"", mask_key=b"abc")


def test_valid_frames_parse_identically_in_websockets():
    for opcode, payload, fin in [
        (0x1, "héllo".encode(), True),
        (0x2, bytes(range(256)) * 300, False),
        (0x9, b"p" * 125, True),
        (0x0, b"", True),
    ]:
        frame = ws_parse(build_frame(opcode, payload, fin=fin))
        assert (int(frame.opcode), bytes(frame.data), frame.fin) == (opcode, payload, fin)


def test_websockets_rejects_what_the_builder_makes_invalid():
    with pytest.raises(ProtocolError, match="masking"):
        ws_parse(build_frame(0x1, "x", mask=False))
    with pytest.raises(ProtocolError, match="opcode"):
        ws_parse(build_frame(0x3, "x"))
    with pytest.raises(ProtocolError, match="reserved bits"):
        ws_parse(build_frame(0x1, "x", rsv=(0, 1, 0)))


def test_parser_reads_any_header_and_unmasks():
    stream = (
        build_frame(0x1, "Hel", fin=False, mask=False)
        + build_frame(0x9, b"p", mask_key=KEY)  # a server must not mask; shown as seen
        + build_frame(0x3, b"\x00\xff", rsv=(1, 1, 1), mask=False)
        + build_frame(0x2, b"z" * 70000, mask=False)
    )
    frames, pending = parse_frames(stream)
    assert pending == 0
    assert [(f.opcode, f.fin, f.rsv, f.masked, f.length) for f in frames] == [
        (0x1, False, (False, False, False), False, 3),
        (0x9, True, (False, False, False), True, 1),
        (0x3, True, (True, True, True), False, 2),
        (0x2, True, (False, False, False), False, 70000),
    ]
    assert frames[1].payload == b"p"
    assert frames[3].record.preview == b"z" * 64
    assert frames[2].record.opcode_name == "0x3"


def test_parser_is_incremental_byte_by_byte():
    stream = build_frame(0x1, "abc", mask=False) + build_frame(
        0x8, close_payload(1000, "bye"), mask=False
    )
    parser = FrameParser()
    frames = []
    for i in range(len(stream)):
        frames += parser.receive_data(stream[i : i + 1], now=float(i))
    assert [f.payload for f in frames] == [b"abc", b"\x03\xe8bye"]
    assert frames[0].record.time == 4.0  # stamped when its last byte arrived
    assert frames[1].close == (1000, b"bye")
    assert parser.pending == 0
    assert parser.receive_data(stream[:3]) == [] and parser.pending == 3


def test_parser_refuses_to_buffer_a_huge_declared_frame_but_keeps_earlier_ones():
    parser = FrameParser(max_payload=1000)
    ok = build_frame(0x1, "ok", mask=False)
    huge = build_frame(0x2, b"", mask=False, length=5000)
    frames = parser.receive_data(ok + huge)
    assert [f.payload for f in frames] == [b"ok"]
    with pytest.raises(FrameTooLarge):
        parser.receive_data(b"")


def test_close_payload_helpers():
    assert close_payload(1000, "bye") == b"\x03\xe8bye"
    assert close_payload(None) == b""
    assert close_payload(1005) == b"\x03\xed"
    assert parse_close_payload(b"") == (None, b"")
    assert parse_close_payload(b"\x03") == (None, b"\x03")
    assert parse_close_payload(b"\x0f\xa1x") == (4001, b"x")


def test_opcode_names_and_split():
    assert [opcode_from(n) for n in ("cont", "TEXT", "binary", "close", "Ping", "pong")] == [
        0,
        1,
        2,
        8,
        9,
        10,
    ]
    with pytest.raises(ValueError):
        opcode_from("nope")
    assert split_payload(b"abcdefg", 3) == [b"abc", b"de", b"fg"]
    assert split_payload(b"a", 3) == [b"a", b"", b""]
