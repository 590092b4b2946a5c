"""The scale-out broker: history in Redis Streams, shared by every server process.

Theory of operation.

- **Appends** are one Lua script each (``redis_scripts.APPEND``): duplicate check by
  (producer, seq) → next offset → ``XADD`` with the id derived from the offset → trim →
  remember seq → offset. Redis runs scripts one at a time, so offsets are gap-free and
  monotonic across processes and a retransmit that lands on another process is still
  recognised. A publish is acked only after the script has returned. Appends go through
  ``redis_appends.AppendQueue``: in call order, many per pipeline round trip.
- **Reads** ``since`` an offset are one ``XRANGE`` from the id of that offset.
- **Fan-out**: one reader task per process sends one ``XREAD BLOCK`` over every stream
  this process listens to (from the last id it delivered) plus a private wake-up key
  that :meth:`listen` pokes, and calls the listeners in offset order. After a failure it
  reconnects with backoff and resumes from the last id, so listeners see every message
  exactly once. :meth:`listen` starts from the newest position this process has seen of
  the stream (the hub's ``info`` just before), so it may also deliver a few messages
  appended just before the call; the hub skips offsets behind a subscriber's cursor.
- **Failure**: every command has a short socket timeout; a connection error, timeout or
  a refusal such as ``OOM``/``READONLY``/``LOADING`` raises :class:`BrokerUnavailable`
  (the hub nacks with ``retry: true``) and makes :attr:`healthy` False until Redis
  answers again; health changes are reported to :meth:`on_health_change` callbacks.

See docs/architecture.md ("Redis backend") and docs/scaling.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import BusyLoadingError, NoScriptError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..protocol.messages import MAX_SAFE_INTEGER, Publish, PublishBatch
from . import redis_scripts
from .base import (
    AppendResult,
    BatchOutcome,
    BrokerUnavailable,
    HealthListener,
    HistoryLimits,
    Listener,
    PayloadTooLarge,
    ReadResult,
    StoredMessage,
    StreamInfo,
    UnknownStream,
)
from .memory import new_epoch
from .redis_appends import AppendQueue, AppendRequest

__all__ = ["RedisBroker"]

log = logging.getLogger("nbws.broker.redis")

T = TypeVar("T")

# Replies that mean "Redis cannot take this now" rather than "this command is wrong".
_UNAVAILABLE_REPLIES = (
    "OOM",
    "READONLY",
    "BUSY",
    "LOADING",
    "MASTERDOWN",
    "NOREPLICAS",
    "TRYAGAIN",
    "CLUSTERDOWN",
    "MISCONF",
)
# Permission refusals (ACL): Redis says NOPERM outside scripts and "...can't run this
# command" inside them. Retrying cannot help until an admin fixes the ACL user, but the
# broker is just as unusable, so they are reported the same way, with a reason that says so.
_PERMISSION_REPLIES = ("NOPERM", "The user executing the script can't run this command")
_NETWORK_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)


def _refused(exc: BaseException) -> bool:
    """True for a Redis reply that means the broker cannot serve now (not a bug)."""
    text = str(exc)
    return text.startswith(_UNAVAILABLE_REPLIES) or any(r in text for r in _PERMISSION_REPLIES)


FLAG_BINARY = 1
FLAG_PRODUCER = 2
FLAG_KEY = 4
FLAG_CONTENT_TYPE = 8

MAX_TIPS = 10_000


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _id_major(entry_id: bytes | str) -> int:
    return int(_text(entry_id).partition("-")[0])


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if any(r in text for r in _PERMISSION_REPLIES):
        return f"broker unavailable: Redis refused a command (check the ACL user): {text}"
    return f"broker unavailable: {text}"


def _message(
    o: bytes, t: bytes, f: bytes, p: bytes, r: bytes, s: bytes, k: bytes, y: bytes
) -> StoredMessage:
    flags = int(f)
    return StoredMessage(
        int(o),
        int(t) / 1_000_000,
        p,
        bool(flags & FLAG_BINARY),
        r.decode() if flags & FLAG_PRODUCER else None,
        int(s) if flags & FLAG_PRODUCER else None,
        k.decode() if flags & FLAG_KEY else None,
        y.decode() if flags & FLAG_CONTENT_TYPE else None,
    )


def _from_script(fields: Sequence[bytes]) -> StoredMessage:
    """An entry's fields as a script returns them: ``[name, value, ...]`` in fixed order."""
    return _message(
        fields[1], fields[5], fields[9], fields[11], fields[13], fields[15], fields[17], fields[19]
    )


