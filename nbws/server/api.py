"""REST API under ``nbws/api``: stream introspection, create/delete, history, publish.

Handler logic lives in mixins so ``nbws serve`` (token auth) and the Jupyter extension
(Jupyter auth, XSRF) share it; each side composes them with its own base handler.
"""

from __future__ import annotations

import base64
import time
from typing import Any

import orjson
from tornado.web import HTTPError, RequestHandler

from ..broker import HistoryLimits, PayloadTooLarge, UnknownStream, default_limits
from ..wire import valid_stream_name
from .context import SETTINGS_KEY, NbwsContext

__all__ = [
    "HealthMixin",
    "MessagesMixin",
    "MetricsMixin",
    "StreamMixin",
    "StreamsMixin",
]

MAX_READ = 10_000


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

    def body_json(self) -> dict[str, Any]:
        handler: RequestHandler = self  # type: ignore[assignment]
        raw = handler.request.body
        if not raw:
            return {}
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise HTTPError(400, f"body is not JSON: {exc}") from None
        if not isinstance(value, dict):
            raise HTTPError(400, "body must be a JSON object")
        return value

    def int_arg(self, name: str, default: int | None) -> int | None:
        handler: RequestHandler = self  # type: ignore[assignment]
        raw = handler.get_query_argument(name, None)
        if raw is None or raw == "":
            return default
        try:
            return int(raw)
        except ValueError:
            raise HTTPError(400, f"{name} must be an integer") from None


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
            described = await hub.describe(info.name)
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
        body = self.body_json()
        base = default_limits(self.nbws.config)
        try:
            limits = HistoryLimits(
                max_messages=int(body.get("max_messages", base.max_messages)),
                max_bytes=int(body.get("max_bytes", base.max_bytes)),
                max_age=float(body.get("max_age", base.max_age)),
            )
        except (TypeError, ValueError):
            raise HTTPError(
                400, "max_messages/max_bytes must be integers, max_age a number"
            ) from None
        existed = await self.nbws.hub.broker.info(_check_name(name)) is not None
        await self.nbws.hub.broker.create(name, limits)
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
        limit = min(self.int_arg("limit", 1000) or 1000, MAX_READ)
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
        body = self.body_json()
        if "payload" not in body:
            raise HTTPError(400, "body needs a 'payload'")
        key = body.get("key")
        if key is not None and not isinstance(key, str):
            raise HTTPError(400, "key must be a string")
        try:
            result = await self.nbws.hub.broker.append(
                _check_name(name),
                orjson.dumps(body["payload"]),
                key=key,
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
        healthy = broker.healthy
        self.reply(
            {
                "status": "ok" if healthy else "degraded",
                "reason": None if healthy else broker.reason,
                "backend": broker.name,
                "connections": len(ctx.registry),
                "streams": len(ctx.hub.streams),
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
