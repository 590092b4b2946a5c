"""FrameInspector fed from the kernel: frames reach the view as comm messages, the view's
buttons act on the connection. First with a stand-in connection (exact bookkeeping), then
with a real ``nbws.explore`` connection to ``nbws serve``'s echo endpoint."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from nbws.explore import connect
from nbws.protocol import FrameRecord
from nbws.widgets import FrameInspector, inspect_connection
from nbws.widgets.inspector import record_dict


def record(direction: str, opcode: int, preview: bytes = b"x", fin: bool = True) -> FrameRecord:
    return FrameRecord(
        time=1.0,
        direction=direction,
        opcode=opcode,
        fin=fin,
        rsv=(False, False, False),
        masked=direction == "out",
        length=len(preview),
        preview=preview,
    )


class StandIn:
    """Just what inspect_connection relies on, recording the calls the buttons make."""

    url = "ws://example.invalid/nbws/echo"
    state = "OPEN"
    close_code: int | None = None

    def __init__(self) -> None:
        self.records: list[FrameRecord] = [record("out", 1, b"earlier")]
        self.listeners: list[Callable[[FrameRecord], None]] = []
        self.calls: list[tuple[Any, ...]] = []

    def on_frame(self, listener: Callable[[FrameRecord], None]) -> None:
        self.listeners.append(listener)

    def off_frame(self, listener: Callable[[FrameRecord], None]) -> None:
        self.listeners.remove(listener)

    def emit(self, item: FrameRecord) -> None:
        self.records.append(item)
        for listener in list(self.listeners):
            listener(item)

    def text(self, data: str) -> None:
        self.calls.append(("text", data))

    def binary(self, data: bytes) -> None:
        self.calls.append(("binary", data))

    def fragments(self, data: str, n: int) -> None:
        self.calls.append(("fragments", data, n))

    def ping(self, data: str) -> None:
        self.calls.append(("ping", data))

    def close(self, code: int, reason: str, *, wait: bool = True) -> None:
        self.calls.append(("close", code, reason, wait))


class Sent:
    """Captures the custom messages a widget sends to its views."""

    def __init__(self, widget: FrameInspector) -> None:
        self.messages: list[dict[str, Any]] = []
        widget.comm.send = self._send

    def _send(self, data: Any = None, metadata: Any = None, buffers: Any = None) -> None:
        if data and data.get("method") == "custom":
            self.messages.append(data["content"])

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("type") == kind]

    def frames(self) -> list[dict[str, Any]]:
        return [f for m in self.of("frames") for f in m["frames"]]

    def wait(self, condition: Callable[[], bool], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"condition not met; sent: {self.messages}"
            time.sleep(0.01)


def click(
    widget: FrameInspector, content: dict[str, Any], buffers: list[Any] | None = None
) -> None:
    """What a view's button sends (a custom comm message)."""
    widget._handle_custom_msg(content, buffers or [])


@pytest.fixture
def stand_in() -> Iterator[tuple[StandIn, FrameInspector, Sent]]:
    conn = StandIn()
    widget = inspect_connection(conn)
    sent = Sent(widget)
    yield conn, widget, sent
    widget.close()


def test_model_says_kernel_source(stand_in: tuple[StandIn, FrameInspector, Sent]) -> None:
    _, widget, _ = stand_in
    assert widget.source == "kernel"
    assert widget.url == StandIn.url


def test_a_new_view_gets_the_history_addressed_to_it(
    stand_in: tuple[StandIn, FrameInspector, Sent],
) -> None:
    conn, widget, sent = stand_in
    click(widget, {"action": "replay", "view": "v1"})
    [replay] = sent.of("frames")
    assert replay["view"] == "v1"
    assert replay["frames"] == [{**record_dict(conn.records[0]), "seq": 1}]
    [state] = sent.of("state")
    assert (state["view"], state["state"], state["problem"]) == ("v1", "open", False)


def test_new_frames_are_batched_to_the_views(
    stand_in: tuple[StandIn, FrameInspector, Sent],
) -> None:
    conn, _, sent = stand_in
    conn.emit(record("out", 9, b"ping"))
    conn.emit(record("in", 10, b"ping"))
    sent.wait(lambda: len(sent.frames()) == 2)
    assert [f["opcode_name"] for f in sent.frames()] == ["PING", "PONG"]
    assert all("view" not in m for m in sent.of("frames"))


def test_buttons_call_the_connection(stand_in: tuple[StandIn, FrameInspector, Sent]) -> None:
    conn, widget, sent = stand_in
    click(widget, {"action": "text", "data": "hi"})
    click(widget, {"action": "binary"}, [memoryview(b"\x00\xff")])
    click(widget, {"action": "fragments", "data": "abcdef", "n": 3})
    click(widget, {"action": "ping", "data": "p"})
    click(widget, {"action": "close", "code": 1005, "reason": "any code"})
    assert conn.calls == [
        ("text", "hi"),
        ("binary", b"\x00\xff"),
        ("fragments", "abcdef", 3),
        ("ping", "p"),
        ("close", 1005, "any code", False),
    ]
    assert sent.of("note") == []


def test_failures_are_notes_in_the_view(stand_in: tuple[StandIn, FrameInspector, Sent]) -> None:
    conn, widget, sent = stand_in

    def broken(data: str) -> None:
        raise ConnectionError("the server went away")

    conn.text = broken  # type: ignore[method-assign]
    click(widget, {"action": "text", "data": "hi"})
    click(widget, {"action": "reconnect"})
    click(widget, {"action": "explode"})
    notes = [n["text"] for n in sent.of("note")]
    assert notes[0] == "text failed: ConnectionError: the server went away"
    assert "open a new connection" in notes[1]
    assert notes[2] == "unknown action 'explode'"
    assert all(n["problem"] for n in sent.of("note"))


