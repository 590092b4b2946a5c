"""One subscription's state machine, pure: no loop, no socket, no clock.

Theory of operation. A subscription has a *cursor*: the next offset it should get. It
starts ``CATCHING_UP`` (the driver reads history pages from the cursor and hands each to
:meth:`Subscription.receive_page`), then goes ``LIVE`` once a page reaches the end of the
stream; from then on the broker's live messages reach it through
:meth:`Subscription.receive_live` and are offered to its bounded
:class:`~nbws.server.buffers.SubscriberBuffer`. A live message behind the cursor is
skipped; one ahead of it (a seam between the broker's reader and the history) sends the
subscription back to ``CATCHING_UP``, so there is never a gap or a duplicate at the seam.
A ``block`` buffer that fills makes it ``BLOCKED`` (still live: acks of its stream are
held) until it drains below half its bound. A broker outage during catch-up makes it
``STALLED`` until the broker is back. Every move is in :data:`TRANSITIONS`; any other
raises :class:`~nbws.errors.InvalidState`.

The driver (``hub.py``) does the I/O: it reads pages, writes what the buffer gives it,
sends the gap notices this machine queues in :attr:`Subscription.notices`, and asks
:meth:`Subscription.holds_ack` before releasing a producer's ack.

Batching (``max_batch``): :meth:`Subscription.frames` turns what the buffer gives into
``batch`` frames, cut at gaps, at ``max_batch`` and where payloads change between JSON
and binary (:func:`cut_runs`). A frame is looked up in the stream's :class:`SharedFrames`
first, so subscribers with the same run get the same bytes object; each message's batch
element was encoded once for the stream. With ``linger_ms`` a partial live batch may
wait (:meth:`Subscription.flush_due`); the hub keeps one timer for all of them.

Credit (``credit``, with ``max_batch``): the client reports how far it has applied the
stream (``consumed``), so what is in flight to it is bounded by messages (and bytes), not
by TCP buffers. *In flight* is what was written (:meth:`Subscription.sent`) with an
offset above the last ``consumed``; a live subscription whose in-flight count reaches the
credit is ``WAITING``: nothing more is written, live messages wait in its buffer where its
policy acts as for a slow reader (drops and gap notices, conflation, 1013, held acks), and
a ``consumed`` that frees credit (:meth:`Subscription.consume`) makes it ``LIVE`` again.
The arithmetic keeps one mark per write (offset reached, messages, bytes), at most
:data:`MAX_MARKS` of them (the newest merged), so a report inside a merged write frees
only what is surely at or below it: never more than was sent.
"""

from __future__ import annotations

import enum
from bisect import bisect_left
from collections import deque
from collections.abc import Mapping
from itertools import accumulate

from orjson import dumps as _dumps

from ..broker.base import ReadResult, StoredMessage
from ..errors import BadRequest, InvalidState
from ..protocol.framing import encode_message
from ..protocol.messages import (
    BATCH_BYTES,
    BATCH_HEADER_BYTES,
    BatchItem,
    GapReason,
    Policy,
    batch_item,
    encode_batch,
)
from ..protocol.messages import Gap as GapNotice
from .buffers import Delivery, Gap, Offer, SubscriberBuffer

__all__ = [
    "MAX_MARKS",
    "TRANSITIONS",
    "Live",
    "Move",
    "SharedFrames",
    "State",
    "Step",
    "Subscription",
    "cut_runs",
    "diagram",
    "stored_item",
]


class State(str, enum.Enum):
    """Where a subscription is (``mode`` in REST introspection)."""

    CATCHING_UP = "catching-up"
    LIVE = "live"
    BLOCKED = "blocked"
    WAITING = "waiting"
    STALLED = "stalled"
    CLOSED = "closed"

    def __str__(self) -> str:
        return self.value


