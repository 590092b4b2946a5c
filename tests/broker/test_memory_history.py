"""The memory broker's history costs what it counts: no collector time, no hidden bytes."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest

from nbws.broker.memory import MemoryBroker
from nbws.protocol.messages import Publish, PublishBatch, encode_value
from nbws.server.streams_endpoint import encode_payload

COUNT = 5_000


def tracked_objects() -> int:
    gc.collect()
    return len(gc.get_objects())


async def test_history_adds_no_objects_for_the_collector_to_walk() -> None:
    """10k messages of history used to be 10k named tuples that every full collection
    walked (a stall of every connection's loop turn)."""
    broker = MemoryBroker()
    await broker.create("s")
    await broker.append(Publish("s", producer="warm", seq=0), b"0")
    before = tracked_objects()
    for i in range(COUNT):
        await broker.append(Publish("s", producer="p", seq=i, key="k"), b'{"n":%d}' % i)
    await broker.append_batch(PublishBatch("s", "q", 0), [b"%d" % i for i in range(COUNT)])
    grown = tracked_objects() - before
    assert grown < 100, f"{grown} objects tracked by the collector for {2 * COUNT} messages"
    page = await broker.read("s", 1, 3)
    assert [(m.offset, m.seq, m.key) for m in page.messages] == [
        (1, 0, "k"),
        (2, 1, "k"),
        (3, 2, "k"),
    ]


@pytest.mark.parametrize("encode", [encode_payload, encode_value], ids=["server", "client"])
def test_a_kept_json_payload_allocates_about_its_length(encode: Callable[[Any], bytes]) -> None:
    """``history_max_bytes`` (server) and ``outbox_max_bytes`` (client) count payload
    lengths, so a payload kept in history or queued in an outbox must not hold a
    serialiser's oversized working buffer (orjson keeps 4 KiB for a 30-byte value)."""
    value = {"n": 1, "pad": "x" * 20}
    tracemalloc.start()
    try:
        start, _ = tracemalloc.get_traced_memory()
        kept = [encode(value) for _ in range(1000)]
        used, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    per_payload = (used - start) / len(kept)
    assert kept[0] == b'{"n":1,"pad":"xxxxxxxxxxxxxxxxxxxx"}'
    assert per_payload < 200, f"{per_payload:.0f} bytes allocated per {len(kept[0])}-byte payload"
