"""RFC 6455 frame headers: the one place nbws writes them, and reads them where it reads
frames outside ``websockets``' parser. Pure: bytes in, bytes out.

Writers, fastest first, each for one job:

- :func:`encode_frame` / :func:`encode_message`: unmasked server frames, built once per
  published message for fan-out (a whole message as one frame, or a run of fragments);
- :func:`client_text_frames`: a batch of whole masked client text frames in one buffer,
  one masking key per frame (the publisher's write path);
- :func:`client_frame`: one masked client frame of any data or control opcode;
- :func:`frame_header`: any header at all, valid or not, for the frame explorer.

Readers: :func:`parse_frame_header` (every field, for the tap and the explorer),
:func:`read_partial_header` (as much as a cut-off stream holds), and the scanners
:func:`count_frames` and :func:`split_frames` that walk a buffer by header alone (the bench
client and the publisher's receive lane). Masking is ``websockets``' own ``apply_mask``
(its C speedup when built). Nothing here checks protocol rules beyond what a field can
hold: that is ``websockets``' job (:class:`~nbws.protocol.session.Session`) or, for the
explorer, deliberately nobody's.
"""

from __future__ import annotations

import os
import struct
from typing import NamedTuple

from ._compat import apply_mask

__all__ = [
    "BINARY",
    "CLOSE",
    "CONT",
    "CONTROL_OPCODES",
    "DATA_OPCODES",
    "MASKED",
    "MAX_CONTROL_PAYLOAD",
    "OPCODE_NAMES",
    "PING",
    "PONG",
    "TEXT",
    "FrameHeader",
    "PartialHeader",
    "apply_mask",
    "client_frame",
    "client_text_frames",
    "close_payload",
    "count_frames",
    "encode_frame",
    "encode_message",
    "frame_header",
    "parse_close_payload",
    "parse_frame_header",
    "read_partial_header",
    "split_frames",
]

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
DATA_OPCODES = frozenset({CONT, TEXT, BINARY})
CONTROL_OPCODES = frozenset({CLOSE, PING, PONG})
MAX_CONTROL_PAYLOAD = 125
MASKED = 0x100  # added to a frame's first byte by split_frames when it is masked

OPCODE_NAMES: dict[int, str] = {
    CONT: "CONT",
    TEXT: "TEXT",
    BINARY: "BINARY",
    CLOSE: "CLOSE",
    PING: "PING",
    PONG: "PONG",
}

_FIN = 0x80
_MASK = 0x80
_PACK_7 = struct.Struct("!BB").pack
_PACK_16 = struct.Struct("!BBH").pack
_PACK_64 = struct.Struct("!BBQ").pack
_UNPACK_16 = struct.Struct("!H").unpack_from
_UNPACK_64 = struct.Struct("!Q").unpack_from
_CODE = struct.Struct("!H")

# The two-byte headers of short whole frames, looked up instead of packed: encode_frame
# runs once per published message and per ack, client_text_frames once per publish.
_SHORT_TEXT = [bytes((0x81, size)) for size in range(126)]
_SHORT_BINARY = [bytes((0x82, size)) for size in range(126)]
_MASKED_TEXT = [bytes((0x81, _MASK | size)) for size in range(126)]


# --- writing -----------------------------------------------------------------------------


def _header(first: int, mask_bit: int, length: int) -> bytes:
    """The shortest header for ``length`` (what RFC 6455 section 5.2 asks of senders)."""
    if length < 126:
        return _PACK_7(first, mask_bit | length)
    if length < 65536:
        return _PACK_16(first, mask_bit | 126, length)
    return _PACK_64(first, mask_bit | 127, length)


def encode_frame(
    payload: bytes | memoryview, *, text: bool, fin: bool = True, continuation: bool = False
) -> bytes:
    """One unmasked, uncompressed server data frame.

    The encode-once half of fan-out: the same bytes go to every subscriber's
    :meth:`~nbws.protocol.session.Session.send_encoded`.
    """
    length = len(payload)
    data = payload if type(payload) is bytes else bytes(payload)
    if fin and not continuation:
        if length < 126:
            return (_SHORT_TEXT if text else _SHORT_BINARY)[length] + data
        first = 0x81 if text else 0x82
    else:
        first = (_FIN if fin else 0) | (CONT if continuation else TEXT if text else BINARY)
    if length < 65536:
        return (
            _PACK_16(first, 126, length) + data if length > 125 else _PACK_7(first, length) + data
        )
    return _PACK_64(first, 127, length) + data


def encode_message(
    payload: bytes | memoryview, *, text: bool, fragment_size: int = 1 << 20
) -> bytes:
    """A whole server message: one frame, or consecutive fragments of ``fragment_size``.

    The fragments are one contiguous byte string, so writing it in one go can never
    interleave with another message.
    """
    length = len(payload)
    if length <= fragment_size:
        return encode_frame(payload, text=text)
    view = memoryview(payload)
    first = TEXT if text else BINARY
    parts: list[bytes | memoryview] = []
    for start in range(0, length, fragment_size):
        end = start + fragment_size
        opcode = first if start == 0 else CONT
        parts.append(_header(opcode | (_FIN if end >= length else 0), 0, len(view[start:end])))
        parts.append(view[start:end])
    return b"".join(parts)


