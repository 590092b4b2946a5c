"""Credit in the pure subscription state machine: the in-flight arithmetic, the
``waiting`` state, bogus ``consumed`` reports, and what the buffer hands out meanwhile."""

from __future__ import annotations

import pytest

from nbws.broker import ReadResult, StoredMessage
from nbws.errors import BadRequest, InvalidState
from nbws.protocol.messages import GapReason
from nbws.server.buffers import Delivery, Gap, Policy, SubscriberBuffer
from nbws.server.subscriber import MAX_MARKS, Live, Move, State, Step, Subscription

FRAME = b"f" * 10


def make(
    credit: int | None = 100,
    *,
    policy: Policy = Policy.DROP_OLDEST,
    bound: int = 1000,
    credit_bytes: int | None = None,
) -> Subscription:
    buffer = SubscriberBuffer(policy, bound, 1 << 30)
    return Subscription(
        "s",
        cursor=0,
        epoch="e1",
        until=None,
        buffer=buffer,
        max_batch=100,
        credit=credit,
        credit_bytes=credit_bytes,
    )


def live(sub: Subscription) -> Subscription:
    assert sub.receive_page(ReadResult("e1", 0, sub.cursor, []))[1] is Step.LIVE
    return sub


def deliveries(offsets: range) -> tuple[list[Delivery], int]:
    return [(o, FRAME, None, None) for o in offsets], len(FRAME) * len(offsets)


def take_all(sub: Subscription) -> list[Delivery | Gap]:
    """What a flush would write now (the hub's loop, without the I/O)."""
    out: list[Delivery | Gap] = []
    while sub.buffer.pending:
        window = sub.window
        assert window is not None
        if window == 0:
            break
        items = sub.buffer.take(1 << 20, window)
        messages = [i for i in items if type(i) is tuple]
        last = items[-1]
        sub.taken(len(messages))
        sub.sent(last.end - 1 if isinstance(last, Gap) else last[0], len(messages), 0)
        out.extend(items)
    return out


def test_no_credit_means_no_window_and_no_state_change() -> None:
    sub = live(make(None))
    assert sub.window is None
    sub.sent(99, 100, 1000)
    assert sub.state is State.LIVE
    with pytest.raises(BadRequest, match="no credit"):
        sub.consume(10)


def test_in_flight_reaching_the_credit_makes_it_wait_and_consumed_reopens() -> None:
    sub = live(make(100))
    assert sub.window == 100
    sub.sent(59, 60, 600)
    assert (sub.in_flight, sub.window, sub.state) == (60, 40, State.LIVE)
    sub.sent(99, 40, 400)
    assert (sub.in_flight, sub.window, sub.state) == (100, 0, State.WAITING)
    assert sub.live  # still fed by live deliveries: its buffer and policy act
    assert sub.consume(49) is True
    assert (sub.in_flight, sub.window, sub.state) == (50, 50, State.LIVE)
    assert sub.consume(99) is True
    assert (sub.in_flight, sub.window) == (0, 100)


def test_consumed_inside_a_write_counts_only_what_is_surely_consumed() -> None:
    sub = live(make(100))
    sub.sent(9, 10, 100)  # offsets 0..9
    sub.sent(29, 10, 100)  # 10 messages somewhere in 10..29 (a gap in between)
    sub.consume(24)  # at least 5 of the second write are at or below 24
    assert (sub.in_flight, sub.in_flight_bytes) == (5, 50)
    sub.consume(29)
    assert (sub.in_flight, sub.in_flight_bytes) == (0, 0)


def test_bogus_consumed_is_refused_and_changes_nothing() -> None:
    sub = live(make(100))
    with pytest.raises(BadRequest, match="nothing was sent"):
        sub.consume(0)
    sub.sent(9, 10, 100)
    with pytest.raises(BadRequest, match="beyond the last offset sent, 9"):
        sub.consume(10)
    assert sub.in_flight == 10
    sub.consume(9)
    assert sub.consume(3) is False  # an old report: already counted, harmless
    assert sub.in_flight == 0


