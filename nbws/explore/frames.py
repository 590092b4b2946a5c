"""Client frames of any shape, and a parser for whatever a server sends back. No I/O.

A browser (and every well-behaved client library) refuses to send a reserved opcode, an
RSV bit, an unmasked frame or a close code that may not appear on the wire; exploring what
a server does with them needs a builder that refuses nothing. :func:`build_frame` writes
exactly the header it is told to, including a declared length that does not match the
payload. :class:`FrameParser` is equally permissive on the way in: it reports RSV bits,
reserved opcodes and masking as seen instead of rejecting them, so the explorer can show
a misbehaving server as it is.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Literal

from ..protocol.framing import (
    CONTROL_OPCODES,
    DATA_OPCODES,
    OPCODE_NAMES,
    FrameHeader,
    apply_mask,
    close_payload,
    frame_header,
    parse_close_payload,
    parse_frame_header,
)
from ..protocol.tap import PREVIEW_BYTES, FrameRecord

__all__ = [
    "CONTROL_OPCODES",
    "DATA_OPCODES",
    "FrameParser",
    "FrameTooLarge",
    "LengthForm",
    "ParsedFrame",
    "build_frame",
    "close_payload",
    "opcode_from",
    "parse_close_payload",
    "parse_frames",
    "split_payload",
]

LengthForm = Literal[7, 16, 64]

_NAMES_TO_OPCODES = {name: code for code, name in OPCODE_NAMES.items()}
_NAMES_TO_OPCODES.update({"CONTINUATION": 0x0, "BIN": 0x2})


def opcode_from(value: int | str) -> int:
    """An opcode from a number (0-15) or a name ("text", "PING", "cont", ...).

    Raises:
        ValueError: not an opcode.
    """
    if isinstance(value, str):
        try:
            return _NAMES_TO_OPCODES[value.upper()]
        except KeyError:
            raise ValueError(f"unknown opcode name {value!r}") from None
    code = int(value)
    if not 0 <= code <= 0xF:
        raise ValueError(f"an opcode is 4 bits (0-15), not {code}")
    return code


def _as_bytes(payload: bytes | bytearray | memoryview | str) -> bytes:
    return payload.encode("utf-8") if isinstance(payload, str) else bytes(payload)


def build_frame(
    opcode: int | str,
    payload: bytes | bytearray | memoryview | str = b"",
    *,
    fin: bool = True,
    rsv: Sequence[bool | int] = (False, False, False),
    mask: bool = True,
    mask_key: bytes | None = None,
    length: int | None = None,
    length_form: LengthForm | None = None,
) -> bytes:
    """Serialise one client frame exactly as asked, valid or not.

    Args:
        opcode: 0-15 or a name; reserved opcodes are written as given.
        payload: the application data (``str`` is UTF-8 encoded; nothing is validated).
        fin: the FIN bit (False on all but the last fragment).
        rsv: RSV1, RSV2, RSV3 (non-zero only with a negotiated extension, per RFC 6455).
        mask: set the MASK bit and mask the payload (RFC 6455 requires it of clients).
        mask_key: the 4-byte masking key (random when None).
        length: the payload length to declare in the header instead of ``len(payload)``
            (a lie the server has to cope with: it will wait for, or misread, bytes).
        length_form: force the 7-bit, 16-bit (126) or 64-bit (127) length encoding;
            by default the shortest one, which RFC 6455 requires of senders.

    Returns:
        The frame's bytes: header, masking key (if masked), masked payload.

    Raises:
        ValueError: a field does not fit its bits (opcode > 15, a length that the chosen
            form cannot hold, a mask key that is not 4 bytes).
    """
    flags = tuple(bool(bit) for bit in rsv)
    if len(flags) != 3:
        raise ValueError("rsv is three bits: (RSV1, RSV2, RSV3)")
    data = _as_bytes(payload)
    declared = len(data) if length is None else int(length)
    header = frame_header(
        opcode_from(opcode),
        declared,
        fin=fin,
        rsv=(flags[0], flags[1], flags[2]),
        masked=mask,
        length_form=length_form,
    )
    if not mask:
        return header + data
    key = os.urandom(4) if mask_key is None else bytes(mask_key)
    if len(key) != 4:
        raise ValueError("a masking key is 4 bytes")
    return header + key + apply_mask(data, key)


def split_payload(data: bytes, n: int) -> list[bytes]:
    """Cut ``data`` into ``n`` consecutive pieces of nearly equal size (some may be empty)."""
    if n < 1:
        raise ValueError("at least one fragment")
    size, extra = divmod(len(data), n)
    pieces, start = [], 0
    for index in range(n):
        end = start + size + (1 if index < extra else 0)
        pieces.append(data[start:end])
        start = end
    return pieces


@dataclass(frozen=True, slots=True)
class ParsedFrame:
    """A frame read off the wire: its record plus the whole (unmasked) payload."""

    record: FrameRecord
    payload: bytes

    # the record's fields, read through
    opcode = property(attrgetter("record.opcode"))
    opcode_name = property(attrgetter("record.opcode_name"))
    fin = property(attrgetter("record.fin"))
    rsv = property(attrgetter("record.rsv"))
    masked = property(attrgetter("record.masked"))
    length = property(attrgetter("record.length"))

    @property
    def close(self) -> tuple[int | None, bytes]:
        """``(code, reason bytes)`` if this is a close frame."""
        return parse_close_payload(self.payload)


class FrameTooLarge(ValueError):
    """A frame declares a payload over the parser's ``max_payload``."""


