"""Batched deliveries through StreamHub (fake sinks, memory broker): gaps, epochs, the
catch-up/live seam, mixed subscribers, shared frames, lingering; and the subscribe
options over a real server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from conftest import make_config

from nbws.broker import MemoryBroker
from nbws.protocol.messages import (
    Batch,
    Event,
    Gap,
    GapReason,
    Message,
    Policy,
    Publish,
    Subscribed,
    decode_event,
    encode,
)
from nbws.server.hub import Client, StreamHub, delivery_frame
from nbws.server.subscriber import State

from .test_hub import FakeSink, settle

pytestmark = pytest.mark.timeout(120)


def split_frames(data: bytes) -> list[tuple[bytes, bool]]:
    """Unmasked server frames → whole messages ``(payload, text)`` (fragments joined)."""
    out: list[tuple[bytes, bool]] = []
    view = memoryview(data)
    parts: list[bytes] = []
    text = True
    while view:
        first, length = view[0], view[1] & 0x7F
        start = 2
        if length == 126:
            length, start = int.from_bytes(view[2:4], "big"), 4
        elif length == 127:
            length, start = int.from_bytes(view[2:10], "big"), 10
        opcode = first & 0x0F
        if opcode:
            text = opcode == 1
        parts.append(bytes(view[start : start + length]))
        if first & 0x80:
            out.append((b"".join(parts), text))
            parts = []
        view = view[start + length :]
    return out


class EventSink(FakeSink):
    """A fake sink whose writes are decoded as nbws.v1 events, in order."""

    def __init__(self, name: str = "c") -> None:
        super().__init__(name)
        self.log: list[Event] = []

    def send_encoded(self, data: bytes) -> bool:
        self.frames.append(data)
        for payload, text in split_frames(data):
            self.log.append(decode_event(payload, text=text))
        return True

    def send_event(self, event: Event) -> None:
        data, text = encode(event)
        self.log.append(decode_event(data, text=text))

    def delivered(self) -> list[Message | Gap]:
        """Messages (batches unpacked) and gap notices, in the order they were written."""
        out: list[Message | Gap] = []
        for event in self.log:
            if isinstance(event, Batch):
                out.extend(event.messages)
            elif isinstance(event, (Message, Gap)):
                out.append(event)
        return out

    def offsets(self) -> list[int]:
        return [m.offset for m in self.delivered() if isinstance(m, Message)]

    def batches(self) -> list[Batch]:
        return [e for e in self.log if isinstance(e, Batch)]


async def until(condition: Any, timeout: float = 30.0) -> None:
    """Poll ``condition`` with a deadline (the loop keeps running meanwhile)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.001)


@pytest.fixture
def hub() -> StreamHub:
    return StreamHub(MemoryBroker(), make_config())


async def subscribe(
    hub: StreamHub,
    sink: EventSink,
    *,
    since: int | None = None,
    policy: Policy = Policy.DROP_OLDEST,
    bound: int = 100_000,
    max_batch: int | None = 100,
    linger_ms: int | None = None,
    stream: str = "s",
    **options: Any,
) -> Any:
    """A batching subscriber on ``stream`` whose events land in ``sink``; ``options`` go
    to ``StreamHub.subscribe`` as they are (e.g. ``credit``)."""
    sub = await hub.subscribe(
        Client(sink),
        stream,
        since=since,
        policy=policy,
        max_messages=bound,
        max_bytes=1 << 30,
        max_batch=max_batch,
        linger_ms=linger_ms,
        **options,
    )
    assert sub is not None
    return sub


async def publish(hub: StreamHub, offsets: range, stream: str = "s", **extra: Any) -> None:
    producer = Client(FakeSink("producer"))
    for i in offsets:
        await hub.publish(producer, Publish(stream, **extra), b'{"i":%d}' % i)


async def test_batches_carry_every_message_in_order_with_payloads(hub: StreamHub) -> None:
    sink = EventSink()
    await subscribe(hub, sink, max_batch=7)
    await settle()
    await publish(hub, range(50), key="k")
    await settle()
    assert sink.offsets() == list(range(50))
    batches = sink.batches()
    assert batches and all(1 <= len(b.messages) <= 7 for b in batches)
    messages = [m for m in sink.delivered() if isinstance(m, Message)]
    assert [m.payload for m in messages] == [{"i": i} for i in range(50)]
    assert {m.key for m in messages} == {"k"} and {m.epoch for m in messages} == {batches[0].epoch}
    assert not [e for e in sink.log if isinstance(e, Message)]  # no one-message frames
    subscribed = next(e for e in sink.log if isinstance(e, Subscribed))
    assert subscribed.max_batch == 7 and subscribed.linger_ms == 0


