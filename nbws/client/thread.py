"""The client's I/O: one daemon thread per process with its own asyncio loop, running
the ``websockets`` asyncio client for every stream handle and subscription.

Nothing here runs in the caller's thread or loop, so a busy notebook cell (or the
kernel's own event loop) never stalls acks, retransmits or reconnects, and publishing
never waits on the network unless the outbox is full.

A :class:`PublisherLink` keeps one ``nbws.v1`` connection per stream handle: it sends
from the :class:`~nbws.client.outbox.Outbox` in sequence order (each connection starting
with a small window that grows per ack), completes receipts from acks, and on every drop
reconnects after the delay :class:`~nbws.client.window.Backoff` gives (at once after a
connection that made progress, exponential with full jitter after failures), then
resends everything unacked with the same ``(producer, seq)``. Everything received is
decoded by :func:`nbws.protocol.messages.decode_event`; a malformed message fails the
connection with the close code :func:`nbws.errors.close_for` gives. Per loop turn it takes
everything the window allows and writes it at once, and it applies all the acks that
arrived together in one go (its :class:`~nbws.client.connection.TextConnection` moves
both without a per-message ``await``), so a message costs the I/O thread a few
microseconds and a wakeup is shared by a whole batch. A :class:`SubscriberLink`
keeps one connection per subscription (asking for ``batch`` deliveries, unpacked here
into messages) and, after a drop, resubscribes with
``since = last offset + 1`` (:func:`~nbws.protocol.messages.resume_since`) and the epoch
it had, so it neither misses nor repeats a
message; gaps the server reports are passed on.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK, InvalidStatus
from websockets.typing import Subprotocol

from .. import __version__
from ..errors import (
    ConnectionError_,
    ErrorCode,
    MessageTooBig,
    NbwsError,
    ProtocolViolation,
    RequestError,
    UnknownType,
    close_for,
)
from ..protocol.messages import (
    PROTOCOL,
    Ack,
    Batch,
    End,
    Error,
    Event,
    Gap,
    GapReason,
    Message,
    Nack,
    Policy,
    Status,
    Subscribe,
    Subscribed,
    Welcome,
    batch_prefix,
    decode_event,
    encode,
    encode_batch_fast,
    resume_since,
)
from . import frames
from .channel import Channel
from .connection import TextConnection
from .discovery import Endpoint
from .errors import FailureCode
from .frames import BinaryItem, json_parts, publish_prefix, publish_text, publish_text_prefix
from .outbox import Ack as AckTuple
from .outbox import Outbox, RangeAck
from .window import Backoff, Entry, Rows

__all__ = [
    "DEFAULT_MAX_BATCH",
    "LIVE_END",
    "IOThread",
    "LinkOptions",
    "PublisherLink",
    "SubscriberLink",
    "io_thread",
    "receive_event",
]

log = logging.getLogger("nbws.client")

T = TypeVar("T")

LIVE_END = 2**53
"""An ``until`` beyond any offset: a history read that stops at the live end."""

DEFAULT_MAX_BATCH = 1000
"""A subscription's ``max_batch`` unless told otherwise: batched deliveries with no
linger cost no latency and save a frame and a decode per message."""

SEND_BATCH = 1024
"""Most messages taken from the outbox at once (each batch of texts is one write)."""
WRITE_BYTES = 256 * 1024
"""A batch's text frames are written in pieces of about this many bytes."""
BATCH_MESSAGES = 1000
"""Most messages in one ``publish_batch``."""
BATCH_BYTES = 1024 * 1024
"""Most payload bytes in one ``publish_batch``."""


def receive_event(data: str | bytes, text: bool | None = None) -> Event | None:
    """Decode one server message (``text``: it came in a text frame; by default, when it
    is a ``str``); None for a ``type`` this client does not know (a newer server's),
    which is skipped.

    Raises:
        ConnectionError_: the server sent something malformed; fail the connection with
            :func:`nbws.errors.close_for` of it (1002, 1007 or 1008).
    """
    try:
        return decode_event(data, text=isinstance(data, str) if text is None else text)
    except UnknownType:
        return None
    except RequestError as exc:
        raise _server_fault(exc) from None


