"""Serving an nbws endpoint from any tornado handler that has already done its auth."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from tornado.web import RequestHandler

from ..errors import ConnectionClosed, ConnectionError_, InvalidState, close_for
from ..transport import Connection, accept_websocket
from .context import SETTINGS_KEY, NbwsContext
from .endpoints import Endpoint

__all__ = ["serve_endpoint"]

log = logging.getLogger("nbws.server")

# The endpoint tasks still running. The event loop keeps only weak references to tasks;
# these keep each one alive until its connection is done.
_running: set[asyncio.Task[None]] = set()
_forget = _running.discard  # one bound method for every task's done-callback


async def serve_endpoint(handler: RequestHandler, endpoint_name: str) -> None:
    """Validate options, upgrade, and start ``endpoint_name`` on ``handler``'s request.

    The caller has authenticated the request and checked its Origin. This returns once
    the connection is open (or refused): the endpoint runs in a task of its own, so the
    tornado handler, its request and their headers are not kept alive for as long as the
    connection lasts. Errors raised by the endpoint close the connection with their close
    code; other connections are never affected.
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
    task = asyncio.ensure_future(_run_endpoint(endpoint, endpoint_name, conn, options))
    _running.add(task)
    task.add_done_callback(_forget)


async def _run_endpoint(endpoint: Endpoint, name: str, conn: Connection, options: Any) -> None:
    """Serve ``conn`` with ``endpoint`` until it closes, mapping errors to close codes."""
    try:
        await endpoint.serve(conn, options)
    except (ConnectionClosed, InvalidState):
        pass
    except ConnectionError_ as exc:
        code, reason = close_for(exc)
        log.info("closing %s with %d: %s", conn.remote, code, reason)
        conn.fail_with(exc)
    except Exception as exc:
        log.exception("endpoint %s failed for %s", name, conn.remote)
        conn.fail_with(exc)
    finally:
        conn.start_close(1000, "")
        await conn.closed
        log.info(
            "closed %s %s: sent %s, received %s",
            name,
            conn.remote,
            conn.session.sent_close_code,
            conn.session.close_code,
        )
