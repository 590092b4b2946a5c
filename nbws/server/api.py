"""REST API under ``nbws/api``: stream introspection, create/delete, history, publish.

Handler logic lives in mixins so ``nbws serve`` (token auth) and the Jupyter extension
(Jupyter auth, XSRF) share it; each side composes them with its own base handler.
Request bodies are checked by the message layer (``messages.CreateStream``,
``messages.PublishBody``: the same field rules as nbws.v1), so a bad value is a 400
with a one-line message and no side effect. Errors are JSON in both hosts:
``{"status": 400, "message": "..."}``.
"""

from __future__ import annotations

import base64
import logging
import time
from http.client import responses
from typing import Any

import orjson
from tornado.web import HTTPError, RequestHandler

from ..broker import (
    BrokerUnavailable,
    HistoryLimits,
    PayloadTooLarge,
    UnknownStream,
    default_limits,
)
from ..errors import BadRequest
from ..protocol.messages import (
    MAX_SAFE_INTEGER,
    CreateStream,
    M,
    Publish,
    PublishBody,
    decode_body,
    valid_stream_name,
)
from .context import SETTINGS_KEY, NbwsContext

__all__ = [
    "HealthMixin",
    "MessagesMixin",
    "MetricsMixin",
    "StreamMixin",
    "StreamsMixin",
]

MAX_READ = 10_000

log = logging.getLogger("nbws.api")
_unlistable: set[str] = set()  # streams a listing skipped (logged once each)


