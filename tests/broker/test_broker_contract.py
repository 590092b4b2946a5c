"""The broker contract, one suite for both backends.

Every test runs against the in-memory broker and against the Redis broker on a real
`redis-server`. ``peer`` is a second broker on the same store: for Redis another
instance (as another server process would have), for memory the same object, so what
one process appends the other reads, listens to and deduplicates.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, fields
from typing import Any

import pytest
from broker_support import Collector, memory_broker, redis_broker, started, unique_prefix

from nbws.broker import (
    Broker,
    HistoryLimits,
    PayloadTooLarge,
    StoredMessage,
    UnknownStream,
)
from nbws.protocol.messages import Message, Publish, PublishBatch, decode_event, encode_delivery

LIMITS = HistoryLimits(max_messages=1000, max_bytes=1 << 20, max_age=0.0)
WINDOW = 8


@dataclass
class Pair:
    kind: str
    broker: Broker
    peer: Broker


@pytest.fixture(params=["memory", "redis"])
async def pair(request: pytest.FixtureRequest) -> AsyncIterator[Pair]:
    if request.param == "memory":
        broker = memory_broker(LIMITS, WINDOW)
        async with started(broker):
            yield Pair("memory", broker, broker)
        return
    url = request.getfixturevalue("redis_server").url
    prefix = unique_prefix()
    broker = redis_broker(url, prefix, default_limits=LIMITS, dedupe_window=WINDOW)
    peer = redis_broker(url, prefix, default_limits=LIMITS, dedupe_window=WINDOW)
    async with started(broker, peer):
        yield Pair("redis", broker, peer)


async def append_json(broker: Broker, stream: str, n: int, **kw: Any) -> list[int]:
    offsets = []
    for i in range(n):
        result = await broker.append(Publish(stream, **kw), b'{"i":%d}' % i)
        assert result.offset is not None
        offsets.append(result.offset)
    return offsets


async def test_create_and_info(pair: Pair) -> None:
    info = await pair.broker.create("s")
    assert (info.name, info.first, info.next, info.history_messages) == ("s", 0, 0, 0)
    assert info.limits == LIMITS
    other = await pair.peer.info("s")
    assert other is not None and other.epoch == info.epoch
    custom = HistoryLimits(max_messages=5, max_bytes=100, max_age=2.5)
    again = await pair.peer.create("s", custom)
    assert again.epoch == info.epoch and again.limits == custom
    assert [s.name for s in await pair.broker.streams()] == ["s"]


async def test_unknown_streams(pair: Pair) -> None:
    assert await pair.broker.info("nope") is None
    with pytest.raises(UnknownStream):
        await pair.broker.append(Publish("nope"), b"1", create=False)
    with pytest.raises(UnknownStream):
        await pair.broker.read("nope", 0, 10)
    assert not await pair.broker.delete("nope")
    assert await pair.broker.streams() == []


async def test_offsets_are_gap_free_and_shared(pair: Pair) -> None:
    first = await append_json(pair.broker, "s", 3)
    second = await append_json(pair.peer, "s", 3)
    assert first + second == [0, 1, 2, 3, 4, 5]
    page = await pair.peer.read("s", 0, 100)
    assert [m.offset for m in page.messages] == list(range(6))
    assert [m.payload for m in page.messages] == [b'{"i":%d}' % (i % 3) for i in range(6)]
    assert (page.first, page.next) == (0, 6)


async def test_concurrent_appends_get_distinct_offsets(pair: Pair) -> None:
    results = await asyncio.gather(
        *(b.append(Publish("s"), b"%d" % i) for i in range(200) for b in (pair.broker, pair.peer))
    )
    assert sorted(r.offset for r in results) == list(range(400))  # type: ignore[type-var]


async def test_read_pages_and_bounds(pair: Pair) -> None:
    await append_json(pair.broker, "s", 10)
    page = await pair.broker.read("s", 4, 3)
    assert [m.offset for m in page.messages] == [4, 5, 6]
    assert (await pair.broker.read("s", 10, 5)).messages == []
    assert (await pair.broker.read("s", 99, 5)).messages == []
    assert (await pair.broker.read("s", 0, 0)).messages == []


async def test_message_fields_round_trip(pair: Pair) -> None:
    before = time.time()
    result = await pair.broker.append(
        Publish("s", binary=True, producer="p1", seq=7, key="k", content_type="x/y"), b"\x00\xffraw"
    )
    plain = await pair.broker.append(Publish("s"), b'"text"')
    assert result.message is not None and plain.message is not None
    page = await pair.peer.read("s", 0, 10)
    assert page.messages == [result.message, plain.message]
    stored = page.messages[0]
    assert stored.payload == b"\x00\xffraw" and stored.binary
    assert (stored.producer, stored.seq, stored.key, stored.content_type) == ("p1", 7, "k", "x/y")
    assert before - 1 <= stored.time <= time.time() + 1
    assert page.messages[1][3:] == (False, None, None, None, None)


# The fields a publish and its delivery share: named once, in the Publish dataclass.
CARRIED = [f.name for f in fields(Publish) if f.name in {g.name for g in fields(Message)}]

PUBLISHES = [
    (Publish("s", {"a": [1, 2]}), b'{"a":[1,2]}'),
    (Publish("s", {"a": 1}, producer="p", seq=3, key="k"), b'{"a":1}'),
    (Publish("s", b"\x00raw", "p", 4, "k", "x/y", binary=True), b"\x00raw"),
    (Publish("s", b"", binary=True), b""),
]


def delivered(epoch: str, stored: StoredMessage) -> Message:
    """What a subscriber decodes from the delivery the hub encodes of ``stored``."""
    data, text = encode_delivery("s", epoch, stored)
    message = decode_event(data, text=text)
    assert isinstance(message, Message)
    return message


@pytest.mark.parametrize(("request_", "body"), PUBLISHES)
async def test_a_publish_reaches_its_delivery_field_for_field(
    pair: Pair, request_: Publish, body: bytes
) -> None:
    """The decoded request travels whole (hub → broker → delivery encoder): every field it
    shares with a delivered ``message`` comes out as it went in, through either broker
    and another process's read."""
    assert set(CARRIED) == {"stream", "payload", "producer", "seq", "key", "content_type", "binary"}
    result = await pair.broker.append(request_, body)
    [stored] = (await pair.peer.read("s", 0, 10)).messages
    assert stored == result.message
    out = delivered(result.epoch, stored)
    assert {n: getattr(out, n) for n in CARRIED} == {n: getattr(request_, n) for n in CARRIED}
    assert (out.offset, out.epoch) == (0, result.epoch)


