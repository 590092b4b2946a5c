"""The publisher's pure bookkeeping (nbws.client.window), driven with exact times."""

from __future__ import annotations

from typing import Any

import pytest

from nbws.client.errors import OutboxFull
from nbws.client.window import Backoff, Window, percentile


def make(**options: object) -> Window[str]:
    defaults: dict[str, object] = {
        "window": 3,
        "initial_window": None,  # the whole window at once (slow start has its own tests)
        "ack_timeout": 10.0,
        "deadline": None,
    }
    defaults.update(options)
    return Window("p", **defaults)  # type: ignore[arg-type]


def drain(window: Window[str], now: float) -> list[int]:
    out = []
    while (entry := window.take(now)) is not None:
        out.append(entry.seq)
    return out


def test_sequence_numbers_are_consecutive_and_start_at_first_seq() -> None:
    window = make(first_seq=7)
    assert [window.add(x, 1, 0.0).seq for x in "abc"] == [7, 8, 9]
    assert window.next_seq == 10


def test_nothing_is_sent_before_connect_queue_before_open() -> None:
    window = make()
    window.add("a", 1, 0.0)
    assert window.take(0.0) is None
    window.connect()
    entry = window.take(0.0)
    assert entry is not None and entry.item == "a"


def test_window_limits_messages_in_flight_and_acks_open_it() -> None:
    window = make(window=2)
    for x in "abcd":
        window.add(x, 1, 0.0)
    window.connect()
    assert drain(window, 0.0) == [0, 1]
    assert window.in_flight == 2
    window.ack(0, 0.5)
    assert drain(window, 0.5) == [2]
    window.ack(1, 0.6)
    window.ack(2, 0.7)
    assert drain(window, 0.7) == [3]


def test_stop_and_wait_with_window_one() -> None:
    window = make(window=1)
    for x in "abc":
        window.add(x, 1, 0.0)
    window.connect()
    sent = []
    for t in range(3):
        sent += drain(window, float(t))
        window.ack(sent[-1], t + 0.5)
    assert sent == [0, 1, 2]
    assert window.outbox_messages == 0


def test_retransmit_after_ack_timeout_at_the_exact_time() -> None:
    window = make(ack_timeout=2.0)
    window.add("a", 1, 0.0)
    window.connect()
    assert drain(window, 1.0) == [0]
    assert window.next_wakeup() == 3.0
    assert window.take(2.999) is None
    entry = window.take(3.0)
    assert entry is not None and entry.seq == 0 and entry.attempts == 2
    assert window.stats().retransmitted == 1
    assert window.next_wakeup() == 5.0  # the timer restarts with each transmission
    assert window.take(4.0) is None


def test_no_retransmit_on_timeout_when_disabled() -> None:
    window = make(ack_timeout=2.0, retransmit=False)
    window.add("a", 1, 0.0)
    window.connect()
    drain(window, 0.0)
    assert window.take(100.0) is None
    assert window.next_wakeup() is None


def test_acked_message_is_not_retransmitted() -> None:
    window = make(ack_timeout=2.0)
    window.add("a", 1, 0.0)
    window.connect()
    drain(window, 0.0)
    assert window.ack(0, 1.0) is not None
    assert window.take(10.0) is None
    assert window.ack(0, 1.5) is None  # a second ack for it is stale


def test_reconnect_retransmits_every_unacked_message_in_order() -> None:
    window = make(window=3)
    for x in "abcde":
        window.add(x, 1, 0.0)
    window.connect()
    assert drain(window, 0.0) == [0, 1, 2]
    window.ack(1, 0.1)  # acks can arrive out of order
    window.disconnect()
    assert window.in_flight == 0
    assert window.take(0.2) is None  # disconnected: nothing to send
    window.connect()
    assert drain(window, 0.3) == [0, 2, 3]
    stats = window.stats()
    assert (stats.sent, stats.retransmitted, stats.acked) == (4, 2, 1)
    window.ack(0, 0.4)
    assert drain(window, 0.4) == [4]


def test_timers_of_the_old_connection_do_not_fire_after_reconnect() -> None:
    window = make(ack_timeout=1.0)
    window.add("a", 1, 0.0)
    window.connect()
    drain(window, 0.0)
    window.disconnect()
    window.connect()
    assert drain(window, 5.0) == [0]  # resent once because of the reconnect
    assert window.take(5.5) is None  # not again for the stale timer
    assert window.next_wakeup() == 6.0


