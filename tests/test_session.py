"""Unit tests of the sans-I/O :class:`nbws.protocol.Session`: bytes in, events and bytes out.

Client frames are made with ``websockets``' own frame serialiser (masked, as a client
must); server output is read back with :func:`nbws.protocol.parse_frame_header`.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable
from typing import Any

import pytest
from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.frames import Close, Frame, Opcode

from nbws.errors import InvalidState
from nbws.protocol import (
    CloseReceived,
    Fragment,
    FrameRecord,
    FrameTap,
    Limits,
    Ping,
    Pong,
    RateLimiter,
    Session,
    State,
    encode_frame,
    encode_message,
    parse_frame_header,
)

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def request_bytes(
    *, drop: str = "", version: str = "13", key: str | None = None, extra: tuple[str, ...] = ()
) -> tuple[bytes, str]:
    """A client's opening handshake, optionally without the header named ``drop``."""
    key = key if key is not None else base64.b64encode(os.urandom(16)).decode()
    headers = {
        "Host": "127.0.0.1:8765",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": key,
        "Sec-WebSocket-Version": version,
    }
    headers.pop(drop, None)
    lines = ["GET /nbws/echo HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items()), *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"), key


def client_frame(opcode: Opcode, data: bytes, fin: bool = True) -> bytes:
    """One masked client frame."""
    return Frame(opcode, data, fin).serialize(mask=True, extensions=[])


def close_payload(code: int, reason: str = "") -> bytes:
    return Close(code, reason).serialize()


_LIMITS = {"max_message_size", "max_frame_size", "rate_limit", "rate_limit_burst"}


def open_session(**options: Any) -> Session:
    """A session past a successful handshake, with the 101 response already taken; size
    and rate options go into its :class:`Limits`."""
    limits = {name: options.pop(name) for name in list(options) if name in _LIMITS}
    if limits:
        options["limits"] = Limits(**limits)
    session = Session(**options)
    raw, _ = request_bytes()
    response = session.receive_request(raw)
    assert response.status_code == 101
    written = session.data_to_send()
    assert written and written[0].startswith(b"HTTP/1.1 101 ")
    return session


def server_frames(chunks: list[bytes]) -> list[tuple[int, bool, bytes]]:
    """Split what the session wrote into ``(opcode, fin, payload)``; ``b""`` (EOF) is kept
    as ``(-1, True, b"")``."""
    frames: list[tuple[int, bool, bytes]] = []
    for chunk in chunks:
        if chunk == b"":
            frames.append((-1, True, b""))
            continue
        position = 0
        while position < len(chunk):
            opcode, fin, rsv, masked, length, header = parse_frame_header(chunk[position:])
            assert not masked, "server frames are never masked"
            assert rsv == (False, False, False)
            start = position + header
            frames.append((opcode, fin, chunk[start : start + length]))
            position = start + length
    return frames


def close_of(chunks: list[bytes]) -> tuple[int, str]:
    """The close code and reason of the one close frame in ``chunks``."""
    closes = [payload for opcode, _, payload in server_frames(chunks) if opcode == 0x8]
    assert len(closes) == 1, server_frames(chunks)
    close = Close.parse(closes[0])
    return int(close.code), close.reason


# --- handshake -----------------------------------------------------------------------------


def test_handshake_accepts_version_13_and_queues_the_101() -> None:
    session = Session()
    assert session.state is State.CONNECTING
    raw, key = request_bytes()
    response = session.receive_request(raw)
    assert response.status_code == 101
    expected = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
    assert response.headers["Sec-WebSocket-Accept"] == expected
    assert session.state is State.OPEN
    written = session.data_to_send()
    assert len(written) == 1
    assert written[0].startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert f"Sec-WebSocket-Accept: {expected}\r\n".encode() in written[0]


@pytest.mark.parametrize("version", ["8", "12", "14", "banana"])
def test_other_versions_get_426_naming_version_13(version: str) -> None:
    session = Session()
    raw, _ = request_bytes(version=version)
    response = session.receive_request(raw)
    assert response.status_code == 426
    assert response.headers["Sec-WebSocket-Version"] == "13"
    assert version.encode() in response.body
    # A refused handshake leaves the session CONNECTING and writes nothing itself.
    assert session.state is State.CONNECTING
    assert session.data_to_send() == []


