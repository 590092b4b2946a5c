"""The stream hub: publish, subscribe, replay, fan-out. One per server process.

Fan-out encodes each message once (``encode_delivery``) and hands the same frame bytes to
every live subscriber's bounded buffer (``buffers.py``); dirty buffers are flushed once
per event-loop turn, so whatever queued up for a subscriber goes out in one write.

A subscriber has a cursor (the next offset it should get) and is either catching up
(reading history pages from the broker, written only as its connection drains) or live
(fed by the broker's listener). Live messages behind the cursor are skipped and one
ahead of it sends the subscriber back to catching up, so the seam between replay and
live has no gap and no duplicate, whichever broker runs underneath.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

import orjson

from ..broker import Broker, BrokerUnavailable, PayloadTooLarge, StoredMessage, UnknownStream
from ..config import Nbws
from ..errors import CloseCode
from ..protocol import encode_frame, encode_message
from ..transport import Connection
from ..wire import binary_prefix, encode_json
from . import metrics
from .buffers import Delivery, Gap, Offer, Policy, SubscriberBuffer

__all__ = ["LiveStream", "StreamHub", "Subscriber", "encode_delivery"]

log = logging.getLogger("nbws.streams")

REPLAY_PAGE = 512


def encode_delivery(stream: str, epoch: str, message: StoredMessage) -> bytes:
    """The WebSocket frame(s) that deliver ``message`` to any subscriber."""
    header: dict[str, Any] = {
        "type": "message",
        "stream": stream,
        "offset": message.offset,
        "epoch": epoch,
        "time": message.time,
    }
    if message.producer is not None:
        header["producer"] = message.producer
        header["seq"] = message.seq
    if message.key is not None:
        header["key"] = message.key
    if message.binary:
        header["binary"] = True
        if message.content_type is not None:
            header["content_type"] = message.content_type
        return encode_message(binary_prefix(header) + message.payload, text=False)
    body = orjson.dumps(header)[:-1] + b',"payload":' + message.payload + b"}"
    return encode_message(body, text=True)


def _control_frame(message: dict[str, Any]) -> bytes:
    return encode_frame(encode_json(message), text=True)


class RateMeter:
    """Messages per second over the last full second (cheap: one comparison per tick)."""

    __slots__ = ("_count", "_second", "rate")

    def __init__(self) -> None:
        self._second = int(time.monotonic())
        self._count = 0
        self.rate = 0.0

    def tick(self, n: int = 1) -> None:
        second = int(time.monotonic())
        if second != self._second:
            self.rate = float(self._count) if second == self._second + 1 else 0.0
            self._second = second
            self._count = 0
        self._count += n

    def current(self) -> float:
        self.tick(0)
        return self.rate


class LiveStream:
    """This process's view of one stream: local subscribers, held acks, counters."""

    @property
    def drops(self) -> int:
        """Messages subscribers of this stream did not get (policy drops, conflation)."""
        return self.departed_drops + sum(
            s.buffer.dropped + s.buffer.conflated for s in self.subscribers
        )

    def __init__(self, name: str) -> None:
        self.name = name
        self.subscribers: set[Subscriber] = set()
        self.blocked: set[Subscriber] = set()
        self.held_acks: deque[tuple[Client, bytes]] = deque()
        self.batch: list[Delivery] = []  # encoded this loop turn, not yet offered
        self.batch_bytes = 0
        self.batch_epoch = ""
        self.rate = RateMeter()
        self.departed_drops = 0  # drops of subscribers that have left
        self.drops_by_reason: dict[str, int] = {}
        # Plain counters, exported by metrics.py's collector at scrape time.
        self.messages_in = 0
        self.bytes_in = 0
        self.messages_out = 0
        self.bytes_out = 0


