"""The stream hub: publish, subscribe, replay, fan-out. One per server process.

The I/O around the pure :class:`~nbws.server.subscriber.Subscription`: broker calls,
history reads, flush scheduling and ack hold-back; the only asyncio of the stream path.

Fan-out encodes each message once (``encode_delivery``) and hands the same frame bytes to
every live subscriber's bounded buffer (``buffers.py``); dirty buffers are flushed once
per event-loop turn, so whatever queued up for a subscriber goes out in one write.
While a stream has batching subscribers (``max_batch``) each message's ``batch`` element
is encoded once too, and batch frames are shared between subscribers with the same run
(``subscriber.SharedFrames``); partial batches of lingering subscribers wait on one
timer for the whole hub.

Acks of a stream with ``block`` subscribers are held until the message is in every such
subscriber's buffer and none of them is full (:meth:`Subscription.holds_ack`), so a
producer that waits for its acks can never push a ``block`` subscriber to its hard cap.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

from ..broker import Broker, BrokerUnavailable, PayloadTooLarge, StoredMessage, UnknownStream
from ..config import Nbws
from ..errors import InternalError, NackCode, RequestError, TryAgainLater
from ..protocol import encode_frame, encode_message
from ..protocol.messages import (
    End,
    Error,
    Event,
    HealthState,
    Nack,
    Policy,
    Publish,
    PublishBatch,
    Status,
    Subscribed,
    encode,
    encode_ack,
    encode_batch_ack,
    encode_delivery,
    since_cursor,
)
from . import metrics
from .buffers import Delivery, Gap, SubscriberBuffer
from .sink import Sink
from .stats import StreamStats
from .subscriber import Live, SharedFrames, State, Step, Subscription, stored_item

__all__ = ["Client", "LiveStream", "StreamHub", "Subscriber", "delivery_frame"]

log = logging.getLogger("nbws.streams")

REPLAY_PAGE = 512
REPLAY_PAGE_BATCHED = 4096
"""About how many history messages to read at once for a batching subscriber (a page
costs the same fixed overhead whatever its size, and becomes a few batch frames); rounded
to whole batches so that no batch is cut short at a page's end."""


def delivery_frame(stream: str, epoch: str, message: StoredMessage) -> bytes:
    """The WebSocket frame(s) that deliver ``message`` to any subscriber (built once)."""
    data, text = encode_delivery(stream, epoch, message)
    return encode_message(data, text=text)


def event_frame(event: Event) -> bytes:
    """One control message as a pre-encoded frame."""
    data, text = encode(event)
    return encode_frame(data, text=text)


class LiveStream:
    """This process's view of one stream: local subscribers, held acks, counters."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.subscribers: set[Subscriber] = set()
        self.block_subscribers: set[Subscriber] = set()
        self.held_acks: deque[tuple[Client, int | None, bytes]] = deque()
        self.batch: list[Delivery] = []  # encoded this loop turn, not yet offered
        self.batch_bytes = 0
        self.batch_epoch = ""
        self.batching = 0  # subscribers with max_batch: encode batch elements too
        self.shared = SharedFrames()  # batch frames built this loop turn
        self.stats = StreamStats()

    @property
    def blocked(self) -> list[Subscriber]:
        """``block`` subscribers that are full."""
        return [s for s in self.block_subscribers if s.state is State.BLOCKED]

    @property
    def drops(self) -> int:
        """Messages subscribers of this stream did not get (policy drops, conflation)."""
        return self.stats.departed_drops + sum(
            s.buffer.dropped + s.buffer.conflated for s in self.subscribers
        )


class Client:
    """What the hub needs from a connection: send control messages, be closed."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.subscriptions: dict[str, Subscriber] = {}
        # Publishes whose append is still in flight (brokers with concurrent appends).
        self.in_flight: set[asyncio.Future[None]] = set()

    def send(self, event: Event) -> None:
        """Queue a control message (dropped silently once the connection is closing)."""
        self.sink.send_event(event)

    def send_frame(self, frame: bytes) -> None:
        """Queue pre-encoded frame bytes."""
        sink = self.sink
        if not sink.send_encoded(frame) and sink.open:
            # A fragmented send in flight: wait for it (never interleave).
            sink.when_writable(lambda: self.send_frame(frame))

    def refuse(self, exc: RequestError, ref: Any = None) -> None:
        """Answer a refused request with an ``error``."""
        self.send(Error(exc.error_code, str(exc), ref))


