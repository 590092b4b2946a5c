"""nbws.v1 streams end to end: publish/subscribe, history, resume, dedupe, nacks."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
import websockets


def unique() -> str:
    return f"s-{uuid.uuid4().hex[:10]}"


# The whole suite also runs on the Redis broker: same behaviour, many processes possible.
TARGETS = ("jupyter", "standalone", "redis")

pytestmark = pytest.mark.timeout(120)


async def test_publish_is_acked_with_offsets_and_delivered(connect):
    stream = unique()
    sub, pub = await connect(), await connect()
    info = await sub.subscribe(stream)
    assert info["next"] == 0
    acks = await pub.publish_acked(stream, "p1", range(5))
    assert [a["offset"] for a in acks] == [0, 1, 2, 3, 4]
    assert all(a["duplicate"] is False and a["epoch"] == info["epoch"] for a in acks)
    got = [await sub.expect("message") for _ in range(5)]
    assert [m["offset"] for m in got] == [0, 1, 2, 3, 4]
    assert [m["payload"]["seq"] for m in got] == [0, 1, 2, 3, 4]
    assert {m["producer"] for m in got} == {"p1"}


async def test_history_replay_then_live_with_no_gap_or_duplicate_at_the_seam(connect):
    stream = unique()
    pub = await connect()
    await pub.publish_acked(stream, "p", range(200))

    async def keep_publishing() -> None:
        await pub.publish_acked(stream, "p", range(200, 400))

    sub = await connect()
    task = asyncio.ensure_future(keep_publishing())
    await sub.subscribe(stream, since=0)
    offsets = [(await sub.expect("message"))["offset"] for _ in range(400)]
    await task
    assert offsets == list(range(400))


async def test_resume_after_reconnect_with_since_and_epoch(connect):
    stream = unique()
    pub = await connect()
    sub = await connect()
    info = await sub.subscribe(stream, since=0)
    await pub.publish_acked(stream, "p", range(10))
    seen = [(await sub.expect("message"))["offset"] for _ in range(10)]
    await sub.ws.close()
    await pub.publish_acked(stream, "p", range(10, 20))
    again = await connect()
    await again.subscribe(stream, since=seen[-1] + 1, epoch=info["epoch"])
    resumed = [(await again.expect("message"))["offset"] for _ in range(10)]
    assert resumed == list(range(10, 20))
    await pub.publish_acked(stream, "p", range(20, 21))
    live = await again.recv()
    assert live["type"] == "message" and live["offset"] == 20


async def test_negative_since_replays_the_last_messages(connect):
    stream = unique()
    pub = await connect()
    await pub.publish_acked(stream, "p", range(10))
    sub = await connect()
    await sub.subscribe(stream, since=-3)
    assert [(await sub.expect("message"))["offset"] for _ in range(3)] == [7, 8, 9]


async def test_history_read_with_until_ends(connect):
    stream = unique()
    pub = await connect()
    await pub.publish_acked(stream, "p", range(10))
    reader = await connect()
    await reader.subscribe(stream, since=2, until=5)
    assert [(await reader.expect("message"))["offset"] for _ in range(3)] == [2, 3, 4]
    end = await reader.expect("end")
    assert end["next"] == 5


async def test_resent_publish_is_acked_again_and_not_appended_twice(connect, target):
    stream = unique()
    pub = await connect()
    first = (await pub.publish_acked(stream, "prod", range(3)))[1]
    again = (await pub.publish_acked(stream, "prod", range(1, 2)))[0]
    assert again["duplicate"] is True and again["offset"] == first["offset"]
    info = await target.stream_info(stream)
    assert info["next"] == 3


async def test_older_than_history_gives_a_gap_notice(connect, target):
    stream = unique()
    code, _ = await target.rest("POST", f"nbws/api/streams/{stream}", {"max_messages": 5})
    assert code == 201
    pub = await connect()
    await pub.publish_acked(stream, "p", range(12))
    sub = await connect()
    await sub.subscribe(stream, since=0)
    gap = await sub.expect("gap")
    assert (gap["from"], gap["to"], gap["count"], gap["reason"]) == (0, 7, 7, "history")
    assert [(await sub.expect("message"))["offset"] for _ in range(5)] == [7, 8, 9, 10, 11]


async def test_epoch_change_after_delete_gives_an_epoch_gap(connect, target):
    stream = unique()
    pub = await connect()
    await pub.publish_acked(stream, "p", range(3))
    old = (await target.stream_info(stream))["epoch"]
    code, _ = await target.rest("DELETE", f"nbws/api/streams/{stream}")
    assert code == 204
    await pub.publish_acked(stream, "q", range(2))
    sub = await connect()
    await sub.subscribe(stream, since=3, epoch=old)
    gap = await sub.expect("gap")
    assert gap["reason"] == "epoch" and gap["from"] == 3 and gap["epoch"] != old
    assert [(await sub.expect("message"))["offset"] for _ in range(2)] == [0, 1]


async def test_binary_publish_travels_without_base64(connect):
    from nbws.protocol.messages import binary_prefix

    stream = unique()
    sub, pub = await connect(), await connect()
    await sub.subscribe(stream)
    blob = bytes(range(256)) * 4000
    await pub.ws.send(
        binary_prefix(
            {
                "type": "publish",
                "stream": stream,
                "producer": "b",
                "seq": 0,
                "content_type": "application/x-test",
            }
        )
        + blob
    )
    ack = await pub.expect("ack")
    message = await sub.recv()
    assert message["binary"] is True and message["offset"] == ack["offset"]
    assert message["content_type"] == "application/x-test"
    assert message["payload_bytes"] == blob


async def test_rest_lists_streams_and_subscribers(connect, target):
    stream = unique()
    sub, pub = await connect(), await connect()
    await sub.subscribe(stream, policy="drop-newest", max_messages=50)
    await pub.publish_acked(stream, "p", range(3))
    code, listing = await target.rest("GET", "nbws/api/streams")
    assert code == 200
    row = next(s for s in listing["streams"] if s["name"] == stream)
    assert row["next"] == 3 and row["subscribers"] == 1
    detail = await target.stream_info(stream)
    (subscription,) = detail["subscriptions"]
    assert subscription["policy"] == "drop-newest" and subscription["max_messages"] == 50
    code, history = await target.rest("GET", f"nbws/api/streams/{stream}/messages?since=1")
    assert [m["offset"] for m in history["messages"]] == [1, 2]
    assert history["messages"][0]["payload"] == {"seq": 1}


async def test_info_request(connect):
    stream = unique()
    pub = await connect()
    await pub.publish_acked(stream, "p", range(4))
    await pub.send(type="info", stream=stream, id="q1")
    info = await pub.expect("info")
    assert info["ref"] == "q1" and info["next"] == 4 and info["history_messages"] == 4


async def test_unsubscribe_stops_delivery(connect):
    stream = unique()
    sub, pub = await connect(), await connect()
    await sub.subscribe(stream)
    await sub.send(type="unsubscribe", stream=stream, id=9)
    assert (await sub.expect("unsubscribed"))["ref"] == 9
    await pub.publish_acked(stream, "p", range(2))
    await sub.send(type="info", stream=stream)
    # The next thing the subscriber sees is the info reply, not a message.
    assert (await sub.recv())["type"] == "info"


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ({"type": "subscribe"}, "bad-request"),
        ({"type": "subscribe", "stream": 5}, "bad-request"),
        ({"type": "subscribe", "stream": "x" * 500}, "bad-request"),
        ({"type": "subscribe", "stream": "ok", "since": "zero"}, "bad-request"),
        ({"type": "subscribe", "stream": "ok", "policy": "hope"}, "bad-request"),
        ({"type": "publish", "stream": "ok"}, "bad-request"),
        ({"type": "publish", "stream": "ok", "payload": 1, "producer": "p"}, "bad-request"),
        (
            {"type": "publish", "stream": "ok", "payload": 1, "producer": "p", "seq": -1},
            "bad-request",
        ),
        ({"type": "publish", "stream": "ok", "payload": 1, "key": "k" * 5000}, "bad-request"),
        ({"type": "unsubscribe", "stream": "never"}, "not-subscribed"),
        ({"type": "info", "stream": "no-such-stream-here"}, "unknown-stream"),
        ({"type": "teleport"}, "unknown-type"),
        ({"no": "type"}, "unknown-type"),
    ],
)
async def test_malformed_requests_get_an_error_and_the_connection_stays(connect, message, code):
    peer = await connect()
    await peer.send(id=1, **message)
    error = await peer.expect("error")
    assert error["code"] == code and error["ref"] == 1 and error["message"]
    await peer.send(type="info", stream="no-such-stream-here")
    assert (await peer.expect("error"))["code"] == "unknown-stream"


@pytest.mark.parametrize(
    "fields",
    [
        {},  # no payload
        {"payload": 1, "key": 7},
        {"payload": 1, "key": "k" * 5000},
        {"payload": 1, "content_type": ["x"]},
    ],
    ids=["no-payload", "key-not-a-string", "key-too-long", "content-type-not-a-string"],
)
async def test_bad_acked_publish_is_nacked_for_its_seq(connect, fields):
    """The nack table promises `bad-request` for an acked publish with bad fields, so a
    reliable client can settle that seq (an `error` with `ref: null` names no seq)."""
    stream = unique()
    peer = await connect()
    await peer.send(type="publish", stream=stream, producer="p", seq=4, **fields)
    nack = await peer.expect("nack")
    assert (nack["code"], nack["retry"], nack["producer"], nack["seq"]) == (
        "bad-request",
        False,
        "p",
        4,
    )
    assert nack["stream"] == stream and nack["reason"]
    ack = (await peer.publish_acked(stream, "p", range(5, 6)))[0]
    assert ack["offset"] == 0  # the refused one took no offset


async def test_text_that_is_not_json_closes_1007_and_others_are_unaffected(connect):
    bad, good = await connect(), await connect()
    await bad.ws.send("{not json")
    with pytest.raises(websockets.ConnectionClosed) as info:
        await bad.recv()
    assert info.value.rcvd is not None and info.value.rcvd.code == 1007
    stream = unique()
    assert (await good.publish_acked(stream, "p", range(1)))[0]["offset"] == 0


@pytest.mark.parametrize(
    "blob", [b"\x00", b"\x00\x00\x00\xff{}", b"\x00\x00\x00\x02[]", b"\x00\x00\x00\x03{x}"]
)
async def test_malformed_binary_header_closes_1008(connect, blob):
    peer = await connect()
    await peer.ws.send(blob)
    with pytest.raises(websockets.ConnectionClosed) as info:
        await peer.recv()
    assert info.value.rcvd is not None and info.value.rcvd.code == 1008


async def test_json_that_is_not_an_object_closes_1008(connect):
    peer = await connect()
    await peer.ws.send("[1, 2]")
    with pytest.raises(websockets.ConnectionClosed) as info:
        await peer.recv()
    assert info.value.rcvd is not None and info.value.rcvd.code == 1008


async def test_too_many_bad_requests_close_1008(connect):
    peer = await connect()
    for _ in range(101):
        await peer.send(type="bogus")
    with pytest.raises(websockets.ConnectionClosed) as info:
        while True:
            await peer.recv()
    assert info.value.rcvd is not None and info.value.rcvd.code == 1008
    assert "bad requests" in info.value.rcvd.reason


async def test_fire_and_forget_publish_gets_no_ack(connect):
    stream = unique()
    sub, pub = await connect(), await connect()
    await sub.subscribe(stream)
    await pub.send(type="publish", stream=stream, payload="no ack please")
    await pub.send(type="info", stream=stream, id="after")
    reply = await pub.recv()
    assert reply["type"] == "info" and reply["next"] == 1
    assert (await sub.expect("message"))["payload"] == "no ack please"


async def test_publish_binary_frames_are_fragmented_when_large(connect):
    stream = unique()
    sub, pub = await connect(), await connect()
    await sub.subscribe(stream)
    big = {"blob": "x" * (3 * 1024 * 1024)}
    await pub.send(type="publish", stream=stream, producer="p", seq=0, payload=big)
    await pub.expect("ack")
    frames = [f async for f in sub.ws.recv_streaming()]
    assert len(frames) >= 3
    assert json.loads("".join(frames))["payload"] == big


async def test_payload_larger_than_history_bound_is_nacked_oversize(connect, target):
    stream = unique()
    code, _ = await target.rest("POST", f"nbws/api/streams/{stream}", {"max_bytes": 1000})
    assert code == 201
    pub = await connect()
    await pub.send(type="publish", stream=stream, producer="p", seq=0, payload="x" * 2000)
    nack = await pub.expect("nack")
    assert (nack["code"], nack["retry"], nack["seq"]) == ("oversize", False, 0)
    assert "1000" in nack["reason"]
    ack = (await pub.publish_acked(stream, "p", range(1, 2)))[0]
    assert ack["offset"] == 0  # the refused one took no offset


async def test_unknown_stream_is_nacked_when_auto_create_is_off(nbws_server):
    nbws_server.server.context.hub.auto_create = False
    async with websockets.connect(nbws_server.url("/nbws/ws"), subprotocols=["nbws.v1"]) as ws:
        assert json.loads(await ws.recv())["dedupe_window"] == 4096
        await ws.send(
            json.dumps(
                {"type": "publish", "stream": "nope", "producer": "p", "seq": 0, "payload": 1}
            )
        )
        nack = json.loads(await ws.recv())
        assert (nack["type"], nack["code"], nack["retry"]) == ("nack", "unknown-stream", False)
        await ws.send(json.dumps({"type": "subscribe", "stream": "nope", "id": 3}))
        error = json.loads(await ws.recv())
        assert (error["type"], error["code"], error["ref"]) == ("error", "unknown-stream", 3)
