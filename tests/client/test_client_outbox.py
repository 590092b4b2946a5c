"""The thread-safe outbox around the window (nbws.client.outbox): receipts that behave as
futures while sharing one condition, batches of acks, and when the sender is woken."""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import threading
import weakref

import pytest
from client_support import wait_until

from nbws.client.errors import DeliveryFailed, OutboxFull
from nbws.client.frames import json_parts, publish_text_prefix
from nbws.client.outbox import Outbox, Receipt
from nbws.client.window import Window
from nbws.errors import NackCode


def make(**options: object) -> Outbox:
    defaults: dict[str, object] = {"window": 10, "deadline": None}
    defaults.update(options)
    window: Window[object] = Window("p", **defaults)  # type: ignore[arg-type]
    return Outbox(window, text_prefix=publish_text_prefix("s", "p"))


def waiting(outbox: Outbox) -> int:
    """Threads blocked on the receipts' shared condition."""
    return len(outbox.receipts._waiters)  # type: ignore[attr-defined]


def send_all(outbox: Outbox) -> list[int]:
    outbox.connected()
    return [entry.seq for entry in outbox.take(100)]


def test_a_json_publish_is_stored_as_its_payload_and_key() -> None:
    """The I/O thread builds the text (a batch, or a single publish) at send time."""
    outbox = make()
    outbox.put_json(b'{"a":1}', "k")
    outbox.put_json(b"2")
    outbox.connected()
    first, second = outbox.take(10)
    assert json_parts(first.item) == (b'{"a":1}', "k")
    assert json_parts(second.item) == (b"2", None)
    assert first.size == len(b'{"a":1}')  # the bound counts payload bytes


def test_put_json_many_numbers_consecutively_and_waits_for_room() -> None:
    outbox = make(max_messages=3)
    woken: list[int] = []
    outbox.wakeup = lambda: woken.append(1)
    receipts = outbox.put_json_many([b"1", b"2"])
    assert [r.seq for r in receipts] == [0, 1]
    with pytest.raises(OutboxFull) as full:
        outbox.put_json_many([b"3", b"4"], block=False)
    assert [r.seq for r in full.value.receipts] == [2]  # type: ignore[attr-defined]
    done = threading.Event()
    result: list[Receipt] = []

    def blocked() -> None:
        result.extend(outbox.put_json_many([b"5"], timeout=30))
        done.set()

    thread = threading.Thread(target=blocked)
    thread.start()
    assert not done.wait(0.2)  # no room yet (a bounded wait: the thread must still wait)
    assert send_all(outbox) == [0, 1, 2]
    outbox.ack_many([(0, 0, "e", False)])
    assert done.wait(30)
    thread.join(30)
    assert [r.seq for r in result] == [3]


def test_acks_in_a_batch_complete_receipts_and_skip_stale_ones() -> None:
    outbox = make()
    receipts = [outbox.put_json(b"%d" % i) for i in range(3)]
    assert send_all(outbox) == [0, 1, 2]
    applied = outbox.ack_many([(0, 10, "e", False), (2, 12, "e", True), (0, 10, "e", False)])
    assert applied == 2
    assert receipts[0].result(0) == 10 and receipts[0].epoch == "e"
    assert receipts[2].result(0) == 12 and receipts[2].duplicate
    assert not receipts[1].done()
    assert outbox.stats().acked == 2 and outbox.stats().outbox_messages == 1


def test_a_receipt_nobody_kept_is_freed_but_one_with_a_callback_is_completed() -> None:
    outbox = make()
    calls: list[int | None] = []
    outbox.put_json(b"0").add_done_callback(lambda receipt: calls.append(receipt.result()))
    dropped = weakref.ref(outbox.put_json(b"1"))
    assert dropped() is None  # not held until its ack
    send_all(outbox)
    outbox.ack_many([(0, 5, "e", False), (1, 6, "e", False)])
    assert calls == [5]


