"""Every scenario against a real ``nbws serve`` process, and the whole set against a server
started with the ``websockets`` library's own ``serve``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import pytest
from conftest import RunningServer, start_serve_process, stop_serve_process
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from nbws.explore import scenarios
from nbws.explore.scenarios import FAIL, INFO, PASS, SCENARIOS

LIMIT = 64 * 1024  # nbws serve's max_message_size here, so the size scenarios stay small

# scenario -> (close code the server's close frame carried, verdict). The data scenarios end
# with the explorer's own close 1000, which the server echoes.
NBWS_EXPECTED: dict[str, tuple[set[int], str]] = {
    "fragmented_text_with_ping": ({1000}, PASS),
    "invalid_utf8_across_fragments": ({1007}, PASS),
    "invalid_utf8_text": ({1007}, PASS),
    "close_1005_on_wire": ({1002}, PASS),
    "empty_close": ({1005}, PASS),  # answered with an empty close frame
    "normal_close": ({1000}, PASS),
    "bad_close_code": ({1002}, PASS),
    "close_one_byte": ({1002}, PASS),
    "close_reason_not_utf8": ({1007}, PASS),
    "oversize_ping": ({1002}, PASS),
    "fragmented_ping": ({1002}, PASS),
    "ping_125": ({1000}, PASS),
    "empty_messages": ({1000}, PASS),
    "zero_length_fragments": ({1000}, PASS),
    "message_too_big": ({1009}, PASS),
    "ping_near_size_limit": ({1000}, PASS),
    "unmasked_frame": ({1002}, PASS),
    "reserved_opcode": ({1002}, PASS),
    "reserved_control_opcode": ({1002}, PASS),
    "rsv_bit": ({1002}, PASS),
    "continuation_without_start": ({1002}, PASS),
    "data_inside_fragmented": ({1002}, PASS),
    # RFC 6455 only asks for a close frame in reply; echoing 1000 would be a PASS
    "close_inside_fragmented": ({1000, 1002}, INFO),
    "non_minimal_length": ({1000}, INFO),  # accepted and echoed; the RFC is silent
    "slow_reader": ({1000}, PASS),
}


def test_the_expectation_table_covers_every_scenario():
    assert set(NBWS_EXPECTED) == set(SCENARIOS)


@pytest.fixture(scope="module")
def nbws_serve() -> Iterator[RunningServer]:
    server = start_serve_process("--set", f"max_message_size={LIMIT}")
    try:
        yield server
    finally:
        output = stop_serve_process(server)
        assert "Traceback" not in output, output


@pytest.mark.parametrize("name", list(NBWS_EXPECTED))
def test_scenario_against_nbws_serve(nbws_serve, name):
    outcome = scenarios.run(name, nbws_serve.url(), max_message_size=LIMIT)
    codes, verdict = NBWS_EXPECTED[name]
    assert outcome.close_code in codes, str(outcome)
    assert outcome.verdict == verdict, str(outcome)
    if name == "invalid_utf8_across_fragments":
        assert outcome.details["fail_fast"] is True
    if name == "slow_reader":
        assert outcome.details["stalled"] is True
        assert outcome.details["echoed_messages"] == outcome.details["messages"]
    assert outcome.connection is not None and outcome.connection.records


def test_run_all_table_renders(nbws_serve):
    names = ["unmasked_frame", "ping_125", "close_inside_fragmented"]
    table = scenarios.run_all(nbws_serve.url(), names=names)
    assert [o.name for o in table] == names
    text = repr(table)
    assert "scenario" in text and "RFC 6455 requires" in text and "2 PASS, 0 FAIL, 1 INFO" in text
    html = table._repr_html_()
    assert html.count("<tr class=") == 3 and "nbws-info" in html
    assert table["unmasked_frame"].close_code == 1002
    assert [row["verdict"] for row in table.rows()] == [PASS, PASS, INFO]


# --- against the websockets library's own server ------------------------------------------

# Scenarios where RFC 6455 fixes the close code: any conformant server must match.
REQUIRED_CLOSE = {
    name: next(iter(codes))
    for name, (codes, verdict) in NBWS_EXPECTED.items()
    if verdict == PASS and codes.isdisjoint({1000, 1005})
}


async def _echo(ws: ServerConnection) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for message in ws:
            await ws.send(message)


async def test_scenarios_run_against_a_websockets_library_server():
    async with serve(_echo, "127.0.0.1", 0, max_size=LIMIT) as server:
        port = server.sockets[0].getsockname()[1]
        table = await asyncio.to_thread(
            scenarios.run_all, f"ws://127.0.0.1:{port}/", max_message_size=LIMIT
        )
    assert len(table) == len(SCENARIOS)
    for name, code in REQUIRED_CLOSE.items():
        assert table[name].close_code == code, str(table[name])
        assert table[name].verdict == PASS, str(table[name])
    for name in (
        "fragmented_text_with_ping",
        "ping_125",
        "empty_messages",
        "zero_length_fragments",
        "normal_close",
        "empty_close",
        "slow_reader",
    ):
        assert table[name].verdict == PASS, str(table[name])
    # websockets checks UTF-8 when the whole message is there: a 1007, but not fail-fast
    assert table["invalid_utf8_across_fragments"].details["fail_fast"] is False
    assert all(o.verdict in (PASS, FAIL, INFO) for o in table)
