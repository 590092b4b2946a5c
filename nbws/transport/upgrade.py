"""Take over a tornado request once the HTTP layer has authenticated it."""

from __future__ import annotations

import logging

from tornado.web import RequestHandler

from ..config import Nbws
from ..protocol import Session, serialize_request
from .connection import Connection
from .registry import ConnectionRegistry

__all__ = ["accept_websocket"]

access_log = logging.getLogger("nbws.access")

_DROP_ON_REJECT = {"content-length", "content-type", "connection", "date", "server"}


def accept_websocket(
    handler: RequestHandler, *, endpoint: str, config: Nbws, registry: ConnectionRegistry
) -> Connection | None:
    """Run the opening handshake on ``handler``'s request.

    On success the stream is detached from tornado, the 101 response is written, and a
    started :class:`Connection` (tracked by ``registry``) is returned. Otherwise a plain
    HTTP response (503 over the connection limit, 426 for a wrong version, 400 for a
    malformed upgrade) is sent through tornado and None is returned.
    """
    request = handler.request
    if registry.full:
        registry.refused += 1
        handler.set_status(503)
        handler.set_header("Retry-After", "1")
        handler.set_header("Content-Type", "text/plain; charset=utf-8")
        handler.finish(f"Too many WebSocket connections (limit {registry.max_connections}).\n")
        return None
    session = Session.from_config(config, endpoint)
    raw = serialize_request(
        request.method or "GET", request.uri or "/", list(request.headers.get_all())
    )
    response = session.receive_request(raw)
    if response.status_code != 101:
        handler.set_status(response.status_code)
        for name, value in response.headers.raw_items():
            if name.lower() not in _DROP_ON_REJECT:
                handler.set_header(name, value)
        handler.set_header("Content-Type", "text/plain; charset=utf-8")
        handler.finish(bytes(response.body))
        return None
    stream = handler.detach()  # marks the handler finished: tornado writes nothing more
    access_log.info(
        "101 GET %s (%s) subprotocol=%s extensions=%s",
        request.path,
        request.remote_ip,
        session.subprotocol or "-",
        session.extensions_header or "-",
    )
    query = {k: v[0].decode("utf-8", "replace") for k, v in request.query_arguments.items() if v}
    conn = Connection(
        stream,
        session,
        write_high_water=config.write_high_water,
        write_low_water=config.write_low_water,
        read_high_water=config.read_high_water,
        close_timeout=config.close_timeout,
        stall_timeout=config.stall_timeout,
        path=request.path,
        query=query,
        remote=request.remote_ip or "",
    )
    registry.add(conn)
    conn.start()
    return conn