def test_the_marks_stay_bounded_and_the_arithmetic_stays_safe() -> None:
    sub = live(make(100_000))
    for offset in range(10 * MAX_MARKS):
        sub.sent(offset, 1, 10)
    assert sub.in_flight == 10 * MAX_MARKS
    assert len(sub.marks) <= MAX_MARKS
    sub.consume(10 * MAX_MARKS - 1)
    assert (sub.in_flight, sub.in_flight_bytes) == (0, 0)
    # Consumed never frees more than was sent, whatever is merged.
    for offset in range(10 * MAX_MARKS, 20 * MAX_MARKS):
        sub.sent(offset, 1, 10)
    sub.consume(15 * MAX_MARKS)
    assert 0 < sub.in_flight <= 5 * MAX_MARKS


def test_credit_bytes_closes_the_window_too() -> None:
    sub = live(make(100, credit_bytes=1000))
    assert sub.bytes_window == 1000
    sub.sent(4, 5, 1000)
    assert (sub.window, sub.state) == (0, State.WAITING)
    sub.consume(4)
    assert (sub.window, sub.bytes_window, sub.state) == (100, 1000, State.LIVE)


def test_waiting_moves() -> None:
    sub = live(make(10, policy=Policy.BLOCK, bound=10))
    sub.receive_live(*deliveries(range(10)), "e1")
    assert [item[0] for item in take_all(sub)] == list(range(10))  # type: ignore[index]
    assert sub.state is State.WAITING
    batch, size = deliveries(range(10, 25))
    assert sub.receive_live(batch, size, "e1") is Live.QUEUED
    assert sub.state is State.BLOCKED  # a full block buffer holds acks, as without credit
    assert sub.holds_ack(25)
    sub.consume(9)
    assert sub.state is State.BLOCKED  # room comes from writing, not from credit
    take_all(sub)
    assert sub.state is State.WAITING  # wrote 10 of 15: room, then out of credit again
    with pytest.raises(InvalidState):
        sub.move(Move.SPENT)


def test_a_new_epoch_forgets_what_was_in_flight() -> None:
    sub = live(make(10))
    sub.receive_live(*deliveries(range(10)), "e1")
    take_all(sub)
    assert sub.state is State.WAITING
    batch, size = deliveries(range(0, 3))
    assert sub.receive_live(batch, size, "e2") is Live.CATCH_UP
    assert (sub.state, sub.in_flight, sub.window) == (State.CATCHING_UP, 0, 10)
    with pytest.raises(BadRequest):
        sub.consume(9)  # the old epoch's offsets are gone


def test_never_consuming_gets_exactly_the_credit_then_the_newest_with_gaps_adding_up() -> None:
    sub = live(make(100, bound=50))
    batch, size = deliveries(range(0, 1000))
    for start in range(0, 1000, 10):  # ten per loop turn
        sub.receive_live(batch[start : start + 10], size // 100, "e1")
        take_all(sub)
        assert sub.in_flight <= 100
    assert sub.delivered == 100 and sub.state is State.WAITING
    assert sub.buffer.dropped == 1000 - 100 - 50
    sub.consume(99)
    items = take_all(sub)
    gaps = [i for i in items if isinstance(i, Gap)]
    messages = [i[0] for i in items if type(i) is tuple]
    assert [(g.start, g.end, g.count, g.reason) for g in gaps] == [
        (100, 950, 850, GapReason.DROPPED)
    ]
    assert messages == list(range(950, 1000))  # the newest, in order
    assert 100 + sum(g.count for g in gaps) + len(messages) == 1000


def test_catch_up_pages_count_as_sent() -> None:
    sub = make(5)
    page = ReadResult("e1", 0, 20, [StoredMessage(o, 0.0, b"1") for o in range(5)])
    out, step = sub.receive_page(page)
    assert step is Step.READ_MORE and len(out) == 5
    sub.sent(4, 5, 50)
    assert (sub.window, sub.state) == (0, State.CATCHING_UP)  # the driver waits to read on
    sub.consume(4)
    assert sub.window == 5