class Move(enum.Enum):
    """What happened to a subscription."""

    CAUGHT_UP = "caught-up"  # a history page reached the end of the stream
    FELL_BEHIND = "fell-behind"  # a live message ahead of the cursor, or a new epoch
    FULL = "full"  # a block buffer is at its bound
    ROOM = "room"  # a blocked buffer drained below half its bound
    SPENT = "spent"  # what is in flight reached the credit
    CONSUMED = "consumed"  # a `consumed` report freed credit
    BROKER_DOWN = "broker-down"  # history could not be read
    BROKER_BACK = "broker-back"  # the broker is healthy again
    CLOSE = "close"  # unsubscribed, ended (until), overflowed, or the connection left


TRANSITIONS: Mapping[State, Mapping[Move, State]] = {
    State.CATCHING_UP: {
        Move.CAUGHT_UP: State.LIVE,
        Move.FELL_BEHIND: State.CATCHING_UP,
        Move.BROKER_DOWN: State.STALLED,
        Move.CLOSE: State.CLOSED,
    },
    State.LIVE: {
        Move.FELL_BEHIND: State.CATCHING_UP,
        Move.FULL: State.BLOCKED,
        Move.SPENT: State.WAITING,
        Move.CLOSE: State.CLOSED,
    },
    State.WAITING: {
        Move.CONSUMED: State.LIVE,
        Move.FULL: State.BLOCKED,  # a block buffer filled meanwhile: acks are held
        Move.FELL_BEHIND: State.CATCHING_UP,
        Move.CLOSE: State.CLOSED,
    },
    State.BLOCKED: {
        Move.FULL: State.BLOCKED,
        Move.ROOM: State.LIVE,
        Move.FELL_BEHIND: State.CATCHING_UP,
        Move.CLOSE: State.CLOSED,
    },
    State.STALLED: {
        Move.BROKER_BACK: State.CATCHING_UP,
        Move.FELL_BEHIND: State.CATCHING_UP,  # a live message: the broker serves again
        Move.CLOSE: State.CLOSED,
    },
    State.CLOSED: {Move.CLOSE: State.CLOSED},
}
"""state → move → next state. The only place subscription states change."""


MAX_MARKS = 256
"""Writes a credit subscription remembers individually until they are consumed."""


class Step(enum.Enum):
    """What the catch-up driver does after a page."""

    READ_MORE = "read-more"  # read the next page from the cursor
    LIVE = "live"  # caught up: live deliveries take over
    END = "end"  # ``until`` reached: send ``end`` (:attr:`Subscription.end_at`), close


class Live(enum.Enum):
    """What the hub does after offering live messages."""

    IGNORED = "ignored"  # not live (yet): nothing queued
    QUEUED = "queued"  # something new in the buffer: flush this loop turn
    CATCH_UP = "catch-up"  # fell behind: (re)start reading history (and flush)
    OVERFLOW = "overflow"  # the buffer refused: close with 1013


