"""The client against a real `nbws serve` subprocess: acks, subscribe, history, pandas,
binary payloads, failures that must be loud (nack, too big, deadline, outbox full)."""

from __future__ import annotations

import gc
import io
import json
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator

import pandas as pd
import pytest
from chaos import ChaosProxy
from client_support import closed_port, http_url, name, serving, wait_until
from conftest import RunningServer, start_serve_process, stop_serve_process

import nbws
from nbws.client import (
    ARROW_STREAM,
    DeliveryFailed,
    FlushError,
    Gap,
    Message,
    OutboxFull,
    StreamClosed,
)


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with serving("history_max_messages=100000") as running:
        yield running


@pytest.fixture
def url(server: RunningServer) -> str:
    return http_url(server)


def test_publish_10k_then_flush_every_message_is_acked(url: str) -> None:
    stream = nbws.stream(name(), url=url)
    receipts = [stream.publish({"i": i}) for i in range(10_000)]
    stream.flush(timeout=60)
    assert [r.result(0) for r in receipts] == list(range(10_000))
    stats = stream.stats()
    assert (stats.sent, stats.acked, stats.failed, stats.outbox_messages) == (10_000, 10_000, 0, 0)
    assert stats.latency_p50 is not None and stats.latency_p99 is not None
    assert stats.last_error is None and stats.connected
    # ... and a subscriber sees all of them, in order.
    with stream.subscribe(since=0) as sub:
        got = [sub.get(timeout=30) for _ in range(10_000)]
    assert [m.offset for m in got] == list(range(10_000))
    assert [m.payload["i"] for m in got] == list(range(10_000))
    assert {m.producer for m in got} == {stream.producer}
    assert [m.seq for m in got[:3]] == [0, 1, 2]
    stream.close()


def test_live_subscription_gets_new_messages_with_their_metadata(url: str) -> None:
    stream = nbws.stream(name(), url=url)
    stream.publish("before").result(10)
    with stream.subscribe() as sub:
        wait_until(lambda: sub.cursor is not None, what="subscribed")
        stream.publish({"v": 1}, key="AAPL")
        message = sub.get(timeout=10)
    assert isinstance(message, Message)
    assert (message.offset, message.payload, message.key) == (1, {"v": 1}, "AAPL")
    assert message.stream == stream.name and message.epoch and message.time > 0
    stream.close()


def test_subscribe_iterates_and_stops_when_idle(url: str) -> None:
    stream = nbws.stream(name(), url=url)
    for i in range(5):
        stream.publish(i)
    stream.flush(10)
    sub = stream.subscribe(since=-2, idle_timeout=0.5)
    assert [m.payload for m in sub] == [3, 4]
    sub.close()
    stream.close()


def test_history_ranges(url: str) -> None:
    stream = nbws.stream(name(), url=url)
    for i in range(50):
        stream.publish(i)
    stream.flush(10)
    assert [m.payload for m in stream.history(10, 15)] == [10, 11, 12, 13, 14]
    assert [m.offset for m in stream.history(45)] == [45, 46, 47, 48, 49]
    assert len(stream.history()) == 50
    assert stream.history(50) == []
    stream.close()


async def test_publish_async_and_async_for(url: str) -> None:
    stream = nbws.stream(name(), url=url)
    offsets = [await stream.publish_async({"n": n}) for n in range(3)]
    assert offsets == [0, 1, 2]
    got = []
    async with stream.subscribe(since=0) as sub:
        async for message in sub:
            got.append(message.payload["n"])
            if len(got) == 3:
                break
    assert got == [0, 1, 2]
    stream.close()


def sample_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "symbol": ["AAPL", "MSFT", "GOOG"],
            "price": [189.5, 410.25, 140.0],
            "volume": [100, 250, 75],
            "when": pd.to_datetime(["2024-01-02 09:30", "2024-01-02 09:31", "2024-01-02 09:32"]),
        }
    )


