"""Chaos: connections killed at random moments lose nothing and duplicate nothing.

A proxy (tests/client/chaos.py) sits between the publishing client and `nbws serve`, and
another between the server and a subscriber. They reset connections mid-frame, inside
fragmented messages and between a publish and its ack. 100k publishes (with fragmented
binary ones among them) must reach the subscriber exactly once, in order per producer,
with no gap notice; the client's stats must show the reconnects and retransmits that
made it so. A second proxy kills every connection within 1.5 s or 400 KB: with default
options, 50k publishes must still all be acked exactly once and in order.
"""

from __future__ import annotations

import time

from chaos import ChaosProxy, FrameTracker
from client_support import http_url, name, serving

import nbws
from nbws.client import Gap, Message

N = 100_000
BINARY_EVERY = 1_000
BINARY = bytes(range(256)) * 80  # 20 KiB, sent as 10 fragments of 2 KiB


def test_frame_tracker_finds_the_inside_of_fragmented_messages() -> None:
    from websockets.client import ClientProtocol
    from websockets.protocol import State
    from websockets.uri import parse_uri

    proto = ClientProtocol(parse_uri("ws://x/"))
    proto.state = State.OPEN
    proto.send_text(b"hello")
    before = b"".join(proto.data_to_send())
    proto.send_binary(b"a" * 300, fin=False)
    proto.send_ping(b"p")  # control frames may sit between fragments
    proto.send_continuation(b"b" * 70_000, fin=False)
    proto.send_continuation(b"", fin=True)
    fragmented = b"".join(proto.data_to_send())
    proto.send_text(b"x" * 10)
    data = b"GET / HTTP/1.1\r\n\r\n" + before + fragmented + b"".join(proto.data_to_send())
    start = len(data) - len(fragmented) - 16
    tracker, cuts, pos = FrameTracker(), [], 0
    for size in [1, 2, 3, 50, 4096, 7] * 100:
        cuts += [pos + cut for cut in tracker.feed(data[pos : pos + size])]
        pos += size
        if pos >= len(data):
            break
    assert cuts and all(start < cut < start + len(fragmented) for cut in cuts)
    assert tracker.frames == 6 and not tracker.fragmented


def test_chaos_100k_publishes_exactly_once_in_order() -> None:
    started = time.monotonic()
    with (
        serving("history_max_messages=200000", "history_max_bytes=268435456") as server,
        ChaosProxy(server.port, seed=1, kill_after=(100_000, 600_000)) as pub_proxy,
        ChaosProxy(
            server.port, seed=2, kill_after=(200_000, 1_000_000), modes=("downstream-cut",)
        ) as sub_proxy,
    ):
        options = {"backoff_initial": 0.05, "backoff_max": 0.2}
        reader = nbws.stream(name("chaos"), url=f"http://127.0.0.1:{sub_proxy.port}/", **options)
        sub = reader.subscribe(since=0, policy="block", yield_gaps=True)
        # The per-message protocol (one publish, one ack each): its many small acks are
        # what the downstream kills cut. Batches go through the same proxy in
        # test_client_batches.py.
        stream = nbws.stream(
            reader.name, url=f"http://127.0.0.1:{pub_proxy.port}/", batch=False, **options
        )

        expected = 0
        for i in range(N):
            if i % BINARY_EVERY == BINARY_EVERY - 1:
                stream.publish_bytes(BINARY, chunk_size=2048, progress=False)
            else:
                stream.publish({"i": i})
            expected += 1
        stream.flush(timeout=120)

        got: list[Message | Gap] = []
        while len(got) < expected:
            got.append(sub.get(timeout=60))
        stats = stream.stats()
        sub_reconnects, skipped = sub.reconnects, sub.skipped_duplicates
        sub.close()
        stream.close()
        reader.close()
        pub_kills, sub_kills = pub_proxy.stats.kills, sub_proxy.stats.kills
    elapsed = time.monotonic() - started

    gaps = [item for item in got if isinstance(item, Gap)]
    assert gaps == []
    messages = [item for item in got if isinstance(item, Message)]
    assert [m.offset for m in messages] == list(range(expected))  # nothing lost or repeated
    assert [m.seq for m in messages] == list(range(expected))  # in order per producer
    assert {m.producer for m in messages} == {stream.producer}
    for m in messages:
        if m.seq % BINARY_EVERY == BINARY_EVERY - 1:
            assert m.payload == BINARY
        else:
            assert m.payload == {"i": m.seq}
    assert skipped == 0  # the server resumed exactly at the cursor

    # The chaos happened, in every way, and the client's stats show what it took.
    for mode in ("upstream-cut", "downstream-cut", "mid-fragment", "ack-loss"):
        assert pub_kills[mode] >= 1, (mode, pub_kills)
    assert sub_kills["downstream-cut"] >= 1
    assert stats.acked == expected and stats.failed == 0 and stats.expired == 0
    assert stats.reconnects >= sum(pub_kills.values()) - 1
    assert stats.retransmitted > 0 and stats.duplicates > 0
    assert sub_reconnects >= 1
    print(
        f"\nchaos: {expected} messages in {elapsed:.1f} s; publisher kills {dict(pub_kills)}, "
        f"subscriber kills {dict(sub_kills)}; reconnects {stats.reconnects}, "
        f"retransmitted {stats.retransmitted}, duplicates acked {stats.duplicates}"
    )


DYING = 50_000
PAD = "x" * 100  # ~200-byte publishes: 10 MB up, 7 MB of acks down, dozens of kills


def test_progress_on_a_link_that_kills_every_connection_within_seconds() -> None:
    """Every connection is reset after 0.05-1.5 s or 2 KB-400 KB, whichever comes first:
    with the default options (no tuning of backoff or window) every message is still
    acked, exactly once and in order, because each connection that lives a round trip or
    two carries acks (slow start) and a connection that did is followed by another at
    once (backoff is for links that cannot connect)."""
    with (
        serving("history_max_messages=100000") as server,
        ChaosProxy(
            server.port, seed=3, kill_after=(2_000, 400_000), kill_within=(0.05, 1.5)
        ) as proxy,
    ):
        # Per-message publishes (batches would carry all of it before the first timer
        # fires: test_client_batches.py gives them a link that dies faster).
        stream = nbws.stream(name("dying"), url=f"http://127.0.0.1:{proxy.port}/", batch=False)
        receipts = [stream.publish({"i": i, "pad": PAD}) for i in range(DYING)]
        stream.flush(timeout=120)  # completeness, not speed: ~60x what it takes
        stats = stream.stats()
        kills = proxy.stats.kills
        reader = nbws.stream(stream.name, url=http_url(server))
        history = reader.history(0)
        reader.close()
        stream.close()

    offsets = [receipt.result(0) for receipt in receipts]
    assert offsets == list(range(DYING))  # each acked once, in publish order
    assert stats.acked == DYING and stats.failed == 0 and stats.expired == 0
    assert [m.offset for m in history] == list(range(DYING))  # no duplicate appended
    assert [m.seq for m in history] == list(range(DYING))
    assert [m.payload["i"] for m in history] == list(range(DYING))
    assert sum(kills.values()) >= 10 and stats.reconnects >= 10, (dict(kills), stats.reconnects)
    print(f"\ndying link: {DYING} acked over {stats.reconnects + 1} connections; kills {kills}")
