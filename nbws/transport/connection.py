"""Drive a :class:`~nbws.protocol.Session` over a tornado ``IOStream``.

:class:`Connection` owns the socket after the HTTP upgrade. One reader task feeds bytes to
the session and queues inbound fragments; writes go straight to the stream, with the bytes
not yet flushed counted so senders can wait for the transport to drain below a low-water
mark.

Isolation: a connection never costs its neighbours more than a bounded share.

- The reader stops reading from the socket (TCP backpressure to the peer) while the
  application has more than ``read_high_water`` bytes of it to handle, *or* while more
  than ``write_high_water`` bytes wait to go out to it. The second rule covers what the
  peer makes the server send without any application code: ``websockets`` answers each
  ping with a pong into ``data_to_send()``, and a peer that floods pings (or requests)
  without reading the replies would otherwise make the server buffer without bound.
  :meth:`Connection.receive_fragment` waits on the same rule, so an endpoint does not
  turn already-read requests into replies nobody reads.
- Each read is at most ``READ_CHUNK`` bytes, and the reader yields to the event loop after
  every read that completed without waiting, so a peer whose bytes are already in the
  socket buffer cannot hold the loop for more than one chunk's frames at a time. Parsing
  one read yields too, once it has taken its slice of the turn: a full read of small
  frames is hundreds of messages, milliseconds of work. Slices are short while other
  connections are active, and a yield resumes behind their I/O (:mod:`.turns`).
- A peer that reads nothing at all while its backlog is over low water is *stalled*
  (:meth:`Connection.stalled_for`); the registry's sweep closes it with 1013.
- When the TCP connection is gone (reset by the peer, dropped by a heartbeat, aborted),
  every wait (reader pause, drain, writable callbacks, inbox) is released at once.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import struct
import sys
import time
import uuid
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from typing import Any

from tornado.iostream import IOStream, StreamClosedError

from ..errors import CloseCode, ConnectionClosed, InvalidState, close_for
from ..protocol import CloseReceived, Fragment, Pong, Session, State
from .turns import read_by, slice_for, yield_turn

__all__ = ["Connection", "IncomingMessage", "write_corked"]

log = logging.getLogger("nbws.connection")

_corked: dict[Connection, None] = {}
"""Connections whose cork waits for its write on the next round of the loop (in order)."""


def write_corked() -> None:
    """Write every connection's cork now instead of on the next round of the loop.

    The endpoint calls this when it stops handling requests (it is about to wait, or it
    yields): what its requests queued (acks, deliveries) is then on the wire before every
    other connection's next slice runs, and it is still one send per connection."""
    while _corked:
        conn = next(iter(_corked))
        conn._uncork()


if sys.platform == "linux":
    import fcntl
    import termios

    _SIOCOUTQ: int | None = termios.TIOCOUTQ  # bytes sent but not yet acknowledged
else:  # pragma: no cover - progress is then counted at the stream, not the kernel
    _SIOCOUTQ = None

READ_CHUNK = 65536
"""Bytes read from the socket (and parsed) per turn of a connection's reader."""

PARSE_SLICE = 4096
"""Bytes fed to the session in a turn's first parse call: small enough that a slice of
tiny frames stays near its turn's slice (:func:`.turns.slice_for`)."""

PARSE_PROBE = 4 * PARSE_SLICE
"""The most the first slice of a read may take, whatever the previous read's rate said (a
read of large frames after one of small ones is parsed in two calls, not one)."""

FRAGMENT_COST = 112
"""Bytes a queued inbound fragment holds besides its payload (the event object, the bytes
header, its inbox slot), counted against ``read_high_water``: a flood of tiny messages
is bounded by the memory it takes, not only by its payload bytes."""


