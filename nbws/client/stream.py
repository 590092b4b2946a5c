"""``nbws.stream(name)``: the handle users publish to and read from.

Publishing never waits on the network: ``publish`` serialises the payload in the caller's
thread, puts it in the bounded outbox and returns a :class:`Receipt`; the I/O thread
sends it, retransmits it until acked, and completes the receipt with the offset. Only a
full outbox makes ``publish`` wait (or raise with ``block=False``). See docs/client.md.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import threading
import uuid
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, fields
from itertools import islice
from typing import Any

from ..protocol.messages import encode_value, valid_stream_name
from .discovery import Endpoint, discover
from .errors import FlushError, OutboxFull, StreamClosed
from .frames import BinaryItem, Gap, Message, open_source, publish_text_prefix
from .frames_pandas import ARROW_STREAM
from .outbox import Outbox, Receipt, Receipts, RowsOutcome
from .subscription import Subscription
from .thread import LIVE_END, IOThread, LinkOptions, PublisherLink, io_thread
from .window import DEFAULT_DEADLINE, Entry, Window

__all__ = ["ARROW_STREAM", "Receipts", "Stream", "StreamOptions", "StreamStats", "stream"]

log = logging.getLogger("nbws.client")


MiB = 1024 * 1024
ROWS_CHUNK = 65_536
"""Most rows ``publish_rows`` (items ``publish_many``) turns into JSON at a time: the
first are on the wire (and the server busy with them) while the next are built."""
FIRST_CHUNK = 4096
"""The first chunk's size (each next one twice the last, up to :data:`ROWS_CHUNK`), so
the first runs go out after a few milliseconds, not after a whole chunk is built."""


def _chunks(total: int | None) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of the chunks of ``total`` rows (None: without end)."""
    start, size = 0, FIRST_CHUNK
    while total is None or start < total:
        stop = start + size if total is None else min(total, start + size)
        yield start, stop
        start, size = stop, min(2 * size, ROWS_CHUNK)