@pytest.mark.parametrize(
    ("drop", "key", "status"),
    [
        ("Sec-WebSocket-Key", None, 400),
        ("", "not-base64-of-16-bytes", 400),
        ("Sec-WebSocket-Version", None, 400),
        ("Upgrade", None, 426),
        ("Connection", None, 426),
    ],
)
def test_malformed_upgrades_are_refused(drop: str, key: str | None, status: int) -> None:
    session = Session()
    raw, _ = request_bytes(drop=drop, key=key)
    response = session.receive_request(raw)
    assert response.status_code == status
    assert response.body  # a readable explanation
    assert session.state is State.CONNECTING
    with pytest.raises(InvalidState, match="connecting"):
        session.send_text(b"never")


@pytest.mark.parametrize(
    "raw",
    [b"this is not http\r\n\r\n", b"GET /nbws/echo HTTP/1.1\r\nHost: x\r\n"],
    ids=["garbage", "incomplete"],
)
def test_unparseable_requests_get_400_with_a_reason(raw: bytes) -> None:
    session = Session()
    response = session.receive_request(raw)
    assert response.status_code == 400
    assert b"None" not in response.body
    assert response.body.startswith(b"Malformed WebSocket handshake: ")


def test_subprotocol_is_chosen_in_server_order_and_optional() -> None:
    session = Session(subprotocols=["nbws.v1", "nbws.echo"])
    raw, _ = request_bytes(extra=("Sec-WebSocket-Protocol: nbws.echo, nbws.v1",))
    assert session.receive_request(raw).status_code == 101
    assert session.subprotocol == "nbws.v1"
    plain = Session(subprotocols=["nbws.v1"])
    raw, _ = request_bytes()
    assert plain.receive_request(raw).status_code == 101
    assert plain.subprotocol is None


def test_permessage_deflate_only_when_configured() -> None:
    offer = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"
    off = Session()
    raw, _ = request_bytes(extra=(offer,))
    response = off.receive_request(raw)
    assert "Sec-WebSocket-Extensions" not in response.headers
    assert not off.compressed
    on = Session(compression={"server_max_window_bits": 12})
    raw, _ = request_bytes(extra=(offer,))
    response = on.receive_request(raw)
    assert "server_max_window_bits=12" in response.headers["Sec-WebSocket-Extensions"]
    assert on.compressed
    with pytest.raises(ValueError, match="unknown permessage-deflate settings"):
        Session(compression={"level": 9})


# --- state machine ---------------------------------------------------------------------------


def test_server_initiated_close_walks_open_closing_closed() -> None:
    session = open_session()
    assert session.state is State.OPEN
    session.send_close(4001, "bye")
    assert session.state is State.CLOSING
    assert close_of(session.data_to_send()) == (4001, "bye")
    assert session.sent_close_code == 4001
    session.receive_data(client_frame(Opcode.CLOSE, close_payload(4001, "bye")), now=0.0)
    assert session.events_received() == [CloseReceived(4001, "bye")]
    # The handshake is complete: the server half-closes and waits for the TCP close.
    assert session.data_to_send() == [b""]
    assert session.state is State.CLOSING
    session.receive_eof()
    assert session.state is State.CLOSED
    assert (session.close_code, session.close_reason) == (4001, "bye")


def test_peer_initiated_close_is_echoed() -> None:
    session = open_session()
    session.receive_data(client_frame(Opcode.CLOSE, close_payload(1000, "done")), now=0.0)
    assert session.events_received() == [CloseReceived(1000, "done")]
    assert session.state is State.CLOSING
    out = session.data_to_send()
    assert close_of(out) == (1000, "done")
    assert out[-1] == b""  # then half-close
    session.receive_eof()
    assert session.state is State.CLOSED
    assert session.sent_close_code == 1000


def test_eof_without_close_frame_is_1006() -> None:
    session = open_session()
    assert session.close_code is None
    session.receive_eof()
    assert session.state is State.CLOSED
    assert session.close_code == 1006


def test_invalid_close_code_from_server_side_is_a_value_error() -> None:
    session = open_session()
    with pytest.raises(ValueError, match="1005"):
        session.send_close(1005)
    assert session.state is State.OPEN
    assert session.data_to_send() == []