def test_outbox_full_in_messages() -> None:
    window = make(max_messages=2)
    window.add("a", 1, 0.0)
    window.add("b", 1, 0.0)
    assert not window.has_room(1)
    with pytest.raises(OutboxFull, match="2/2 messages"):
        window.add("c", 1, 0.0)
    window.connect()
    drain(window, 0.0)
    window.ack(0, 0.1)
    assert window.has_room(1)
    assert window.add("c", 1, 0.2).seq == 2  # the refused add used no sequence number


def test_outbox_full_in_bytes_but_one_oversize_message_fits_an_empty_outbox() -> None:
    window = make(max_bytes=100)
    window.add("a", 60, 0.0)
    assert window.has_room(40)
    assert not window.has_room(41)
    with pytest.raises(OutboxFull, match="bytes"):
        window.add("b", 41, 0.0)
    window.connect()
    drain(window, 0.0)
    window.ack(0, 0.1)
    assert window.outbox_bytes == 0
    window.add("huge", 500, 0.2)  # larger than the bound: accepted alone
    assert not window.has_room(1)


def test_deadline_exceeded_fails_the_message_at_the_exact_time() -> None:
    window = make(deadline=5.0)
    window.add("a", 10, 0.0)
    window.add("b", 10, 1.0)
    assert window.next_wakeup() == 5.0
    assert window.expire(4.999) == []
    expired = window.expire(5.0)
    assert [e.item for e in expired] == ["a"]
    assert window.outbox_messages == 1 and window.outbox_bytes == 10
    assert [e.item for e in window.expire(6.0)] == ["b"]
    assert window.stats().expired == 2


def test_expired_in_flight_message_frees_its_window_slot() -> None:
    window = make(window=1, deadline=1.0)
    window.add("a", 1, 0.0)
    window.add("b", 1, 0.5)
    window.connect()
    assert drain(window, 0.0) == [0]
    window.expire(1.0)
    assert window.in_flight == 0
    assert drain(window, 1.0) == [1]
    assert window.ack(0, 1.1) is None  # the late ack of the expired message is ignored


def test_per_message_deadline_overrides_the_default() -> None:
    window = make(deadline=100.0)
    window.add("forever", 1, 0.0, deadline=None)
    window.add("soon", 1, 0.0, deadline=1.0)
    assert [e.item for e in window.expire(50.0)] == ["soon"]
    assert window.expire(1e9) == []


def test_nack_without_retry_fails_and_with_retry_resends_after_the_delay() -> None:
    window = make(retry_delay=0.5, ack_timeout=10.0)
    window.add("a", 1, 0.0)
    window.add("b", 1, 0.0)
    window.connect()
    drain(window, 0.0)
    failed = window.nack(0, 0.1, retry=False)
    assert failed is not None and failed.item == "a"
    assert window.nack(1, 0.1, retry=True) is None
    assert window.take(0.5) is None
    entry = window.take(0.6)
    assert entry is not None and entry.seq == 1
    assert window.stats().failed == 1


def test_latency_percentiles_from_transmission_to_ack() -> None:
    window = make(window=100)
    for i in range(100):
        window.add(str(i), 1, 0.0)
    window.connect()
    for seq in drain(window, 0.0):
        window.ack(seq, (seq + 1) / 1000.0)  # latencies 1 ms .. 100 ms
    p50, p99 = window.latency_percentiles()
    assert p50 == pytest.approx(0.050)
    assert p99 == pytest.approx(0.099)
    stats = window.stats()
    assert stats.latency_p50 == p50 and stats.latency_p99 == p99


def test_latency_is_measured_from_the_latest_transmission() -> None:
    window = make(ack_timeout=1.0)
    window.add("a", 1, 0.0)
    window.connect()
    drain(window, 0.0)
    window.take(1.0)  # retransmitted at t=1
    window.ack(0, 1.25)
    assert window.latency_percentiles() == (0.25, 0.25)


def test_no_latency_without_acks() -> None:
    assert make().latency_percentiles() == (None, None)


def test_percentile_is_nearest_rank() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 99) == 4.0
    assert percentile([7.0], 1) == 7.0
    assert percentile([], 50) is None


def test_drain_returns_everything_unacked() -> None:
    window = make()
    for x in "abc":
        window.add(x, 2, 0.0)
    window.connect()
    drain(window, 0.0)
    assert [e.item for e in window.drain()] == ["a", "b", "c"]
    assert (window.outbox_messages, window.outbox_bytes, window.in_flight) == (0, 0, 0)