class Client:
    """What the hub needs from a connection: send control messages, be closed."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.subscriptions: dict[str, Subscriber] = {}
        # Publishes whose append is still in flight (brokers with concurrent appends).
        self.in_flight: set[asyncio.Future[None]] = set()

    def send(self, message: dict[str, Any]) -> None:
        """Queue a control message (dropped silently once the connection is closing)."""
        if self.conn.open:
            self.conn.send_nowait(encode_json(message), text=True)

    def send_frame(self, frame: bytes) -> None:
        """Queue pre-encoded frame bytes."""
        if not self.conn.send_encoded(frame) and self.conn.open:
            # A fragmented send in flight: wait for it (never interleave).
            self.conn.when_writable(lambda: self.send_frame(frame))


class Subscriber:
    """One connection's subscription to one stream."""

    CATCHING_UP = "catching-up"
    LIVE = "live"
    CLOSED = "closed"

    def __init__(
        self,
        hub: StreamHub,
        client: Client,
        live: LiveStream,
        *,
        epoch: str | None,
        cursor: int,
        until: int | None,
        buffer: SubscriberBuffer,
    ) -> None:
        self.id = uuid.uuid4().hex[:12]
        self.hub = hub
        self.client = client
        self.live = live
        self.stream = live.name
        self.epoch = epoch
        self.cursor = cursor
        self.until = until
        self.buffer = buffer
        self.mode = Subscriber.CATCHING_UP
        self.delivered = 0
        self.gaps = 0
        self.dirty = False
        self._waiting_writable = False
        self._live_hint = -1
        self._task: asyncio.Task[None] | None = None

    @property
    def policy(self) -> Policy:
        return self.buffer.policy

    # --- catching up --------------------------------------------------------------------

    def start_catch_up(self) -> None:
        """(Re)start reading history from the cursor (idempotent while one runs)."""
        self.mode = Subscriber.CATCHING_UP
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._catch_up())

    async def _catch_up(self) -> None:
        conn = self.client.conn
        broker = self.hub.broker
        try:
            while self.mode == Subscriber.CATCHING_UP:
                if not conn.writable and not await conn.wait_writable():
                    return
                try:
                    page = await broker.read(self.stream, self.cursor, REPLAY_PAGE)
                except UnknownStream:
                    page = None
                if self.mode != Subscriber.CATCHING_UP:
                    return
                if page is None:
                    if self.until is not None:
                        self._end(self.cursor)
                    else:
                        self.mode = Subscriber.LIVE
                    return
                if self.epoch is not None and page.epoch != self.epoch:
                    self._gap(self.cursor, None, None, "epoch", page.epoch)
                    self.epoch = page.epoch
                    self.cursor = page.first
                    continue  # the page was read with the old epoch's cursor
                self.epoch = page.epoch
                if self.cursor < page.first:
                    self._gap(
                        self.cursor, page.first, page.first - self.cursor, "history", page.epoch
                    )
                    self.cursor = page.first
                limit = page.next if self.until is None else min(self.until, page.next)
                frames = []
                for message in page.messages:
                    if message.offset >= limit:
                        break
                    frames.append(encode_delivery(self.stream, page.epoch, message))
                    self.cursor = message.offset + 1
                if frames:
                    self.client.send_frame(frames[0] if len(frames) == 1 else b"".join(frames))
                    self.delivered += len(frames)
                    self.live.messages_out += len(frames)
                if self.cursor >= limit or not page.messages:
                    if self.until is not None:
                        self._end(max(self.cursor, limit))
                        return
                    # No await since the read: nothing was appended in between (memory
                    # broker); a shared broker's newer messages show up as a hint or as
                    # a live message ahead of the cursor, which restarts catching up.
                    self.mode = Subscriber.LIVE
                    if self._live_hint >= self.cursor:
                        self.mode = Subscriber.CATCHING_UP
                        continue
                    return
        except BrokerUnavailable as exc:
            self.client.send({"type": "status", "state": "degraded", "reason": str(exc)})
            self.mode = Subscriber.LIVE
            self.hub.stalled.add(self)  # caught up again when the broker is back
        except Exception:  # pragma: no cover - logged, the connection is failed
            log.exception("replay failed for %s", self.stream)
            conn.fail(CloseCode.INTERNAL_ERROR, "replay failed")

    def _end(self, next_offset: int) -> None:
        self.client.send({"type": "end", "stream": self.stream, "next": next_offset})
        self.hub.unsubscribe(self)

    # --- live ---------------------------------------------------------------------------

    def receive(self, batch: list[Delivery], size: int, epoch: str) -> None:
        """This loop turn's live messages (in offset order) for this subscriber's stream."""
        if self.mode != Subscriber.LIVE:
            self._live_hint = max(self._live_hint, batch[-1][0])
            return
        if epoch != self.epoch:
            self._gap(self.cursor, None, None, "epoch", epoch)
            self.epoch = epoch
            self.cursor = 0
            self.start_catch_up()
            return
        first, last = batch[0][0], batch[-1][0]
        if (
            first == self.cursor
            and last - first == len(batch) - 1
            and self.buffer.extend(batch, size)
        ):
            self.cursor = last + 1
        else:
            for item in batch:
                if not self._offer(item):
                    return
        if not self.dirty:
            self.dirty = True
            self.hub.mark_dirty(self)

    def _offer(self, item: Delivery) -> bool:
        """One message through the policy; False once the subscriber is gone."""
        offset = item[0]
        if self.mode != Subscriber.LIVE:
            self._live_hint = max(self._live_hint, offset)
            return True
        if offset != self.cursor:
            if offset > self.cursor:
                self._live_hint = offset
                self.start_catch_up()
            return True
        self.cursor = offset + 1
        outcome = self.buffer.offer(item)
        if outcome is Offer.OVERFLOW:
            self.overflow()
            return False
        if outcome is Offer.FULL:
            self.live.blocked.add(self)
        return True

    def overflow(self) -> None:
        buffer = self.buffer
        reason = (
            f"subscriber too slow for {self.stream!r}: buffer full "
            f"({buffer.messages} messages, {buffer.bytes} bytes, policy {buffer.policy.value})"
        )
        log.info("closing %s with 1013: %s", self.client.conn.remote, reason)
        self.hub.unsubscribe(self)
        self.client.conn.fail(CloseCode.TRY_AGAIN_LATER, reason)

    def flush(self) -> None:
        """Write what is buffered while the connection takes it; resume when it drains."""
        self.dirty = False
        conn = self.client.conn
        buffer = self.buffer
        while buffer.pending:
            if not conn.writable:
                if conn.open and not self._waiting_writable:
                    self._waiting_writable = True
                    conn.when_writable(self._writable_again)
                break
            items = buffer.take(conn.write_high_water)
            frames = [self._gap_frame(item) if isinstance(item, Gap) else item[1] for item in items]
            data = frames[0] if len(frames) == 1 else b"".join(frames)
            if not conn.send_encoded(data):
                break
            delivered = len(frames) - self._gaps_in(items)
            self.delivered += delivered
            self.live.messages_out += delivered
            self.live.bytes_out += len(data)
        if self in self.live.blocked and buffer.has_room:
            self.live.blocked.discard(self)
            self.hub.release_acks(self.live)

    @staticmethod
    def _gaps_in(items: list[Delivery | Gap]) -> int:
        return sum(1 for item in items if type(item) is not tuple)

    def _writable_again(self) -> None:
        self._waiting_writable = False
        if self.mode != Subscriber.CLOSED:
            self.flush()

    def _gap_frame(self, gap: Gap) -> bytes:
        self.gaps += 1
        self._count_drops(gap.reason, gap.count)
        return _control_frame(
            {
                "type": "gap",
                "stream": self.stream,
                "from": gap.start,
                "to": gap.end,
                "count": gap.count,
                "reason": gap.reason,
                "epoch": self.epoch,
            }
        )

    def _count_drops(self, reason: str, count: int) -> None:
        by_reason = self.live.drops_by_reason
        by_reason[reason] = by_reason.get(reason, 0) + count

    def _gap(self, start: int, end: int | None, count: int | None, reason: str, epoch: str) -> None:
        self.gaps += 1
        if count:
            self._count_drops(reason, count)
        self.client.send(
            {
                "type": "gap",
                "stream": self.stream,
                "from": start,
                "to": end,
                "count": count,
                "reason": reason,
                "epoch": epoch,
            }
        )

    def close(self) -> None:
        self.mode = Subscriber.CLOSED
        if self._task is not None and not self._task.done():
            self._task.cancel()

    def describe(self, stream_next: int) -> dict[str, Any]:
        """Introspection for REST and the stream monitor."""
        return {
            "id": self.id,
            "remote": self.client.conn.remote,
            "connection": self.client.conn.id,
            "policy": self.buffer.policy.value,
            "mode": self.mode,
            "queue_messages": self.buffer.messages,
            "queue_bytes": self.buffer.bytes,
            "max_messages": self.buffer.max_messages,
            "max_bytes": self.buffer.max_bytes,
            "cursor": self.cursor,
            "lag": max(0, stream_next - self.cursor) + self.buffer.messages,
            "delivered": self.delivered,
            "dropped": self.buffer.dropped,
            "conflated": self.buffer.conflated,
            "gaps": self.gaps,
            "blocked": self in self.live.blocked,
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
        self._flush_scheduled = False
        self._listeners: dict[str, Callable[[str, str, StoredMessage], None]] = {}
        # Connections that published or subscribed: told of broker health changes.
        self.clients: set[Client] = set()
        self.stalled: set[Subscriber] = set()
        broker.on_health_change(self._health_changed)

    def live(self, name: str) -> LiveStream:
        state = self.streams.get(name)
        if state is None:
            state = self.streams[name] = LiveStream(name)
        return state

    # --- publishing ------------------------------------------------------------------

    async def publish(
        self,
        client: Client,
        stream: str,
        payload: bytes,
        *,
        binary: bool = False,
        producer: str | None = None,
        seq: int | None = None,
        key: str | None = None,
        content_type: str | None = None,
    ) -> None:
        """Append a message and ack (or nack) it to ``client`` when it asked for an ack."""
        started = time.perf_counter()
        acked = producer is not None and seq is not None
        self.clients.add(client)
        try:
            result = await self.broker.append(
                stream,
                payload,
                binary=binary,
                producer=producer,
                seq=seq,
                key=key,
                content_type=content_type,
                create=self.auto_create,
            )
        except UnknownStream:
            if acked:
                self._nack(
                    client,
                    stream,
                    producer,
                    seq,
                    "unknown-stream",
                    f"no stream named {stream!r} (auto-create is off)",
                    False,
                )
            else:
                client.send(
                    {
                        "type": "error",
                        "code": "unknown-stream",
                        "message": f"no stream named {stream!r}",
                    }
                )
            return
        except PayloadTooLarge as exc:
            if acked:
                self._nack(client, stream, producer, seq, "oversize", str(exc), False)
            return
        except BrokerUnavailable as exc:
            if acked:
                self._nack(client, stream, producer, seq, "unavailable", str(exc), True)
            return
        live = self.streams.get(stream)
        if not result.duplicate:
            if live is None:
                live = self.live(stream)
            live.rate.tick()
            live.messages_in += 1
            live.bytes_in += len(payload)
        if not acked:
            return
        ack = _control_frame(
            {
                "type": "ack",
                "stream": stream,
                "producer": producer,
                "seq": seq,
                "offset": result.offset,
                "epoch": result.epoch,
                "duplicate": result.duplicate,
            }
        )
        metrics.ACK_LATENCY.observe(time.perf_counter() - started)
        if live is not None and live.blocked:
            live.held_acks.append((client, ack))
        else:
            client.send_frame(ack)

    def _nack(
        self,
        client: Client,
        stream: str,
        producer: str | None,
        seq: int | None,
        code: str,
        reason: str,
        retry: bool,
    ) -> None:
        client.send(
            {
                "type": "nack",
                "stream": stream,
                "producer": producer,
                "seq": seq,
                "code": code,
                "reason": reason,
                "retry": retry,
            }
        )

    def release_acks(self, live: LiveStream) -> None:
        """Send acks held back while a ``block`` subscriber was full."""
        if live.blocked:
            return
        held = live.held_acks
        while held:
            client, ack = held.popleft()
            if client.conn.open:
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
        ref: Any = None,
    ) -> Subscriber | None:
        """Subscribe ``client`` to ``stream``; sends ``subscribed`` then replays from ``since``."""
        self.clients.add(client)
        old = client.subscriptions.get(stream)
        if old is not None:
            self.unsubscribe(old)
        try:
            info = await self.broker.info(stream)
            if info is None:
                if not self.auto_create:
                    client.send(
                        {
                            "type": "error",
                            "ref": ref,
                            "code": "unknown-stream",
                            "message": f"no stream named {stream!r}",
                        }
                    )
                    return None
                info = await self.broker.create(stream)
        except BrokerUnavailable as exc:
            client.send({"type": "error", "ref": ref, "code": "unavailable", "message": str(exc)})
            return None
        if since is None:
            cursor = info.next
        elif since < 0:
            cursor = max(info.first, info.next + since)
        else:
            cursor = since
        live = self.live(stream)
        buffer = SubscriberBuffer(policy, max_messages, max_bytes)
        sub = Subscriber(self, client, live, epoch=epoch, cursor=cursor, until=until, buffer=buffer)
        client.subscriptions[stream] = sub
        live.subscribers.add(sub)
        if stream not in self._listeners:
            listener = self._on_message
            self._listeners[stream] = listener
            self.broker.listen(stream, listener)
        client.send(
            {
                "type": "subscribed",
                "ref": ref,
                "stream": stream,
                "epoch": info.epoch,
                "first": info.first,
                "next": info.next,
                "since": since,
                "policy": policy.value,
                "max_messages": buffer.max_messages,
                "max_bytes": buffer.max_bytes,
            }
        )
        if epoch is None:
            sub.epoch = info.epoch
        sub.start_catch_up()
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        """Remove ``sub``; release held acks it was blocking."""
        sub.close()
        self.stalled.discard(sub)
        client = sub.client
        if client.subscriptions.get(sub.stream) is sub:
            del client.subscriptions[sub.stream]
        live = self.streams.get(sub.stream)
        if live is None:
            return
        if sub in live.subscribers:
            live.subscribers.discard(sub)
            live.departed_drops += sub.buffer.dropped + sub.buffer.conflated
        if sub in live.blocked:
            live.blocked.discard(sub)
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
        status: dict[str, Any] = {"type": "status", "state": "ok" if healthy else "degraded"}
        if not healthy:
            status["reason"] = reason or "broker unavailable"
        for client in tuple(self.clients):
            client.send(status)
        if healthy:
            stalled, self.stalled = self.stalled, set()
            for sub in stalled:
                if sub.mode == Subscriber.LIVE:
                    sub.start_catch_up()

    # --- fan-out -----------------------------------------------------------------------

    def _on_message(self, stream: str, epoch: str, message: StoredMessage) -> None:
        """Broker listener: encode once, batch for this loop turn."""
        live = self.streams.get(stream)
        if live is None or not live.subscribers:
            return
        if live.batch and epoch != live.batch_epoch:
            self._deliver(live)
        frame = encode_delivery(stream, epoch, message)
        live.batch.append((message.offset, frame, message.key))
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

    def mark_dirty(self, sub: Subscriber) -> None:
        self._dirty.append(sub)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_dirty)

    def _flush_dirty(self) -> None:
        self._flush_scheduled = False
        streams, self._dirty_streams = self._dirty_streams, []
        for live in streams:
            self._deliver(live)
        dirty, self._dirty = self._dirty, []
        for sub in dirty:
            if sub.mode != Subscriber.CLOSED:
                sub.flush()

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
            "rate": live.rate.current() if live else 0.0,
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
