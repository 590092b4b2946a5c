"""The frame tap endpoint: what the FrameInspector shows."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets


async def next_of(ws: websockets.ClientConnection, kind: str) -> dict:
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if message["type"] == kind:
            return message


async def test_tap_shows_frames_of_a_labelled_echo_connection(nbws_server):
    tap = await websockets.connect(nbws_server.url("/nbws/tap?label=lab1"))
    async with websockets.connect(nbws_server.url("/nbws/echo?tap=lab1&fragment=4")) as echo:
        attached = await next_of(tap, "attached")
        assert attached["path"] == "/nbws/echo" and attached["query"]["fragment"] == "4"
        await echo.send(["abc", "defgh", "ij"])  # fragments in (the client ends with an empty one)
        assert [f async for f in echo.recv_streaming()] == ["abcd", "efgh", "ij"]
    frames = []
    while (message := json.loads(await asyncio.wait_for(tap.recv(), 10)))["type"] != "closed":
        if message["type"] == "frame":
            frames.append(message)
    closed = message
    data = [f for f in frames if f["opcode_name"] in ("TEXT", "CONT")]
    inbound = [f for f in data if f["direction"] == "in"]
    outbound = [f for f in data if f["direction"] == "out"]
    assert inbound[0]["opcode_name"] == "TEXT" and not inbound[0]["fin"]
    assert all(f["opcode_name"] == "CONT" for f in inbound[1:]) and inbound[-1]["fin"]
    assert all(f["masked"] for f in inbound)
    assert "".join(f["preview"] for f in inbound) == "abcdefghij"
    assert [(f["opcode_name"], f["fin"], f["length"]) for f in outbound] == [
        ("TEXT", False, 4),
        ("CONT", False, 4),
        ("CONT", True, 2),
    ]
    assert all(f["masked"] is False for f in outbound)
    closes = [f for f in frames if f["opcode_name"] == "CLOSE"]
    assert [f["direction"] for f in closes] == ["in", "out"]
    assert closed["code"] == 1000 and closed["sent_code"] == 1000
    await tap.close()


async def test_tap_waits_for_the_next_connection_with_its_label(nbws_server):
    async with websockets.connect(nbws_server.url("/nbws/tap?label=again")) as tap:
        for text in ("one", "two"):
            async with websockets.connect(nbws_server.url("/nbws/echo?tap=again")) as echo:
                await next_of(tap, "attached")
                await echo.send(text)
                assert await echo.recv() == text
                frame = await next_of(tap, "frame")
                assert frame["preview"] == text
            await next_of(tap, "closed")


async def test_tap_needs_a_label(nbws_server):
    with pytest.raises(websockets.exceptions.InvalidStatus) as info:
        async with websockets.connect(nbws_server.url("/nbws/tap")):
            pass
    assert info.value.response.status_code == 400


async def test_unwatched_connections_record_nothing(nbws_server):
    async with websockets.connect(nbws_server.url("/nbws/echo")) as echo:
        await echo.send("x")
        await echo.recv()
        (conn,) = [c for c in nbws_server.server.context.registry if c.path == "/nbws/echo"]
        assert conn.tap.active is False and len(conn.tap) == 0