class Subscriber:
    """Drives one :class:`Subscription`: catch-up reads, buffer flushes, notices."""

    def __init__(self, hub: StreamHub, client: Client, live: LiveStream, core: Subscription):
        self.id = uuid.uuid4().hex[:12]
        self.hub = hub
        self.client = client
        self.live = live
        self.stream = live.name
        self.core = core
        self.buffer = core.buffer
        self.dirty = False
        self._waiting_writable = False
        self._task: asyncio.Task[None] | None = None
        self._credit: asyncio.Event | None = None  # set by `consumed` (catch-up waits on it)

    @property
    def state(self) -> State:
        return self.core.state

    @property
    def _batched_page(self) -> int:
        size = self.core.max_batch or 1
        return size * max(1, REPLAY_PAGE_BATCHED // size)

    @property
    def policy(self) -> Policy:
        return self.buffer.policy

    def _send_notices(self) -> None:
        core = self.core
        if core.notices:
            for notice in core.notices:
                if notice.count:
                    self.live.stats.count_drops(notice.reason.value, notice.count)
                self.client.send(notice)
            core.notices.clear()

    # --- catching up --------------------------------------------------------------------

    def start_catch_up(self) -> None:
        """Read history from the cursor (idempotent while a read runs)."""
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._catch_up())

    async def _catch_up(self) -> None:
        sink = self.client.sink
        core = self.core
        try:
            while core.state is State.CATCHING_UP:
                if self.buffer.pending:  # live messages queued before falling behind
                    self.flush()  # go first: the page continues after them
                if not sink.writable:
                    if not await sink.wait_writable():
                        return
                    continue
                size = REPLAY_PAGE if core.max_batch is None else self._batched_page
                window = core.window
                if window is not None:  # credit: read no more than may be sent
                    if window == 0:
                        await self._credit_reopened()
                        continue
                    size = min(size, window)
                try:
                    page = await self.hub.broker.read(self.stream, core.cursor, size)
                except UnknownStream:
                    page = None
                if core.state is not State.CATCHING_UP:
                    return
                if page is None:
                    step = core.stream_missing()
                    messages: list[StoredMessage] = []
                else:
                    messages, step = core.receive_page(page)
                self._send_notices()
                if messages:
                    epoch = core.epoch
                    if core.max_batch is None:
                        frames = [delivery_frame(self.stream, epoch, m) for m in messages]
                        data = frames[0] if len(frames) == 1 else b"".join(frames)
                        self.client.send_frame(data)
                        self.live.stats.delivered(len(frames), len(data))
                    else:  # batch frames, shared with subscribers replaying the same run
                        frames, count = core.page_frames(messages, self.live.shared)
                        for frame in frames:
                            self.client.send_frame(frame)
                        written = sum(map(len, frames))
                        self.live.stats.delivered(count, written)
                        core.sent(messages[-1].offset, count, written)
                    if self.live.held_acks:
                        self.hub.release_acks(self.live)
                if step is Step.END:
                    self.client.send(End(self.stream, core.end_at))
                    self.hub.unsubscribe(self)
                    return
                if step is Step.LIVE:
                    return
        except BrokerUnavailable as exc:
            if core.state is State.CATCHING_UP:
                self.client.send(Status(HealthState.DEGRADED, str(exc)))
                core.broker_down()  # caught up again when the broker is back
        except Exception:  # pragma: no cover - logged, the connection is failed
            log.exception("replay failed for %s", self.stream)
            sink.fail_with(InternalError("replay failed"))

    async def _credit_reopened(self) -> None:
        """Wait for a ``consumed`` that frees credit (catch-up out of credit)."""
        event = self._credit
        if event is None:
            event = self._credit = asyncio.Event()
        event.clear()
        if self.core.window == 0:
            await event.wait()

    def consumed(self, offset: int) -> None:
        """The client applied everything up to ``offset``: spend the credit it freed
        (the buffer first, then live; or the next history page).

        Raises:
            BadRequest: no credit, or an offset beyond what was sent.
        """
        core = self.core
        if not core.consume(offset):
            return
        if self._credit is not None:
            self._credit.set()
        if core.live and self.buffer.pending and not self.dirty:
            self.dirty = True
            self.hub.mark_dirty(self)

    # --- live ---------------------------------------------------------------------------

    def receive(self, batch: list[Delivery], size: int, epoch: str) -> None:
        """This loop turn's live messages (in offset order) for this subscriber's stream."""
        verdict = self.core.receive_live(batch, size, epoch)
        if verdict is Live.IGNORED:
            return
        if verdict is Live.OVERFLOW:
            self.overflow()
            return
        if verdict is Live.CATCH_UP:
            if self.buffer.pending:  # what was queued before goes before the notices
                self.flush()
            self._send_notices()
            self.start_catch_up()
        if not self.dirty:
            self.dirty = True
            self.hub.mark_dirty(self)

    def overflow(self) -> None:
        buffer = self.buffer
        reason = (
            f"subscriber too slow for {self.stream!r}: buffer full "
            f"({buffer.messages} messages, {buffer.bytes} bytes, policy {buffer.policy.value})"
        )
        log.info("closing %s with 1013: %s", self.client.sink.remote, reason)
        self.hub.unsubscribe(self)
        self.client.sink.fail_with(TryAgainLater(reason))

    def flush(self) -> None:
        """Write what is buffered while the connection takes it; resume when it drains."""
        self.dirty = False
        sink = self.client.sink
        buffer = self.buffer
        stats = self.live.stats
        core = self.core
        room = False
        if core.linger and buffer.pending:
            due = core.flush_due(self.hub.now())
            if due is not None:
                self.hub.linger(self, due)
                return
        while buffer.pending:
            if not sink.writable:
                if sink.open and not self._waiting_writable:
                    self._waiting_writable = True
                    sink.when_writable(self._writable_again)
                break
            window = core.window
            if window is None:
                items = buffer.take(sink.write_high_water)
            else:  # credit: at most the window; out of it, only a first gap notice
                if window == 0:
                    if core.gap_told or not buffer.gap_pending:
                        break
                    core.gap_told = True
                bytes_window = core.bytes_window
                limit = sink.write_high_water
                items = buffer.take(
                    limit if bytes_window is None else min(limit, bytes_window), window
                )
                if not items:
                    break
            if core.max_batch is not None:
                # Each batch frame is written as the shared object itself (the transport
                # corks them into one write): no per-subscriber copy, not even a join.
                parts, delivered = core.frames(
                    items, self.live.shared, gapless=buffer.taken_gaps == 0
                )
                size = 0
                sent = True
                for part in parts:
                    frame = part if type(part) is bytes else self._gap_frame(part)  # type: ignore[arg-type]
                    size += len(frame)
                    if sent:
                        sent = sink.send_encoded(frame)
                    if not sent:
                        self.client.send_frame(frame)  # after the fragmented send
                stats.delivered(delivered, size)
                room = core.taken(delivered) or room
                if window is not None:
                    last = items[-1]
                    reached = last.end - 1 if isinstance(last, Gap) else last[0]
                    core.sent(reached, delivered, size)
                if not sent:
                    break
                continue
            gaps = 0
            frames = []
            for item in items:
                if type(item) is tuple:
                    frames.append(item[1])
                else:
                    frames.append(self._gap_frame(item))  # type: ignore[arg-type]
                    gaps += 1
            delivered = len(frames) - gaps
            data = frames[0] if len(frames) == 1 else b"".join(frames)
            if not sink.send_encoded(data):
                break
            stats.delivered(delivered, len(data))
            room = self.core.taken(delivered) or room
        if room:
            self.hub.release_acks(self.live)

    def _writable_again(self) -> None:
        self._waiting_writable = False
        if self.core.state is not State.CLOSED:
            self.flush()

    def _gap_frame(self, gap: Gap) -> bytes:
        self.live.stats.count_drops(gap.reason.value, gap.count)
        return event_frame(self.core.buffer_gap(gap))

    def close(self) -> None:
        if self.core.state is not State.CLOSED:
            self.core.close()
        if self._task is not None and not self._task.done():
            self._task.cancel()

    def describe(self, stream_next: int) -> dict[str, Any]:
        """Introspection for REST and the stream monitor."""
        core, buffer = self.core, self.buffer
        return {
            "id": self.id,
            "remote": self.client.sink.remote,
            "connection": self.client.sink.id,
            "policy": buffer.policy.value,
            "mode": core.state.value,
            "queue_messages": buffer.messages,
            "queue_bytes": buffer.bytes,
            "max_messages": buffer.max_messages,
            "max_bytes": buffer.max_bytes,
            "cursor": core.cursor,
            "lag": core.lag(stream_next),
            "delivered": core.delivered,
            "dropped": buffer.dropped,
            "conflated": buffer.conflated,
            "gaps": core.gaps,
            "blocked": core.state is State.BLOCKED,
            "credit": core.credit,
            "in_flight": core.in_flight,
        }