async def test_a_batch_reaches_its_deliveries_field_for_field(pair: Pair) -> None:
    bodies = [b"\x01", b"\x02"]
    batch = PublishBatch("s", "p", 5, bodies, ["k", None], content_type="a/b", binary=True)
    epoch = (await pair.broker.append_batch(batch, bodies)).epoch
    page = (await pair.peer.read("s", 0, 10)).messages
    assert [m.offset for m in page] == [0, 1]
    assert [
        (d.stream, d.payload, d.producer, d.seq, d.key, d.content_type, d.binary)
        for d in (delivered(epoch, m) for m in page)
    ] == [("s", b"\x01", "p", 5, "k", "a/b", True), ("s", b"\x02", "p", 6, None, "a/b", True)]


async def test_duplicates_are_suppressed_across_peers(pair: Pair) -> None:
    a = await pair.broker.append(Publish("s", producer="p", seq=1), b"1")
    b = await pair.peer.append(Publish("s", producer="p", seq=1), b"1")  # a retransmit elsewhere
    assert (a.offset, a.duplicate) == (0, False)
    assert (b.offset, b.duplicate, b.epoch) == (0, True, a.epoch)
    c = await pair.peer.append(Publish("s", producer="other", seq=1), b"1")
    assert (c.offset, c.duplicate) == (1, False)
    page = await pair.broker.read("s", 0, 10)
    assert [m.producer for m in page.messages] == ["p", "other"]


async def test_dedupe_window_forgets_oldest_but_still_refuses_them(pair: Pair) -> None:
    for seq in range(WINDOW + 4):
        await pair.broker.append(Publish("s", producer="p", seq=seq), b"x")
    remembered = await pair.peer.append(Publish("s", producer="p", seq=WINDOW + 3), b"x")
    assert remembered.duplicate and remembered.offset == WINDOW + 3
    forgotten = await pair.peer.append(Publish("s", producer="p", seq=0), b"x")
    assert forgotten.duplicate and forgotten.offset is None
    assert (await pair.broker.info("s")).next == WINDOW + 4  # type: ignore[union-attr]


