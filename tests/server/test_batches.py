"""The pure half of batched deliveries: cutting runs, shared frames, lingering."""

from __future__ import annotations

from nbws.broker import ReadResult, StoredMessage
from nbws.protocol.messages import MAX_HEADER_BYTES, Batch, GapReason, batch_item, decode_event
from nbws.server.buffers import Delivery, Gap, Policy, SubscriberBuffer
from nbws.server.subscriber import SharedFrames, Step, Subscription, cut_runs, stored_item


def item(offset: int, payload: bytes = b"1", binary: bool = False) -> Delivery:
    return (offset, b"f" * 10, None, batch_item(StoredMessage(offset, 1.0, payload, binary)))


def make(max_batch: int | None = 10, linger: float = 0.0, bound: int = 100) -> Subscription:
    buffer = SubscriberBuffer(Policy.DROP_OLDEST, bound, 1 << 20)
    sub = Subscription("s", cursor=0, epoch="e1", until=None, buffer=buffer)
    sub = Subscription(
        "s", cursor=0, epoch="e1", until=None, buffer=buffer, max_batch=max_batch, linger=linger
    )
    assert sub.receive_page(ReadResult("e1", 0, 0, []))[1] is Step.LIVE
    return sub


def payload_of(frame: bytes) -> bytes:
    """The payload of one unmasked, unfragmented server frame."""
    length = frame[1] & 0x7F
    return frame[2 if length < 126 else 4 if length == 126 else 10 :]


def decoded(frame: bytes) -> Batch:
    event = decode_event(payload_of(frame), text=frame[0] & 0x0F == 1)
    assert isinstance(event, Batch)
    return event


def offsets(parts: list[list[Delivery] | Gap]) -> list[list[int] | str]:
    return [p.reason.value if isinstance(p, Gap) else [d[0] for d in p] for p in parts]


def test_runs_are_cut_at_max_batch_gaps_and_binary_changes() -> None:
    gap = Gap(3, 5, 2, GapReason.DROPPED)
    items: list[Delivery | Gap] = [item(0), item(1), item(2), gap, item(5), item(6, binary=True)]
    items += [item(7, binary=True), item(8)]
    assert offsets(cut_runs(items, 2)) == [[0, 1], [2], "dropped", [5], [6, 7], [8]]
    assert offsets(cut_runs(items, 100)) == [[0, 1, 2], "dropped", [5], [6, 7], [8]]


def test_runs_stop_growing_at_the_byte_bound() -> None:
    big = b'"' + b"x" * 400_000 + b'"'
    items: list[Delivery | Gap] = [item(i, big) for i in range(6)]
    runs = cut_runs(items, 100)
    assert offsets(runs) == [[0, 1, 2], [3, 4, 5]]  # about 1 MiB each, then a new batch


def test_identical_runs_get_the_same_frame_object() -> None:
    shared = SharedFrames()
    a, b = make(), make()
    for sub in (a, b):
        batch = [item(i) for i in range(25)]
        sub.receive_live(batch, 250, "e1")
    frames_a, count_a = a.frames(a.buffer.take(1 << 20), shared)
    frames_b, count_b = b.frames(b.buffer.take(1 << 20), shared)
    assert count_a == count_b == 25 and len(frames_a) == 3
    assert all(x is y for x, y in zip(frames_a, frames_b, strict=True))
    assert (shared.built, shared.shared) == (3, 3)
    got = [decoded(f) for f in frames_a]  # type: ignore[arg-type]
    assert [[m.offset for m in g.messages] for g in got] == [
        list(range(10)),
        list(range(10, 20)),
        list(range(20, 25)),
    ]
    assert {g.epoch for g in got} == {"e1"}


def test_a_different_run_is_not_shared() -> None:
    shared = SharedFrames()
    a, b = make(max_batch=10), make(max_batch=5)
    for sub in (a, b):
        sub.receive_live([item(i) for i in range(10)], 100, "e1")
    frames_a, _ = a.frames(a.buffer.take(1 << 20), shared)
    frames_b, _ = b.frames(b.buffer.take(1 << 20), shared)
    assert len(frames_a) == 1 and len(frames_b) == 2 and shared.shared == 0
    assert [m.offset for f in frames_b for m in decoded(f).messages] == list(range(10))  # type: ignore[arg-type]


def test_runs_with_holes_are_never_shared_by_mistake() -> None:
    shared = SharedFrames()
    first = shared.frame("s", "e1", [item(1), item(3), item(4)])
    second = shared.frame("s", "e1", [item(1), item(2), item(4)])
    assert [m.offset for m in decoded(second).messages] == [1, 2, 4]
    assert first is not second and shared.shared == 0


def test_plain_subscriptions_write_the_message_frames_unchanged() -> None:
    sub = make(max_batch=None)
    batch = [item(i) for i in range(3)]
    sub.receive_live(batch, 30, "e1")
    frames, count = sub.frames(sub.buffer.take(1 << 20), SharedFrames())
    assert count == 3 and all(f is d[1] for f, d in zip(frames, batch, strict=True))


