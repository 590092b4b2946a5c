"""SubscriberBuffer, pure: every overflow policy as a table of offers and what comes out."""

from __future__ import annotations

import tracemalloc
from dataclasses import dataclass, field

import pytest

from nbws.server.buffers import BLOCK_SLACK, Delivery, Gap, Offer, Policy, SubscriberBuffer

FRAME = b"x" * 10
A, D, F, X = Offer.ACCEPTED, Offer.DROPPED, Offer.FULL, Offer.OVERFLOW


def delivery(offset: int, key: str | None = None, frame: bytes = FRAME) -> Delivery:
    return (offset, frame, key)


def drained(buffer: SubscriberBuffer, max_bytes: int = 1 << 30) -> list[int | Gap]:
    """Everything the buffer writes, as offsets and gap notices."""
    out: list[int | Gap] = []
    while buffer.pending:
        out += [item if isinstance(item, Gap) else item[0] for item in buffer.take(max_bytes)]
    return out


@dataclass
class Case:
    name: str
    policy: Policy
    bound: int
    offers: list[tuple[int, str | None]]
    outcomes: list[Offer]
    written: list[int | Gap]
    max_bytes: int = 1 << 20
    dropped: int = 0
    conflated: int = 0
    extra: dict[str, int] = field(default_factory=dict)


def plain(*offsets: int) -> list[tuple[int, str | None]]:
    return [(o, None) for o in offsets]