def client_text_frames(texts: list[bytes]) -> bytes:
    """Whole (FIN) masked client text frames carrying ``texts``, joined for one write.

    Each frame has its own masking key from ``os.urandom`` (RFC 6455 section 5.3).
    """
    keys = os.urandom(4 * len(texts))
    parts: list[bytes] = []
    append = parts.append
    index = 0
    for text in texts:
        size = len(text)
        key = keys[index : index + 4]
        index += 4
        if size < 126:
            append(_MASKED_TEXT[size] + key)
        elif size < 65536:
            append(_PACK_16(0x81, _MASK | 126, size) + key)
        else:
            append(_PACK_64(0x81, _MASK | 127, size) + key)
        append(apply_mask(text, key))
    return b"".join(parts)


def client_frame(
    opcode: int,
    payload: bytes | bytearray | memoryview = b"",
    *,
    fin: bool = True,
    mask_key: bytes | None = None,
) -> bytes:
    """One masked client frame (header, masking key, masked payload).

    Args:
        opcode: a data or control opcode.
        payload: the application data.
        fin: False on all but the last fragment of a message.
        mask_key: the 4-byte masking key (random when None).

    Raises:
        ValueError: a control frame over 125 bytes or fragmented, or an opcode RFC 6455
            does not define (build those with :func:`frame_header`).
    """
    if opcode in CONTROL_OPCODES:
        if len(payload) > MAX_CONTROL_PAYLOAD or not fin:
            raise ValueError("a control frame is whole and carries at most 125 bytes")
    elif opcode not in DATA_OPCODES:
        raise ValueError(f"opcode 0x{opcode:X} is reserved")
    key = os.urandom(4) if mask_key is None else mask_key
    if len(key) != 4:
        raise ValueError("a masking key is 4 bytes")
    header = _header((_FIN if fin else 0) | opcode, _MASK, len(payload))
    return header + key + apply_mask(payload, key)


def frame_header(
    opcode: int,
    length: int,
    *,
    fin: bool = True,
    rsv: tuple[bool, bool, bool] = (False, False, False),
    masked: bool = False,
    length_form: int | None = None,
) -> bytes:
    """Any frame header, valid or not: only that each field fits its bits is checked.

    Args:
        opcode: 0-15, reserved ones included.
        length: the payload length to declare (it need not be the payload's).
        fin: the FIN bit.
        rsv: RSV1, RSV2, RSV3.
        masked: set the MASK bit (the 4-byte key is the caller's to append).
        length_form: 7, 16 (126) or 64 (127) to force that length encoding; by default
            the shortest.

    Raises:
        ValueError: a field that does not fit (opcode over 15, a length out of 0 to
            2**64-1 or over what the chosen form holds, an unknown form).
    """
    if not 0 <= opcode <= 0xF:
        raise ValueError(f"an opcode is 4 bits (0-15), not {opcode}")
    if not 0 <= length < 1 << 64:
        raise ValueError(f"a payload length is 0 to 2**64-1, not {length}")
    first = (_FIN if fin else 0) | (0x40 if rsv[0] else 0) | (0x20 if rsv[1] else 0)
    first |= (0x10 if rsv[2] else 0) | opcode
    mask_bit = _MASK if masked else 0
    form = length_form or (7 if length <= 125 else 16 if length <= 0xFFFF else 64)
    if form == 7:
        if length > 125:
            raise ValueError(f"the 7-bit length form holds 0-125, not {length}")
        return _PACK_7(first, mask_bit | length)
    if form == 16:
        if length > 0xFFFF:
            raise ValueError(f"the 16-bit length form holds 0-65535, not {length}")
        return _PACK_16(first, mask_bit | 126, length)
    if form == 64:
        return _PACK_64(first, mask_bit | 127, length)
    raise ValueError(f"length_form is 7, 16 or 64, not {length_form!r}")


def close_payload(code: int | None = None, reason: bytes | str = b"") -> bytes:
    """The body of a close frame: a 2-byte code then the reason, with no validation.

    ``code=None`` gives the reason bytes alone (empty: a close without a status code;
    otherwise a malformed body, for the explorer).
    """
    raw = reason.encode("utf-8") if isinstance(reason, str) else bytes(reason)
    return raw if code is None else _CODE.pack(code) + raw


def parse_close_payload(payload: bytes) -> tuple[int | None, bytes]:
    """``(code, reason bytes)`` of a close body; ``(None, body)`` when under 2 bytes."""
    if len(payload) >= 2:
        return _CODE.unpack_from(payload)[0], bytes(payload[2:])
    return None, bytes(payload)


# --- reading -----------------------------------------------------------------------------


