"""The pure subscription state machine: every transition, pages, live batches, acks."""

from __future__ import annotations

import itertools

import pytest

from nbws.broker import ReadResult, StoredMessage
from nbws.errors import InvalidState
from nbws.protocol.messages import GapReason, since_cursor
from nbws.server.buffers import Delivery, Policy, SubscriberBuffer
from nbws.server.subscriber import TRANSITIONS, Live, Move, State, Step, Subscription

FRAME = b"f" * 10
ALLOWED = {
    (State.CATCHING_UP, Move.CAUGHT_UP): State.LIVE,
    (State.CATCHING_UP, Move.FELL_BEHIND): State.CATCHING_UP,
    (State.CATCHING_UP, Move.BROKER_DOWN): State.STALLED,
    (State.CATCHING_UP, Move.CLOSE): State.CLOSED,
    (State.LIVE, Move.FELL_BEHIND): State.CATCHING_UP,
    (State.LIVE, Move.FULL): State.BLOCKED,
    (State.LIVE, Move.SPENT): State.WAITING,
    (State.LIVE, Move.CLOSE): State.CLOSED,
    (State.WAITING, Move.CONSUMED): State.LIVE,
    (State.WAITING, Move.FULL): State.BLOCKED,
    (State.WAITING, Move.FELL_BEHIND): State.CATCHING_UP,
    (State.WAITING, Move.CLOSE): State.CLOSED,
    (State.BLOCKED, Move.FULL): State.BLOCKED,
    (State.BLOCKED, Move.ROOM): State.LIVE,
    (State.BLOCKED, Move.FELL_BEHIND): State.CATCHING_UP,
    (State.BLOCKED, Move.CLOSE): State.CLOSED,
    (State.STALLED, Move.BROKER_BACK): State.CATCHING_UP,
    (State.STALLED, Move.FELL_BEHIND): State.CATCHING_UP,
    (State.STALLED, Move.CLOSE): State.CLOSED,
    (State.CLOSED, Move.CLOSE): State.CLOSED,
}


def make(
    policy: Policy = Policy.DROP_OLDEST,
    bound: int = 100,
    *,
    cursor: int = 0,
    until: int | None = None,
    epoch: str = "e1",
) -> Subscription:
    buffer = SubscriberBuffer(policy, bound, 1 << 20)
    return Subscription("s", cursor=cursor, epoch=epoch, until=until, buffer=buffer)


def page(first: int, next_offset: int, offsets: range | list[int], epoch: str = "e1") -> ReadResult:
    return ReadResult(epoch, first, next_offset, [StoredMessage(o, 0.0, b"1") for o in offsets])


def batch(*offsets: int) -> tuple[list[Delivery], int]:
    return [(o, FRAME, None) for o in offsets], len(FRAME) * len(offsets)


def live(sub: Subscription) -> Subscription:
    assert sub.receive_page(page(0, sub.cursor, []))[1] is Step.LIVE
    return sub


def test_the_table_is_what_the_tests_expect() -> None:
    table = {(s, m): t for s, moves in TRANSITIONS.items() for m, t in moves.items()}
    assert table == ALLOWED


@pytest.mark.parametrize(("state", "move"), list(itertools.product(State, Move)))
def test_every_transition(state: State, move: Move) -> None:
    sub = make()
    sub.state = state
    expected = ALLOWED.get((state, move))
    if expected is None:
        with pytest.raises(InvalidState, match=move.value):
            sub.move(move)
        assert sub.state is state
    else:
        assert sub.move(move) is expected and sub.state is expected


@pytest.mark.parametrize(
    ("since", "first", "next_offset", "cursor"),
    [
        (None, 10, 30, 30),  # live only
        (-5, 10, 30, 25),  # the last five
        (-100, 10, 30, 10),  # more than held: from the oldest held
        (0, 10, 30, 0),  # older than held: a history gap follows
        (20, 10, 30, 20),
        (99, 10, 30, 99),  # the future: nothing until then
        (-1, 0, 0, 0),  # an empty stream
    ],
)
def test_since_cursor(since: int | None, first: int, next_offset: int, cursor: int) -> None:
    assert since_cursor(since, first, next_offset) == cursor


