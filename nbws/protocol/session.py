"""The server side of one WebSocket connection, with no I/O.

Theory of operation: :class:`Session` wraps ``websockets``' Sans-I/O ``ServerProtocol``
(which parses frames, checks masking, reserved bits, opcodes, control-frame rules,
fragmentation order, close codes and sizes) and adds what RFC 6455 asks of a server and
that layer leaves to its caller:

- UTF-8 validation of text messages, incrementally across fragments, failing as soon as
  an invalid sequence is seen (close 1007);
- version negotiation (426 with ``Sec-WebSocket-Version: 13``);
- a per-connection inbound rate limit (close 1008);
- subprotocol selection in the server's order, accepting clients that offer none;
- the frame tap, and pre-encoded frames for fan-out.

A driver (``nbws.transport``) feeds it bytes with :meth:`receive_data`, writes what
:meth:`data_to_send` returns (``b""`` means: half-close the socket), and acts on
:meth:`events_received`. States: CONNECTING → OPEN → CLOSING → CLOSED; sending in CLOSING
or CLOSED raises :class:`~nbws.errors.InvalidState` and nothing reaches the wire.
"""

from __future__ import annotations

import codecs
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from websockets.exceptions import InvalidState as _WsInvalidState
from websockets.exceptions import PayloadTooBig
from websockets.exceptions import ProtocolError as _WsProtocolError
from websockets.extensions.base import Extension, ServerExtensionFactory
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.typing import ExtensionName, Subprotocol

from ..errors import CloseCode, InvalidState, truncate_reason
from . import _compat
from ._compat import set_frame_limit
from .events import CloseReceived, Event, Fragment, Ping, Pong
from .framing import MAX_CONTROL_PAYLOAD, parse_frame_header
from .limits import Limits, RateLimiter
from .tap import PREVIEW_BYTES, FrameRecord, FrameTap

if TYPE_CHECKING:
    from ..config import Nbws

__all__ = ["Response", "Session", "State", "serialize_request"]

# websockets logs every open and close at INFO; nbws logs connections itself (nbws.access,
# nbws.server), so its own messages are kept to warnings unless a user lowers the level.
_wire_logger = logging.getLogger("nbws.wire")
if _wire_logger.level == logging.NOTSET:
    _wire_logger.setLevel(logging.WARNING)

_TEXT, _BINARY, _CONT = Opcode.TEXT, Opcode.BINARY, Opcode.CONT
_PING, _PONG, _CLOSE = Opcode.PING, Opcode.PONG, Opcode.CLOSE
_utf8_decoder = codecs.getincrementaldecoder("utf-8")


def _check_control(data: bytes, kind: str) -> None:
    if len(data) > MAX_CONTROL_PAYLOAD:
        raise ValueError(f"a {kind} payload is at most {MAX_CONTROL_PAYLOAD} bytes")


def _select_in_server_order(
    protocol: ServerProtocol, offered: Sequence[Subprotocol]
) -> Subprotocol | None:
    for candidate in protocol.available_subprotocols or ():
        if candidate in offered:
            return candidate
    return None


def _deflate_factory(settings: Mapping[str, Any]) -> ServerExtensionFactory:
    allowed = {
        "server_no_context_takeover",
        "client_no_context_takeover",
        "server_max_window_bits",
        "client_max_window_bits",
        "compress_settings",
    }
    unknown = set(settings) - allowed
    if unknown:
        raise ValueError(f"unknown permessage-deflate settings: {sorted(unknown)}")
    return ServerPerMessageDeflateFactory(**settings)