class Subscription:
    """The state of one connection's subscription to one stream.

    Args:
        stream: the stream's name (for gap notices).
        cursor: the first offset to deliver (:func:`~nbws.protocol.messages.since_cursor`).
        epoch: the epoch ``cursor`` refers to.
        until: deliver offsets below this, then end (None: forever).
        buffer: the bounded buffer live messages are offered to.
        max_batch: deliver ``batch`` frames of at most this many messages (None:
            one ``message`` frame each).
        linger: seconds a partial live batch may wait to fill (0: none).
        credit: messages that may be in flight (written, not yet ``consumed``), with
            ``max_batch``; None: no credit, the transport alone paces the subscriber.
        credit_bytes: bytes that may be in flight (with ``credit``).
    """

    __slots__ = (
        "buffer",
        "buffer_epoch",
        "consumed",
        "credit",
        "credit_bytes",
        "cursor",
        "delivered",
        "end_at",
        "epoch",
        "gap_told",
        "gaps",
        "in_flight",
        "in_flight_bytes",
        "last_sent",
        "linger",
        "linger_since",
        "live_hint",
        "marks",
        "max_batch",
        "notices",
        "state",
        "stream",
        "until",
    )

    def __init__(
        self,
        stream: str,
        *,
        cursor: int,
        epoch: str,
        until: int | None,
        buffer: SubscriberBuffer,
        max_batch: int | None = None,
        linger: float = 0.0,
        credit: int | None = None,
        credit_bytes: int | None = None,
    ) -> None:
        self.stream = stream
        self.credit = credit if max_batch is not None else None  # (batches only)
        self.credit_bytes = credit_bytes if self.credit is not None else None
        self.in_flight = 0  # messages written above `consumed`
        self.in_flight_bytes = 0
        self.last_sent = -1  # highest offset written (a message or a gap notice's end)
        self.consumed = -1  # highest offset reported consumed
        self.marks: deque[list[int]] = deque()  # [last offset, messages, bytes] per write
        self.gap_told = False  # a gap notice went out since the window closed
        self.max_batch = max_batch
        self.linger = linger if max_batch is not None else 0.0
        self.linger_since: float | None = None  # when the lingering batch began to wait
        self.buffer_epoch = epoch  # the epoch of the deliveries in the buffer
        self.cursor = cursor
        self.epoch = epoch
        self.until = until
        self.buffer = buffer
        self.state = State.CATCHING_UP
        self.delivered = 0
        self.gaps = 0
        self.live_hint = -1  # newest live offset seen while not live
        self.end_at = 0  # the `next` of the `end` notice once Step.END
        self.notices: list[GapNotice] = []  # gap notices to send now, outside the buffer

    @property
    def policy(self) -> Policy:
        return self.buffer.policy

    @property
    def live(self) -> bool:
        """Fed by live deliveries (LIVE, BLOCKED or WAITING)."""
        state = self.state
        return state is State.LIVE or state is State.BLOCKED or state is State.WAITING

    def move(self, event: Move) -> State:
        """Apply ``event``.

        Raises:
            InvalidState: ``event`` is not allowed in the current state.
        """
        try:
            self.state = TRANSITIONS[self.state][event]
        except KeyError:
            raise InvalidState(
                f"subscription to {self.stream!r}: {event.value} while {self.state.value}"
            ) from None
        return self.state

    def close(self) -> None:
        self.move(Move.CLOSE)

    # --- notices -------------------------------------------------------------------

    def _notice(
        self, start: int, end: int | None, count: int | None, reason: GapReason, epoch: str
    ) -> GapNotice:
        self.gaps += 1
        return GapNotice(self.stream, start, reason, end, count, epoch)

    def buffer_gap(self, gap: Gap) -> GapNotice:
        """The notice of a gap the buffer hands out (drops, conflation)."""
        return self._notice(gap.start, gap.end, gap.count, gap.reason, self.epoch)

    # --- credit --------------------------------------------------------------------

    @property
    def window(self) -> int | None:
        """Messages that may be written now (None: no credit, no limit)."""
        credit = self.credit
        if credit is None:
            return None
        if self.credit_bytes is not None and self.in_flight_bytes >= self.credit_bytes:
            return 0
        return max(0, credit - self.in_flight)

    @property
    def bytes_window(self) -> int | None:
        """Bytes that may be written now (None: no byte credit). A write stops once it
        reaches this, so in flight may exceed ``credit_bytes`` by one message."""
        if self.credit_bytes is None:
            return None
        return max(0, self.credit_bytes - self.in_flight_bytes)

    def sent(self, last: int, count: int, size: int) -> None:
        """``count`` messages (``size`` bytes), up to offset ``last``, were written."""
        if self.credit is None:
            return
        self.last_sent = max(self.last_sent, last)
        if count:
            marks = self.marks
            if len(marks) >= MAX_MARKS:  # merge into the newest: bounded, still safe
                mark = marks[-1]
                mark[0] = last
                mark[1] += count
                mark[2] += size
            else:
                marks.append([last, count, size])
            self.in_flight += count
            self.in_flight_bytes += size
        self._settle()

    def consume(self, offset: int) -> bool:
        """The client applied everything up to ``offset``; True when that freed credit
        and some may be spent now.

        Raises:
            BadRequest: no credit, or ``offset`` beyond what was written (answered with
                an ``error``; nothing changes).
        """
        if self.credit is None:
            raise BadRequest(
                f"the subscription to {self.stream!r} has no credit (subscribe with 'credit')"
            )
        if offset > self.last_sent:
            if self.last_sent < 0:
                raise BadRequest(
                    f"consumed offset {offset} of {self.stream!r}: nothing was sent yet"
                )
            raise BadRequest(
                f"consumed offset {offset} of {self.stream!r} is beyond the last offset "
                f"sent, {self.last_sent}"
            )
        if offset <= self.consumed:
            return False  # an old report: already counted
        self.consumed = offset
        marks = self.marks
        freed = 0
        while marks and marks[0][0] <= offset:
            _, count, size = marks.popleft()
            freed += count
            self.in_flight -= count
            self.in_flight_bytes -= size
        if marks:  # a write reaching past `offset`: its messages above it are at most
            mark = marks[0]  # (its last offset - offset), so the rest are consumed
            surely = mark[1] - (mark[0] - offset)
            if surely > 0:
                share = mark[2] * surely // mark[1]  # their bytes, pro rata
                mark[1] -= surely
                mark[2] -= share
                self.in_flight -= surely
                self.in_flight_bytes -= share
                freed += surely
        if not freed:
            return False
        self.gap_told = False
        window = self.window
        if window and self.state is State.WAITING:
            self.move(Move.CONSUMED)
        return bool(window)

    def _settle(self) -> None:
        """Out of credit while live: wait (the table's SPENT move)."""
        if self.state is State.LIVE and self.window == 0:
            self.move(Move.SPENT)

    def _forget_in_flight(self) -> None:
        """A new epoch: the old epoch's offsets (written or consumed) mean nothing now."""
        if self.credit is None:
            return
        self.marks.clear()
        self.in_flight = self.in_flight_bytes = 0
        self.last_sent = self.consumed = -1
        self.gap_told = False

    # --- catching up ---------------------------------------------------------------

    def receive_page(self, page: ReadResult) -> tuple[list[StoredMessage], Step]:
        """A history page read from :attr:`cursor`: what to write, and what next.

        Gap notices (history trimmed, epoch changed) are queued in :attr:`notices`; they
        go out before the returned messages.
        """
        if self.state is not State.CATCHING_UP:
            raise InvalidState(f"subscription to {self.stream!r}: page while {self.state}")
        if page.epoch != self.epoch:
            self.notices.append(self._notice(self.cursor, None, None, GapReason.EPOCH, page.epoch))
            self.epoch = page.epoch
            self.cursor = page.first
            self._forget_in_flight()
            return [], Step.READ_MORE  # the page was read with the old epoch's cursor
        if self.cursor < page.first:
            self.notices.append(
                self._notice(
                    self.cursor,
                    page.first,
                    page.first - self.cursor,
                    GapReason.HISTORY,
                    page.epoch,
                )
            )
            self.cursor = page.first
        limit = page.next if self.until is None else min(self.until, page.next)
        messages = page.messages
        out: list[StoredMessage]
        if (
            messages
            and messages[0].offset >= self.cursor
            and messages[-1].offset - messages[0].offset == len(messages) - 1
        ):  # consecutive from the cursor on (the usual page): a slice, not a loop
            out = messages[: max(0, min(len(messages), limit - messages[0].offset))]
            if out:
                self.cursor = out[-1].offset + 1
        else:
            out = []
            for message in messages:
                if message.offset >= limit:
                    break
                if message.offset >= self.cursor:
                    out.append(message)
                    self.cursor = message.offset + 1
        budget = self.bytes_window
        if budget is not None and len(out) > 1:  # byte credit: the prefix it covers
            total = 0
            for i, message in enumerate(out):
                total += len(message.payload)
                if total >= budget and i + 1 < len(out):
                    out = out[: i + 1]
                    self.cursor = message.offset + 1
                    self.delivered += len(out)
                    return out, Step.READ_MORE
        self.delivered += len(out)
        if self.cursor < limit and page.messages:
            return out, Step.READ_MORE
        if self.until is not None:
            self.end_at = max(self.cursor, limit)
            return out, Step.END
        if self.live_hint >= self.cursor:  # a live message already went past: read on
            return out, Step.READ_MORE
        self.move(Move.CAUGHT_UP)
        self._settle()
        return out, Step.LIVE

    def stream_missing(self) -> Step:
        """The stream does not exist (yet): go live, or end a bounded subscription."""
        if self.until is not None:
            self.end_at = self.cursor
            return Step.END
        self.move(Move.CAUGHT_UP)
        self._settle()
        return Step.LIVE

    def broker_down(self) -> None:
        """History could not be read; wait for :meth:`broker_back`."""
        self.move(Move.BROKER_DOWN)

    def broker_back(self) -> bool:
        """The broker is healthy again; True when catch-up must restart."""
        if self.state is State.STALLED:
            self.move(Move.BROKER_BACK)
            return True
        return False

    # --- live ----------------------------------------------------------------------

    def receive_live(self, batch: list[Delivery], size: int, epoch: str) -> Live:
        """This loop turn's live messages of the stream (in offset order, ``size``
        frame bytes in all), encoded once and shared with every subscriber."""
        if not self.live:
            if self.state is not State.CLOSED:
                self.live_hint = max(self.live_hint, batch[-1][0])
                if self.state is State.STALLED:
                    self.move(Move.FELL_BEHIND)
                    return Live.CATCH_UP
            return Live.IGNORED
        if epoch != self.epoch:
            self.notices.append(self._notice(self.cursor, None, None, GapReason.EPOCH, epoch))
            self.epoch = epoch
            self.cursor = 0
            self._forget_in_flight()
            self.move(Move.FELL_BEHIND)
            return Live.CATCH_UP
        self.buffer_epoch = epoch
        first, last = batch[0][0], batch[-1][0]
        if (
            first == self.cursor
            and last - first == len(batch) - 1
            and self.buffer.extend(batch, size)
        ):
            self.cursor = last + 1
            return Live.QUEUED
        buffer = self.buffer
        for item in batch:
            offset = item[0]
            if offset != self.cursor:
                if offset < self.cursor:
                    continue  # already delivered (from history)
                self.live_hint = max(self.live_hint, batch[-1][0])
                self.move(Move.FELL_BEHIND)
                return Live.CATCH_UP
            self.cursor = offset + 1
            outcome = buffer.offer(item)
            if outcome is Offer.OVERFLOW:
                return Live.OVERFLOW
            if outcome is Offer.FULL:
                self.move(Move.FULL)
        return Live.QUEUED

    def taken(self, delivered: int) -> bool:
        """``delivered`` messages were written from the buffer; True when a blocked
        subscription has room again (its stream's held acks may go out)."""
        self.delivered += delivered
        if not self.buffer.pending:
            self.linger_since = None
        if self.state is State.BLOCKED and self.buffer.has_room:
            self.move(Move.ROOM)
            self._settle()
            return True
        return False

    def holds_ack(self, offset: int | None) -> bool:
        """Whether this ``block`` subscription holds back the ack of the message at
        ``offset``: while it is full, or until the message is in its buffer."""
        if self.buffer.policy is not Policy.BLOCK or self.state is State.CLOSED:
            return False
        if self.state is State.BLOCKED:
            return True
        return offset is not None and offset >= self.cursor

    # --- batches -------------------------------------------------------------------

    def flush_due(self, now: float) -> float | None:
        """Whether the buffer may be written now (None) or at the returned time: a
        lingering subscriber's partial live batch waits up to ``linger`` seconds from
        the first time it was asked; a full batch, a gap or a full buffer never waits."""
        buffer = self.buffer
        if (
            not self.linger
            or not self.live
            or not buffer.pending
            or buffer.messages >= self.max_batch  # type: ignore[operator]
            or (self.credit is not None and buffer.messages >= (self.window or 0))
            or buffer.gap_pending
            or buffer.full
        ):
            return None
        if self.linger_since is None:
            self.linger_since = now
        deadline = self.linger_since + self.linger
        return None if now >= deadline else deadline

    def frames(
        self,
        items: list[Delivery | Gap],
        shared: SharedFrames,
        epoch: str | None = None,
        *,
        gapless: bool = False,
    ) -> tuple[list[bytes | Gap], int]:
        """What to write for ``items`` (from :meth:`SubscriberBuffer.take`, or a page):
        frames, with the buffer's gap notices left in place for the driver to encode,
        and the number of messages in them. ``epoch``: the epoch of the items (default:
        that of the buffered deliveries). ``gapless``: ``items`` holds no gap notice
        (``buffer.taken_gaps == 0``), so a run of consecutive offsets is looked up whole:
        subscribers that took the same run share the cutting, not only the frames."""
        if self.max_batch is None:
            out: list[bytes | Gap] = []
            count = 0
            for item in items:
                if type(item) is tuple:
                    out.append(item[1])
                    count += 1
                else:
                    out.append(item)  # type: ignore[arg-type]
            return out, count
        label = self.buffer_epoch if epoch is None else epoch
        key = None
        if gapless and items:
            first, last = items[0][0], items[-1][0]  # type: ignore[index]
            if last - first == len(items) - 1:
                key = (label, first, last, self.max_batch)
                known = shared.takes.get(key)
                if known is not None:
                    shared.shared += len(known)
                    return list(known), len(items)
        out = []
        count = 0
        for part in cut_runs(items, self.max_batch):
            if type(part) is list:
                out.append(shared.frame(self.stream, label, part))
                count += len(part)
            else:
                out.append(part)  # type: ignore[arg-type]
        if key is not None:
            shared.remember(key, out)  # type: ignore[arg-type]
        return out, count

    def page_frames(
        self, messages: list[StoredMessage], shared: SharedFrames
    ) -> tuple[list[bytes], int]:
        """The ``batch`` frames of a history page (:meth:`receive_page`'s messages), cut
        as :func:`cut_runs` cuts (the replay's hot loop: no delivery tuples)."""
        elements: list[BatchItem] = []
        binary = False
        dumps = _dumps
        for m in messages:
            if m.binary or m.producer is not None or m.key is not None:
                elements.append(stored_item(m))
                binary = binary or m.binary
            else:
                elements.append(
                    b'{"offset":%d,"time":%s,"payload":%s}' % (m.offset, dumps(m.time), m.payload)
                )
        if binary:  # binary runs: the general cut (rare in replays)
            items: list[Delivery | Gap] = [
                (m.offset, b"", m.key, e) for m, e in zip(messages, elements, strict=True)
            ]
            frames, count = self.frames(items, shared, self.epoch)
            return frames, count  # type: ignore[return-value]
        max_batch = self.max_batch or 1
        ends = list(accumulate(map(len, elements)))  # C-level: where each byte run ends
        out: list[bytes] = []
        start, total, before = 0, len(elements), 0
        while start < total:
            stop = min(start + max_batch, bisect_left(ends, before + BATCH_BYTES, start) + 1, total)
            out.append(
                shared.frame_of(
                    self.stream,
                    self.epoch,
                    messages[start].offset,
                    messages[stop - 1].offset,
                    elements[start:stop],
                )
            )
            before = ends[stop - 1]
            start = stop
        return out, total

    def lag(self, stream_next: int) -> int:
        """Messages between what this subscription has been written and the stream's end."""
        return max(0, stream_next - self.cursor) + self.buffer.messages


