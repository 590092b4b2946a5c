"""``/nbws/ws``: the ``nbws.v1`` protocol on one connection (docs/protocol.md).

Parses and validates each control message, turns it into a hub call, and answers bad
requests with an ``error`` — never a crash, never an effect on other connections. Text
that is not JSON closes with 1007; a malformed binary header, or more than
``MAX_BAD_REQUESTS`` bad requests, with 1008.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import orjson

from .. import __version__
from ..config import Nbws
from ..errors import ConnectionClosed, PolicyViolation
from ..transport import Connection
from ..wire import PROTOCOL, decode_json, split_binary, valid_stream_name
from . import metrics
from .buffers import Policy
from .streams import Client, StreamHub

__all__ = ["BadRequest", "StreamsEndpoint"]

log = logging.getLogger("nbws.streams")

MAX_BAD_REQUESTS = 100
YIELD_EVERY = 64  # messages handled in a row before yielding to the loop
MAX_PUBLISHES_IN_FLIGHT = 1024  # per connection, with a broker that pipelines appends
MAX_KEY_LENGTH = 256
MAX_PRODUCER_LENGTH = 256
MAX_CONTENT_TYPE_LENGTH = 256


class BadRequest(Exception):
    """A request nbws answers with an ``error`` (the connection stays open)."""

    def __init__(self, message: str, code: str = "bad-request") -> None:
        super().__init__(message)
        self.code = code


def _stream(message: dict[str, Any]) -> str:
    name = message.get("stream")
    if not valid_stream_name(name):
        raise BadRequest(
            f"{message.get('type')} needs a 'stream' of 1-200 characters from A-Z a-z 0-9 . _ : / -"
        )
    assert isinstance(name, str)
    return name


def _optional_int(message: dict[str, Any], name: str, *, minimum: int | None = None) -> int | None:
    value = message.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadRequest(f"'{name}' must be an integer")
    if minimum is not None and value < minimum:
        raise BadRequest(f"'{name}' must be at least {minimum}")
    return value


def _optional_str(message: dict[str, Any], name: str, limit: int) -> str | None:
    value = message.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"'{name}' must be a string")
    if len(value) > limit:
        raise BadRequest(f"'{name}' is longer than {limit} characters")
    return value


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

    def parse_options(self, query: dict[str, str]) -> None:
        return None

    async def serve(self, conn: Connection, options: None) -> None:
        client = Client(conn)
        gauge = metrics.CONNECTIONS.labels("streams")
        gauge.inc()
        bad_requests = 0
        client.send(
            {
                "type": "welcome",
                "protocol": PROTOCOL,
                "server": f"nbws {__version__}",
                "connection": conn.id,
                "max_message_size": self.config.max_message_size,
                "heartbeat_interval": self.config.heartbeat_interval,
                "dedupe_window": self.config.dedupe_window,
            }
        )
        try:
            handled = 0
            while True:
                handled += 1
                if handled % YIELD_EVERY == 0:
                    # A burst already read is handled without suspending; yield now and
                    # then so the acks and deliveries queued so far go out meanwhile and
                    # other connections get their turn.
                    await asyncio.sleep(0)
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
                ref: Any = None
                try:
                    if text:
                        message = decode_json(data)
                        ref = message.get("id")
                        await self.handle(client, message, None)
                    else:
                        header, payload = split_binary(data)
                        ref = header.get("id")
                        await self.handle(client, header, bytes(payload))
                except BadRequest as exc:
                    bad_requests += 1
                    if bad_requests > MAX_BAD_REQUESTS:
                        raise PolicyViolation(
                            f"more than {MAX_BAD_REQUESTS} bad requests; last: {exc}"
                        ) from None
                    client.send(
                        {"type": "error", "ref": ref, "code": exc.code, "message": str(exc)}
                    )
        finally:
            gauge.dec()
            if client.in_flight:  # appends already sent complete (their acks go nowhere)
                await asyncio.gather(*client.in_flight, return_exceptions=True)
            self.hub.drop_client(client)

    async def handle(self, client: Client, message: dict[str, Any], payload: bytes | None) -> None:
        """Act on one control message (``payload`` is set for a binary message)."""
        kind = message.get("type")
        if kind == "publish":
            publishing = self._publish(client, message, payload)
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
        if payload is not None:
            raise BadRequest("only publish may be sent as a binary message")
        if client.in_flight:  # a request sees the effect of the publishes sent before it
            await asyncio.gather(*client.in_flight, return_exceptions=True)
        if kind == "subscribe":
            await self._subscribe(client, message)
        elif kind == "unsubscribe":
            stream = _stream(message)
            sub = client.subscriptions.get(stream)
            if sub is None:
                raise BadRequest(f"not subscribed to {stream!r}", "not-subscribed")
            self.hub.unsubscribe(sub)
            client.send({"type": "unsubscribed", "ref": message.get("id"), "stream": stream})
        elif kind == "info":
            stream = _stream(message)
            info = await self.hub.describe(stream)
            if info is None:
                raise BadRequest(f"no stream named {stream!r}", "unknown-stream")
            info.pop("name", None)
            info.pop("limits", None)
            client.send({"type": "info", "ref": message.get("id"), "stream": stream, **info})
        else:
            raise BadRequest(f"unknown message type {kind!r}", "unknown-type")

    def _publish(
        self, client: Client, message: dict[str, Any], payload: bytes | None
    ) -> Coroutine[Any, Any, None]:
        """Check a publish (BadRequest at once) and return the append still to await."""
        stream = _stream(message)
        producer = _optional_str(message, "producer", MAX_PRODUCER_LENGTH)
        seq = _optional_int(message, "seq", minimum=0)
        if (producer is None) != (seq is None):
            raise BadRequest("'producer' and 'seq' go together (both for an acked publish)")
        key = _optional_str(message, "key", MAX_KEY_LENGTH)
        content_type = _optional_str(message, "content_type", MAX_CONTENT_TYPE_LENGTH)
        if payload is None:
            if "payload" not in message:
                raise BadRequest("publish needs a 'payload' (or send it as a binary message)")
            body = encode_payload(message["payload"])
            binary = False
        else:
            body, binary = payload, True
        return self.hub.publish(
            client,
            stream,
            body,
            binary=binary,
            producer=producer,
            seq=seq,
            key=key,
            content_type=content_type,
        )

    async def _subscribe(self, client: Client, message: dict[str, Any]) -> None:
        stream = _stream(message)
        since = _optional_int(message, "since")
        until = _optional_int(message, "until", minimum=0)
        epoch = _optional_str(message, "epoch", 64)
        policy_name = message.get("policy", self.config.buffer_policy)
        try:
            policy = Policy(policy_name)
        except ValueError:
            choices = ", ".join(p.value for p in Policy)
            raise BadRequest(f"unknown policy {policy_name!r}; use one of {choices}") from None
        max_messages = _optional_int(message, "max_messages", minimum=1)
        max_bytes = _optional_int(message, "max_bytes", minimum=1)
        config = self.config
        await self.hub.subscribe(
            client,
            stream,
            since=since,
            until=until,
            epoch=epoch,
            policy=policy,
            max_messages=min(
                max_messages or config.buffer_max_messages, config.buffer_max_messages
            ),
            max_bytes=min(max_bytes or config.buffer_max_bytes, config.buffer_max_bytes),
            ref=message.get("id"),
        )


def encode_payload(value: Any) -> bytes:
    """A JSON payload as stored: serialised once, delivered as-is to every subscriber."""
    try:
        return orjson.dumps(value)
    except TypeError as exc:  # pragma: no cover - anything parsed from JSON serialises
        raise BadRequest(f"payload cannot be stored: {exc}") from None