def _server_fault(exc: ConnectionError_ | RequestError) -> ConnectionError_:
    """What to close with for a malformed server message: its own close code (1007,
    1008), or 1002 for a field missing or of the wrong type (the server's bug)."""
    if isinstance(exc, ConnectionError_):
        return exc
    return ProtocolViolation(f"the server sent an invalid message: {exc}")


@dataclass(frozen=True)
class LinkOptions:
    """Connection settings shared by publisher and subscriber links."""

    backoff_initial: float = 1.0
    backoff_max: float = 30.0
    open_timeout: float = 10.0
    ping_interval: float | None = 20.0
    ping_timeout: float | None = 20.0


class IOThread:
    """A daemon thread running one asyncio loop for all of this process's nbws clients."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.pid = os.getpid()
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._run, name="nbws-client", daemon=True)
        self.thread.start()
        self._ready.wait()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        self.loop.run_forever()

    @property
    def in_thread(self) -> bool:
        """True when called from the I/O thread itself (where blocking would deadlock)."""
        return threading.current_thread() is self.thread

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run ``coro`` on the I/O loop; returns a thread-safe future."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> None:
        """Call ``callback(*args)`` in the I/O thread (thread-safe)."""
        self.loop.call_soon_threadsafe(callback, *args)


_shared: IOThread | None = None
_shared_lock = threading.Lock()


def io_thread() -> IOThread:
    """The process's I/O thread, started on first use (again in a forked child)."""
    global _shared
    with _shared_lock:
        if _shared is None or _shared.pid != os.getpid() or not _shared.thread.is_alive():
            _shared = IOThread()
        return _shared


def describe_error(exc: BaseException) -> str:
    """A one-line description of why a connection attempt or connection failed."""
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        hint = " (wrong or missing token?)" if status == 403 else ""
        return f"HTTP {status} on the WebSocket upgrade{hint}"
    if isinstance(exc, ConnectionClosed):
        code = exc.rcvd.code if exc.rcvd is not None else 1006
        reason = exc.rcvd.reason if exc.rcvd is not None else "no close frame"
        return f"connection closed: {code} {reason}".rstrip()
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return "timed out opening the connection"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"


async def open_connection(
    endpoint: Endpoint,
    options: LinkOptions,
    connection_class: type[ClientConnection] = ClientConnection,
) -> tuple[ClientConnection, Welcome]:
    """Connect to ``nbws/ws`` with subprotocol ``nbws.v1`` and read the ``welcome``.

    Raises:
        NbwsError: the server did not speak ``nbws.v1``.
        Exception: whatever ``websockets`` raises for a failed connection attempt.
    """
    headers = {"Authorization": f"token {endpoint.token}"} if endpoint.token else None
    ws = await connect(
        endpoint.url,
        subprotocols=[Subprotocol(PROTOCOL)],
        additional_headers=headers,
        compression=None,
        proxy=None,
        open_timeout=options.open_timeout,
        ping_interval=options.ping_interval,
        ping_timeout=options.ping_timeout,
        close_timeout=2.0,
        max_size=None,
        user_agent_header=f"nbws/{__version__}",
        create_connection=connection_class,
    )
    try:
        if ws.subprotocol != PROTOCOL:
            raise NbwsError(f"{endpoint.url} did not accept the {PROTOCOL} subprotocol")
        first = await asyncio.wait_for(ws.recv(), options.open_timeout)
        try:
            welcome = receive_event(first)
        except ConnectionError_ as exc:
            await ws.close(*close_for(exc))
            raise NbwsError(f"{endpoint.url}: {exc}") from None
        if not isinstance(welcome, Welcome):
            kind = "an unknown message" if welcome is None else f"{welcome.TYPE!r}"
            raise NbwsError(f"expected a welcome message, got {kind}")
    except BaseException:
        ws.transport.abort()
        raise
    return ws, welcome