def _raw_reply(response: Any, **options: Any) -> Any:
    """A redis-py response callback that leaves the reply as parsed from the wire."""
    return response


class _Keys:
    """Redis key names of one stream (see ``redis_scripts``)."""

    __slots__ = ("forgotten", "log", "meta", "newest", "producers", "seen_prefix")

    def __init__(self, prefix: str, name: str) -> None:
        base = f"{prefix}:{{{name}}}"
        self.meta = f"{base}:meta"
        self.log = f"{base}:log"
        self.producers = f"{base}:producers"
        self.forgotten = f"{base}:forgotten"
        self.newest = f"{base}:newest"
        self.seen_prefix = f"{base}:seen:"


class _Listened:
    """A stream the reader follows: its listeners and the last id delivered."""

    __slots__ = ("epoch", "key", "last_id", "listeners")

    def __init__(self, key: str, last_id: str, epoch: str | None) -> None:
        self.key = key
        self.last_id = last_id
        self.epoch = epoch
        self.listeners: list[Listener] = []


class RedisBroker:
    """Broker on Redis Streams (``c.Nbws.backend = "redis"``); needs Redis 6.2 or later.

    Args:
        url: Redis URL (``redis://[:password@]host:port/db``, ``rediss://`` for TLS).
        default_limits: history limits of streams created without their own.
        dedupe_window: sequence numbers remembered per (stream, producer).
        prefix: prefix of every key nbws writes.
        command_timeout: seconds a command may take before it fails as unavailable.
        connect_timeout: seconds to connect.
        block: seconds each ``XREAD BLOCK`` waits (also how soon a silent Redis is noticed).
        read_count: entries per stream per ``XREAD``.
        backoff: first and longest wait (seconds) between reconnects of the reader.
        max_connections: connections for commands (appends beyond wait their turn).
    """

    name = "redis"
    concurrent_appends = True  # ordered by the append queue (redis_appends)

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        default_limits: HistoryLimits | None = None,
        dedupe_window: int = 4096,
        *,
        prefix: str = "nbws",
        command_timeout: float = 2.0,
        connect_timeout: float = 1.0,
        block: float = 1.0,
        read_count: int = 512,
        backoff: tuple[float, float] = (0.05, 2.0),
        max_connections: int = 32,
    ) -> None:
        self.url = url
        self.default_limits = default_limits or HistoryLimits()
        self.dedupe_window = max(1, dedupe_window)
        self.prefix = prefix
        self.command_timeout = command_timeout
        self.connect_timeout = connect_timeout
        self.block = block
        self.max_connections = max_connections
        self.read_count = read_count
        self.backoff = backoff
        self._registry = f"{prefix}:streams"
        self._bad_limits: set[str] = set()  # streams whose stored limits were logged
        self._wake_key = f"{prefix}:wake:{uuid.uuid4().hex}"
        self._wake_id = "0-0"
        self._keys: OrderedDict[str, _Keys] = OrderedDict()
        self._tips: OrderedDict[str, tuple[str, int]] = OrderedDict()
        self._listened: dict[str, _Listened] = {}
        self._by_key: dict[str, str] = {}
        self._health_listeners: list[HealthListener] = []
        self._commands_ok = True
        self._reader_ok = True
        self._reason: str | None = None
        self._client: Redis | None = None
        self._reader_client: Redis | None = None
        self._reader: asyncio.Task[None] | None = None
        self._resync = False
        self._closed = False
        self._background: set[asyncio.Task[Any]] = set()
        self._scripts: dict[str, Any] = {}
        self._appends: AppendQueue | None = None

    # --- lifecycle -------------------------------------------------------------------------

    def _new_client(self, socket_timeout: float, max_connections: int) -> Redis:
        # A blocking pool: a burst of appends waits for a connection (up to the command
        # timeout) instead of failing, and Redis sees a bounded number of clients.
        pool = BlockingConnectionPool.from_url(
            self.url,
            max_connections=max_connections,
            timeout=self.command_timeout,
            socket_timeout=socket_timeout,
            socket_connect_timeout=self.connect_timeout,
            retry=Retry(NoBackoff(), 0),  # never retried behind our back: see _command
            decode_responses=False,
            protocol=2,  # the same reply shapes whatever redis-py's default
        )
        return Redis(connection_pool=pool)

    async def start(self) -> None:
        """Create the clients and start the reader; a Redis that is down is not an error
        (the broker reports itself unhealthy and keeps trying)."""
        if self._client is not None:
            return
        self._closed = False
        self._client = self._new_client(self.command_timeout, self.max_connections)
        self._reader_client = self._new_client(self.block + self.command_timeout, 2)
        # XREAD replies as Redis sends them (RESP2 nested lists): redis-py would turn each
        # entry's fields into a dict in Python first; _dispatch reads them by position.
        self._reader_client.set_response_callback("XREAD", _raw_reply)
        for name in ("APPEND", "APPEND_BATCH", "READ", "INFO", "CREATE", "DELETE", "STATE"):
            self._scripts[name] = self._client.register_script(getattr(redis_scripts, name))
        try:
            await self._command(self._client.ping)
        except BrokerUnavailable as exc:
            log.warning("Redis at %s is not reachable yet: %s", self.url, exc)
        self._appends = AppendQueue(self._execute_appends)
        self._reader = asyncio.ensure_future(self._read_loop())

    async def close(self) -> None:
        self._closed = True
        if self._appends is not None:
            await self._appends.close()
            self._appends = None
        tasks = [t for t in (self._reader, *self._background) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._reader = None
        self._background.clear()
        for client in (self._client, self._reader_client):
            if client is not None:
                closer = getattr(client, "aclose", None) or client.close
                with contextlib.suppress(Exception):
                    await closer()
        self._client = self._reader_client = None
        self._listened.clear()
        self._by_key.clear()

    # --- health ----------------------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        return self._commands_ok and self._reader_ok

    @property
    def reason(self) -> str | None:
        """Why the broker is unhealthy (None while healthy)."""
        return None if self.healthy else self._reason

    def on_health_change(self, callback: HealthListener) -> None:
        self._health_listeners.append(callback)

    def _health(
        self, *, commands: bool | None = None, reader: bool | None = None, reason: str | None = None
    ) -> None:
        before = self.healthy
        if commands is not None:
            self._commands_ok = commands
        if reader is not None:
            self._reader_ok = reader
        if reason is not None:
            self._reason = reason
        after = self.healthy
        if after == before:
            return
        if after:
            log.warning("Redis at %s is reachable again", self.url)
        else:
            log.warning("Redis at %s is unavailable: %s", self.url, self._reason)
        for callback in list(self._health_listeners):
            try:
                callback(after, None if after else self._reason)
            except Exception:  # pragma: no cover - a callback bug must not stop the broker
                log.exception("health callback failed")

    async def _command(self, call: Callable[[], Awaitable[T]], *, retry: bool = True) -> T:
        """Run one command; network trouble and refusals become BrokerUnavailable.

        With ``retry``, a connection error is retried once on a fresh connection (idle
        pooled connections go stale when Redis restarts). Appends without (producer, seq)
        are not retried: the first attempt may have run, and nothing could tell.
        """
        client = self._client
        if client is None:
            raise BrokerUnavailable("broker unavailable: not started")
        attempts = 2 if retry else 1
        for attempt in range(attempts):
            try:
                result = await call()
            except _NETWORK_ERRORS as exc:
                stale = isinstance(exc, RedisConnectionError) and not isinstance(
                    exc, BusyLoadingError
                )
                if stale:
                    with contextlib.suppress(Exception):
                        await client.connection_pool.disconnect(inuse_connections=False)
                if stale and attempt + 1 < attempts:
                    continue
                self._health(commands=False, reason=_reason(exc))
                raise BrokerUnavailable(_reason(exc)) from exc
            except ResponseError as exc:
                if _refused(exc):
                    self._health(commands=False, reason=_reason(exc))
                    raise BrokerUnavailable(_reason(exc)) from exc
                raise
            if not self._commands_ok:
                self._health(commands=True)
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    async def _script(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run one of the read/create/delete scripts (safe to run twice: retried once)."""
        script = self._scripts.get(name)
        if script is None:
            raise BrokerUnavailable("broker unavailable: not started")
        return await self._command(lambda: script(keys=keys, args=args))

    # --- keys and positions ------------------------------------------------------------------

    def _stream_keys(self, stream: str) -> _Keys:
        keys = self._keys.get(stream)
        if keys is None:
            keys = self._keys[stream] = _Keys(self.prefix, stream)
            if len(self._keys) > MAX_TIPS:
                self._keys.popitem(last=False)
        return keys

    def _seen(self, stream: str, epoch: str, base: int, next_offset: int) -> None:
        """Remember the newest position seen of ``stream``: where :meth:`listen` starts."""
        tips = self._tips
        old = tips.get(stream)
        major = base + next_offset
        if old is None or old[0] != epoch or old[1] < major:
            tips[stream] = (epoch, major)
            tips.move_to_end(stream)
            if len(tips) > MAX_TIPS:
                tips.popitem(last=False)

    def _limits_args(self, limits: HistoryLimits) -> list[Any]:
        return [limits.max_messages, limits.max_bytes, repr(float(limits.max_age))]

    def _info(self, stream: str, reply: Sequence[Any]) -> StreamInfo:
        # {'ok', epoch, first, next, bytes, created, mm, mb, ma, base}
        epoch = _text(reply[1])
        first, next_offset = int(reply[2]), int(reply[3])
        self._seen(stream, epoch, int(reply[9]), next_offset)
        return StreamInfo(
            name=stream,
            epoch=epoch,
            first=first,
            next=next_offset,
            history_messages=next_offset - first,
            history_bytes=int(reply[4]),
            limits=self._stored_limits(stream, reply[6], reply[7], reply[8]),
            created=float(reply[5]),
        )

    def _stored_limits(self, stream: str, mm: Any, mb: Any, ma: Any) -> HistoryLimits:
        """The limits kept in a stream's meta hash. A value no server would write now
        (from before limits were checked) is clamped, logged once, and never breaks a
        listing."""
        values = []
        for raw, default in (
            (mm, self.default_limits.max_messages),
            (mb, self.default_limits.max_bytes),
            (ma, self.default_limits.max_age),
        ):
            try:
                number = float(_text(raw))
            except ValueError:
                number = math.nan
            if not math.isfinite(number) or number < 0 or number > MAX_SAFE_INTEGER:
                if stream not in self._bad_limits:
                    self._bad_limits.add(stream)
                    log.warning("stream %r has an unreadable history limit %r", stream, raw)
                number = (
                    float(default)
                    if not math.isfinite(number) or number < 0
                    else (float(MAX_SAFE_INTEGER))
                )
            values.append(number)
        return HistoryLimits(max(1, int(values[0])), int(values[1]), values[2])

    # --- streams ---------------------------------------------------------------------------

    async def create(self, stream: str, limits: HistoryLimits | None = None) -> StreamInfo:
        keys = self._stream_keys(stream)
        chosen = limits or self.default_limits
        reply = await self._script(
            "CREATE",
            [keys.meta, keys.log, self._registry],
            [stream, new_epoch(), *self._limits_args(chosen), "1" if limits else "0"],
        )
        return self._info(stream, reply)

    async def delete(self, stream: str) -> bool:
        keys = self._stream_keys(stream)
        existed = await self._script(
            "DELETE",
            [keys.meta, keys.log, self._registry, keys.producers, keys.forgotten, keys.newest],
            [stream, keys.seen_prefix],
        )
        return bool(existed)

    async def info(self, stream: str) -> StreamInfo | None:
        keys = self._stream_keys(stream)
        reply = await self._script("INFO", [keys.meta, keys.log], [])
        if reply[0] != b"ok":
            return None
        return self._info(stream, reply)

    async def streams(self) -> list[StreamInfo]:
        client = self._client
        if client is None:
            raise BrokerUnavailable("broker unavailable: not started")
        names = await self._command(lambda: client.smembers(self._registry))
        infos = await asyncio.gather(*(self.info(_text(n)) for n in sorted(names)))
        return [info for info in infos if info is not None]

    async def stream_count(self) -> int:
        """``SCARD`` of the set of stream names the scripts maintain (one O(1) command)."""
        client = self._client
        if client is None:
            raise BrokerUnavailable("broker unavailable: not started")
        return int(await self._command(lambda: client.scard(self._registry)))

    # --- append / read -----------------------------------------------------------------------

    async def append(self, publish: Publish, body: bytes, *, create: bool = True) -> AppendResult:
        stream, producer, seq = publish.stream, publish.producer, publish.seq
        key, content_type, binary = publish.key, publish.content_type, publish.binary
        keys = self._stream_keys(stream)
        acked = producer is not None and seq is not None
        flags = (
            (FLAG_BINARY if binary else 0)
            | (FLAG_PRODUCER if acked else 0)
            | (FLAG_KEY if key is not None else 0)
            | (FLAG_CONTENT_TYPE if content_type is not None else 0)
        )
        limits = self.default_limits
        request = AppendRequest(
            [
                keys.meta,
                keys.log,
                self._registry,
                keys.producers,
                keys.forgotten,
                keys.seen_prefix + (producer if producer is not None else ""),
                keys.newest,
            ],
            [
                stream,
                body,
                flags,
                producer if acked else "",
                seq if acked else "",
                key or "",
                content_type or "",
                "1" if create else "0",
                new_epoch(),
                limits.max_messages,
                limits.max_bytes,
                repr(float(limits.max_age)),
                self.dedupe_window,
            ],
            (stream, producer) if producer is not None and seq is not None else None,
            seq if seq is not None else 0,
        )
        appends = self._appends
        if appends is None:
            raise BrokerUnavailable("broker unavailable: not started")
        reply = await appends.submit(request)
        status = reply[0]
        if status == b"ok":
            epoch, offset, base = _text(reply[1]), int(reply[2]), int(reply[4])
            self._seen(stream, epoch, base, offset + 1)
            message = StoredMessage(
                offset,
                int(reply[3]) / 1_000_000,
                body,
                binary,
                producer if acked else None,
                seq if acked else None,
                key,
                content_type,
            )
            return AppendResult(offset, epoch, message=message)
        if status == b"duplicate":
            original = reply[2]
            return AppendResult(
                int(float(original)) if original is not None else None,
                _text(reply[1]),
                duplicate=True,
            )
        if status == b"unknown":
            raise UnknownStream(f"no stream named {stream!r}")
        raise PayloadTooLarge.over(len(body), int(reply[1]))

    async def append_batch(
        self, batch: PublishBatch, bodies: Sequence[bytes], *, create: bool = True
    ) -> BatchOutcome:
        """One ``APPEND_BATCH`` script for the whole batch, queued with the single
        appends (so in call order, pipelined, and held back like them)."""
        stream, producer, seq, keys = batch.stream, batch.producer, batch.seq, batch.keys
        content_type = batch.content_type
        stream_keys = self._stream_keys(stream)
        count = len(bodies)
        flags = (
            (FLAG_BINARY if batch.binary else 0)
            | FLAG_PRODUCER
            | (FLAG_CONTENT_TYPE if content_type is not None else 0)
        )
        limits = self.default_limits
        # Few, long arguments (redis-py encodes each argument in Python): payloads and
        # keys concatenated, with their sizes.
        sizes = ",".join([str(len(p)) for p in bodies])
        if keys is not None and any(k is not None for k in keys):
            encoded_keys = [k.encode() if k is not None else None for k in keys]
            key_sizes = ",".join(["-1" if k is None else str(len(k)) for k in encoded_keys])
            key_blob = b"".join([k for k in encoded_keys if k is not None])
        else:
            key_sizes, key_blob = "", b""
        request = AppendRequest(
            [
                stream_keys.meta,
                stream_keys.log,
                self._registry,
                stream_keys.producers,
                stream_keys.forgotten,
                stream_keys.seen_prefix + producer,
                stream_keys.newest,
            ],
            [
                stream,
                flags,
                producer,
                seq,
                content_type or "",
                "1" if create else "0",
                new_epoch(),
                limits.max_messages,
                limits.max_bytes,
                repr(float(limits.max_age)),
                self.dedupe_window,
                count,
                sizes,
                b"".join(bodies),
                key_sizes,
                key_blob,
            ],
            (stream, producer),
            seq,
            script="APPEND_BATCH",
            last=seq + count - 1,
        )
        appends = self._appends
        if appends is None:
            raise BrokerUnavailable("broker unavailable: not started")
        reply = await appends.submit(request)
        if reply[0] == b"unknown":
            raise UnknownStream(f"no stream named {stream!r}")
        epoch, offset, base = _text(reply[1]), int(reply[2]), int(reply[4])
        codes: bytes = reply[5]
        duplicates = iter(reply[6])
        bound = int(reply[7])
        if codes.count(b"a") == count:  # all appended (the common case): no per-message work
            self._seen(stream, epoch, base, offset + count)
            return BatchOutcome(epoch, count, first=offset)
        out: list[AppendResult | PayloadTooLarge] = []
        appended = AppendResult(0, epoch)  # replaced per message below (a cheap tuple)
        for i, code in enumerate(codes):
            if code == 97:  # 'a'
                out.append(appended._replace(offset=offset))
                offset += 1
            elif code == 100:  # 'd'
                original = next(duplicates)
                out.append(AppendResult(int(float(original)) if original else None, epoch, True))
            else:  # 'x'
                out.append(PayloadTooLarge.over(len(bodies[i]), bound))
        self._seen(stream, epoch, base, offset)
        return BatchOutcome(epoch, count, results=out)

    async def _execute_appends(self, batch: list[AppendRequest]) -> list[Any]:
        """Send a batch of appends as one pipeline (see ``redis_appends``)."""
        client = self._client
        if client is None:
            raise BrokerUnavailable("broker unavailable: not started")
        scripts = self._scripts
        # One pipeline per run of requests of the same script: Redis loses its scripts
        # all at once, so within a run either every call finds its script or none does
        # (and the run is resent whole, in order). Mixing scripts in one pipeline could
        # append a later single while the batch before it is refused with NOSCRIPT.
        groups: list[list[AppendRequest]] = []
        for request in batch:
            if groups and groups[-1][0].script == request.script:
                groups[-1].append(request)
            else:
                groups.append([request])

        async def run_group(group: list[AppendRequest]) -> list[Any]:
            sha = scripts[group[0].script].sha
            for attempt in range(2):
                async with client.pipeline(transaction=False) as pipe:
                    for request in group:
                        pipe.execute_command(
                            "EVALSHA", sha, len(request.keys), *request.keys, *request.args
                        )
                    replies: list[Any] = await pipe.execute(raise_on_error=False)
                if attempt == 0 and any(isinstance(r, NoScriptError) for r in replies):
                    await client.script_load(getattr(redis_scripts, group[0].script))
                    continue
                return replies
            raise AssertionError("unreachable")  # pragma: no cover

        async def run() -> list[Any]:
            replies: list[Any] = []
            for group in groups:
                replies += await run_group(group)
            return replies

        # A stale connection is retried on a fresh one only when every append in the
        # batch is idempotent (acked: a second run is recognised as a duplicate).
        replies = await self._command(run, retry=all(r.producer is not None for r in batch))
        return [self._refusal(r) if isinstance(r, ResponseError) else r for r in replies]

    def _refusal(self, error: ResponseError) -> Exception:
        """A per-append error reply: "cannot now" replies become BrokerUnavailable."""
        if _refused(error):
            self._health(commands=False, reason=_reason(error))
            return BrokerUnavailable(_reason(error))
        return error

    async def read(self, stream: str, since: int, limit: int) -> ReadResult:
        keys = self._stream_keys(stream)
        reply = await self._script("READ", [keys.meta, keys.log], [since, limit])
        if reply[0] != b"ok":
            raise UnknownStream(f"no stream named {stream!r}")
        epoch, first, next_offset = _text(reply[1]), int(reply[2]), int(reply[3])
        self._seen(stream, epoch, int(reply[4]), next_offset)
        messages = [_from_script(entry[1]) for entry in reply[5]]
        return ReadResult(epoch, first, next_offset, messages)

    # --- listening -------------------------------------------------------------------------

    def listen(self, stream: str, listener: Listener) -> None:
        state = self._listened.get(stream)
        if state is None:
            tip = self._tips.get(stream)
            keys = self._stream_keys(stream)
            # Without a known position, start at the oldest entry the stream holds
            # (never later than now; the log holds only the current epoch).
            last_id, epoch = (f"{tip[1]}-0", tip[0]) if tip else ("0-0", None)
            state = self._listened[stream] = _Listened(keys.log, last_id, epoch)
            self._by_key[keys.log] = stream
            self._wake()
        state.listeners.append(listener)

    def unlisten(self, stream: str, listener: Listener) -> None:
        state = self._listened.get(stream)
        if state is None or listener not in state.listeners:
            return
        state.listeners.remove(listener)
        if not state.listeners:
            del self._listened[stream]
            self._by_key.pop(state.key, None)

    def _wake(self) -> None:
        """Make the reader's pending ``XREAD`` return so it picks up a new stream now."""
        client = self._client
        if client is None or self._closed:
            return

        async def poke() -> None:
            with contextlib.suppress(*_NETWORK_ERRORS, ResponseError):
                async with client.pipeline(transaction=False) as pipe:
                    pipe.xadd(self._wake_key, {"w": "1"}, maxlen=1, approximate=False)
                    pipe.pexpire(self._wake_key, 60_000)
                    await pipe.execute()

        task = asyncio.ensure_future(poke())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _read_loop(self) -> None:
        """The one reader of this process (see module docstring)."""
        delay = self.backoff[0]
        while not self._closed:
            try:
                if self._resync:
                    await self._resynchronise()
                reply = await self._read_once()
            except asyncio.CancelledError:
                raise
            except (*_NETWORK_ERRORS, ResponseError) as exc:
                if self._closed:
                    return
                self._health(reader=False, reason=_reason(exc))
                self._resync = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.backoff[1])
                continue
            if not self._reader_ok:
                self._health(reader=True)
            delay = self.backoff[0]
            self._dispatch(reply)

    async def _read_once(self) -> Any:
        client = self._reader_client
        assert client is not None
        keys = [self._wake_key]
        ids = [self._wake_id]
        for state in self._listened.values():
            keys.append(state.key)
            ids.append(state.last_id)
        return await client.execute_command(  # type: ignore[no-untyped-call]
            "XREAD",
            "COUNT",
            self.read_count,
            "BLOCK",
            int(self.block * 1000),
            "STREAMS",
            *keys,
            *ids,
        )

    async def _resynchronise(self) -> None:
        """After a reconnect (or for a stream listened without a known position): a stream
        whose epoch changed meanwhile (deleted, or Redis lost its data) is followed from
        the start of its new epoch, which may have ids below the last one delivered."""
        client = self._reader_client
        assert client is not None
        states = list(self._listened.values())
        if states:
            script = self._scripts["STATE"]
            metas = [self._stream_keys(self._by_key[s.key]).meta for s in states]
            replies = await script(keys=metas, args=[], client=client)
            for state, (epoch, base, first) in zip(states, replies, strict=True):
                now_epoch = _text(epoch) if epoch is not None else None
                if now_epoch is not None and now_epoch == state.epoch:
                    continue
                start = int(base) + int(first) if now_epoch is not None else 0
                if _id_major(state.last_id) > start:
                    state.last_id = f"{start}-0"
                state.epoch = now_epoch
        self._resync = False

    def _dispatch(self, reply: Any) -> None:
        if not reply:
            return
        items: Iterable[Any] = reply.items() if isinstance(reply, dict) else reply
        for key, entries in items:
            key_text = _text(key)
            if key_text == self._wake_key:
                if entries:
                    self._wake_id = _text(entries[-1][0])
                continue
            stream = self._by_key.get(key_text)
            state = self._listened.get(stream) if stream is not None else None
            if state is None or stream is None:
                continue
            if not entries:
                continue
            state.last_id = _text(entries[-1][0])
            raw_epoch, epoch = b"", ""
            listeners = tuple(state.listeners)
            for _entry_id, fields in entries:
                # Fields in their fixed order (redis_scripts): o e t c f p r s k y.
                if fields[3] != raw_epoch:
                    raw_epoch = fields[3]
                    epoch = raw_epoch.decode()
                message = _from_script(fields)
                for listener in listeners:
                    try:
                        listener(stream, epoch, message)
                    except Exception:  # pragma: no cover - a listener bug stays local
                        log.exception("listener of %s failed", stream)
            state.epoch = epoch