def test_a_failed_message_fails_its_receipt_and_is_counted_for_flush() -> None:
    outbox = make()
    receipt = outbox.put_json(b"0")
    send_all(outbox)
    outbox.nack(0, "oversize", "too big for history", retry=False)
    error = receipt.exception(0)
    assert isinstance(error, DeliveryFailed) and error.code == "oversize"
    count, failures = outbox.take_failures()
    assert count == 1 and failures[0].seq == 0
    assert outbox.wait_empty(0)


def test_result_waits_through_other_receipts_completing() -> None:
    """Receipts share one condition: another one's completion wakes the waiter, which
    must keep waiting for its own."""
    outbox = make()
    first, second = outbox.put_json(b"0"), outbox.put_json(b"1")
    send_all(outbox)
    outcome: list[object] = []
    waiter = threading.Thread(target=lambda: outcome.append(second.result(timeout=30)))
    waiter.start()
    wait_until(lambda: waiting(outbox), what="a thread waiting on a receipt")
    outbox.ack(0, 100, "e", False)
    assert first.result(0) == 100
    wait_until(lambda: waiting(outbox), what="the waiter waiting again")
    assert outcome == []
    outbox.ack(1, 101, "e", False)
    waiter.join(10)
    assert outcome == [101]


def test_result_times_out_and_a_receipt_cannot_be_cancelled() -> None:
    receipt = make().put_json(b"0")
    with pytest.raises(TimeoutError):
        receipt.result(timeout=0.01)
    with pytest.raises(TimeoutError):
        receipt.exception(timeout=0)
    assert not receipt.cancel() and not receipt.cancelled() and not receipt.done()


def test_receipts_can_be_awaited_and_work_with_concurrent_futures_wait() -> None:
    outbox = make()
    receipts = [outbox.put_json(b"%d" % i) for i in range(4)]
    early = receipts[0].as_future()  # made while pending
    send_all(outbox)

    async def await_second() -> int | None:
        return await receipts[1]

    loop = asyncio.new_event_loop()
    try:
        task = loop.create_task(await_second())
        loop.call_soon(outbox.ack_many, [(1, 41, "e", False)])
        assert loop.run_until_complete(task) == 41
    finally:
        loop.close()
    outbox.ack_many([(0, 40, "e", False)])
    outbox.nack(3, NackCode.FORBIDDEN, "no", retry=False)
    futures = [r.as_future() for r in receipts]  # made after completion, for two of them
    assert futures[0] is early and receipts[0].as_future() is early
    assert all(isinstance(f, concurrent.futures.Future) for f in futures)
    done, pending = concurrent.futures.wait(futures, timeout=0)
    assert done == {futures[0], futures[1], futures[3]} and pending == {futures[2]}
    assert early.result(0) == 40 and not early.cancel()
    assert isinstance(futures[3].exception(0), DeliveryFailed)


def test_a_future_of_a_dropped_receipt_still_completes() -> None:
    outbox = make()
    future = outbox.put_json(b"0").as_future()  # the receipt itself is not kept
    gc.collect()
    send_all(outbox)
    outbox.ack(0, 7, "e", False)
    assert future.result(0) == 7


def test_standalone_receipt_completes_once() -> None:
    receipt = Receipt(seq=7)
    calls: list[Receipt] = []
    receipt.add_done_callback(calls.append)
    receipt.set_result(3, "e", False)
    receipt.set_exception(RuntimeError("too late"))  # a completed receipt stays as it is
    assert receipt.result() == 3 and receipt.done() and receipt.exception() is None
    assert calls == [receipt]
    receipt.add_done_callback(calls.append)  # already done: called at once
    assert calls == [receipt, receipt]


def test_a_failing_callback_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    outbox = make()
    receipt = outbox.put_json(b"0")
    calls: list[int | None] = []
    receipt.add_done_callback(lambda r: 1 / 0)
    receipt.add_done_callback(lambda r: calls.append(r.result()))
    send_all(outbox)
    outbox.ack(0, 9, "e", False)
    assert calls == [9]
    assert "receipt callback" in caplog.text


