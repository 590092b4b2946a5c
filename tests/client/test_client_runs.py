"""Runs of consecutive seqs as one outbox entry (``publish_rows``, ``publish_many``): the
pure window's splits, acks, nacks, retransmits, slow start and expiry, and the lazy
``Receipts`` over one outcome. Exact times, no sockets."""

from __future__ import annotations

import gc
import importlib
import threading
from typing import Any

import pytest
from client_support import wait_until

from nbws.client.errors import DeliveryFailed, FailureCode, OutboxFull, StreamClosed
from nbws.client.outbox import Outbox, Receipts
from nbws.client.window import Entry, Rows, Window
from nbws.errors import NackCode


def make(**options: Any) -> Window[Any]:
    defaults: dict[str, Any] = {"window": 10, "initial_window": None, "deadline": None}
    defaults.update(options)
    return Window("p", **defaults)


def run(n: int, start: int = 0, width: int = 3) -> Rows:
    return Rows([b"%0*d" % (width, i) for i in range(start, start + n)])


def spans(entries: list[Entry[Any]]) -> list[tuple[int, int]]:
    return [(e.seq, e.seq + e.count) for e in entries]


def test_a_run_is_one_entry_counted_as_messages() -> None:
    window = make()
    entry = window.add_run(run(5), 15, 0.0)
    single = window.add(b"x", 1, 0.0)
    assert (entry.seq, entry.count, single.seq, window.next_seq) == (0, 5, 5, 6)
    assert (window.outbox_messages, window.outbox_bytes) == (6, 16)
    window.connect()
    taken = window.take_many(0.0, 100)
    assert spans(taken) == [(0, 5), (5, 6)]
    stats = window.stats()
    assert (stats.sent, stats.in_flight, stats.queued) == (6, 6, 0)
    assert window.ack_range(0, 4, 0.5) == [entry]  # the whole run in one step
    assert (window.acked, window.outbox_messages, window.in_flight) == (5, 1, 1)


def test_runs_have_their_own_larger_window_capped_by_the_servers_dedupe() -> None:
    window = make(window=10, run_window=40)
    for i in range(10):
        window.add_run(run(10, 10 * i), 30, 0.0)
    window.connect(dedupe_window=25)
    # not 10, not 40: 25, less the part of a run that would not fit (runs go whole)
    assert spans(window.take_many(0.0, 100)) == [(0, 10), (10, 20)]
    assert window.run_window_full
    window.ack_range(0, 9, 0.1)
    assert spans(window.take_many(0.1, 100)) == [(20, 30)]
    window.disconnect()
    window.connect()
    assert sum(e.count for e in window.take_many(0.0, 100)) == 40  # from seq 10


def test_a_partial_ack_splits_the_run_and_a_retransmit_resends_only_the_rest() -> None:
    window = make(ack_timeout=5.0)
    window.add_run(run(10), 30, 0.0)
    window.connect()
    assert spans(window.take_many(0.0, 10)) == [(0, 10)]
    acked = window.ack_range(0, 3, 1.0)  # the first half of a halved batch
    assert spans(acked) == [(0, 4)] and [p for e in acked for p in e.item.payloads] == [
        b"000",
        b"001",
        b"002",
        b"003",
    ]
    assert (window.outbox_messages, window.outbox_bytes, window.in_flight) == (6, 18, 6)
    again = window.take_many(5.0, 10)  # the ack timeout: the unacked part only
    assert spans(again) == [(4, 10)] and again[0].item.payloads[0] == b"004"
    assert window.retransmitted == 6 and window.sent == 10
    window.ack_range(4, 9, 6.0)
    assert (window.outbox_messages, window.in_flight, window.acked) == (0, 0, 10)


def test_an_ack_in_the_middle_leaves_both_ends_and_reconnect_resends_them_in_order() -> None:
    window = make()
    window.add_run(run(10), 30, 0.0)
    window.add(b"s", 1, 0.0)
    window.connect()
    window.take_many(0.0, 10)
    assert spans(window.ack_range(3, 5, 0.1)) == [(3, 6)]
    window.disconnect()
    window.connect()
    assert spans(window.take_many(0.2, 10)) == [(0, 3), (6, 10), (10, 11)]
    assert window.get(7) is not None and window.get(7).seq == 6  # type: ignore[union-attr]
    assert window.get(4) is None


def test_a_nack_of_one_row_fails_it_alone() -> None:
    window = make()
    window.add_run(run(10), 30, 0.0)
    window.connect()
    window.take_many(0.0, 10)
    failed = window.nack_range(4, 4, 0.1, retry=False)
    assert spans(failed) == [(4, 5)] and failed[0].item.payloads == [b"004"]
    assert (window.failed, window.outbox_messages) == (1, 9)
    assert spans(window.ack_range(0, 9, 0.2)) == [(0, 4), (5, 10)]  # the rest: acked
    assert (window.acked, window.outbox_messages, window.in_flight) == (9, 0, 0)


