"""What RFC 6455 requires of an echo server for a given stream of client bytes.

An independent reference, written from the RFC rather than from the server's code, so it
can judge a server (nbws or any other): :func:`expect_echo_server` reads the bytes a client
sends, frame by frame, and says which messages must be echoed, which pings answered, and
which close codes are acceptable if the stream breaks a rule.

Where RFC 6455 leaves a choice, every acceptable answer is allowed:

- a frame that breaks several rules may be answered with the code of any of them;
- RFC 6455 says nothing about message size limits, so a server with a limit may close
  with 1009 whenever a frame arrives while the running total plus the frame's declared
  length is over that limit (control frames included: the RFC does not forbid it, and
  common implementations count them);
- the 64-bit length form with its top bit set is a protocol error (1002), but a server
  with a size limit sees a huge length first (1009);
- a close frame in the middle of a fragmented message must be answered with a close frame;
  echoing its code and failing with 1002 are both seen in practice and both allowed;
- a frame cut off at the end of the stream may be rejected from its header alone or
  waited for (then the server sees EOF and drops the connection: 1006).
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field

from ..protocol.framing import CONTROL_OPCODES, DATA_OPCODES, apply_mask, read_partial_header

__all__ = [
    "NO_CLOSE_FRAME",
    "VALID_CLOSE_CODES",
    "Expectation",
    "expect_echo_server",
    "is_valid_close_code",
]

NO_CLOSE_FRAME = 1006  # what a client sees when the TCP connection ends without a close frame

VALID_CLOSE_CODES = frozenset({1000, 1001, 1002, 1003, *range(1007, 1015)})


def is_valid_close_code(code: int) -> bool:
    """May ``code`` appear in a close frame (RFC 6455 section 7.4, IANA registry)?"""
    return code in VALID_CLOSE_CODES or 3000 <= code <= 4999


@dataclass
class Expectation:
    """What the server must do with a client stream.

    Attributes:
        echoes: ``(is_text, payload)`` of each complete message the server must echo
            (all of them when the stream is valid; a prefix may arrive otherwise, since a
            server that fails the connection stops sending data).
        pongs: payloads of the pongs owed, in order.
        close_codes: acceptable codes of the server's close frame (1006: no close frame);
            None when the stream is valid and leaves the connection open.
        incomplete: the stream ends inside a frame.
        client_closed: the stream contains a valid close frame from the client.
        message_in_progress: a valid stream that stops between the fragments of a message
            (a close sent now may be answered with 1002 instead of an echo of its code).
        reason: the rule that decides the outcome, for messages.
        frame_index: index of the frame that decides it (None if none does).
    """

    echoes: list[tuple[bool, bytes]] = field(default_factory=list)
    pongs: list[bytes] = field(default_factory=list)
    close_codes: frozenset[int] | None = None
    incomplete: bool = False
    client_closed: bool = False
    message_in_progress: bool = False
    reason: str = "valid stream"
    frame_index: int | None = None


def _utf8_ok(decoder: codecs.IncrementalDecoder, data: bytes, final: bool) -> bool:
    try:
        decoder.decode(data, final)
    except UnicodeDecodeError:
        return False
    return True


def expect_echo_server(
    stream: bytes, *, max_message_size: int | None = None, max_frame_size: int | None = None
) -> Expectation:
    """Judge a client byte stream the way RFC 6455 requires an echo server to.

    Args:
        stream: the bytes the client sends after the handshake.
        max_message_size: the server's limit on a message (summed across fragments).
        max_frame_size: the server's limit on one frame.

    Returns:
        The :class:`Expectation`.
    """
    result = Expectation()
    position = 0
    index = 0
    message: list[bytes] | None = None  # fragments of the message in progress
    message_text = False
    decoder: codecs.IncrementalDecoder | None = None
    size = 0
    while position < len(stream):
        opcode, fin, rsv, masked, length, header = read_partial_header(stream, position)
        codes: set[int] = set()
        reasons: list[str] = []

        def bad(code: int, why: str, codes: set[int] = codes, reasons: list[str] = reasons) -> None:
            codes.add(code)
            reasons.append(why)

        control = opcode in CONTROL_OPCODES
        if opcode not in DATA_OPCODES and not control:
            bad(1002, f"reserved opcode 0x{opcode:X}")
        if masked is False:
            bad(1002, "unmasked client frame")
        if any(rsv):
            bad(1002, "RSV bit set without an extension")
        if length is not None and length >= 1 << 63:
            bad(1002, "64-bit length with its top bit set")
            codes.add(1009)
        if control and not fin:
            bad(1002, "fragmented control frame")
        if control and length is not None and length > 125:
            bad(1002, "control frame payload over 125 bytes")
        if length is not None and max_message_size is not None and size + length > max_message_size:
            if opcode in DATA_OPCODES:
                bad(1009, f"message over {max_message_size} bytes")
            else:
                codes.add(1009)  # a limit some servers apply to control frames too
        if length is not None and max_frame_size is not None and length > max_frame_size:
            bad(1009, f"frame over {max_frame_size} bytes")
        if opcode == 0x0 and message is None:
            bad(1002, "continuation frame without a message in progress")
        if opcode in (0x1, 0x2) and message is not None:
            bad(1002, "new data frame inside a fragmented message")

        if header is None or length is None or position + header + length > len(stream):
            # Cut off: the server may reject what it has of the frame or wait for the rest.
            result.close_codes = frozenset(codes | {NO_CLOSE_FRAME})
            result.incomplete = True
            result.reason = "; ".join(reasons) or "the stream ends inside a frame"
            result.frame_index = index
            return result
        end = position + header + length
        payload = stream[position + header : end]
        if masked:
            payload = apply_mask(payload, stream[position + header - 4 : position + header])
        position = end

        if opcode == 0x8:
            if len(payload) == 1:
                bad(1002, "close frame with a 1-byte body")
            elif len(payload) >= 2:
                code = int.from_bytes(payload[:2], "big")
                if not is_valid_close_code(code):
                    bad(1002, f"close code {code} may not be sent")
                try:
                    payload[2:].decode("utf-8")
                except UnicodeDecodeError:
                    bad(1007, "close reason is not UTF-8")
        if opcode == 0x1 or (opcode == 0x0 and message is not None and message_text):
            if opcode == 0x1:
                decoder = codecs.getincrementaldecoder("utf-8")()
            assert decoder is not None
            if not _utf8_ok(decoder, payload, fin):
                bad(1007, "text that is not UTF-8")

        if codes:
            result.close_codes = frozenset(codes)
            result.reason = "; ".join(reasons) or "message over the server's size limit"
            result.frame_index = index
            return result

        if opcode in DATA_OPCODES:
            if opcode != 0x0:
                message, message_text, size = [], opcode == 0x1, 0
            assert message is not None
            message.append(payload)
            size += length
            if fin:
                result.echoes.append((message_text, b"".join(message)))
                message, decoder, size = None, None, 0
        elif opcode == 0x9:
            result.pongs.append(payload)
        elif opcode == 0x8:
            # an empty close is answered with an empty one (1005) or with 1000
            echoed = {int.from_bytes(payload[:2], "big")} if len(payload) >= 2 else {1005, 1000}
            allowed = set(echoed)
            if message is not None:
                allowed.add(1002)
            result.close_codes = frozenset(allowed)
            result.client_closed = True
            result.reason = "the client closed"
            result.frame_index = index
            return result
        index += 1
    result.message_in_progress = message is not None
    return result
