"""The broker contract: where stream history lives and who assigns offsets.

The in-memory broker (one process) and the Redis broker (many processes) implement the
same :class:`Broker` protocol; the hub in ``nbws.server.hub`` fans messages out to
local subscribers and never depends on which one runs underneath. Chosen by
``c.Nbws.backend`` (``memory`` | ``redis``), built by :func:`nbws.broker.create_broker`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from ..config import Nbws
from ..errors import BrokerUnavailable, PayloadTooLarge, UnknownStream
from ..protocol.messages import Publish, PublishBatch

__all__ = [
    "AppendResult",
    "BatchOutcome",
    "Broker",
    "BrokerUnavailable",
    "HealthListener",
    "HistoryLimits",
    "Listener",
    "PayloadTooLarge",
    "ReadResult",
    "StoredMessage",
    "StreamInfo",
    "UnknownStream",
]


def _config_default(name: str) -> Any:
    """The default of option ``c.Nbws.<name>``: the one place numeric defaults live."""
    return Nbws.class_traits()[name].default_value


@dataclass(frozen=True, slots=True)
class HistoryLimits:
    """How much history a stream keeps. Zero means "no limit" for bytes and age.

    The defaults are those of ``c.Nbws.history_max_*``; :meth:`from_config` applies a
    configured ``Nbws``.
    """

    max_messages: int = _config_default("history_max_messages")
    max_bytes: int = _config_default("history_max_bytes")
    max_age: float = _config_default("history_max_age")

    @classmethod
    def from_config(cls, config: Nbws) -> HistoryLimits:
        """The limits of streams created without their own, from ``c.Nbws.history_max_*``."""
        return cls(
            max_messages=config.history_max_messages,
            max_bytes=config.history_max_bytes,
            max_age=config.history_max_age,
        )


class StoredMessage(NamedTuple):
    """One appended message (a tuple: cheap to build on the publish path).

    Attributes:
        offset: position in the stream (0 for its first message).
        time: when it was appended (seconds since the epoch).
        payload: JSON bytes for a JSON message, raw bytes for a binary one.
        binary: True for a binary payload.
        producer: producer id of an acknowledged publish, else None.
        seq: the producer's sequence number, else None.
        key: conflation key, if any.
        content_type: content type of a binary payload, if given.
    """

    offset: int
    time: float
    payload: bytes
    binary: bool = False
    producer: str | None = None
    seq: int | None = None
    key: str | None = None
    content_type: str | None = None


class AppendResult(NamedTuple):
    """Outcome of an append: the offset, and whether it was a duplicate of an earlier one.

    ``offset`` is None only for a duplicate whose original offset is no longer
    remembered (its seq fell out of the dedupe window).
    """

    offset: int | None
    epoch: str
    duplicate: bool = False
    message: StoredMessage | None = None


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """What :meth:`Broker.append_batch` did with a batch of ``count`` messages.

    The common case, every message appended at consecutive offsets from ``first``, is
    said in O(1) (``results`` None): a batch of a million rows costs no object per row.
    Otherwise ``results`` holds one entry per message.
    """

    epoch: str
    count: int
    first: int | None = None
    results: list[AppendResult | PayloadTooLarge] | None = None

    def per_message(self) -> list[AppendResult | PayloadTooLarge]:
        """One entry per message: its :class:`AppendResult`, or the
        :class:`PayloadTooLarge` that refused it alone."""
        if self.results is not None:
            return self.results
        first, epoch = self.first, self.epoch
        assert first is not None
        return [AppendResult(first + i, epoch) for i in range(self.count)]


@dataclass(frozen=True, slots=True)
class ReadResult:
    """A page of history.

    Attributes:
        epoch: the stream's epoch.
        first: oldest offset still held.
        next: offset the next appended message will get.
        messages: messages with offsets >= the requested ``since``, in order.
    """

    epoch: str
    first: int
    next: int
    messages: list[StoredMessage]


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """What a broker knows about one stream."""

    name: str
    epoch: str
    first: int
    next: int
    history_messages: int
    history_bytes: int
    limits: HistoryLimits
    created: float


Listener = Callable[[str, str, StoredMessage], None]
"""Called as ``listener(stream, epoch, message)`` for each message appended, in offset order."""

HealthListener = Callable[[bool, str | None], None]
"""Called as ``callback(healthy, reason)`` when a broker's health changes."""