FrameHeader = tuple[int, bool, tuple[bool, bool, bool], bool, int, int]
"""``(opcode, fin, rsv, masked, payload_length, header_length)`` of a frame on the wire
(the header length counts the masking key). A plain tuple: the tap and the explorer read
one per frame, and a named tuple costs several times more to build."""


class PartialHeader(NamedTuple):
    """As much of a header as a cut-off stream holds: None for what is missing."""

    opcode: int
    fin: bool
    rsv: tuple[bool, bool, bool]
    masked: bool | None
    length: int | None
    size: int | None


def parse_frame_header(data: bytes | bytearray | memoryview, position: int = 0) -> FrameHeader:
    """Read the header of the frame that starts at ``position``.

    Raises:
        ValueError: ``data`` is shorter than the header it announces.
    """
    available = len(data) - position
    if available < 2:
        raise ValueError("incomplete frame header")
    first, second = data[position], data[position + 1]
    length = second & 0x7F
    masked = second > 127
    head = 6 if masked else 2
    if length == 126:
        head += 2
        if available >= head:
            length = _UNPACK_16(data, position + 2)[0]
    elif length == 127:
        head += 8
        if available >= head:
            length = _UNPACK_64(data, position + 2)[0]
    if available < head:
        raise ValueError("incomplete frame header")
    rsv = (first & 0x40 != 0, first & 0x20 != 0, first & 0x10 != 0)
    return first & 0x0F, first > 127, rsv, masked, length, head


def read_partial_header(data: bytes | bytearray | memoryview, position: int = 0) -> PartialHeader:
    """As much of the header at ``position`` as ``data`` holds (at least one byte).

    The length is known once its extended bytes are there, even if the masking key is
    not yet; ``size`` only once the whole header is.
    """
    try:
        return PartialHeader(*parse_frame_header(data, position))
    except ValueError:
        pass
    first = data[position]
    fin, opcode = first > 127, first & 0x0F
    rsv = (first & 0x40 != 0, first & 0x20 != 0, first & 0x10 != 0)
    if len(data) - position < 2:
        return PartialHeader(opcode, fin, rsv, None, None, None)
    second = data[position + 1]
    code = second & 0x7F
    extra = {126: 2, 127: 8}.get(code, 0)
    known: int | None = code
    if extra:
        tail = data[position + 2 : position + 2 + extra]
        known = int.from_bytes(tail, "big") if len(tail) == extra else None
    return PartialHeader(opcode, fin, rsv, second > 127, known, None)


def count_frames(data: bytes | bytearray | memoryview, position: int = 0) -> tuple[int, int]:
    """Walk frames by their headers alone, from ``position``.

    Returns:
        ``(frames, stop)``: how many frames start in ``data`` and have a whole header
        there, and where the frame after them starts; ``stop`` is past the end when the
        last one's payload is still to come, and at an incomplete header otherwise.
    """
    end = len(data)
    last = end - 1  # a header has at least 2 bytes
    frames = 0
    while position < last:
        second = data[position + 1]
        if second < 126:  # unmasked with a 7-bit length: a server's small frames
            position += 2 + second
        else:
            size = second & 0x7F
            head = 6 if second & _MASK else 2
            if size < 126:
                position += head + size
            elif size == 126:
                if end - position < head + 2:
                    break
                position += head + 2 + _UNPACK_16(data, position + 2)[0]
            else:
                if end - position < head + 8:
                    break
                position += head + 8 + _UNPACK_64(data, position + 2)[0]
        frames += 1
    return frames, position


def split_frames(
    data: bytes | bytearray | memoryview, position: int = 0
) -> tuple[list[tuple[int, int, int]], int, int]:
    """The whole frames in ``data`` from ``position``.

    Returns:
        ``(frames, stop, needed)``: each frame as ``(first, payload_start, end)``, where
        ``first`` is the first header byte plus :data:`MASKED` when the MASK bit is set
        (such a frame is not unmasked: a server's never should be); where the first
        incomplete frame starts; and how many bytes from ``stop`` it needs before it is
        worth looking again (its whole length once its header is known).
    """
    frames: list[tuple[int, int, int]] = []
    append = frames.append
    end = len(data)
    while True:
        available = end - position
        if available < 2:
            return frames, position, 2
        second = data[position + 1]
        if second < 126:  # unmasked with a 7-bit length: a server's small frames
            stop = position + 2 + second
            if stop > end:
                return frames, position, 2 + second
            append((data[position], position + 2, stop))
            position = stop
            continue
        size = second & 0x7F
        head = 6 if second & _MASK else 2
        if size == 126:
            head += 2
            if available < head:
                return frames, position, head
            size = _UNPACK_16(data, position + 2)[0]
        elif size == 127:
            head += 8
            if available < head:
                return frames, position, head
            size = _UNPACK_64(data, position + 2)[0]
        stop = position + head + size
        if stop > end:
            return frames, position, head + size
        append((data[position] | (MASKED if second & _MASK else 0), position + head, stop))
        position = stop
