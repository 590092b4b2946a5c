"""What the client sends and receives on ``nbws/ws``, built with :mod:`nbws.protocol.messages`.

Outgoing: a JSON publish is its serialised payload (``bytes``, or :class:`KeyedJson`
with a key), serialised once in the publishing thread; the I/O thread puts runs of them
in ``publish_batch`` texts, or single publish texts (:func:`publish_text`, the messages
layer's fast path) for a server without batches; a
:class:`BinaryItem` is a replayable :class:`BinarySource`, read in chunks so a large
payload is never held whole, and re-encoded with the same ``(producer, seq)`` on every
transmission. Queued text publishes go out as pre-masked WebSocket frames, many in one
write (:func:`nbws.protocol.framing.client_text_frames`). Incoming: :func:`parse` turns a
received message into a dict plus the binary payload, and :func:`to_message` /
:func:`to_gap` build what users iterate over.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, NamedTuple

from ..protocol.messages import Publish, encode
from ..protocol.messages import encode_publish_fast as publish_text
from ..protocol.messages import publish_fast_prefix as publish_text_prefix

__all__ = [
    "BinaryItem",
    "BinarySource",
    "Gap",
    "KeyedJson",
    "Message",
    "json_parts",
    "open_source",
    "publish_prefix",
    "publish_text",
    "publish_text_prefix",
]

SPOOL_MEMORY = 8 * 1024 * 1024
"""Bytes of a one-shot iterator kept in memory (beyond that, on disk) for retransmission."""


@dataclass(frozen=True, slots=True)
class Message:
    """One message of a stream, as a subscriber receives it.

    Attributes:
        stream: stream name.
        offset: position in the stream (within ``epoch``).
        epoch: the stream's epoch (offsets are comparable only within one epoch).
        time: when the server appended it (seconds since the Unix epoch).
        payload: the JSON value, or ``bytes`` for a binary message.
        key: the conflation key, if the publisher gave one.
        producer: the publisher's producer id (acked publishes only).
        seq: the publisher's sequence number (acked publishes only).
        content_type: a binary message's content type, if given.
    """

    stream: str
    offset: int
    epoch: str
    time: float
    payload: Any
    key: str | None = None
    producer: str | None = None
    seq: int | None = None
    content_type: str | None = None

    kind = "message"

    @property
    def binary(self) -> bool:
        return isinstance(self.payload, bytes)


@dataclass(frozen=True, slots=True)
class Gap:
    """Offsets ``start`` (inclusive) to ``end`` (exclusive) that will not be delivered.

    ``reason`` is ``history`` (older than the stream holds), ``epoch`` (history was lost;
    ``start``/``end`` refer to the old epoch), ``dropped`` (the subscriber's buffer was
    full) or ``conflated``. ``end`` and ``count`` may be None when unknown.
    """

    stream: str
    start: int | None
    end: int | None
    count: int | None
    reason: str
    epoch: str | None

    kind = "gap"


class KeyedJson(NamedTuple):
    """A JSON publish with a conflation key waiting in the outbox (without a key, the
    item is the serialised payload itself, ``bytes``)."""

    payload: bytes
    key: str


def json_parts(item: Any) -> tuple[bytes, str | None] | None:
    """``(payload, key)`` of a JSON item in the outbox; None for a binary one."""
    if type(item) is bytes:
        return item, None
    if type(item) is KeyedJson:
        return item.payload, item.key
    return None


@dataclass(slots=True)
class BinaryItem:
    """A binary publish waiting in the outbox."""

    source: BinarySource
    content_type: str | None = None
    key: str | None = None
    chunk_size: int = 64 * 1024
    progress: Any = None  # a tqdm-like bar (update/close), or None
    sent_bytes: int = field(default=0)


def publish_prefix(stream: str, producer: str, seq: int, item: BinaryItem) -> bytes:
    """The bytes that precede a binary publish's payload (length + JSON header)."""
    message = Publish(
        stream=stream,
        payload=b"",
        producer=producer,
        seq=seq,
        key=item.key,
        content_type=item.content_type,
        binary=True,
    )
    return encode(message).data  # the payload is empty: the prefix alone


