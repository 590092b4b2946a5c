"""What the client puts on the wire, and payload sources that can be replayed for retransmits."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest

from nbws.client import frames
from nbws.client.frames import BinaryItem, JsonItem, open_source, publish_frame, publish_prefix
from nbws.wire import encode_value, split_binary


def test_json_publish_embeds_the_serialised_payload() -> None:
    item = JsonItem(encode_value({"p": [1, 2.5, "é"]}), key="k")
    message = orjson.loads(publish_frame("s", "prod", 7, item))
    assert message == {
        "type": "publish",
        "stream": "s",
        "producer": "prod",
        "seq": 7,
        "key": "k",
        "payload": {"p": [1, 2.5, "é"]},
    }


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