class Broker(Protocol):
    """Storage and ordering of stream messages (see module docstring)."""

    name: str
    concurrent_appends: bool
    """True when appends may be awaited concurrently and are still applied in call order
    (the endpoint then keeps many of one connection's publishes in flight)."""

    async def start(self) -> None:
        """Connect to the backing store (idempotent)."""

    async def close(self) -> None:
        """Release connections and background tasks."""

    @property
    def healthy(self) -> bool:
        """False while the backing store is unreachable."""

    @property
    def reason(self) -> str | None:
        """Why the broker is unhealthy (None while healthy)."""

    def on_health_change(self, callback: HealthListener) -> None:
        """Call ``callback(healthy, reason)`` whenever :attr:`healthy` changes (so the
        hub can tell connected clients with a ``status`` message)."""

    async def create(self, stream: str, limits: HistoryLimits | None = None) -> StreamInfo:
        """Create ``stream`` (or update its limits) and return its info."""

    async def delete(self, stream: str) -> bool:
        """Delete ``stream`` and its history; True if it existed. Its next epoch differs."""

    async def info(self, stream: str) -> StreamInfo | None:
        """Info of one stream, or None if it does not exist."""

    async def streams(self) -> list[StreamInfo]:
        """Info of every stream."""

    async def stream_count(self) -> int:
        """How many streams exist (cheap: health reports it; no per-stream reads).

        Raises:
            BrokerUnavailable: the backing store is unreachable.
        """

    async def append(self, publish: Publish, body: bytes, *, create: bool = True) -> AppendResult:
        """Append one message, atomically with duplicate suppression by (producer, seq).

        Args:
            publish: the decoded request (its ``payload`` is not read).
            body: the payload as stored: JSON bytes, or the raw bytes of a binary publish.
            create: create the stream if it does not exist.

        Raises:
            UnknownStream: the stream does not exist and ``create`` is False.
            PayloadTooLarge: the payload is over the stream's history ``max_bytes``.
            BrokerUnavailable: the backing store is unreachable.
        """

    async def append_batch(
        self, batch: PublishBatch, bodies: Sequence[bytes], *, create: bool = True
    ) -> BatchOutcome:
        """Append a producer's messages with seqs ``seq``, ``seq + 1``, ... in one step.

        ``bodies`` are the batch's payloads as stored (``batch.payloads`` is not read).
        Each message is deduplicated by ``(producer, seq + i)`` as :meth:`append` does;
        the ones appended get consecutive offsets (no other append comes between them,
        from any process) and reach listeners one by one, in offset order.

        Returns:
            A :class:`BatchOutcome`: the first offset when all were appended, else per
            message its :class:`AppendResult` or the :class:`PayloadTooLarge` that
            refused that message alone.

        Raises:
            UnknownStream: the stream does not exist and ``create`` is False.
            BrokerUnavailable: the backing store is unreachable (nothing was appended).
        """

    async def read(self, stream: str, since: int, limit: int) -> ReadResult:
        """Read up to ``limit`` messages with offset >= ``since``.

        Raises:
            UnknownStream: the stream does not exist.
            BrokerUnavailable: the backing store is unreachable.
        """

    def listen(self, stream: str, listener: Listener) -> None:
        """Call ``listener`` for every message appended to ``stream`` from now on
        (including appends made by other processes for a shared broker)."""

    def unlisten(self, stream: str, listener: Listener) -> None:
        """Stop calling ``listener`` for ``stream``."""