def test_page_frames_batch_history_in_the_page_epoch() -> None:
    sub = Subscription(
        "s",
        cursor=0,
        epoch="e1",
        until=None,
        buffer=SubscriberBuffer(Policy.BLOCK, 10, 100),
        max_batch=4,
    )
    stored = [StoredMessage(i, 2.0, b"[%d]" % i, key="k") for i in range(6)]
    messages, _ = sub.receive_page(ReadResult("e1", 0, 6, stored))
    frames, count = sub.page_frames(messages, SharedFrames())
    assert count == 6
    got = [decoded(f) for f in frames]
    assert [[(m.offset, m.payload, m.key) for m in g.messages] for g in got] == [
        [(i, [i], "k") for i in range(4)],
        [(i, [i], "k") for i in range(4, 6)],
    ]
    assert stored_item(stored[0]) == b'{"offset":0,"time":2.0,"key":"k","payload":[0]}'


def test_linger_waits_for_a_full_batch_or_the_deadline() -> None:
    sub = make(max_batch=5, linger=0.05)
    assert sub.flush_due(10.0) is None  # nothing queued
    sub.receive_live([item(0), item(1)], 20, "e1")
    assert sub.flush_due(10.0) == 10.05
    assert sub.flush_due(10.04) == 10.05  # measured from the first time it was asked
    assert sub.flush_due(10.05) is None
    sub.taken(len(sub.buffer.take(1 << 20)))
    sub.receive_live([item(2)], 10, "e1")
    assert sub.flush_due(20.0) == 20.05  # a new batch waits afresh
    sub.receive_live([item(i) for i in range(3, 7)], 40, "e1")
    assert sub.flush_due(20.0) is None  # full: max_batch reached


def test_a_gap_never_lingers() -> None:
    sub = make(max_batch=50, linger=0.05, bound=3)
    sub.receive_live([item(i) for i in range(5)], 50, "e1")  # drop-oldest: a head gap
    assert sub.buffer.gap_pending and sub.flush_due(1.0) is None


def test_without_linger_or_batches_nothing_waits() -> None:
    for sub in (make(max_batch=5), make(max_batch=None, linger=1.0)):
        sub.receive_live([item(0)], 10, "e1")
        assert sub.linger == 0 and sub.flush_due(1.0) is None


def test_buffer_counts_queued_gap_notices() -> None:
    buffer = SubscriberBuffer(Policy.DROP_NEWEST, 2, 1 << 20)
    for i in range(4):
        buffer.offer(item(i))  # 2, 3 dropped
    assert buffer.gap_pending  # the tail gap
    buffer.take(1 << 20)
    assert not buffer.gap_pending
    buffer.offer(item(4))
    buffer.offer(item(5))
    buffer.offer(item(6))  # dropped: tail gap
    buffer.take(5)  # takes 4 only
    buffer.offer(item(7))  # accepted after the gap: the gap notice is queued before it
    assert buffer.gap_pending
    assert [x if isinstance(x, Gap) else x[0] for x in buffer.take(1 << 20)] == [
        5,
        Gap(6, 7, 1, GapReason.DROPPED),
        7,
    ]
    assert not buffer.gap_pending


def test_binary_batches_keep_their_header_under_the_limit() -> None:
    items: list[Delivery | Gap] = [
        (i, b"", None, batch_item(StoredMessage(i, 1.0, b"x", True, content_type="t/" + "c" * 200)))
        for i in range(1000)
    ]
    shared = SharedFrames()
    runs = cut_runs(items, 1000)
    assert len(runs) > 1 and sum(len(r) for r in runs) == 1000  # type: ignore[arg-type]
    for run in runs:
        frame = shared.frame("s", "e1", run)  # type: ignore[arg-type]
        assert int.from_bytes(payload_of(frame)[:4], "big") <= MAX_HEADER_BYTES
        assert [m.offset for m in decoded(frame).messages] == [d[0] for d in run]  # type: ignore[index]


def test_identical_takes_share_the_cutting_too() -> None:
    shared = SharedFrames()
    subs = [make(max_batch=10) for _ in range(3)]
    for sub in subs:
        sub.receive_live([item(i) for i in range(25)], 250, "e1")
    results = []
    for sub in subs:
        items = sub.buffer.take(1 << 20)
        results.append(sub.frames(items, shared, gapless=sub.buffer.taken_gaps == 0))
    assert shared.built == 3 and len(shared.takes) == 1
    assert all(
        r[1] == 25 and all(x is y for x, y in zip(r[0], results[0][0], strict=True))
        for r in results
    )


def test_a_take_with_a_gap_inside_is_never_served_a_gapless_run() -> None:
    shared = SharedFrames()
    plain = make(max_batch=10)
    plain.cursor = 1
    plain.receive_live([item(i) for i in range(1, 5)], 40, "e1")
    plain.frames(plain.buffer.take(1 << 20), shared, gapless=True)
    assert len(shared.takes) == 1  # remembers the run 1..4
    buffer = SubscriberBuffer(Policy.DROP_NEWEST, 3, 1 << 20)
    sub = Subscription("s", cursor=0, epoch="e1", until=None, buffer=buffer, max_batch=10)
    for offset in range(4):
        buffer.offer(item(offset))  # 3 dropped: a tail gap
    buffer.take(10)  # 0 written; 1, 2 still queued
    buffer.offer(item(4))  # the gap notice for 3 goes in before it
    items = buffer.take(1 << 20)
    assert buffer.taken_gaps == 1
    frames, count = sub.frames(items, shared, "e1", gapless=buffer.taken_gaps == 0)
    assert count == 3
    assert [
        [m.offset for m in decoded(f).messages] if isinstance(f, bytes) else f.start for f in frames
    ] == [  # type: ignore[union-attr]
        [1, 2],
        3,
        [4],
    ]