async def test_binary_payloads_come_in_binary_batches(hub: StreamHub) -> None:
    sink = EventSink()
    await subscribe(hub, sink)
    await settle()
    producer = Client(FakeSink("producer"))
    await hub.publish(producer, Publish("s", binary=True, content_type="a/b"), b"\x00\x01")
    await hub.publish(producer, Publish("s"), b"{}")
    await hub.publish(producer, Publish("s", binary=True), b"")
    await settle()
    batches = sink.batches()
    assert [b.binary for b in batches] == [True, False, True]
    got = [m for b in batches for m in b.messages]
    assert [(m.offset, m.payload, m.content_type) for m in got] == [
        (0, b"\x00\x01", "a/b"),
        (1, {}, None),
        (2, b"", None),
    ]


async def test_mixed_subscribers_get_the_same_messages_plain_ones_byte_for_byte(
    hub: StreamHub,
) -> None:
    await publish(hub, range(30))  # history
    plain, batched = EventSink("plain"), EventSink("batched")
    await subscribe(hub, plain, since=0, max_batch=None)
    await subscribe(hub, batched, since=0, max_batch=8)
    await settle()
    await publish(hub, range(30, 100))
    await settle()
    assert plain.offsets() == batched.offsets() == list(range(100))
    assert [m.payload for m in plain.delivered()] == [m.payload for m in batched.delivered()]
    # The plain subscriber's bytes are exactly today's one-message frames.
    page = await hub.broker.read("s", 0, 1000)
    expected = b"".join(delivery_frame("s", page.epoch, m) for m in page.messages)
    assert b"".join(plain.frames) == expected
    assert not plain.batches()


async def test_identical_subscribers_share_the_same_frame_object(hub: StreamHub) -> None:
    a, b = EventSink("a"), EventSink("b")
    await subscribe(hub, a, max_batch=50)
    await subscribe(hub, b, max_batch=50)
    await settle()
    await publish(hub, range(120))
    await settle()
    assert a.offsets() == b.offsets() == list(range(120))
    assert len(a.frames) == len(b.frames) >= 3
    assert all(x is y for x, y in zip(a.frames, b.frames, strict=True))
    assert hub.streams["s"].shared.shared >= len(a.frames)


async def test_drop_oldest_overflow_gap_then_batches_with_exact_offsets(hub: StreamHub) -> None:
    sink = EventSink()
    sub = await subscribe(hub, sink, bound=10, max_batch=4)
    await settle()
    sink.writable = False
    await publish(hub, range(40))
    await settle()
    assert sink.offsets() == []
    sink.drain()
    await settle()
    delivered = sink.delivered()
    gap = delivered[0]
    assert isinstance(gap, Gap) and gap.reason is GapReason.DROPPED
    assert (gap.start, gap.end, gap.count) == (0, 30, 30)
    assert sink.offsets() == list(range(30, 40))
    assert all(len(b.messages) <= 4 for b in sink.batches())
    assert sub.buffer.dropped == 30


async def test_drop_newest_gap_sits_between_batches(hub: StreamHub) -> None:
    sink = EventSink()
    await subscribe(hub, sink, policy=Policy.DROP_NEWEST, bound=5, max_batch=100)
    await settle()
    sink.writable = False
    await publish(hub, range(8))  # 0-4 queued, 5-7 dropped
    await settle()
    sink.drain()
    await settle()
    await publish(hub, range(8, 10))
    await settle()
    kinds = [
        ("gap", (e.start, e.end)) if isinstance(e, Gap) else ("msg", e.offset)
        for e in sink.delivered()
    ]
    assert kinds == [
        *(("msg", i) for i in range(5)),
        ("gap", (5, 8)),
        ("msg", 8),
        ("msg", 9),
    ]


async def test_epoch_change_gap_then_new_epoch_batches(hub: StreamHub) -> None:
    sink = EventSink()
    await subscribe(hub, sink, max_batch=10)
    await settle()
    await publish(hub, range(5))
    await settle()
    old_epoch = sink.batches()[-1].epoch
    assert await hub.broker.delete("s")
    await publish(hub, range(3))  # re-created: offsets 0.. in a new epoch
    await until(lambda: len(sink.offsets()) >= 8)
    delivered = sink.delivered()
    gaps = [e for e in delivered if isinstance(e, Gap)]
    assert [g.reason for g in gaps] == [GapReason.EPOCH]
    assert sink.offsets() == [0, 1, 2, 3, 4, 0, 1, 2]
    before, after = delivered[:5], delivered[6:]
    assert delivered[5] is gaps[0] and gaps[0].epoch != old_epoch
    assert {m.epoch for m in before} == {old_epoch}  # type: ignore[union-attr]
    assert {m.epoch for m in after} == {gaps[0].epoch}  # type: ignore[union-attr]
    new_batches = [b for b in sink.batches() if b.epoch == gaps[0].epoch]
    assert [m.offset for b in new_batches for m in b.messages] == [0, 1, 2]