SENDS: dict[str, Callable[[Session], None]] = {
    "text": lambda s: s.send_text(b"late"),
    "binary": lambda s: s.send_binary(b"late"),
    "fragment": lambda s: s.send_binary(b"late", fin=False),
    "close": lambda s: s.send_close(1000),
    "encoded": lambda s: s.send_encoded(encode_frame(b"late", text=False)),
}


@pytest.mark.parametrize("send", SENDS.values(), ids=SENDS.keys())
def test_sends_while_closing_are_refused_and_never_written(send: Callable[[Session], None]) -> None:
    session = open_session()
    session.send_close(1000)
    session.data_to_send()
    assert session.state is State.CLOSING
    with pytest.raises(InvalidState, match="closing"):
        send(session)
    assert session.data_to_send() == []


@pytest.mark.parametrize(
    "send",
    [*SENDS.values(), lambda s: s.send_ping(b"p"), lambda s: s.send_pong(b"p")],
    ids=[*SENDS.keys(), "ping", "pong"],
)
def test_sends_when_closed_are_refused_and_never_written(send: Callable[[Session], None]) -> None:
    session = open_session()
    session.receive_data(client_frame(Opcode.CLOSE, close_payload(1000)), now=0.0)
    session.receive_eof()
    session.data_to_send()
    assert session.state is State.CLOSED
    with pytest.raises(InvalidState, match="closed"):
        send(session)
    assert session.data_to_send() == []


def test_continuation_after_close_is_refused_mid_message() -> None:
    session = open_session()
    session.send_binary(b"first", fin=False)
    assert session.sending_fragmented
    session.send_close(1001, "going")
    session.data_to_send()
    with pytest.raises(InvalidState):
        session.send_continuation(b"rest", fin=True)
    assert session.data_to_send() == []


def test_misuse_of_fragment_order_is_invalid_state() -> None:
    session = open_session()
    with pytest.raises(InvalidState, match="continuation"):
        session.send_continuation(b"x", fin=True)
    session.send_text(b"a", fin=False)
    with pytest.raises(InvalidState, match="continuation"):
        session.send_binary(b"b")
    session.send_continuation(b"c", fin=True)
    assert [(op, fin, data) for op, fin, data in server_frames(session.data_to_send())] == [
        (0x1, False, b"a"),
        (0x0, True, b"c"),
    ]


# --- receiving -------------------------------------------------------------------------------


def test_fragments_arrive_one_by_one_without_reassembly() -> None:
    session = open_session()
    session.receive_data(client_frame(Opcode.BINARY, b"ab", fin=False), now=0.0)
    assert session.events_received() == [Fragment(False, b"ab", True, False)]
    assert session.receiving_fragmented
    session.receive_data(client_frame(Opcode.CONT, b"cd", fin=False), now=0.0)
    session.receive_data(client_frame(Opcode.CONT, b"ef", fin=True), now=0.0)
    assert session.events_received() == [
        Fragment(False, b"cd", False, False),
        Fragment(False, b"ef", False, True),
    ]
    assert not session.receiving_fragmented


def test_ping_is_answered_with_a_pong_and_reported() -> None:
    session = open_session()
    session.receive_data(client_frame(Opcode.PING, b"hello"), now=0.0)
    session.receive_data(client_frame(Opcode.PONG, b"x"), now=0.0)
    assert session.events_received() == [Ping(b"hello"), Pong(b"x")]
    assert server_frames(session.data_to_send()) == [(0xA, True, b"hello")]


def test_bytes_may_arrive_split_anywhere() -> None:
    session = open_session()
    wire = client_frame(Opcode.TEXT, "hé".encode()) + client_frame(Opcode.BINARY, b"\x00" * 300)
    events = []
    for i in range(len(wire)):
        session.receive_data(wire[i : i + 1], now=0.0)
        events += session.events_received()
    assert events == [
        Fragment(True, "hé".encode(), True, True),
        Fragment(False, b"\x00" * 300, True, True),
    ]


def test_message_limit_is_checked_from_the_header_across_fragments() -> None:
    session = open_session(max_message_size=1000)
    session.receive_data(client_frame(Opcode.BINARY, b"a" * 600, fin=False), now=0.0)
    assert len(session.events_received()) == 1
    # Only the header of the next fragment arrives: 600 + 500 is over the limit already.
    frame = client_frame(Opcode.CONT, b"b" * 500, fin=True)
    session.receive_data(frame[:8], now=0.0)
    assert session.events_received() == []
    code, reason = close_of(session.data_to_send())
    assert code == 1009
    assert "1000" in reason