async def test_seq_below_the_oldest_remembered_counts_as_appended(pair: Pair) -> None:
    """A producer whose window starts at seq 10 (it numbered from there, or the server
    forgot the earlier ones): a late seq 3 is a duplicate with an unknown offset, as the
    protocol promises, on both brokers."""
    for seq in range(10, 14):
        await pair.broker.append(Publish("s", producer="p", seq=seq), b"x")
    late = await pair.peer.append(Publish("s", producer="p", seq=3), b"x")
    assert late.duplicate and late.offset is None
    oldest = await pair.peer.append(Publish("s", producer="p", seq=10), b"x")
    assert oldest.duplicate and oldest.offset == 0
    fresh = await pair.peer.append(Publish("s", producer="p", seq=14), b"x")
    assert not fresh.duplicate and fresh.offset == 4
    other = await pair.peer.append(
        Publish("s", producer="q", seq=3), b"x"
    )  # windows are per producer
    assert not other.duplicate
    assert (await pair.broker.info("s")).next == 6  # type: ignore[union-attr]


async def test_stream_count_is_the_number_of_streams(pair: Pair) -> None:
    assert await pair.broker.stream_count() == 0
    for name in ("a", "b", "c"):
        await pair.broker.create(name)
    await pair.peer.append(Publish("d"), b"1")
    assert await pair.peer.stream_count() == 4
    assert await pair.broker.delete("b")
    assert await pair.broker.stream_count() == 3
    assert await pair.peer.stream_count() == len(await pair.peer.streams())


async def test_history_bound_by_messages(pair: Pair) -> None:
    await pair.broker.create("s", HistoryLimits(max_messages=5, max_bytes=0))
    await append_json(pair.broker, "s", 12)
    page = await pair.peer.read("s", 0, 100)
    assert [m.offset for m in page.messages] == [7, 8, 9, 10, 11]
    assert (page.first, page.next) == (7, 12)
    info = await pair.peer.info("s")
    assert info is not None and info.history_messages == 5


async def test_history_bound_by_bytes(pair: Pair) -> None:
    await pair.broker.create("s", HistoryLimits(max_messages=100, max_bytes=100))
    for i in range(10):
        await pair.broker.append(Publish("s"), bytes([65 + i]) * 30)
    page = await pair.peer.read("s", 0, 100)
    assert [m.offset for m in page.messages] == [7, 8, 9]  # 90 bytes fit, 120 do not
    info = await pair.broker.info("s")
    assert info is not None and info.history_bytes == 90 and info.first == 7
    with pytest.raises(PayloadTooLarge):
        await pair.peer.append(Publish("s"), b"x" * 101)
    assert (await pair.broker.info("s")).next == 10  # type: ignore[union-attr]


async def test_history_bound_by_age(pair: Pair) -> None:
    await pair.broker.create("s", HistoryLimits(max_messages=100, max_bytes=0, max_age=0.3))
    await append_json(pair.broker, "s", 3)
    assert len((await pair.peer.read("s", 0, 10)).messages) == 3
    await asyncio.sleep(0.4)  # the behaviour under test is the passing of time
    await pair.broker.append(Publish("s"), b"new")
    page = await pair.peer.read("s", 0, 10)
    assert [m.payload for m in page.messages] == [b"new"] and page.first == 3


async def test_shrinking_limits_trims_at_once(pair: Pair) -> None:
    await append_json(pair.broker, "s", 20)
    info = await pair.peer.create("s", HistoryLimits(max_messages=4, max_bytes=0))
    assert (info.first, info.next, info.history_messages) == (16, 20, 4)


async def test_delete_starts_a_new_epoch(pair: Pair) -> None:
    await append_json(pair.broker, "s", 5)
    old = await pair.broker.info("s")
    assert await pair.peer.delete("s")
    assert await pair.broker.info("s") is None
    assert await pair.broker.streams() == []
    again = await pair.broker.append(Publish("s", producer="p", seq=0), b"1")
    assert again.offset == 0 and not again.duplicate  # the dedupe window went too
    assert old is not None and again.epoch != old.epoch
    page = await pair.peer.read("s", 0, 10)
    assert [m.payload for m in page.messages] == [b"1"] and page.epoch == again.epoch


async def test_listeners_get_every_append_in_order(pair: Pair) -> None:
    await pair.broker.create("s")
    here, there = Collector(), Collector()
    pair.broker.listen("s", here)
    pair.peer.listen("s", there)
    if pair.kind == "redis":
        await pair.broker.append(Publish("warm"), b"x")  # the readers are running
    results = await asyncio.gather(
        *(b.append(Publish("s"), b"%d" % i) for i in range(100) for b in (pair.broker, pair.peer))
    )
    await here.wait_for(200)
    await there.wait_for(200)
    assert here.offsets == list(range(200)) == there.offsets
    assert {e for e, _ in here.items} == {results[0].epoch}
    by_offset = {r.offset: r.message for r in results}
    assert [m for _, m in here.items] == [by_offset[o] for o in range(200)]


