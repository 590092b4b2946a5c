"""The client's I/O: one daemon thread per process with its own asyncio loop, running
the ``websockets`` asyncio client for every stream handle and subscription.

Nothing here runs in the caller's thread or loop, so a busy notebook cell (or the
kernel's own event loop) never stalls acks, retransmits or reconnects, and publishing
never waits on the network unless the outbox is full.

A :class:`PublisherLink` keeps one ``nbws.v1`` connection per stream handle: it sends
from the :class:`~nbws.client.outbox.Outbox` in sequence order, completes receipts from
acks, and on every drop reconnects with exponential backoff and full jitter, then
resends everything unacked with the same ``(producer, seq)``. Per loop turn it takes
everything the window allows and writes it at once, and it applies all the acks that
arrived together in one go (its :class:`~nbws.client.connection.TextConnection` moves
both without a per-message ``await``), so a message costs the I/O thread a few
microseconds and a wakeup is shared by a whole batch. A :class:`SubscriberLink`
keeps one connection per subscription and, after a drop, resubscribes with
``since = last offset + 1`` and the epoch it had, so it neither misses nor repeats a
message; gaps the server reports are passed on.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import random
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK, InvalidStatus
from websockets.typing import Subprotocol

from .. import __version__
from ..errors import MessageTooBig, NbwsError
from ..wire import PROTOCOL, decode_json, encode_json
from .channel import Channel
from .connection import TextConnection
from .discovery import Endpoint
from .frames import BinaryItem, parse, publish_prefix, to_gap, to_message
from .outbox import Ack, Outbox
from .window import Entry

__all__ = [
    "LIVE_END",
    "IOThread",
    "LinkOptions",
    "PublisherLink",
    "SubscriberLink",
    "backoff_delay",
    "io_thread",
]

log = logging.getLogger("nbws.client")

T = TypeVar("T")

LIVE_END = 2**53
"""An ``until`` beyond any offset: a history read that stops at the live end."""

SEND_BATCH = 1024
"""Most messages taken from the outbox at once (each batch of texts is one write)."""
WRITE_BYTES = 256 * 1024
"""A batch's text frames are written in pieces of about this many bytes."""
STABLE_CONNECTION = 5.0
"""Seconds a connection must last (or deliver an ack) before backoff starts over."""


