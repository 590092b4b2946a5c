"""Property-based fuzzing of inbound frame streams against the nbws echo endpoint.

Hypothesis builds client byte streams: valid messages (fragmented, with pings between
fragments, UTF-8 cut at fragment boundaries), random frames (any opcode, RSV bits, missing
mask, lying or non-minimal lengths, invalid UTF-8, bad close bodies), and raw random bytes.
An independent RFC 6455 model (:mod:`nbws.explore.rfc`) says what the server owes for each
stream; the server must then either echo exactly (and answer every ping), or close with
one of the codes the model allows (1002/1007/1009, never 1011), never hang, never log an
error, and a bystander connection opened before must still be served.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from nbws.errors import ConnectionClosed
from nbws.explore import RawConnection, connect
from nbws.explore.frames import build_frame, close_payload, split_payload
from nbws.explore.rfc import expect_echo_server

LIMIT = 1024

TEXT = st.text(max_size=40).map(lambda s: s.encode("utf-8"))
BAD_UTF8 = st.sampled_from(
    [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90", b"\xc0\xaf", b"\x80", b"\xe2\x82"]
)
PAYLOAD = st.one_of(
    TEXT,
    st.binary(max_size=64),
    st.tuples(TEXT, BAD_UTF8, TEXT).map(b"".join),
    st.integers(100, LIMIT + 300).map(lambda n: b"x" * n),
)
CLOSE_BODY = st.one_of(
    st.just(b""),
    st.binary(min_size=1, max_size=1),
    st.builds(close_payload, st.sampled_from([1000, 1001, 1003, 1008, 1011, 3000, 4999]), TEXT),
    st.builds(close_payload, st.integers(0, 0xFFFF), st.binary(max_size=8)),
)
OPCODES = (
    [0x1] * 6
    + [0x2] * 4
    + [0x0] * 6
    + [0x9] * 3
    + [0xA, 0x8]
    + [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF]
)


@st.composite
def any_frame(draw: st.DrawFn) -> bytes:
    """One frame, valid or not in any header field or in its payload."""
    opcode = draw(st.sampled_from(OPCODES))
    payload = draw(CLOSE_BODY if opcode == 0x8 else PAYLOAD)
    declared = len(payload) + draw(st.sampled_from([0] * 20 + [-1, 1, 7]))
    return build_frame(
        opcode,
        payload,
        fin=draw(st.sampled_from([True, True, False])),
        rsv=draw(st.sampled_from([(0, 0, 0)] * 12 + [(1, 0, 0), (0, 1, 0), (0, 0, 1)])),
        mask=draw(st.sampled_from([True] * 12 + [False])),
        length=max(declared, 0),
        length_form=draw(st.sampled_from([None] * 10 + [16, 64])),
    )


@st.composite
def valid_message(draw: st.DrawFn) -> bytes:
    """A valid message in 1-4 fragments (cut anywhere, even inside a UTF-8 sequence), with
    pings between the fragments."""
    text = draw(st.booleans())
    if draw(st.integers(0, 7)) == 0:
        data = b"y" * draw(st.integers(LIMIT - 40, LIMIT + 40))  # around max_message_size
    else:
        data = draw(TEXT if text else st.binary(max_size=200))
    pieces = split_payload(data, draw(st.integers(1, 4)))
    frames = []
    for index, piece in enumerate(pieces):
        opcode = (0x1 if text else 0x2) if index == 0 else 0x0
        frames.append(build_frame(opcode, piece, fin=index == len(pieces) - 1))
        if draw(st.integers(0, 4)) == 0:
            frames.append(build_frame(0x9, draw(st.binary(max_size=20))))
    return b"".join(frames)


STREAMS = st.one_of(
    st.lists(valid_message(), min_size=1, max_size=4).map(b"".join),
    st.tuples(
        st.lists(valid_message(), max_size=3).map(b"".join),
        any_frame(),
        st.lists(valid_message(), max_size=2).map(b"".join),
    ).map(b"".join),
    st.lists(any_frame(), min_size=1, max_size=6).map(b"".join),
    st.binary(min_size=1, max_size=120),
    st.tuples(valid_message(), st.binary(min_size=1, max_size=40)).map(b"".join),
)


def echoes_of(conn: RawConnection) -> list[tuple[bool, bytes]]:
    """Whole messages the server sent, as ``(is_text, payload)``."""
    messages: list[tuple[bool, bytes]] = []
    current: tuple[bool, list[bytes]] | None = None
    for frame in conn.received:
        if frame.opcode in (0x1, 0x2):
            current = (frame.opcode == 0x1, [frame.payload])
        elif frame.opcode == 0x0 and current is not None:
            current[1].append(frame.payload)
        else:
            continue
        if frame.fin and current is not None:
            messages.append((current[0], b"".join(current[1])))
            current = None
    return messages


def pongs_of(conn: RawConnection) -> list[bytes]:
    return [frame.payload for frame in conn.received if frame.opcode == 0xA]


def exercise(url: str, stream: bytes) -> str:
    """Send ``stream`` and hold the server to what RFC 6455 requires for it; returns a label
    of the outcome for Hypothesis' statistics."""
    expect = expect_echo_server(stream, max_message_size=LIMIT)
    with connect(url) as bystander:
        conn = connect(url)
        try:
            with suppress(ConnectionClosed):
                conn.send_raw(stream)
            if expect.close_codes is None:
                for _ in expect.echoes:
                    conn.receive()
                for _ in expect.pongs:
                    conn.wait_for("pong")
                code, _ = conn.close(1000)
                assert code in ({1000, 1002} if expect.message_in_progress else {1000})
                assert echoes_of(conn) == expect.echoes
                assert pongs_of(conn) == expect.pongs
                outcome = f"{len(expect.echoes)} echoes, {len(expect.pongs)} pongs, closed {code}"
            else:
                if expect.incomplete:
                    conn.send_eof()
                conn.wait_closed()
                assert conn.close_code in expect.close_codes, (expect.reason, conn.close_reason)
                echoed, ponged = echoes_of(conn), pongs_of(conn)
                assert echoed == expect.echoes[: len(echoed)]
                assert ponged == expect.pongs[: len(ponged)]
                outcome = f"server closed {conn.close_code}"
        finally:
            conn.abort()
        bystander.text("bystander")
        assert bystander.receive() == "bystander"
    return outcome


@pytest.fixture
def server_options() -> dict[str, Any]:
    return {"max_message_size": LIMIT}


def server_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(stream=STREAMS)
async def test_any_inbound_stream_is_echoed_or_closed_correctly(nbws_server, caplog, stream):
    # One server for every example on purpose: a bad stream must not hurt what comes next.
    caplog.set_level(logging.WARNING)
    event(await asyncio.to_thread(exercise, nbws_server.url(), stream))
    assert not server_errors(caplog)


async def test_every_fuzzed_connection_is_released(nbws_server, caplog):
    """After a burst of hostile streams the server holds no connection and logged no error."""
    caplog.set_level(logging.WARNING)
    streams = [
        build_frame(0x1, b"\xff"),
        build_frame(0x3, b""),
        build_frame(0x2, b"x" * 50)[:20],
        b"\x00" * 30,
        build_frame(0x8, close_payload(1000)),
    ]
    for stream in streams:
        await asyncio.to_thread(exercise, nbws_server.url(), stream)
    registry = nbws_server.server.context.registry
    await asyncio.wait_for(asyncio.gather(*(conn.closed for conn in list(registry))), 5)
    assert len(registry) == 0
    assert not server_errors(caplog)