class _InboundCheck(Extension):
    """Checks each inbound data frame while websockets parses it.

    websockets calls ``decode`` on every frame (after decompression) before it parses the
    next one, so a failure raised here stops the parser at once: no later frame of the
    same read is processed (RFC 6455 section 7.1.7). Never negotiated; frames pass through
    unchanged.

    - UTF-8: text is decoded incrementally, so invalid data fails the connection (1007)
      at the first bad byte, also across fragment boundaries.
    - Size: websockets refuses a frame from its header when it is over
      ``max_fragment_size``, which is set here before every frame to what the message may
      still grow by, capped by the frame limit. The message part is never set below 125
      bytes, because a control frame between fragments is not part of the message; a
      data frame within those 125 bytes is refused here (1009) once read.

    Frames that break framing rules (RSV bits, a message inside a message, a continuation
    without a start) are left alone: websockets refuses them next (1002).
    """

    name = ExtensionName("nbws-inbound-check")

    def __init__(
        self, protocol: ServerProtocol, max_message_size: int | None, max_frame_size: int | None
    ) -> None:
        self._protocol = protocol
        self._max_message = max_message_size
        self._max_frame = max_frame_size
        self._decoder: codecs.IncrementalDecoder | None = None
        self._in_message = False
        self._size = 0  # bytes of the message in flight
        self.rejected: Frame | None = None  # the frame that failed, for the tap
        self._allow()

    def _allow(self) -> None:
        """Set the header-checked limit for the next frame."""
        limit = None if self._max_message is None else max(self._max_message - self._size, 125)
        if self._max_frame is not None:
            limit = self._max_frame if limit is None else min(limit, self._max_frame)
        set_frame_limit(self._protocol, limit, self._size)

    def _check_size(self, size: int) -> None:
        if self._max_frame is not None and size > self._max_frame:
            raise PayloadTooBig(size, self._max_frame)
        if self._max_message is not None and self._size + size > self._max_message:
            raise PayloadTooBig(size, self._max_message - self._size)

    def decode(self, frame: Frame, *, max_size: int | None = None) -> Frame:
        opcode = frame.opcode
        if frame.rsv1 or frame.rsv2 or frame.rsv3:
            return frame
        try:
            if opcode is _TEXT or opcode is _BINARY:
                if self._in_message:
                    return frame
                self._size = 0
                self._check_size(len(frame.data))
                if opcode is _TEXT:
                    if frame.fin:
                        bytes(frame.data).decode("utf-8")
                    else:
                        self._decoder = _utf8_decoder()
                        self._decoder.decode(frame.data, False)
                self._in_message = not frame.fin
                self._size = 0 if frame.fin else len(frame.data)
                self._allow()
            elif opcode is _CONT and self._in_message:
                self._check_size(len(frame.data))
                if self._decoder is not None:
                    self._decoder.decode(frame.data, frame.fin)
                if frame.fin:
                    self._in_message = False
                    self._decoder = None
                    self._size = 0
                else:
                    self._size += len(frame.data)
                self._allow()
        except UnicodeDecodeError as exc:
            self.rejected = frame
            raise UnicodeDecodeError(
                "utf-8",
                exc.object,
                exc.start,
                exc.end,
                f"invalid UTF-8 in text message: {exc.reason}",
            ) from None
        except PayloadTooBig:
            self.rejected = frame
            raise
        return frame

    def encode(self, frame: Frame) -> Frame:
        return frame


class _WireView(Extension):
    """Wraps the outermost negotiated extension to note, while the tap is watched, each
    inbound frame's RSV bits and payload length as they were on the wire (decoding a
    compressed frame clears RSV1 and changes the length)."""

    def __init__(self, inner: Extension, tap: FrameTap) -> None:
        self.inner = inner
        self.name = inner.name
        self.tap = tap
        self.seen: deque[tuple[tuple[bool, bool, bool], int]] = deque()

    def decode(self, frame: Frame, *, max_size: int | None = None) -> Frame:
        if self.tap.active:
            self.seen.append(((frame.rsv1, frame.rsv2, frame.rsv3), len(frame.data)))
        return self.inner.decode(frame, max_size=max_size)

    def encode(self, frame: Frame) -> Frame:
        return self.inner.encode(frame)