def test_dataframe_round_trip_as_json_records(url: str) -> None:
    stream = nbws.stream(name(), url=url)
    df = sample_frame()
    stream.publish_df(df).result(10)
    stream.publish_df(df.iloc[:1]).result(10)
    stream.publish({"symbol": "TSLA", "price": 1.0, "volume": 1})  # a plain dict is one row
    stream.flush(10)
    out = stream.replay_df()
    assert list(out.index) == [0, 0, 0, 1, 2] and out.index.name == "offset"
    assert list(out["symbol"]) == ["AAPL", "MSFT", "GOOG", "AAPL", "TSLA"]
    assert list(out["volume"]) == [100, 250, 75, 100, 1]
    # JSON carries dates as ISO strings (documented); they parse back to the same instants.
    assert list(pd.to_datetime(out["when"].iloc[:3])) == list(df["when"])
    raw = stream.history(0, 1)[0].payload
    assert raw[0] == {"symbol": "AAPL", "price": 189.5, "volume": 100, "when": raw[0]["when"]}
    stream.close()


def test_dataframe_round_trip_as_arrow_keeps_dtypes(url: str) -> None:
    stream = nbws.stream(name(), url=url)
    df = sample_frame()
    stream.publish_df(df, encoding="arrow").result(10)
    message = stream.history()[0]
    assert message.content_type == ARROW_STREAM and isinstance(message.payload, bytes)
    out = stream.to_pandas()
    assert list(out.index) == [0, 0, 0]
    pd.testing.assert_frame_equal(out.reset_index(drop=True), df)
    stream.close()


def test_publish_bytes_streams_bytes_files_and_iterators(url: str, tmp_path) -> None:
    stream = nbws.stream(name(), url=url)
    blob = bytes(range(256)) * 4096  # 1 MiB
    path = tmp_path / "blob.bin"
    path.write_bytes(blob)
    r1 = stream.publish_bytes(blob, chunk_size=64 * 1024, content_type="application/x-test")
    with open(path, "rb") as fh:
        r2 = stream.publish_bytes(fh, chunk_size=100_000)
        r2.result(30)
    r3 = stream.publish_bytes(iter([b"ab", b"", b"cd" * 50_000]), chunk_size=7_000)
    r4 = stream.publish_bytes(path)
    r5 = stream.publish_bytes(b"")
    stream.flush(30)
    assert [r.result(0) for r in (r1, r2, r3, r4, r5)] == [0, 1, 2, 3, 4]
    got = stream.history()
    assert got[0].payload == blob and got[0].content_type == "application/x-test"
    assert got[1].payload == blob and got[3].payload == blob
    assert got[2].payload == b"ab" + b"cd" * 50_000
    assert got[4].payload == b"" and got[4].binary
    stream.close()


def test_publish_bytes_refuses_text(url: str) -> None:
    stream = nbws.stream(name(), url=url)
    with pytest.raises(TypeError, match="binary file"):
        stream.publish_bytes(io.StringIO("text"))
    with pytest.raises(TypeError):
        stream.publish_bytes(12)
    stream.close()