def test_closing_the_widget_stops_listening(
    stand_in: tuple[StandIn, FrameInspector, Sent],
) -> None:
    conn, widget, _ = stand_in
    assert len(conn.listeners) == 1
    widget.close()
    assert conn.listeners == []


def test_reconnect_follows_the_new_connection() -> None:
    first, second = StandIn(), StandIn()
    second.url = "ws://example.invalid/nbws/echo?fragment=4"
    widget = inspect_connection(first, reconnect=lambda: second)
    sent = Sent(widget)
    click(widget, {"action": "reconnect"})
    assert first.listeners == [] and len(second.listeners) == 1
    assert widget.url == second.url
    second.emit(record("in", 1, b"new"))
    sent.wait(lambda: any(f["preview"] == "new" for f in sent.frames()))
    widget.close()


def test_real_raw_connection_frames_reach_the_view(serve_process: Any) -> None:
    conn = connect(serve_process.url("/nbws/echo"), timeout=5)
    widget = inspect_connection(conn)
    sent = Sent(widget)
    try:
        click(widget, {"action": "fragments", "data": "hello kernel", "n": 3})
        sent.wait(lambda: any(f["direction"] == "in" for f in sent.frames()))
        frames = sent.frames()
        sent_frames = [
            (f["opcode_name"], f["fin"], f["masked"]) for f in frames if f["direction"] == "out"
        ]
        assert sent_frames == [("TEXT", False, True), ("CONT", False, True), ("CONT", True, True)]
        echo = [f for f in frames if f["direction"] == "in"]
        assert [(f["opcode_name"], f["preview"], f["masked"]) for f in echo] == [
            ("TEXT", "hello kernel", False)
        ]
        click(widget, {"action": "ping", "data": "are you there"})
        sent.wait(lambda: any(f["opcode_name"] == "PONG" for f in sent.frames()))
        click(widget, {"action": "close", "code": 1000, "reason": "bye"})
        sent.wait(
            lambda: any(
                f["opcode_name"] == "CLOSE" and f["direction"] == "in" for f in sent.frames()
            )
        )
        sent.wait(lambda: any(s["state"] == "closed" for s in sent.of("state")))
    finally:
        widget.close()
        conn.abort()


def test_frames_are_numbered_once_so_a_view_can_merge_its_replay_with_live_batches(
    stand_in: tuple[StandIn, FrameInspector, Sent],
) -> None:
    """Under "Run All" a view attaches while frames arrive: it gets them live, and again
    in the replay it asked for (the kernel answers that only when the cells are done).
    Each frame carries one ``seq`` in both, so the view shows it once."""
    conn, widget, sent = stand_in
    for i in range(3):
        conn.emit(record("out", 1, f"live {i}".encode()))
    sent.wait(lambda: len(sent.frames()) == 3)
    live = [f for m in sent.of("frames") for f in m["frames"]]
    click(widget, {"action": "replay", "view": "v1"})
    [replay] = [m for m in sent.of("frames") if m.get("view") == "v1"]
    assert [f["seq"] for f in replay["frames"]] == [1, 2, 3, 4]  # "earlier", then live 0-2
    assert [f["preview"] for f in replay["frames"]] == ["earlier", "live 0", "live 1", "live 2"]
    assert [(f["seq"], f["preview"]) for f in live] == [(2, "live 0"), (3, "live 1"), (4, "live 2")]
    conn.emit(record("in", 1, b"after"))
    sent.wait(lambda: any(f["preview"] == "after" for f in sent.frames()))
    assert [f["seq"] for f in sent.frames() if f["preview"] == "after"] == [5]


def test_a_frame_arriving_while_the_feed_attaches_is_numbered_once() -> None:
    """A frame recorded between ``on_frame`` and the feed reading ``records`` is both in the
    records and delivered to the listener: it gets one number, not two."""
    conn = StandIn()
    late = record("in", 1, b"late")
    original = conn.on_frame

    def on_frame(listener: Callable[[FrameRecord], None]) -> None:
        original(listener)
        conn.emit(late)  # recorded and delivered before the feed reads conn.records

    conn.on_frame = on_frame  # type: ignore[method-assign]
    widget = inspect_connection(conn)
    sent = Sent(widget)
    try:
        click(widget, {"action": "replay", "view": "v"})
        [replay] = sent.of("frames")
        assert [(f["seq"], f["preview"]) for f in replay["frames"]] == [(1, "earlier"), (2, "late")]
    finally:
        widget.close()


def test_a_long_recording_is_numbered_in_full_and_replayed_newest_first_kept() -> None:
    conn = StandIn()
    conn.records += [record("out", 1, f"r{i}".encode()) for i in range(2, 21)]
    widget = inspect_connection(conn, max_frames=5)
    sent = Sent(widget)
    try:
        click(widget, {"action": "replay", "view": "v"})
        [replay] = sent.of("frames")
        assert [(f["seq"], f["preview"]) for f in replay["frames"]] == [
            (16, "r16"),
            (17, "r17"),
            (18, "r18"),
            (19, "r19"),
            (20, "r20"),
        ]
    finally:
        widget.close()
