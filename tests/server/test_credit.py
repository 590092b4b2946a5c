"""Credit end to end: StreamHub over fake sinks (every write observable), then a real
server over a socket: a subscriber that stops consuming gets its credit and then only
gap notices, resumes with the newest; a consumer that keeps up gets everything; bogus
``consumed`` reports are refused on an open connection; other subscribers never notice."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import make_config
from waiting import until, wait_for
from websockets.exceptions import ConnectionClosed

from nbws.broker import MemoryBroker
from nbws.errors import BadRequest
from nbws.protocol.messages import Ack, End, Gap, GapReason, Message, Policy, Publish, Subscribed
from nbws.server.hub import Client, StreamHub
from nbws.server.subscriber import State

from .test_batch_delivery import EventSink, publish
from .test_batch_delivery import subscribe as batching_subscriber
from .test_hub import FakeSink, settle

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def hub() -> StreamHub:
    return StreamHub(MemoryBroker(), make_config())


async def subscribe(
    hub: StreamHub,
    sink: EventSink,
    *,
    credit: int | None = 100,
    credit_bytes: int | None = None,
    bound: int = 50,
    max_batch: int = 20,
    **options: Any,
) -> Any:
    """A subscriber with credit (and this file's smaller bounds)."""
    return await batching_subscriber(
        hub,
        sink,
        bound=bound,
        max_batch=max_batch,
        credit=credit,
        credit_bytes=credit_bytes,
        **options,
    )


def adds_up(delivered: list[Message | Gap], total: int) -> None:
    """Every offset below ``total`` is delivered once or inside exactly one gap notice."""
    seen: list[int] = []
    for item in delivered:
        if isinstance(item, Gap):
            assert item.end is not None
            seen.extend(range(item.start, item.end))
        else:
            seen.append(item.offset)
    assert sorted(seen) == seen == list(range(total))


async def test_a_subscriber_that_never_consumes_gets_its_credit_then_gap_notices(
    hub: StreamHub,
) -> None:
    sink = EventSink()
    sub = await subscribe(hub, sink, credit=100, bound=50)
    await settle()
    subscribed = next(e for e in sink.log if isinstance(e, Subscribed))
    assert (subscribed.credit, subscribed.credit_bytes) == (100, None)
    for start in range(0, 1000, 25):
        await publish(hub, range(start, start + 25))
        await settle()
    assert sink.offsets() == list(range(100))  # exactly the credit, in order
    gaps = [e for e in sink.delivered() if isinstance(e, Gap)]
    assert gaps and all(g.reason is GapReason.DROPPED for g in gaps)
    assert len(gaps) == 1  # the page learns it is behind; later drops wait, merged
    assert sub.state is State.WAITING and sub.core.in_flight == 100
    assert sub.buffer.messages == 50  # bounded: the newest wait, the rest were dropped

    sub.consumed(99)
    await settle()
    delivered = sink.delivered()
    adds_up(delivered, 1000)
    assert sink.offsets()[100:] == list(range(950, 1000))  # the newest
    assert sub.state is State.LIVE and sub.core.in_flight == 50
    assert sum(g.count or 0 for g in delivered if isinstance(g, Gap)) == 850


async def test_a_consumer_that_keeps_up_gets_everything_in_order(hub: StreamHub) -> None:
    sink = EventSink()
    sub = await subscribe(hub, sink, credit=100, bound=1000)
    await settle()
    for start in range(0, 2000, 150):  # more than the credit per turn: some wait
        await publish(hub, range(start, min(start + 150, 2000)))
        await settle()
        assert sub.core.in_flight <= 100
        while sink.offsets() and sink.offsets()[-1] > sub.core.consumed:
            sub.consumed(sink.offsets()[-1])  # the page applied what it got
            await settle()
    assert sink.offsets() == list(range(2000))
    assert not [e for e in sink.delivered() if isinstance(e, Gap)]
    assert all(len(b.messages) <= 20 for b in sink.batches())


async def test_catch_up_from_history_respects_credit(hub: StreamHub) -> None:
    await publish(hub, range(512))  # 8 x the credit
    sink = EventSink()
    sub = await subscribe(hub, sink, credit=64, since=0, bound=1000)
    await settle()
    assert sink.offsets() == list(range(64))
    assert sub.state is State.CATCHING_UP
    while len(sink.offsets()) < 512:
        before = len(sink.offsets())
        sub.consumed(sink.offsets()[-1])
        await until(lambda n=before: len(sink.offsets()) > n, what="more history after consumed")
        await settle()
        assert sub.core.in_flight <= 64
    assert sink.offsets() == list(range(512))
    await publish(hub, range(512, 522))
    await settle()
    assert sink.offsets() == list(range(512))  # still out of credit
    sub.consumed(511)
    await settle()
    assert sink.offsets() == list(range(522))
    assert not [e for e in sink.delivered() if isinstance(e, Gap)]


async def test_credit_bytes_bounds_bytes_in_flight(hub: StreamHub) -> None:
    sink = EventSink()
    sub = await subscribe(hub, sink, credit=1000, credit_bytes=2000, bound=1000)
    await settle()
    await publish(hub, range(300))
    await settle()
    got = len(sink.offsets())
    assert 0 < got < 300 and sub.state is State.WAITING
    assert sub.core.in_flight_bytes < 2000 + 200  # at most one message beyond
    sub.consumed(sink.offsets()[-1])
    await settle()
    assert len(sink.offsets()) > got


async def test_a_bounded_replay_with_credit_goes_in_credit_steps_then_ends(
    hub: StreamHub,
) -> None:
    await publish(hub, range(100))
    sink = EventSink()
    sub = await hub.subscribe(
        Client(sink), "s", since=10, until=70, policy=Policy.DROP_OLDEST, max_messages=1000,
        max_bytes=1 << 30, max_batch=20, credit=30,
    )  # fmt: skip
    assert sub is not None
    await settle()
    assert sink.offsets() == list(range(10, 40))
    assert not [e for e in sink.log if isinstance(e, End)]
    sub.consumed(39)
    # `end` is not a message: it follows the last one without waiting for credit.
    await until(lambda: any(isinstance(e, End) for e in sink.log), what="the end")
    assert sink.offsets() == list(range(10, 70))
    assert next(e for e in sink.log if isinstance(e, End)).next == 70


async def test_credit_bytes_bounds_a_history_replay_too(hub: StreamHub) -> None:
    producer = Client(FakeSink("producer"))
    for _ in range(100):
        await hub.publish(producer, Publish("s"), b'"%s"' % (b"x" * 98))  # 100-byte payloads
    sink = EventSink()
    sub = await subscribe(hub, sink, credit=1000, credit_bytes=1000, since=0, bound=1000)
    await settle()
    assert sink.offsets() == list(range(10))  # 10 x 100 bytes reach the byte credit
    while len(sink.offsets()) < 100:
        before = len(sink.offsets())
        sub.consumed(sink.offsets()[-1])
        await until(lambda n=before: len(sink.offsets()) > n, what="more history")
        await settle()
        assert len(sink.offsets()) - before <= 10
    assert sink.offsets() == list(range(100))


async def test_a_block_subscriber_out_of_credit_holds_acks_until_consumed(hub: StreamHub) -> None:
    sink = EventSink()
    sub = await subscribe(hub, sink, credit=10, policy=Policy.BLOCK, bound=20)
    await settle()
    producer = EventSink("producer")
    client = Client(producer)

    def acked() -> int:
        return sum(isinstance(e, Ack) for e in producer.log)

    for seq in range(40):
        await hub.publish(client, Publish("s", producer="p", seq=seq), b"%d" % seq)
    await settle()
    assert sink.offsets() == list(range(10))
    assert sub.state is State.BLOCKED and hub.streams["s"].held_acks
    assert acked() < 40  # the producer is held back: nothing dropped
    while len(sink.offsets()) < 40:
        sub.consumed(sink.offsets()[-1])
        await settle()
    assert sink.offsets() == list(range(40))
    await until(lambda: acked() == 40, what="every ack released")


async def test_a_disconnect_subscriber_out_of_credit_is_closed_with_1013(hub: StreamHub) -> None:
    sink = EventSink()
    await subscribe(hub, sink, credit=10, policy=Policy.DISCONNECT, bound=20)
    await settle()
    await publish(hub, range(100))
    await settle()
    assert sink.failed is not None and sink.failed[0] == 1013


async def test_other_subscribers_are_unaffected(hub: StreamHub) -> None:
    stuck, plain, batched = EventSink("stuck"), EventSink("plain"), EventSink("batched")
    await subscribe(hub, stuck, credit=10, bound=10)
    await hub.subscribe(
        Client(plain), "s", since=None, policy=Policy.DROP_OLDEST, max_messages=10_000,
        max_bytes=1 << 30,
    )  # fmt: skip
    await subscribe(hub, batched, credit=None, bound=10_000)
    await settle()
    for start in range(0, 3000, 100):
        await publish(hub, range(start, start + 100))
        await settle()
    assert plain.offsets() == batched.offsets() == list(range(3000))
    assert len(stuck.offsets()) == 10  # its credit; its own buffer dropped the rest


async def test_bogus_consumed_is_refused_and_changes_nothing(hub: StreamHub) -> None:
    sink = EventSink()
    sub = await subscribe(hub, sink, credit=10)
    await settle()
    with pytest.raises(BadRequest, match="nothing was sent"):
        sub.consumed(0)
    await publish(hub, range(30))
    await settle()
    with pytest.raises(BadRequest, match="beyond the last offset sent, 9"):
        sub.consumed(10**9)
    assert sink.offsets() == list(range(10))
    sub.consumed(9)
    await settle()
    assert sink.offsets() == list(range(20))


async def test_a_conflating_subscriber_out_of_credit_gets_the_newest_per_key(
    hub: StreamHub,
) -> None:
    sink = EventSink()
    sub = await subscribe(hub, sink, credit=5, policy=Policy.CONFLATE, bound=100)
    await settle()
    producer = Client(FakeSink("producer"))
    for i in range(60):
        await hub.publish(producer, Publish("s", key=f"k{i % 3}"), b"%d" % i)
        await settle()
    assert sink.offsets() == list(range(5))
    assert sub.buffer.messages == 3  # one per key waits
    sub.consumed(4)
    await settle()
    assert sink.offsets()[5:] == [57, 58, 59]
    delivered = sink.delivered()
    conflated = [g for g in delivered if isinstance(g, Gap)]
    assert conflated and {g.reason for g in conflated} == {GapReason.CONFLATED}
    assert 5 + sum(g.count or 0 for g in conflated) + 3 == 60


async def test_consumed_without_credit_is_refused(hub: StreamHub) -> None:
    sink = EventSink()
    sub = await subscribe(hub, sink, credit=None)
    await settle()
    await publish(hub, range(3))
    await settle()
    with pytest.raises(BadRequest, match="has no credit"):
        sub.consumed(2)
    assert sink.offsets() == [0, 1, 2]


# --- a real server, over a socket ------------------------------------------------------

TARGETS = ("standalone", "redis")


async def test_credit_over_a_websocket(connect, target) -> None:
    sub, pub, other = await connect(), await connect(), await connect()
    reply = await sub.subscribe("s-credit", max_batch=10, credit=100, max_messages=100, id=1)
    assert (reply["credit"], reply["max_batch"]) == (100, 10)
    plain = await other.subscribe("s-credit", max_batch=10)
    assert "credit" not in plain

    async def mine(**expected: Any) -> dict[str, Any] | None:
        info = await target.stream_info("s-credit")
        subs = [s for s in info["subscriptions"] if s["credit"] == 100]
        ok = subs and all(subs[0][k] == v for k, v in expected.items())
        return subs[0] if ok else None

    await pub.publish_acked("s-credit", "p", range(100))
    state = await wait_for(lambda: mine(mode="waiting"), "the credit subscriber to wait")
    assert state["in_flight"] == 100 and state["delivered"] == 100
    await pub.publish_acked("s-credit", "p", range(100, 1000))
    await wait_for(lambda: mine(dropped=800), "its buffer to drop the oldest")
    # Everything written before the info reply comes before it: exactly the credit,
    # then one gap notice (the later drops wait, merged, for the next `consumed`).
    await sub.send(type="info", stream="s-credit", id=2)
    offsets: list[int] = []
    gaps: list[dict[str, Any]] = []
    while True:
        event = await sub.recv()
        if event["type"] == "info":
            break
        if event["type"] == "gap":
            gaps.append(event)
        else:
            assert event["type"] == "batch", event
            offsets += [m["offset"] for m in event["messages"]]
    assert offsets == list(range(100))
    assert [g["reason"] for g in gaps] == ["dropped"] and gaps[0]["from"] == 100

    # The other subscriber got everything meanwhile.
    seen: list[int] = []
    while len(seen) < 1000:
        event = await other.expect("batch")
        seen += [m["offset"] for m in event["messages"]]
    assert seen == list(range(1000))

    # Bogus reports: a clear error each, and the connection stays open.
    await sub.send(type="consumed", stream="s-credit", offset=5000, id=3)
    error = await sub.expect("error")
    assert error["code"] == "bad-request" and error["ref"] == 3
    assert "beyond the last offset sent" in error["message"]
    await sub.send(type="consumed", stream="nope", offset=1, id=4)
    error = await sub.expect("error")
    assert error["code"] == "not-subscribed" and error["ref"] == 4
    await sub.send(type="consumed", stream="s-credit", offset=-1, id=5)
    error = await sub.expect("error")
    assert error["code"] == "bad-request" and "'offset' must be at least 0" in error["message"]

    # A real report: the newest arrive, and offsets and gaps add up.
    await sub.send(type="consumed", stream="s-credit", offset=99)
    while offsets[-1] < 999:
        event = await sub.recv()
        if event["type"] == "gap":
            gaps.append(event)
        else:
            assert event["type"] == "batch", event
            offsets += [m["offset"] for m in event["messages"]]
    covered = offsets[:100]
    for gap in gaps:
        covered += range(gap["from"], gap["to"])
    covered += offsets[100:]
    assert covered == list(range(1000))
    assert offsets[100:] == list(range(900, 1000))
    assert sum(g["count"] for g in gaps) == 800


@pytest.mark.parametrize(
    ("options", "mention"),
    [
        ({"credit": 10}, "'credit' needs 'max_batch'"),
        ({"max_batch": 5, "credit": 0}, "'credit' must be at least 1"),
        ({"max_batch": 5, "credit": 100_001}, "'credit' must be at most 100000"),
        ({"max_batch": 5, "credit_bytes": 1000}, "'credit_bytes' needs 'credit'"),
    ],
)
async def test_bad_credit_options_are_a_bad_request(connect, options, mention) -> None:
    await (await connect()).expect_bad_subscribe(options, mention)


async def test_a_peer_flooding_bogus_consumed_is_closed_others_are_not(connect) -> None:
    flood, calm, pub = await connect(), await connect(), await connect()
    await flood.subscribe("s-flood", max_batch=10, credit=10)
    await calm.subscribe("s-flood", max_batch=10, credit=10)
    await pub.publish_acked("s-flood", "p", range(5))
    got: list[int] = []
    while len(got) < 5:
        got += [m["offset"] for m in (await calm.expect("batch"))["messages"]]
    for i in range(101):
        await flood.send(type="consumed", stream="s-flood", offset=10**6 + i)
    errors = 0
    with pytest.raises(ConnectionClosed) as info:
        while True:
            event = await flood.recv()
            if event["type"] == "error":
                assert event["code"] == "bad-request"
                errors += 1
            else:
                assert event["type"] == "batch", event
    assert errors == 100
    assert info.value.rcvd is not None and info.value.rcvd.code == 1008
    await calm.send(type="consumed", stream="s-flood", offset=4)
    await pub.publish_acked("s-flood", "p", range(5, 10))
    while len(got) < 10:
        got += [m["offset"] for m in (await calm.expect("batch"))["messages"]]
    assert got == list(range(10))