# --- catching up --------------------------------------------------------------------------


def test_pages_then_live() -> None:
    sub = make()
    messages, step = sub.receive_page(page(0, 600, range(512)))
    assert step is Step.READ_MORE and [m.offset for m in messages] == list(range(512))
    messages, step = sub.receive_page(page(0, 600, range(512, 600)))
    assert step is Step.LIVE and sub.state is State.LIVE and sub.cursor == 600
    assert sub.delivered == 600 and sub.notices == []


def test_history_gap_when_the_cursor_is_older_than_the_stream() -> None:
    sub = make(cursor=3)
    messages, step = sub.receive_page(page(10, 12, [10, 11]))
    assert [m.offset for m in messages] == [10, 11] and step is Step.LIVE
    (gap,) = sub.notices
    assert (gap.start, gap.end, gap.count, gap.reason, gap.epoch) == (
        3,
        10,
        7,
        GapReason.HISTORY,
        "e1",
    )
    assert sub.gaps == 1


def test_epoch_change_while_catching_up_restarts_from_the_new_first() -> None:
    sub = make(cursor=40, epoch="old")
    messages, step = sub.receive_page(page(0, 3, [0, 1, 2], epoch="new"))
    assert messages == [] and step is Step.READ_MORE  # read again with the new cursor
    (gap,) = sub.notices
    assert (gap.start, gap.end, gap.count, gap.reason, gap.epoch) == (
        40,
        None,
        None,
        GapReason.EPOCH,
        "new",
    )
    assert (sub.cursor, sub.epoch) == (0, "new")


def test_until_ends_the_subscription() -> None:
    sub = make(cursor=2, until=5)
    messages, step = sub.receive_page(page(0, 9, range(2, 9)))
    assert [m.offset for m in messages] == [2, 3, 4] and step is Step.END and sub.end_at == 5


def test_until_beyond_the_end_ends_at_the_end() -> None:
    sub = make(until=50)
    messages, step = sub.receive_page(page(0, 3, range(3)))
    assert len(messages) == 3 and step is Step.END and sub.end_at == 3


def test_a_live_message_seen_while_catching_up_means_read_again() -> None:
    sub = make()
    assert sub.receive_live(*batch(5), "e1") is Live.IGNORED and sub.live_hint == 5
    messages, step = sub.receive_page(page(0, 5, range(5)))  # the page missed offset 5
    assert step is Step.READ_MORE and sub.state is State.CATCHING_UP and len(messages) == 5
    messages, step = sub.receive_page(page(0, 6, [5]))
    assert step is Step.LIVE and sub.cursor == 6 and [m.offset for m in messages] == [5]


def test_missing_stream_goes_live_or_ends() -> None:
    assert make().stream_missing() is Step.LIVE
    bounded = make(cursor=4, until=10)
    assert bounded.stream_missing() is Step.END and bounded.end_at == 4


def test_broker_outage_stalls_until_it_is_back() -> None:
    sub = make()
    sub.broker_down()
    assert sub.state is State.STALLED
    assert sub.broker_back() is True and sub.state is State.CATCHING_UP
    assert sub.broker_back() is False  # not stalled: nothing to restart


def test_a_live_message_wakes_a_stalled_subscription() -> None:
    sub = make()
    sub.broker_down()
    assert sub.receive_live(*batch(7), "e1") is Live.CATCH_UP
    assert sub.state is State.CATCHING_UP and sub.live_hint == 7


def test_a_page_outside_catching_up_is_a_bug() -> None:
    sub = live(make())
    with pytest.raises(InvalidState):
        sub.receive_page(page(0, 0, []))


# --- live ---------------------------------------------------------------------------------


def test_live_batch_fast_path() -> None:
    sub = live(make())
    assert sub.receive_live(*batch(0, 1, 2), "e1") is Live.QUEUED
    assert sub.cursor == 3 and len(sub.buffer) == 3