@pytest.mark.parametrize("limit", [16 * 1024 * 1024, None], ids=["default", "unlimited"])
def test_large_messages_under_the_limit_pass(limit: int | None) -> None:
    session = open_session(max_message_size=limit)
    big = b"z" * (3 * 1024 * 1024)
    session.receive_data(client_frame(Opcode.BINARY, big), now=0.0)
    session.receive_data(client_frame(Opcode.BINARY, big, fin=False), now=0.0)
    session.receive_data(client_frame(Opcode.CONT, big, fin=True), now=0.0)
    assert [len(e.data) for e in session.events_received() if isinstance(e, Fragment)] == [
        len(big)
    ] * 3
    assert session.data_to_send() == []


def test_control_frames_inside_a_message_do_not_count_towards_its_limit() -> None:
    session = open_session(max_message_size=1000)
    session.receive_data(client_frame(Opcode.TEXT, b"a" * 1000, fin=False), now=0.0)
    session.receive_data(client_frame(Opcode.PING, b"p" * 125), now=0.0)
    assert server_frames(session.data_to_send()) == [(0xA, True, b"p" * 125)]
    session.receive_data(client_frame(Opcode.CONT, b"", fin=True), now=0.0)
    events = session.events_received()
    assert [type(e).__name__ for e in events] == ["Fragment", "Ping", "Fragment"]
    # The next message has the whole limit again.
    session.receive_data(client_frame(Opcode.BINARY, b"b" * 1000), now=0.0)
    assert len(session.events_received()) == 1
    assert session.data_to_send() == []


def test_a_small_data_frame_just_over_the_limit_is_refused_exactly() -> None:
    session = open_session(max_message_size=1000)
    session.receive_data(client_frame(Opcode.BINARY, b"a" * 990, fin=False), now=0.0)
    session.receive_data(client_frame(Opcode.CONT, b"b" * 11, fin=True), now=0.0)
    assert len(session.events_received()) == 1
    assert close_of(session.data_to_send()) == (
        1009,
        "frame with 11 bytes after reading 990 bytes exceeds limit of 1000 bytes",
    )


def test_with_deflate_the_limit_applies_to_the_decompressed_size() -> None:
    session = Session(compression={}, limits=Limits(max_message_size=1000))
    raw, _ = request_bytes(extra=("Sec-WebSocket-Extensions: permessage-deflate",))
    assert session.receive_request(raw).status_code == 101
    session.data_to_send()
    deflate = PerMessageDeflate(False, False, 15, 15)
    small = Frame(Opcode.TEXT, b"a" * 1000).serialize(mask=True, extensions=[deflate])
    session.receive_data(small, now=0.0)
    assert session.events_received() == [Fragment(True, b"a" * 1000, True, True)]
    bomb = Frame(Opcode.TEXT, b"a" * 100_000).serialize(mask=True, extensions=[deflate])
    assert len(bomb) < 200
    session.receive_data(bomb, now=0.0)
    assert session.events_received() == []
    assert close_of(session.data_to_send())[0] == 1009


def test_frame_limit_is_checked_from_the_header() -> None:
    session = open_session(max_message_size=None, max_frame_size=100)
    session.receive_data(client_frame(Opcode.BINARY, b"a" * 100), now=0.0)
    assert len(session.events_received()) == 1
    session.receive_data(client_frame(Opcode.BINARY, b"a" * 101)[:8], now=0.0)
    assert close_of(session.data_to_send())[0] == 1009


# --- UTF-8 ---------------------------------------------------------------------------------------


def test_multibyte_characters_may_be_split_across_fragments() -> None:
    session = open_session()
    text = "é€😀".encode()
    for i, byte in enumerate(text):
        opcode = Opcode.TEXT if i == 0 else Opcode.CONT
        session.receive_data(client_frame(opcode, bytes([byte]), fin=i == len(text) - 1), now=0.0)
    events = session.events_received()
    assert b"".join(e.data for e in events if isinstance(e, Fragment)) == text
    assert session.data_to_send() == []


