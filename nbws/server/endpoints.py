"""WebSocket endpoints: what runs on a connection once the handshake is done.

An endpoint parses its query options before the upgrade (a bad option is an HTTP 400,
not a WebSocket close) and then serves one :class:`~nbws.transport.Connection`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import ConnectionClosed, is_sendable_close_code
from ..transport import Connection, IncomingMessage

__all__ = ["EchoEndpoint", "EchoOptions", "Endpoint"]


class Endpoint(Protocol):
    """What a WebSocket route serves."""

    name: str

    def parse_options(self, query: dict[str, str]) -> Any:
        """Validate query options; raise ValueError with a readable message if bad."""

    async def serve(self, conn: Connection, options: Any) -> None:
        """Serve ``conn`` until it closes (raise a ConnectionError_ to close with its code)."""


@dataclass(frozen=True, slots=True)
class EchoOptions:
    """Echo playground options, from the query string.

    Attributes:
        fragment: re-send each echo as fragments of this many bytes (0: one frame).
        stream: echo each fragment as it arrives (constant memory for huge messages).
        close: after the first echo, start a close with this code (0: never).
        reason: reason for that close.
        delay_ms: wait this long before each echo.
    """

    fragment: int = 0
    stream: bool = False
    close: int = 0
    reason: str = ""
    delay_ms: int = 0


def _int(query: dict[str, str], name: str, low: int, high: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return 0
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, not {raw!r}") from None
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, not {value}")
    return value


class EchoEndpoint:
    """``/nbws/echo``: echoes every message with the same opcode and bytes.

    Fragmented input is echoed as one message by default; ``?fragment=N`` re-sends each
    echo as N-byte fragments and ``?stream=1`` mirrors fragments as they arrive, both
    without holding the whole message. ``?close=CODE&reason=...`` starts a close after the
    first echo; ``?delay_ms=`` delays echoes.
    """

    name = "echo"

    def parse_options(self, query: dict[str, str]) -> EchoOptions:
        close = _int(query, "close", 0, 4999)
        if close and not is_sendable_close_code(close):
            raise ValueError(f"close={close} is not a close code a server may send")
        reason = query.get("reason", "")
        if len(reason.encode("utf-8")) > 123:
            raise ValueError("reason must be at most 123 bytes of UTF-8")
        return EchoOptions(
            fragment=_int(query, "fragment", 1, 16 * 1024 * 1024),
            stream=query.get("stream", "") in ("1", "true", "yes"),
            close=close,
            reason=reason,
            delay_ms=_int(query, "delay_ms", 0, 60_000),
        )

    async def serve(self, conn: Connection, options: EchoOptions) -> None:
        while True:
            try:
                message = await conn.receive_message()
            except ConnectionClosed:
                return
            if options.delay_ms:
                await asyncio.sleep(options.delay_ms / 1000)
            if options.fragment:
                await conn.send_fragments(_rechunk(message, options.fragment), text=message.text)
            elif options.stream:
                await conn.send_fragments(message, text=message.text)
            else:
                parts = [chunk async for chunk in message]
                data = parts[0] if len(parts) == 1 else b"".join(parts)
                await conn.send(data, text=message.text)
            if options.close:
                conn.start_close(options.close, options.reason)
                return


async def _rechunk(message: IncomingMessage, size: int) -> AsyncIterator[bytes]:
    """Re-cut a message's chunks into ``size``-byte pieces as they arrive."""
    pending = bytearray()
    async for chunk in message:
        pending += chunk
        while len(pending) >= size:
            yield bytes(pending[:size])
            del pending[:size]
    if pending or message.size == 0:
        yield bytes(pending)