CASES = [
    Case(
        "drop-oldest keeps the newest",
        Policy.DROP_OLDEST,
        3,
        plain(*range(6)),
        [A] * 6,
        [Gap(0, 3, 3, "dropped"), 3, 4, 5],
        dropped=3,
    ),
    Case(
        "drop-oldest under the bound drops nothing",
        Policy.DROP_OLDEST,
        3,
        plain(0, 1, 2),
        [A] * 3,
        [0, 1, 2],
    ),
    Case(
        "drop-oldest by bytes",
        Policy.DROP_OLDEST,
        100,
        plain(0, 1, 2),
        [A] * 3,
        [Gap(0, 1, 1, "dropped"), 1, 2],
        max_bytes=25,
        dropped=1,
    ),
    Case(
        "drop-newest keeps the oldest",
        Policy.DROP_NEWEST,
        3,
        plain(*range(6)),
        [A, A, A, D, D, D],
        [0, 1, 2, Gap(3, 6, 3, "dropped")],
        dropped=3,
    ),
    Case(
        "drop-newest by bytes",
        Policy.DROP_NEWEST,
        100,
        plain(0, 1, 2),
        [A, A, D],
        [0, 1, Gap(2, 3, 1, "dropped")],
        max_bytes=25,
        dropped=1,
    ),
    Case(
        "conflate replaces queued messages of the same key",
        Policy.CONFLATE,
        3,
        [(0, "a"), (1, "b"), (2, "a"), (3, "c"), (4, "a")],
        [A] * 5,
        [Gap(0, 3, 2, "conflated"), 1, 3, 4],
        conflated=2,
    ),
    Case(
        "conflate below the bound still replaces",
        Policy.CONFLATE,
        100,
        [(0, "a"), (1, "a"), (2, "a")],
        [A] * 3,
        [Gap(0, 2, 2, "conflated"), 2],
        conflated=2,
    ),
    Case(
        "conflate full with no such key drops the oldest",
        Policy.CONFLATE,
        2,
        [(0, "a"), (1, "b"), (2, "c")],
        [A] * 3,
        [Gap(0, 1, 1, "dropped"), 1, 2],
        dropped=1,
    ),
    Case(
        "conflate leaves unkeyed messages alone",
        Policy.CONFLATE,
        5,
        [(0, None), (1, "k"), (2, None), (3, "k")],
        [A] * 4,
        [Gap(1, 2, 1, "conflated"), 0, 2, 3],
        conflated=1,
    ),
    Case("disconnect refuses when full", Policy.DISCONNECT, 2, plain(0, 1, 2), [A, A, X], [0, 1]),
    Case(
        "block accepts past the bound and says full",
        Policy.BLOCK,
        2,
        plain(0, 1, 2, 3),
        [A, A, F, F],
        [0, 1, 2, 3],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_policy_table(case: Case) -> None:
    buffer = SubscriberBuffer(case.policy, case.bound, case.max_bytes)
    outcomes = [buffer.offer(delivery(o, k)) for o, k in case.offers]
    assert outcomes == case.outcomes
    assert (buffer.dropped, buffer.conflated) == (case.dropped, case.conflated)
    accepted = len(outcomes) - outcomes.count(X) - case.dropped - case.conflated
    assert len(buffer) == accepted and buffer.bytes == accepted * len(FRAME)
    assert drained(buffer) == case.written
    assert (len(buffer), buffer.bytes, buffer.pending) == (0, 0, False)


def test_block_refuses_past_its_hard_cap() -> None:
    buffer = SubscriberBuffer(Policy.BLOCK, 1, 1 << 30)
    assert buffer.block_cap_messages == 1 + BLOCK_SLACK
    outcomes = [buffer.offer(delivery(i)) for i in range(buffer.block_cap_messages + 1)]
    assert outcomes[0] is A and set(outcomes[1:-1]) == {F} and outcomes[-1] is X


def test_block_refuses_past_twice_its_byte_bound() -> None:
    buffer = SubscriberBuffer(Policy.BLOCK, 1000, 35)
    assert [buffer.offer(delivery(i)) for i in range(8)] == [A, A, A, F, F, F, F, X]


def test_room_and_full_marks() -> None:
    buffer = SubscriberBuffer(Policy.BLOCK, 4, 1 << 20)
    for i in range(4):
        buffer.offer(delivery(i))
    assert buffer.full and not buffer.has_room
    buffer.take(len(FRAME))  # one message
    assert not buffer.full and not buffer.has_room  # 3 > half of 4
    buffer.take(len(FRAME))
    assert buffer.has_room


def test_take_respects_its_byte_budget_but_always_returns_something() -> None:
    buffer = SubscriberBuffer(Policy.DROP_OLDEST, 10, 1 << 20)
    for i in range(5):
        buffer.offer(delivery(i))
    assert [d[0] for d in buffer.take(1)] == [0]  # type: ignore[index]
    assert [d[0] for d in buffer.take(2 * len(FRAME))] == [1, 2]  # type: ignore[index]


def test_drop_newest_gap_goes_where_the_drops_were() -> None:
    buffer = SubscriberBuffer(Policy.DROP_NEWEST, 2, 1 << 20)
    assert [buffer.offer(delivery(i)) for i in range(4)] == [A, A, D, D]
    assert drained(buffer) == [0, 1, Gap(2, 4, 2, "dropped")]
    assert buffer.offer(delivery(4)) is A
    assert drained(buffer) == [4]


def test_drop_newest_gap_before_the_next_accepted_message() -> None:
    buffer = SubscriberBuffer(Policy.DROP_NEWEST, 2, 1 << 20)
    [buffer.offer(delivery(i)) for i in range(3)]  # 2 dropped
    assert [d[0] for d in buffer.take(len(FRAME))] == [0]  # type: ignore[index]
    assert buffer.offer(delivery(3)) is A
    assert drained(buffer) == [1, Gap(2, 3, 1, "dropped"), 3]


@pytest.mark.parametrize(
    ("policy", "bound", "batch", "fits"),
    [
        (Policy.DROP_OLDEST, 10, 5, True),
        (Policy.DROP_OLDEST, 4, 5, False),
        (Policy.BLOCK, 10, 10, True),
        (Policy.CONFLATE, 10, 1, False),  # conflation always goes item by item
    ],
)
def test_extend_fast_path(policy: Policy, bound: int, batch: int, fits: bool) -> None:
    buffer = SubscriberBuffer(policy, bound, 1 << 20)
    items = [delivery(i) for i in range(batch)]
    assert buffer.extend(items, batch * len(FRAME)) is fits
    assert len(buffer) == (batch if fits else 0)


def test_extend_refuses_while_a_drop_newest_gap_is_open() -> None:
    buffer = SubscriberBuffer(Policy.DROP_NEWEST, 2, 1 << 20)
    [buffer.offer(delivery(i)) for i in range(3)]  # 2 dropped: its gap precedes what follows
    buffer.take(len(FRAME))  # room again, the gap still open
    assert not buffer.extend([delivery(3)], len(FRAME))


def test_conflate_stays_bounded_under_100k_keyed_offers() -> None:
    """A stuck conflate subscriber: replaced messages leave the queue at once (no dead
    entries kept, no scan per message), the queue never exceeds its bound, and every
    message is either delivered or counted as conflated/dropped."""
    bound, keys, total = 100, 50, 100_000
    buffer = SubscriberBuffer(Policy.CONFLATE, bound, 1 << 30)
    names = [f"k{i}" for i in range(keys)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        largest = 0
        for offset in range(total):
            assert buffer.offer((offset, FRAME, names[offset % keys])) is A
            largest = max(largest, buffer.queued)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert largest <= bound and len(buffer) == keys
    assert grown < 256 * 1024, grown  # not one entry per offer
    written = drained(buffer)
    delivered = [x for x in written if isinstance(x, int)]
    assert delivered == list(range(total - keys, total))
    gaps = [x for x in written if isinstance(x, Gap)]
    assert sum(g.count for g in gaps) == buffer.conflated + buffer.dropped
    assert len(delivered) + buffer.conflated + buffer.dropped == total
