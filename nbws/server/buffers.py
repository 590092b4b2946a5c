"""One bounded outbound buffer per subscriber, with an explicit overflow policy.

Pure bookkeeping: no sockets, no clock. The subscriber (``nbws.server.subscriber``) offers
encoded deliveries and takes batches to write when its connection drains. Frames are
shared between subscribers (encoded once per message), so a buffer holds references; its
byte count is what those frames would cost to write.

Policies when the buffer is full:

========== =================================================================
drop-oldest  drop queued messages from the head; a ``dropped`` gap precedes the rest
drop-newest  drop the incoming message; a ``dropped`` gap precedes the next accepted one
conflate     a message replaces a still-queued one with the same key, full or not, so
             a subscriber behind sees only the newest per key (``conflated`` gap);
             if full with no such message queued, drop-oldest. O(1) per message: the
             queue is an ordered dict (key, or offset for unkeyed messages → delivery),
             so a replaced message leaves the queue at once and the queue never holds
             more than the bound
disconnect   refuse: the subscriber is closed with 1013
block        accept, report ``full`` so producers' acks are delayed; past
             max(2 x bound, bound + 1024) messages or 2 x the byte bound (producers that
             ignore acks) refuse like ``disconnect``
========== =================================================================
"""

from __future__ import annotations

import enum
from collections import OrderedDict, deque
from dataclasses import dataclass

from ..protocol.messages import BatchItem, GapReason, Policy

__all__ = ["BLOCK_SLACK", "Delivery", "Gap", "Offer", "Policy", "SubscriberBuffer"]

BLOCK_SLACK = 1024
"""Messages a full ``block`` subscriber still accepts beyond its bound (acks in flight)."""


class Offer(enum.Enum):
    """Outcome of :meth:`SubscriberBuffer.offer`."""

    ACCEPTED = "accepted"
    DROPPED = "dropped"
    FULL = "full"
    OVERFLOW = "overflow"


Delivery = tuple[int, bytes, "str | None", "BatchItem | None"]
"""An encoded message: ``(offset, frame, key, item)``: its ``message`` frame and, when the
stream has batching subscribers, its ``batch`` element
(:func:`~nbws.protocol.messages.batch_item`). The same tuple (and bytes) is shared by
every subscriber it is queued for; nothing is copied per subscriber. Byte bounds count
the frame."""


@dataclass(frozen=True, slots=True)
class Gap:
    """Offsets this subscriber will not get: ``start`` inclusive, ``end`` exclusive."""

    start: int
    end: int
    count: int
    reason: GapReason


