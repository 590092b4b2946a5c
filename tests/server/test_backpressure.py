"""Every buffer policy against a subscriber that stops reading (a raw socket with a tiny
receive buffer): its buffer stays within its bound, drops are reported as gap notices,
and a fast subscriber on the same stream gets everything."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from waiting import wait_for

# The whole suite also runs on the Redis broker: same behaviour, many processes possible.
TARGETS = ("jupyter", "standalone", "redis")

pytestmark = pytest.mark.timeout(180)

BOUND = 20  # messages in the stalled subscriber's buffer
PAYLOAD = "x" * 8000  # 3000 of these (24 MB) overflow kernel and transport buffers
COUNT = 3000


def unique() -> str:
    return f"bp-{uuid.uuid4().hex[:10]}"


async def fill(connect: Any, stream: str, count: int = COUNT, **extra: Any) -> list[dict]:
    pub = await connect()
    acks = []
    for start in range(0, count, 500):
        acks += await pub.publish_acked(
            stream, "p", range(start, min(count, start + 500)), pad=PAYLOAD, **extra
        )
    return acks


async def read_offsets(peer: Any, count: int) -> list[int]:
    """A fast subscriber: reads as messages arrive."""
    return [(await peer.expect("message", timeout=60))["offset"] for _ in range(count)]


async def subscription(target: Any, stream: str, policy: str) -> dict[str, Any]:
    info = await target.stream_info(stream)
    return next(
        s for s in info["subscriptions"] if s["policy"] == policy and s["max_messages"] == BOUND
    )


def account(messages: list[dict[str, Any]]) -> tuple[list[int], int, list[dict]]:
    offsets = [m["offset"] for m in messages if m["type"] == "message"]
    gaps = [m for m in messages if m["type"] == "gap"]
    return offsets, sum(g["count"] for g in gaps), gaps


@pytest.mark.parametrize("policy", ["drop-oldest", "drop-newest"])
async def test_drop_policies_bound_the_buffer_and_report_gaps(target, connect, stalled, policy):
    stream = unique()
    slow = await stalled()
    await slow.subscribe_and_stall(stream=stream, policy=policy, max_messages=BOUND)
    fast = await connect()
    await fast.subscribe(stream)
    reading = asyncio.ensure_future(read_offsets(fast, COUNT))
    await fill(connect, stream)
    assert await reading == list(range(COUNT))

    state = await subscription(target, stream, policy)
    assert state["queue_messages"] <= BOUND
    assert state["dropped"] > 0
    assert (await target.stream_info(stream))["drops"] == state["dropped"]

    messages = await slow.read_until(
        lambda m: m.get("offset") == COUNT - 1 or (m["type"] == "gap" and m["to"] == COUNT)
    )
    offsets, dropped, gaps = account(messages)
    assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
    assert len(offsets) + dropped == COUNT, (len(offsets), dropped)
    assert all(g["reason"] == "dropped" for g in gaps)
    # Every gap names exactly the offsets that did not arrive.
    missing = sorted(set(range(COUNT)) - set(offsets))
    named = sorted(o for g in gaps for o in range(g["from"], g["to"]))
    assert named == missing
    if policy == "drop-oldest":
        assert offsets[-1] == COUNT - 1  # the newest survives
    else:
        assert offsets[0] == 0  # the oldest survives


async def test_conflate_keeps_the_latest_per_key(target, connect, stalled):
    stream = unique()
    keys = [f"k{i}" for i in range(5)]
    slow = await stalled()
    await slow.subscribe_and_stall(stream=stream, policy="conflate", max_messages=BOUND)
    pub = await connect()
    for seq in range(COUNT):
        await pub.send(
            type="publish",
            stream=stream,
            producer="p",
            seq=seq,
            key=keys[seq % len(keys)],
            payload={"seq": seq, "pad": PAYLOAD},
        )
    for _ in range(COUNT):
        await pub.expect("ack")
    state = await subscription(target, stream, "conflate")
    assert state["queue_messages"] <= BOUND and state["conflated"] > 0
    messages = await slow.read_until(lambda m: m.get("offset") == COUNT - 1)
    offsets, skipped, gaps = account(messages)
    assert {g["reason"] for g in gaps} <= {"conflated", "dropped"}
    assert len(offsets) + skipped == COUNT
    # The final value of every key arrived.
    assert set(range(COUNT - len(keys), COUNT)) <= set(offsets)


async def test_disconnect_policy_closes_1013_and_spares_others(target, connect, stalled):
    stream = unique()
    slow = await stalled()
    await slow.subscribe_and_stall(stream=stream, policy="disconnect", max_messages=BOUND)
    fast = await connect()
    await fast.subscribe(stream)
    reading = asyncio.ensure_future(read_offsets(fast, COUNT))
    await fill(connect, stream)
    assert await reading == list(range(COUNT))
    info = await target.stream_info(stream)
    assert all(s["policy"] != "disconnect" for s in info["subscriptions"])
    messages = await slow.resume()
    close = messages[-1]
    assert close["type"] == "close" and close["code"] == 1013
    assert "too slow" in close["reason"]


async def test_block_policy_holds_acks_until_the_subscriber_catches_up(target, connect, stalled):
    """A producer that keeps at most WINDOW publishes unacked (as the reliable client
    does) is throttled by a full `block` subscriber instead of the server's memory growing."""
    stream = unique()
    slow = await stalled()
    await slow.subscribe_and_stall(stream=stream, policy="block", max_messages=BOUND)
    pub = await connect()
    total, window = COUNT, 10
    progress = {"sent": 0, "acked": 0}

    async def windowed_producer() -> None:
        while progress["acked"] < total:
            while progress["sent"] < total and progress["sent"] - progress["acked"] < window:
                seq = progress["sent"]
                await pub.send(
                    type="publish",
                    stream=stream,
                    producer="p",
                    seq=seq,
                    payload={"seq": seq, "pad": PAYLOAD},
                )
                progress["sent"] += 1
            await pub.expect("ack", timeout=60)
            progress["acked"] += 1

    producer = asyncio.ensure_future(windowed_producer())

    async def held() -> Any:
        info = await target.stream_info(stream)
        return info if info["held_acks"] > 0 and info["subscriptions"][0]["blocked"] else None

    info = await wait_for(held, "acks to be held back")
    assert not producer.done() and progress["sent"] < total
    # Full at BOUND; acks already sent let at most two windows more arrive.
    assert info["subscriptions"][0]["queue_messages"] <= BOUND + 2 * window
    # The subscriber reads again: held acks are released, the producer finishes, and the
    # subscriber got every message (block never drops).
    messages = await slow.read_until(lambda m: m.get("offset") == total - 1, timeout=60)
    await asyncio.wait_for(producer, 60)
    offsets, dropped, _ = account(messages)
    assert offsets == list(range(total)) and dropped == 0