def stored_item(message: StoredMessage) -> BatchItem:
    """A stored message's ``batch`` element (encoded once per stream by the hub)."""
    return batch_item(
        message.offset,
        message.time,
        message.payload,
        binary=message.binary,
        producer=message.producer,
        seq=message.seq,
        key=message.key,
        content_type=message.content_type,
    )


def cut_runs(items: list[Delivery | Gap], max_batch: int) -> list[list[Delivery] | Gap]:
    """Split buffered items into runs that each make one ``batch``: never across a gap
    notice or between JSON and binary payloads, at most ``max_batch`` messages, and
    ending once the payloads reach :data:`~nbws.protocol.messages.BATCH_BYTES` (or a
    binary batch's header nears the header limit)."""
    out: list[list[Delivery] | Gap] = []
    run: list[Delivery] = []
    size = header = 0
    binary = False
    for item in items:
        if isinstance(item, Gap):
            if run:
                out.append(run)
                run = []
                size = header = 0
            out.append(item)
            continue
        element = item[3]
        is_binary = type(element) is tuple
        if run and (
            len(run) >= max_batch
            or is_binary is not binary
            or size >= BATCH_BYTES
            or header >= BATCH_HEADER_BYTES
        ):
            out.append(run)
            run = []
            size = header = 0
        if isinstance(element, tuple):
            size += len(element[1])
            header += len(element[0]) + 8
        elif element is not None:
            size += len(element)
        binary = is_binary
        run.append(item)
    if run:
        out.append(run)
    return out