@dataclass(frozen=True)
class StreamOptions:
    """Options of a stream handle (``nbws.stream(name, **options)``).

    Attributes:
        window: unacked messages on the wire at once (1 = stop-and-wait). Keep it at or
            below the server's ``dedupe_window`` (4096 by default).
        initial_window: unacked messages a new connection starts with (slow start: one
            more per ack, so it doubles per round trip up to ``window``); None sends the
            whole window at once.
        ack_timeout: seconds without an ack before a message is sent again.
        retransmit: retransmit after ``ack_timeout`` on a live connection (after a
            reconnect everything unacked is always resent).
        outbox_max_messages: bound of the outbox (queued + in flight), in messages.
        outbox_max_bytes: bound of the outbox in payload bytes.
        outbox_max_unsent: while connected, ``publish`` waits once this many messages
            are queued and not yet sent (None: four windows), so the outbox stays small
            while a publisher outruns the link; ``outbox_max_messages`` is the bound
            while disconnected.
        deadline: seconds after ``publish`` at which an unacked message fails (its
            receipt raises, ``flush`` raises); None retries forever.
        backoff_initial: first reconnect delay ceiling in seconds (full jitter).
        backoff_max: largest reconnect delay ceiling in seconds.
        producer: producer id for acks and dedupe (default: random, fixed per handle).
        chunk_size: fragment size of ``publish_bytes``.
        open_timeout: seconds allowed for a connection's handshake and welcome.
        exit_timeout: seconds spent at interpreter exit trying to deliver what is
            pending before reporting it.
        batch: send runs of queued messages as ``publish_batch`` (each message keeps
            its own seq, offset and ack); False sends one ``publish`` per message. A
            server without batches is detected and sent single publishes either way.
        batch_max_messages, batch_max_bytes: bounds of one batch (which also carries at
            most a quarter of ``window``, so several are in flight).
        rows_window: unacked messages on the wire at once while sending the runs of
            ``publish_rows`` and ``publish_many`` (each run one window entry and one
            batch of up to ``batch_max_messages``, a quarter of ``rows_window`` at most);
            capped at the server's ``dedupe_window``.
    """

    window: int = 1000
    initial_window: int | None = 8
    ack_timeout: float = 10.0
    retransmit: bool = True
    outbox_max_messages: int = 100_000
    outbox_max_bytes: int = 256 * MiB
    outbox_max_unsent: int | None = None
    deadline: float | None = 300.0
    backoff_initial: float = 1.0
    backoff_max: float = 30.0
    producer: str | None = None
    chunk_size: int = 256 * 1024
    open_timeout: float = 10.0
    exit_timeout: float = 5.0
    batch: bool = True
    batch_max_messages: int = 1000
    batch_max_bytes: int = 1 * MiB
    rows_window: int = 4096

    @classmethod
    def from_kwargs(cls, options: dict[str, Any]) -> StreamOptions:
        """Build from keyword arguments, naming the valid ones on a typo."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - names)
        if unknown:
            raise TypeError(
                f"unknown stream option(s) {', '.join(unknown)}; valid options: "
                f"{', '.join(sorted(names))}"
            )
        return cls(**options)


@dataclass(frozen=True)
class StreamStats:
    """A snapshot of a handle's publishing counters (see docs/client.md)."""

    stream: str
    producer: str
    url: str
    connected: bool
    sent: int
    acked: int
    duplicates: int
    retransmitted: int
    failed: int
    expired: int
    in_flight: int
    queued: int
    outbox_messages: int
    outbox_bytes: int
    reconnects: int
    last_error: str | None
    latency_p50: float | None
    latency_p99: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Publisher:
    """The part of a handle that outlives it until its outbox is drained."""

    live: set[_Publisher] = set()
    lock = threading.Lock()

    def __init__(
        self, name: str, endpoint: Endpoint, producer: str, options: StreamOptions, io: IOThread
    ) -> None:
        self.name = name
        self.io = io
        self.options = options
        window: Window[Any] = Window(
            producer,
            window=options.window,
            initial_window=options.initial_window,
            ack_timeout=options.ack_timeout,
            retransmit=options.retransmit,
            max_messages=options.outbox_max_messages,
            max_bytes=options.outbox_max_bytes,
            max_unsent=options.outbox_max_unsent,
            deadline=options.deadline,
            run_window=options.rows_window,
        )
        # a run is one batch: several of them in flight, as for single publishes
        self.run_messages = min(options.batch_max_messages, max(1, options.rows_window // 4))
        self.outbox = Outbox(window, text_prefix=publish_text_prefix(name, producer))
        self.outbox.on_release = _release
        self.outbox.may_wait = lambda: not io.in_thread  # waiting there would deadlock
        self.link = PublisherLink(
            endpoint,
            name,
            producer,
            self.outbox,
            link_options(options),
            batch=options.batch,
            # a quarter of the window at most: several batches in flight keep the
            # server (and Redis) busy while the client turns acks into new batches
            batch_messages=min(options.batch_max_messages, max(1, options.window // 4)),
            batch_bytes=options.batch_max_bytes,
        )
        self.started = False
        self.stopped = False
        self._start_lock = threading.Lock()

    def ensure_started(self) -> None:
        if self.started:
            return
        with self._start_lock:
            if not self.started:
                self.started = True
                with _Publisher.lock:
                    _Publisher.live.add(self)
                self.link.start(self.io)

    async def stop(self) -> None:
        self.stopped = True
        await self.link.stop(1000, "stream closed")
        with _Publisher.lock:
            _Publisher.live.discard(self)

    async def stop_when_drained(self) -> None:
        """The handle was garbage-collected: deliver what is pending, then disconnect."""
        while self.outbox.window.outbox_messages and not self.stopped:  # noqa: ASYNC110
            await asyncio.sleep(0.2)  # (polled: acks come from another task, no event to await)
        if not self.stopped:
            await self.stop()

    def pending(self) -> int:
        return self.outbox.window.outbox_messages


def _release(entry: Entry[Any]) -> None:
    """A message left the outbox: close its binary source and progress bar."""
    item = entry.item
    if isinstance(item, BinaryItem):
        item.source.close()
        if item.progress is not None:
            item.progress.close()


def _collected(publisher: _Publisher) -> None:
    if publisher.started and not publisher.stopped:
        publisher.io.call_soon(lambda: asyncio.ensure_future(publisher.stop_when_drained()))


def link_options(options: StreamOptions) -> LinkOptions:
    return LinkOptions(
        backoff_initial=options.backoff_initial,
        backoff_max=options.backoff_max,
        open_timeout=options.open_timeout,
    )


class Stream:
    """A handle on one named stream: reliable publishing, subscribing, history, pandas.

    Args:
        name: the stream (1-200 characters of ``A-Za-z0-9._:-/``).
        url: server URL (``http(s)://host:port/base/`` or the ``ws(s)://.../nbws/ws``
            endpoint); by default discovered (see ``nbws.client.discovery``).
        token: auth token; by default discovered along with the URL, or ``NBWS_TOKEN``.
        **options: see :class:`StreamOptions`.
    """

    def __init__(
        self, name: str, url: str | None = None, token: str | None = None, **options: Any
    ) -> None:
        if not valid_stream_name(name):
            raise ValueError(
                f"invalid stream name {name!r}: use 1-200 characters of A-Z a-z 0-9 . _ : / -"
            )
        self.name = name
        self.options = StreamOptions.from_kwargs(options)
        self.endpoint = discover(url, token)
        self.producer = self.options.producer or f"py-{uuid.uuid4().hex[:16]}"
        self._io = io_thread()
        self._publisher = _Publisher(name, self.endpoint, self.producer, self.options, self._io)
        self._subscriptions: weakref.WeakSet[Subscription] = weakref.WeakSet()
        self._closed = False
        weakref.finalize(self, _collected, self._publisher)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return (
            f"<nbws.Stream {self.name!r} {state} at {self.endpoint.url} producer={self.producer}>"
        )

    @property
    def url(self) -> str:
        return self.endpoint.url

    # --- publishing ----------------------------------------------------------------------

    def _outbox(self) -> Outbox:
        """The outbox to publish into (its connection started on first use)."""
        if self._closed:
            raise StreamClosed(f"stream handle {self.name!r} is closed")
        publisher = self._publisher
        if not publisher.started:
            publisher.ensure_started()
        return publisher.outbox

    def publish(
        self,
        obj: Any,
        *,
        key: str | None = None,
        block: bool = True,
        timeout: float | None = None,
        deadline: Any = DEFAULT_DEADLINE,
    ) -> Receipt:
        """Queue one JSON message; returns at once with its :class:`Receipt`.

        Args:
            obj: any JSON-serialisable value (NumPy arrays and scalars too).
            key: conflation key (subscribers with policy ``conflate`` keep the newest
                message per key).
            block: when the outbox is full, wait for room (True) or raise (False).
            timeout: longest wait for room, in seconds (then :class:`OutboxFull`).
            deadline: this message's delivery deadline in seconds (None: never),
                instead of the handle's.

        Returns:
            A future; ``result(timeout)`` is the offset the server appended it at.

        Raises:
            TypeError: ``obj`` is not JSON-serialisable.
            OutboxFull: no room (see ``block``/``timeout``).
            StreamClosed: the handle is closed.
        """
        payload = encode_value(obj)
        return self._outbox().put_json(
            payload, key, block=block, timeout=timeout, deadline=deadline
        )

    def publish_many(
        self,
        items: Iterable[Any],
        *,
        block: bool = True,
        timeout: float | None = None,
        deadline: Any = DEFAULT_DEADLINE,
    ) -> Receipts:
        """Queue many JSON messages (each item one message, acked and deduplicated on its
        own, as with :meth:`publish`); returns once all are queued.

        Items are serialised a chunk at a time and queued as runs of consecutive seqs (one
        outbox entry and one batch each), so this costs far less per message than a loop
        of ``publish`` calls.

        Returns:
            A :class:`Receipts` (a lazy sequence of one :class:`Receipt` per item, in
            order; ``wait()`` waits for all).

        Raises:
            TypeError: an item is not JSON-serialisable (the ones before it are queued).
            OutboxFull: no room (see ``block``/``timeout``); ``exc.receipts`` holds the
                receipts of the items queued before it.
            StreamClosed: the handle is closed.
        """
        outbox = self._outbox()
        outcome = RowsOutcome(outbox.receipts)
        iterator = iter(items)
        try:
            for start, stop in _chunks(None):
                payloads: list[bytes] = []
                try:
                    payloads.extend(map(encode_value, islice(iterator, stop - start)))
                except TypeError:
                    if payloads:  # the items before the bad one are queued
                        self._put_rows(outbox, payloads, block, timeout, deadline, outcome)
                    raise
                if not payloads:
                    break
                self._put_rows(outbox, payloads, block, timeout, deadline, outcome)
        except (OutboxFull, StreamClosed) as exc:
            exc.receipts = Receipts(outcome, 0, outcome.queued)  # type: ignore[union-attr]
            raise
        return Receipts(outcome)

    def _put_rows(
        self,
        outbox: Outbox,
        payloads: list[bytes],
        block: bool,
        timeout: float | None,
        deadline: Any,
        outcome: RowsOutcome | None = None,
    ) -> Receipts:
        return outbox.put_rows(
            payloads,
            run_messages=self._publisher.run_messages,
            run_bytes=self.options.batch_max_bytes,
            block=block,
            timeout=timeout,
            deadline=deadline,
            outcome=outcome,
        )

    def publish_bytes(
        self,
        data: Any,
        *,
        chunk_size: int | None = None,
        content_type: str | None = None,
        key: str | None = None,
        block: bool = True,
        timeout: float | None = None,
        deadline: Any = DEFAULT_DEADLINE,
        progress: bool | None = None,
    ) -> Receipt:
        """Queue one binary message, streamed as fragments of ``chunk_size`` bytes.

        ``data`` may be bytes, a path, a binary file object or an iterable of bytes; it is
        read in chunks as it is sent (never held whole), and read again from its start if
        it has to be retransmitted (a seekable file is re-read, so do not change it until
        the receipt completes; other iterables are spooled, to disk past 8 MiB).

        Args:
            progress: show a ``tqdm.auto`` progress bar (None: when tqdm is installed and
                the transfer lasts more than a second).

        Returns:
            A future; ``result(timeout)`` is the offset the server appended it at.
        """
        size_chunk = chunk_size or self.options.chunk_size
        if size_chunk < 1:
            raise ValueError("chunk_size must be positive")
        source = open_source(data, size_chunk)
        long = source.size is None or source.size > size_chunk
        bar = (
            _progress_bar(self.name, source.size, progress)
            if progress or (progress is None and long)
            else None
        )
        item = BinaryItem(source, content_type, key, size_chunk, bar)
        try:
            return self._outbox().put(
                item, source.size or 0, block=block, timeout=timeout, deadline=deadline
            )
        except BaseException:
            source.close()
            if bar is not None:
                bar.close()
            raise

    async def publish_async(
        self, obj: Any, *, key: str | None = None, timeout: float | None = None
    ) -> int | None:
        """Publish and wait for the ack without blocking the caller's event loop.

        Returns:
            The offset the server appended the message at.
        """
        try:
            receipt = self.publish(obj, key=key, block=False)
        except OutboxFull:
            receipt = await asyncio.to_thread(
                self.publish, obj, key=key, block=True, timeout=timeout
            )
        return await receipt

    def publish_df(
        self,
        df: Any,
        *,
        encoding: str = "json",
        index: bool = False,
        key: str | None = None,
        block: bool = True,
        timeout: float | None = None,
    ) -> Receipt:
        """Publish a DataFrame's rows as one message.

        Args:
            encoding: ``json`` (default): a JSON list of records, readable by any
                subscriber (dates become ISO strings). ``arrow``: Arrow IPC stream bytes as
                a binary message with content type ``application/vnd.apache.arrow.stream``
                (exact dtypes; needs pyarrow). ``auto``: arrow if pyarrow is installed.
            index: include the index as column(s).
        """
        from . import frames_pandas

        if encoding == "auto":
            encoding = "arrow" if frames_pandas.have_pyarrow() else "json"
        if encoding == "json":
            payload = frames_pandas.df_to_json(df, index=index)
            return self._outbox().put_json(payload, key, block=block, timeout=timeout)
        if encoding == "arrow":
            data = frames_pandas.df_to_arrow(df, index=index)
            return self.publish_bytes(
                data,
                content_type=ARROW_STREAM,
                key=key,
                block=block,
                timeout=timeout,
                progress=False,
            )
        raise ValueError(f"unknown encoding {encoding!r}: use 'json', 'arrow' or 'auto'")

    def publish_rows(
        self,
        df: Any,
        *,
        index: bool = False,
        block: bool = True,
        timeout: float | None = None,
        deadline: Any = DEFAULT_DEADLINE,
    ) -> Receipts:
        """Publish each row of a DataFrame as a message of its own (own seq, offset and
        ack, deduplicated, in order); returns once all are queued, with a
        :class:`Receipts` (a lazy sequence of one :class:`Receipt` per row).

        Rows are JSON objects (NaN/NaT become null, timestamps ISO 8601 strings,
        categoricals their values), built column-wise a chunk of rows at a time and
        queued as runs (one outbox entry and one batch each); :meth:`history_df` reads
        them back (``dtypes=df.dtypes`` restores the column types). :meth:`publish_df`
        instead sends a whole frame as one message.

        Raises:
            OutboxFull: no room (see ``block``/``timeout``); ``exc.receipts`` holds the
                receipts of the rows queued before it.
            StreamClosed: the handle is closed.
        """
        from . import frames_pandas

        outbox = self._outbox()
        rows = len(df)
        outcome = RowsOutcome(outbox.receipts)
        try:
            for start, stop in _chunks(rows):
                chunk = df.iloc[start:stop] if stop - start < rows else df
                payloads = frames_pandas.df_rows_json(chunk, index=index)
                self._put_rows(outbox, payloads, block, timeout, deadline, outcome)
        except (OutboxFull, StreamClosed) as exc:
            exc.receipts = Receipts(outcome, 0, outcome.queued)  # type: ignore[union-attr]
            raise
        return Receipts(outcome)

    def history_df(
        self,
        since: int = 0,
        until: int | None = None,
        *,
        dtypes: Any = None,
        timeout: float = 60.0,
    ) -> Any:
        """History as a DataFrame with one row per message (as :meth:`publish_rows` sends
        them), indexed by offset; ``dtypes`` (e.g. the published ``df.dtypes``) restores
        column types. Gaps are skipped."""
        from . import frames_pandas

        return frames_pandas.rows_to_df(self.history(since, until, timeout=timeout), dtypes)

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every message published so far is acked (or has failed).

        Raises:
            FlushError: some messages failed since the last flush (listed), or were still
                unacked after ``timeout`` seconds (with counts and the last error).
        """
        if self._io.in_thread:
            raise RuntimeError("flush() would deadlock in the nbws I/O thread")
        outbox = self._publisher.outbox
        if outbox.window.outbox_messages:
            self._publisher.ensure_started()
        drained = outbox.wait_empty(timeout)
        count, failures = outbox.take_failures()
        if not drained:
            stats = self.stats()
            raise FlushError(
                f"stream {self.name!r}: {stats.outbox_messages} messages not acknowledged "
                f"within {timeout} s ({stats.in_flight} in flight, {stats.queued} queued; "
                f"{stats.reconnects} reconnects; last error: {stats.last_error or 'none'})"
                + (f"; {count} failed" if count else ""),
                failures,
                stats.outbox_messages,
            )
        if count:
            shown = "; ".join(str(f) for f in failures[:5])
            more = f" (and {count - 5} more)" if count > 5 else ""
            raise FlushError(
                f"stream {self.name!r}: {count} messages failed: {shown}{more}", failures, 0
            )

    def stats(self) -> StreamStats:
        """Counters of this handle's publishing (sent, acked, retransmitted, ...)."""
        window = self._publisher.outbox.stats()
        link = self._publisher.link
        return StreamStats(
            stream=self.name,
            producer=self.producer,
            url=self.endpoint.url,
            connected=link.connected,
            sent=window.sent,
            acked=window.acked,
            duplicates=window.duplicates,
            retransmitted=window.retransmitted,
            failed=window.failed,
            expired=window.expired,
            in_flight=window.in_flight,
            queued=window.queued,
            outbox_messages=window.outbox_messages,
            outbox_bytes=window.outbox_bytes,
            reconnects=link.reconnects,
            last_error=link.last_error,
            latency_p50=window.latency_p50,
            latency_p99=window.latency_p99,
        )

    # --- reading -------------------------------------------------------------------------

    def subscribe(
        self,
        since: int | None = None,
        *,
        until: int | None = None,
        epoch: str | None = None,
        policy: str | None = None,
        max_messages: int | None = None,
        max_bytes: int | None = None,
        queue_size: int = 10_000,
        on_gap: Callable[[Gap], Any] | None = None,
        yield_gaps: bool = False,
        idle_timeout: float | None = None,
    ) -> Subscription:
        """Read the stream: ``for msg in s.subscribe(since=0)`` or ``async for``.

        Args:
            since: first offset (0: all history; -k: the last k; None: live only).
            until: stop before this offset (exclusive).
            epoch: the epoch ``since`` refers to (a gap is reported if it changed).
            policy: the server's policy when this subscriber falls behind: drop-oldest,
                drop-newest, conflate, disconnect or block (the server's default if None).
            max_messages, max_bytes: this subscriber's server-side buffer bound.
            queue_size: messages buffered here before reading from the server pauses.
            on_gap: called with each :class:`Gap` as iteration reaches it.
            yield_gaps: yield :class:`Gap` objects in place (else a GapWarning is issued
                unless ``on_gap`` is given).
            idle_timeout: end the iteration after this many seconds without a message.
        """
        if self._closed:
            raise StreamClosed(f"stream handle {self.name!r} is closed")
        sub = Subscription(
            self.endpoint,
            self.name,
            link_options(self.options),
            since=since,
            until=until,
            epoch=epoch,
            policy=policy,
            max_messages=max_messages,
            max_bytes=max_bytes,
            queue_size=queue_size,
            on_gap=on_gap,
            yield_gaps=yield_gaps,
            idle_timeout=idle_timeout,
        )
        self._subscriptions.add(sub)
        return sub

    def history(
        self, since: int = 0, until: int | None = None, *, timeout: float = 60.0
    ) -> list[Message]:
        """The stream's messages from ``since`` up to ``until`` (or the live end) as a list.

        History starts at the oldest message the server still holds; gaps are skipped.

        Raises:
            TimeoutError: the server sent nothing for ``timeout`` seconds.
        """
        sub = self.subscribe(
            since, until=LIVE_END if until is None else until, yield_gaps=True, queue_size=100_000
        )
        out: list[Message] = []
        try:
            while True:
                try:
                    item = sub.get(timeout)
                except StopIteration:
                    break
                except TimeoutError:
                    raise TimeoutError(
                        f"no history from {self.endpoint.url} within {timeout} s "
                        f"(last error: {sub.last_error or 'none'})"
                    ) from None
                if isinstance(item, Message):
                    out.append(item)
        finally:
            sub.close()
        return out

    def replay_df(self, since: int = 0, until: int | None = None, *, timeout: float = 60.0) -> Any:
        """History as a pandas DataFrame indexed by offset (JSON records, dicts, Arrow)."""
        from . import frames_pandas

        return frames_pandas.messages_to_df(self.history(since, until, timeout=timeout))

    def to_pandas(self, since: int = 0, until: int | None = None, *, timeout: float = 60.0) -> Any:
        """Same as :meth:`replay_df`."""
        return self.replay_df(since, until, timeout=timeout)

    # --- closing -------------------------------------------------------------------------

    def close(self, timeout: float | None = 10.0) -> None:
        """Flush (up to ``timeout`` s), then disconnect; subscriptions are closed too.

        Raises:
            FlushError: not everything was acked in time; those messages' receipts fail.
        """
        if self._closed:
            return
        error: FlushError | None = None
        try:
            self.flush(timeout)
        except FlushError as exc:
            error = exc
        self._closed = True
        for sub in list(self._subscriptions):
            sub.close()
        publisher = self._publisher
        if publisher.started and not publisher.stopped:
            try:
                self._io.submit(publisher.stop()).result(5.0)
            except Exception:
                log.debug("nbws %s: close did not finish cleanly", self.name)
        publisher.outbox.close(f"stream handle {self.name!r} closed")
        if error is not None:
            raise error

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _progress_bar(name: str, size: int | None, progress: bool | None) -> Any:
    try:
        from tqdm.auto import tqdm
    except ImportError:
        if progress:
            warnings.warn("progress=True needs tqdm (pip install tqdm)", stacklevel=3)
        return None
    return tqdm(
        total=size,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=f"nbws {name}",
        delay=0.0 if progress else 1.0,
        leave=bool(progress),
    )


def stream(name: str, url: str | None = None, token: str | None = None, **options: Any) -> Stream:
    """Open a handle on stream ``name`` (see :class:`Stream`)."""
    return Stream(name, url, token, **options)


@atexit.register
def _report_at_exit() -> None:
    """Give pending messages a last chance, then say how many were not delivered."""
    with _Publisher.lock:
        publishers = [p for p in _Publisher.live if p.pending()]
    for publisher in publishers:
        publisher.outbox.wait_empty(publisher.options.exit_timeout)
        stats = publisher.outbox.stats()
        if stats.outbox_messages:
            warnings.warn(
                f"nbws: stream {publisher.name!r} (producer {stats.producer}) exits with "
                f"{stats.outbox_messages} unacknowledged messages ({stats.in_flight} in flight, "
                f"{stats.queued} queued) that were not delivered; last error: "
                f"{publisher.link.last_error or 'none'}",
                RuntimeWarning,
                stacklevel=1,
            )
