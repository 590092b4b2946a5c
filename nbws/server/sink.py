"""What the stream hub needs from a connection, as a small protocol.

The hub and its subscribers write through a :class:`Sink`, never a socket, so their
logic can be driven in tests by a fake that records frames and says when it is full.
:class:`ConnectionSink` is the adapter over :class:`nbws.transport.Connection`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from ..protocol.messages import Event, encode
from ..transport import Connection

__all__ = ["ConnectionSink", "Sink"]


class Sink(Protocol):
    """Where one connection's outbound frames go."""

    id: str
    remote: str
    write_high_water: int
    """Bytes a subscriber takes from its buffer per write."""

    @property
    def open(self) -> bool:
        """False once the connection is closing: sends are then dropped."""

    @property
    def writable(self) -> bool:
        """True when a frame can be queued now without exceeding the high-water mark."""

    def send_encoded(self, data: bytes) -> bool:
        """Queue pre-encoded frame bytes; False when they cannot be sent now (closing,
        or a fragmented send in flight)."""

    def send_event(self, event: Event) -> None:
        """Encode and queue one control message (dropped once the connection closes)."""

    def when_writable(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once :attr:`writable` holds again (never once closed)."""

    async def wait_writable(self) -> bool:
        """Wait until :attr:`writable`; False if the connection closed instead."""

    def fail_with(self, exc: BaseException) -> None:
        """Close the connection for ``exc`` (its close code, from :func:`nbws.errors.close_for`)."""


class ConnectionSink:
    """:class:`Sink` over a transport :class:`~nbws.transport.Connection`."""

    __slots__ = ("conn", "id", "remote", "write_high_water")

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.id = conn.id
        self.remote = conn.remote
        self.write_high_water = conn.write_high_water

    @property
    def open(self) -> bool:
        return self.conn.open

    @property
    def writable(self) -> bool:
        return self.conn.writable

    def send_encoded(self, data: bytes) -> bool:
        return self.conn.send_encoded(data)

    def send_event(self, event: Event) -> None:
        if self.conn.open:
            data, text = encode(event)
            self.conn.send_nowait(data, text=text)

    def when_writable(self, callback: Callable[[], None]) -> None:
        self.conn.when_writable(callback)

    async def wait_writable(self) -> bool:
        return await self.conn.wait_writable()

    def fail_with(self, exc: BaseException) -> None:
        self.conn.fail_with(exc)
