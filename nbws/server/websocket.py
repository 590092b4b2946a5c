"""Serving an nbws endpoint from any tornado handler that has already done its auth."""

from __future__ import annotations

import logging

from tornado.web import RequestHandler

from ..errors import ConnectionClosed, ConnectionError_, InvalidState, close_for
from ..transport import accept_websocket
from .context import SETTINGS_KEY, NbwsContext

__all__ = ["serve_endpoint"]

log = logging.getLogger("nbws.server")


async def serve_endpoint(handler: RequestHandler, endpoint_name: str) -> None:
    """Validate options, upgrade, and run ``endpoint_name`` on ``handler``'s request.

    The caller has authenticated the request and checked its Origin. Errors raised by
    the endpoint close the connection with their close code; other connections are never
    affected.
    """
    context: NbwsContext = handler.settings[SETTINGS_KEY]
    endpoint = context.endpoints[endpoint_name]
    query = {
        k: v[0].decode("utf-8", "replace") for k, v in handler.request.query_arguments.items() if v
    }
    try:
        options = endpoint.parse_options(query)
    except ValueError as exc:
        handler.set_status(400)
        handler.set_header("Content-Type", "text/plain; charset=utf-8")
        handler.finish(f"Bad {endpoint_name} options: {exc}\n")
        return
    conn = accept_websocket(
        handler, endpoint=endpoint_name, config=context.config, registry=context.registry
    )
    if conn is None:
        return
    try:
        await endpoint.serve(conn, options)
    except (ConnectionClosed, InvalidState):
        pass
    except ConnectionError_ as exc:
        code, reason = close_for(exc)
        log.info("closing %s with %d: %s", conn.remote, code, reason)
        conn.fail(code, reason)
    except Exception as exc:
        log.exception("endpoint %s failed for %s", endpoint_name, conn.remote)
        code, reason = close_for(exc)
        conn.fail(code, reason)
    finally:
        conn.start_close(1000, "")
        await conn.closed
        log.info(
            "closed %s %s: sent %s, received %s",
            endpoint_name,
            conn.remote,
            conn.session.sent_close_code,
            conn.session.close_code,
        )
