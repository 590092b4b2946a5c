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
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from websockets.utils import apply_mask

from ..protocol.tap import OPCODE_NAMES, PREVIEW_BYTES, FrameRecord, parse_frame_header

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

DATA_OPCODES = frozenset({0x0, 0x1, 0x2})
CONTROL_OPCODES = frozenset({0x8, 0x9, 0xA})

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
    code = opcode_from(opcode)
    data = _as_bytes(payload)
    flags = tuple(bool(bit) for bit in rsv)
    if len(flags) != 3:
        raise ValueError("rsv is three bits: (RSV1, RSV2, RSV3)")
    declared = len(data) if length is None else int(length)
    if not 0 <= declared < 1 << 64:
        raise ValueError(f"a payload length is 0 to 2**64-1, not {declared}")
    form = length_form or (7 if declared <= 125 else 16 if declared <= 0xFFFF else 64)
    b0 = (0x80 if fin else 0) | (0x40 if flags[0] else 0) | (0x20 if flags[1] else 0)
    b0 |= (0x10 if flags[2] else 0) | code
    mask_bit = 0x80 if mask else 0
    if form == 7:
        if declared > 125:
            raise ValueError(f"the 7-bit length form holds 0-125, not {declared}")
        header = struct.pack("!BB", b0, mask_bit | declared)
    elif form == 16:
        if declared > 0xFFFF:
            raise ValueError(f"the 16-bit length form holds 0-65535, not {declared}")
        header = struct.pack("!BBH", b0, mask_bit | 126, declared)
    elif form == 64:
        header = struct.pack("!BBQ", b0, mask_bit | 127, declared)
    else:
        raise ValueError(f"length_form is 7, 16 or 64, not {length_form!r}")
    if not mask:
        return header + data
    key = os.urandom(4) if mask_key is None else bytes(mask_key)
    if len(key) != 4:
        raise ValueError("a masking key is 4 bytes")
    return header + key + apply_mask(data, key)


def close_payload(code: int | None = None, reason: bytes | str = b"") -> bytes:
    """The body of a close frame: a 2-byte code then the reason, with no validation.

    ``code=None`` gives an empty body (a close without a status code), unless a reason is
    given, in which case the reason bytes alone are returned (a malformed body).
    """
    raw = _as_bytes(reason)
    if code is None:
        return raw
    return struct.pack("!H", code) + raw


def parse_close_payload(payload: bytes) -> tuple[int | None, bytes]:
    """``(code, reason bytes)`` of a close body; ``(None, b"")`` when empty.

    A 1-byte body (malformed) gives ``(None, body)``.
    """
    if len(payload) >= 2:
        return struct.unpack("!H", payload[:2])[0], payload[2:]
    return None, bytes(payload)


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

    @property
    def opcode(self) -> int:
        return self.record.opcode

    @property
    def opcode_name(self) -> str:
        return self.record.opcode_name

    @property
    def fin(self) -> bool:
        return self.record.fin

    @property
    def rsv(self) -> tuple[bool, bool, bool]:
        return self.record.rsv

    @property
    def masked(self) -> bool:
        return self.record.masked

    @property
    def length(self) -> int:
        return self.record.length

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
        self._header: tuple[int, bool, tuple[bool, bool, bool], bool, int, int] | None = None

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
                    header = parse_frame_header(bytes(buffer[:14]))
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