class _Link:
    """Reconnect loop shared by publishers and subscribers."""

    connection_class: type[ClientConnection] = ClientConnection

    def __init__(self, endpoint: Endpoint, stream: str, options: LinkOptions) -> None:
        self.endpoint = endpoint
        self.stream = stream
        self.options = options
        self.connections = 0
        self.reconnects = 0
        self.last_error: str | None = None
        self.connected = False
        self._stopping = False
        self._stop_event: asyncio.Event | None = None
        self._ws: ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._failure: str | None = None  # why this side failed the current connection

    def start(self, io: IOThread) -> None:
        """Start the link's loop in the I/O thread."""
        io.call_soon(self._start)

    def _start(self) -> None:
        self._stop_event = asyncio.Event()
        self._task = asyncio.ensure_future(self._run())

    async def stop(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection and end the loop (run in the I/O thread)."""
        self._stopping = True
        if self._stop_event is not None:
            self._stop_event.set()
        ws = self._ws
        if ws is not None:
            try:
                await asyncio.wait_for(ws.close(code, reason), 3.0)
            except Exception:
                ws.transport.abort()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _sleep(self, delay: float) -> None:
        assert self._stop_event is not None
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stop_event.wait(), delay)

    async def _run(self) -> None:
        backoff = Backoff(self.options.backoff_initial, self.options.backoff_max)
        while not self._stopping:
            opening = time.monotonic()
            try:
                ws, welcome = await open_connection(
                    self.endpoint, self.options, self.connection_class
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # every failure is retried
                self.last_error = describe_error(exc)
                log.debug("nbws %s: connect failed: %s", self.stream, self.last_error)
                await self._sleep(backoff.failed())
                continue
            if self._stopping:
                ws.transport.abort()
                return
            if self.connections:
                self.reconnects += 1
            self.connections += 1
            self._ws = ws
            self.connected = True
            started = time.monotonic()
            rtt = started - opening
            self._failure = None
            try:
                progress = await self._serve(ws, welcome)
                if not self._done() and ws.close_code is not None:
                    reason = f" {ws.close_reason}" if ws.close_reason else ""
                    self.last_error = f"connection closed: {ws.close_code}{reason}"
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # every failure is retried
                self.last_error = describe_error(exc)
                progress = self._progressed()
            finally:
                self.connected = False
                self._ws = None
                self._disconnected()
                ws.transport.abort()
            if self._failure is not None:  # this side ended it: say why
                self.last_error = self._failure
            if self._done():
                return
            await self._sleep(backoff.ended(time.monotonic() - started, rtt, progress))

    async def _serve(self, ws: ClientConnection, welcome: Welcome) -> bool:
        """Use one connection until it drops; True if it made progress (acks, messages)."""
        raise NotImplementedError

    def _progressed(self) -> bool:
        """Whether the current connection made progress (asked when it failed)."""
        return False

    async def _fail(self, ws: ClientConnection, exc: ConnectionError_) -> None:
        """End ``ws`` because of ``exc``, with the close code :func:`close_for` gives."""
        code, reason = close_for(exc)
        self._failure = self.last_error = f"closed the connection with {code}: {reason}"
        log.debug("nbws %s: %s", self.stream, self.last_error)
        try:
            await asyncio.wait_for(ws.close(code, reason), 3.0)
        except Exception:
            ws.transport.abort()

    def _disconnected(self) -> None:
        """The connection is gone."""

    def _done(self) -> bool:
        return self._stopping


class PublisherLink(_Link):
    """The connection of one stream handle: sends from the outbox, applies acks."""

    connection_class = TextConnection  # its fast lanes carry publishes and acks

    def __init__(
        self,
        endpoint: Endpoint,
        stream: str,
        producer: str,
        outbox: Outbox,
        options: LinkOptions,
        *,
        batch: bool = True,
        batch_messages: int = BATCH_MESSAGES,
        batch_bytes: int = BATCH_BYTES,
    ) -> None:
        super().__init__(endpoint, stream, options)
        self.producer = producer
        self.outbox = outbox
        # Runs of queued JSON publishes go out as publish_batch messages, until a server
        # answers one with ``error unknown-type`` (it predates batches): then singles.
        self.batch = batch
        self.batch_messages = max(1, batch_messages)
        self.batch_bytes = max(1, batch_bytes)
        self.batches_sent = 0
        self._text_prefix = publish_text_prefix(stream, producer)
        self._batch_prefix = batch_prefix(stream, producer)
        self.max_message_size: int | None = None
        self.server_status: str | None = None
        self._kick: asyncio.Event | None = None
        self._housekeeper: asyncio.Task[None] | None = None
        self._acks: list[AckTuple | RangeAck] = []  # received, applied once the burst is read
        self._progress = False  # the current connection delivered acks
        self._failing: asyncio.Future[None] | None = None  # closing a bad connection

    def _start(self) -> None:
        self._kick = asyncio.Event()
        loop = asyncio.get_running_loop()
        kick = self._kick

        def wakeup() -> None:
            loop.call_soon_threadsafe(kick.set)

        self.outbox.wakeup = wakeup
        super()._start()
        self._housekeeper = asyncio.ensure_future(self._housekeeping())

    async def stop(self, code: int = 1000, reason: str = "") -> None:
        if self._housekeeper is not None:
            self._housekeeper.cancel()
        await super().stop(code, reason)

    async def _housekeeping(self) -> None:
        """Fail messages past their deadline; kick the sender when a retransmit is due."""
        assert self._kick is not None
        while True:
            self.outbox.expire()
            due = self.outbox.next_wakeup()
            now = self.outbox.clock()
            if due is not None and due <= now:
                self._kick.set()
                delay = 0.05
            else:
                delay = 1.0 if due is None else min(1.0, due - now)
            await asyncio.sleep(delay)

    def _disconnected(self) -> None:
        self.outbox.disconnected()

    def _progressed(self) -> bool:
        return self._progress

    async def _serve(self, ws: ClientConnection, welcome: Welcome) -> bool:
        assert isinstance(ws, TextConnection)
        self.max_message_size = welcome.max_message_size or None
        self.outbox.connected(welcome.dedupe_window)
        self._progress = False
        sender = asyncio.ensure_future(self._send_loop(ws))
        receiver = asyncio.ensure_future(self._receive_loop(ws))
        try:
            done, _ = await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # raise what ended the connection
        finally:
            for task in (sender, receiver):
                task.cancel()
            await asyncio.gather(sender, receiver, return_exceptions=True)
        return self._progress

    async def _send_loop(self, ws: TextConnection) -> None:
        """Send what the outbox releases: runs of JSON publishes with consecutive seqs as
        ``publish_batch`` texts (single publish texts when batching is off), many
        pre-masked frames in one write; binary publishes through ``websockets``
        (streamed fragments), in seq order with the rest."""
        assert self._kick is not None
        kick, outbox = self._kick, self.outbox
        while True:
            entries = outbox.take(SEND_BATCH)
            if not entries:
                await kick.wait()
                kick.clear()
                continue
            texts: list[bytes] = []
            size = 0
            run: list[tuple[int, bytes, str | None]] = []  # (seq, payload, key)
            run_bytes = 0
            for entry in entries:
                item = entry.item
                if type(item) is Rows:  # a run: one batch (or a few, if too big for one)
                    size += self._end_run(run, texts)
                    run, run_bytes = [], 0
                    size += self._run_texts(entry.seq, item.payloads, texts)
                    if size >= WRITE_BYTES:
                        await ws.send_texts(texts)
                        texts, size = [], 0
                    continue
                parts = json_parts(item)
                if parts is None:  # binary: after everything before it
                    size += self._end_run(run, texts)
                    run, run_bytes = [], 0
                    if texts:
                        await ws.send_texts(texts)
                        texts, size = [], 0
                    await self._send_binary(ws, entry)
                    continue
                payload, key = parts
                if run and (
                    entry.seq != run[-1][0] + 1
                    or len(run) >= self.batch_messages
                    or run_bytes + len(payload) > self.batch_bytes
                ):
                    size += self._end_run(run, texts)
                    run, run_bytes = [], 0
                run.append((entry.seq, payload, key))
                run_bytes += len(payload)
                if size >= WRITE_BYTES:
                    await ws.send_texts(texts)
                    texts, size = [], 0
            size += self._end_run(run, texts)
            if texts:
                await ws.send_texts(texts)

    def _end_run(self, run: list[tuple[int, bytes, str | None]], texts: list[bytes]) -> int:
        """Append the texts of a run of JSON publishes to ``texts``: one batch (split
        where it would pass the server's ``max_message_size``), or singles; a message
        too big on its own fails. Returns the bytes appended."""
        if not run:
            return 0
        limit = self.max_message_size
        if not self.batch or len(run) == 1:
            added = 0
            for seq, payload, key in run:
                text = publish_text(self._text_prefix, seq, payload, key)
                if limit is not None and len(text) > limit:
                    self.outbox.fail(
                        seq,
                        FailureCode.TOO_BIG,
                        f"the publish is {len(text)} bytes, "
                        f"over the server's max_message_size of {limit}",
                    )
                    continue
                texts.append(text)
                added += len(text)
            return added
        keys = [key for _, _, key in run]
        text = encode_batch_fast(
            self._batch_prefix,
            run[0][0],
            [payload for _, payload, _ in run],
            keys if any(k is not None for k in keys) else None,
        )
        if limit is not None and len(text) > limit:
            half = len(run) // 2
            return self._end_run(run[:half], texts) + self._end_run(run[half:], texts)
        texts.append(text)
        self.batches_sent += 1
        return len(text)

    def _run_texts(self, seq: int, payloads: list[bytes], texts: list[bytes]) -> int:
        """Append the texts of a run entry's payloads (seqs from ``seq``) to ``texts``:
        one ``publish_batch`` (halved where it would pass the server's
        ``max_message_size``; a row too big alone fails), or single publishes when
        batching is off. Returns the bytes appended."""
        if not self.batch or len(payloads) == 1:
            return self._end_run([(seq + i, p, None) for i, p in enumerate(payloads)], texts)
        text = encode_batch_fast(self._batch_prefix, seq, payloads)
        limit = self.max_message_size
        if limit is not None and len(text) > limit:
            half = len(payloads) // 2
            return self._run_texts(seq, payloads[:half], texts) + self._run_texts(
                seq + half, payloads[half:], texts
            )
        texts.append(text)
        self.batches_sent += 1
        return len(text)

    async def _send_binary(self, ws: TextConnection, entry: Entry[Any]) -> None:
        item: BinaryItem = entry.item
        prefix = publish_prefix(self.stream, self.producer, entry.seq, item)
        source, limit, chunk_size = item.source, self.max_message_size, item.chunk_size
        if source.size is not None and limit is not None and len(prefix) + source.size > limit:
            self.outbox.fail(
                entry.seq,
                FailureCode.TOO_BIG,
                f"the payload is {source.size} bytes, over the "
                f"server's max_message_size of {limit}",
            )
            return
        bar = item.progress
        if bar is not None and bar.n:
            bar.reset(total=source.size)
        if source.size is not None and source.size <= chunk_size:
            await ws.send(prefix + b"".join(source.chunks(chunk_size)), text=False)
        else:
            await ws.send(self._fragments(entry, prefix), text=False)
        if bar is not None and source.size is not None:
            bar.refresh()
        self.outbox.restart_timer(entry)

    async def _fragments(self, entry: Entry[Any], prefix: bytes) -> Any:
        """The fragments of a streamed binary publish; the header is in the first one."""
        item: BinaryItem = entry.item
        limit = self.max_message_size
        total = len(prefix)
        first = True
        for chunk in item.source.chunks(item.chunk_size):
            total += len(chunk)
            if limit is not None and total > limit:
                reason = f"the payload passed the server's max_message_size of {limit} bytes"
                self.outbox.fail(entry.seq, FailureCode.TOO_BIG, reason)
                raise MessageTooBig(reason)  # aborts the fragmented message: reconnect
            if item.progress is not None:
                item.progress.update(len(chunk))
            if first:
                first = False
                yield prefix + chunk
            else:
                yield chunk
        if first:
            yield prefix

    async def _receive_loop(self, ws: TextConnection) -> None:
        """Read what the server sends: whole text messages arrive through the
        connection's fast lane (:meth:`_on_text`), anything else through ``recv``. A
        malformed message fails the connection with its close code."""
        ws.on_text = self._on_text
        try:
            while True:
                try:
                    data = await ws.recv()
                except ConnectionClosed as closed:
                    if ws.lane_error is not None:
                        raise ws.lane_error from None
                    if isinstance(closed, ConnectionClosedOK):
                        return
                    raise
                try:
                    event = receive_event(data)
                except ConnectionError_ as exc:
                    await self._fail(ws, exc)
                    return
                if event is not None:
                    self._on_event(event)
        finally:
            ws.on_text = None
            self._apply_acks()

    def _on_text(self, data: bytes) -> None:
        """The fast lane: one whole text message, straight from the socket. A malformed
        one stops the lane (the rest goes through ``recv``) and fails the connection."""
        try:
            event = decode_event(data)
        except UnknownType:
            return
        except (ConnectionError_, RequestError) as exc:
            ws = self._ws
            if ws is not None and isinstance(ws, TextConnection):
                ws.on_text = None
                self._failing = asyncio.ensure_future(self._fail(ws, _server_fault(exc)))
            return
        self._on_event(event)

    def _on_event(self, event: Event) -> None:
        """Act on one message: acks are collected and applied together once everything
        that arrived with them has been read (one lock, one wakeup of the sender)."""
        if isinstance(event, Ack):
            if event.producer == self.producer:
                acks = self._acks
                if not acks:
                    asyncio.get_running_loop().call_soon(self._apply_acks)
                if event.last is None:
                    acks.append((event.seq, event.offset, event.epoch, event.duplicate))
                else:  # a range ack: every seq of the batch, settled as a range
                    acks.append(
                        (event.seq, event.last, event.offset, event.epoch, event.duplicates)
                    )
        elif isinstance(event, Nack):
            if event.producer == self.producer and event.seq is not None:
                self._apply_acks()  # in the order they came
                self.last_error = f"nack {event.code}: {event.reason}"
                last = event.seq if event.last is None else event.last
                self.outbox.nack_range(event.seq, last, event.code, event.reason, event.retry)
                self._wake_sender()
        elif isinstance(event, Error):
            self.last_error = f"server error {event.code}: {event.message}"
            if event.code is ErrorCode.UNKNOWN_TYPE and self.batch:
                # A server without publish_batch: what it refused is resent as singles.
                log.info("nbws %s: the server does not take batches; sending singly", self.stream)
                self.batch = False
                self._apply_acks()
                self.outbox.rewind()
                self._wake_sender()
        elif isinstance(event, Status):
            self.server_status = str(event.state)
            if event.reason:
                self.last_error = f"server {event.state}: {event.reason}"

    def _apply_acks(self) -> None:
        acks = self._acks
        if acks:
            self._acks = []
            self.outbox.ack_many(acks)
            self._progress = True
            self._wake_sender()

    def _wake_sender(self) -> None:
        assert self._kick is not None
        self._kick.set()


class SubscriberLink(_Link):
    """One subscription's connection: resubscribes after drops, feeds a :class:`Channel`."""

    def __init__(
        self,
        endpoint: Endpoint,
        stream: str,
        channel: Channel,
        options: LinkOptions,
        *,
        since: int | None,
        until: int | None,
        epoch: str | None,
        policy: str | None,
        max_messages: int | None,
        max_bytes: int | None,
        max_batch: int | None = DEFAULT_MAX_BATCH,
        linger_ms: int | None = None,
    ) -> None:
        super().__init__(endpoint, stream, options)
        self.channel = channel
        self.max_batch = max_batch
        self.linger_ms = linger_ms if max_batch is not None else None
        self.since = since
        self.until = until
        self.epoch = epoch
        self.policy = policy
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.last: int | None = None  # last offset handed out or skipped (in self.epoch)
        self.received = 0
        self.skipped_duplicates = 0
        self.gaps = 0
        self.subscribed: Subscribed | None = None
        self._finished = False
        self._progress = False

    @property
    def cursor(self) -> int | None:
        """The next offset expected (within ``epoch``), once known."""
        return None if self.last is None else self.last + 1

    def _done(self) -> bool:
        return self._stopping or self._finished

    def _progressed(self) -> bool:
        return self._progress

    def request(self) -> Subscribe:
        """The subscribe request: first as asked, then resuming after the last offset."""
        return Subscribe(
            stream=self.stream,
            id=self.connections,
            since=resume_since(self.last, self.since),
            until=self.until,
            epoch=self.epoch,
            policy=None if self.policy is None else Policy(self.policy),
            max_messages=self.max_messages,
            max_bytes=self.max_bytes,
            max_batch=self.max_batch,
            linger_ms=self.linger_ms,
        )

    async def stop(self, code: int = 1000, reason: str = "") -> None:
        await super().stop(code, reason)
        self.channel.close()

    async def _run(self) -> None:
        try:
            await super()._run()
        finally:
            self.channel.close()

    async def _serve(self, ws: ClientConnection, welcome: Welcome) -> bool:
        request = self.request()
        ref = request.id
        body, text = encode(request)
        await ws.send(body, text=text)
        self._progress = False
        async for data in ws:
            try:
                event = receive_event(data)
            except ConnectionError_ as exc:
                await self._fail(ws, exc)
                return self._progress
            if event is None:
                continue
            if isinstance(event, Batch):
                if event.stream == self.stream:
                    for message in event.messages:  # handed out one by one, as ever
                        await self._on_message(message)
            elif isinstance(event, Message):
                if event.stream == self.stream:
                    await self._on_message(event)
            elif isinstance(event, Subscribed):
                if event.ref == ref:
                    self._on_subscribed(event)
            elif isinstance(event, Gap):
                if event.stream == self.stream:
                    await self._on_gap(event)
            elif isinstance(event, End):
                if event.stream == self.stream:
                    self._finished = True
                    self.channel.close()
                    await ws.close()
                    return True
            elif isinstance(event, Error):
                if event.ref == ref:
                    return await self._on_error(ws, event)
            elif isinstance(event, Status) and event.reason:
                self.last_error = f"server {event.state}: {event.reason}"
        return self._progress

    async def _on_message(self, event: Message) -> None:
        offset, epoch = event.offset, event.epoch
        if epoch == self.epoch and self.last is not None and offset <= self.last:
            self.skipped_duplicates += 1
            return
        self.last, self.epoch = offset, epoch
        self.received += 1
        self._progress = True
        await self.channel.put(
            frames.Message(
                stream=event.stream,
                offset=offset,
                epoch=epoch,
                time=event.time,
                payload=event.payload,
                key=event.key,
                producer=event.producer,
                seq=event.seq,
                content_type=event.content_type,
            )
        )

    async def _on_gap(self, event: Gap) -> None:
        self.gaps += 1
        if event.reason == GapReason.EPOCH:
            self.epoch, self.last = event.epoch, None
        elif event.end is not None and (self.last is None or event.end > self.last + 1):
            self.last = event.end - 1
        await self.channel.put(
            frames.Gap(
                stream=event.stream,
                start=event.start,
                end=event.end,
                count=event.count,
                reason=str(event.reason),
                epoch=event.epoch,
            )
        )

    async def _on_error(self, ws: ClientConnection, event: Error) -> bool:
        """The subscribe was refused: retry later if the broker is down, else give up."""
        self.last_error = f"server error {event.code}: {event.message}"
        if event.code is ErrorCode.UNAVAILABLE:
            return self._progress
        self._finished = True
        reason = f"cannot subscribe to {self.stream!r}: {self.last_error}"
        self.channel.close(NbwsError(reason))
        await ws.close()
        return False

    def _on_subscribed(self, event: Subscribed) -> None:
        self.subscribed = event
        if self.epoch is None:
            self.epoch = event.epoch
        if self.last is not None:
            return
        if self.since is None:
            self.last = event.next - 1
        elif self.since < 0:
            self.last = max(event.first, event.next + self.since) - 1
        elif event.epoch == self.epoch:
            self.last = self.since - 1


def run_sync(io: IOThread, coro: Awaitable[T], timeout: float | None) -> T:
    """Run ``coro`` in the I/O thread and wait for it here."""

    async def wrapper() -> T:
        return await coro

    return io.submit(wrapper()).result(timeout)