async def test_catch_up_then_live_seam_no_gap_no_duplicate(hub: StreamHub) -> None:
    await publish(hub, range(1500))  # about three replay pages
    sink = EventSink()
    sub = await subscribe(hub, sink, since=0, max_batch=64)
    task = asyncio.ensure_future(publish(hub, range(1500, 2500)))
    await task
    await until(lambda: len(sink.offsets()) >= 2500)
    await settle()
    assert sink.offsets() == list(range(2500))
    assert not [e for e in sink.delivered() if isinstance(e, Gap)]
    assert not [e for e in sink.log if isinstance(e, Message)]  # replay batched too
    assert all(len(b.messages) <= 64 for b in sink.batches())
    assert sub.state is State.LIVE


async def test_conflate_batches_after_the_conflated_gap(hub: StreamHub) -> None:
    sink = EventSink()
    await subscribe(hub, sink, policy=Policy.CONFLATE, bound=100, max_batch=100)
    await settle()
    sink.writable = False
    producer = Client(FakeSink("producer"))
    for i in range(6):
        await hub.publish(producer, Publish("s", key="ab"[i % 2]), b"%d" % i)
    await settle()
    sink.drain()
    await settle()
    delivered = sink.delivered()
    assert isinstance(delivered[0], Gap) and delivered[0].reason is GapReason.CONFLATED
    assert sink.offsets() == [4, 5] and len(sink.batches()) == 1


async def test_linger_fills_one_batch_on_one_hub_timer(hub: StreamHub) -> None:
    clock = [asyncio.get_running_loop().time()]
    hub.now = lambda: clock[0]  # type: ignore[method-assign]
    a, b = EventSink("a"), EventSink("b")
    await subscribe(hub, a, max_batch=100, linger_ms=100)
    await subscribe(hub, b, max_batch=100, linger_ms=50)
    await settle()
    for i in range(3):  # three loop turns: without linger, three batches
        await publish(hub, range(i, i + 1))
        await settle()
    assert a.offsets() == b.offsets() == []
    assert len(hub._lingering) == 2 and hub._linger_handle is not None
    clock[0] += 0.2  # both deadlines passed
    await until(lambda: len(a.offsets()) == 3 and len(b.offsets()) == 3)
    assert [len(x.messages) for x in a.batches()] == [3]
    assert [len(x.messages) for x in b.batches()] == [3]


async def test_a_full_batch_does_not_linger(hub: StreamHub) -> None:
    clock = [asyncio.get_running_loop().time()]
    hub.now = lambda: clock[0]  # type: ignore[method-assign]
    sink = EventSink()
    await subscribe(hub, sink, max_batch=5, linger_ms=100)
    await settle()
    await publish(hub, range(12))
    await settle()
    assert sink.offsets() == list(range(12))  # 5 + 5 + the 2 left over, nothing waits
    assert [len(x.messages) for x in sink.batches()] == [5, 5, 2]


# --- over a real server --------------------------------------------------------------

TARGETS = ("standalone", "redis")


@pytest.mark.parametrize(
    ("options", "mention"),
    [
        ({"max_batch": 0}, "'max_batch' must be at least 1"),
        ({"max_batch": 10_001}, "'max_batch' must be at most 10000"),
        ({"max_batch": True}, "'max_batch' must be an integer"),
        ({"max_batch": 5, "linger_ms": 101}, "'linger_ms' must be at most 100"),
        ({"max_batch": 5, "linger_ms": -1}, "'linger_ms' must be at least 0"),
        ({"linger_ms": 5}, "'linger_ms' needs 'max_batch'"),
    ],
)
async def test_bad_batch_options_are_a_bad_request(connect, options, mention) -> None:
    await (await connect()).expect_bad_subscribe(options, mention)


async def test_batch_events_over_a_websocket(connect) -> None:
    sub, pub = await connect(), await connect()
    info = await sub.subscribe("s-ws", since=0, max_batch=1000, linger_ms=0)
    assert info["max_batch"] == 1000 and info["linger_ms"] == 0
    await pub.publish_acked("s-ws", "p", range(300))
    offsets: list[int] = []
    while len(offsets) < 300:
        event = await sub.expect("batch")
        assert event["epoch"] == info["epoch"]
        offsets += [m["offset"] for m in event["messages"]]
        assert all(m["producer"] == "p" for m in event["messages"])
    assert offsets == list(range(300))
