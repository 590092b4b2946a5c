"""StreamHub over a fake Sink and the memory broker: no socket, every frame observable."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from conftest import make_config

from nbws.broker import MemoryBroker
from nbws.errors import close_for
from nbws.protocol.messages import Event, Policy, Publish, encode
from nbws.server.hub import Client, StreamHub
from nbws.server.subscriber import State

pytestmark = pytest.mark.timeout(60)


class FakeSink:
    """Records what the hub writes; ``writable`` is switched by the test."""

    def __init__(self, name: str = "c") -> None:
        self.id = name
        self.remote = "test"
        self.write_high_water = 1 << 16
        self.open = True
        self.writable = True
        self.frames: list[bytes] = []
        self.events: list[dict[str, Any]] = []
        self.failed: tuple[int, str] | None = None
        self._callbacks: list[Callable[[], None]] = []

    def send_encoded(self, data: bytes) -> bool:
        self.frames.append(data)
        return True

    def send_event(self, event: Event) -> None:
        self.events.append(orjson.loads(encode(event).data))

    def when_writable(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)

    async def wait_writable(self) -> bool:
        if not self.writable:
            drained = asyncio.Event()
            self._callbacks.append(drained.set)
            await drained.wait()
        return True

    def fail_with(self, exc: BaseException) -> None:
        self.failed = close_for(exc)
        self.open = False

    def drain(self) -> None:
        """The peer read everything: writable again."""
        self.writable = True
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    def messages(self) -> list[dict[str, Any]]:
        """Every JSON message written, in order (frames split by their headers)."""
        out = list(self.events)
        for data in self.frames:
            view = memoryview(data)
            while view:
                length = view[1] & 0x7F
                start = 2
                if length == 126:
                    length, start = int.from_bytes(view[2:4], "big"), 4
                elif length == 127:
                    length, start = int.from_bytes(view[2:10], "big"), 10
                out.append(orjson.loads(bytes(view[start : start + length])))
                view = view[start + length :]
        return out

    def acks(self) -> list[int]:
        return [m["seq"] for m in self.messages() if m["type"] == "ack"]


async def settle() -> None:
    """Let call_soon flushes and catch-up tasks run."""
    for _ in range(20):
        await asyncio.sleep(0)


@pytest.fixture
def hub() -> StreamHub:
    return StreamHub(MemoryBroker(), make_config())


async def subscribe(hub: StreamHub, sink: FakeSink, policy: Policy, bound: int) -> Any:
    client = Client(sink)
    sub = await hub.subscribe(
        client, "s", since=None, policy=policy, max_messages=bound, max_bytes=1 << 30
    )
    await settle()
    assert sub is not None and sub.state is State.LIVE
    return sub


async def test_block_ack_waits_for_the_buffer_and_room(hub: StreamHub) -> None:
    slow = FakeSink("slow")
    sub = await subscribe(hub, slow, Policy.BLOCK, bound=10)
    slow.writable = False  # stuck
    producer_sink = FakeSink("producer")
    producer = Client(producer_sink)
    window, acked, sent = 5, 0, 0
    for _ in range(200):  # a producer that keeps at most `window` unacked
        while sent - acked < window:
            await hub.publish(producer, Publish("s", producer="p", seq=sent), b"1")
            sent += 1
        await settle()
        acks = producer_sink.acks()
        if len(acks) == acked:
            break  # stalled: no ack came back
        acked = len(acks)
    assert sub.state is State.BLOCKED
    assert sub.buffer.messages <= 10 + window
    assert sent - acked == window and len(hub.streams["s"].held_acks) == window
    slow.drain()
    await settle()
    assert producer_sink.acks() == list(range(sent))  # released, in order
    assert [m["offset"] for m in slow.messages() if m["type"] == "message"] == list(range(sent))


async def test_ack_is_sent_at_once_without_block_subscribers(hub: StreamHub) -> None:
    slow = FakeSink("slow")
    await subscribe(hub, slow, Policy.DROP_OLDEST, bound=2)
    slow.writable = False
    producer_sink = FakeSink("producer")
    producer = Client(producer_sink)
    for seq in range(10):
        await hub.publish(producer, Publish("s", producer="p", seq=seq), b"1")
    assert producer_sink.acks() == list(range(10))  # not even a loop turn later
    await settle()
    slow.drain()
    await settle()
    messages = slow.messages()
    gaps = [m for m in messages if m["type"] == "gap"]
    assert [(g["from"], g["to"], g["count"], g["reason"]) for g in gaps] == [(0, 8, 8, "dropped")]
    assert [m["offset"] for m in messages if m["type"] == "message"] == [8, 9]


async def test_disconnect_policy_fails_the_connection_with_1013(hub: StreamHub) -> None:
    slow = FakeSink("slow")
    await subscribe(hub, slow, Policy.DISCONNECT, bound=3)
    slow.writable = False
    producer = Client(FakeSink("producer"))
    for seq in range(5):
        await hub.publish(producer, Publish("s", producer="p", seq=seq), b"1")
    await settle()
    assert slow.failed is not None and slow.failed[0] == 1013 and "too slow" in slow.failed[1]
    assert not hub.streams["s"].subscribers


async def test_a_closed_block_subscriber_releases_the_acks_it_held(hub: StreamHub) -> None:
    slow = FakeSink("slow")
    sub = await subscribe(hub, slow, Policy.BLOCK, bound=1)
    slow.writable = False
    producer_sink = FakeSink("producer")
    producer = Client(producer_sink)
    for seq in range(4):
        await hub.publish(producer, Publish("s", producer="p", seq=seq), b"1")
    await settle()
    # One loop turn: 0 fits, 1 fills the buffer past its bound before any ack went out.
    assert producer_sink.acks() == [] and sub.state is State.BLOCKED
    hub.unsubscribe(sub)
    assert producer_sink.acks() == [0, 1, 2, 3]


async def test_falling_behind_replays_after_what_was_buffered(hub: StreamHub) -> None:
    """A live message ahead of the cursor (the broker's listener missed some): the
    subscriber replays the missed ones from history, after the messages it had queued,
    with no gap and no duplicate."""
    slow = FakeSink("slow")
    sub = await subscribe(hub, slow, Policy.DROP_OLDEST, bound=100)
    slow.writable = False
    broker = hub.broker
    for i in range(5):
        await broker.append(Publish("s"), b"%d" % i)
    await settle()
    assert sub.buffer.messages == 5
    listener = hub._listeners["s"]
    broker.unlisten("s", listener)  # the listener misses 5 and 6
    for i in range(5, 7):
        await broker.append(Publish("s"), b"%d" % i)
    broker.listen("s", listener)
    await broker.append(Publish("s"), b"7")
    await settle()
    assert sub.state is State.CATCHING_UP
    slow.drain()
    for _ in range(5):
        await settle()
    offsets = [m["offset"] for m in slow.messages() if m["type"] == "message"]
    assert offsets == list(range(8)) and sub.state is State.LIVE
