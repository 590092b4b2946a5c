"""The frame tap: an opt-in, bounded log of every frame in and out of one connection.

Nothing is recorded until someone calls :meth:`FrameTap.watch`; the session checks one
attribute per frame, so an unwatched tap costs nothing measurable. What it records is what
the frame explorer and the FrameInspector widget show.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .framing import OPCODE_NAMES

__all__ = ["PREVIEW_BYTES", "FrameRecord", "FrameTap"]

PREVIEW_BYTES = 64


@dataclass(frozen=True, slots=True)
class FrameRecord:
    """One frame as seen on the wire.

    Attributes:
        time: when it was recorded (the session's clock, seconds).
        direction: "in" (from the peer) or "out" (to the peer).
        opcode: the frame's opcode (0x0-0xF).
        fin: FIN bit.
        rsv: the three reserved bits as on the wire (RSV1 is set on compressed frames).
        masked: whether the frame on the wire was masked.
        length: payload length on the wire (the compressed size for compressed frames).
        preview: the first bytes of the (unmasked) payload; for inbound compressed
            frames, of the decompressed payload.
    """

    time: float
    direction: str
    opcode: int
    fin: bool
    rsv: tuple[bool, bool, bool]
    masked: bool
    length: int
    preview: bytes

    @property
    def opcode_name(self) -> str:
        return OPCODE_NAMES.get(self.opcode, f"0x{self.opcode:X}")

    def as_dict(self) -> dict[str, object]:
        """A JSON-friendly dict (the preview as text if it decodes, else hex)."""
        try:
            preview = self.preview.decode("utf-8")
            kind = "text"
        except UnicodeDecodeError:
            preview = self.preview.hex(" ")
            kind = "hex"
        return {
            "time": self.time,
            "direction": self.direction,
            "opcode": self.opcode,
            "opcode_name": self.opcode_name,
            "fin": self.fin,
            "rsv": list(self.rsv),
            "masked": self.masked,
            "length": self.length,
            "preview": preview,
            "preview_kind": kind,
        }


class FrameTap:
    """Bounded log of frames with optional live listeners.

    Every connection has one, almost always unwatched, so the log and the listener list
    are only allocated once something is recorded or listened to.

    Args:
        capacity: records kept; the oldest are dropped first.
    """

    __slots__ = ("_listeners", "_records", "_watchers", "active", "capacity", "dropped")

    def __init__(self, capacity: int = 1000) -> None:
        self.capacity = capacity
        self._records: deque[FrameRecord] | None = None
        self._listeners: list[Callable[[FrameRecord], None]] | None = None
        self.active = False
        self.dropped = 0
        self._watchers = 0

    @property
    def records(self) -> deque[FrameRecord]:
        """The records kept, oldest first."""
        if self._records is None:
            self._records = deque(maxlen=self.capacity)
        return self._records

    @property
    def listeners(self) -> list[Callable[[FrameRecord], None]]:
        """Callables told of each new record."""
        if self._listeners is None:
            self._listeners = []
        return self._listeners

    def watch(self, listener: Callable[[FrameRecord], None] | None = None) -> None:
        """Start recording; ``listener`` (if any) is called with each new record."""
        if listener is None:
            self._watchers += 1
        else:
            self.listeners.append(listener)
        self.active = True

    def unwatch(self, listener: Callable[[FrameRecord], None] | None = None) -> None:
        """Undo one :meth:`watch`; recording stops when nobody is left watching."""
        listeners = self._listeners
        if listener is None:
            self._watchers = max(0, self._watchers - 1)
        elif listeners is not None and listener in listeners:
            listeners.remove(listener)
        self.active = bool(self._watchers or listeners)

    def record(self, record: FrameRecord) -> None:
        """Append one record and tell the listeners."""
        records = self.records
        if len(records) == self.capacity:
            self.dropped += 1
        records.append(record)
        if self._listeners:
            for listener in list(self._listeners):
                listener(record)

    def __iter__(self) -> Iterator[FrameRecord]:
        return iter(list(self._records or ()))

    def __len__(self) -> int:
        return len(self._records) if self._records is not None else 0