def test_live_messages_behind_the_cursor_are_skipped() -> None:
    sub = live(make(cursor=5))
    assert sub.receive_live(*batch(3, 4, 5, 6), "e1") is Live.QUEUED
    assert [d[0] for d in sub.buffer.take(1 << 20)] == [5, 6]  # type: ignore[index]


def test_a_live_message_ahead_of_the_cursor_goes_back_to_catching_up() -> None:
    sub = live(make(cursor=5))
    assert sub.receive_live(*batch(5, 8, 9), "e1") is Live.CATCH_UP
    assert sub.state is State.CATCHING_UP and sub.cursor == 6 and sub.live_hint == 9


def test_a_new_epoch_live_goes_back_to_catching_up_from_zero() -> None:
    sub = live(make(cursor=40))
    assert sub.receive_live(*batch(0), "e2") is Live.CATCH_UP
    (gap,) = sub.notices
    assert (gap.reason, gap.start, gap.epoch) == (GapReason.EPOCH, 40, "e2")
    assert (sub.cursor, sub.epoch, sub.state) == (0, "e2", State.CATCHING_UP)


def test_disconnect_overflows() -> None:
    sub = live(make(Policy.DISCONNECT, bound=2))
    assert sub.receive_live(*batch(0, 1), "e1") is Live.QUEUED
    assert sub.receive_live(*batch(2), "e1") is Live.OVERFLOW


def test_block_fills_blocks_and_gets_room_again() -> None:
    sub = live(make(Policy.BLOCK, bound=4))
    assert sub.receive_live(*batch(0, 1, 2, 3), "e1") is Live.QUEUED
    assert sub.state is State.LIVE  # at the bound, not over it
    assert sub.receive_live(*batch(4), "e1") is Live.QUEUED and sub.state is State.BLOCKED
    sub.buffer.take(len(FRAME))
    assert sub.taken(1) is False and sub.state is State.BLOCKED  # 4 left: above half
    sub.buffer.take(2 * len(FRAME))
    assert sub.taken(2) is True and sub.state is State.LIVE
    assert sub.delivered == 3


def test_block_holds_acks_until_the_message_is_buffered_and_there_is_room() -> None:
    sub = live(make(Policy.BLOCK, bound=2, cursor=10))
    assert sub.holds_ack(10) and sub.holds_ack(11)  # not in its buffer yet
    assert not sub.holds_ack(9) and not sub.holds_ack(None)
    sub.receive_live(*batch(10, 11), "e1")
    assert not sub.holds_ack(11)  # buffered, at the bound but not over
    sub.receive_live(*batch(12), "e1")
    assert sub.state is State.BLOCKED and sub.holds_ack(5) and sub.holds_ack(None)
    sub.close()
    assert not sub.holds_ack(100)


def test_other_policies_never_hold_acks() -> None:
    for policy in (Policy.DROP_OLDEST, Policy.DROP_NEWEST, Policy.CONFLATE, Policy.DISCONNECT):
        assert not make(policy).holds_ack(50)


def test_buffer_gap_notices_carry_the_epoch_and_count() -> None:
    sub = live(make(Policy.DROP_OLDEST, bound=2))
    sub.receive_live(*batch(0, 1, 2, 3), "e1")
    gap, *_ = sub.buffer.take(1 << 20)
    notice = sub.buffer_gap(gap)  # type: ignore[arg-type]
    assert (notice.start, notice.end, notice.count, notice.reason, notice.epoch) == (
        0,
        2,
        2,
        GapReason.DROPPED,
        "e1",
    )
    assert sub.gaps == 1


def test_closed_subscriptions_ignore_live_messages() -> None:
    sub = live(make())
    sub.close()
    assert sub.receive_live(*batch(0), "e1") is Live.IGNORED and len(sub.buffer) == 0


def test_lag_counts_unread_history_and_the_buffer() -> None:
    sub = live(make(cursor=5))
    sub.receive_live(*batch(5, 6), "e1")
    assert sub.lag(10) == 3 + 2


def test_the_documented_state_diagram_is_the_table() -> None:
    import pathlib

    from nbws.server.subscriber import diagram

    doc = pathlib.Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
    assert f"```mermaid\n{diagram()}\n```" in doc.read_text()