async def test_listener_sees_new_epoch_after_delete(pair: Pair) -> None:
    got = Collector()
    pair.broker.listen("s", got)
    first = await pair.peer.append(Publish("s"), b"a")
    await got.wait_for(1)
    await pair.peer.delete("s")
    second = await pair.peer.append(Publish("s"), b"b")
    await got.wait_for(2)
    assert [(e, m.offset, m.payload) for e, m in got.items] == [
        (first.epoch, 0, b"a"),
        (second.epoch, 0, b"b"),
    ]


async def test_unlisten_stops_delivery(pair: Pair) -> None:
    stopped, kept = Collector(), Collector()
    pair.broker.listen("s", stopped)
    pair.broker.listen("s", kept)
    await pair.peer.append(Publish("s"), b"1")
    await stopped.wait_for(1)
    await kept.wait_for(1)
    pair.broker.unlisten("s", stopped)
    await pair.peer.append(Publish("s"), b"2")
    await kept.wait_for(2)
    assert stopped.offsets == [0] and kept.offsets == [0, 1]


async def test_healthy_while_the_store_is_up(pair: Pair) -> None:
    await pair.broker.append(Publish("s"), b"1")
    assert pair.broker.healthy and pair.peer.healthy


# --- append_batch ------------------------------------------------------------------------


async def test_append_batch_gets_consecutive_offsets_and_listeners_see_each(pair: Pair) -> None:
    seen = Collector()
    await pair.broker.create("s")
    pair.peer.listen("s", seen)
    await pair.broker.append(Publish("s", producer="other", seq=0), b"0")
    outcome = await pair.broker.append_batch(
        PublishBatch("s", "p", 10, keys=["a", None, "c"]), [b"1", b"2", b"3"]
    )
    # All appended: said as one first offset, no per-message results.
    assert (outcome.first, outcome.count, outcome.results) == (1, 3, None)
    results = outcome.per_message()
    assert [(r.offset, r.duplicate) for r in results] == [(1, False), (2, False), (3, False)]
    page = await pair.peer.read("s", 1, 10)
    assert [(m.payload, m.producer, m.seq, m.key) for m in page.messages] == [
        (b"1", "p", 10, "a"),
        (b"2", "p", 11, None),
        (b"3", "p", 12, "c"),
    ]
    await seen.wait_for(4)
    assert seen.offsets == [0, 1, 2, 3]


async def test_append_batch_binary_with_content_type(pair: Pair) -> None:
    await pair.broker.append_batch(
        PublishBatch("s", "p", 0, binary=True, content_type="x/y"), [b"\x00\xff", b""]
    )
    page = await pair.peer.read("s", 0, 10)
    assert [(m.payload, m.binary, m.content_type) for m in page.messages] == [
        (b"\x00\xff", True, "x/y"),
        (b"", True, "x/y"),
    ]


async def test_append_batch_suppresses_duplicates_of_a_partly_appended_batch(pair: Pair) -> None:
    """A retransmitted batch whose first half was appended (elsewhere): only the rest is
    appended, the duplicates get their original offsets."""
    first = (await pair.broker.append_batch(PublishBatch("s", "p", 0), [b"a", b"b"])).per_message()
    outcome = await pair.peer.append_batch(PublishBatch("s", "p", 0), [b"a", b"b", b"c", b"d"])
    assert outcome.first is None  # not all appended: per-message results
    again = outcome.per_message()
    assert [r.offset for r in first] == [0, 1]
    assert [(r.offset, r.duplicate) for r in again] == [
        (0, True),
        (1, True),
        (2, False),
        (3, False),
    ]
    single = await pair.peer.append(Publish("s", producer="p", seq=2), b"c")  # old-style retransmit
    assert (single.offset, single.duplicate) == (2, True)
    assert (await pair.broker.info("s")).next == 4  # type: ignore[union-attr]


async def test_append_batch_dedupe_window_matches_single_appends(pair: Pair) -> None:
    await pair.broker.append_batch(PublishBatch("s", "p", 0), [b"x"] * (WINDOW + 4))
    remembered = await pair.peer.append(Publish("s", producer="p", seq=WINDOW + 3), b"x")
    assert remembered.duplicate and remembered.offset == WINDOW + 3
    forgotten = (
        await pair.peer.append_batch(PublishBatch("s", "p", 0), [b"x", b"x"])
    ).per_message()
    assert [(r.offset, r.duplicate) for r in forgotten] == [(None, True), (None, True)]
    assert (await pair.broker.info("s")).next == WINDOW + 4  # type: ignore[union-attr]