class Connection:
    """One open WebSocket connection on the server.

    Args:
        stream: the detached tornado stream (the 101 response not yet written).
        session: the session that accepted the handshake.
        write_high_water: pending write bytes above which the connection is not drained.
        write_low_water: pending write bytes at which waiting senders resume.
        read_high_water: queued inbound bytes above which reading from the socket pauses.
        close_timeout: seconds to wait for the peer during the closing handshake.
        stall_timeout: seconds the peer may read nothing at all while more than
            ``write_low_water`` bytes wait for it; the registry's sweep then closes it
            with 1013 (0: never).
        path: request path (for logs and endpoints).
        query: parsed query arguments (first value of each).
        remote: peer address, for logs.
    """

    # A server holds thousands of mostly idle connections, so each one is kept small:
    # slots instead of a per-instance dict, and the inbox, lists of waiters and callbacks,
    # the send lock and the cork are created on first use. ``__dict__`` stays available
    # (empty, one pointer) for attributes set from outside, e.g. a test wrapping a method.
    __slots__ = (
        "__dict__",
        "_close_callbacks",
        "_close_timer",
        "_cork",
        "_cork_scheduled",
        "_cork_size",
        "_drain_callbacks",
        "_drain_waiters",
        "_eof_after_writes",
        "_inbox",
        "_inbox_bytes",
        "_inbox_waiter",
        "_parse_rate",
        "_reader",
        "_resume_reading",
        "_send_lock",
        "_stall_mark",
        "bytes_in",
        "bytes_out",
        "close_timeout",
        "closed",
        "id",
        "last_data_received",
        "last_received",
        "latency",
        "messages_in",
        "opened_at",
        "path",
        "pending_write",
        "ping_sent_at",
        "query",
        "read_high_water",
        "remote",
        "session",
        "stall_timeout",
        "stream",
        "tap",
        "write_high_water",
        "write_low_water",
    )

    def __init__(
        self,
        stream: IOStream,
        session: Session,
        *,
        write_high_water: int = 1 << 20,
        write_low_water: int = 1 << 18,
        read_high_water: int = 4 << 20,
        close_timeout: float = 5.0,
        stall_timeout: float = 0.0,
        path: str = "",
        query: dict[str, str] | None = None,
        remote: str = "",
    ) -> None:
        self.id = uuid.uuid4().hex[:12]
        self.stream = stream
        self.session = session
        self.tap = session.tap
        self.write_high_water = write_high_water
        self.write_low_water = write_low_water
        self.read_high_water = read_high_water
        self.close_timeout = close_timeout
        self.stall_timeout = stall_timeout
        self.path = path
        self.query = query or {}
        self.remote = remote
        self.opened_at = time.monotonic()
        self.last_received = self.opened_at
        self.last_data_received = self.opened_at
        self.ping_sent_at: float | None = None
        self.latency: float | None = None
        self.messages_in = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.pending_write = 0
        self._inbox: deque[Fragment] | None = None
        self._inbox_bytes = 0
        self._inbox_waiter: asyncio.Future[None] | None = None
        self._parse_rate = 0.0  # bytes/s of the last parse call (0: slice at first)
        self._resume_reading: asyncio.Future[None] | None = None
        self._drain_waiters: list[asyncio.Future[None]] | None = None
        self._drain_callbacks: list[Callable[[], None]] | None = None
        self._send_lock: asyncio.Lock | None = None
        self._eof_after_writes = False
        self._cork: list[bytes] | None = None
        self._cork_size = 0
        self._cork_scheduled = False
        self._close_timer: asyncio.TimerHandle | None = None
        self._reader: asyncio.Task[None] | None = None
        self._close_callbacks: list[Callable[[Connection], None]] | None = None
        self._stall_mark: tuple[float, int] | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        stream.set_nodelay(True)
        # However the TCP connection ends (peer reset, abort, heartbeat drop), whatever
        # the reader and the senders are waiting for is released.
        stream.set_close_callback(self._stream_closed)

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Write the handshake response and start reading frames."""
        self._flush()
        self._reader = asyncio.ensure_future(self._read_loop())

    def on_close(self, callback: Callable[[Connection], None]) -> None:
        """Call ``callback(connection)`` once the TCP connection is gone."""
        if self.closed.done():
            callback(self)
        elif self._close_callbacks is None:
            self._close_callbacks = [callback]
        else:
            self._close_callbacks.append(callback)

    @property
    def state(self) -> State:
        return self.session.state

    @property
    def open(self) -> bool:
        return self.session.state is State.OPEN

    @property
    def subprotocol(self) -> str | None:
        return self.session.subprotocol

    async def _read_loop(self) -> None:
        session = self.session
        stream = self.stream
        try:
            while True:
                if (
                    (
                        self._inbox_bytes > self.read_high_water
                        or self.pending_write > self.write_high_water
                    )
                    and session.state is State.OPEN
                    and not stream.closed()
                ):
                    # Stop reading: the application is behind, or the peer is not reading
                    # what it is sent (pongs included). Resumed by receive_fragment, by
                    # the transport draining to low water, or by the stream closing.
                    self._resume_reading = asyncio.get_running_loop().create_future()
                    await self._resume_reading
                    continue
                future = asyncio.ensure_future(stream.read_bytes(READ_CHUNK, partial=True))
                waited = not future.done()
                data = await future
                if not waited:
                    # Read from bytes already in the socket: give other connections their
                    # turn before parsing more of this one's burst.
                    await yield_turn()
                now = self.last_received = time.monotonic()
                read_by(self, now)
                self.bytes_in += len(data)
                await self._parse(data)
        except StreamClosedError:
            session.receive_eof()
            self._flush()
        except asyncio.CancelledError:
            pass
        except Exception:  # pragma: no cover - a bug; never let it pass silently
            log.exception("connection reader failed (%s)", self.remote)
            if session.state is State.OPEN:
                session.fail(CloseCode.INTERNAL_ERROR, "internal error")
                self._flush()
        finally:
            self._finish()

    async def _parse(self, data: bytes) -> None:
        """Feed ``data`` to the session, yielding to the loop whenever the turn's
        slice is spent (:func:`.turns.slice_for`).

        One read of small frames is hundreds of messages (a 64 KiB read of 150-byte
        publishes takes about 3 ms to parse); parsed at once, it delays every other
        connection by that much. Each slice is sized from the rate of this connection's
        previous parse call (at least ``PARSE_SLICE`` bytes), so a read of large frames
        (cheap per byte) is still parsed in one call.
        """
        session = self.session
        size = len(data)
        start = 0
        turn = time.perf_counter()
        budget = slice_for(self, time.monotonic())
        while True:
            # Half of what the last call's rate says fits in the rest of the turn: a read of
            # large frames (cheap per byte) goes in whole, one of small frames in slices.
            left = budget - (time.perf_counter() - turn)
            step = max(PARSE_SLICE, int(self._parse_rate * left / 2))
            if start == 0:
                # The rate is from the previous read, whose frames may have been of another
                # size: probe this read with a bounded first slice, then trust its rate.
                step = min(step, PARSE_PROBE)
            end = min(size, start + step)
            now = time.monotonic()
            began = time.perf_counter()
            session.receive_data(data if start == 0 and end == size else data[start:end], now)
            self._flush()
            events = session.events_received()
            if events:
                self._dispatch(events, now)
            if session.close_expected():
                self._arm_close_timer()
            took = time.perf_counter() - began
            if took > 0:
                self._parse_rate = (end - start) / took
            if end >= size:
                return
            start = end
            if time.perf_counter() - turn >= budget:
                await yield_turn()
                turn = time.perf_counter()
                budget = slice_for(self, time.monotonic())

    def _dispatch(self, events: list[Any], now: float) -> None:
        inbox = self._inbox
        wake = False
        for event in events:
            if type(event) is Fragment:
                if inbox is None:
                    inbox = self._inbox = deque()
                inbox.append(event)
                self._inbox_bytes += len(event.data) + FRAGMENT_COST
                if event.first:
                    self.messages_in += 1
                self.last_data_received = now
                wake = True
            elif type(event) is Pong:
                if self.ping_sent_at is not None:
                    self.latency = now - self.ping_sent_at
                    self.ping_sent_at = None
            elif type(event) is CloseReceived:
                wake = True
        if wake:
            self._wake_inbox()

    def _wake_inbox(self) -> None:
        waiter = self._inbox_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self._inbox_waiter = None

    def _stream_closed(self) -> None:
        """The TCP connection is gone: wake the reader (its next read raises) and every
        sender waiting for the transport to drain."""
        self._wake_reader()
        self._wake_drain_waiters()
        if self._reader is None or self._reader.done():
            self._finish()

    def _wake_reader(self) -> None:
        resume, self._resume_reading = self._resume_reading, None
        if resume is not None and not resume.done():
            resume.set_result(None)

    def _wake_drain_waiters(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def _finish(self) -> None:
        if self.closed.done():
            return
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        if not self.stream.closed():
            self.stream.close()
        self.closed.set_result(None)
        self._wake_inbox()
        self._wake_drain_waiters()
        self._drain_callbacks = None
        self._wake_reader()
        self._stall_mark = None
        callbacks, self._close_callbacks = self._close_callbacks, None
        for callback in callbacks or ():
            try:
                callback(self)
            except Exception:  # pragma: no cover
                log.exception("close callback failed")

    def _arm_close_timer(self) -> None:
        if self._close_timer is None and not self.closed.done():
            loop = asyncio.get_running_loop()
            self._close_timer = loop.call_later(self.close_timeout, self.abort)

    def abort(self) -> None:
        """Drop the TCP connection now, without waiting for a closing handshake."""
        if self._cork:
            self._uncork()  # a close frame queued just before (e.g. 1011) still goes out
        if not self.stream.closed():
            self.stream.close()  # runs _stream_closed, which releases every wait
        elif self._reader is None or self._reader.done():
            self._finish()

    def closed_error(self) -> ConnectionClosed:
        """The exception that describes how this connection ended."""
        code = self.session.close_code
        if code is None and self.stream.closed():
            code = CloseCode.ABNORMAL_CLOSURE  # the TCP connection went first
        return ConnectionClosed(code, self.session.close_reason, self.session.sent_close_code)

    def stalled_for(self, now: float) -> float:
        """Seconds the peer has read nothing at all while more than ``write_low_water``
        bytes wait for it (so reading from it may be paused); 0 when it reads or little
        waits.

        Called by the registry's sweep, which closes stalled peers; the first call that
        sees the backlog starts the clock, any byte the peer takes restarts it.
        """
        if self.pending_write <= self.write_low_water or self.session.state is not State.OPEN:
            self._stall_mark = None
            return 0.0
        taken = _bytes_taken(self.stream, self.bytes_out - self.pending_write)
        mark = self._stall_mark
        if mark is None or mark[1] != taken:
            self._stall_mark = (now, taken)
            return 0.0
        return now - mark[0]

    # --- writing -----------------------------------------------------------------------

    def _flush(self) -> None:
        """Move what the session queued into the cork; it is written once per loop turn,
        so everything queued in one turn (acks, fan-out batches, pongs) costs one send."""
        chunks = self.session.data_to_send()
        if not chunks:
            return
        cork = self._cork
        if cork is None:
            cork = self._cork = []
        added = 0
        for chunk in chunks:
            if chunk:
                cork.append(chunk)
                added += len(chunk)
            else:
                self._eof_after_writes = True
        self._cork_size += added
        self.pending_write += added
        if not self._cork_scheduled:
            self._cork_scheduled = True
            _corked[self] = None
            asyncio.get_running_loop().call_soon(self._uncork)

    def _uncork(self) -> None:
        self._cork_scheduled = False
        _corked.pop(self, None)
        cork = self._cork
        if cork:
            data = cork[0] if len(cork) == 1 else b"".join(cork)
            size = self._cork_size
            self._cork = None
            self._cork_size = 0
            self._write(data, size)
        if self._eof_after_writes and self.pending_write == 0:
            self._half_close()

    def _write(self, data: bytes, size: int) -> None:
        """Hand ``data`` (already counted in :attr:`pending_write`) to the stream."""
        stream = self.stream
        try:
            if stream.closed():
                raise StreamClosedError()
            future = stream.write(data)
        except StreamClosedError:
            self.pending_write -= size
            return
        self.bytes_out += size
        future.add_done_callback(functools.partial(self._written, size))

    def _written(self, size: int, future: asyncio.Future[None]) -> None:
        if not future.cancelled():
            future.exception()  # retrieved: a closed stream is handled by the reader
        self.pending_write -= size
        if self.pending_write <= self.write_low_water:
            if self._drain_waiters:
                self._wake_drain_waiters()
            if self._resume_reading is not None:
                self._wake_reader()
            if self._drain_callbacks and not self.session.sending_fragmented:
                self._run_drain_callbacks()
        if self.pending_write == 0 and self._eof_after_writes:
            self._half_close()

    def _half_close(self) -> None:
        """Shut our side down after the close frame is flushed; keep reading until EOF."""
        self._eof_after_writes = False
        sock = self.stream.socket
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                self.abort()
                return
        self._arm_close_timer()

    @property
    def drained(self) -> bool:
        """True while the bytes waiting in the transport are at or below the high-water mark."""
        return self.pending_write <= self.write_high_water

    async def wait_drained(self) -> None:
        """Wait until pending writes fall to the low-water mark (no-op when drained).

        Raises:
            ConnectionClosed: the connection closed while waiting.
        """
        if self.pending_write <= self.write_high_water:
            return
        waiter = asyncio.get_running_loop().create_future()
        if self._drain_waiters is None:
            self._drain_waiters = [waiter]
        else:
            self._drain_waiters.append(waiter)
        await waiter
        if self.closed.done() or self.stream.closed():
            raise self.closed_error()

    def when_writable(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once :attr:`writable` holds again (pending writes at the
        low-water mark and no fragmented send in flight); never on a closed connection."""
        if self.closed.done():
            return
        if self.writable:
            asyncio.get_running_loop().call_soon(callback)
        elif self._drain_callbacks is None:
            self._drain_callbacks = [callback]
        else:
            self._drain_callbacks.append(callback)

    async def wait_writable(self) -> bool:
        """Wait until :attr:`writable` holds; False if the connection closed instead."""
        if self.writable:
            return True
        if self.closed.done():
            return False
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def wake(*_: object) -> None:
            if not waiter.done():
                waiter.set_result(None)

        self.when_writable(wake)
        self.on_close(wake)
        await waiter
        return self.writable

    @property
    def writable(self) -> bool:
        """True when a frame can be queued now without waiting: OPEN, drained, and no
        outbound fragmented message in flight."""
        return (
            self.session.state is State.OPEN
            and self.pending_write <= self.write_high_water
            and not self.session.sending_fragmented
        )

    def _check_open(self, what: str) -> None:
        state = self.session.state
        if state is not State.OPEN:
            raise InvalidState(f"cannot send {what}: connection is {state.name.lower()}")
        if self.stream.closed():
            raise InvalidState(f"cannot send {what}: the TCP connection is gone")

    def send_nowait(self, message: str | bytes, *, text: bool | None = None) -> None:
        """Queue one whole message without waiting for the transport to drain.

        Args:
            message: ``str`` is sent as text; ``bytes`` as binary unless ``text=True``
                (then it must already be UTF-8).

        Raises:
            InvalidState: the connection is not OPEN, or a fragmented send is in flight.
        """
        self._check_open("a message")
        if isinstance(message, str):
            self.session.send_text(message.encode("utf-8"))
        elif text:
            self.session.send_text(message)
        else:
            self.session.send_binary(message)
        self._flush()

    async def send(self, message: str | bytes, *, text: bool | None = None) -> None:
        """Send one whole message (see :meth:`send_nowait`), then wait for the transport
        to drain.

        Raises:
            InvalidState: the connection is CLOSING or CLOSED.
        """
        async with self._lock():
            self.send_nowait(message, text=text)
        await self.wait_drained()

    def send_encoded(self, frame: bytes) -> bool:
        """Queue a frame made once by :func:`~nbws.protocol.encode_frame` for many peers.

        Returns:
            False when this connection cannot take pre-encoded frames right now (closing,
            compressed, or a fragmented send in flight); the caller then sends normally.
        """
        if not self.session.can_send_encoded:
            return False
        self.session.send_encoded(frame)
        self._flush()
        return True

    async def send_fragments(
        self,
        chunks: Iterable[bytes | str] | AsyncIterable[bytes | str],
        *,
        text: bool = False,
    ) -> int:
        """Send one message as a sequence of fragments, one per chunk, never holding more
        than the current chunk: each fragment is written only once the transport has
        drained below its high-water mark.

        Args:
            chunks: payload pieces (``str`` pieces are UTF-8 encoded).
            text: send as a text message (the chunks together must be valid UTF-8).

        Returns:
            Number of payload bytes sent.

        Raises:
            InvalidState: the connection closed before the message was complete.
        """
        session = self.session
        sent = 0
        first = True
        previous: bytes | None = None
        async with self._lock():
            async for chunk in _aiter(chunks):
                data = chunk.encode("utf-8") if isinstance(chunk, str) else chunk
                if previous is not None:
                    self._check_open("a fragment")
                    self._send_fragment(previous, first=first, fin=False, text=text)
                    first = False
                    sent += len(previous)
                    await self.wait_drained()
                previous = data
            self._check_open("a fragment")
            last = previous if previous is not None else b""
            self._send_fragment(last, first=first, fin=True, text=text)
            sent += len(last)
        await self.wait_drained()
        if not session.sending_fragmented and self.pending_write <= self.write_low_water:
            self._run_drain_callbacks()
        return sent

    def _send_fragment(self, data: bytes, *, first: bool, fin: bool, text: bool) -> None:
        session = self.session
        if not first:
            session.send_continuation(data, fin)
        elif text:
            session.send_text(data, fin)
        else:
            session.send_binary(data, fin)
        self._flush()

    def _lock(self) -> asyncio.Lock:
        """The lock that keeps whole sends from interleaving (made on the first send)."""
        lock = self._send_lock
        if lock is None:
            lock = self._send_lock = asyncio.Lock()
        return lock

    def _run_drain_callbacks(self) -> None:
        callbacks, self._drain_callbacks = self._drain_callbacks, None
        for callback in callbacks or ():
            callback()

    async def ping(self, data: bytes = b"") -> None:
        """Send a ping; its pong updates :attr:`latency`."""
        self._check_open("a ping")
        self.session.send_ping(data)
        self.ping_sent_at = time.monotonic()
        self._flush()

    def send_heartbeat(self, now: float) -> None:
        """Send a keepalive ping stamped ``now`` (called by the registry's sweep)."""
        if self.session.state is State.OPEN:
            self.session.send_ping(b"nbws-heartbeat")
            self.ping_sent_at = now
            self._flush()

    def start_close(self, code: int = 1000, reason: str = "") -> None:
        """Begin the closing handshake (no-op unless OPEN); the TCP close follows."""
        if self.session.state is State.OPEN:
            self.session.send_close(code, reason)
            self._flush()
            self._arm_close_timer()

    def fail(self, code: int, reason: str = "") -> None:
        """Fail the connection with ``code``: close frame if OPEN, then drop.

        Prefer :meth:`fail_with`, which takes the code from the error itself.
        """
        if self.session.state in (State.OPEN, State.CLOSING):
            self.session.fail(code, reason)
            self._flush()
            self._arm_close_timer()

    def fail_with(self, exc: BaseException) -> None:
        """End the connection because of ``exc``, with the close code and reason
        :func:`nbws.errors.close_for` gives it (1011 for anything that is not an nbws
        error). The one way a connection is ended for an error, so every error closes
        with the same code wherever it is caught."""
        code, reason = close_for(exc)
        self.fail(code, reason)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close with ``code`` and wait until the TCP connection is gone."""
        self.start_close(code, reason)
        if self.session.state is State.CONNECTING:
            self.abort()
        await asyncio.shield(self.closed)

    # --- reading -----------------------------------------------------------------------

    @property
    def has_input(self) -> bool:
        """True when a fragment is waiting: :meth:`receive_fragment` returns at once."""
        return bool(self._inbox)

    async def receive_fragment(self) -> Fragment:
        """Next inbound fragment, as it arrives.

        While the peer is not reading what it is sent (over ``write_high_water``), this
        waits for the transport to drain first: input is not turned into replies that
        would only queue up.

        Raises:
            ConnectionClosed: no more data will come.
        """
        if self.pending_write > self.write_high_water and self.session.state is State.OPEN:
            await self.wait_drained()
        inbox = self._inbox
        while not inbox:
            if self.closed.done() or self.session.state is not State.OPEN:
                raise self.closed_error()
            waiter = asyncio.get_running_loop().create_future()
            self._inbox_waiter = waiter
            await waiter
            inbox = self._inbox  # made by the first fragment to arrive
        fragment = inbox.popleft()
        self._inbox_bytes -= len(fragment.data) + FRAGMENT_COST
        if self._resume_reading is not None and self._inbox_bytes <= self.read_high_water // 2:
            self._wake_reader()
        return fragment

    async def receive(self) -> str | bytes:
        """Next whole message: ``str`` for text, ``bytes`` for binary.

        The message is reassembled in memory (bounded by ``max_message_size``); use
        :meth:`receive_message` to stream a large one instead.

        Raises:
            ConnectionClosed: the connection closed.
        """
        fragment = await self.receive_fragment()
        if fragment.last:
            return fragment.data.decode("utf-8") if fragment.text else fragment.data
        parts = [fragment.data]
        while True:
            nxt = await self.receive_fragment()
            parts.append(nxt.data)
            if nxt.last:
                break
        data = b"".join(parts)
        return data.decode("utf-8") if fragment.text else data

    async def receive_message(self) -> IncomingMessage:
        """Next message as a stream of chunks (read it to its end before the next one).

        Raises:
            ConnectionClosed: the connection closed.
        """
        fragment = await self.receive_fragment()
        return IncomingMessage(self, fragment)

    def __aiter__(self) -> AsyncIterator[str | bytes]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[str | bytes]:
        while True:
            try:
                yield await self.receive()
            except ConnectionClosed:
                return


class IncomingMessage:
    """A message being received fragment by fragment.

    Attributes:
        text: True for a text message.
        size: bytes received so far.
    """

    def __init__(self, connection: Connection, first: Fragment) -> None:
        self.connection = connection
        self.text = first.text
        self._first: Fragment | None = first
        self._done = False
        self.size = 0

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        while not self._done:
            if self._first is not None:
                fragment, self._first = self._first, None
            else:
                fragment = await self.connection.receive_fragment()
            self.size += len(fragment.data)
            self._done = fragment.last
            yield fragment.data


def _bytes_taken(stream: IOStream, written: int) -> int:
    """Bytes the peer has taken so far: handed to the kernel (tornado's count, else
    ``written``) less what the kernel still holds unacknowledged. The kernel's send buffer
    can hold megabytes, so only its count moves while a slow peer reads."""
    handed = getattr(stream, "_total_write_done_index", None)
    if not isinstance(handed, int):
        handed = written
    sock = stream.socket
    if _SIOCOUTQ is not None and sock is not None:
        try:
            unacked = struct.unpack("i", fcntl.ioctl(sock.fileno(), _SIOCOUTQ, b"\0\0\0\0"))
        except OSError:
            return handed
        return handed - int(unacked[0])
    return handed


async def _aiter(chunks: Iterable[Any] | AsyncIterable[Any]) -> AsyncIterator[Any]:
    if isinstance(chunks, AsyncIterable):
        async for chunk in chunks:
            yield chunk
    else:
        for chunk in chunks:
            yield chunk