def test_a_retry_nack_resends_the_run_after_the_retry_delay() -> None:
    window = make(retry_delay=1.0, ack_timeout=100.0)
    window.add_run(run(10), 30, 0.0)
    window.connect()
    window.take_many(0.0, 10)
    assert window.nack_range(0, 9, 0.5, retry=True) == []
    assert window.take_many(1.0, 10) == []
    assert spans(window.take_many(1.5, 10)) == [(0, 10)]


def test_slow_start_cuts_a_run_to_the_allowance() -> None:
    window = make(window=100, initial_window=4, run_window=100)
    window.add_run(run(40), 120, 0.0)
    window.connect()
    first = window.take_many(0.0, 10)
    assert spans(first) == [(0, 4)] and window.window_full
    window.ack_range(0, 3, 0.1)
    second = window.take_many(0.1, 10)
    assert spans(second) == [(4, 12)]  # doubled
    window.ack_range(4, 11, 0.2)
    assert spans(window.take_many(0.2, 10)) == [(12, 28)]


def test_slow_start_bytes_cut_a_run_of_large_rows() -> None:
    window = make(window=1000, initial_window=500, initial_window_bytes=1000, run_window=1000)
    window.add_run(run(50, width=100), 5000, 0.0)
    window.connect()
    (entry,) = window.take_many(0.0, 10)
    assert entry.count == 10 and entry.size == 1000


def test_one_row_always_goes_even_over_the_byte_allowance() -> None:
    window = make(window=1000, initial_window=8, initial_window_bytes=10)
    window.add_run(run(3, width=100), 300, 0.0)
    window.connect()
    assert spans(window.take_many(0.0, 10)) == [(0, 1)]


def test_expiry_fails_the_whole_run_and_counts_messages() -> None:
    window = make(deadline=5.0)
    window.add_run(run(10), 30, 0.0)
    window.connect()
    window.take_many(0.0, 10)
    window.ack_range(0, 1, 1.0)  # split: the rest keeps the deadline
    expired = window.expire(5.0)
    assert spans(expired) == [(2, 10)]
    assert (window.expired, window.outbox_messages, window.in_flight) == (8, 0, 0)
    assert window.next_wakeup() is None


def test_the_outbox_bound_counts_messages() -> None:
    window = make(max_messages=15)
    window.add_run(run(10), 30, 0.0)
    assert not window.has_room(30, 10) and window.has_room(15, 5)
    with pytest.raises(OutboxFull):
        window.add_run(run(6), 18, 0.0)


# --- the outbox and its lazy receipts ---------------------------------------------------


def outbox(**options: Any) -> Outbox:
    return Outbox(make(**options))


def test_receipts_are_lazy_and_complete_by_ranges() -> None:
    box = outbox(window=100, run_window=100)
    receipts = box.put_rows([b"%d" % i for i in range(10)], run_messages=4)
    assert isinstance(receipts, Receipts) and len(receipts) == 10
    assert receipts.pending() == 10 and not receipts.done()
    box.connected()
    assert spans(box.take(10)) == [(0, 4), (4, 8), (8, 10)]  # one entry per run
    pending = receipts[5]
    assert not pending.done() and pending.seq == 5
    box.ack_many([(0, 3, 100, "e", None), (4, 7, 104, "e", None)])
    assert pending.result(0) == 105 and pending.epoch == "e"
    assert receipts.offsets() == [100, 101, 102, 103, 104, 105, 106, 107, None, None]
    with pytest.raises(TimeoutError):
        receipts.wait(0.01)
    box.ack_many([(8, 9, 108, "e", None)])
    receipts.wait(0)
    assert [r.result(0) for r in receipts] == list(range(100, 110))
    assert receipts[-1].result(0) == 109 and len(receipts[2:5]) == 3
    assert box.stats().acked == 10 and box.wait_empty(0)
    more = receipts + [receipts[0]]  # noqa: RUF005 - a list, as when receipts were one
    assert len(more) == 11 and more[-1].seq == 0 and receipts.failures() == []


def test_receipts_cost_no_object_per_row() -> None:
    box = outbox(window=1000, run_window=1000, max_messages=10**6)
    gc.collect()
    before = len(gc.get_objects())
    receipts = box.put_rows([b"1"] * 100_000)
    assert len(gc.get_objects()) - before < 1000  # ~100 runs, not 100,000 receipts
    assert len(receipts) == 100_000


def test_duplicates_in_a_range_ack_keep_their_original_offsets() -> None:
    box = outbox()
    receipts = box.put_rows([b"%d" % i for i in range(5)])
    box.connected()
    box.take(10)
    # seqs 0 and 1 were appended before (at 7 and 8); 2-4 now at 20, 21, 22
    box.ack_many([(0, 4, 20, "e", {"0": 7, "1": 8})])
    assert receipts.offsets() == [7, 8, 20, 21, 22]
    assert receipts[0].duplicate and not receipts[2].duplicate
    assert box.stats().duplicates == 2


