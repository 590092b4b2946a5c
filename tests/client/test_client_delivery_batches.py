"""A subscription receiving ``batch`` events from a scripted server: messages handed out
one by one, gaps and epochs in place, resume after the last offset of the last batch."""

from __future__ import annotations

from client_support import name, wait_until
from test_client_messages import OPTIONS, Script, scripted, send, url
from websockets.asyncio.server import ServerConnection

import nbws
from nbws.client import Gap, Message
from nbws.protocol import messages as m


def batch(stream: str, epoch: str, offsets: list[int]) -> m.Batch:
    return m.Batch(
        stream,
        epoch,
        tuple(m.Message(stream, o, epoch, 1.0, payload={"o": o}) for o in offsets),
    )


def subscribed(request: m.Subscribe, epoch: str, next_offset: int) -> m.Subscribed:
    return m.Subscribed(
        request.stream,
        epoch,
        0,
        next_offset,
        m.Policy.DROP_OLDEST,
        10,
        1000,
        since=request.since,
        ref=request.id,
        max_batch=request.max_batch,
        linger_ms=request.linger_ms,
    )


def test_batches_gaps_epochs_and_resume() -> None:
    async def handler(script: Script, ws: ServerConnection, n: int) -> None:
        request = await script.receive(ws)
        assert isinstance(request, m.Subscribe)
        if n == 0:
            await send(ws, subscribed(request, "e1", 0))
            await send(ws, batch(request.stream, "e1", [0, 1, 2]))
            await send(ws, m.Gap(request.stream, 3, m.GapReason.DROPPED, 5, 2, "e1"))
            await send(ws, batch(request.stream, "e1", [5, 6]))
            await ws.close()  # drop: the client resumes at 7 in e1
        else:
            await send(ws, subscribed(request, "e2", 2))
            await send(ws, m.Gap(request.stream, 7, m.GapReason.EPOCH, None, None, "e2"))
            await send(ws, batch(request.stream, "e2", [0, 1]))
            await ws.wait_closed()

    with scripted(handler) as script:
        stream = nbws.stream(name(), url=url(script), **OPTIONS)
        sub = stream.subscribe(since=0, yield_gaps=True)
        got = [sub.get(timeout=30) for _ in range(9)]
        described = [
            (g.reason, g.start, g.end) if isinstance(g, Gap) else (g.epoch, g.offset) for g in got
        ]
        assert described == [
            ("e1", 0),
            ("e1", 1),
            ("e1", 2),
            ("dropped", 3, 5),
            ("e1", 5),
            ("e1", 6),
            ("epoch", 7, None),
            ("e2", 0),
            ("e2", 1),
        ]
        assert all(
            isinstance(x, Message) and x.payload == {"o": x.offset}
            for x in got
            if not isinstance(x, Gap)
        )
        subscribes = [r for r in script.requests if isinstance(r, m.Subscribe)]
        # Batched by default (no linger), and the resume is after the last batch's end.
        assert [(r.since, r.epoch, r.max_batch, r.linger_ms) for r in subscribes] == [
            (0, None, 1000, None),
            (7, "e1", 1000, None),
        ]
        assert sub.cursor == 2 and sub.epoch == "e2" and sub.skipped_duplicates == 0
        sub.close()
        stream.close()


def test_a_resent_batch_is_not_handed_out_twice() -> None:
    async def handler(script: Script, ws: ServerConnection, n: int) -> None:
        request = await script.receive(ws)
        await send(ws, subscribed(request, "e1", 0))
        await send(ws, batch(request.stream, "e1", [0, 1, 2]))
        await send(ws, batch(request.stream, "e1", [1, 2, 3]))  # overlaps: 1, 2 again
        await ws.wait_closed()

    with scripted(handler) as script:
        stream = nbws.stream(name(), url=url(script), **OPTIONS)
        sub = stream.subscribe(since=0)
        got = [sub.get(timeout=30) for _ in range(4)]
        assert [x.offset for x in got] == [0, 1, 2, 3]  # type: ignore[union-attr]
        assert sub.skipped_duplicates == 2
        sub.close()
        stream.close()


def test_batches_are_never_larger_than_the_local_queue() -> None:
    """A slow consumer with a small queue must not hold many times its queue in read-ahead
    batches (the server's policy for it would then never act)."""

    async def handler(script: Script, ws: ServerConnection, n: int) -> None:
        request = await script.receive(ws)
        await send(ws, subscribed(request, "e1", 0))
        await ws.wait_closed()

    with scripted(handler) as script:
        stream = nbws.stream(name(), url=url(script), **OPTIONS)
        small = stream.subscribe(since=0, queue_size=3)
        default = stream.subscribe(since=0)
        wait_until(lambda: len([r for r in script.requests if isinstance(r, m.Subscribe)]) == 2)
        sizes = sorted(r.max_batch for r in script.requests if isinstance(r, m.Subscribe))
        assert sizes == [3, 1000]
        small.close()
        default.close()
        stream.close()