def test_stats_count_queued_and_in_flight() -> None:
    window = make(window=2)
    for x in "abcd":
        window.add(x, 5, 0.0)
    window.connect()
    drain(window, 0.0)
    stats = window.stats()
    counts = (stats.in_flight, stats.queued, stats.outbox_messages, stats.outbox_bytes)
    assert counts == (2, 2, 4, 20)
    assert stats.producer == "p" and stats.next_seq == 4


def test_invalid_options_are_refused() -> None:
    with pytest.raises(ValueError):
        make(window=0)
    with pytest.raises(ValueError):
        make(ack_timeout=0)
    with pytest.raises(ValueError):
        make(max_messages=0)


def test_take_many_is_what_repeated_take_returns() -> None:
    def scenario(batch: bool) -> list[list[int]]:
        window = make(window=3, ack_timeout=1.0, retry_delay=0.25)
        for x in "abcdef":
            window.add(x, 1, 0.0)
        window.connect()
        rounds = []
        for now in (0.0, 0.5, 1.0, 1.3, 2.0, 2.5):
            if now == 0.5:
                window.ack(1, now)
                window.nack(0, now, retry=True)  # due at 0.75, before the timeouts
            if now == 2.5:
                window.ack(2, now)
                window.ack(3, now)
            if batch:
                rounds.append([e.seq for e in window.take_many(now, 2)])
            else:
                taken = []
                while len(taken) < 2 and (entry := window.take(now)) is not None:
                    taken.append(entry.seq)
                rounds.append(taken)
        return rounds

    expected = [[0, 1], [2, 3], [0], [], [2, 3], [0, 4]]
    assert scenario(batch=True) == scenario(batch=False) == expected


def test_timers_stay_exact_when_the_clock_goes_backwards() -> None:
    window = make(window=10, ack_timeout=5.0, deadline=10.0)
    window.add("late", 1, 3.0)
    window.add("early", 1, 1.0)  # added "before" the first: its deadline comes first
    assert window.next_wakeup() == 11.0
    window.connect()
    assert [e.seq for e in window.take_many(2.0, 1)] == [0]
    assert [e.seq for e in window.take_many(1.0, 1)] == [1]  # its timeout is earlier
    assert window.next_wakeup() == 6.0
    assert [e.seq for e in window.take_many(6.0, 5)] == [1]
    assert [e.item for e in window.expire(12.0)] == ["early"]
    assert [e.item for e in window.expire(13.0)] == ["late"]


# --- slow start ------------------------------------------------------------------------


def rounds(window: Window[str], count: int) -> list[int]:
    """Send what the window allows, ack all of it, ``count`` times: messages per round."""
    sent = []
    for t in range(count):
        seqs = drain(window, float(t))
        sent.append(len(seqs))
        for seq in seqs:
            window.ack(seq, t + 0.5)
    return sent


@pytest.mark.parametrize(
    ("window_size", "initial", "expected"),
    [
        (64, 4, [4, 8, 16, 32, 64, 64]),  # doubles per acked round trip, up to the window
        (100, 8, [8, 16, 32, 64, 100, 100]),  # the last step is capped at the window
        (1000, 8, [8, 16, 32, 64, 128, 256, 512, 1000, 1000]),
        (5, 8, [5, 5, 5]),  # an initial window above the window is the window
        (64, None, [64, 64]),  # None: no slow start
        (1, 1, [1, 1, 1]),  # stop-and-wait is unchanged
    ],
)
def test_slow_start_doubles_the_window_per_acked_round_trip(
    window_size: int, initial: int | None, expected: list[int]
) -> None:
    window = make(window=window_size, initial_window=initial)
    for i in range(sum(expected) + 10):
        window.add(str(i), 10, 0.0)
    window.connect()
    assert rounds(window, len(expected)) == expected


def test_slow_start_byte_allowance_grows_with_acked_bytes() -> None:
    window = make(window=100, initial_window=50, initial_window_bytes=1000)
    for i in range(20):
        window.add(str(i), 400, 0.0)
    window.connect()
    assert drain(window, 0.0) == [0, 1]  # a third 400-byte message would pass 1000
    assert window.window_full
    window.ack(0, 0.1)  # allowance 1000 + 400, 400 in flight
    assert drain(window, 0.1) == [2, 3]
    window.ack(1, 0.2)
    window.ack(2, 0.2)
    window.ack(3, 0.2)  # allowance 2600, nothing in flight
    assert drain(window, 0.2) == [4, 5, 6, 7, 8, 9]


def test_one_message_over_the_byte_allowance_still_goes_alone() -> None:
    window = make(window=10, initial_window=4, initial_window_bytes=100)
    window.add("big", 5000, 0.0)
    window.add("small", 10, 0.0)
    window.connect()
    assert drain(window, 0.0) == [0]
    window.ack(0, 0.1)
    assert drain(window, 0.1) == [1]