class Session:
    """One server-side WebSocket connection's protocol state.

    Args:
        subprotocols: subprotocols this endpoint offers, preferred first.
        compression: permessage-deflate settings, or None to refuse the extension.
        limits: inbound size and rate limits (default: ``nbws.config.Nbws``'s defaults;
            :meth:`from_config` takes them from a configured one).
        tap: frame tap to record into when someone watches it.
        clock: time source for tap records (seconds).
    """

    # One per open connection: slots keep it small, and nothing from the handshake
    # request (headers) is kept once it has been answered.
    __slots__ = (
        "_clock",
        "_events",
        "_in_text",
        "_inbound",
        "_negotiated",
        "_out",
        "_protocol",
        "_rate",
        "_wire",
        "tap",
    )

    def __init__(
        self,
        *,
        subprotocols: Sequence[str] = (),
        compression: Mapping[str, Any] | None = None,
        limits: Limits | None = None,
        tap: FrameTap | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if limits is None:
            limits = Limits.default()
        extensions = [_deflate_factory(compression)] if compression is not None else None
        # Sizes are checked from each frame header by websockets, with limits that
        # _InboundCheck sets frame by frame (the parser's own limits are off).
        self._protocol = _compat.server_protocol(
            extensions=extensions,
            subprotocols=[Subprotocol(s) for s in subprotocols],
            select_subprotocol=_select_in_server_order,
            logger=_wire_logger,
        )
        self._inbound = _InboundCheck(
            self._protocol, limits.max_message_size or None, limits.max_frame_size or None
        )
        rate, burst = limits.rate_limit, limits.rate_limit_burst
        self._rate = RateLimiter(rate, burst) if rate > 0 else None
        self._in_text = False
        self._negotiated: tuple[Extension, ...] = ()
        self._events: list[Event] = []
        self._out: list[bytes] = []
        self.tap = tap if tap is not None else FrameTap(0)
        self._wire: _WireView | None = None
        self._clock = clock

    @classmethod
    def from_config(
        cls,
        config: Nbws,
        endpoint: str,
        *,
        tap: FrameTap | None = None,
        clock: Callable[[], float] = time.time,
    ) -> Session:
        """A session for ``endpoint`` with everything ``config`` (an ``nbws.config.Nbws``)
        sets: subprotocols, compression, size and rate limits, tap size."""
        from ..config import endpoint_compression

        return cls(
            subprotocols=config.subprotocols.get(endpoint, ()),
            compression=endpoint_compression(config, endpoint),
            limits=Limits.from_config(config),
            tap=tap if tap is not None else FrameTap(config.frame_tap_size),
            clock=clock,
        )

    # --- handshake -------------------------------------------------------------------

    def receive_request(self, raw_request: bytes) -> Response:
        """Run the opening handshake on a serialised HTTP request.

        Args:
            raw_request: request line and handshake headers, ending with an empty line.

        Returns:
            The response to send. For a 101 it is already queued in :meth:`data_to_send`
            and the session is OPEN; any other status is for the caller to send as a plain
            HTTP response (the session stays CONNECTING and is discarded).
        """
        protocol = self._protocol
        protocol.receive_data(raw_request)
        events = protocol.events_received()
        if not events or not isinstance(events[0], Request):
            problem = protocol.handshake_exc or "incomplete HTTP request"
            return protocol.reject(400, f"Malformed WebSocket handshake: {problem}\n")
        request = events[0]
        version = request.headers.get("Sec-WebSocket-Version")
        if version is not None and version.strip() != "13":
            response = protocol.reject(
                426, f"Unsupported WebSocket version {version!r}: this server speaks 13.\n"
            )
            response.headers["Sec-WebSocket-Version"] = "13"
            return response
        response = protocol.accept(request)
        if response.status_code == 101:
            protocol.send_response(response)
            self._negotiated = tuple(protocol.extensions)
            if protocol.extensions:
                # Extensions decode in reverse order: the last one sees the wire frame...
                self._wire = _WireView(protocol.extensions[-1], self.tap)
                protocol.extensions[-1] = self._wire
            # ...and the first one sees it decoded.
            protocol.extensions.insert(0, self._inbound)
            # Taken now so that a tap already watching never parses the HTTP response
            # as frames.
            self._out.extend(protocol.data_to_send())
            # websockets' parser holds on to the request for as long as the connection
            # lasts; its headers (a kilobyte or two) are answered and no longer needed.
            request.headers.clear()
        return response

    # --- state -------------------------------------------------------------------------

    @property
    def state(self) -> State:
        """CONNECTING, OPEN, CLOSING or CLOSED."""
        return self._protocol.state

    @property
    def subprotocol(self) -> str | None:
        """The negotiated subprotocol, if any."""
        return self._protocol.subprotocol

    @property
    def compressed(self) -> bool:
        """True when permessage-deflate was negotiated."""
        return bool(self._negotiated)

    @property
    def extensions_header(self) -> str:
        """Names of negotiated extensions, for logs."""
        return ", ".join(ext.name for ext in self._negotiated)

    @property
    def sending_fragmented(self) -> bool:
        """True while an outbound fragmented message is in flight."""
        return _compat.sending_fragmented(self._protocol)

    @property
    def receiving_fragmented(self) -> bool:
        """True while an inbound fragmented message is in flight."""
        return _compat.receiving_fragmented(self._protocol)

    @property
    def close_code(self) -> int | None:
        """Close code the peer sent; 1006 once closed without one; None while open."""
        rcvd = self._protocol.close_rcvd
        if rcvd is not None:
            return int(rcvd.code)
        return 1006 if self._protocol.state is State.CLOSED else None

    @property
    def close_reason(self) -> str:
        rcvd = self._protocol.close_rcvd
        return rcvd.reason if rcvd is not None else ""

    @property
    def sent_close_code(self) -> int | None:
        """Close code this side sent, if any."""
        sent = self._protocol.close_sent
        return int(sent.code) if sent is not None else None

    @property
    def sent_close_reason(self) -> str:
        sent = self._protocol.close_sent
        return sent.reason if sent is not None else ""

    def close_expected(self) -> bool:
        """True when the TCP connection should close soon (arm a close timeout)."""
        return self._protocol.close_expected()

    # --- receiving ---------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> None:
        """Feed bytes read from the socket; then call :meth:`data_to_send` and
        :meth:`events_received`.

        Args:
            data: bytes as read.
            now: current time in seconds (drives the rate limit).
        """
        protocol = self._protocol
        if self._wire is not None:
            self._wire.seen.clear()  # left over only from a frame that failed to decode
        protocol.receive_data(data)
        frames = protocol.events_received()
        if frames:
            self._process(frames, now)
        if self.tap.active:
            rejected = self._inbound.rejected
            if rejected is not None:
                self._inbound.rejected = None
                self._record_in(rejected)
            self._record_out_last()  # pongs, close echoes and failures queued by the parser

    def receive_eof(self) -> None:
        """The peer closed its side of the TCP connection."""
        self._protocol.receive_eof()

    def events_received(self) -> list[Event]:
        """Events produced since the last call, in order."""
        events, self._events = self._events, []
        return events

    def _process(self, frames: list[Any], now: float) -> None:
        tap_on = self.tap.active
        append = self._events.append
        for frame in frames:
            if tap_on:
                self._record_in(frame)
            opcode = frame.opcode
            if opcode is _TEXT or opcode is _BINARY:
                if self._rate is not None and not self._rate.allow(now):
                    self.fail(
                        CloseCode.POLICY_VIOLATION,
                        f"rate limit exceeded: more than {self._rate.rate:g} messages/s",
                    )
                    return
                text = opcode is _TEXT  # UTF-8 was checked while parsing (_InboundCheck)
                self._in_text = text
                append(Fragment(text, frame.data, True, frame.fin))
            elif opcode is _CONT:
                append(Fragment(self._in_text, frame.data, False, frame.fin))
            elif opcode is _PING:
                append(Ping(frame.data))
            elif opcode is _PONG:
                append(Pong(frame.data))
            elif opcode is _CLOSE:
                rcvd = self._protocol.close_rcvd
                if rcvd is not None:
                    append(CloseReceived(int(rcvd.code), rcvd.reason))

    # --- sending -------------------------------------------------------------------------

    def send_text(self, data: bytes, fin: bool = True) -> None:
        """Queue a text frame (``data`` is UTF-8); ``fin=False`` starts a fragmented message."""
        self._send("text frame", lambda: self._protocol.send_text(data, fin))

    def send_binary(self, data: bytes, fin: bool = True) -> None:
        """Queue a binary frame; ``fin=False`` starts a fragmented message."""
        self._send("binary frame", lambda: self._protocol.send_binary(data, fin))

    def send_continuation(self, data: bytes, fin: bool) -> None:
        """Queue the next fragment of the message in flight."""
        self._send("continuation frame", lambda: self._protocol.send_continuation(data, fin))

    def send_ping(self, data: bytes = b"") -> None:
        """Queue a ping (payload at most 125 bytes)."""
        _check_control(data, "ping")
        self._send("ping frame", lambda: self._protocol.send_ping(data))

    def send_pong(self, data: bytes = b"") -> None:
        """Queue an unsolicited pong (payload at most 125 bytes)."""
        _check_control(data, "pong")
        self._send("pong frame", lambda: self._protocol.send_pong(data))

    def send_close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake with ``code`` and ``reason``.

        Raises:
            InvalidState: the connection is already CLOSING or CLOSED.
            ValueError: ``code`` may not be sent on the wire.
        """
        reason = truncate_reason(reason)
        self._send(
            "a close frame",
            lambda: self._protocol.send_close(code, reason),
            refused=f"invalid close code {code}",
        )

    def fail(self, code: int, reason: str = "") -> None:
        """Fail the connection: send a close frame if still OPEN, half-close, drop input."""
        self._protocol.fail(code, truncate_reason(reason))
        if self.tap.active:
            self._record_out_last()

    def _send(self, what: str, send: Callable[[], None], refused: str | None = None) -> None:
        """Run one of websockets' ``send_*`` and turn its errors into nbws's: a send in
        the wrong state is :class:`InvalidState`; a refused value is ``ValueError`` with
        ``refused`` as its message, or :class:`InvalidState` without one."""
        try:
            send()
        except _WsInvalidState as exc:
            raise InvalidState(f"cannot send {what}: {exc}") from None
        except _WsProtocolError as exc:
            if refused is not None:
                raise ValueError(f"{refused}: {exc}") from None
            raise InvalidState(f"cannot send {what}: {exc}") from None
        if self.tap.active:
            self._record_out_last()

    @property
    def can_send_encoded(self) -> bool:
        """Whether pre-encoded frames from :func:`~nbws.protocol.framing.encode_frame` may be
        sent now.

        Only on OPEN connections without compression and with no outbound fragmented
        message in flight (a frame in between would corrupt it).
        """
        protocol = self._protocol
        return (
            protocol.state is State.OPEN
            and not self._negotiated
            and not _compat.sending_fragmented(protocol)
        )

    def send_encoded(self, frame: bytes) -> None:
        """Queue bytes made by :func:`~nbws.protocol.framing.encode_frame` or
        :func:`~nbws.protocol.framing.encode_message` (one or more whole messages, joined),
        keeping order with other sends.

        Raises:
            InvalidState: :attr:`can_send_encoded` is False.
        """
        if not self.can_send_encoded:
            raise InvalidState(
                f"cannot send a pre-encoded frame: connection is {self.state.name.lower()}"
                if self.state is not State.OPEN
                else "cannot send a pre-encoded frame now (compression or a fragmented "
                "message in flight)"
            )
        pending = self._protocol.data_to_send()
        if pending:
            self._out.extend(pending)
        self._out.append(frame)
        if self.tap.active:
            self._record_out(frame)

    def data_to_send(self) -> list[bytes]:
        """Bytes to write, in order. An empty ``b""`` means: half-close the socket."""
        pending = self._protocol.data_to_send()
        if self._out:
            out = self._out
            self._out = []
            out.extend(pending)
            return out
        return pending

    # --- frame tap ---------------------------------------------------------------------

    def _record_in(self, frame: Frame) -> None:
        rsv, length = (frame.rsv1, frame.rsv2, frame.rsv3), len(frame.data)
        if self._wire is not None and self._wire.seen:
            rsv, length = self._wire.seen.popleft()
        self.tap.record(
            FrameRecord(
                time=self._clock(),
                direction="in",
                opcode=int(frame.opcode),
                fin=frame.fin,
                rsv=rsv,
                masked=True,
                length=length,
                preview=bytes(frame.data[:PREVIEW_BYTES]),
            )
        )

    def _record_out_last(self) -> None:
        writes = self._protocol.data_to_send()
        if writes:
            self._out.extend(writes)
            for chunk in writes:
                if chunk:
                    self._record_out(chunk)

    def _record_out(self, chunk: bytes) -> None:
        """Record every frame in ``chunk`` (one frame, or several joined ones)."""
        position, end = 0, len(chunk)
        while position < end:
            opcode, fin, rsv, masked, length, header = parse_frame_header(chunk, position)
            start = position + header
            self.tap.record(
                FrameRecord(
                    time=self._clock(),
                    direction="out",
                    opcode=opcode,
                    fin=fin,
                    rsv=rsv,
                    masked=masked,
                    length=length,
                    preview=bytes(chunk[start : start + min(length, PREVIEW_BYTES)]),
                )
            )
            position = start + length


def serialize_request(method: str, uri: str, headers: Sequence[tuple[str, str]]) -> bytes:
    """Serialise an already-parsed HTTP request for :meth:`Session.receive_request`.

    Only the headers the handshake reads are kept, so a large Cookie that the HTTP layer
    accepted cannot trip the WebSocket parser's header limits.
    """
    keep = {
        "host",
        "upgrade",
        "connection",
        "origin",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-protocol",
        "sec-websocket-extensions",
    }
    lines = [f"{method} {uri} HTTP/1.1"]
    for name, value in headers:
        if name.lower() in keep:
            lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