class SharedFrames:
    """One stream's recently built ``batch`` frames, by run.

    A run of consecutive offsets in one epoch is the same messages for every subscriber,
    so its frame is built once and the same bytes object handed to each subscriber
    whose buffered run is identical. Bounded; the hub clears it every loop turn.
    """

    __slots__ = ("built", "frames", "shared", "takes")

    LIMIT = 64

    def __init__(self) -> None:
        self.frames: dict[tuple[str, int, int, int], bytes] = {}
        # (epoch, first, last, max_batch) of a gapless take -> its frames, in order
        self.takes: dict[tuple[str, int, int, int | None], tuple[bytes, ...]] = {}
        self.built = 0  # frames encoded
        self.shared = 0  # frames handed out again

    def clear(self) -> None:
        self.frames.clear()
        self.takes.clear()

    def remember(self, key: tuple[str, int, int, int | None], frames: list[bytes]) -> None:
        """The frames a gapless take of consecutive offsets was cut into."""
        if len(self.takes) >= self.LIMIT:
            self.takes.clear()
        self.takes[key] = tuple(frames)

    def frame(self, stream: str, epoch: str, run: list[Delivery]) -> bytes:
        """The ``batch`` frame of ``run`` (messages of ``stream`` in ``epoch``)."""
        return self.frame_of(
            stream,
            epoch,
            run[0][0],
            run[-1][0],
            [item[3] for item in run],  # type: ignore[misc]
        )

    def frame_of(
        self, stream: str, epoch: str, first: int, last: int, elements: list[BatchItem]
    ) -> bytes:
        """The ``batch`` frame of ``elements``, the messages ``first`` … ``last``."""
        count = len(elements)
        key = (epoch, first, last, count) if last - first == count - 1 else None
        if key is not None:
            frame = self.frames.get(key)
            if frame is not None:
                self.shared += 1
                return frame
        data, text = encode_batch(stream, epoch, elements)
        frame = encode_message(data, text=text)
        self.built += 1
        if key is not None:
            if len(self.frames) >= self.LIMIT:
                self.frames.clear()
            self.frames[key] = frame
        return frame


def diagram() -> str:
    """:data:`TRANSITIONS` as a Mermaid state diagram (docs/protocol.md shows it; a test
    checks the two agree)."""
    lines = ["stateDiagram-v2", "    [*] --> catching_up"]
    for state, moves in TRANSITIONS.items():
        for move, target in moves.items():
            if state is not target:
                a, b = state.value.replace("-", "_"), target.value.replace("-", "_")
                lines.append(f"    {a} --> {b}: {move.value}")
    return "\n".join(lines)
