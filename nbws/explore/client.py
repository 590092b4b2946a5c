"""A blocking raw WebSocket client for exploring servers from a notebook kernel.

Theory of operation: :func:`connect` opens a plain socket (TLS for ``wss://``), runs the
handshake in the calling thread and hands the socket to a :class:`RawConnection`. One
daemon thread reads: it parses whatever the server sends (:class:`FrameParser` accepts any
frame), records it, answers pings and closes, and wakes waiters. Sending happens in the
caller's thread; frames are built by :func:`build_frame`, so anything can be sent. Nothing
touches the kernel's event loop, and every wait has a timeout, so a silent or hostile
server can never hang the kernel.

Automatic replies (pongs, the close reply) never interleave with a frame in progress: the
reader hands them to whichever thread writes next, or writes them itself when the socket is
free.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import ssl
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from .._redact import redact_headers, redact_text, redact_url
from ..errors import ConnectionClosed
from ..protocol.session import State
from ..protocol.tap import PREVIEW_BYTES, FrameRecord, FrameTap
from .display import frame_table_html, frame_table_text
from .frames import (
    FrameParser,
    FrameTooLarge,
    LengthForm,
    ParsedFrame,
    build_frame,
    close_payload,
    opcode_from,
    parse_close_payload,
    split_payload,
)
from .handshake import (
    HandshakeError,
    Headers,
    HttpResponse,
    accept_key,
    build_request,
    open_socket,
    parse_url,
    read_response,
)

__all__ = ["RawConnection", "WriteTimeout", "connect"]

log = logging.getLogger("nbws.explore")

FrameFilter = int | str | Callable[[ParsedFrame], bool]
FrameListener = Callable[[FrameRecord], None]

_CLOSE, _PING, _PONG = 0x8, 0x9, 0xA
_POLL = 0.1  # seconds between checks of the stop flag while reading


class WriteTimeout(TimeoutError):
    """A write made no progress for the timeout: the server stopped reading.

    Attributes:
        written: bytes of this write that reached the socket.
        remaining: bytes not written yet; :meth:`RawConnection.resume_write` sends them.
    """

    def __init__(self, message: str, written: int, remaining: bytes) -> None:
        super().__init__(message)
        self.written = written
        self.remaining = remaining


def _matcher(what: FrameFilter) -> Callable[[ParsedFrame], bool]:
    if callable(what):
        return what
    code = opcode_from(what)
    return lambda frame: frame.opcode == code


class _SafeListener:
    """Calls a listener and logs (instead of raising into the reader) when it fails; the
    log line is redacted, since a listener's error may well quote the connection's URL."""

    def __init__(self, listener: FrameListener) -> None:
        self.listener = listener

    def __call__(self, record: FrameRecord) -> None:
        try:
            self.listener(record)
        except Exception as exc:
            trace = redact_text("".join(traceback.format_exception(exc)).rstrip())
            log.error("frame listener %r failed\n%s", self.listener, trace)


class RawConnection:
    """An open connection: send any frame, see every frame, never block for long.

    Made by :func:`connect`. Attributes of interest: :attr:`records` (every frame in and
    out), :attr:`state`, :attr:`close_code`/:attr:`close_reason` (what the server sent),
    :attr:`request_headers` and :attr:`response` (the handshake).
    """

    def __init__(
        self,
        sock: socket.socket,
        *,
        url: str,
        request_headers: list[tuple[str, str]],
        response: HttpResponse,
        initial_data: bytes = b"",
        timeout: float = 5.0,
        auto_pong: bool = True,
        auto_close: bool = True,
        capacity: int = 10_000,
        max_payload: int = 64 * 1024 * 1024,
    ) -> None:
        self.url = url
        self.request_headers = request_headers
        self.response = response
        self.subprotocol = response.header("Sec-WebSocket-Protocol")
        self.timeout = timeout
        self.auto_pong = auto_pong
        self.auto_close = auto_close
        self.opened_at = time.time()
        self.tap = FrameTap(capacity)
        self.tap.watch()
        self.close_code: int | None = None
        self.close_reason = ""
        self.close_frame_payload: bytes | None = None
        self.sent_close_code: int | None = None
        self.error: BaseException | None = None
        self._sock = sock
        self._parser = FrameParser("in", max_payload=max_payload)
        self._state = State.OPEN
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._send_lock = threading.Lock()
        self._received: list[ParsedFrame] = []
        self._consumed: set[int] = set()
        self._first_unconsumed = 0
        self._messages: deque[str | bytes] = deque()
        self._assembling: tuple[int, list[bytes]] | None = None
        self._controls: list[tuple[int, bytes]] = []
        self._unsent = b""
        self._close_sent = False
        self._socket_closed = False
        self._stop = False
        self._reading = threading.Event()
        self._reading.set()
        self._listeners: dict[FrameListener, _SafeListener] = {}
        self._reader = threading.Thread(
            target=self._read_loop, args=(initial_data,), name="nbws-explore-reader", daemon=True
        )
        self._reader.start()

    # --- state --------------------------------------------------------------------------

    @property
    def state(self) -> State:
        """OPEN, CLOSING (a close frame was sent or received) or CLOSED (TCP gone)."""
        return self._state

    @property
    def records(self) -> list[FrameRecord]:
        """Every frame in and out, in order (the oldest dropped past ``capacity``)."""
        with self._lock:
            return list(self.tap)

    @property
    def received(self) -> list[ParsedFrame]:
        """The frames received, with their whole payloads (the last ``capacity``)."""
        with self._lock:
            return list(self._received)

    def on_frame(self, listener: FrameListener) -> None:
        """Call ``listener(record)`` for each frame from now on (from the reader thread for
        frames in, from the sending thread for frames out); exceptions are logged."""
        wrapped = _SafeListener(listener)
        self._listeners[listener] = wrapped
        self.tap.watch(wrapped)

    def off_frame(self, listener: FrameListener) -> None:
        """Stop calling ``listener``."""
        wrapped = self._listeners.pop(listener, None)
        if wrapped is not None:
            self.tap.unwatch(wrapped)

    def reply_times(self) -> list[tuple[FrameRecord, FrameRecord, float]]:
        """For each frame sent, the first frame received after it and the seconds between."""
        pairs = []
        reply: FrameRecord | None = None
        for record in reversed(self.records):
            if record.direction == "in":
                reply = record
            elif reply is not None:
                pairs.append((record, reply, reply.time - record.time))
        pairs.reverse()
        return pairs

    # --- sending ------------------------------------------------------------------------

    def send_frame(
        self,
        opcode: int | str,
        payload: bytes | str = b"",
        fin: bool = True,
        rsv: Sequence[bool | int] = (0, 0, 0),
        mask: bool = True,
        length: int | None = None,
        *,
        mask_key: bytes | None = None,
        length_form: LengthForm | None = None,
        timeout: float | None = None,
    ) -> FrameRecord:
        """Send one frame built by :func:`~nbws.explore.frames.build_frame`: any opcode,
        RSV bits, masking and declared ``length``, valid or not.

        Returns:
            The frame's record (as the recorder keeps it).

        Raises:
            ConnectionClosed: the TCP connection is gone.
            WriteTimeout: the server stopped reading for ``timeout`` seconds.
        """
        code = opcode_from(opcode)
        data = payload.encode("utf-8") if isinstance(payload, str) else bytes(payload)
        rsv_bits = tuple(bool(bit) for bit in rsv)
        wire = build_frame(
            code,
            data,
            fin=fin,
            rsv=rsv_bits,
            mask=mask,
            mask_key=mask_key,
            length=length,
            length_form=length_form,
        )
        declared = len(data) if length is None else length
        with self._send_lock:
            record = self._record_out(code, data, fin, rsv_bits, mask, declared)
            self._write_locked(wire, timeout)
        self._flush_pending()
        return record

    def send_raw(self, data: bytes, *, timeout: float | None = None) -> int:
        """Write bytes as they are (no framing, not recorded): junk, or a frame by hand.

        Returns:
            Bytes written.
        """
        with self._send_lock:
            self._write_locked(bytes(data), timeout)
        self._flush_pending()
        return len(data)

    def resume_write(self, timeout: float | None = None) -> int:
        """Finish a write that raised :class:`WriteTimeout`; returns the bytes written."""
        with self._send_lock:
            pending = len(self._unsent)
            self._write_locked(b"", timeout)
        self._flush_pending()
        return pending

    def text(self, data: str | bytes, *, fin: bool = True) -> FrameRecord:
        """Send a text frame (``bytes`` are sent as they are, valid UTF-8 or not)."""
        return self.send_frame(0x1, data, fin=fin)

    def binary(self, data: bytes, *, fin: bool = True) -> FrameRecord:
        """Send a binary frame."""
        return self.send_frame(0x2, data, fin=fin)

    def continuation(self, data: bytes | str, *, fin: bool = True) -> FrameRecord:
        """Send a continuation frame."""
        return self.send_frame(0x0, data, fin=fin)

    def fragments(
        self, data: str | bytes | Sequence[str | bytes], n: int = 2, *, opcode: int | None = None
    ) -> list[FrameRecord]:
        """Send one message as fragments.

        Args:
            data: the message, cut into ``n`` pieces of nearly equal size; or a sequence of
                pieces sent as given (empty pieces make 0-length fragments).
            n: number of fragments when ``data`` is one string or bytes.
            opcode: first frame's opcode; default TEXT for ``str`` data, else BINARY.
        """
        if isinstance(data, (str, bytes, bytearray)):
            text = isinstance(data, str)
            raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
            pieces = split_payload(raw, n)
        else:
            text = bool(data) and isinstance(data[0], str)
            pieces = [p.encode("utf-8") if isinstance(p, str) else bytes(p) for p in data]
            if not pieces:
                pieces = [b""]
        first = opcode if opcode is not None else (0x1 if text else 0x2)
        last = len(pieces) - 1
        return [
            self.send_frame(first if i == 0 else 0x0, piece, fin=i == last)
            for i, piece in enumerate(pieces)
        ]

    def ping(self, payload: bytes | str = b"") -> FrameRecord:
        """Send a ping (RFC 6455 allows at most 125 bytes; larger ones are sent anyway)."""
        return self.send_frame(_PING, payload)

    def pong(self, payload: bytes | str = b"") -> FrameRecord:
        """Send an unsolicited pong."""
        return self.send_frame(_PONG, payload)

    def close(
        self,
        code: int | None = 1000,
        reason: str | bytes = "",
        *,
        wait: bool = True,
        timeout: float | None = None,
    ) -> tuple[int | None, str]:
        """Send a close frame (any code; ``None`` for an empty body) and wait for the end.

        Waits up to ``timeout`` for the server's close frame and its TCP close, then drops
        the connection if it is still there.

        Returns:
            ``(close_code, close_reason)`` the server sent (1006: closed without a close
            frame; None: not closed yet, with ``wait=False``).
        """
        if not self._close_sent and not self._socket_closed:
            with contextlib.suppress(ConnectionClosed, TimeoutError):
                self.send_frame(_CLOSE, close_payload(code, reason), timeout=timeout)
        if wait:
            try:
                self.wait_closed(timeout)
            except TimeoutError:
                self.abort()
        return self.close_code, self.close_reason

    def send_eof(self) -> None:
        """Half-close: shut the sending side of TCP, so the server reads EOF (reading goes on)."""
        with self._send_lock, contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_WR)

    def abort(self) -> None:
        """Drop the TCP connection now (no close frame)."""
        self._stop = True
        self._reading.set()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        if threading.current_thread() is not self._reader:
            self._reader.join(max(self.timeout, 1.0))
        self._close_socket()

    def __enter__(self) -> RawConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._state is not State.CLOSED:
            self.close(timeout=min(self.timeout, 2.0))
        self.abort()

    # --- receiving ------------------------------------------------------------------------

    def wait_for(self, what: FrameFilter, timeout: float | None = None) -> ParsedFrame:
        """The next received frame that matches ``what`` and was not returned before.

        Args:
            what: an opcode (``0xA``), an opcode name (``"pong"``), or a predicate on
                :class:`~nbws.explore.frames.ParsedFrame`.
            timeout: seconds (default: the connection's timeout).

        Raises:
            TimeoutError: nothing matched in time.
            ConnectionClosed: the connection closed and nothing matched.
        """
        match = _matcher(what)
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        with self._changed:
            while True:
                found = self._take_first(match)
                if found is not None:
                    return found
                if self._state is State.CLOSED:
                    raise ConnectionClosed(self.close_code, self.close_reason, self.sent_close_code)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no frame matching {what!r} within the timeout")
                self._changed.wait(remaining)

    def _take_first(self, match: Callable[[ParsedFrame], bool]) -> ParsedFrame | None:
        received, consumed = self._received, self._consumed
        for index in range(self._first_unconsumed, len(received)):
            if index in consumed:
                continue
            if match(received[index]):
                consumed.add(index)
                while self._first_unconsumed in consumed:
                    consumed.discard(self._first_unconsumed)
                    self._first_unconsumed += 1
                return received[index]
        return None

    def receive(self, timeout: float | None = None) -> str | bytes:
        """The next whole data message from the server (reassembled from fragments).

        Text that is valid UTF-8 comes back as ``str``; binary, and text that is not UTF-8,
        as ``bytes``.

        Raises:
            TimeoutError: no message in time.
            ConnectionClosed: the connection closed with no message left.
        """
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        with self._changed:
            while not self._messages:
                if self._state is State.CLOSED or self.close_code is not None:
                    raise ConnectionClosed(self.close_code, self.close_reason, self.sent_close_code)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("no message within the timeout")
                self._changed.wait(remaining)
            return self._messages.popleft()

    def wait_closed(self, timeout: float | None = None) -> tuple[int | None, str]:
        """Wait until the TCP connection is gone; returns the server's ``(code, reason)``.

        Raises:
            TimeoutError: still open after ``timeout``.
        """
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        with self._changed:
            while self._state is not State.CLOSED:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("the connection is still open")
                self._changed.wait(remaining)
        return self.close_code, self.close_reason

    def pause_reading(self) -> None:
        """Stop reading from the socket (a slow reader): the server's writes pile up."""
        self._reading.clear()

    def resume_reading(self) -> None:
        """Read again after :meth:`pause_reading`."""
        self._reading.set()

    # --- display ----------------------------------------------------------------------------

    @property
    def shown_url(self) -> str:
        """:attr:`url` as it may be shown: tokens and passwords redacted (a notebook
        saves what it displays)."""
        return redact_url(self.url)

    def _summary(self) -> str:
        state = self._state.name
        text = f"RawConnection {self.shown_url} {state}"
        if self.close_code is not None:
            text += f", server closed with {self.close_code}"
            if self.close_reason:
                text += f" {self.close_reason!r}"
        return text

    def __repr__(self) -> str:
        lines = [self._summary(), ""]
        lines += [f"> {name}: {value}" for name, value in redact_headers(self.request_headers)]
        lines.append(f"< HTTP/1.1 {self.response.status} {self.response.reason}")
        lines += [f"< {name}: {value}" for name, value in redact_headers(self.response.headers)]
        lines += ["", frame_table_text(self.records, self.opened_at)]
        return "\n".join(lines)

    def _ipython_display_(self) -> None:
        """In a notebook: a live FrameInspector (the HTML frame table when widgets are
        not available, e.g. in a terminal IPython)."""
        import importlib

        ipython: Any = importlib.import_module("IPython")
        shown: Any = importlib.import_module("IPython.display")
        display, html = shown.display, shown.HTML
        shell = ipython.get_ipython()
        if shell is not None and getattr(shell, "kernel", None) is not None:
            try:
                from ..widgets import inspect_connection
            except ImportError:
                pass
            else:
                display(inspect_connection(self))
                return
        display(html(self._repr_html_()))

    def _repr_html_(self) -> str:
        from html import escape

        request = "\n".join(f"{k}: {v}" for k, v in redact_headers(self.request_headers))
        response = "\n".join(
            [f"HTTP/1.1 {self.response.status} {self.response.reason}"]
            + [f"{k}: {v}" for k, v in redact_headers(self.response.headers)]
        )
        return (
            f"<div><b>{escape(self._summary())}</b>"
            f"<details><summary>handshake</summary><pre>{escape(request)}</pre>"
            f"<pre>{escape(response)}</pre></details>"
            f"{frame_table_html(self.records, self.opened_at)}</div>"
        )

    def to_dataframe(self) -> Any:
        """The frame records as a pandas DataFrame (needs pandas)."""
        import pandas as pd

        return pd.DataFrame([record.as_dict() for record in self.records])

    # --- internals: writing ------------------------------------------------------------------

    def _record_out(
        self, opcode: int, data: bytes, fin: bool, rsv: tuple[bool, ...], mask: bool, length: int
    ) -> FrameRecord:
        with self._changed:
            if self._socket_closed:
                raise ConnectionClosed(self.close_code, self.close_reason, self.sent_close_code)
            record = FrameRecord(
                time=time.time(),
                direction="out",
                opcode=opcode,
                fin=fin,
                rsv=(rsv[0], rsv[1], rsv[2]),
                masked=mask,
                length=length,
                preview=data[:PREVIEW_BYTES],
            )
            self.tap.record(record)
            if opcode == _CLOSE and not self._close_sent:
                self._close_sent = True
                self.sent_close_code = parse_close_payload(data)[0]
                if self._state is State.OPEN:
                    self._state = State.CLOSING
            self._changed.notify_all()
        return record

    def _write_locked(self, data: bytes, timeout: float | None) -> None:
        """Write ``data`` after any unfinished earlier write; the send lock is held."""
        if self._unsent:
            data, self._unsent = self._unsent + data, b""
        wait = self.timeout if timeout is None else timeout
        sock = self._sock
        view = memoryview(data)
        written = 0
        while written < len(view):
            if self._socket_closed:
                raise ConnectionClosed(self.close_code, self.close_reason, self.sent_close_code)
            try:
                _, ready, _ = select.select([], [sock], [], wait)
                if not ready:
                    raise TimeoutError
                written += sock.send(view[written : written + (1 << 20)])
            except (TimeoutError, ssl.SSLWantWriteError):
                self._unsent = bytes(view[written:])
                raise WriteTimeout(
                    f"the server read nothing for {wait:g} s ({written} of {len(view)} bytes "
                    "written)",
                    written,
                    self._unsent,
                ) from None
            except (OSError, ValueError) as exc:
                self.error = exc
                raise ConnectionClosed(
                    self.close_code or 1006, self.close_reason, self.sent_close_code
                ) from exc

    def _flush_pending(self) -> None:
        """Write queued automatic replies unless another thread is writing: that thread
        calls this again once it lets go of the socket, so no reply is left behind."""
        while self._controls and not self._unsent:
            if not self._send_lock.acquire(blocking=False):
                return
            try:
                self._flush_controls_locked()
            finally:
                self._send_lock.release()
            if self._socket_closed:
                return

    def _flush_controls_locked(self) -> None:
        """Write queued automatic replies; the send lock is held and no frame is half-sent."""
        while not self._unsent:
            with self._lock:
                if not self._controls:
                    return
                opcode, payload = self._controls.pop(0)
                if self._socket_closed or (opcode == _PONG and self._close_sent):
                    continue
                if opcode == _CLOSE and self._close_sent:
                    continue
            wire = build_frame(opcode, payload)
            try:
                self._record_out(opcode, payload, True, (False, False, False), True, len(payload))
                self._write_locked(wire, None)
            except (ConnectionClosed, TimeoutError):
                return

    # --- internals: reading ------------------------------------------------------------------

    def _read_loop(self, initial: bytes) -> None:
        sock = self._sock
        try:
            if initial:
                self._on_data(initial)
            while not self._stop:
                if not self._reading.is_set():
                    self._reading.wait(_POLL)
                    continue
                pending = sock.pending() if isinstance(sock, ssl.SSLSocket) else 0
                if not pending:
                    readable, _, _ = select.select([sock], [], [], _POLL)
                    if not readable:
                        continue
                try:
                    data = sock.recv(65536)
                except (TimeoutError, BlockingIOError, ssl.SSLWantReadError):
                    continue
                if not data:
                    break
                self._on_data(data)
        except (OSError, ValueError) as exc:
            if not self._stop:
                self.error = exc
        except FrameTooLarge as exc:
            self.error = exc
        finally:
            self._on_eof()

    def _on_data(self, data: bytes) -> None:
        frames = self._parser.receive_data(data, time.time())
        if not frames:
            return
        with self._changed:
            for frame in frames:
                self.tap.record(frame.record)
                self._received.append(frame)
                self._handle(frame)
            self._trim()
            self._changed.notify_all()
        self._flush_pending()

    def _trim(self) -> None:
        """Keep the last ``capacity`` received frames; the lock is held."""
        drop = len(self._received) - self.tap.capacity
        if drop <= 0:
            return
        del self._received[:drop]
        self._consumed = {i - drop for i in self._consumed if i >= drop}
        self._first_unconsumed = max(0, self._first_unconsumed - drop)

    def _handle(self, frame: ParsedFrame) -> None:
        """Update state for one received frame; the lock is held."""
        opcode = frame.opcode
        if opcode in (0x1, 0x2):
            self._assembling = (opcode, [frame.payload])
            if frame.fin:
                self._complete()
        elif opcode == 0x0:
            if self._assembling is not None:
                self._assembling[1].append(frame.payload)
                if frame.fin:
                    self._complete()
        elif opcode == _PING:
            if self.auto_pong and not self._close_sent:
                self._controls.append((_PONG, frame.payload))
        elif opcode == _CLOSE and self.close_frame_payload is None:
            payload = frame.payload
            self.close_frame_payload = payload
            code, reason = parse_close_payload(payload)
            self.close_code = 1005 if not payload else code
            self.close_reason = reason.decode("utf-8", "replace")
            if self._state is State.OPEN:
                self._state = State.CLOSING
            if self.auto_close and not self._close_sent:
                self._controls.append((_CLOSE, payload if code is not None else b""))

    def _complete(self) -> None:
        assert self._assembling is not None
        opcode, parts = self._assembling
        self._assembling = None
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        message: str | bytes = data
        if opcode == 0x1:
            try:
                message = data.decode("utf-8")
            except UnicodeDecodeError:
                message = data
        self._messages.append(message)

    def _on_eof(self) -> None:
        with self._changed:
            self._state = State.CLOSED
            if self.close_code is None:
                self.close_code = 1006
            self._changed.notify_all()
        self._close_socket()

    def _close_socket(self) -> None:
        with self._lock:
            if self._socket_closed:
                return
            self._socket_closed = True
            self._state = State.CLOSED
            if self.close_code is None:
                self.close_code = 1006
            self._changed.notify_all()
        with contextlib.suppress(OSError):
            self._sock.close()


def connect(
    url: str,
    *,
    headers: Headers | None = None,
    subprotocols: Sequence[str] | None = None,
    origin: str | None = None,
    timeout: float = 5.0,
    auto_pong: bool = True,
    auto_close: bool = True,
    receive_buffer: int | None = None,
    ssl_context: ssl.SSLContext | None = None,
    capacity: int = 10_000,
) -> RawConnection:
    """Open a raw WebSocket connection to ``url`` (and only there).

    Args:
        url: ``ws://`` or ``wss://`` URL; query options such as ``?token=...`` are sent.
        headers: extra handshake headers; a default header's name replaces it, ``None``
            removes it (e.g. ``{"Sec-WebSocket-Version": "8"}``).
        subprotocols: offered in ``Sec-WebSocket-Protocol``.
        origin: the ``Origin`` header (none by default, like a non-browser client).
        timeout: seconds for the TCP connect, the handshake, and the default of every wait.
        auto_pong: answer pings with pongs.
        auto_close: answer the server's close frame with a close frame.
        receive_buffer: SO_RCVBUF in bytes (small values make a slow reader show sooner).
        ssl_context: for ``wss://`` (default: the system's trust store).
        capacity: frame records kept.

    Raises:
        HandshakeError: the server answered something other than a valid 101.
        TimeoutError, OSError: the server could not be reached in time.
    """
    target = parse_url(url)
    sent, request = build_request(target, headers=headers, subprotocols=subprotocols, origin=origin)
    sock = open_socket(target, timeout, receive_buffer=receive_buffer, ssl_context=ssl_context)
    try:
        sock.sendall(request)
        response, rest = read_response(sock, timeout)
        if response.status != 101:
            raise HandshakeError(
                f"the server answered {response.status} {response.reason}", response
            )
        key = next((v for k, v in sent if k.lower() == "sec-websocket-key"), "")
        if response.header("Sec-WebSocket-Accept") != accept_key(key):
            raise HandshakeError("wrong Sec-WebSocket-Accept in the 101 response", response)
        sock.settimeout(timeout)
    except BaseException:
        sock.close()
        raise
    return RawConnection(
        sock,
        url=url,
        request_headers=sent,
        response=response,
        initial_data=rest,
        timeout=timeout,
        auto_pong=auto_pong,
        auto_close=auto_close,
        capacity=capacity,
    )