# --- binary sources ---------------------------------------------------------------------


class BinarySource:
    """A payload that can be read from its start again (once per transmission).

    ``size`` is the total in bytes when known up front, else None.
    """

    size: int | None = None

    def chunks(self, chunk_size: int) -> Iterator[bytes]:
        """A fresh pass over the payload, ``chunk_size`` bytes at a time."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the source holds (called once the message is acked or failed)."""


class _BytesSource(BinarySource):
    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self.data = memoryview(data).cast("B")
        self.size = len(self.data)

    def chunks(self, chunk_size: int) -> Iterator[bytes]:
        data = self.data
        for start in range(0, len(data), chunk_size):
            yield bytes(data[start : start + chunk_size])

    def close(self) -> None:
        self.data.release()


class _FileSource(BinarySource):
    """A seekable binary file: re-read from where it was when published."""

    def __init__(self, file: IO[bytes], *, owned: bool) -> None:
        self.file = file
        self.owned = owned
        self.start = file.tell()
        end = file.seek(0, io.SEEK_END)
        file.seek(self.start)
        self.size = end - self.start

    def chunks(self, chunk_size: int) -> Iterator[bytes]:
        self.file.seek(self.start)
        while True:
            chunk = self.file.read(chunk_size)
            if not chunk:
                return
            yield bytes(chunk)

    def close(self) -> None:
        if self.owned:
            self.file.close()


class _SpooledSource(BinarySource):
    """A one-shot iterator, copied to a spool as it is consumed so it can be replayed."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self.iterator: Iterator[bytes] | None = iter(chunks)
        self.spool: tempfile.SpooledTemporaryFile[bytes] = tempfile.SpooledTemporaryFile(  # noqa: SIM115
            max_size=SPOOL_MEMORY
        )
        self.spooled = 0

    def chunks(self, chunk_size: int) -> Iterator[bytes]:
        spool = self.spool
        position = 0
        while position < self.spooled:
            spool.seek(position)
            chunk = spool.read(min(chunk_size, self.spooled - position))
            position += len(chunk)
            yield chunk
        while self.iterator is not None:
            try:
                chunk = next(self.iterator)
            except StopIteration:
                self.iterator = None
                self.size = self.spooled
                return
            if not isinstance(chunk, (bytes, bytearray, memoryview)):
                kind = type(chunk).__name__
                raise TypeError(f"publish_bytes iterables must yield bytes, not {kind}")
            data = bytes(chunk)
            if not data:
                continue
            spool.seek(self.spooled)
            spool.write(data)
            self.spooled += len(data)
            for start in range(0, len(data), chunk_size):
                yield data[start : start + chunk_size]

    def close(self) -> None:
        self.spool.close()


def _read_chunks(file: IO[bytes], chunk_size: int) -> Iterator[bytes]:
    while True:
        chunk = file.read(chunk_size)
        if not chunk:
            return
        yield chunk


def open_source(data: Any, chunk_size: int) -> BinarySource:
    """A replayable source for ``publish_bytes``.

    Accepts bytes-like objects, a path (``str`` or ``os.PathLike``: opened, and closed once
    acked), a binary file object (seekable ones are re-read on retransmission; others
    are spooled), or an iterable of bytes (spooled: memory up to 8 MiB, then a temp file).

    Raises:
        TypeError: anything else (including text files and ``str`` chunks).
    """
    if isinstance(data, (bytes, bytearray, memoryview)):
        return _BytesSource(data)
    if isinstance(data, (str, os.PathLike)):
        return _FileSource(open(data, "rb"), owned=True)
    if hasattr(data, "read"):
        if isinstance(data, io.TextIOBase):
            raise TypeError("publish_bytes needs a binary file (opened with 'rb')")
        seekable = getattr(data, "seekable", None)
        if callable(seekable) and seekable():
            return _FileSource(data, owned=False)
        return _SpooledSource(_read_chunks(data, chunk_size))
    if isinstance(data, Iterable):
        return _SpooledSource(data)
    raise TypeError(
        f"publish_bytes takes bytes, a path, a binary file or an iterable of bytes, "
        f"not {type(data).__name__}"
    )