@pytest.mark.parametrize(
    ("fragments", "delivered"),
    [
        # Bad already in the first, unfinished fragment: fails before any more arrive.
        ([b"ok \xff more"], 0),
        # An invalid sequence split across the boundary: fails at the second fragment,
        # before the message's final fragment.
        ([b"ab\xe2\x82", b"(xyz"], 1),
        # A UTF-16 surrogate encoded in UTF-8 is not valid UTF-8.
        ([b"a", b"\xed\xa0\x80"], 1),
        # Overlong encoding of "/".
        ([b"\xc0\xaf"], 0),
    ],
    ids=["first-fragment", "across-boundary", "surrogate", "overlong"],
)
def test_invalid_utf8_fails_fast_mid_message(fragments: list[bytes], delivered: int) -> None:
    session = open_session()
    events: list[Any] = []
    for i, data in enumerate(fragments):
        opcode = Opcode.TEXT if i == 0 else Opcode.CONT
        session.receive_data(client_frame(opcode, data, fin=False), now=0.0)
        events += session.events_received()
    # No fragment with FIN was ever sent: the failure cannot have waited for the end.
    assert len(events) == delivered
    code, reason = close_of(session.data_to_send())
    assert code == 1007
    assert "UTF-8" in reason
    # Whatever follows is discarded.
    session.receive_data(client_frame(Opcode.CONT, b"fine", fin=True), now=0.0)
    assert session.events_received() == []


@pytest.mark.parametrize(
    "after",
    [
        client_frame(Opcode.PING, b"ping"),
        client_frame(Opcode.CLOSE, close_payload(1000)),
        client_frame(Opcode.TEXT, b"fine"),
        b"\x83\x80" + b"\x00" * 4,  # reserved opcode 0x3
    ],
    ids=["ping", "close", "text", "garbage"],
)
@pytest.mark.parametrize("compression", [None, {}], ids=["plain", "deflate"])
def test_nothing_after_invalid_utf8_in_the_same_read_is_processed(
    after: bytes, compression: dict[str, Any] | None
) -> None:
    """RFC 6455 section 7.1.7: once failed, the server processes no more data, even frames
    that arrived in the same read as the bad one."""
    session = Session(compression=compression)
    raw, _ = request_bytes(extra=("Sec-WebSocket-Extensions: permessage-deflate",))
    assert session.receive_request(raw).status_code == 101
    assert session.compressed is (compression is not None)
    session.data_to_send()
    session.receive_data(client_frame(Opcode.TEXT, b"ok \xff", fin=False) + after, now=0.0)
    assert session.events_received() == []
    out = session.data_to_send()
    assert [opcode for opcode, _, _ in server_frames(out)] == [0x8, -1]
    assert close_of(out)[0] == 1007


def test_truncated_character_at_the_end_of_a_message_is_1007() -> None:
    session = open_session()
    session.receive_data(client_frame(Opcode.TEXT, b"abc\xe2", fin=False), now=0.0)
    assert len(session.events_received()) == 1  # could still be completed
    session.receive_data(client_frame(Opcode.CONT, b"\x82", fin=True), now=0.0)
    assert session.events_received() == []
    assert close_of(session.data_to_send())[0] == 1007


def test_utf8_state_resets_between_messages() -> None:
    session = open_session()
    session.receive_data(client_frame(Opcode.TEXT, b"\xe2\x82", fin=False), now=0.0)
    session.receive_data(client_frame(Opcode.CONT, b"\xac", fin=True), now=0.0)  # "€"
    session.receive_data(client_frame(Opcode.TEXT, b"\xac"), now=0.0)  # alone: invalid
    events = session.events_received()
    assert [e.data for e in events if isinstance(e, Fragment)] == [b"\xe2\x82", b"\xac"]
    assert close_of(session.data_to_send())[0] == 1007


def test_binary_messages_are_not_utf8_checked() -> None:
    session = open_session()
    session.receive_data(client_frame(Opcode.BINARY, b"\xff\xfe", fin=False), now=0.0)
    session.receive_data(client_frame(Opcode.CONT, b"\xc0", fin=True), now=0.0)
    assert len(session.events_received()) == 2
    assert session.data_to_send() == []


# --- rate limit ----------------------------------------------------------------------------------