def test_the_sender_is_woken_only_when_idle_with_room() -> None:
    outbox = make(window=2)
    wakeups: list[int] = []
    outbox.wakeup = lambda: wakeups.append(1)
    outbox.connected()
    assert outbox.take(10) == []  # nothing to send: idle
    outbox.put_json(b"0")
    outbox.put_json(b"1")
    assert wakeups == [1]  # once, however many puts follow
    assert [e.seq for e in outbox.take(10)] == [0, 1]
    assert outbox.take(10) == []  # window full: the next ack, not a put, makes room
    outbox.put_json(b"2")
    assert wakeups == [1]
    outbox.ack(0, 0, "e", False)
    assert [e.seq for e in outbox.take(10)] == [2]
    outbox.ack(1, 1, "e", False)
    assert outbox.take(10) == []  # idle again: nothing queued, room in the window
    outbox.put_json(b"3")
    assert wakeups == [1, 1]


def test_the_outbox_is_empty_for_flush_only_once_receipts_are_completed() -> None:
    outbox = make()
    first, last = outbox.put_json(b"0"), outbox.put_json(b"1")
    seen: list[bool] = []
    first.add_done_callback(lambda _: seen.append(outbox.wait_empty(0)))
    send_all(outbox)
    outbox.ack_many([(0, 0, "e", False), (1, 1, "e", False)])
    assert seen == [False]  # removed from the window, but receipts were being completed
    assert outbox.wait_empty(0) and last.result(0) == 1

    failing = outbox.put_json(b"2")
    failing.add_done_callback(lambda _: seen.append(outbox.wait_empty(0)))
    send_all(outbox)
    outbox.nack(2, "forbidden", "no", retry=False)
    assert seen == [False, False] and outbox.wait_empty(0)


def test_put_waits_while_connected_and_backlogged_until_the_sender_takes() -> None:
    """While connected, more than ``max_unsent`` queued messages make ``put`` wait for
    the sender (not for acks), and nothing is lost or reordered."""
    outbox = make(window=2, max_unsent=2, max_messages=100)
    outbox.connected()
    outbox.put_json(b"0")
    outbox.put_json(b"1")
    done = threading.Event()
    seqs: list[int] = []

    def publish() -> None:
        seqs.extend(r.seq for r in outbox.put_json_many([b"2", b"3"]))
        seqs.append(outbox.put_json(b"4").seq)
        done.set()

    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    wait_until(lambda: outbox._room_waiters == 1, timeout=30)
    assert not done.is_set()
    sent = [entry.seq for entry in outbox.take(100)]  # the window: 0, 1
    assert sent == [0, 1]
    wait_until(lambda: outbox._room_waiters == 1 and outbox.window.next_seq == 4, timeout=30)
    outbox.ack_many([(0, 10, "e", False), (1, 11, "e", False)])
    sent += [entry.seq for entry in outbox.take(100)]
    assert done.wait(30)
    thread.join(30)
    sent += [entry.seq for entry in outbox.take(100)]
    assert seqs == [2, 3, 4]
    assert sent == [0, 1, 2, 3]  # 4 waits for the window
    assert outbox.window.outbox_messages == 3


def test_a_backlog_does_not_block_while_disconnected_or_without_blocking() -> None:
    outbox = make(window=2, max_unsent=1, max_messages=100)
    receipts = [outbox.put_json(b"x") for _ in range(5)]  # disconnected: no wait
    outbox.connected()
    receipts.append(outbox.put_json(b"y", block=False))  # backlogged, yet room
    receipts += outbox.put_json_many([b"z"], block=False)
    receipts.append(outbox.put_json(b"t", timeout=0.01))  # waits, then adds anyway
    assert [r.seq for r in receipts] == list(range(8))
    assert outbox.window.outbox_messages == 8


def test_a_publisher_waiting_on_the_backlog_is_released_by_a_disconnect() -> None:
    outbox = make(window=2, max_unsent=1, max_messages=100)
    outbox.connected()
    outbox.put_json(b"0")
    done = threading.Event()
    thread = threading.Thread(target=lambda: (outbox.put_json(b"1"), done.set()), daemon=True)
    thread.start()
    wait_until(lambda: outbox._room_waiters == 1, timeout=30)
    outbox.disconnected()
    assert done.wait(30)
    thread.join(30)
    assert outbox.window.outbox_messages == 2