class StreamHub:
    """Publish and subscribe on top of a broker, for every connection of this process."""

    def __init__(self, broker: Broker, config: Nbws) -> None:
        self.broker = broker
        self.config = config
        # Read once: traitlets attribute access is too slow for the publish path.
        self.auto_create = config.auto_create_streams
        metrics.track_hub(self)
        self.streams: dict[str, LiveStream] = {}
        self._dirty: list[Subscriber] = []
        self._dirty_streams: list[LiveStream] = []
        self._holding: set[LiveStream] = set()  # streams whose held acks may be due
        self._flush_scheduled = False
        # Lingering batch subscribers and the one timer that flushes them.
        self._lingering: set[Subscriber] = set()
        self._linger_handle: asyncio.TimerHandle | None = None
        self._linger_at = 0.0
        self._listeners: dict[str, Callable[[str, str, StoredMessage], None]] = {}
        # Connections that published or subscribed: told of broker health changes.
        self.clients: set[Client] = set()
        broker.on_health_change(self._health_changed)

    def live(self, name: str) -> LiveStream:
        state = self.streams.get(name)
        if state is None:
            state = self.streams[name] = LiveStream(name)
        return state

    # --- publishing ------------------------------------------------------------------

    async def publish(self, client: Client, request: Publish, body: bytes) -> None:
        """Append a decoded publish (``body``: its payload as stored) and ack (or nack) it
        to ``client`` when it asked for an ack."""
        started = time.perf_counter()
        self.clients.add(client)
        stream, producer, seq = request.stream, request.producer, request.seq
        try:
            result = await self.broker.append(request, body, create=self.auto_create)
        except (UnknownStream, PayloadTooLarge, BrokerUnavailable) as exc:
            if producer is not None and seq is not None:
                self.nack(client, stream, producer, seq, exc)
            elif isinstance(exc, UnknownStream):
                client.refuse(exc, request.id)
            return
        live = self.streams.get(stream)
        if not result.duplicate:
            if live is None:
                live = self.live(stream)
            live.stats.published(len(body))
        if producer is None or seq is None:
            return
        ack = encode_frame(
            encode_ack(stream, producer, seq, result.epoch, result.duplicate, result.offset),
            text=True,
        )
        metrics.ACK_LATENCY.observe(time.perf_counter() - started)
        if live is not None and live.block_subscribers:
            live.held_acks.append((client, result.offset, ack))
            self._holding.add(live)
            self._schedule_flush()
        else:
            client.send_frame(ack)

    async def publish_batch(self, client: Client, batch: PublishBatch, bodies: list[bytes]) -> None:
        """Append a decoded batch (``bodies``: its payloads as stored; one broker call)
        and answer it with range acks: one per run of messages settled, a nack of its own
        for a message refused alone (oversize)."""
        started = time.perf_counter()
        self.clients.add(client)
        stream, producer, seq = batch.stream, batch.producer, batch.seq
        last = seq + len(bodies) - 1
        try:
            outcome = await self.broker.append_batch(batch, bodies, create=self.auto_create)
        except (UnknownStream, BrokerUnavailable) as exc:
            self.nack(client, stream, producer, seq, exc, last)
            return
        live = self.streams.get(stream)
        first = outcome.first
        if first is not None:  # all appended, at first..first + count - 1: one ack, O(1)
            if live is None:
                live = self.live(stream)
            stats = live.stats
            stats.rate.tick(outcome.count)
            stats.messages_in += outcome.count
            stats.bytes_in += sum(map(len, bodies))
            self._ack_range(
                client, live, batch, seq, last, outcome.epoch,
                first, first + outcome.count - 1, {}, started,
            )  # fmt: skip
            return
        results = outcome.per_message()
        appended = appended_bytes = 0
        run_start = -1  # first seq of the run being acked (-1: none yet)
        run_offset: int | None = None  # offset of its first appended message
        run_end_offset: int | None = None  # offset of its last appended message
        duplicates: dict[str, int | None] = {}
        epoch = ""
        for i, result in enumerate(results):
            s = seq + i
            if isinstance(result, PayloadTooLarge):
                if run_start >= 0:
                    self._ack_range(
                        client, live, batch, run_start, s - 1, epoch,
                        run_offset, run_end_offset, duplicates, started,
                    )  # fmt: skip
                    run_start, run_offset, run_end_offset, duplicates = -1, None, None, {}
                self.nack(client, stream, producer, s, result, s)
                continue
            epoch = result.epoch
            if run_start < 0:
                run_start = s
            if result.duplicate:
                duplicates[str(s)] = result.offset
            else:
                if run_offset is None:
                    run_offset = result.offset
                run_end_offset = result.offset
                appended += 1
                appended_bytes += len(bodies[i])
        if appended:
            if live is None:
                live = self.live(stream)
            stats = live.stats  # what ``published`` counts, for the whole run at once
            stats.rate.tick(appended)
            stats.messages_in += appended
            stats.bytes_in += appended_bytes
        if run_start >= 0:
            self._ack_range(
                client, live, batch, run_start, last, epoch,
                run_offset, run_end_offset, duplicates, started,
            )  # fmt: skip

    def _ack_range(
        self,
        client: Client,
        live: LiveStream | None,
        batch: PublishBatch,
        seq: int,
        last: int,
        epoch: str,
        offset: int | None,
        end_offset: int | None,
        duplicates: dict[str, int | None],
        started: float,
    ) -> None:
        """Send (or hold, for ``block`` subscribers) the ack of ``batch``'s seqs
        ``seq``..``last``."""
        data = encode_batch_ack(
            batch.stream, batch.producer, seq, last, epoch, offset, duplicates or None
        )
        ack = encode_frame(data, text=True)
        metrics.ACK_LATENCY.observe(time.perf_counter() - started)
        if live is not None and live.block_subscribers:
            # Held until its last appended message is in every block buffer.
            live.held_acks.append((client, end_offset, ack))
            self._holding.add(live)
            self._schedule_flush()
        else:
            client.send_frame(ack)

    def nack(
        self,
        client: Client,
        stream: str,
        producer: str,
        seq: int,
        exc: RequestError,
        last: int | None = None,
    ) -> None:
        """Refuse an acked publish (or seqs ``seq``..``last`` of a batch) with the nack of
        ``exc``'s kind."""
        code: NackCode = exc.nack_code
        client.send(Nack(stream, code, str(exc), exc.retry, producer, seq, last))

    def release_acks(self, live: LiveStream) -> None:
        """Send the held acks no ``block`` subscriber holds any more (in order)."""
        held = live.held_acks
        if not held:
            return
        floor: int | None = None
        for sub in live.block_subscribers:
            core = sub.core
            if core.state is State.CLOSED:
                continue
            if core.state is State.BLOCKED:
                return
            if floor is None or core.cursor < floor:
                floor = core.cursor
        while held:
            client, offset, ack = held[0]
            if floor is not None and offset is not None and offset >= floor:
                return
            held.popleft()
            if client.sink.open:
                client.send_frame(ack)

    # --- subscribing -----------------------------------------------------------------

    async def subscribe(
        self,
        client: Client,
        stream: str,
        *,
        since: int | None,
        until: int | None = None,
        epoch: str | None = None,
        policy: Policy,
        max_messages: int,
        max_bytes: int,
        max_batch: int | None = None,
        linger_ms: int | None = None,
        credit: int | None = None,
        credit_bytes: int | None = None,
        ref: Any = None,
    ) -> Subscriber | None:
        """Subscribe ``client`` to ``stream``; sends ``subscribed`` then replays from ``since``.

        With ``max_batch`` the subscriber gets ``batch`` events; ``linger_ms`` lets a
        partial live batch wait that long to fill. With ``credit`` (and optionally
        ``credit_bytes``) at most that much is in flight until the client reports
        ``consumed`` (:meth:`Subscriber.consumed`).
        """
        self.clients.add(client)
        old = client.subscriptions.get(stream)
        if old is not None:
            self.unsubscribe(old)
        try:
            info = await self.broker.info(stream)
            if info is None:
                if not self.auto_create:
                    client.refuse(UnknownStream(f"no stream named {stream!r}"), ref)
                    return None
                info = await self.broker.create(stream)
        except BrokerUnavailable as exc:
            client.refuse(exc, ref)
            return None
        live = self.live(stream)
        buffer = SubscriberBuffer(policy, max_messages, max_bytes)
        core = Subscription(
            stream,
            cursor=since_cursor(since, info.first, info.next),
            epoch=info.epoch if epoch is None else epoch,
            until=until,
            buffer=buffer,
            max_batch=max_batch,
            linger=(linger_ms or 0) / 1000,
            credit=credit,
            credit_bytes=credit_bytes,
        )
        sub = Subscriber(self, client, live, core)
        if max_batch is not None:
            if live.batch and live.batch[0][3] is None:
                self._deliver(live)  # encoded without batch elements: not for this one
            live.batching += 1
        client.subscriptions[stream] = sub
        live.subscribers.add(sub)
        if policy is Policy.BLOCK:
            live.block_subscribers.add(sub)
        if stream not in self._listeners:
            listener = self._on_message
            self._listeners[stream] = listener
            self.broker.listen(stream, listener)
        client.send(
            Subscribed(
                stream,
                info.epoch,
                info.first,
                info.next,
                policy,
                buffer.max_messages,
                buffer.max_bytes,
                since,
                ref,
                max_batch,
                None if max_batch is None else (linger_ms or 0),
                core.credit,
                core.credit_bytes,
            )
        )
        sub.start_catch_up()
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        """Remove ``sub``; release held acks it was holding."""
        sub.close()
        client = sub.client
        if client.subscriptions.get(sub.stream) is sub:
            del client.subscriptions[sub.stream]
        live = self.streams.get(sub.stream)
        if live is None:
            return
        self._lingering.discard(sub)
        if sub in live.subscribers:
            live.subscribers.discard(sub)
            if sub.core.max_batch is not None:
                live.batching -= 1
            live.stats.departed_drops += sub.buffer.dropped + sub.buffer.conflated
        if sub in live.block_subscribers:
            live.block_subscribers.discard(sub)
            self.release_acks(live)
        if not live.subscribers:
            listener = self._listeners.pop(sub.stream, None)
            if listener is not None:
                self.broker.unlisten(sub.stream, listener)

    def drop_client(self, client: Client) -> None:
        """Forget every subscription of a closed connection."""
        self.clients.discard(client)
        for sub in list(client.subscriptions.values()):
            self.unsubscribe(sub)
        for live in self.streams.values():
            if live.held_acks:
                live.held_acks = deque(item for item in live.held_acks if item[0] is not client)

    # --- broker health -------------------------------------------------------------------

    def _health_changed(self, healthy: bool, reason: str | None) -> None:
        """Tell every client; once the broker is back, resume replays it interrupted."""
        status = (
            Status(HealthState.OK)
            if healthy
            else Status(HealthState.DEGRADED, reason or "broker unavailable")
        )
        for client in tuple(self.clients):
            client.send(status)
        if healthy:
            for live in tuple(self.streams.values()):
                for sub in tuple(live.subscribers):
                    if sub.core.broker_back():
                        sub.start_catch_up()

    # --- fan-out -----------------------------------------------------------------------

    def _on_message(self, stream: str, epoch: str, message: StoredMessage) -> None:
        """Broker listener: encode once, batch for this loop turn."""
        live = self.streams.get(stream)
        if live is None or not live.subscribers:
            return
        if live.batch and epoch != live.batch_epoch:
            self._deliver(live)
        frame = delivery_frame(stream, epoch, message)
        item = stored_item(message) if live.batching else None
        live.batch.append((message.offset, frame, message.key, item))
        live.batch_bytes += len(frame)
        live.batch_epoch = epoch
        if len(live.batch) == 1:
            self._dirty_streams.append(live)
            self._schedule_flush()

    def _deliver(self, live: LiveStream) -> None:
        """Offer the stream's batch to each subscriber (one extend each, usually)."""
        batch, size, epoch = live.batch, live.batch_bytes, live.batch_epoch
        if not batch:
            return
        live.batch = []
        live.batch_bytes = 0
        for sub in tuple(live.subscribers):
            sub.receive(batch, size, epoch)
        if live.held_acks:
            self._holding.add(live)

    def mark_dirty(self, sub: Subscriber) -> None:
        self._dirty.append(sub)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._scheduled_flush)

    def flush_now(self) -> None:
        """Write what has been queued for subscribers so far, now rather than on the next
        round of the loop: a connection calls it when it stops handling requests (it is
        about to wait for input, or it yields), so a request's deliveries do not wait
        behind every other connection's next slice first."""
        if self._flush_scheduled:
            self._flush_dirty()

    def _scheduled_flush(self) -> None:
        if self._flush_scheduled:  # (not already done by flush_now)
            self._flush_dirty()

    def _flush_dirty(self) -> None:
        self._flush_scheduled = False
        streams, self._dirty_streams = self._dirty_streams, []
        for live in streams:
            self._deliver(live)
        dirty, self._dirty = self._dirty, []
        for sub in dirty:
            if sub.core.state is not State.CLOSED:
                sub.flush()
        for live in streams:
            live.shared.clear()
        for sub in dirty:
            sub.live.shared.clear()
        if self._holding:
            holding, self._holding = self._holding, set()
            for live in holding:
                self.release_acks(live)

    # --- lingering batches ---------------------------------------------------------------

    def now(self) -> float:
        """The loop's clock (what ``linger_ms`` deadlines are on)."""
        return asyncio.get_running_loop().time()

    def linger(self, sub: Subscriber, due: float) -> None:
        """Flush ``sub`` at ``due``: one timer for the hub, set to the earliest deadline."""
        self._lingering.add(sub)
        handle = self._linger_handle
        if handle is None or due < self._linger_at:
            if handle is not None:
                handle.cancel()
            self._linger_at = due
            self._linger_handle = asyncio.get_running_loop().call_at(due, self._linger_fire)

    def _linger_fire(self) -> None:
        self._linger_handle = None
        lingering, self._lingering = self._lingering, set()
        for sub in lingering:
            if sub.core.state is not State.CLOSED:
                sub.flush()  # lingers again (re-arming the timer) if not due yet

    # --- introspection -----------------------------------------------------------------

    async def describe(self, name: str, *, subscribers: bool = False) -> dict[str, Any] | None:
        """Stream info for REST and ``info`` requests."""
        info = await self.broker.info(name)
        if info is None:
            return None
        live = self.streams.get(name)
        out: dict[str, Any] = {
            "name": name,
            "epoch": info.epoch,
            "first": info.first,
            "next": info.next,
            "history_messages": info.history_messages,
            "history_bytes": info.history_bytes,
            "rate": live.stats.rate.current() if live else 0.0,
            "subscribers": len(live.subscribers) if live else 0,
            "drops": live.drops if live else 0,
            "held_acks": len(live.held_acks) if live else 0,
            "limits": {
                "max_messages": info.limits.max_messages,
                "max_bytes": info.limits.max_bytes,
                "max_age": info.limits.max_age,
            },
        }
        if subscribers:
            out["subscriptions"] = [
                s.describe(info.next) for s in (live.subscribers if live else ())
            ]
        return out

    def queue_depth(self) -> dict[str, int]:
        return {
            name: sum(s.buffer.messages for s in live.subscribers)
            for name, live in self.streams.items()
        }