def test_rate_limiter_refills_with_explicit_time() -> None:
    bucket = RateLimiter(2.0, burst=3)
    assert [bucket.allow(10.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.allow(10.4) is False  # 0.8 tokens
    assert bucket.allow(10.5) is True  # 1.0 token
    assert bucket.allow(10.5) is False
    assert bucket.allow(100.0) and bucket.allow(100.0) and bucket.allow(100.0)
    assert not bucket.allow(100.0)  # never more than the burst
    assert bucket.allow(99.0) is False  # time going backwards adds nothing


def test_rate_limiter_default_burst_is_one_second() -> None:
    assert RateLimiter(5.0).burst == 5.0
    assert RateLimiter(0.5).burst == 1.0
    with pytest.raises(ValueError):
        RateLimiter(0)


def test_session_rate_limit_closes_1008_with_reason() -> None:
    session = open_session(rate_limit=2.0, rate_limit_burst=2)
    for _ in range(2):
        session.receive_data(client_frame(Opcode.TEXT, b"m"), now=50.0)
    assert len(session.events_received()) == 2
    session.receive_data(client_frame(Opcode.TEXT, b"m"), now=50.1)
    assert session.events_received() == []
    code, reason = close_of(session.data_to_send())
    assert code == 1008
    assert reason == "rate limit exceeded: more than 2 messages/s"


def test_rate_limit_counts_messages_not_fragments_and_refills() -> None:
    session = open_session(rate_limit=1.0, rate_limit_burst=1)
    session.receive_data(client_frame(Opcode.BINARY, b"a", fin=False), now=0.0)
    for _ in range(10):
        session.receive_data(client_frame(Opcode.CONT, b"a", fin=False), now=0.0)
    session.receive_data(client_frame(Opcode.CONT, b"a", fin=True), now=0.0)
    session.receive_data(client_frame(Opcode.BINARY, b"b"), now=1.0)
    session.receive_data(client_frame(Opcode.BINARY, b"c"), now=2.0)
    assert len(session.events_received()) == 14
    assert session.data_to_send() == []


# --- frame tap ---------------------------------------------------------------------------------


def test_unwatched_tap_records_nothing_and_reads_no_clock() -> None:
    reads = []

    def clock() -> float:
        reads.append(1)
        return 0.0

    tap = FrameTap(100)
    session = open_session(tap=tap, clock=clock)
    session.receive_data(client_frame(Opcode.TEXT, b"hi"), now=0.0)
    session.receive_data(client_frame(Opcode.PING, b"p"), now=0.0)
    session.send_text(b"hi")
    session.send_encoded(encode_frame(b"x", text=False))
    session.send_close(1000)
    session.data_to_send()
    assert len(tap) == 0
    assert reads == []


def test_watched_tap_records_frames_in_and_out() -> None:
    times = iter(range(100, 200))
    tap = FrameTap(100)
    seen: list[FrameRecord] = []
    session = open_session(tap=tap, clock=lambda: float(next(times)))
    session.receive_data(client_frame(Opcode.TEXT, b"before"), now=0.0)
    assert len(tap) == 0
    tap.watch(seen.append)
    long_payload = bytes(range(255, -1, -1)) * 2
    session.receive_data(client_frame(Opcode.BINARY, long_payload, fin=False), now=0.0)
    session.receive_data(client_frame(Opcode.CONT, b"end", fin=True), now=0.0)
    session.receive_data(client_frame(Opcode.PING, b"p?"), now=0.0)  # pong is queued
    session.send_text("réponse".encode())
    session.send_encoded(encode_message(b"0123456789", text=False, fragment_size=4))
    session.send_close(1001, "bye")
    records = list(tap)
    assert seen == records
    summary = [(r.direction, r.opcode_name, r.fin, r.masked, r.length) for r in records]
    assert summary == [
        ("in", "BINARY", False, True, 512),
        ("in", "CONT", True, True, 3),
        ("in", "PING", True, True, 2),
        ("out", "PONG", True, False, 2),
        ("out", "TEXT", True, False, len("réponse".encode())),
        ("out", "BINARY", False, False, 4),
        ("out", "CONT", False, False, 4),
        ("out", "CONT", True, False, 2),
        ("out", "CLOSE", True, False, 5),
    ]
    assert records[0].preview == long_payload[:64]
    assert records[2].preview == b"p?"
    assert records[4].preview == "réponse".encode()
    assert [r.preview for r in records[5:8]] == [b"0123", b"4567", b"89"]
    assert records[8].preview == b"\x03\xe9bye"
    assert all(r.rsv == (False, False, False) for r in records)
    assert [r.time for r in records] == sorted(r.time for r in records)
    assert records[4].as_dict()["preview"] == "réponse"
    assert records[0].as_dict()["preview_kind"] == "hex"
    # What was recorded is exactly what goes out.
    out = session.data_to_send()
    assert [(op, fin, len(p)) for op, fin, p in server_frames(out)] == [
        (0xA, True, 2),
        (0x1, True, 8),
        (0x2, False, 4),
        (0x0, False, 4),
        (0x0, True, 2),
        (0x8, True, 5),
    ]


def test_tap_stops_when_the_last_listener_leaves_and_is_bounded() -> None:
    tap = FrameTap(3)
    session = open_session(tap=tap)

    def listener(record: FrameRecord) -> None:
        pass

    tap.watch(listener)
    for i in range(5):
        session.receive_data(client_frame(Opcode.BINARY, bytes([i])), now=0.0)
    assert len(tap) == 3
    assert tap.dropped == 2
    assert [r.preview for r in tap] == [b"\x02", b"\x03", b"\x04"]
    tap.unwatch(listener)
    assert not tap.active
    session.receive_data(client_frame(Opcode.BINARY, b"late"), now=0.0)
    assert len(tap) == 3


def test_tap_watched_before_the_handshake_does_not_record_the_http_response() -> None:
    tap = FrameTap(10)
    tap.watch()
    session = Session(tap=tap)
    raw, _ = request_bytes()
    assert session.receive_request(raw).status_code == 101
    session.send_text(b"hi")
    assert [(r.direction, r.opcode_name, r.length) for r in tap] == [("out", "TEXT", 2)]
    out = session.data_to_send()
    assert out[0].startswith(b"HTTP/1.1 101 ")
    assert b"".join(out[1:]) == b"\x81\x02hi"


@pytest.mark.parametrize(
    ("wire", "recorded", "code"),
    [
        # A good message, then bad text in the same read: both recorded in order.
        (
            client_frame(Opcode.TEXT, b"good") + client_frame(Opcode.TEXT, b"\xff"),
            [("in", "TEXT", 4), ("in", "TEXT", 1), ("out", "CLOSE", 1007)],
            1007,
        ),
        # Only the header of an oversize frame: nothing came in, the close goes out.
        (client_frame(Opcode.BINARY, b"x" * 2000)[:8], [("out", "CLOSE", 1009)], 1009),
    ],
    ids=["bad-utf8", "oversize"],
)
def test_tap_records_the_close_a_session_fails_with(
    wire: bytes, recorded: list[tuple[str, str, int]], code: int
) -> None:
    tap = FrameTap(10)
    tap.watch()
    session = open_session(tap=tap, max_message_size=1000)
    session.receive_data(wire, now=0.0)
    rows = [(r.direction, r.opcode_name, r.length) for r in tap]
    assert [row[:2] for row in rows] == [row[:2] for row in recorded]
    assert [r.length for r in tap if r.direction == "in"] == [
        length for direction, _, length in recorded if direction == "in"
    ]
    assert list(tap)[-1].preview[:2] == code.to_bytes(2, "big")


# --- encode once, send many ---------------------------------------------------------------------


def test_encode_frame_matches_the_wire_format() -> None:
    assert encode_frame(b"hi", text=True) == b"\x81\x02hi"
    assert encode_frame(b"hi", text=False, fin=False) == b"\x02\x02hi"
    assert encode_frame(b"hi", text=False, continuation=True) == b"\x80\x02hi"
    big = encode_frame(b"x" * 70000, text=False)
    assert big[:10] == b"\x82\x7f" + (70000).to_bytes(8, "big")
    assert encode_frame(b"y" * 300, text=False)[:4] == b"\x82\x7e\x01\x2c"


@pytest.mark.parametrize("length", [0, 1, 125, 126, 65535, 65536, 70000])
@pytest.mark.parametrize(
    ("text", "continuation", "opcode"),
    [(True, False, Opcode.TEXT), (False, False, Opcode.BINARY), (False, True, Opcode.CONT)],
)
@pytest.mark.parametrize("fin", [True, False])
def test_encode_frame_equals_the_websockets_serialiser(
    length: int, text: bool, continuation: bool, opcode: Opcode, fin: bool
) -> None:
    payload = bytes(i % 251 for i in range(length))
    expected = Frame(opcode, payload, fin).serialize(mask=False, extensions=[])
    assert encode_frame(payload, text=text, fin=fin, continuation=continuation) == expected
    view = memoryview(b"--" + payload)[2:]
    assert encode_frame(view, text=text, fin=fin, continuation=continuation) == expected


def test_encode_message_fragments_large_payloads() -> None:
    assert encode_message(b"abc", text=True, fragment_size=3) == encode_frame(b"abc", text=True)
    frames = server_frames([encode_message(b"abcdefgh", text=True, fragment_size=3)])
    assert frames == [(0x1, False, b"abc"), (0x0, False, b"def"), (0x0, True, b"gh")]


def test_send_encoded_keeps_order_with_other_sends() -> None:
    session = open_session()
    session.send_text(b"1")
    session.send_encoded(encode_frame(b"2", text=False))
    session.receive_data(client_frame(Opcode.PING, b"3"), now=0.0)  # queues a pong
    session.send_encoded(encode_frame(b"4", text=True))
    session.send_binary(b"5")
    session.send_encoded(encode_frame(b"6", text=False))
    frames = server_frames(session.data_to_send())
    assert [(op, data) for op, _, data in frames] == [
        (0x1, b"1"),
        (0x2, b"2"),
        (0xA, b"3"),
        (0x1, b"4"),
        (0x2, b"5"),
        (0x2, b"6"),
    ]


def test_send_encoded_is_refused_mid_fragmented_message_and_with_compression() -> None:
    session = open_session()
    session.send_binary(b"start", fin=False)
    assert not session.can_send_encoded
    with pytest.raises(InvalidState, match="fragmented"):
        session.send_encoded(encode_frame(b"x", text=False))
    session.send_continuation(b"end", fin=True)
    assert session.can_send_encoded
    assert [data for _, _, data in server_frames(session.data_to_send())] == [b"start", b"end"]

    compressed = Session(compression={})
    raw, _ = request_bytes(extra=("Sec-WebSocket-Extensions: permessage-deflate",))
    assert compressed.receive_request(raw).status_code == 101
    assert not compressed.can_send_encoded
    with pytest.raises(InvalidState, match="compression"):
        compressed.send_encoded(encode_frame(b"x", text=False))


# --- limits come from the settings object -----------------------------------------------


def declared_frame(length: int) -> bytes:
    """The header (and masking key) of a client binary frame declaring ``length`` bytes."""
    return b"\x82\xff" + length.to_bytes(8, "big") + b"\x00\x00\x00\x00"


def test_a_default_session_has_the_settings_defaults() -> None:
    from nbws.config import Nbws

    defaults = Nbws()
    assert Limits.default() == Limits.from_config(defaults)
    assert Limits.default().max_frame_size == defaults.max_frame_size
    session = open_session()
    session.receive_data(declared_frame(defaults.max_frame_size + 1), now=0.0)
    assert close_of(session.data_to_send())[0] == 1009


def test_from_config_takes_limits_subprotocols_and_tap_size_from_nbws() -> None:
    from nbws.config import Nbws

    config = Nbws(
        max_frame_size=100,
        max_message_size=0,  # no limit
        rate_limit=1.0,
        rate_limit_burst=1,
        subprotocols={"streams": ["nbws.v1"]},
        frame_tap_size=7,
    )
    assert Limits.from_config(config) == Limits(None, 100, 1.0, 1)
    session = Session.from_config(config, "streams")
    assert session.tap.capacity == 7
    raw, _ = request_bytes(extra=("Sec-WebSocket-Protocol: nbws.v1",))
    assert session.receive_request(raw).status_code == 101
    assert session.subprotocol == "nbws.v1"
    session.data_to_send()
    session.receive_data(client_frame(Opcode.BINARY, b"a" * 100), now=0.0)
    session.receive_data(client_frame(Opcode.BINARY, b"b"), now=0.0)  # over the rate
    assert len(session.events_received()) == 1
    assert close_of(session.data_to_send())[0] == 1008
    other = Session.from_config(config, "echo")
    other.receive_request(request_bytes()[0])
    other.data_to_send()
    other.receive_data(declared_frame(101), now=0.0)
    assert close_of(other.data_to_send())[0] == 1009
