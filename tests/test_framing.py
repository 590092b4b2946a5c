"""nbws.protocol.framing against websockets' own parser and serialiser, and the readers
that walk frames by header alone against a stream cut into arbitrary pieces."""

from __future__ import annotations

import random
import struct

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from nbws.bench.wsclient import FrameCounter, FrameParser
from nbws.protocol import framing
from nbws.protocol.framing import (
    MASKED,
    PartialHeader,
    client_frame,
    client_text_frames,
    close_payload,
    count_frames,
    encode_frame,
    encode_message,
    frame_header,
    parse_close_payload,
    parse_frame_header,
    read_partial_header,
    split_frames,
)

SIZES = [0, 1, 125, 126, 127, 65535, 65536, 70_000]


def payload_of(size: int) -> bytes:
    return bytes(range(256)) * (size // 256) + b"x" * (size % 256)


def parse_client(data: bytes) -> list[Frame]:
    """Frames as a server reads them (websockets' parser, masks required)."""
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    frames = []
    while reader.buffer:
        parser = Frame.parse(reader.read_exact, mask=True)
        try:
            while True:
                next(parser)
        except StopIteration as done:
            frames.append(done.value)
    return frames


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("opcode", [Opcode.TEXT, Opcode.BINARY, Opcode.CONT])
@pytest.mark.parametrize("fin", [True, False])
def test_server_frames_equal_websockets_serialiser(size: int, opcode: Opcode, fin: bool) -> None:
    payload = payload_of(size)
    expected = Frame(opcode, payload, fin).serialize(mask=False, extensions=[])
    text, continuation = opcode is Opcode.TEXT, opcode is Opcode.CONT
    assert encode_frame(payload, text=text, fin=fin, continuation=continuation) == expected
    view = memoryview(payload)
    assert encode_frame(view, text=text, fin=fin, continuation=continuation) == expected


def test_a_long_message_is_a_contiguous_run_of_fragments() -> None:
    payload = payload_of(10)
    run = encode_message(payload, text=True, fragment_size=4)
    expected = b"".join(
        Frame(op, payload[start : start + 4], fin).serialize(mask=False, extensions=[])
        for op, start, fin in [
            (Opcode.TEXT, 0, False),
            (Opcode.CONT, 4, False),
            (Opcode.CONT, 8, True),
        ]
    )
    assert run == expected
    assert encode_message(payload, text=False, fragment_size=10) == encode_frame(
        payload, text=False
    )


@pytest.mark.parametrize("size", SIZES)
def test_client_frames_parse_as_masked_frames(size: int) -> None:
    payload = payload_of(size)
    frames = parse_client(
        client_frame(framing.BINARY, payload, fin=False) + client_frame(framing.PING, b"p")
    )
    assert [(f.opcode, f.fin, f.data) for f in frames] == [
        (Opcode.BINARY, False, payload),
        (Opcode.PING, True, b"p"),
    ]
    fixed = client_frame(framing.TEXT, b"abc", mask_key=b"\x01\x02\x03\x04")
    assert fixed == Frame(Opcode.TEXT, b"abc").serialize(mask=True, extensions=[])[:2] + (
        b"\x01\x02\x03\x04" + bytes(a ^ b for a, b in zip(b"abc", b"\x01\x02\x03", strict=True))
    )


def test_client_frame_refuses_what_rfc_6455_forbids() -> None:
    with pytest.raises(ValueError, match="125 bytes"):
        client_frame(framing.PING, b"x" * 126)
    with pytest.raises(ValueError, match="control frame"):
        client_frame(framing.CLOSE, b"", fin=False)
    with pytest.raises(ValueError, match="reserved"):
        client_frame(0x3, b"")
    with pytest.raises(ValueError, match="4 bytes"):
        client_frame(framing.TEXT, b"", mask_key=b"abc")


def test_text_batches_have_one_key_per_frame() -> None:
    texts = [b"", b"a", b"x" * 125, b"y" * 126, "é".encode() * 40_000, b"z" * 65_536]
    data = client_text_frames(texts)
    frames = parse_client(data)
    assert [(f.opcode, f.fin, f.data) for f in frames] == [(Opcode.TEXT, True, t) for t in texts]
    keys = set()
    position = 0
    for _ in texts:
        *_, length, size = parse_frame_header(data, position)
        keys.add(data[position + size - 4 : position + size])
        position += size + length
    assert len(keys) == len(texts)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("masked", [True, False])
def test_parse_frame_header_reads_every_field(size: int, masked: bool) -> None:
    rsv = (True, False, True)
    header = frame_header(0xB, size, fin=False, rsv=rsv, masked=masked)
    wire = b"??" + header + (b"KEY!" if masked else b"")
    parsed = parse_frame_header(wire, 2)
    assert parsed == (0xB, False, rsv, masked, size, len(wire) - 2)
    with pytest.raises(ValueError, match="incomplete"):
        parse_frame_header(wire[:-1], 2)


def test_frame_header_writes_any_length_form_and_refuses_what_does_not_fit() -> None:
    assert frame_header(0x1, 5, length_form=64) == b"\x81\x7f" + struct.pack("!Q", 5)
    assert frame_header(0x1, 5, length_form=16) == b"\x81\x7e\x00\x05"
    assert frame_header(0xF, 0, fin=False) == b"\x0f\x00"
    for bad, kwargs in [
        ("4 bits", {"opcode": 16, "length": 0}),
        ("0 to 2", {"opcode": 1, "length": 1 << 64}),
        ("7-bit", {"opcode": 1, "length": 126, "length_form": 7}),
        ("16-bit", {"opcode": 1, "length": 65536, "length_form": 16}),
        ("length_form", {"opcode": 1, "length": 1, "length_form": 32}),
    ]:
        with pytest.raises(ValueError, match=bad):
            frame_header(**kwargs)  # type: ignore[arg-type]


def test_read_partial_header_says_what_a_cut_off_stream_holds() -> None:
    wire = frame_header(0x2, 70_000, masked=True) + b"KEY!"
    assert read_partial_header(wire[:1]) == PartialHeader(0x2, True, (False,) * 3, None, None, None)
    assert read_partial_header(wire[:5]) == PartialHeader(0x2, True, (False,) * 3, True, None, None)
    assert read_partial_header(wire[:10]) == PartialHeader(
        0x2, True, (False,) * 3, True, 70_000, None
    )
    assert read_partial_header(wire) == PartialHeader(0x2, True, (False,) * 3, True, 70_000, 14)


def test_close_payload_round_trips() -> None:
    assert parse_close_payload(close_payload(1001, "bye")) == (1001, b"bye")
    assert close_payload() == b""
    assert parse_close_payload(b"\x03") == (None, b"\x03")


def mixed_stream(rng: random.Random) -> tuple[bytes, list[tuple[int, bytes]]]:
    frames = []
    for _ in range(300):
        opcode = rng.choice([framing.TEXT, framing.BINARY, framing.PING])
        size = rng.choice([0, 3, 125, 126, 300, 65535, 65536]) if opcode != framing.PING else 4
        frames.append((opcode, rng.randbytes(size)))
    data = b"".join(
        encode_frame(p, text=o == framing.TEXT) if o != framing.PING else b"\x89\x04" + p
        for o, p in frames
    )
    return data, frames


def pieces(data: bytes, rng: random.Random) -> list[bytes]:
    out, position = [], 0
    while position < len(data):
        size = rng.choice([1, 2, 3, 9, 100, 5000, 70_000])
        out.append(data[position : position + size])
        position += size
    return out


@pytest.mark.parametrize("seed", range(3))
def test_header_walkers_agree_with_the_frames_written_whatever_the_cuts(seed: int) -> None:
    rng = random.Random(seed)
    data, frames = mixed_stream(rng)
    assert count_frames(data) == (len(frames), len(data))
    whole, stop, _ = split_frames(data)
    assert stop == len(data)
    assert [(first & 0x0F, data[start:end]) for first, start, end in whole] == frames
    counter, parser, parsed = FrameCounter(), FrameParser(), []
    for piece in pieces(data, rng):
        counter.feed(piece)
        parsed.extend(parser.feed(piece))
    assert (counter.frames, counter.bytes) == (len(frames), len(data))
    assert parsed == frames


def test_split_frames_marks_masked_frames_and_says_what_it_needs() -> None:
    masked = client_frame(framing.TEXT, b"hi", mask_key=b"abcd")
    frames, stop, needed = split_frames(masked + b"\x81")
    assert frames == [(0x81 | MASKED, 6, 8)] and (stop, needed) == (8, 2)
    long = encode_frame(b"x" * 300, text=True)
    assert split_frames(long[:3]) == ([], 0, 4)
    assert split_frames(long[:10]) == ([], 0, 304)
    assert count_frames(long[:10]) == (1, 304)  # a whole header counts; its payload is skipped
    assert count_frames(long[:3]) == (0, 0)
