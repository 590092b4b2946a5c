"""``/nbws/tap?label=LABEL``: stream the frame tap of connections opened with ``?tap=LABEL``.

The FrameInspector widget opens a tap first and then an echo connection with the same
label, so it sees every frame from the first one on. When the tapped connection closes the
tap says so and waits for the next connection with that label (the inspector reconnects
with other options, e.g. ``?fragment=N``).
"""

from __future__ import annotations

import asyncio

from ..errors import ConnectionClosed
from ..protocol import FrameRecord
from ..protocol.messages import TapAttached, TapClosed, TapDropped, TapFrame, encode
from ..transport import Connection, ConnectionRegistry

__all__ = ["TapEndpoint"]


def _send(conn: Connection, message: TapAttached | TapFrame | TapDropped | TapClosed) -> None:
    data, text = encode(message)
    conn.send_nowait(data, text=text)


LABEL_MAX = 64


class TapEndpoint:
    """Serves frame records of labelled connections as JSON text messages."""

    name = "tap"

    def __init__(self, registry: ConnectionRegistry) -> None:
        self.registry = registry

    def parse_options(self, query: dict[str, str]) -> str:
        label = query.get("label", "")
        if not label or len(label) > LABEL_MAX:
            raise ValueError(f"label is required (1-{LABEL_MAX} characters)")
        return label

    async def serve(self, conn: Connection, label: str) -> None:
        reader = asyncio.ensure_future(self._drain_input(conn))
        try:
            while conn.open:
                target = await self.registry.wait_for_label(label, conn.closed)
                if target is None:
                    return
                await self._follow(conn, target)
        finally:
            reader.cancel()

    async def _drain_input(self, conn: Connection) -> None:
        """Read (and ignore) what the tap client sends, so pings and closes are handled."""
        try:
            while True:
                await conn.receive_fragment()
        except ConnectionClosed:
            return

    async def _follow(self, conn: Connection, target: Connection) -> None:
        dropped = 0

        def send(record: FrameRecord) -> None:
            nonlocal dropped
            if not conn.open:
                return
            if not conn.writable:
                dropped += 1
                return
            if dropped:
                _send(conn, TapDropped(dropped))
                dropped = 0
            _send(conn, TapFrame(**record.as_dict()))  # type: ignore[arg-type]

        _send(conn, TapAttached(target.id, target.path, target.query, target.subprotocol))
        for record in target.tap:
            send(record)
        target.tap.watch(send)
        try:
            await asyncio.wait([target.closed, conn.closed], return_when=asyncio.FIRST_COMPLETED)
        finally:
            target.tap.unwatch(send)
        if conn.open:
            session = target.session
            _send(
                conn,
                TapClosed(
                    target.id,
                    session.close_code,
                    session.close_reason,
                    session.sent_close_code,
                    session.sent_close_reason,
                ),
            )
