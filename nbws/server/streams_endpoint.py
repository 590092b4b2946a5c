"""``/nbws/ws``: the ``nbws.v1`` protocol on one connection (docs/protocol.md).

Decodes each message with :func:`nbws.protocol.messages.decode_request` (its shortcut
for a well-formed publish) and turns it into a hub call (a ``publish_batch`` into one
:meth:`StreamHub.publish_batch`: one broker call, answered with range acks; a
``consumed`` into :meth:`Subscriber.consumed`, answered only when refused). Refused
requests are answered with an ``error`` (or, for an acked publish or batch whose
``producer``/``seq`` were valid, a ``nack`` for that seq or range) — never a crash, never
an effect on other connections. Text that is not JSON closes with 1007; JSON that is not
an object, a malformed binary header, or more than ``MAX_BAD_REQUESTS`` bad requests,
with 1008.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

import orjson

from .. import __version__
from ..config import Nbws
from ..errors import (
    BadRequest,
    ConnectionClosed,
    NotSubscribed,
    PolicyViolation,
    RequestError,
    UnknownStream,
)
from ..protocol.messages import (
    PROTOCOL,
    Consumed,
    Info,
    InfoRequest,
    Policy,
    Publish,
    PublishBatch,
    Request,
    Subscribe,
    Unsubscribe,
    Unsubscribed,
    Welcome,
    decode_request_fast,
    right_sized,
)
from ..transport import Connection
from ..transport.connection import write_corked
from ..transport.turns import slice_for, yield_turn
from . import metrics
from .hub import Client, StreamHub
from .sink import ConnectionSink

__all__ = ["MAX_BAD_REQUESTS", "StreamsEndpoint", "encode_payload"]

log = logging.getLogger("nbws.streams")

MAX_BAD_REQUESTS = 100
MAX_PUBLISHES_IN_FLIGHT = 1024  # per connection, with a broker that pipelines appends


def _publish_done(in_flight: set[asyncio.Future[None]]) -> Callable[[asyncio.Future[None]], None]:
    """Done-callback of a publish in flight: forget it; log what the hub did not handle."""

    def done(task: asyncio.Future[None]) -> None:
        in_flight.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("publish failed", exc_info=task.exception())

    return done


class StreamsEndpoint:
    """The streams endpoint; one instance serves every connection of a server."""

    name = "streams"

    def __init__(self, hub: StreamHub, config: Nbws) -> None:
        self.hub = hub
        self.config = config
        self.default_policy = Policy(config.buffer_policy)

    def parse_options(self, query: dict[str, str]) -> None:
        return None

    async def serve(self, conn: Connection, options: None) -> None:
        client = Client(ConnectionSink(conn))
        gauge = metrics.CONNECTIONS.labels("streams")
        gauge.inc()
        bad_requests = 0
        config = self.config
        client.send(
            Welcome(
                PROTOCOL,
                f"nbws {__version__}",
                conn.id,
                config.max_message_size,
                config.heartbeat_interval,
                config.dedupe_window,
            )
        )
        try:
            spent = 0.0  # handling time since this connection last yielded
            clock = time.perf_counter
            budget = slice_for(conn, time.monotonic())
            hub = self.hub
            while True:
                if spent >= budget:
                    # A burst already read is handled without suspending; yield now and
                    # then so the acks and deliveries queued so far go out meanwhile and
                    # other connections get their turn (by time: one request may cost
                    # 1 us, another 100 times that).
                    spent = 0.0
                    hub.flush_now()
                    write_corked()
                    await yield_turn()
                    budget = slice_for(conn, time.monotonic())
                elif not conn.has_input:
                    hub.flush_now()  # about to wait: what this turn queued goes out now
                    write_corked()
                try:
                    fragment = await conn.receive_fragment()
                    text, data = fragment.text, fragment.data
                    if not fragment.last:  # reassemble (bounded by max_message_size)
                        parts = [data]
                        while not fragment.last:
                            fragment = await conn.receive_fragment()
                            parts.append(fragment.data)
                        data = b"".join(parts)
                except ConnectionClosed:
                    return
                began = clock()
                try:
                    await self.handle(client, decode_request_fast(data, text=text))
                except RequestError as exc:
                    bad_requests += 1
                    if bad_requests > MAX_BAD_REQUESTS:
                        raise PolicyViolation(
                            f"more than {MAX_BAD_REQUESTS} bad requests; last: {exc}"
                        ) from None
                    self.refuse(client, exc)
                spent += clock() - began
        finally:
            gauge.dec()
            if client.in_flight:  # appends already sent complete (their acks go nowhere)
                await asyncio.gather(*client.in_flight, return_exceptions=True)
            self.hub.drop_client(client)

    def refuse(self, client: Client, exc: RequestError) -> None:
        """A ``nack`` for an acked publish whose identity was valid, else an ``error``."""
        if exc.publish is not None:
            stream, producer, seq = exc.publish
            self.hub.nack(client, stream, producer, seq, exc, exc.publish_last)
        else:
            client.refuse(exc, exc.ref)

    async def handle(self, client: Client, request: Request) -> None:
        """Act on one decoded request."""
        kind = type(request)
        if kind is Publish or kind is PublishBatch:
            publishing = (
                self._publish(client, request)  # type: ignore[arg-type]
                if kind is Publish
                else self._publish_batch(client, request)  # type: ignore[arg-type]
            )
            if not self.hub.broker.concurrent_appends:
                await publishing
                return
            # The broker keeps appends in call order: start this one and read on, so one
            # connection keeps many appends in flight (bounded), each acked when done.
            in_flight = client.in_flight
            if len(in_flight) >= MAX_PUBLISHES_IN_FLIGHT:
                await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
            task = asyncio.ensure_future(publishing)
            in_flight.add(task)
            task.add_done_callback(_publish_done(in_flight))
            return
        if client.in_flight:  # a request sees the effect of the publishes sent before it
            await asyncio.gather(*client.in_flight, return_exceptions=True)
        try:
            if kind is Consumed:  # a page's report, once per animation frame per stream
                sub = client.subscriptions.get(request.stream)
                if sub is None:
                    raise NotSubscribed(f"not subscribed to {request.stream!r}")
                sub.consumed(request.offset)  # type: ignore[union-attr]
            elif isinstance(request, Subscribe):
                await self._subscribe(client, request)
            elif isinstance(request, Unsubscribe):
                sub = client.subscriptions.get(request.stream)
                if sub is None:
                    raise NotSubscribed(f"not subscribed to {request.stream!r}")
                self.hub.unsubscribe(sub)
                client.send(Unsubscribed(request.stream, request.id))
            elif isinstance(request, InfoRequest):
                await self._info(client, request)
        except RequestError as exc:
            if exc.ref is None:
                exc.ref = request.id
            raise

    async def _info(self, client: Client, request: InfoRequest) -> None:
        info = await self.hub.describe(request.stream)
        if info is None:
            raise UnknownStream(f"no stream named {request.stream!r}")
        client.send(
            Info(
                request.stream,
                info["epoch"],
                info["first"],
                info["next"],
                info["history_messages"],
                info["history_bytes"],
                info["rate"],
                info["subscribers"],
                info["drops"],
                info["held_acks"],
                request.id,
            )
        )

    def _publish(self, client: Client, request: Publish) -> Coroutine[Any, Any, None]:
        """The append of a decoded publish, still to await."""
        body = request.payload if request.binary else encode_payload(request.payload)
        return self.hub.publish(client, request, body)

    def _publish_batch(self, client: Client, request: PublishBatch) -> Coroutine[Any, Any, None]:
        """The append of a decoded batch, still to await (JSON payloads serialised once
        each, as stored)."""
        payloads = request.payloads or []
        if not request.binary:
            payloads = [encode_payload(value) for value in payloads]
        return self.hub.publish_batch(client, request, payloads)

    async def _subscribe(self, client: Client, request: Subscribe) -> None:
        config = self.config
        limit_messages, limit_bytes = config.buffer_max_messages, config.buffer_max_bytes
        await self.hub.subscribe(
            client,
            request.stream,
            since=request.since,
            until=request.until,
            epoch=request.epoch,
            policy=request.policy or self.default_policy,
            max_messages=min(request.max_messages or limit_messages, limit_messages),
            max_bytes=min(request.max_bytes or limit_bytes, limit_bytes),
            max_batch=request.max_batch,
            linger_ms=request.linger_ms,
            credit=request.credit,
            credit_bytes=request.credit_bytes,
            ref=request.id,
        )


def encode_payload(value: Any) -> bytes:
    """A JSON payload as stored: serialised once, delivered as-is to every subscriber
    (:func:`~nbws.protocol.messages.right_sized`: history keeps it for long)."""
    try:
        return right_sized(orjson.dumps(value))
    except TypeError as exc:  # pragma: no cover - anything parsed from JSON serialises
        raise BadRequest(f"payload cannot be stored: {exc}") from None
