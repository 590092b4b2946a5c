"""The embedded broker: history in this process's memory, bounded per stream.

Appends are synchronous under the hood (no suspension between assigning an offset and
notifying listeners), so local fan-out sees messages in offset order. History is lost
when the process stops; each stream gets a fresh epoch when it is (re)created, which is
how resuming clients learn of the loss.

History is held as plain tuples (:data:`Entry`, the fields of a
:class:`~nbws.broker.base.StoredMessage` in its order) of atomic values: the garbage
collector stops tracking such tuples after their first collection, so a long history
costs no collector time (a named tuple is tracked for life: 10k messages of history
made every full collection walk 10k objects). Readers get ``StoredMessage`` views.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from itertools import repeat
from typing import Any, cast

from ..protocol.messages import Publish, PublishBatch
from .base import (
    AppendResult,
    BatchOutcome,
    HealthListener,
    HistoryLimits,
    Listener,
    PayloadTooLarge,
    ReadResult,
    StoredMessage,
    StreamInfo,
    UnknownStream,
)
from .dedupe import DedupeWindow

__all__ = ["Entry", "MemoryBroker"]

Entry = tuple[int, float, bytes, bool, "str | None", "int | None", "str | None", "str | None"]
"""One message of history: offset, time, payload, binary, producer, seq, key, content type."""

_as_stored: Any = partial(tuple.__new__, StoredMessage)
"""``_as_stored(entry)``: the :class:`StoredMessage` of an :data:`Entry` (one C call)."""


def new_epoch() -> str:
    """A fresh, random epoch id."""
    return uuid.uuid4().hex[:16]


@dataclass
class _Stream:
    name: str
    limits: HistoryLimits
    epoch: str = field(default_factory=new_epoch)
    created: float = field(default_factory=time.time)
    # History: ``log[head:]``, oldest first. A list read by slicing (a replay page is one
    # C slice at any depth; a deque is walked from its end), trimmed by moving ``head``
    # (the slots before it set to None, so their payloads are freed at once) and
    # compacted once that dead prefix is as long as the history.
    log: list[Entry | None] = field(default_factory=list)
    head: int = 0
    bytes: int = 0
    next: int = 0
    producers: dict[str, DedupeWindow] = field(default_factory=dict)

    @property
    def held(self) -> int:
        """Messages of history held."""
        return len(self.log) - self.head

    @property
    def first(self) -> int:
        return self.next - self.held

    def page(self, since: int, limit: int) -> list[Entry]:
        """Up to ``limit`` entries from offset ``since`` (or the oldest held)."""
        start = self.head + max(0, since - self.first)
        return cast("list[Entry]", self.log[start : start + max(0, limit)])

    def trim(self, now: float) -> None:
        log, limits = self.log, self.limits
        head = self.head
        excess = len(log) - head - limits.max_messages
        if excess > 0:  # over the count bound (a batch, say): drop the oldest in one step
            dropped = cast("list[Entry]", log[head : head + excess])
            self.bytes -= sum([len(entry[2]) for entry in dropped])
            log[head : head + excess] = [None] * excess
            head += excess
        while head < len(log):
            oldest = log[head]
            assert oldest is not None
            if not (
                (limits.max_bytes and self.bytes > limits.max_bytes)
                or (limits.max_age and now - oldest[1] > limits.max_age)
            ):
                break
            self.bytes -= len(oldest[2])
            log[head] = None
            head += 1
        if head and head >= len(log) - head:
            del log[:head]
            head = 0
        self.head = head

    def info(self) -> StreamInfo:
        return StreamInfo(
            name=self.name,
            epoch=self.epoch,
            first=self.first,
            next=self.next,
            history_messages=self.held,
            history_bytes=self.bytes,
            limits=self.limits,
            created=self.created,
        )


class MemoryBroker:
    """In-process broker (the default).

    Args:
        default_limits: history limits of streams created without their own.
        dedupe_window: sequence numbers remembered per (stream, producer).
    """

    name = "memory"
    concurrent_appends = False  # appends complete without waiting: nothing to overlap

    def __init__(
        self, default_limits: HistoryLimits | None = None, dedupe_window: int = 4096
    ) -> None:
        self.default_limits = default_limits or HistoryLimits()
        self.dedupe_window = dedupe_window
        self._streams: dict[str, _Stream] = {}
        self._listeners: dict[str, list[Listener]] = {}

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._listeners.clear()

    @property
    def healthy(self) -> bool:
        return True

    @property
    def reason(self) -> str | None:
        return None

    def on_health_change(self, callback: HealthListener) -> None:
        """Never called: memory is always available."""

    def _get(self, stream: str, create: bool) -> _Stream:
        state = self._streams.get(stream)
        if state is None:
            if not create:
                raise UnknownStream(f"no stream named {stream!r}")
            state = self._streams[stream] = _Stream(stream, self.default_limits)
        return state

    async def create(self, stream: str, limits: HistoryLimits | None = None) -> StreamInfo:
        state = self._get(stream, create=True)
        if limits is not None:
            state.limits = limits
            state.trim(time.time())
        return state.info()

    async def delete(self, stream: str) -> bool:
        return self._streams.pop(stream, None) is not None

    async def info(self, stream: str) -> StreamInfo | None:
        state = self._streams.get(stream)
        return state.info() if state is not None else None

    async def streams(self) -> list[StreamInfo]:
        return [s.info() for s in self._streams.values()]

    async def stream_count(self) -> int:
        return len(self._streams)

    async def append(self, publish: Publish, body: bytes, *, create: bool = True) -> AppendResult:
        stream, producer, seq = publish.stream, publish.producer, publish.seq
        state = self._get(stream, create)
        if state.limits.max_bytes and len(body) > state.limits.max_bytes:
            raise PayloadTooLarge.over(len(body), state.limits.max_bytes)
        window: DedupeWindow | None = None
        if producer is not None and seq is not None:
            window = state.producers.get(producer)
            if window is None:
                window = state.producers[producer] = DedupeWindow(self.dedupe_window)
            seen, offset = window.lookup(seq)
            if seen:
                return AppendResult(offset, state.epoch, duplicate=True)
        now = time.time()
        offset = state.next
        entry: Entry = (
            offset, now, body, publish.binary, producer, seq, publish.key, publish.content_type
        )  # fmt: skip
        state.next += 1
        state.log.append(entry)
        state.bytes += len(body)
        state.trim(now)
        if window is not None:
            window.remember(seq, offset)  # type: ignore[arg-type]
        message: StoredMessage = _as_stored(entry)
        for listener in self._listeners.get(stream, ()):
            listener(stream, state.epoch, message)
        return AppendResult(offset, state.epoch, message=message)

    async def append_batch(
        self, batch: PublishBatch, bodies: Sequence[bytes], *, create: bool = True
    ) -> BatchOutcome:
        stream, producer, seq = batch.stream, batch.producer, batch.seq
        state = self._get(stream, create)
        window = state.producers.get(producer)
        if window is None:
            window = state.producers[producer] = DedupeWindow(self.dedupe_window)
        max_bytes = state.limits.max_bytes
        now = time.time()
        if (
            bodies
            and window.fresh_from(seq)
            and (not max_bytes or max(map(len, bodies)) <= max_bytes)
        ):
            return self._append_fresh(state, window, batch, bodies, now)
        epoch, binary, keys, content_type = (
            state.epoch,
            batch.binary,
            batch.keys,
            batch.content_type,
        )
        out: list[AppendResult | PayloadTooLarge] = []
        appended: list[StoredMessage] = []
        log = state.log
        for i, body in enumerate(bodies):
            if max_bytes and len(body) > max_bytes:
                out.append(PayloadTooLarge.over(len(body), max_bytes))
                continue
            s = seq + i
            seen, offset = window.lookup(s)
            if seen:
                out.append(AppendResult(offset, epoch, duplicate=True))
                continue
            key = keys[i] if keys is not None else None
            entry: Entry = (state.next, now, body, binary, producer, s, key, content_type)
            state.next += 1
            log.append(entry)
            state.bytes += len(body)
            window.remember(s, entry[0])
            message: StoredMessage = _as_stored(entry)
            appended.append(message)
            out.append(AppendResult(entry[0], epoch, message=message))
        if appended:
            state.trim(now)
            for listener in self._listeners.get(stream, ()):
                for message in appended:
                    listener(stream, epoch, message)
        return BatchOutcome(epoch, len(bodies), results=out)

    def _append_fresh(
        self,
        state: _Stream,
        window: DedupeWindow,
        batch: PublishBatch,
        bodies: Sequence[bytes],
        now: float,
    ) -> BatchOutcome:
        """:meth:`append_batch` of messages none of which can be a duplicate or too big
        (the common case): the entries are built by ``zip`` in C, no Python code runs
        per message unless someone listens."""
        first, count, epoch = state.next, len(bodies), state.epoch
        seq = batch.seq
        entries = zip(
            range(first, first + count),
            repeat(now),
            bodies,
            repeat(batch.binary),
            repeat(batch.producer),
            range(seq, seq + count),
            batch.keys if batch.keys is not None else repeat(None),
            repeat(batch.content_type),
        )
        listeners = self._listeners.get(state.name)
        if listeners:
            appended = list(entries)
            state.log.extend(appended)
        else:
            state.log.extend(entries)
        state.next = first + count
        state.bytes += sum(map(len, bodies))
        window.remember_run(seq, first, count)
        state.trim(now)
        if listeners:
            name = state.name
            for message in map(_as_stored, appended):
                for listener in listeners:
                    listener(name, epoch, message)
        return BatchOutcome(epoch, count, first=first)

    async def read(self, stream: str, since: int, limit: int) -> ReadResult:
        state = self._streams.get(stream)
        if state is None:
            raise UnknownStream(f"no stream named {stream!r}")
        if state.limits.max_age:
            state.trim(time.time())
        page = list(map(_as_stored, state.page(since, limit)))
        return ReadResult(state.epoch, state.first, state.next, page)

    def listen(self, stream: str, listener: Listener) -> None:
        self._listeners.setdefault(stream, []).append(listener)

    def unlisten(self, stream: str, listener: Listener) -> None:
        listeners = self._listeners.get(stream)
        if listeners and listener in listeners:
            listeners.remove(listener)
            if not listeners:
                del self._listeners[stream]