class FrameParser:
    """Bytes in, frames out, accepting any header.

    Args:
        direction: recorded in each :class:`FrameRecord` ("in" or "out").
        max_payload: the largest payload held in memory; a larger declared length
            raises :class:`FrameTooLarge` (a server cannot make the explorer allocate
            2**63 bytes).
    """

    def __init__(self, direction: str = "in", *, max_payload: int = 64 * 1024 * 1024) -> None:
        self.direction = direction
        self.max_payload = max_payload
        self._buffer = bytearray()
        self._header: FrameHeader | None = None

    @property
    def pending(self) -> int:
        """Bytes received that do not form a whole frame yet."""
        return len(self._buffer)

    def receive_data(self, data: bytes, now: float = 0.0) -> list[ParsedFrame]:
        """Feed bytes; returns the frames they complete, stamped ``now``.

        Raises:
            FrameTooLarge: a header declares more than ``max_payload`` bytes.
        """
        buffer = self._buffer
        buffer += data
        frames: list[ParsedFrame] = []
        while True:
            header = self._header
            if header is None:
                try:
                    header = parse_frame_header(buffer)
                except ValueError:
                    break  # header incomplete
                if header[4] > self.max_payload:
                    if frames:
                        break  # hand these over; the next call raises
                    raise FrameTooLarge(
                        f"a frame declares {header[4]} bytes, "
                        f"over the {self.max_payload}-byte limit"
                    )
                self._header = header
            opcode, fin, rsv, masked, length, offset = header
            if len(buffer) < offset + length:
                break
            payload = bytes(buffer[offset : offset + length])
            if masked:
                payload = apply_mask(payload, bytes(buffer[offset - 4 : offset]))
            del buffer[: offset + length]
            self._header = None
            record = FrameRecord(
                time=now,
                direction=self.direction,
                opcode=opcode,
                fin=fin,
                rsv=rsv,
                masked=masked,
                length=length,
                preview=payload[:PREVIEW_BYTES],
            )
            frames.append(ParsedFrame(record, payload))
        return frames


def parse_frames(data: bytes, direction: str = "in") -> tuple[list[ParsedFrame], int]:
    """Parse a captured byte stream: the whole frames and the count of trailing bytes."""
    parser = FrameParser(direction, max_payload=1 << 64)
    frames = parser.receive_data(data)
    return frames, parser.pending