def test_a_nacked_row_fails_alone_and_its_receipt_says_why() -> None:
    box = outbox()
    receipts = box.put_rows([b"%d" % i for i in range(6)])
    box.connected()
    box.take(10)
    watched = receipts[3]
    box.ack_many([(0, 2, 0, "e", None)])
    box.nack(3, NackCode.OVERSIZE, "too big", retry=False)
    box.ack_many([(4, 5, 3, "e", None)])
    receipts.wait(0)
    error = watched.exception(0)
    assert isinstance(error, DeliveryFailed) and error.seq == 3 and error.code == "oversize"
    assert isinstance(receipts[3].exception(0), DeliveryFailed)
    assert receipts.offsets() == [0, 1, 2, None, 3, 4]
    assert [f.seq for f in receipts.failures()] == [3]
    count, failures = box.take_failures()
    assert count == 1 and failures[0].seq == 3


def test_failures_of_a_run_are_counted_per_message() -> None:
    box = outbox()
    receipts = box.put_rows([b"%d" % i for i in range(5)])
    box.connected()
    box.take(10)
    box.fail(0, FailureCode.TOO_BIG, "no")  # one row
    box.close("closed")  # and the rest
    assert [f.seq for f in receipts.failures()] == [0, 1, 2, 3, 4]
    assert receipts.failures()[1].code == FailureCode.CLOSED
    count, _ = box.take_failures()
    assert count == 5


def test_put_rows_waits_for_room_and_reports_what_was_queued() -> None:
    box = outbox(max_messages=8)
    with pytest.raises(OutboxFull) as caught:
        box.put_rows([b"1"] * 12, run_messages=4, block=False)
    assert len(caught.value.receipts) == 8  # type: ignore[attr-defined]
    result: list[Receipts] = []
    thread = threading.Thread(target=lambda: result.append(box.put_rows([b"2"] * 4)))
    thread.start()
    box.connected()
    box.take(10)
    box.ack_many([(0, 3, 0, "e", None)])  # room for the waiting run
    thread.join(30)
    assert len(result[0]) == 4 and box.window.outbox_messages == 8
    box.close("bye")
    with pytest.raises(StreamClosed):
        box.put_rows([b"3"])


def test_a_waiter_on_receipts_is_woken_by_the_ack() -> None:
    box = outbox()
    receipts = box.put_rows([b"1"] * 3)
    box.connected()
    box.take(10)
    done = threading.Event()
    threading.Thread(target=lambda: (receipts.wait(30), done.set()), daemon=True).start()
    wait_until(lambda: len(box.receipts._waiters) == 1, what="a waiter")  # type: ignore[attr-defined]
    box.ack_many([(0, 2, 0, "e", None)])
    assert done.wait(30)


def test_a_row_receipt_takes_callbacks_and_futures_like_any_receipt() -> None:
    box = outbox()
    receipts = box.put_rows([b"1"] * 3)
    box.connected()
    box.take(10)
    seen: list[int | None] = []
    receipts[1].add_done_callback(lambda r: seen.append(r.result(0)))
    future = receipts[2].as_future()
    assert not future.done() and seen == []
    box.ack_many([(0, 2, 50, "e", None)])
    assert seen == [51] and future.result(0) == 52
    late: list[int | None] = []
    receipts[0].add_done_callback(lambda r: late.append(r.result(0)))  # done: called at once
    assert late == [50]


def test_publish_many_reads_its_items_a_chunk_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """A long generator is serialised and queued chunk by chunk (the outbox bounds it),
    and a bad item leaves the ones before it queued."""
    stream_module = importlib.import_module("nbws.client.stream")  # (not the function)

    monkeypatch.setattr(stream_module, "FIRST_CHUNK", 5)
    monkeypatch.setattr(stream_module, "ROWS_CHUNK", 10)
    box = outbox(max_messages=1000)
    stream = stream_module.Stream.__new__(stream_module.Stream)
    stream._outbox = lambda: box  # type: ignore[method-assign]
    stream._publisher = type("P", (), {"run_messages": 4})()  # type: ignore[assignment]
    stream.options = stream_module.StreamOptions()
    queued_when: dict[int, int] = {}

    def items() -> Any:
        for i in range(25):
            queued_when[i] = box.window.outbox_messages
            yield {"i": i}

    receipts = stream.publish_many(items())
    assert len(receipts) == 25
    # chunks of 5, 10, 10 (each twice the last, up to ROWS_CHUNK)
    assert [queued_when[i] for i in (4, 5, 14, 15, 24)] == [0, 5, 5, 15, 15]
    box.connected()
    assert [e.count for e in box.take(100)] == [4, 1, 4, 4, 2, 4, 4, 2]
    with pytest.raises(TypeError):
        stream.publish_many([1, 2, object(), 4])
    assert box.window.outbox_messages == 27