def test_progress_bar_for_a_long_transfer(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("tqdm")
    stream = nbws.stream(name("bar"), url=url)
    stream.publish_bytes(b"x" * 300_000, chunk_size=10_000, progress=True).result(30)
    stream.close()
    err = capsys.readouterr().err
    assert f"nbws {stream.name}" in err and "293k" in err.lower()


def test_not_json_serialisable_raises_in_the_caller(url: str) -> None:
    stream = nbws.stream(name(), url=url)
    with pytest.raises(TypeError, match="not JSON"):
        stream.publish({"x": object()})
    assert stream.stats().outbox_messages == 0
    stream.close()


def test_handle_collected_without_flush_still_delivers(url: str) -> None:
    topic = name()
    nbws.stream(topic, url=url).publish({"fire": "and forget"})
    gc.collect()
    reader = nbws.stream(topic, url=url)
    wait_until(lambda: len(reader.history()) == 1, what="the message of a collected handle")
    reader.close()


def test_closed_handle_refuses_publishes(url: str) -> None:
    stream = nbws.stream(name(), url=url)
    stream.publish(1)
    stream.close()
    with pytest.raises(StreamClosed):
        stream.publish(2)


def test_unknown_options_are_named() -> None:
    with pytest.raises(TypeError, match=r"windw.*valid options: .*window"):
        nbws.stream("t", url="http://127.0.0.1:1/", windw=5)


# --- failures must be loud -------------------------------------------------------------


def test_message_over_the_server_limit_fails_and_flush_names_it() -> None:
    with serving("max_message_size=4096") as small:
        stream = nbws.stream(name(), url=http_url(small))
        ok = stream.publish("small")
        big = stream.publish("x" * 10_000)
        after = stream.publish("after")
        with pytest.raises(FlushError, match=r"1 messages failed: .*seq=1 .*too-big") as info:
            stream.flush(10)
        assert [f.seq for f in info.value.failures] == [1]
        with pytest.raises(DeliveryFailed) as failed:
            big.result(0)
        assert failed.value.code == "too-big"
        assert (ok.result(0), after.result(0)) == (0, 1)
        stream.flush(10)  # failures are reported once
        stream.close()


def test_binary_over_the_server_limit_fails_known_size_or_streamed() -> None:
    with serving("max_message_size=100000") as small:
        stream = nbws.stream(name(), url=http_url(small), backoff_initial=0.05)
        known = stream.publish_bytes(b"x" * 200_000, chunk_size=50_000)
        streamed = stream.publish_bytes(iter([b"y" * 50_000] * 4), chunk_size=50_000)
        fits = stream.publish_bytes(b"z" * 50_000)
        with pytest.raises(FlushError, match="2 messages failed"):
            stream.flush(20)
        for receipt in (known, streamed):
            with pytest.raises(DeliveryFailed) as failed:
                receipt.result(0)
            assert failed.value.code == "too-big"
        assert fits.result(0) == 0
        assert [m.payload for m in stream.history()] == [b"z" * 50_000]
        stream.close()


def test_nack_fails_the_future_with_the_server_code() -> None:
    with serving("auto_create_streams=False") as strict:
        stream = nbws.stream(name(), url=http_url(strict))
        receipt = stream.publish({"x": 1})
        with pytest.raises(DeliveryFailed) as failed:
            receipt.result(10)
        assert failed.value.code == "unknown-stream"
        with pytest.raises(FlushError, match="unknown-stream"):
            stream.flush(1)
        assert stream.stats().failed == 1
        stream.close()


def test_outbox_full_raises_with_block_false_and_after_timeout() -> None:
    stream = nbws.stream(
        name(),
        url=f"http://127.0.0.1:{closed_port()}/",
        outbox_max_messages=3,
        deadline=None,
        backoff_initial=0.05,
        backoff_max=0.1,
    )
    for i in range(3):
        stream.publish(i)
    with pytest.raises(OutboxFull):
        stream.publish(3, block=False)
    with pytest.raises(OutboxFull):
        stream.publish(3, timeout=0.2)
    assert stream.stats().outbox_messages == 3
    with pytest.raises(FlushError):
        stream.close(timeout=0.1)


def test_outbox_full_blocks_until_acks_make_room(server: RunningServer) -> None:
    with ChaosProxy(server.port) as proxy:
        stream = nbws.stream(name(), url=f"http://127.0.0.1:{proxy.port}/", outbox_max_messages=5)
        stream.publish(0).result(10)  # connected
        proxy.hold()  # acks stop coming back
        for i in range(1, 6):
            stream.publish(i)
        done = threading.Event()
        late: list[object] = []

        def producer() -> None:
            late.append(stream.publish(6))  # blocks: the outbox is full
            done.set()

        thread = threading.Thread(target=producer)
        thread.start()
        wait_until(lambda: stream._publisher.outbox._room_waiters == 1, what="a blocked publish")
        assert not done.is_set() and stream.stats().outbox_messages == 5
        proxy.release()
        assert done.wait(10)
        thread.join()
        stream.flush(10)
        assert late[0].result(0) == 6  # type: ignore[attr-defined]
        stream.close()


def test_unacked_messages_are_retransmitted_on_a_live_connection(
    server: RunningServer,
) -> None:
    with ChaosProxy(server.port) as proxy:
        stream = nbws.stream(name(), url=f"http://127.0.0.1:{proxy.port}/", ack_timeout=0.2)
        stream.publish("first").result(10)
        proxy.hold()  # acks are delayed, not lost
        receipts = [stream.publish(i) for i in range(3)]
        wait_until(lambda: stream.stats().retransmitted >= 6, what="two rounds of retransmits")
        proxy.release()
        stream.flush(10)
        stats = stream.stats()
        assert [r.result(0) for r in receipts] == [1, 2, 3]
        assert stats.reconnects == 0 and stats.acked == 4
        # The server's dedupe appended each message once, however often it was sent.
        assert [m.payload for m in stream.history()] == ["first", 0, 1, 2]
        stream.close()


def test_a_full_block_subscriber_holds_acks_so_publish_blocks() -> None:
    with serving("buffer_max_messages=5", "write_high_water=4096", "write_low_water=1024") as srv:
        url = http_url(srv)
        topic = name()
        stream = nbws.stream(topic, url=url, outbox_max_messages=5)
        sub = stream.subscribe(policy="block", queue_size=1)  # nobody reads it yet
        wait_until(lambda: sub.cursor is not None, what="subscribed")
        payload = "x" * 100_000
        finished = threading.Event()

        def producer() -> None:
            for _ in range(300):
                stream.publish(payload)
            finished.set()

        def subscriber_full() -> bool:
            with urllib.request.urlopen(f"{url}nbws/api/streams/{topic}", timeout=5) as reply:
                subs = json.load(reply)["subscriptions"]
            return bool(subs) and subs[0]["queue_messages"] >= 5

        thread = threading.Thread(target=producer)
        thread.start()
        wait_until(subscriber_full, timeout=60, what="the block subscriber's buffer to fill")
        wait_until(lambda: stream._publisher.outbox._room_waiters == 1, what="a blocked publish")
        held = stream.stats()
        assert not finished.is_set() and held.outbox_messages == 5 and held.acked < 300
        got = [sub.get(timeout=30) for _ in range(300)]  # reading releases the acks
        thread.join(30)
        assert finished.is_set()
        stream.flush(30)
        assert [m.offset for m in got] == list(range(300)) and sub.gaps == []
        sub.close()
        stream.close()


def test_deadline_exceeded_fails_messages_and_flush_raises() -> None:
    stream = nbws.stream(
        name(),
        url=f"http://127.0.0.1:{closed_port()}/",
        deadline=0.3,
        backoff_initial=0.05,
        backoff_max=0.1,
    )
    receipts = [stream.publish(i) for i in range(3)]
    with pytest.raises(FlushError, match="3 messages failed") as info:
        stream.flush(timeout=10)
    assert {f.code for f in info.value.failures} == {"expired"}
    for receipt in receipts:
        with pytest.raises(DeliveryFailed, match="expired"):
            receipt.result(0)
    stats = stream.stats()
    assert stats.expired == 3 and stats.outbox_messages == 0
    assert "ConnectionRefused" in (stats.last_error or "")
    stream.close()


def test_flush_timeout_names_what_is_pending_and_close_fails_the_rest() -> None:
    stream = nbws.stream(
        name(),
        url=f"http://127.0.0.1:{closed_port()}/",
        deadline=None,
        backoff_initial=0.05,
        backoff_max=0.1,
    )
    receipts = [stream.publish(i) for i in range(2)]
    wait_until(lambda: stream.stats().last_error is not None, what="a failed connection attempt")
    pending = r"2 messages not acknowledged within 0.2 s.*Refused"
    with pytest.raises(FlushError, match=pending) as info:
        stream.flush(timeout=0.2)
    assert info.value.pending == 2
    with pytest.raises(FlushError):
        stream.close(timeout=0.1)
    for receipt in receipts:
        with pytest.raises(DeliveryFailed, match="closed"):
            receipt.result(0)


def test_wrong_token_is_reported_as_the_last_error() -> None:
    with serving(token="right") as guarded:
        good = nbws.stream(name(), url=http_url(guarded), token="right")
        assert good.publish(1).result(10) == 0
        good.close()
        bad = nbws.stream(name(), url=http_url(guarded), token="wrong", deadline=None)
        bad.publish(1)
        with pytest.raises(FlushError, match="HTTP 403"):
            bad.flush(timeout=1.0)
        with pytest.raises(FlushError):
            bad.close(timeout=0)


def test_queue_before_open_then_delivered(server: RunningServer) -> None:
    with ChaosProxy(server.port) as proxy:
        proxy.refuse = True  # the server is "down"
        stream = nbws.stream(
            name(), url=f"http://127.0.0.1:{proxy.port}/", backoff_initial=0.05, backoff_max=0.2
        )
        receipts = [stream.publish(i) for i in range(100)]
        wait_until(lambda: proxy.stats.refused >= 2, what="refused connection attempts")
        assert stream.stats().acked == 0
        proxy.refuse = False
        stream.flush(timeout=30)
        assert [r.result(0) for r in receipts] == list(range(100))
        stream.close()


def test_in_memory_server_restart_shows_up_as_new_epoch_and_gap() -> None:
    a = start_serve_process()
    try:
        with ChaosProxy(a.port) as proxy:
            url = f"http://127.0.0.1:{proxy.port}/"
            stream = nbws.stream(name(), url=url, backoff_initial=0.05, backoff_max=0.2)
            sub = stream.subscribe(since=0, yield_gaps=True)
            for i in range(5):
                stream.publish(i)
            stream.flush(10)
            before = [sub.get(timeout=10) for _ in range(5)]
            old_epoch = before[0].epoch
            stop_serve_process(a)  # the server goes away, and its history with it
            with serving() as b:
                proxy.upstream_port = b.port
                late = [stream.publish(i) for i in range(5, 8)]
                stream.flush(30)
                items = [sub.get(timeout=20) for _ in range(4)]
            sub.close()
            stream.close()
    finally:
        if a.process is not None and a.process.poll() is None:
            stop_serve_process(a)
    assert [r.result(0) for r in late] == [0, 1, 2]  # the new epoch starts again at 0
    assert {r.epoch for r in late} != {old_epoch}
    gap = items[0]
    assert isinstance(gap, Gap) and gap.reason == "epoch"
    assert sub.gaps == [gap]
    assert [(m.offset, m.payload) for m in items[1:]] == [(0, 5), (1, 6), (2, 7)]
    assert items[1].epoch != old_epoch and stream.stats().reconnects >= 1


def test_gap_without_handler_is_a_warning(url: str) -> None:
    stream = nbws.stream(name(), url=url)
    for i in range(3):
        stream.publish(i)
    stream.flush(10)
    sub = stream.subscribe(since=0, epoch="not-the-epoch")
    with pytest.warns(nbws.client.GapWarning, match="reason epoch"):
        first = sub.get(timeout=10)
    assert first.offset == 0 and sub.gaps[0].reason == "epoch"
    sub.close()
    stream.close()


# --- interpreter exit --------------------------------------------------------------------


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_pending_messages_are_delivered_at_exit(url: str) -> None:
    topic = name()
    result = run_python(
        f"import nbws\ns = nbws.stream({topic!r}, url={url!r})\n"
        "for i in range(1000): s.publish(i)\n"
    )
    assert result.returncode == 0, result.stderr
    assert "unacknowledged" not in result.stderr
    reader = nbws.stream(topic, url=url)
    assert [m.payload for m in reader.history()] == list(range(1000))
    reader.close()


def test_undeliverable_messages_are_reported_at_exit() -> None:
    result = run_python(
        f"import nbws\ns = nbws.stream('lost', url='http://127.0.0.1:{closed_port()}/', "
        "exit_timeout=0.2)\ns.publish(1)\ns.publish(2)\n"
    )
    assert result.returncode == 0
    assert "exits with 2 unacknowledged messages" in result.stderr
    assert "Refused" in result.stderr


def test_dropped_subscription_closes_its_connection(server: RunningServer) -> None:
    with ChaosProxy(server.port) as proxy:
        stream = nbws.stream(name(), url=f"http://127.0.0.1:{proxy.port}/")
        sub = stream.subscribe(since=0)
        wait_until(lambda: proxy.open_connections == 1, what="the subscription's connection")
        del sub
        gc.collect()
        wait_until(lambda: proxy.open_connections == 0, what="the connection to close")
        stream.close()