def test_every_connection_starts_slow_and_old_acks_do_not_grow_the_new_one() -> None:
    window = make(window=64, initial_window=4)
    for i in range(200):
        window.add(str(i), 10, 0.0)
    window.connect()
    assert rounds(window, 5) == [4, 8, 16, 32, 64]
    assert window.congestion_window == 64
    in_flight = drain(window, 5.0)
    assert len(in_flight) == 64
    window.disconnect()
    window.connect()
    assert window.congestion_window == 4
    assert drain(window, 6.0) == in_flight[:4]  # resent from the oldest, slowly
    window.disconnect()
    window.connect()
    window.ack(in_flight[-1], 7.0)  # sent on an earlier connection: no growth
    assert window.congestion_window == 4
    assert window.stats().congestion_window == 4


def test_duplicate_acks_grow_the_window_like_any_ack() -> None:
    window = make(window=16, initial_window=2)
    for i in range(10):
        window.add(str(i), 10, 0.0)
    window.connect()
    for seq in drain(window, 0.0):
        window.ack(seq, 0.1, duplicate=True)
    assert len(drain(window, 0.1)) == 4


# --- reconnect backoff -----------------------------------------------------------------


def backoff() -> Backoff:
    """initial 1 s, max 8 s; the jitter always draws the middle of its range."""
    return Backoff(1.0, 8.0, quick_rtts=4, stable_rtts=10, stable_min=0.1, random=lambda: 0.5)


FAIL = ("failed",)


def ended(lived: float, rtt: float, progress: bool) -> tuple[str, float, float, bool]:
    return ("ended", lived, rtt, progress)


@pytest.mark.parametrize(
    ("events", "delays"),
    [
        # cannot connect: exponential with full jitter, capped
        ([FAIL] * 6, [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]),
        # a connection with acks: back almost at once (4 rtt), failures start over
        ([FAIL, FAIL, ended(0.3, 0.01, True), FAIL], [0.5, 1.0, 0.02, 0.5]),
        # progress every time on a short-lived link: never more than 4 rtt
        ([ended(0.05, 0.01, True)] * 3, [0.02, 0.02, 0.02]),
        # the quick delay never exceeds initial, however slow the handshake
        ([ended(9.0, 2.0, True)], [0.5]),
        # no progress but lived 10 round trips (and 0.1 s): failures start over
        ([FAIL, FAIL, FAIL, ended(0.2, 0.01, False)], [0.5, 1.0, 2.0, 0.5]),
        # died right after the handshake without progress: one more failure
        ([FAIL, ended(0.05, 0.01, False), ended(0.05, 0.01, False)], [0.5, 1.0, 2.0]),
        # 10 rtt is not enough when it is under stable_min
        ([ended(0.09, 0.001, False), ended(0.09, 0.001, False)], [0.5, 1.0]),
    ],
)
def test_backoff_punishes_failures_not_short_lived_connections(
    events: list[tuple[Any, ...]], delays: list[float]
) -> None:
    policy = backoff()
    got = []
    for event in events:
        if event[0] == "failed":
            got.append(policy.failed())
        else:
            got.append(policy.ended(*event[1:]))
    assert got == pytest.approx(delays)


def test_backoff_jitter_spans_zero_to_the_ceiling() -> None:
    draws = iter([0.0, 0.999])
    policy = Backoff(1.0, 30.0, random=lambda: next(draws))
    assert policy.failed() == 0.0
    assert policy.failed() == pytest.approx(1.998)


def test_backlogged_counts_unsent_messages_only_while_connected() -> None:
    window = make(window=2, max_unsent=3, max_messages=100)
    for x in "abcd":
        window.add(x, 1, 0.0)
    assert not window.backlogged  # disconnected: only max_messages bounds the outbox
    assert window.has_room(1)
    window.connect()
    assert window.backlogged  # 4 queued unsent >= 3
    assert window.has_room(1)  # a soft bound: adding still succeeds
    assert drain(window, 0.0) == [0, 1]  # the window (2) is on the wire
    assert not window.backlogged  # 2 unsent
    window.add("e", 1, 0.0)
    assert window.backlogged
    window.disconnect()
    assert not window.backlogged


def test_max_unsent_defaults_to_four_windows_and_must_be_positive() -> None:
    assert make(window=5).max_unsent == 20
    with pytest.raises(ValueError, match="max_unsent"):
        make(max_unsent=0)
