"""publish_batch end to end on a server: range acks, dedupe of retransmitted batches,
mixed single and batched publishes, oversize messages, the 1009 limit, block hold-back."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import orjson
import pytest
import websockets
from waiting import wait_for

from nbws.protocol.messages import (
    batch_prefix,
    encode_batch_binary,
    encode_batch_fast,
)

TARGETS = ("standalone", "redis")

pytestmark = pytest.mark.timeout(120)


def unique() -> str:
    return f"b-{uuid.uuid4().hex[:10]}"


async def send_batch(peer: Any, stream: str, producer: str, seq: int, payloads: list[Any], **kw):
    body = encode_batch_fast(
        batch_prefix(stream, producer), seq, [orjson.dumps(p) for p in payloads], **kw
    )
    await peer.ws.send(body.decode())


async def test_a_batch_is_appended_in_order_and_acked_as_one_range(connect):
    stream = unique()
    sub, pub = await connect(), await connect()
    await sub.subscribe(stream)
    await send_batch(pub, stream, "p", 0, [{"i": i} for i in range(5)], keys=["k", *[None] * 4])
    ack = await pub.expect("ack")
    assert (ack["seq"], ack["last"], ack["offset"], ack["duplicate"]) == (0, 4, 0, False)
    assert "duplicates" not in ack
    got = [await sub.expect("message") for _ in range(5)]
    assert [(m["offset"], m["seq"], m["payload"]["i"]) for m in got] == [
        (i, i, i) for i in range(5)
    ]
    assert got[0]["key"] == "k" and "key" not in got[1]


async def test_a_retransmitted_partly_acked_batch_appends_only_the_rest(connect):
    stream = unique()
    pub = await connect()
    await send_batch(pub, stream, "p", 0, ["a", "b"])
    assert (await pub.expect("ack"))["last"] == 1
    await send_batch(pub, stream, "p", 0, ["a", "b", "c", "d"])  # cut differently
    ack = await pub.expect("ack")
    assert (ack["seq"], ack["last"], ack["offset"]) == (0, 3, 2)
    assert ack["duplicates"] == {"0": 0, "1": 1}
    await send_batch(pub, stream, "p", 2, ["c", "d"])  # all duplicates
    ack = await pub.expect("ack")
    assert (ack["offset"], ack["duplicate"], ack["duplicates"]) == (None, True, {"2": 2, "3": 3})
    sub = await connect()
    await sub.subscribe(stream, since=0, until=4)
    got = [await sub.expect("message") for _ in range(4)]
    assert [m["payload"] for m in got] == ["a", "b", "c", "d"]


async def test_single_and_batched_publishes_mix_on_one_stream(connect):
    stream = unique()
    old, new = await connect(), await connect()
    await old.publish_acked(stream, "old", range(2))
    await send_batch(new, stream, "new", 0, [1, 2, 3])
    assert (await new.expect("ack"))["offset"] == 2
    # the same producer may mix too: a single retransmit of a batched seq is a duplicate
    await new.send(type="publish", stream=stream, producer="new", seq=1, payload=2)
    ack = await new.expect("ack")
    assert (ack["offset"], ack["duplicate"]) == (3, True) and "last" not in ack
    await old.publish_acked(stream, "old", range(2, 3))
    sub = await connect()
    await sub.subscribe(stream, since=0, until=6)
    got = [await sub.expect("message") for _ in range(6)]
    assert [(m["producer"], m["seq"]) for m in got] == [
        ("old", 0),
        ("old", 1),
        ("new", 0),
        ("new", 1),
        ("new", 2),
        ("old", 2),
    ]


async def test_binary_batch(connect):
    stream = unique()
    sub, pub = await connect(), await connect()
    await sub.subscribe(stream)
    await pub.ws.send(
        encode_batch_binary(stream, "p", 7, [b"\x00\x01", b"", b"xyz"], content_type="x/y")
    )
    ack = await pub.expect("ack")
    assert (ack["seq"], ack["last"], ack["offset"]) == (7, 9, 0)
    got = [await sub.expect("message") for _ in range(3)]
    assert [m["payload_bytes"] for m in got] == [b"\x00\x01", b"", b"xyz"]
    assert {m["content_type"] for m in got} == {"x/y"}


async def test_one_oversize_message_is_nacked_and_the_rest_appended(connect, target):
    stream = unique()
    status, _ = await target.rest(
        "POST", f"nbws/api/streams/{stream}", {"max_messages": 100, "max_bytes": 10}
    )
    assert status in (200, 201)
    pub = await connect()
    await send_batch(pub, stream, "p", 0, ["a", "x" * 20, "b", "c"])
    replies = [await pub.recv() for _ in range(3)]
    kinds = {r["type"]: r for r in replies}
    by_seq = sorted(replies, key=lambda r: r["seq"])
    assert [r["type"] for r in by_seq] == ["ack", "nack", "ack"]
    assert (by_seq[0]["seq"], by_seq[0]["last"], by_seq[0]["offset"]) == (0, 0, 0)
    assert (by_seq[1]["seq"], by_seq[1]["last"], by_seq[1]["code"]) == (1, 1, "oversize")
    assert by_seq[1]["retry"] is False and "nack" in kinds
    assert (by_seq[2]["seq"], by_seq[2]["last"], by_seq[2]["offset"]) == (2, 3, 1)


async def test_a_malformed_batch_is_nacked_for_its_whole_range(connect):
    pub = await connect()
    await pub.send(
        type="publish_batch", stream=unique(), producer="p", seq=5, payloads=[1, 2], keys=[1, 2]
    )
    nack = await pub.expect("nack")
    assert (nack["seq"], nack["last"], nack["code"]) == (5, 6, "bad-request")
    assert "keys" in nack["reason"]


async def test_a_batch_without_payloads_is_an_error(connect):
    pub = await connect()
    await pub.send(type="publish_batch", stream=unique(), producer="p", seq=5, id=9)
    error = await pub.expect("error")
    assert error["code"] == "bad-request" and error["ref"] == 9


@pytest.mark.parametrize("server_options", [{"max_message_size": 64 * 1024}])
async def test_a_batch_over_max_message_size_closes_with_1009(connect):
    pub = await connect()
    await send_batch(pub, unique(), "p", 0, ["x" * 1000] * 100)
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await pub.recv(timeout=30)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


async def test_batch_acks_are_held_for_a_full_block_subscriber(target, connect, stalled):
    """A producer keeping two batches unacked is throttled by a full `block` subscriber,
    as single publishes are; every message arrives once it reads again."""
    stream = unique()
    slow = await stalled()
    await slow.subscribe_and_stall(stream=stream, policy="block", max_messages=20)
    pub = await connect()
    batches, size, pad = 150, 20, "x" * 8000  # 24 MB: more than the socket buffers hold
    progress = {"sent": 0, "acked": 0}

    async def producer() -> None:
        while progress["acked"] < batches:
            while progress["sent"] < batches and progress["sent"] - progress["acked"] < 2:
                first = progress["sent"] * size
                await send_batch(pub, stream, "p", first, [{"pad": pad}] * size)
                progress["sent"] += 1
            ack = await pub.expect("ack", timeout=60)
            assert ack["last"] - ack["seq"] == size - 1
            progress["acked"] += 1

    task = asyncio.ensure_future(producer())

    async def held() -> Any:
        info = await target.stream_info(stream)
        return info if info["held_acks"] > 0 and info["subscriptions"][0]["blocked"] else None

    info = await wait_for(held, "acks to be held back")
    assert not task.done() and progress["sent"] < batches
    assert info["subscriptions"][0]["queue_messages"] <= 20 + 3 * size
    total = batches * size
    messages = await slow.read_until(lambda m: m.get("offset") == total - 1, timeout=60)
    await asyncio.wait_for(task, 60)
    offsets = [m["offset"] for m in messages if m["type"] == "message"]
    assert offsets == list(range(total))
