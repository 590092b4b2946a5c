"""What the client puts on the wire, and payload sources that can be replayed for retransmits."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from nbws.client import frames
from nbws.client.frames import (
    BinaryItem,
    open_source,
    publish_prefix,
    publish_text,
    publish_text_prefix,
)
from nbws.protocol.framing import client_text_frames as text_frames
from nbws.protocol.messages import Publish, decode_request, encode, encode_value, split_binary


def test_json_publish_embeds_the_serialised_payload() -> None:
    prefix = publish_text_prefix('s"/x', "prod")
    text = publish_text(prefix, 7, encode_value({"p": [1, 2.5, "é"]}), key='k"\\')
    assert orjson.loads(text) == {
        "type": "publish",
        "stream": 's"/x',
        "producer": "prod",
        "seq": 7,
        "key": 'k"\\',
        "payload": {"p": [1, 2.5, "é"]},
    }
    assert orjson.loads(publish_text(prefix, 0, b"null")) == {
        "type": "publish",
        "stream": 's"/x',
        "producer": "prod",
        "seq": 0,
        "payload": None,
    }


@pytest.mark.parametrize("key", [None, 'k"\\é'])
@pytest.mark.parametrize("payload", [None, 0, "é\u2028", [1, 2.5], {"a": {"b": []}}])
def test_the_fast_publish_text_is_the_publish_message(key: str | None, payload: object) -> None:
    fast = publish_text(publish_text_prefix("s/1", 'p"1'), 42, encode_value(payload), key)
    message = Publish(stream="s/1", payload=payload, producer='p"1', seq=42, key=key)
    assert decode_request(fast) == message
    if payload is not None:  # encode() leaves a null payload out; the fast path writes it
        assert orjson.loads(fast) == orjson.loads(encode(message).data)


def test_text_frames_are_whole_masked_client_frames_of_every_length_form() -> None:
    texts = [b"", b"a", b"x" * 125, b"y" * 126, "é".encode() * 40_000, b"z" * 65_536]
    data = text_frames(texts)
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    masks = set()
    for text in texts:
        parser = Frame.parse(reader.read_exact, mask=True)  # as a server reads them
        try:
            while True:
                next(parser)
        except StopIteration as done:
            frame = done.value
        assert (frame.opcode, frame.fin, frame.data) == (Opcode.TEXT, True, text)
    assert reader.buffer == b""  # nothing after the last frame
    offset = 0
    for text in texts:  # each frame has its own masking key
        second = data[offset + 1] & 0x7F
        header = 2 + {126: 2, 127: 8}.get(second, 0)
        masks.add(data[offset + header : offset + header + 4])
        offset += header + 4 + len(text)
    assert len(masks) == len(texts)


def test_binary_publish_prefix_is_the_wire_header() -> None:
    item = BinaryItem(open_source(b"", 10), content_type="image/png")
    header, rest = split_binary(publish_prefix("s", "prod", 3, item) + b"DATA")
    assert header == {
        "type": "publish",
        "stream": "s",
        "producer": "prod",
        "seq": 3,
        "content_type": "image/png",
    }
    assert bytes(rest) == b"DATA"


def passes(source: frames.BinarySource, chunk: int, stop_after: int | None = None) -> bytes:
    out = b""
    for i, piece in enumerate(source.chunks(chunk)):
        assert len(piece) <= chunk
        out += piece
        if stop_after is not None and i + 1 >= stop_after:
            break
    return out


def test_iterator_source_replays_after_an_interrupted_pass() -> None:
    parts = [b"alpha", b"", b"beta" * 1000, b"gamma"]
    source = open_source(iter(parts), 100)
    assert source.size is None
    partial = passes(source, 100, stop_after=3)  # the connection dropped mid-message
    assert b"".join(parts).startswith(partial)
    assert passes(source, 100) == b"".join(parts)  # the retransmission sends it all
    assert passes(source, 333) == b"".join(parts)  # and again, in any chunk size
    assert source.size == len(b"".join(parts))
    source.close()


def test_large_iterator_spills_to_disk_and_still_replays(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(frames, "SPOOL_MEMORY", 1000)
    data = bytes(range(256)) * 40
    source = open_source((data[i : i + 700] for i in range(0, len(data), 700)), 512)
    assert passes(source, 512) == data
    assert source.spool._rolled  # type: ignore[attr-defined]
    assert passes(source, 4096) == data
    source.close()


def test_seekable_file_is_reread_from_where_it_was(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"HEADER" + b"x" * 5000)
    with open(path, "rb") as fh:
        fh.read(6)
        source = open_source(fh, 1024)
        assert source.size == 5000
        assert passes(source, 1024, stop_after=2) == b"x" * 2048
        assert passes(source, 1024) == b"x" * 5000
        source.close()
        assert not fh.closed  # the caller's file stays the caller's


def test_path_is_opened_and_closed_by_the_source(tmp_path: Path) -> None:
    path = tmp_path / "p.bin"
    path.write_bytes(b"abc")
    source = open_source(path, 2)
    assert passes(source, 2) == b"abc"
    source.close()
    assert source.file.closed  # type: ignore[attr-defined]


def test_non_seekable_file_is_spooled() -> None:
    class Pipe(io.RawIOBase):
        def __init__(self) -> None:
            self.left = b"q" * 3000

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
            n = min(len(buffer), len(self.left))
            buffer[:n], self.left = self.left[:n], self.left[n:]
            return n

    source = open_source(io.BufferedReader(Pipe()), 1000)
    assert passes(source, 1000) == b"q" * 3000
    assert passes(source, 1000) == b"q" * 3000


def test_iterables_must_yield_bytes() -> None:
    source = open_source(iter(["text"]), 10)
    with pytest.raises(TypeError, match="must yield bytes"):
        passes(source, 10)