def backoff_delay(
    attempt: int, initial: float, maximum: float, rng: random.Random | None = None
) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(maximum, initial * 2**attempt)]."""
    ceiling = min(maximum, initial * (2 ** min(attempt, 62)))
    return (rng or random).uniform(0.0, ceiling)


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
) -> tuple[ClientConnection, dict[str, Any]]:
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
        welcome, _ = parse(first)
        if welcome.get("type") != "welcome":
            raise NbwsError(f"expected a welcome message, got {welcome.get('type')!r}")
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
        attempt = 0
        while not self._stopping:
            try:
                ws, welcome = await open_connection(
                    self.endpoint, self.options, self.connection_class
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # every failure is retried
                self.last_error = describe_error(exc)
                log.debug("nbws %s: connect failed: %s", self.stream, self.last_error)
                await self._sleep(self._delay(attempt))
                attempt += 1
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
            try:
                stable = await self._serve(ws, welcome)
                if not self._done() and ws.close_code is not None:
                    reason = f" {ws.close_reason}" if ws.close_reason else ""
                    self.last_error = f"connection closed: {ws.close_code}{reason}"
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # every failure is retried
                self.last_error = describe_error(exc)
                stable = False
            finally:
                self.connected = False
                self._ws = None
                self._disconnected()
                ws.transport.abort()
            if self._done():
                return
            if stable or time.monotonic() - started >= STABLE_CONNECTION:
                attempt = 0
            await self._sleep(self._delay(attempt))
            attempt += 1

    def _delay(self, attempt: int) -> float:
        return backoff_delay(attempt, self.options.backoff_initial, self.options.backoff_max)

    async def _serve(self, ws: ClientConnection, welcome: dict[str, Any]) -> bool:
        """Use one connection until it drops; True if it made progress (acks, messages)."""
        raise NotImplementedError

    def _disconnected(self) -> None:
        """The connection is gone."""

    def _done(self) -> bool:
        return self._stopping


class PublisherLink(_Link):
    """The connection of one stream handle: sends from the outbox, applies acks."""

    connection_class = TextConnection  # its fast lanes carry publishes and acks

    def __init__(
        self, endpoint: Endpoint, stream: str, producer: str, outbox: Outbox, options: LinkOptions
    ) -> None:
        super().__init__(endpoint, stream, options)
        self.producer = producer
        self.outbox = outbox
        self.max_message_size: int | None = None
        self.server_status: str | None = None
        self._kick: asyncio.Event | None = None
        self._housekeeper: asyncio.Task[None] | None = None
        self._acks: list[Ack] = []  # received, to be applied once the burst is read
        self._progress = False  # the current connection delivered acks

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

    async def _serve(self, ws: ClientConnection, welcome: dict[str, Any]) -> bool:
        assert isinstance(ws, TextConnection)
        size = welcome.get("max_message_size")
        self.max_message_size = size if isinstance(size, int) and size > 0 else None
        self.outbox.connected()
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
        """Send what the outbox releases: runs of text publishes as pre-masked frames in
        one write each, binary publishes through ``websockets`` (streamed fragments)."""
        assert self._kick is not None
        kick, outbox = self._kick, self.outbox
        while True:
            entries = outbox.take(SEND_BATCH)
            if not entries:
                await kick.wait()
                kick.clear()
                continue
            limit = self.max_message_size
            texts: list[bytes] = []
            size = 0
            for entry in entries:
                item = entry.item
                if not isinstance(item, bytes):  # binary: after the texts before it
                    if texts:
                        await ws.send_texts(texts)
                        texts, size = [], 0
                    await self._send_binary(ws, entry)
                    continue
                if limit is not None and len(item) > limit:
                    outbox.fail(
                        entry.seq,
                        "too-big",
                        f"the publish is {len(item)} bytes, "
                        f"over the server's max_message_size of {limit}",
                    )
                    continue
                texts.append(item)
                size += len(item)
                if size >= WRITE_BYTES:
                    await ws.send_texts(texts)
                    texts, size = [], 0
            if texts:
                await ws.send_texts(texts)

    async def _send_binary(self, ws: TextConnection, entry: Entry[Any]) -> None:
        item: BinaryItem = entry.item
        prefix = publish_prefix(self.stream, self.producer, entry.seq, item)
        source, limit, chunk_size = item.source, self.max_message_size, item.chunk_size
        if source.size is not None and limit is not None and len(prefix) + source.size > limit:
            self.outbox.fail(
                entry.seq,
                "too-big",
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
                self.outbox.fail(entry.seq, "too-big", reason)
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
        connection's fast lane (:meth:`_on_text`), anything else through ``recv``."""
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
                message, _ = parse(data)
                self._on_message(message)
        finally:
            ws.on_text = None
            self._apply_acks()

    def _on_text(self, data: bytes) -> None:
        self._on_message(decode_json(data))

    def _on_message(self, message: dict[str, Any]) -> None:
        """Act on one message: acks are collected and applied together once everything
        that arrived with them has been read (one lock, one wakeup of the sender)."""
        kind = message.get("type")
        if kind == "ack":
            seq = message.get("seq")
            if message.get("producer") == self.producer and isinstance(seq, int):
                acks = self._acks
                if not acks:
                    asyncio.get_running_loop().call_soon(self._apply_acks)
                acks.append(
                    (
                        seq,
                        message.get("offset"),
                        message.get("epoch"),
                        bool(message.get("duplicate")),
                    )
                )
        elif kind == "nack":
            seq = message.get("seq")
            if message.get("producer") == self.producer and isinstance(seq, int):
                self._apply_acks()  # in the order they came
                code, reason = str(message.get("code")), str(message.get("reason", ""))
                self.last_error = f"nack {code}: {reason}"
                self.outbox.nack(seq, code, reason, bool(message.get("retry")))
                self._wake_sender()
        elif kind == "error":
            self.last_error = f"server error {message.get('code')}: {message.get('message')}"
        elif kind == "status":
            self.server_status = message.get("state")
            if message.get("reason"):
                self.last_error = f"server {message.get('state')}: {message.get('reason')}"

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
    ) -> None:
        super().__init__(endpoint, stream, options)
        self.channel = channel
        self.since = since
        self.until = until
        self.epoch = epoch
        self.policy = policy
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.cursor: int | None = None  # next offset expected (within self.epoch)
        self.received = 0
        self.skipped_duplicates = 0
        self.gaps = 0
        self.subscribed: dict[str, Any] | None = None
        self._finished = False

    def _done(self) -> bool:
        return self._stopping or self._finished

    def request(self) -> dict[str, Any]:
        """The subscribe request: first as asked, then resuming at the cursor."""
        since = self.since if self.cursor is None else self.cursor
        request: dict[str, Any] = {
            "type": "subscribe",
            "id": self.connections,
            "stream": self.stream,
        }
        if since is not None:
            request["since"] = since
        for name in ("until", "epoch", "policy", "max_messages", "max_bytes"):
            value = getattr(self, name)
            if value is not None:
                request[name] = value
        return request

    async def stop(self, code: int = 1000, reason: str = "") -> None:
        await super().stop(code, reason)
        self.channel.close()

    async def _run(self) -> None:
        try:
            await super()._run()
        finally:
            self.channel.close()

    async def _serve(self, ws: ClientConnection, welcome: dict[str, Any]) -> bool:
        request = self.request()
        ref = request["id"]
        await ws.send(encode_json(request), text=True)
        progress = False
        channel = self.channel
        async for data in ws:
            header, payload = parse(data)
            kind = header.get("type")
            if kind == "message":
                if header.get("stream") != self.stream:
                    continue
                offset, epoch = header.get("offset"), header.get("epoch")
                if not isinstance(offset, int):
                    continue
                if epoch == self.epoch and self.cursor is not None and offset < self.cursor:
                    self.skipped_duplicates += 1
                    continue
                self.cursor, self.epoch = offset + 1, epoch
                self.received += 1
                progress = True
                await channel.put(to_message(header, payload))
            elif kind == "subscribed" and header.get("ref") == ref:
                self._on_subscribed(header)
            elif kind == "gap" and header.get("stream") == self.stream:
                gap = to_gap(header)
                self.gaps += 1
                if gap.reason == "epoch":
                    self.epoch, self.cursor = gap.epoch, None
                elif gap.end is not None and (self.cursor is None or gap.end > self.cursor):
                    self.cursor = gap.end
                await channel.put(gap)
            elif kind == "end" and header.get("stream") == self.stream:
                self._finished = True
                channel.close()
                await ws.close()
                return True
            elif kind == "error" and header.get("ref") == ref:
                code = header.get("code")
                self.last_error = f"server error {code}: {header.get('message')}"
                if code != "unavailable":
                    self._finished = True
                    reason = f"cannot subscribe to {self.stream!r}: {self.last_error}"
                    channel.close(NbwsError(reason))
                    await ws.close()
                    return False
                return progress
            elif kind == "status" and header.get("reason"):
                self.last_error = f"server {header.get('state')}: {header.get('reason')}"
        return progress

    def _on_subscribed(self, header: dict[str, Any]) -> None:
        self.subscribed = header
        if self.epoch is None:
            self.epoch = header.get("epoch")
        if self.cursor is not None:
            return
        first, nxt = header.get("first"), header.get("next")
        if not isinstance(first, int) or not isinstance(nxt, int):
            return
        if self.since is None:
            self.cursor = nxt
        elif self.since < 0:
            self.cursor = max(first, nxt + self.since)
        elif header.get("epoch") == self.epoch:
            self.cursor = self.since


def run_sync(io: IOThread, coro: Awaitable[T], timeout: float | None) -> T:
    """Run ``coro`` in the I/O thread and wait for it here."""

    async def wrapper() -> T:
        return await coro

    return io.submit(wrapper()).result(timeout)