class _ApiMixin:
    """JSON helpers over a tornado handler."""

    settings: dict[str, Any]

    @property
    def nbws(self) -> NbwsContext:
        return self.settings[SETTINGS_KEY]  # type: ignore[no-any-return]

    def reply(self, body: Any, status: int = 200) -> None:
        handler: RequestHandler = self  # type: ignore[assignment]
        handler.set_status(status)
        handler.set_header("Content-Type", "application/json")
        handler.finish(orjson.dumps(body))

    def body(self, cls: type[M]) -> M:
        """The request body as a checked message (400 on any bad field)."""
        handler: RequestHandler = self  # type: ignore[assignment]
        try:
            return decode_body(cls, handler.request.body)
        except BadRequest as exc:
            raise HTTPError(400, str(exc)) from None

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Errors as one JSON object with a one-line message (never a traceback)."""
        handler: RequestHandler = self  # type: ignore[assignment]
        message = responses.get(status_code, "error")
        exc_info = kwargs.get("exc_info")
        exc = exc_info[1] if exc_info else None
        if isinstance(exc, HTTPError) and exc.log_message:
            message = exc.log_message
        elif isinstance(exc, BrokerUnavailable):  # the broker is down: retry later
            status_code = 503
            message = str(exc)
            handler.set_status(503)
            handler.set_header("Retry-After", "1")
        handler.set_header("Content-Type", "application/json")
        handler.finish(orjson.dumps({"status": status_code, "message": message}))

    def int_arg(self, name: str, default: int | None) -> int | None:
        handler: RequestHandler = self  # type: ignore[assignment]
        raw = handler.get_query_argument(name, None)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise HTTPError(400, f"{name} must be an integer") from None
        if abs(value) > MAX_SAFE_INTEGER:
            raise HTTPError(400, f"{name} must be at most {MAX_SAFE_INTEGER} in magnitude")
        return value


def _check_name(name: str) -> str:
    if not valid_stream_name(name):
        raise HTTPError(400, "stream names are 1-200 characters from A-Z a-z 0-9 . _ : / -")
    return name


class StreamsMixin(_ApiMixin):
    """``GET nbws/api/streams``: every stream with offsets, rate, subscribers, drops."""

    async def get(self) -> None:
        hub = self.nbws.hub
        infos = await hub.broker.streams()
        streams = []
        for info in sorted(infos, key=lambda i: i.name):
            try:
                described = await hub.describe(info.name)
                if described is not None:
                    orjson.dumps(described)  # one unreadable entry must not fail the list
            except (ValueError, TypeError, orjson.JSONEncodeError) as exc:
                if info.name not in _unlistable:
                    _unlistable.add(info.name)
                    log.warning("stream %r left out of the listing: %s", info.name, exc)
                continue
            if described is not None:
                streams.append(described)
        self.reply({"streams": streams})


class StreamMixin(_ApiMixin):
    """``GET/POST/DELETE nbws/api/streams/{name}``."""

    async def get(self, name: str) -> None:
        described = await self.nbws.hub.describe(_check_name(name), subscribers=True)
        if described is None:
            raise HTTPError(404, f"no stream named {name!r}")
        self.reply(described)

    async def post(self, name: str) -> None:
        """Create the stream (or change its history limits)."""
        _check_name(name)
        body = self.body(CreateStream)
        base = default_limits(self.nbws.config)
        limits = HistoryLimits(
            max_messages=base.max_messages if body.max_messages is None else body.max_messages,
            max_bytes=base.max_bytes if body.max_bytes is None else body.max_bytes,
            max_age=base.max_age if body.max_age is None else float(body.max_age),
        )
        broker = self.nbws.hub.broker
        existed = await broker.info(name) is not None
        await broker.create(name, limits)
        described = await self.nbws.hub.describe(name)
        self.reply(described, 200 if existed else 201)

    async def delete(self, name: str) -> None:
        """Delete the stream and its history (a new epoch if it is used again)."""
        if not await self.nbws.hub.broker.delete(_check_name(name)):
            raise HTTPError(404, f"no stream named {name!r}")
        handler: RequestHandler = self  # type: ignore[assignment]
        handler.set_status(204)
        handler.finish()


class MessagesMixin(_ApiMixin):
    """``GET nbws/api/streams/{name}/messages?since=&until=&limit=`` reads history;
    ``POST`` publishes one message (the request/response baseline for polling clients)."""

    async def get(self, name: str) -> None:
        since = self.int_arg("since", 0) or 0
        until = self.int_arg("until", None)
        limit = self.int_arg("limit", 1000)
        if limit is None or limit < 1:
            raise HTTPError(400, "limit must be at least 1")
        limit = min(limit, MAX_READ)
        try:
            page = await self.nbws.hub.broker.read(_check_name(name), since, limit)
        except UnknownStream:
            raise HTTPError(404, f"no stream named {name!r}") from None
        messages = []
        for m in page.messages:
            if until is not None and m.offset >= until:
                break
            item: dict[str, Any] = {"offset": m.offset, "time": m.time}
            if m.producer is not None:
                item["producer"], item["seq"] = m.producer, m.seq
            if m.key is not None:
                item["key"] = m.key
            if m.binary:
                item["binary"] = True
                item["payload_base64"] = base64.b64encode(m.payload).decode("ascii")
                if m.content_type:
                    item["content_type"] = m.content_type
            else:
                item["payload"] = orjson.Fragment(m.payload)
            messages.append(item)
        self.reply(
            {
                "stream": name,
                "epoch": page.epoch,
                "first": page.first,
                "next": page.next,
                "messages": messages,
            }
        )

    async def post(self, name: str) -> None:
        _check_name(name)
        body = self.body(PublishBody)
        try:
            result = await self.nbws.hub.broker.append(
                Publish(name, body.payload, key=body.key),
                orjson.dumps(body.payload),
                create=self.nbws.config.auto_create_streams,
            )
        except UnknownStream:
            raise HTTPError(404, f"no stream named {name!r}") from None
        except PayloadTooLarge as exc:
            raise HTTPError(413, str(exc)) from None
        self.reply({"stream": name, "offset": result.offset, "epoch": result.epoch}, 201)


class HealthMixin(_ApiMixin):
    """``GET nbws/api/health``."""

    async def get(self) -> None:
        ctx = self.nbws
        broker = ctx.hub.broker
        try:
            count: int | None = await broker.stream_count()
        except BrokerUnavailable:
            count = None  # health answers while the broker is down
        healthy = broker.healthy
        self.reply(
            {
                "status": "ok" if healthy else "degraded",
                "reason": None if healthy else broker.reason,
                "backend": broker.name,
                "connections": len(ctx.registry),
                "streams": count,
                "time": time.time(),
            }
        )


class MetricsMixin:
    """``GET /metrics`` for ``nbws serve`` (Jupyter serves its own)."""

    def get(self) -> None:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        handler: RequestHandler = self  # type: ignore[assignment]
        handler.set_header("Content-Type", CONTENT_TYPE_LATEST)
        handler.finish(generate_latest())