async def test_a_batch_longer_than_the_dedupe_window(pair: Pair) -> None:
    """Its first seqs are forgotten at once (count as appended, offset unknown); its
    last ``WINDOW`` seqs are remembered with their offsets."""
    count = WINDOW * 2 + 3
    outcome = await pair.broker.append_batch(PublishBatch("s", "p", 0), [b"x"] * count)
    assert outcome.first == 0
    early = await pair.peer.append(Publish("s", producer="p", seq=5), b"x")
    late = await pair.peer.append(Publish("s", producer="p", seq=count - WINDOW), b"x")
    assert (early.duplicate, early.offset) == (True, None)
    assert (late.duplicate, late.offset) == (True, count - WINDOW)
    assert (await pair.broker.info("s")).next == count  # type: ignore[union-attr]


async def test_append_batch_refuses_only_the_oversize_message(pair: Pair) -> None:
    await pair.broker.create("small", HistoryLimits(max_messages=100, max_bytes=10))
    results = (
        await pair.broker.append_batch(PublishBatch("small", "p", 0), [b"ok", b"x" * 11, b"ok2"])
    ).per_message()
    assert isinstance(results[1], PayloadTooLarge)
    assert "11" in str(results[1]) and "10" in str(results[1])
    assert [(r.offset, r.duplicate) for r in (results[0], results[2])] == [(0, False), (1, False)]
    page = await pair.peer.read("small", 0, 10)
    assert [(m.payload, m.seq) for m in page.messages] == [(b"ok", 0), (b"ok2", 2)]


async def test_append_batch_unknown_stream(pair: Pair) -> None:
    with pytest.raises(UnknownStream):
        await pair.broker.append_batch(PublishBatch("nope", "p", 0), [b"1"], create=False)


async def test_append_batch_history_bound_by_messages(pair: Pair) -> None:
    await pair.broker.create("b", HistoryLimits(max_messages=3, max_bytes=0))
    await pair.broker.append_batch(PublishBatch("b", "p", 0), [b"%d" % i for i in range(5)])
    page = await pair.peer.read("b", 0, 10)
    assert (page.first, page.next) == (2, 5)
    assert [m.payload for m in page.messages] == [b"2", b"3", b"4"]


async def test_single_and_batch_appends_in_flight_together_keep_call_order(pair: Pair) -> None:
    """On Redis the two scripts may go out in one round trip, when Redis holds one of
    them and not the other (it lost its scripts, then a single append loaded its own):
    neither may overtake the other."""
    if pair.kind == "redis":
        await pair.broker._client.script_flush()  # type: ignore[attr-defined]
    await pair.broker.append(Publish("s", producer="p", seq=0), b"a")
    await asyncio.gather(
        pair.broker.append_batch(PublishBatch("s", "p", 1), [b"b", b"c"]),
        pair.broker.append(Publish("s", producer="p", seq=3), b"d"),
        pair.broker.append_batch(PublishBatch("s", "p", 4), [b"e"]),
    )
    page = await pair.peer.read("s", 0, 10)
    assert [(m.offset, m.seq, m.payload) for m in page.messages] == [
        (0, 0, b"a"),
        (1, 1, b"b"),
        (2, 2, b"c"),
        (3, 3, b"d"),
        (4, 4, b"e"),
    ]


async def test_a_batch_after_a_late_gap_fill_is_not_taken_as_new(pair: Pair) -> None:
    """Seqs 3 and 10, then 5 (a retransmit filling the gap), then a batch 6..11: 10 is
    a duplicate. The batch fast path checks "above the highest seq", not "above the
    last appended"."""
    await pair.broker.append(Publish("s", producer="p", seq=3), b"3")
    await pair.broker.append(Publish("s", producer="p", seq=10), b"10")
    await pair.peer.append(Publish("s", producer="p", seq=5), b"5")
    outcome = await pair.broker.append_batch(
        PublishBatch("s", "p", 6), [b"6", b"7", b"8", b"9", b"10", b"11"]
    )
    results = outcome.per_message()
    assert [r.duplicate for r in results] == [False, False, False, False, True, False]
    page = await pair.peer.read("s", 0, 20)
    assert [m.payload for m in page.messages] == [b"3", b"10", b"5", b"6", b"7", b"8", b"9", b"11"]