class SubscriberBuffer:
    """Bounded queue of deliveries for one subscriber.

    Args:
        policy: what to do when full.
        max_messages: bound in messages.
        max_bytes: bound in bytes of encoded frames.
    """

    def __init__(self, policy: Policy, max_messages: int, max_bytes: int) -> None:
        self.policy = policy
        self.max_messages = max(1, max_messages)
        self.max_bytes = max(1, max_bytes)
        self._queue: deque[Delivery | Gap] = deque()
        # conflate only: slot (key, or offset of an unkeyed message) -> delivery, in order.
        self._keyed: OrderedDict[str | int, Delivery] = OrderedDict()
        self.messages = 0
        self.bytes = 0
        self.dropped = 0
        self.conflated = 0
        # `block` holds acks once full, but messages already in flight still arrive: room
        # for them (a reliable client's window), refusing only producers that ignore acks.
        self.block_cap_messages = max(2 * self.max_messages, self.max_messages + BLOCK_SLACK)
        self.block_cap_bytes = 2 * self.max_bytes
        self._head_gap: list[int] | None = None  # [start, count] dropped before the head
        self._tail_gap: list[int] | None = None  # [start, count, last] dropped incoming
        self._conflated_gap: list[int] | None = None  # [min, max, count]
        self._queued_gaps = 0  # Gap notices inside the queue (drop-newest tails)
        self.taken_gaps = 0  # gap notices in what the last take() returned

    def __len__(self) -> int:
        return self.messages

    @property
    def queued(self) -> int:
        """Entries held (deliveries and queued gap notices): never above the bound plus
        one gap notice per delivery."""
        return len(self._queue) + len(self._keyed)

    def _full_for(self, size: int) -> bool:
        return self.messages >= self.max_messages or (
            self.messages > 0 and self.bytes + size > self.max_bytes
        )

    @property
    def full(self) -> bool:
        """At or over the bound."""
        return self.messages >= self.max_messages or self.bytes >= self.max_bytes

    @property
    def has_room(self) -> bool:
        """Below half the bound: where a ``block`` subscriber stops holding acks back."""
        return self.messages <= self.max_messages // 2 and self.bytes <= self.max_bytes // 2

    @property
    def gap_pending(self) -> bool:
        """A gap notice waits to be written (a lingering batch must not hold it back)."""
        return (
            self._queued_gaps > 0
            or self._head_gap is not None
            or self._tail_gap is not None
            or self._conflated_gap is not None
        )

    @property
    def pending(self) -> bool:
        """Something (a delivery or a gap notice) waits to be written."""
        return (
            bool(self._queue)
            or bool(self._keyed)
            or self._head_gap is not None
            or self._tail_gap is not None
            or self._conflated_gap is not None
        )

    def extend(self, batch: list[Delivery], size: int) -> bool:
        """Queue a whole batch at once when it fits and no policy has work to do.

        This is the fan-out fast path: one C-level ``deque.extend`` per subscriber per
        event-loop turn, whatever the number of messages. Returns False (queueing
        nothing) when the caller must :meth:`offer` item by item instead.
        """
        if (
            self.policy is Policy.CONFLATE
            or self._tail_gap is not None
            or self.messages + len(batch) > self.max_messages
            or self.bytes + size > self.max_bytes
        ):
            return False
        self._queue.extend(batch)
        self.messages += len(batch)
        self.bytes += size
        return True

    def offer(self, delivery: Delivery) -> Offer:
        """Queue ``delivery`` or apply the policy."""
        policy = self.policy
        if policy is Policy.CONFLATE:
            return self._offer_conflate(delivery)
        offset = delivery[0]
        size = len(delivery[1])
        if self._full_for(size):
            if policy is Policy.DROP_NEWEST:
                self.dropped += 1
                tail = self._tail_gap
                if tail is None:
                    self._tail_gap = [offset, 1, offset]
                else:
                    tail[1] += 1
                    tail[2] = offset
                return Offer.DROPPED
            if policy is Policy.DISCONNECT:
                return Offer.OVERFLOW
            if policy is Policy.BLOCK:
                if self.messages >= self.block_cap_messages or (
                    self.bytes + size > self.block_cap_bytes
                ):
                    return Offer.OVERFLOW
                self._append(delivery, size)
                return Offer.FULL
            while self.messages and self._full_for(size):
                self._drop_head()
        self._append(delivery, size)
        return Offer.ACCEPTED

    def _offer_conflate(self, delivery: Delivery) -> Offer:
        offset, frame, key = delivery[0], delivery[1], delivery[2]
        keyed = self._keyed
        if key is not None:
            old = keyed.pop(key, None)
            if old is not None:  # replaced: it leaves the queue now (O(1))
                self.messages -= 1
                self.bytes -= len(old[1])
                self.conflated += 1
                gap = self._conflated_gap
                if gap is None:
                    self._conflated_gap = [old[0], old[0], 1]
                else:
                    gap[0] = min(gap[0], old[0])
                    gap[1] = max(gap[1], old[0])
                    gap[2] += 1
        size = len(frame)
        while self.messages and self._full_for(size):
            _, dropped = keyed.popitem(last=False)
            self.messages -= 1
            self.bytes -= len(dropped[1])
            self.dropped += 1
            self._merge_head_gap(dropped[0], 1)
        keyed[offset if key is None else key] = delivery
        self.messages += 1
        self.bytes += size
        return Offer.ACCEPTED

    def _append(self, delivery: Delivery, size: int) -> None:
        tail = self._tail_gap
        if tail is not None:
            self._queue.append(Gap(tail[0], tail[2] + 1, tail[1], GapReason.DROPPED))
            self._queued_gaps += 1
            self._tail_gap = None
        self._queue.append(delivery)
        self.messages += 1
        self.bytes += size

    def _drop_head(self) -> None:
        queue = self._queue
        while queue:
            item = queue.popleft()
            if isinstance(item, Gap):
                self._queued_gaps -= 1
                self._merge_head_gap(item.start, item.count)
                continue
            self.messages -= 1
            self.bytes -= len(item[1])
            self.dropped += 1
            self._merge_head_gap(item[0], 1)
            return

    def _merge_head_gap(self, start: int, count: int) -> None:
        head = self._head_gap
        if head is None:
            self._head_gap = [start, count]
        else:
            head[0] = min(head[0], start)
            head[1] += count

    def _head_offset(self) -> int | None:
        """Offset of the first queued delivery or gap notice, if any."""
        if self._keyed:
            return next(iter(self._keyed.values()))[0]
        if self._queue:
            item = self._queue[0]
            return item.start if isinstance(item, Gap) else item[0]
        return None

    def take(self, max_bytes: int, limit: int | None = None) -> list[Delivery | Gap]:
        """Remove and return the next batch (at least one item, about ``max_bytes``).

        Gap notices come first where they belong: dropped-head and conflation gaps before
        the batch, dropped-tail gaps where the next accepted message follows them.
        ``limit``: at most this many messages (a subscriber's credit); with 0 only the
        gap notices due before the head are returned (possibly nothing).
        """
        out: list[Delivery | Gap] = []
        if self._conflated_gap is not None:
            low, high, count = self._conflated_gap
            out.append(Gap(low, high + 1, count, GapReason.CONFLATED))
            self._conflated_gap = None
        if self._head_gap is not None:
            start, count = self._head_gap
            end = self._head_offset()
            out.append(Gap(start, start + count if end is None else end, count, GapReason.DROPPED))
            self._head_gap = None
        taken = 0
        messages = 0
        if self._keyed:
            keyed = self._keyed
            most = self.messages if limit is None else limit
            while keyed and messages < most and (taken < max_bytes or not out):
                _, delivery = keyed.popitem(last=False)
                taken += len(delivery[1])
                messages += 1
                out.append(delivery)
        elif limit is None:
            queue = self._queue
            while queue and (taken < max_bytes or not out):
                item = queue.popleft()
                if type(item) is not tuple:
                    self._queued_gaps -= 1
                    out.append(item)
                    continue
                taken += len(item[1])
                messages += 1
                out.append(item)
        else:  # a credit window: stop before the message past the limit
            queue = self._queue
            while queue and (taken < max_bytes or not out):
                item = queue[0]
                if type(item) is not tuple:
                    queue.popleft()
                    self._queued_gaps -= 1
                    out.append(item)
                    continue
                if messages >= limit:
                    break
                queue.popleft()
                taken += len(item[1])
                messages += 1
                out.append(item)
        self.messages -= messages
        self.bytes -= taken
        if not self._queue and self._tail_gap is not None:
            start, count, last = self._tail_gap
            out.append(Gap(start, last + 1, count, GapReason.DROPPED))
            self._tail_gap = None
        self.taken_gaps = len(out) - messages
        return out
