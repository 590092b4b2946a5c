"""RFC 6455 conformance of the nbws echo endpoint, driven by the explorer's raw client.

Every failure case asserts the exact close code, that nothing was echoed first, that the
server then closed TCP, and that a second connection opened before it is still served.
The server runs in-process (so its log can be checked for tracebacks); the blocking client
runs in a worker thread so the server's event loop keeps going.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest

from nbws.errors import ConnectionClosed
from nbws.explore import RawConnection, connect, probe
from nbws.explore.frames import build_frame, close_payload

LIMIT = 64 * 1024
Frame = tuple[int, bytes | str, dict[str, Any]]


@pytest.fixture
def server_options() -> dict[str, Any]:
    return {"max_message_size": LIMIT}


@pytest.fixture(autouse=True)
def no_server_errors(caplog: pytest.LogCaptureFixture):
    """The server must never log an error or a traceback, whatever a client sends."""
    caplog.set_level(logging.WARNING)
    yield
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad, [r.getMessage() for r in bad]


def f(opcode: int, payload: bytes | str = b"", **options: Any) -> Frame:
    return (opcode, payload, options)


async def in_thread(check: Callable[..., None], *args: Any, **kwargs: Any) -> None:
    await asyncio.to_thread(check, *args, **kwargs)


def still_echoes(conn: RawConnection) -> None:
    conn.text("bystander")
    assert conn.receive() == "bystander"
    conn.binary(b"\x00bystander")
    assert conn.receive() == b"\x00bystander"


def fails_with(url: str, code: int, frames: list[Frame]) -> None:
    """Send ``frames``; the server must close with ``code`` and nobody else may notice."""
    with connect(url) as bystander:
        conn = connect(url)
        try:
            for opcode, payload, options in frames:
                conn.send_frame(opcode, payload, **options)
        except ConnectionClosed:
            pass  # the server already closed; judge what it sent
        close = conn.wait_for("close")
        assert close.close[0] == code, (close.close, conn.records)
        conn.wait_closed()
        assert [fr.opcode_name for fr in conn.received] == ["CLOSE"]
        still_echoes(bystander)


# --- protocol errors: 1002 -------------------------------------------------------------------


@pytest.mark.parametrize("opcode", [0x1, 0x2, 0x9, 0x8])
async def test_unmasked_client_frame(nbws_server, opcode):
    payload = close_payload(1000) if opcode == 0x8 else b"hello"
    await in_thread(fails_with, nbws_server.url(), 1002, [f(opcode, payload, mask=False)])


@pytest.mark.parametrize("opcode", [0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF])
async def test_reserved_opcode(nbws_server, opcode):
    await in_thread(fails_with, nbws_server.url(), 1002, [f(opcode, b"x")])


@pytest.mark.parametrize("rsv", [(1, 0, 0), (0, 1, 0), (0, 0, 1)])
async def test_rsv_bit_without_extension(nbws_server, rsv):
    await in_thread(fails_with, nbws_server.url(), 1002, [f(0x1, "hello", rsv=rsv)])


@pytest.mark.parametrize("opcode", [0x9, 0xA, 0x8])
async def test_fragmented_control_frame(nbws_server, opcode):
    payload = close_payload(1000) if opcode == 0x8 else b"ctl"
    await in_thread(fails_with, nbws_server.url(), 1002, [f(opcode, payload, fin=False)])


@pytest.mark.parametrize("opcode", [0x9, 0xA, 0x8])
async def test_control_frame_payload_over_125_bytes(nbws_server, opcode):
    payload = close_payload(1000, "r" * 124) if opcode == 0x8 else b"p" * 126
    await in_thread(fails_with, nbws_server.url(), 1002, [f(opcode, payload)])


@pytest.mark.parametrize("fin", [True, False])
async def test_continuation_without_a_message_started(nbws_server, fin):
    await in_thread(fails_with, nbws_server.url(), 1002, [f(0x0, "orphan", fin=fin)])


@pytest.mark.parametrize(("first", "second"), [(0x1, 0x1), (0x1, 0x2), (0x2, 0x1)])
async def test_new_data_frame_inside_a_fragmented_message(nbws_server, first, second):
    frames = [f(first, b"one", fin=False), f(second, b"two")]
    await in_thread(fails_with, nbws_server.url(), 1002, frames)


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1100, 2000, 2999, 5000])
async def test_invalid_close_code(nbws_server, code):
    await in_thread(fails_with, nbws_server.url(), 1002, [f(0x8, close_payload(code))])


async def test_close_with_a_one_byte_body(nbws_server):
    await in_thread(fails_with, nbws_server.url(), 1002, [f(0x8, b"\x03")])


# --- invalid UTF-8: 1007 ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [b"\xff", b"caf\xc3", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"ok \x80 ok"],
    ids=["ff", "truncated", "overlong", "surrogate", "over-10ffff", "lone-continuation"],
)
async def test_invalid_utf8_in_one_frame(nbws_server, payload):
    await in_thread(fails_with, nbws_server.url(), 1007, [f(0x1, payload)])


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (b"split \xf4", b"\x90\x80\x80"),  # a sequence cut by the fragment boundary
        (b"\xce", b"A"),  # lead byte, then no continuation byte
        (b"fine so far", b"then \xff"),  # the bad byte inside the second fragment
    ],
    ids=["across-boundary", "missing-continuation", "inside-second"],
)
async def test_invalid_utf8_fails_fast_before_the_final_fragment(nbws_server, first, second):
    url = nbws_server.url()

    def check() -> None:
        with connect(url) as bystander:
            conn = connect(url)
            conn.send_frame(0x1, first, fin=False)
            conn.ping(b"still open?")  # valid so far: the server must answer, not close
            assert conn.wait_for("pong").payload == b"still open?"
            conn.send_frame(0x0, second, fin=False)
            # the final fragment is never sent: the 1007 must come now
            close = conn.wait_for("close")
            assert close.close[0] == 1007
            conn.wait_closed()
            assert [fr.opcode_name for fr in conn.received] == ["PONG", "CLOSE"]
            still_echoes(bystander)

    await in_thread(check)


@pytest.mark.parametrize(
    "after",
    [
        f(0x3, b""),  # a protocol error must not replace the 1007
        f(0x9, b"late ping"),  # must not be answered: the connection has already failed
        f(0x8, close_payload(1000)),  # must not turn the failure into a normal close
        f(0x1, b"ok"),
    ],
    ids=["reserved-opcode", "ping", "close", "text"],
)
async def test_frames_after_invalid_utf8_in_the_same_write_are_not_processed(nbws_server, after):
    """RFC 6455 section 7.1.7: once the connection is to be failed (the bad text), the server
    must not go on processing data, even if more frames arrived in the same TCP read."""
    url = nbws_server.url()
    opcode, payload, options = after

    def check() -> None:
        with connect(url) as bystander:
            conn = connect(url)
            conn.send_raw(build_frame(0x1, b"\xff") + build_frame(opcode, payload, **options))
            conn.wait_closed()
            assert [(fr.opcode_name, fr.close[0]) for fr in conn.received] == [("CLOSE", 1007)]
            still_echoes(bystander)

    await in_thread(check)


async def test_utf8_sequence_cut_at_the_end_of_the_message(nbws_server):
    frames = [f(0x1, b"abc", fin=False), f(0x0, b"\xe2\x82", fin=True)]
    await in_thread(fails_with, nbws_server.url(), 1007, frames)


async def test_invalid_utf8_in_a_close_reason(nbws_server):
    await in_thread(fails_with, nbws_server.url(), 1007, [f(0x8, close_payload(1000, b"\xff\xfe"))])


# --- size: 1009 --------------------------------------------------------------------------------


async def test_message_over_max_size_closes_as_soon_as_the_running_total_exceeds_it(nbws_server):
    url = nbws_server.url()

    def check() -> None:
        with connect(url) as bystander:
            conn = connect(url)
            quarter = b"q" * (LIMIT // 4)
            conn.send_frame(0x2, quarter, fin=False)
            for _ in range(2):
                conn.send_frame(0x0, quarter, fin=False)
            conn.send_frame(0x0, quarter[:-200], fin=False)
            conn.ping(b"open?")  # 200 bytes under the limit: still open
            assert conn.wait_for("pong").payload == b"open?"
            conn.send_frame(0x0, quarter[-200:], fin=False)  # exactly the limit
            conn.send_frame(0x0, b"!", fin=False)  # one byte over; nothing else is sent
            close = conn.wait_for("close")
            assert close.close[0] == 1009
            conn.wait_closed()
            still_echoes(bystander)

    await in_thread(check)


async def test_single_frame_over_max_size(nbws_server):
    await in_thread(fails_with, nbws_server.url(), 1009, [f(0x2, b"x" * (LIMIT + 1))])


async def test_message_of_exactly_max_size_is_echoed(nbws_server):
    url = nbws_server.url()

    def check() -> None:
        with connect(url) as conn:
            conn.fragments(b"e" * LIMIT, 3)
            assert conn.receive() == b"e" * LIMIT

    await in_thread(check)


async def test_ping_inside_a_message_near_the_size_limit_is_answered(nbws_server):
    """Control frames are not part of the message (RFC 6455 sections 5.4, 5.5), so a ping
    between fragments must not count towards max_message_size."""
    url = nbws_server.url()

    def check() -> None:
        with connect(url) as conn:
            conn.send_frame(0x1, b"a" * (LIMIT - 10), fin=False)
            conn.ping(b"p" * 100)
            pong = conn.wait_for(lambda fr: fr.opcode in (0xA, 0x8))
            assert (pong.opcode_name, pong.payload) == ("PONG", b"p" * 100), conn.close_reason
            conn.send_frame(0x0, b"b" * 10, fin=True)
            assert conn.receive() == "a" * (LIMIT - 10) + "b" * 10

    await in_thread(check)


# --- valid input is echoed exactly ----------------------------------------------------------


async def test_empty_messages_are_echoed(nbws_server):
    url = nbws_server.url()

    def check() -> None:
        with connect(url) as conn:
            conn.text("")
            conn.binary(b"")
            assert [conn.receive(), conn.receive()] == ["", b""]
            echoes = [(fr.opcode_name, fr.fin, fr.payload) for fr in conn.received]
            assert echoes == [("TEXT", True, b""), ("BINARY", True, b"")]

    await in_thread(check)


@pytest.mark.parametrize("size", [0, 1, 125])
async def test_ping_gets_a_pong_with_the_same_payload(nbws_server, size):
    url = nbws_server.url()
    payload = bytes(range(size))

    def check() -> None:
        with connect(url) as conn:
            conn.ping(payload)
            pong = conn.wait_for("pong")
            assert pong.payload == payload and pong.fin and not pong.masked

    await in_thread(check)


async def test_fragmented_text_with_pings_interleaved(nbws_server):
    url = nbws_server.url()

    def check() -> None:
        with connect(url) as conn:
            conn.send_frame(0x1, "a", fin=False)
            conn.ping(b"1")
            conn.send_frame(0x0, "é", fin=False)
            conn.ping(b"2")
            conn.ping(b"3")
            conn.pong(b"unsolicited")  # ignored
            conn.send_frame(0x0, "c", fin=True)
            assert conn.receive() == "aéc"
            assert [conn.wait_for("pong").payload for _ in range(3)] == [b"1", b"2", b"3"]
            texts = [fr for fr in conn.received if fr.opcode_name == "TEXT"]
            assert len(texts) == 1 and texts[0].fin

    await in_thread(check)


async def test_zero_length_fragments(nbws_server):
    url = nbws_server.url()

    def check() -> None:
        with connect(url) as conn:
            conn.fragments(["", "", "x", ""])
            conn.fragments([b"", b""])
            assert [conn.receive(), conn.receive()] == ["x", b""]

    await in_thread(check)


@pytest.mark.parametrize("code", [1000, 1001, 1003, 1007, 1011, 1014, 3000, 4999])
async def test_valid_close_codes_are_echoed(nbws_server, code):
    url = nbws_server.url()

    def check() -> None:
        conn = connect(url)
        assert conn.close(code, "bye") == (code, "bye")

    await in_thread(check)


async def test_an_empty_close_is_answered_with_an_empty_close(nbws_server):
    url = nbws_server.url()

    def check() -> None:
        conn = connect(url)
        conn.close(None)
        assert conn.close_frame_payload == b"" and conn.close_code == 1005

    await in_thread(check)


# --- the handshake ------------------------------------------------------------------------------


def refused(url: str, status: int, **request: Any) -> None:
    with connect(url) as bystander:
        response = probe(url, **request)
        assert response.status == status, str(response)
        still_echoes(bystander)
        if status == 426:
            assert response.header("Sec-WebSocket-Version") == "13"
        assert response.header("Sec-WebSocket-Accept") is None


async def test_version_8_is_refused_with_426_naming_version_13(nbws_server):
    await in_thread(refused, nbws_server.url(), 426, headers={"Sec-WebSocket-Version": "8"})


@pytest.mark.parametrize(
    "key", [None, "", "garbage!", "c2hvcnQ="], ids=["missing", "empty", "not-base64", "8-bytes"]
)
async def test_missing_or_malformed_key_is_a_400(nbws_server, key):
    await in_thread(refused, nbws_server.url(), 400, headers={"Sec-WebSocket-Key": key})


async def test_post_is_not_an_upgrade(nbws_server):
    url = nbws_server.url()

    def check() -> None:
        response = probe(url, method="POST")
        assert response.status != 101 and 400 <= response.status < 500
        assert response.header("Upgrade") is None
        with connect(url) as bystander:
            still_echoes(bystander)

    await in_thread(check)


async def test_sec_websocket_accept_is_the_rfc_value(nbws_server):
    url = nbws_server.url()

    def check() -> None:
        response = probe(url, headers={"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
        assert response.status == 101
        assert response.header("Sec-WebSocket-Accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        assert response.header("Upgrade").lower() == "websocket"

    await in_thread(check)
