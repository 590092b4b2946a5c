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
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from ..broker.base import ReadResult, StoredMessage
from ..errors import InvalidState
from ..protocol.messages import Gap as GapNotice
from ..protocol.messages import GapReason, Policy
from .buffers import Delivery, Gap, Offer, SubscriberBuffer

__all__ = [
    "TRANSITIONS",
    "Live",
    "Move",
    "State",
    "Step",
    "Subscription",
    "diagram",
]


class State(str, enum.Enum):
    """Where a subscription is (``mode`` in REST introspection)."""

    CATCHING_UP = "catching-up"
    LIVE = "live"
    BLOCKED = "blocked"
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
    """

    __slots__ = (
        "buffer",
        "cursor",
        "delivered",
        "end_at",
        "epoch",
        "gaps",
        "live_hint",
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
    ) -> None:
        self.stream = stream
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
        """Fed by live deliveries (LIVE or BLOCKED)."""
        return self.state is State.LIVE or self.state is State.BLOCKED

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
        out: list[StoredMessage] = []
        for message in page.messages:
            if message.offset >= limit:
                break
            if message.offset >= self.cursor:
                out.append(message)
                self.cursor = message.offset + 1
        self.delivered += len(out)
        if self.cursor < limit and page.messages:
            return out, Step.READ_MORE
        if self.until is not None:
            self.end_at = max(self.cursor, limit)
            return out, Step.END
        if self.live_hint >= self.cursor:  # a live message already went past: read on
            return out, Step.READ_MORE
        self.move(Move.CAUGHT_UP)
        return out, Step.LIVE

    def stream_missing(self) -> Step:
        """The stream does not exist (yet): go live, or end a bounded subscription."""
        if self.until is not None:
            self.end_at = self.cursor
            return Step.END
        self.move(Move.CAUGHT_UP)
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
            self.move(Move.FELL_BEHIND)
            return Live.CATCH_UP
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
        if self.state is State.BLOCKED and self.buffer.has_room:
            self.move(Move.ROOM)
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

    def lag(self, stream_next: int) -> int:
        """Messages between what this subscription has been written and the stream's end."""
        return max(0, stream_next - self.cursor) + self.buffer.messages


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