async def test_stalled_subscriber_does_not_grow_server_memory(target, connect, stalled):
    """Many megabytes published past a stalled subscriber: its queue stays at its bound
    (the history bound caps what the stream itself keeps)."""
    stream = unique()
    code, _ = await target.rest("POST", f"nbws/api/streams/{stream}", {"max_messages": 100})
    assert code == 201
    slow = await stalled()
    await slow.subscribe_and_stall(
        stream=stream, policy="drop-oldest", max_messages=BOUND, max_bytes=64 * 1024
    )
    await fill(connect, stream, count=10_000)  # ~20 MB of payload
    state = await subscription(target, stream, "drop-oldest")
    assert state["queue_messages"] <= BOUND and state["queue_bytes"] <= 64 * 1024
    info = await target.stream_info(stream)
    assert info["history_messages"] == 100


async def test_block_subscriber_is_never_pushed_to_its_hard_cap_by_a_windowed_producer(
    target, connect, stalled
):
    """A stuck `block` subscriber (bound 1000) and a producer that keeps at most 1000
    publishes unacked: acks are released only once the message is in the subscriber's
    buffer and the buffer is below its bound, so the queue stops at bound + window and
    the subscriber is never closed with 1013 (its hard cap is 2024)."""
    stream, bound, window, total = unique(), 1000, 1000, 8000
    slow = await stalled()
    await slow.subscribe_and_stall(stream=stream, policy="block", max_messages=bound)
    pub = await connect()
    progress = {"sent": 0, "acked": 0}
    pad = "y" * 1000

    async def windowed_producer() -> None:
        while progress["acked"] < total:
            while progress["sent"] < total and progress["sent"] - progress["acked"] < window:
                seq = progress["sent"]
                await pub.send(
                    type="publish", stream=stream, producer="p", seq=seq, payload=[seq, pad]
                )
                progress["sent"] += 1
            ack = await pub.expect("ack", timeout=60)
            assert ack["seq"] == progress["acked"]
            progress["acked"] += 1

    producer = asyncio.ensure_future(windowed_producer())

    async def throttled() -> Any:
        info = await target.stream_info(stream)
        subs = [s for s in info["subscriptions"] if s["policy"] == "block"]
        assert subs, "the block subscriber was closed"
        # Stuck: every publish of the producer's window is appended and its ack held.
        stuck = progress["sent"] - progress["acked"] == window == info["held_acks"]
        return info if stuck and subs[0]["blocked"] else None

    info = await wait_for(throttled, "the producer to be throttled", timeout=90)
    assert not producer.done() and progress["sent"] < total
    (sub,) = [s for s in info["subscriptions"] if s["policy"] == "block"]
    assert sub["queue_messages"] <= bound + window, sub
    # Reading again releases the producer; every message arrives, nothing dropped.
    messages = await slow.read_until(lambda m: m.get("offset") == total - 1, timeout=90)
    await asyncio.wait_for(producer, 60)
    offsets, dropped, _ = account(messages)
    assert offsets == list(range(total)) and dropped == 0
