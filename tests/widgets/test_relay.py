"""The relay: nbws.v1 through a widget's custom messages, against a real ``nbws serve``.

The pure batch window (:class:`RelayFlow`) is tested with explicit times; the links run
their real thread and WebSocket against a server subprocess, with a stand-in for the
widget's comm that records what would reach the view and acks (or not) like a view.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from client.client_support import name, serving, wait_until

import nbws
from nbws.protocol.messages import (
    Batch,
    Gap,
    Message,
    Policy,
    Subscribe,
    Subscribed,
    Welcome,
    decode_event,
    encode,
)
from nbws.widgets.relay import MAX_LINKS, Relay, RelayFlow, RelaySettings

TOKEN = "relay-secret-token-3f9c"


# --- the batch window, pure ------------------------------------------------------------


def test_batches_wait_for_the_rate_interval() -> None:
    flow = RelayFlow(RelaySettings(max_rate=10))
    flow.receive_frame("a")
    first = flow.batch_to_send(100.0)
    assert first is not None and first.frames == ("a",)
    flow.receive_frame("b")
    flow.receive_frame("c")
    assert flow.batch_to_send(100.05) is None  # 1/10 s not over
    second = flow.batch_to_send(100.1)
    assert second is not None and second.frames == ("b", "c") and second.number == 2


def test_unacked_batches_close_the_window_and_acks_reopen_it() -> None:
    flow = RelayFlow(RelaySettings(max_rate=1000, max_unacked=2))
    sent = []
    for step in range(4):
        flow.receive_frame(f"m{step}")
        batch = flow.batch_to_send(float(step))
        if batch is not None:
            sent.append(batch.number)
    assert sent == [1, 2]
    assert not flow.window_open and flow.next_send_time() is None
    flow.receive_ack(1)
    again = flow.batch_to_send(10.0)
    assert again is not None and again.frames == ("m2", "m3")
    flow.receive_ack(99)  # unknown: ignored
    assert len(flow.unacked) == 2


def test_unacked_bytes_close_the_window() -> None:
    flow = RelayFlow(RelaySettings(max_rate=1000, max_unacked=100, max_unacked_bytes=10))
    flow.receive_frame("x" * 12)
    assert flow.batch_to_send(0.0) is not None
    flow.receive_frame("y")
    assert flow.batch_to_send(1.0) is None
    flow.receive_ack(1)
    assert flow.batch_to_send(2.0) is not None


def test_reading_stops_at_the_pending_bound() -> None:
    flow = RelayFlow(RelaySettings(max_pending_bytes=10, max_unacked=1))
    flow.receive_frame("12345")
    assert flow.can_read
    flow.receive_frame("67890")
    assert not flow.can_read and flow.paused_reads == 1
    batch = flow.batch_to_send(0.0)
    assert batch is not None and flow.can_read


def test_batches_are_cut_at_the_byte_bound_but_a_large_frame_goes_alone() -> None:
    flow = RelayFlow(RelaySettings(max_rate=1000, max_unacked=100, max_batch_bytes=10))
    for frame in ["aaaa", "bbbb", "cccc", "d" * 30]:
        flow.receive_frame(frame)
    sizes = []
    for step in range(5):
        batch = flow.batch_to_send(float(step))
        if batch is not None:
            sizes.append(batch.frames)
    assert sizes == [("aaaa", "bbbb"), ("cccc",), ("d" * 30,)]


def test_binary_frames_travel_as_buffers_in_order() -> None:
    flow = RelayFlow()
    flow.receive_frame("t1")
    flow.receive_frame(b"\x00\x01")
    flow.receive_frame("t2")
    flow.receive_frame(b"\x02")
    batch = flow.batch_to_send(0.0)
    assert batch is not None
    content, buffers = batch.content(7)
    assert content == {"nbws": "relay-batch", "link": 7, "batch": 1, "frames": ["t1", 0, "t2", 1]}
    assert buffers == [b"\x00\x01", b"\x02"]


def test_the_final_batch_ignores_rate_and_window() -> None:
    flow = RelayFlow(RelaySettings(max_unacked=1))
    flow.receive_frame("a")
    assert flow.batch_to_send(0.0) is not None
    flow.receive_frame("b")
    assert flow.batch_to_send(0.0) is None
    last = flow.batch_to_send(0.0, final=True)
    assert last is not None and last.frames == ("b",)


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        RelaySettings(max_rate=0)
    with pytest.raises(ValueError):
        RelaySettings(max_unacked_bytes=0)


# --- links against a real server ---------------------------------------------------------


def ack_of(content: dict[str, Any]) -> dict[str, Any]:
    return {"nbws": "relay-ack", "link": content["link"], "batch": content["batch"]}


class FakeView:
    """Stands in for a widget: records what the relay sends, acks like a view would."""

    def __init__(self, acking: bool = True) -> None:
        self.acking = acking
        self.sent: list[tuple[dict[str, Any], list[bytes]]] = []
        self.times: list[float] = []
        self.callbacks: list[Callable[..., Any]] = []
        self.lock = threading.Lock()

    # the widget side (ipywidgets' API)
    def send(self, content: dict[str, Any], buffers: list[bytes] | None = None) -> None:
        with self.lock:
            self.sent.append((content, list(buffers or [])))
            self.times.append(time.monotonic())
        if content["nbws"] == "relay-batch" and self.acking:
            self.from_view(ack_of(content))

    def on_msg(self, callback: Callable[..., Any], remove: bool = False) -> None:
        if remove:
            self.callbacks.remove(callback)
        else:
            self.callbacks.append(callback)

    # the view side
    def from_view(self, content: dict[str, Any]) -> None:
        for callback in list(self.callbacks):
            callback(self, content, [])

    def kinds(self) -> list[str]:
        with self.lock:
            return [content["nbws"] for content, _ in self.sent]

    def events(self) -> list[Any]:
        """Every nbws.v1 event the view received, decoded, in order."""
        out = []
        with self.lock:
            sent = list(self.sent)
        for content, buffers in sent:
            if content["nbws"] != "relay-batch":
                continue
            for frame in content["frames"]:
                if isinstance(frame, int):
                    out.append(decode_event(buffers[frame], text=False))
                else:
                    out.append(decode_event(frame))
        return out

    def offsets(self) -> list[int]:
        found: list[int] = []
        for event in self.events():
            if isinstance(event, Message):
                found.append(event.offset)
            elif isinstance(event, Batch):
                found.extend(m.offset for m in event.messages)
        return found

    def ack_all(self) -> None:
        with self.lock:
            batches = [c for c, _ in self.sent if c["nbws"] == "relay-batch"]
        for content in batches:
            self.from_view(ack_of(content))


@pytest.fixture(scope="module")
def server() -> Iterator[Any]:
    with serving(token=TOKEN) as running:
        yield running


def connector(server: Any) -> Callable[[], Any]:
    from websockets.sync.client import connect

    def open_ws() -> Any:
        return connect(
            f"ws://{server.host}:{server.port}/nbws/ws",
            subprotocols=["nbws.v1"],  # type: ignore[list-item]
            additional_headers={"Authorization": f"token {TOKEN}"},
            open_timeout=30,
            max_size=None,
        )

    return open_ws


def subscribe_text(stream: str, **options: Any) -> str:
    data, _ = encode(Subscribe(stream=stream, since=0, **options))
    return data.decode()


def publish(server: Any, stream: str, count: int, size: int = 10) -> None:
    handle = nbws.stream(stream, url=f"http://{server.host}:{server.port}/", token=TOKEN)
    try:
        for i in range(count):
            handle.publish({"i": i, "pad": "x" * size})
        handle.flush(timeout=60)
    finally:
        handle.close()


def test_a_relayed_subscription_gets_every_row_in_rate_limited_batches(server: Any) -> None:
    view = FakeView()
    relay = Relay(view, connector=connector(server))
    stream = name("relay")
    try:
        view.from_view({"nbws": "relay-open", "link": 1})
        wait_until(lambda: "relay-opened" in view.kinds(), 30, "relay-opened")
        view.from_view(
            {"nbws": "relay-send", "link": 1, "text": subscribe_text(stream, max_batch=100)}
        )
        wait_until(lambda: any(isinstance(e, Subscribed) for e in view.events()), 30, "subscribed")
        publish(server, stream, 200)
        wait_until(lambda: 199 in view.offsets(), 30, "offset 199 through the relay")
        offsets = view.offsets()
        assert offsets == list(range(200))  # same offsets, in order, none lost or repeated
        events = view.events()
        assert isinstance(events[0], Welcome)
        with view.lock:
            batch_times = [
                t
                for (c, _), t in zip(view.sent, view.times, strict=True)
                if c["nbws"] == "relay-batch"
            ]
        intervals = [b - a for a, b in itertools.pairwise(batch_times)]
        assert all(gap >= 1 / 30 - 0.005 for gap in intervals), intervals
        assert TOKEN not in json.dumps([c for c, _ in view.sent])
    finally:
        relay.close()
    assert view.kinds()[-1] == "relay-closed"


def test_an_unacking_view_stops_the_relay_reading_and_the_server_policy_acts(server: Any) -> None:
    view = FakeView(acking=False)
    settings = RelaySettings(max_unacked=2, max_pending_bytes=64 << 10)
    relay = Relay(view, connector=connector(server), settings=settings)
    stream = name("relay-slow")
    try:
        view.from_view({"nbws": "relay-open", "link": 1})
        wait_until(lambda: "relay-opened" in view.kinds(), 30, "relay-opened")
        options = {"policy": Policy.DROP_OLDEST, "max_messages": 50, "max_batch": 10}
        view.from_view({"nbws": "relay-send", "link": 1, "text": subscribe_text(stream, **options)})
        wait_until(lambda: "relay-batch" in view.kinds(), 30, "the welcome batch")
        publish(server, stream, 5000, size=500)  # ~2.5 MB: far over what the relay holds
        link = relay.links[1]
        wait_until(lambda: not link.flow.can_read, 30, "the relay to stop reading")
        assert view.kinds().count("relay-batch") == 2  # the window: no batch without acks

        def drained() -> bool:  # ack what came, as a view does, until the newest is in
            view.ack_all()
            return 4999 in view.offsets()

        wait_until(drained, 60, "the newest row")
        gaps = [e for e in view.events() if isinstance(e, Gap)]
        assert gaps, "a reader held back by the relay must see the server's gap notices"
        delivered = len(set(view.offsets()))
        skipped = sum(g.count or 0 for g in gaps)
        assert delivered + skipped == 5000
    finally:
        relay.close()


def test_a_link_whose_server_is_unreachable_says_so_without_secrets() -> None:
    view = FakeView()

    def refuse() -> Any:
        raise ConnectionRefusedError(f"refused (token {TOKEN})")

    relay = Relay(view, connector=refuse)
    view.from_view({"nbws": "relay-open", "link": 3})
    wait_until(lambda: "relay-closed" in view.kinds(), 30, "relay-closed")
    closed = view.sent[-1][0]
    assert closed["link"] == 3 and closed["was_open"] is False and closed["code"] == 1011
    assert "could not reach" in closed["reason"] and TOKEN not in closed["reason"]
    relay.close()


def test_the_view_closing_a_link_closes_its_socket(server: Any) -> None:
    view = FakeView()
    relay = Relay(view, connector=connector(server))
    view.from_view({"nbws": "relay-open", "link": 5})
    wait_until(lambda: "relay-opened" in view.kinds(), 30, "relay-opened")
    link = relay.links[5]
    view.from_view({"nbws": "relay-close", "link": 5, "code": 1000, "reason": "view gone"})
    link.join(30)
    assert not link._thread.is_alive()
    closed = view.sent[-1][0]
    assert closed == {
        "nbws": "relay-closed",
        "link": 5,
        "code": 1000,
        "reason": "view gone",
        "was_open": True,
    }
    assert 5 not in relay.links
    relay.close()


def test_old_links_are_closed_past_the_limit(server: Any) -> None:
    view = FakeView()
    relay = Relay(view, connector=connector(server))
    try:
        for link in range(1, MAX_LINKS + 2):
            view.from_view({"nbws": "relay-open", "link": link})
        assert sorted(relay.links) == list(range(2, MAX_LINKS + 2))
        wait_until(
            lambda: any(c["nbws"] == "relay-closed" and c["link"] == 1 for c, _ in view.sent),
            30,
            "link 1 closed",
        )
    finally:
        relay.close()


def test_messages_that_are_not_for_the_relay_are_left_alone() -> None:
    view = FakeView()
    opened: list[int] = []

    def never() -> Any:
        opened.append(1)
        raise AssertionError("no link should open")

    relay = Relay(view, connector=never)
    view.from_view({"nbws": "hello"})
    view.from_view({"nbws": "relay-open", "link": "1"})  # not an int: ignored
    view.from_view({"nbws": "relay-ack", "link": 9, "batch": 1})  # unknown link
    assert relay.links == {} and opened == [] and view.sent == []
    relay.close()


def test_the_relay_bench_runs_only_when_named() -> None:
    from nbws.bench.relay import paced_widget_code
    from nbws.bench.runner import OWN_RUN
    from nbws.bench.scenarios import SCENARIOS

    assert "relay" in OWN_RUN and "relay" not in SCENARIOS
    compile(paced_widget_code(1000, 10), "<kernel>", "exec")


def test_closing_the_widget_closes_its_links(server: Any) -> None:
    import ipywidgets

    from nbws.widgets.relay import attach_relay

    widget = ipywidgets.Widget()
    sent: list[dict[str, Any]] = []
    widget.send = lambda content, buffers=None: sent.append(content)  # type: ignore[method-assign]
    relay = attach_relay(widget, connector=connector(server))
    relay._on_msg(widget, {"nbws": "relay-open", "link": 1}, [])
    link = relay.links[1]
    wait_until(lambda: any(c["nbws"] == "relay-opened" for c in sent), 30, "relay-opened")
    widget.close()
    link.join(30)
    assert link.closed.is_set() and relay.links == {}


def test_a_new_link_resumes_where_the_last_one_stopped(server: Any) -> None:
    """Resume is nbws.v1 end to end: since = last + 1 in the same epoch, over a new link."""
    view = FakeView()
    relay = Relay(view, connector=connector(server))
    stream = name("relay-resume")
    try:
        publish(server, stream, 100)
        view.from_view({"nbws": "relay-open", "link": 1})
        wait_until(lambda: "relay-opened" in view.kinds(), 30, "link 1")
        view.from_view({"nbws": "relay-send", "link": 1, "text": subscribe_text(stream)})
        wait_until(lambda: 99 in view.offsets(), 30, "the first 100")
        epoch = next(e.epoch for e in view.events() if isinstance(e, Subscribed))
        view.from_view({"nbws": "relay-close", "link": 1, "code": 1000, "reason": ""})
        publish(server, stream, 100)  # published while no link is open
        first = list(view.offsets())
        with view.lock:
            view.sent.clear()
        view.from_view({"nbws": "relay-open", "link": 2})
        wait_until(lambda: "relay-opened" in view.kinds(), 30, "link 2")
        data, _ = encode(Subscribe(stream=stream, since=first[-1] + 1, epoch=epoch))
        view.from_view({"nbws": "relay-send", "link": 2, "text": data.decode()})
        wait_until(lambda: 199 in view.offsets(), 30, "the rest")
        assert first == list(range(100)) and view.offsets() == list(range(100, 200))
        assert not any(isinstance(e, Gap) for e in view.events())
    finally:
        relay.close()
