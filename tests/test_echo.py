"""The echo playground against a real `nbws serve`, driven by the `websockets` client."""

from __future__ import annotations

import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus


async def test_text_and_binary_are_echoed_with_same_opcode(nbws_server):
    async with websockets.connect(nbws_server.url()) as ws:
        await ws.send("héllo wörld")
        assert await ws.recv() == "héllo wörld"
        await ws.send(b"\x00\xff\x10")
        assert await ws.recv() == b"\x00\xff\x10"


async def test_fragmented_input_is_echoed_as_one_message(nbws_server):
    async with websockets.connect(nbws_server.url()) as ws:
        await ws.send(["ab", "cd", "é"])
        assert await ws.recv() == "abcdé"


async def test_fragment_option_resends_as_n_byte_fragments(nbws_server):
    async with websockets.connect(nbws_server.url("/nbws/echo?fragment=3")) as ws:
        await ws.send(b"abcdefgh")
        fragments = [f async for f in ws.recv_streaming()]
        assert fragments == [b"abc", b"def", b"gh"]


async def test_close_option_closes_after_first_echo(nbws_server):
    async with websockets.connect(nbws_server.url("/nbws/echo?close=4001&reason=bye")) as ws:
        await ws.send("x")
        assert await ws.recv() == "x"
        with pytest.raises(ConnectionClosed) as info:
            await ws.recv()
    assert info.value.rcvd is not None
    assert (info.value.rcvd.code, info.value.rcvd.reason) == (4001, "bye")


async def test_subprotocol_is_selected_from_server_list(nbws_server):
    async with websockets.connect(nbws_server.url(), subprotocols=["other", "nbws.echo"]) as ws:
        assert ws.subprotocol == "nbws.echo"
    async with websockets.connect(nbws_server.url()) as ws:
        assert ws.subprotocol is None


@pytest.mark.parametrize("query", ["close=1005", "fragment=0", "delay_ms=abc", "close=999"])
async def test_bad_echo_options_are_a_400_before_upgrade(nbws_server, query):
    with pytest.raises(InvalidStatus) as info:
        async with websockets.connect(nbws_server.url(f"/nbws/echo?{query}")):
            pass
    assert info.value.response.status_code == 400
