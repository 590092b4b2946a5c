"""Every nbws.v1 message, and the one encoder and decoder for them (docs/protocol.md).

Each message is a frozen, slotted dataclass; its fields carry their wire name, their kind
and whether they are required, so validation, encoding and the JSON Schema
(``docs/nbws.v1.schema.json``, :func:`json_schema`) all come from the same table. Nothing
else in nbws builds or picks apart a protocol dict.

- :func:`decode_request` (server side) and :func:`decode_event` (client side) parse a
  WebSocket message (a JSON text frame, or the binary layout) into a message object,
  raising :class:`~nbws.errors.BadRequest` / :class:`~nbws.errors.UnknownType` (answered
  on the connection), :class:`~nbws.errors.InvalidPayload` (1007) or
  :class:`~nbws.errors.PolicyViolation` (1008).
- :func:`encode` turns a message object into ``(data, text)``; :func:`encode_delivery`
  is the fan-out fast path: a stored message's body built once, its JSON payload spliced in
  as stored, never re-serialised per subscriber.
- :func:`resume_since` is the resume arithmetic (``since = last + 1``) every client uses.

``python -m nbws.protocol.messages --schema docs/nbws.v1.schema.json`` rewrites the
schema (a test checks it is current). ``tests/vectors/*.json`` are example messages that
this module and the labextension's ``protocol.ts`` must decode (or refuse) alike.

The binary layout: a 4-byte big-endian header length, the JSON header, the payload.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import re
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, TypeVar

import orjson

from ..errors import (
    BadRequest,
    ErrorCode,
    InvalidPayload,
    NackCode,
    PolicyViolation,
    RequestError,
    UnknownType,
)

__all__ = [
    "EVENTS",
    "MAX_CONTENT_TYPE_LENGTH",
    "MAX_EPOCH_LENGTH",
    "MAX_HEADER_BYTES",
    "MAX_KEY_LENGTH",
    "MAX_PRODUCER_LENGTH",
    "PROTOCOL",
    "REQUESTS",
    "STREAM_NAME",
    "Ack",
    "AnyMessage",
    "Consumed",
    "Encoded",
    "End",
    "Error",
    "Event",
    "FieldSpec",
    "Gap",
    "GapReason",
    "HealthState",
    "Info",
    "InfoRequest",
    "Kind",
    "Message",
    "Nack",
    "Policy",
    "Publish",
    "Request",
    "Status",
    "Stored",
    "Subscribe",
    "Subscribed",
    "Unsubscribe",
    "Unsubscribed",
    "Welcome",
    "binary_prefix",
    "decode_event",
    "decode_object",
    "decode_request",
    "encode",
    "encode_delivery",
    "encode_publish_fast",
    "encode_value",
    "json_schema",
    "message_from_dict",
    "publish_fast_prefix",
    "resume_since",
    "right_sized",
    "schema_text",
    "split_binary",
    "to_dict",
    "valid_stream_name",
]

PROTOCOL = "nbws.v1"
MAX_HEADER_BYTES = 64 * 1024
MAX_KEY_LENGTH = 256
MAX_PRODUCER_LENGTH = 256
MAX_CONTENT_TYPE_LENGTH = 256
MAX_EPOCH_LENGTH = 64
MAX_REF_LENGTH = 256
STREAM_NAME = re.compile(r"^[A-Za-z0-9._:/-]{1,200}$")
STREAM_RULE = "1-200 characters from A-Z a-z 0-9 . _ : / -"
_LEN = struct.Struct("!I")

Ref = str | int | None


class Policy(str, enum.Enum):
    """What a subscriber's full buffer does (docs/protocol.md, "subscribe")."""

    DROP_OLDEST = "drop-oldest"
    DROP_NEWEST = "drop-newest"
    CONFLATE = "conflate"
    DISCONNECT = "disconnect"
    BLOCK = "block"

    def __str__(self) -> str:
        return self.value


class GapReason(str, enum.Enum):
    """Why offsets were skipped (docs/protocol.md, "gap")."""

    HISTORY = "history"
    EPOCH = "epoch"
    DROPPED = "dropped"
    CONFLATED = "conflated"

    def __str__(self) -> str:
        return self.value


class HealthState(str, enum.Enum):
    """``state`` of a ``status`` message."""

    OK = "ok"
    DEGRADED = "degraded"

    def __str__(self) -> str:
        return self.value


def valid_stream_name(name: object) -> bool:
    """True for a string stream name nbws accepts."""
    return isinstance(name, str) and STREAM_NAME.fullmatch(name) is not None


# --- the field table ---------------------------------------------------------------------


class Kind(enum.Enum):
    """What a field holds on the wire (each kind has one check and one schema)."""

    STREAM = "stream"  # a stream name
    INT = "int"  # any integer
    NAT = "nat"  # integer >= 0
    POSITIVE = "positive"  # integer >= 1
    STR = "str"  # string of at most `limit` characters
    NUMBER = "number"  # finite int or float
    BOOL = "bool"
    REF = "ref"  # a request id: string or integer
    ENUM = "enum"  # one of `choices`' values
    JSON = "json"  # any JSON value (a payload)
    OBJECT = "object"  # a JSON object (free-form figures)


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """How one dataclass field appears on the wire."""

    kind: Kind
    wire: str = ""  # JSON key when it differs from the attribute name
    required: bool = False
    limit: int = 0  # longest string, for Kind.STR
    maximum: int | None = None  # largest value, for the integer kinds
    choices: type[enum.Enum] | None = None  # for Kind.ENUM
    keep_null: bool = False  # encode None as null instead of leaving the key out
    doc: str = ""


def _f(kind: Kind, doc: str = "", **spec: Any) -> Any:
    """A dataclass field carrying its :class:`FieldSpec` (default None unless required)."""
    meta = {"nbws": FieldSpec(kind, doc=doc, **spec)}
    if spec.get("required"):
        return field(metadata=meta)
    return field(default=None, metadata=meta)


@dataclass(frozen=True, slots=True)
class _Column:
    name: str  # attribute
    wire: str  # JSON key
    spec: FieldSpec
    check: Callable[[Any, str], Any] = field(default=lambda value, kind: value)


# --- validation --------------------------------------------------------------------------


def _bad(message: str) -> BadRequest:
    return BadRequest(message)


def _checker(spec: FieldSpec, name: str) -> Callable[[Any, str], Any]:
    """The check of one field kind: takes a present, non-null value (and the message
    type, for the error text) and returns it (enums as members) or raises BadRequest."""
    kind = spec.kind
    if kind is Kind.STREAM:

        def check(value: Any, kind_name: str) -> Any:
            if type(value) is not str or STREAM_NAME.fullmatch(value) is None:
                raise _bad(f"{kind_name} needs a '{name}' of {STREAM_RULE}")
            return value

    elif kind in (Kind.INT, Kind.NAT, Kind.POSITIVE):
        minimum = {Kind.INT: None, Kind.NAT: 0, Kind.POSITIVE: 1}[kind]
        maximum = spec.maximum

        def check(value: Any, kind_name: str) -> Any:
            if type(value) is not int:
                raise _bad(f"'{name}' must be an integer")
            if minimum is not None and value < minimum:
                raise _bad(f"'{name}' must be at least {minimum}")
            if maximum is not None and value > maximum:
                raise _bad(f"'{name}' must be at most {maximum}")
            return value

    elif kind is Kind.STR:
        limit = spec.limit

        def check(value: Any, kind_name: str) -> Any:
            if type(value) is not str:
                raise _bad(f"'{name}' must be a string")
            if limit and len(value) > limit:
                raise _bad(f"'{name}' is longer than {limit} characters")
            return value

    elif kind is Kind.REF:

        def check(value: Any, kind_name: str) -> Any:
            if type(value) is int or (type(value) is str and len(value) <= MAX_REF_LENGTH):
                return value
            raise _bad(f"'{name}' must be an integer or a string of at most {MAX_REF_LENGTH}")

    elif kind is Kind.ENUM:
        choices = spec.choices
        assert choices is not None
        allowed = ", ".join(str(c.value) for c in choices)

        def check(value: Any, kind_name: str) -> Any:
            try:
                return choices(value)
            except ValueError:
                raise _bad(f"unknown {name} {value!r}; use one of {allowed}") from None

    elif kind is Kind.NUMBER:

        def check(value: Any, kind_name: str) -> Any:
            if type(value) is int or (type(value) is float and math.isfinite(value)):
                return value
            raise _bad(f"'{name}' must be a finite number")

    elif kind is Kind.BOOL:

        def check(value: Any, kind_name: str) -> Any:
            if type(value) is not bool:
                raise _bad(f"'{name}' must be true or false")
            return value

    elif kind is Kind.OBJECT:

        def check(value: Any, kind_name: str) -> Any:
            if type(value) is not dict:
                raise _bad(f"'{name}' must be an object")
            return value

    else:  # Kind.JSON: anything JSON parsed into

        def check(value: Any, kind_name: str) -> Any:
            return value

    return check


class _Base:
    """Shared by every message: its wire ``type`` and its column table."""

    __slots__ = ()
    TYPE: ClassVar[str]
    COLUMNS: ClassVar[tuple[_Column, ...]]
    DOC: ClassVar[str]


M = TypeVar("M", bound=_Base)

REQUESTS: dict[str, type[_Base]] = {}
"""Client → server messages by ``type``."""
EVENTS: dict[str, type[_Base]] = {}
"""Server → client messages by ``type``."""


def _message(kind: str, registry: dict[str, type[_Base]]) -> Callable[[type[M]], type[M]]:
    def register(cls: type[M]) -> type[M]:
        cls.TYPE = kind
        cls.DOC = (cls.__doc__ or "").strip().split("\n\n")[0]
        columns = []
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if "nbws" in f.metadata:
                spec: FieldSpec = f.metadata["nbws"]
                columns.append(
                    _Column(f.name, spec.wire or f.name, spec, _checker(spec, spec.wire or f.name))
                )
        cls.COLUMNS = tuple(columns)
        registry[kind] = cls
        return cls

    return register


# --- client → server ---------------------------------------------------------------------

MAX_CREDIT = 100_000
"""Largest ``credit`` a subscriber may ask for (messages in flight)."""
MAX_CREDIT_BYTES = 1 << 30
"""Largest ``credit_bytes`` a subscriber may ask for."""
__all__ += ["MAX_CREDIT", "MAX_CREDIT_BYTES"]


@_message("subscribe", REQUESTS)
@dataclass(frozen=True, slots=True)
class Subscribe(_Base):
    """Subscribe to a stream, replaying from ``since``; answered by ``subscribed``."""

    stream: str = _f(Kind.STREAM, "stream to subscribe to", required=True)
    id: Ref = _f(Kind.REF, "request id, echoed as `ref` in the reply")
    since: int | None = _f(Kind.INT, "first offset wanted; null: live only; -k: last k")
    until: int | None = _f(Kind.NAT, "stop before this offset and send `end`")
    epoch: str | None = _f(Kind.STR, "epoch `since` refers to", limit=MAX_EPOCH_LENGTH)
    policy: Policy | None = _f(Kind.ENUM, "buffer policy when full", choices=Policy)
    max_messages: int | None = _f(Kind.POSITIVE, "buffer bound in messages")
    max_bytes: int | None = _f(Kind.POSITIVE, "buffer bound in bytes")
    max_batch: int | None = _f(
        Kind.POSITIVE, "deliver `batch` events of at most this many messages", maximum=10_000
    )
    linger_ms: int | None = _f(
        Kind.NAT, "ms a partial live batch may wait to fill (with max_batch)", maximum=100
    )
    credit: int | None = _f(
        Kind.POSITIVE,
        "messages sent and not yet reported `consumed` the server allows (with max_batch)",
        maximum=MAX_CREDIT,
    )
    credit_bytes: int | None = _f(
        Kind.POSITIVE,
        "bytes sent and not yet reported `consumed` (with credit)",
        maximum=MAX_CREDIT_BYTES,
    )


@_message("consumed", REQUESTS)
@dataclass(frozen=True, slots=True)
class Consumed(_Base):
    """The client has applied everything up to and including ``offset`` of a subscription
    with ``credit``: the server may send that much more. No reply unless refused."""

    stream: str = _f(Kind.STREAM, required=True)
    offset: int = _f(Kind.NAT, "last offset applied (inclusive)", required=True)
    id: Ref = _f(Kind.REF)


@_message("unsubscribe", REQUESTS)
@dataclass(frozen=True, slots=True)
class Unsubscribe(_Base):
    """End this connection's subscription to a stream; answered by ``unsubscribed``."""

    stream: str = _f(Kind.STREAM, required=True)
    id: Ref = _f(Kind.REF)


@_message("publish", REQUESTS)
@dataclass(frozen=True, slots=True)
class Publish(_Base):
    """Append one message; with ``producer`` + ``seq`` it is acked and deduplicated.

    ``payload`` is any JSON value (or an :class:`orjson.Fragment` of encoded JSON); for a
    binary publish (``binary=True``) it is the raw bytes after the binary header.

    The decoded request is the value the publish travels as: the hub and the broker take
    it whole (``Broker.append(publish, body)``, ``body`` being the payload as stored), so
    its fields are named once, here.
    """

    stream: str = _f(Kind.STREAM, required=True)
    payload: Any = _f(Kind.JSON, "the message (absent in the binary layout)")
    producer: str | None = _f(Kind.STR, "producer id (with seq: acked)", limit=MAX_PRODUCER_LENGTH)
    seq: int | None = _f(Kind.NAT, "per-producer sequence number (with producer)")
    key: str | None = _f(Kind.STR, "conflation key", limit=MAX_KEY_LENGTH)
    content_type: str | None = _f(
        Kind.STR, "binary payload's media type", limit=MAX_CONTENT_TYPE_LENGTH
    )
    id: Ref = _f(Kind.REF)
    binary: bool = False

    @property
    def acked(self) -> bool:
        return self.producer is not None


@_message("info", REQUESTS)
@dataclass(frozen=True, slots=True)
class InfoRequest(_Base):
    """Ask for a stream's figures; answered by an ``info`` event."""

    stream: str = _f(Kind.STREAM, required=True)
    id: Ref = _f(Kind.REF)


# --- batched publishing (publish_batch) ---------------------------------------------------
#
# Many publishes of one producer in one WebSocket message (docs/protocol.md,
# "publish_batch"); answered by range acks (``Ack.last``/``Ack.duplicates``) and range
# nacks (``Nack.last``). The helpers for it (checks, binary layout, fast encoders) are in
# the section "batched publishing: helpers" below.


@_message("publish_batch", REQUESTS)
@dataclass(frozen=True, slots=True)
class PublishBatch(_Base):
    """Append many messages of one producer with consecutive seqs from ``seq``.

    ``payloads`` holds the JSON values (``bytes`` each in the binary layout, where the
    header carries ``sizes`` instead); ``keys`` is None or one key (or None) per message.
    Like :class:`Publish`, it travels whole to ``Broker.append_batch(batch, bodies)``.
    """

    stream: str = _f(Kind.STREAM, required=True)
    producer: str = _f(Kind.STR, "producer id", required=True, limit=MAX_PRODUCER_LENGTH)
    seq: int = _f(Kind.NAT, "seq of the first message; message i has seq + i", required=True)
    payloads: list[Any] | None = _f(Kind.JSON, "the messages (absent in the binary layout)")
    keys: list[str | None] | None = _f(Kind.JSON, "one conflation key (or null) per message")
    sizes: list[int] | None = _f(Kind.JSON, "binary layout: byte length of each message")
    content_type: str | None = _f(
        Kind.STR, "binary payloads' media type", limit=MAX_CONTENT_TYPE_LENGTH
    )
    id: Ref = _f(Kind.REF)
    binary: bool = False

    @property
    def count(self) -> int:
        return len(self.payloads or ())

    @property
    def last(self) -> int:
        """The seq of the batch's last message."""
        return self.seq + len(self.payloads or ()) - 1


# --- server → client ---------------------------------------------------------------------


@_message("welcome", EVENTS)
@dataclass(frozen=True, slots=True)
class Welcome(_Base):
    """The first message on every nbws.v1 connection: what this server allows."""

    protocol: str = _f(Kind.STR, required=True)
    server: str = _f(Kind.STR, required=True)
    connection: str = _f(Kind.STR, required=True)
    max_message_size: int = _f(Kind.NAT, required=True)
    heartbeat_interval: float = _f(Kind.NUMBER, required=True)
    dedupe_window: int = _f(Kind.NAT, required=True)


@_message("subscribed", EVENTS)
@dataclass(frozen=True, slots=True)
class Subscribed(_Base):
    """A subscription started: the stream's bounds and this subscriber's buffer."""

    stream: str = _f(Kind.STREAM, required=True)
    epoch: str = _f(Kind.STR, required=True)
    first: int = _f(Kind.NAT, required=True)
    next: int = _f(Kind.NAT, required=True)
    policy: Policy = _f(Kind.ENUM, required=True, choices=Policy)
    max_messages: int = _f(Kind.POSITIVE, required=True)
    max_bytes: int = _f(Kind.POSITIVE, required=True)
    since: int | None = _f(Kind.INT, keep_null=True)
    ref: Ref = _f(Kind.REF, keep_null=True)
    max_batch: int | None = _f(Kind.POSITIVE, "a batching subscriber's max_batch")
    linger_ms: int | None = _f(Kind.NAT, "a batching subscriber's linger_ms")
    credit: int | None = _f(Kind.POSITIVE, "a subscriber's credit (messages in flight)")
    credit_bytes: int | None = _f(Kind.POSITIVE, "a subscriber's credit_bytes")


@_message("unsubscribed", EVENTS)
@dataclass(frozen=True, slots=True)
class Unsubscribed(_Base):
    """A subscription ended at the client's request."""

    stream: str = _f(Kind.STREAM, required=True)
    ref: Ref = _f(Kind.REF, keep_null=True)


@_message("message", EVENTS)
@dataclass(frozen=True, slots=True)
class Message(_Base):
    """One delivered message. ``payload`` as in :class:`Publish`."""

    stream: str = _f(Kind.STREAM, required=True)
    offset: int = _f(Kind.NAT, required=True)
    epoch: str = _f(Kind.STR, required=True)
    time: float = _f(Kind.NUMBER, required=True)
    payload: Any = _f(Kind.JSON)
    producer: str | None = _f(Kind.STR)
    seq: int | None = _f(Kind.NAT)
    key: str | None = _f(Kind.STR)
    content_type: str | None = _f(Kind.STR)
    binary: bool = False


@_message("end", EVENTS)
@dataclass(frozen=True, slots=True)
class End(_Base):
    """A subscription with ``until`` reached it; ``next`` is where to go on from."""

    stream: str = _f(Kind.STREAM, required=True)
    next: int = _f(Kind.NAT, required=True)


@_message("ack", EVENTS)
@dataclass(frozen=True, slots=True)
class Ack(_Base):
    """A publish is appended (or was already: ``duplicate``) at ``offset``."""

    stream: str = _f(Kind.STREAM, required=True)
    producer: str = _f(Kind.STR, required=True)
    seq: int = _f(Kind.NAT, required=True)
    epoch: str = _f(Kind.STR, required=True)
    duplicate: bool = _f(Kind.BOOL, required=True)
    offset: int | None = _f(Kind.NAT, keep_null=True)
    last: int | None = _f(Kind.NAT, "a range ack (publish_batch): last seq covered, inclusive")
    duplicates: dict[str, int | None] | None = _f(
        Kind.OBJECT, "a range ack: seq (as a string) -> offset or null, already appended"
    )

    def offsets(self) -> list[tuple[int, int | None, bool]]:
        """``(seq, offset, duplicate)`` of every seq this ack covers, in seq order: the
        seqs not in ``duplicates`` were appended at consecutive offsets from ``offset``."""
        if self.last is None:
            return [(self.seq, self.offset, self.duplicate)]
        known = {int(seq): offset for seq, offset in (self.duplicates or {}).items()}
        out: list[tuple[int, int | None, bool]] = []
        offset = self.offset
        for seq in range(self.seq, self.last + 1):
            if seq in known:
                out.append((seq, known[seq], True))
            else:
                out.append((seq, offset, False))
                offset = None if offset is None else offset + 1
        return out


@_message("nack", EVENTS)
@dataclass(frozen=True, slots=True)
class Nack(_Base):
    """A publish was not appended; ``retry`` says whether sending it again may help."""

    stream: str = _f(Kind.STREAM, required=True)
    code: NackCode = _f(Kind.ENUM, required=True, choices=NackCode)
    reason: str = _f(Kind.STR, required=True)
    retry: bool = _f(Kind.BOOL, required=True)
    producer: str | None = _f(Kind.STR, keep_null=True)
    seq: int | None = _f(Kind.NAT, keep_null=True)
    last: int | None = _f(Kind.NAT, "a range nack (publish_batch): last seq refused, inclusive")


@_message("gap", EVENTS)
@dataclass(frozen=True, slots=True)
class Gap(_Base):
    """Offsets ``from`` (inclusive) to ``to`` (exclusive) will not be delivered.

    The attributes are ``start`` and ``end`` (``from`` is a Python keyword).
    """

    stream: str = _f(Kind.STREAM, required=True)
    start: int = _f(Kind.NAT, wire="from", required=True)
    reason: GapReason = _f(Kind.ENUM, required=True, choices=GapReason)
    end: int | None = _f(Kind.NAT, wire="to", keep_null=True)
    count: int | None = _f(Kind.NAT, keep_null=True)
    epoch: str | None = _f(Kind.STR, keep_null=True)


@_message("info", EVENTS)
@dataclass(frozen=True, slots=True)
class Info(_Base):
    """A stream's figures, in reply to an ``info`` request."""

    stream: str = _f(Kind.STREAM, required=True)
    epoch: str = _f(Kind.STR, required=True)
    first: int = _f(Kind.NAT, required=True)
    next: int = _f(Kind.NAT, required=True)
    history_messages: int = _f(Kind.NAT, required=True)
    history_bytes: int = _f(Kind.NAT, required=True)
    rate: float = _f(Kind.NUMBER, required=True)
    subscribers: int = _f(Kind.NAT, required=True)
    drops: int = _f(Kind.NAT, required=True)
    held_acks: int = _f(Kind.NAT, required=True)
    ref: Ref = _f(Kind.REF, keep_null=True)


@_message("error", EVENTS)
@dataclass(frozen=True, slots=True)
class Error(_Base):
    """A request was refused; the connection stays open."""

    code: ErrorCode = _f(Kind.ENUM, required=True, choices=ErrorCode)
    message: str = _f(Kind.STR, required=True)
    ref: Ref = _f(Kind.REF, keep_null=True)


@_message("status", EVENTS)
@dataclass(frozen=True, slots=True)
class Status(_Base):
    """The server's broker became unavailable (``degraded``) or is back (``ok``)."""

    state: HealthState = _f(Kind.ENUM, required=True, choices=HealthState)
    reason: str | None = _f(Kind.STR)


# --- batched deliveries (docs/protocol.md, "batch") ------------------------------------
#
# The message class here; its encoder (batch_item, encode_batch) and decoder
# (_decode_batch) are in the section of the same name at the end of the module.

MAX_BATCH = 10_000
"""Largest ``max_batch`` a subscriber may ask for."""
MAX_LINGER_MS = 100
"""Largest ``linger_ms`` a subscriber may ask for."""
BATCH_BYTES = 1 << 20
"""A batch stops growing once its payloads reach this many bytes."""
BATCH_HEADER_BYTES = MAX_HEADER_BYTES - 4096
"""A binary batch stops growing once its header reaches this many bytes (room for one
more message's metadata under :data:`MAX_HEADER_BYTES`)."""


@_message("batch", EVENTS)
@dataclass(frozen=True, slots=True)
class Batch(_Base):
    """A run of delivered messages of one stream and epoch, in offset order.

    Sent instead of ``message`` events to a subscriber that asked with ``max_batch``.
    ``messages`` holds :class:`Message` objects (decoded) and is, on the wire, a list of
    messages without ``type``, ``stream`` and ``epoch``; in a binary batch (``binary``)
    every payload is binary and their ``sizes`` are in the header.
    """

    stream: str = _f(Kind.STREAM, required=True)
    epoch: str = _f(Kind.STR, required=True)
    messages: tuple[Message, ...] = _f(
        Kind.JSON, "the messages, each a `message` without type, stream and epoch", required=True
    )
    binary: bool = field(
        default=False,
        metadata={"nbws": FieldSpec(Kind.BOOL, doc="a binary batch (payloads after the header)")},
    )
    sizes: tuple[int, ...] | None = _f(Kind.JSON, "binary batch: each payload's length in bytes")


Request = Subscribe | Unsubscribe | Publish | InfoRequest | PublishBatch | Consumed
Event = (
    Welcome
    | Subscribed
    | Unsubscribed
    | Message
    | End
    | Ack
    | Nack
    | Gap
    | Info
    | Error
    | Status
    | Batch
)
AnyMessage = Request | Event


def _build(cls: type[M], obj: Mapping[str, Any], extra: dict[str, Any] | None = None) -> M:
    values: dict[str, Any] = {} if extra is None else extra
    for column in cls.COLUMNS:
        value = obj.get(column.wire)
        if value is None:
            if column.spec.required:
                raise _bad(f"{cls.TYPE} needs '{column.wire}'")
            continue
        values[column.name] = column.check(value, cls.TYPE)
    return cls(**values)


def message_from_dict(
    obj: Mapping[str, Any], registry: Mapping[str, type[_Base]] = REQUESTS
) -> AnyMessage:
    """Validate a decoded JSON object into its message class.

    Raises:
        UnknownType: ``type`` is not in ``registry``.
        BadRequest: a field is missing, of the wrong type or out of range. For a publish
            whose ``producer`` and ``seq`` were valid, the error carries them
            (``exc.publish``) so the server can nack that seq.
    """
    kind = obj.get("type")
    cls = registry.get(kind) if isinstance(kind, str) else None
    ref = obj.get("id") if registry is REQUESTS else obj.get("ref")
    if cls is None:
        exc: BadRequest | UnknownType = UnknownType(f"unknown message type {kind!r}")
        exc.ref = _safe_ref(ref)
        raise exc
    try:
        message = _build(cls, obj)
    except BadRequest as exc:
        exc.ref = _safe_ref(ref)
        if cls is Publish:
            exc.publish = _publish_identity(obj)
        elif cls is PublishBatch:
            _batch_identity(exc, obj)
        raise
    if cls is Publish:
        _check_publish(message, obj)  # type: ignore[arg-type]
    elif cls is Subscribe:
        _check_subscribe(message, ref)  # type: ignore[arg-type]
    elif cls is PublishBatch:
        _check_batch(message, obj, None)  # type: ignore[arg-type]
    elif cls is Ack and (message.last is not None or message.duplicates is not None):  # type: ignore[attr-defined]
        _check_range_ack(message)  # type: ignore[arg-type]
    return message  # type: ignore[return-value]


def _check_subscribe(message: Subscribe, ref: Any) -> None:
    """The option pairs the field table cannot express."""
    problem = None
    if message.linger_ms is not None and message.max_batch is None:
        problem = "'linger_ms' needs 'max_batch' (it only applies to batches)"
    elif message.credit is not None and message.max_batch is None:
        problem = "'credit' needs 'max_batch' (credit applies to batched deliveries)"
    elif message.credit_bytes is not None and message.credit is None:
        problem = "'credit_bytes' needs 'credit'"
    if problem is not None:
        refusal = BadRequest(problem)
        refusal.ref = _safe_ref(ref)
        raise refusal


def _safe_ref(ref: Any) -> Ref:
    if isinstance(ref, bool) or not isinstance(ref, (str, int)):
        return None
    return ref if not isinstance(ref, str) or len(ref) <= MAX_REF_LENGTH else None


def _publish_identity(obj: Mapping[str, Any]) -> tuple[str, str, int] | None:
    """(stream, producer, seq) of a publish whose identity is valid, else None."""
    stream, producer, seq = obj.get("stream"), obj.get("producer"), obj.get("seq")
    if (
        valid_stream_name(stream)
        and isinstance(producer, str)
        and len(producer) <= MAX_PRODUCER_LENGTH
        and isinstance(seq, int)
        and not isinstance(seq, bool)
        and seq >= 0
    ):
        return stream, producer, seq  # type: ignore[return-value]
    return None


def _check_publish(message: Publish, obj: Mapping[str, Any]) -> None:
    problem = None
    if (message.producer is None) != (message.seq is None):
        problem = "'producer' and 'seq' go together (both for an acked publish)"
    elif not message.binary and "payload" not in obj:
        problem = "publish needs a 'payload' (or send it as a binary message)"
    if problem is not None:
        exc = BadRequest(problem)
        exc.ref = _safe_ref(obj.get("id"))
        exc.publish = _publish_identity(obj)
        raise exc


# --- batched publishing: helpers -----------------------------------------------------------

MAX_BATCH_MESSAGES = 65_536
"""Most messages one ``publish_batch`` may carry."""
__all__ += ["MAX_BATCH_MESSAGES", "PublishBatch", "batch_prefix", "encode_batch_ack"]
__all__ += ["encode_batch_binary", "encode_batch_fast"]


def _batch_identity(exc: RequestError, obj: Mapping[str, Any]) -> None:
    """Name the seq range of a refused batch (``exc.publish``, ``exc.publish_last``) when
    its identity and its message count are valid, so it is nacked, not errored."""
    identity = _publish_identity(obj)
    items = obj.get("payloads") if "payloads" in obj else obj.get("sizes")
    if identity is None or type(items) is not list or not items:
        return
    exc.publish = identity
    exc.publish_last = identity[2] + min(len(items), MAX_BATCH_MESSAGES) - 1


def _batch_bad(problem: str, obj: Mapping[str, Any]) -> BadRequest:
    exc = BadRequest(problem)
    exc.ref = _safe_ref(obj.get("id"))
    _batch_identity(exc, obj)
    return exc


def _check_batch(message: PublishBatch, obj: Mapping[str, Any], body: Any) -> None:
    """The checks the field table cannot express: list shapes, key kinds, sizes."""
    payloads = message.payloads
    if body is None:
        if type(payloads) is not list or not payloads:
            raise _batch_bad("publish_batch needs 'payloads': a non-empty array", obj)
        if message.sizes is not None:
            raise _batch_bad("'sizes' belongs to the binary layout of publish_batch", obj)
        count = len(payloads)
    else:
        if "payloads" in obj:
            raise _batch_bad("a binary publish_batch carries 'sizes', not 'payloads'", obj)
        sizes = message.sizes
        if type(sizes) is not list or not sizes or any(type(n) is not int or n < 0 for n in sizes):
            raise _batch_bad("a binary publish_batch needs 'sizes': integers >= 0", obj)
        if sum(sizes) != len(body):
            raise _batch_bad(
                f"'sizes' add up to {sum(sizes)} bytes but {len(body)} follow the header", obj
            )
        count = len(sizes)
    if count > MAX_BATCH_MESSAGES:
        raise _batch_bad(f"a publish_batch carries at most {MAX_BATCH_MESSAGES} messages", obj)
    keys = message.keys
    if keys is not None:
        if type(keys) is not list or len(keys) != count:
            raise _batch_bad("'keys' must be an array with one key (or null) per message", obj)
        for key in keys:
            if key is not None and (type(key) is not str or len(key) > MAX_KEY_LENGTH):
                raise _batch_bad(
                    f"each of 'keys' must be null or a string of at most {MAX_KEY_LENGTH}", obj
                )


def _decode_binary_batch(header: dict[str, Any], body: memoryview, ref: Ref) -> PublishBatch:
    try:
        message = _build(PublishBatch, header, {"binary": True})
    except BadRequest as exc:
        exc.ref = ref
        _batch_identity(exc, header)
        raise
    _check_batch(message, header, body)
    data = bytes(body)
    payloads = []
    position = 0
    for size in message.sizes or ():
        payloads.append(data[position : position + size])
        position += size
    object.__setattr__(message, "payloads", payloads)
    return message


def _check_range_ack(ack: Ack) -> None:
    last, duplicates = ack.last, ack.duplicates
    if last is None or last < ack.seq:
        raise _bad("a range ack needs 'last' >= 'seq'")
    if duplicates is None:
        return
    for seq, offset in duplicates.items():
        if (
            not seq.isdigit()
            or not ack.seq <= int(seq) <= last
            or not (offset is None or (type(offset) is int and offset >= 0))
        ):
            raise _bad("'duplicates' maps seqs of the range to an offset or null")


def batch_prefix(stream: str, producer: str) -> bytes:
    """The constant start of a producer's JSON batches, up to the value of ``seq``
    (for :func:`encode_batch_fast`)."""
    return b'{"type":"publish_batch","stream":%s,"producer":%s,"seq":' % (
        orjson.dumps(stream),
        orjson.dumps(producer),
    )


def encode_batch_fast(
    prefix: bytes, seq: int, payloads: list[bytes], keys: list[str | None] | None = None
) -> bytes:
    """The JSON text of a :class:`PublishBatch` from its producer's :func:`batch_prefix`
    and already serialised payloads, embedded as they are (one join, no re-encoding)."""
    body = b'%s%d,"payloads":[%s]' % (prefix, seq, b",".join(payloads))
    if keys is not None:
        body += b',"keys":' + orjson.dumps(keys)
    return body + b"}"


def encode_batch_binary(
    stream: str,
    producer: str,
    seq: int,
    payloads: list[bytes],
    keys: list[str | None] | None = None,
    content_type: str | None = None,
) -> bytes:
    """The binary layout of a :class:`PublishBatch`: header with ``sizes``, then the
    payloads concatenated."""
    header: dict[str, Any] = {
        "type": "publish_batch",
        "stream": stream,
        "producer": producer,
        "seq": seq,
        "sizes": [len(p) for p in payloads],
    }
    if keys is not None:
        header["keys"] = keys
    if content_type is not None:
        header["content_type"] = content_type
    return binary_prefix(header) + b"".join(payloads)


def encode_batch_ack(
    stream: str,
    producer: str,
    seq: int,
    last: int,
    epoch: str,
    offset: int | None,
    duplicates: dict[str, int | None] | None,
) -> bytes:
    """``encode(Ack(...))`` of a range ack (see :meth:`Ack.offsets`)."""
    out: dict[str, Any] = {
        "type": "ack",
        "stream": stream,
        "producer": producer,
        "seq": seq,
        "epoch": epoch,
        "duplicate": offset is None,
        "offset": offset,
        "last": last,
    }
    if duplicates:
        out["duplicates"] = duplicates
    return orjson.dumps(out)


# --- decoding ----------------------------------------------------------------------------


def _loads(data: bytes | bytearray | memoryview | str) -> dict[str, Any]:
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidPayload(f"text frame is not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise PolicyViolation("a control message must be a JSON object")
    return obj


def decode_object(data: bytes | bytearray | memoryview | str) -> dict[str, Any]:
    """Parse a text frame into its JSON object without building a message (for readers
    that pick fields themselves); raises :class:`~nbws.errors.InvalidPayload` (not JSON)
    or :class:`~nbws.errors.PolicyViolation` (not an object)."""
    return _loads(data)


def split_binary(data: bytes | bytearray | memoryview) -> tuple[dict[str, Any], memoryview]:
    """Split a binary message (or its first fragment) into header and payload.

    Returns:
        The header dict and a zero-copy view of the payload that follows it.

    Raises:
        PolicyViolation: the header is missing, too long, or not a JSON object (1008).
    """
    view = memoryview(data)
    if len(view) < 4:
        raise PolicyViolation("binary message shorter than its 4-byte header length")
    (size,) = _LEN.unpack_from(view, 0)
    if size > MAX_HEADER_BYTES or size > len(view) - 4:
        raise PolicyViolation(f"binary header length {size} is invalid")
    try:
        header = orjson.loads(view[4 : 4 + size])
    except orjson.JSONDecodeError:
        raise PolicyViolation("binary header is not JSON") from None
    if not isinstance(header, dict):
        raise PolicyViolation("binary header must be a JSON object")
    return header, view[4 + size :]


def _decode(
    data: bytes | bytearray | memoryview | str, text: bool, registry: dict[str, type[_Base]]
) -> AnyMessage:
    if text:
        return message_from_dict(_loads(data), registry)
    header, payload = split_binary(data)  # type: ignore[arg-type]
    kind = header.get("type")
    if kind == "batch" and registry is EVENTS:
        return _decode_batch(header, payload)
    cls = Publish if registry is REQUESTS else Message
    ref = _safe_ref(header.get("id") if registry is REQUESTS else header.get("ref"))
    if registry is REQUESTS and kind == PublishBatch.TYPE:
        return _decode_binary_batch(header, payload, ref)
    if kind != cls.TYPE:
        exc = BadRequest(f"only {cls.TYPE} may be sent as a binary message")
        exc.ref = ref
        raise exc
    header.pop("payload", None)
    try:
        message = _build(cls, header, {"payload": bytes(payload), "binary": True})
    except BadRequest as exc:
        exc.ref = ref
        if cls is Publish:
            exc.publish = _publish_identity(header)
        raise
    if cls is Publish:
        _check_publish(message, header)  # type: ignore[arg-type]
    return message  # type: ignore[return-value]


def decode_request(data: bytes | bytearray | memoryview | str, *, text: bool = True) -> Request:
    """Parse a client → server WebSocket message (server side).

    Raises:
        InvalidPayload: a text frame that is not JSON (close 1007).
        PolicyViolation: JSON that is not an object, or a malformed binary header (1008).
        UnknownType, BadRequest: answered with an ``error`` (or a ``nack``).
    """
    return _decode(data, text, REQUESTS)  # type: ignore[return-value]


def decode_event(data: bytes | bytearray | memoryview | str, *, text: bool = True) -> Event:
    """Parse a server → client WebSocket message (client side); raises as
    :func:`decode_request`."""
    if text:
        obj = _loads(data)
        if obj.get("type") == "ack":  # a publisher reads one per message: the fast path
            ack = _well_formed_ack(obj)
            if ack is not None:
                return ack
        elif obj.get("type") == "batch":
            return _decode_batch(obj, None)
        return message_from_dict(obj, EVENTS)  # type: ignore[return-value]
    return _decode(data, text, EVENTS)  # type: ignore[return-value]


_valid_streams: dict[str, None] = {}  # names that passed STREAM_NAME (bounded below)
_new = object.__new__
# The slots' own setters: a frozen dataclass's __init__ goes through object.__setattr__
# once per field, which is most of the cost of decoding an ack.
(
    _set_stream,
    _set_producer,
    _set_seq,
    _set_epoch,
    _set_duplicate,
    _set_offset,
    _set_last,
    _set_duplicates,
) = (
    getattr(Ack, name).__set__
    for name in (
        "stream",
        "producer",
        "seq",
        "epoch",
        "duplicate",
        "offset",
        "last",
        "duplicates",
    )
)


def _well_formed_ack(obj: dict[str, Any]) -> Ack | None:
    """The :class:`Ack` of ``obj`` when every field is as :func:`message_from_dict` would
    accept it, checked without the column loop (None: let it find and report the fault)."""
    stream, producer, seq, epoch = (
        obj.get("stream"),
        obj.get("producer"),
        obj.get("seq"),
        obj.get("epoch"),
    )
    duplicate, offset = obj.get("duplicate"), obj.get("offset")
    if "last" in obj or "duplicates" in obj:  # a range ack: the general decoder checks it
        return None
    if (
        type(seq) is int
        and seq >= 0
        and type(producer) is str
        and type(epoch) is str
        and type(duplicate) is bool
        and (offset is None or (type(offset) is int and offset >= 0))
        and type(stream) is str
    ):
        if stream not in _valid_streams:
            if STREAM_NAME.match(stream) is None:
                return None
            if len(_valid_streams) < 1024:
                _valid_streams[stream] = None
        ack: Ack = _new(Ack)  # == Ack(stream, producer, seq, epoch, duplicate, offset)
        _set_stream(ack, stream)
        _set_producer(ack, producer)
        _set_seq(ack, seq)
        _set_epoch(ack, epoch)
        _set_duplicate(ack, duplicate)
        _set_offset(ack, offset)
        _set_last(ack, None)
        _set_duplicates(ack, None)
        return ack
    return None


# --- encoding ----------------------------------------------------------------------------


class Encoded(tuple[bytes, bool]):
    """``(data, text)``: a WebSocket message body and whether it goes in a text frame."""

    __slots__ = ()

    @property
    def data(self) -> bytes:
        return self[0]

    @property
    def text(self) -> bool:
        return self[1]


def to_dict(message: _Base) -> dict[str, Any]:
    """The JSON object of ``message`` (without a binary payload)."""
    if type(message) is Batch:
        return _batch_dict(message)
    out: dict[str, Any] = {"type": message.TYPE}
    for column in message.COLUMNS:
        value = getattr(message, column.name)
        if column.spec.kind is Kind.JSON:
            # The payload: after the header in the binary layout, else always present
            # (a null payload is a payload).
            if not getattr(message, "binary", False):
                out[column.wire] = value
            continue
        if value is None and not column.spec.keep_null and not column.spec.required:
            continue
        out[column.wire] = value
    if getattr(message, "binary", False):
        out["binary"] = True
    return out


def right_sized(data: bytes) -> bytes:
    """``data`` in an allocation of its own length, for bytes kept long (history, an
    outbox): orjson returns its working buffer, 4 KiB for the smallest value since
    orjson 3.12, so 10k small payloads would hold 40 MiB that no length-based bound sees."""
    return b"".join((data, b""))


def encode_value(value: Any) -> bytes:
    """Serialise any JSON value (a publish payload) once, so it can be embedded as is
    (and queued: :func:`right_sized`).

    NumPy arrays and scalars are accepted (as JSON arrays and numbers).

    Raises:
        TypeError: the value is not JSON-serialisable.
    """
    try:
        return right_sized(orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY))
    except orjson.JSONEncodeError as exc:
        raise TypeError(f"payload is not JSON-serialisable: {exc}") from None


def binary_prefix(header: Mapping[str, Any]) -> bytes:
    """The bytes that precede a binary payload: length + JSON header."""
    raw = orjson.dumps(header)
    return _LEN.pack(len(raw)) + raw


def encode(message: _Base) -> Encoded:
    """Encode a message as the body of one WebSocket message.

    A binary :class:`Publish` or :class:`Message` uses the binary layout (header with
    ``"binary": true`` for a message, then the raw payload); everything else is JSON.
    """
    if type(message) is Batch:
        return encode_batch(message.stream, message.epoch, [_item_of(m) for m in message.messages])
    if type(message) is PublishBatch and message.binary:
        return Encoded(
            (
                encode_batch_binary(
                    message.stream,
                    message.producer,
                    message.seq,
                    list(message.payloads or ()),
                    message.keys,
                    message.content_type,
                ),
                False,
            )
        )
    obj = to_dict(message)
    if getattr(message, "binary", False):
        if message.TYPE == "publish":
            obj.pop("binary", None)
        return Encoded((binary_prefix(obj) + bytes(message.payload), False))  # type: ignore[attr-defined]
    return Encoded((orjson.dumps(obj), True))


class Stored(Protocol):
    """A message as the delivery encoders read it: the publish fields with the payload as
    stored, plus where and when it was appended. The broker's ``StoredMessage`` is one
    (and a :class:`Message` whose payload is encoded JSON)."""

    @property
    def offset(self) -> int: ...
    @property
    def time(self) -> float: ...
    @property
    def payload(self) -> bytes: ...
    @property
    def binary(self) -> bool: ...
    @property
    def producer(self) -> str | None: ...
    @property
    def seq(self) -> int | None: ...
    @property
    def key(self) -> str | None: ...
    @property
    def content_type(self) -> str | None: ...


def encode_delivery(stream: str, epoch: str, message: Stored) -> Encoded:
    """The body of a :class:`Message` delivery, with a stored payload spliced in unparsed.

    The fan-out fast path: built once per message whatever the number of subscribers,
    equal to ``encode(Message(...))`` with ``payload`` as the stored JSON bytes.
    """
    header: dict[str, Any] = {
        "type": "message",
        "stream": stream,
        "offset": message.offset,
        "epoch": epoch,
        "time": message.time,
    }
    producer, key = message.producer, message.key
    if producer is not None:
        header["producer"] = producer
        header["seq"] = message.seq
    if key is not None:
        header["key"] = key
    if message.binary:
        content_type = message.content_type
        if content_type is not None:
            header["content_type"] = content_type
        header["binary"] = True
        return Encoded((binary_prefix(header) + message.payload, False))
    return Encoded((orjson.dumps(header)[:-1] + b',"payload":' + message.payload + b"}", True))


def publish_fast_prefix(stream: str, producer: str) -> bytes:
    """The constant start of a producer's JSON publishes, up to the value of ``seq``
    (for :func:`encode_publish_fast`)."""
    return b'{"type":"publish","stream":%s,"producer":%s,"seq":' % (
        orjson.dumps(stream),
        orjson.dumps(producer),
    )


def encode_publish_fast(prefix: bytes, seq: int, payload: bytes, key: str | None = None) -> bytes:
    """The publisher's fast path: the JSON text of an acked :class:`Publish`, from its
    producer's :func:`publish_fast_prefix` and an already serialised ``payload``
    (:func:`encode_value`), embedded as is. Decodes to the same message as
    ``encode(Publish(...))`` (with ``payload`` last), for a few string formats instead of
    a dict and a serialisation per publish."""
    if key is None:
        return b'%s%d,"payload":%s}' % (prefix, seq, payload)
    return b'%s%d,"key":%s,"payload":%s}' % (prefix, seq, orjson.dumps(key), payload)


# --- resume ------------------------------------------------------------------------------


def resume_since(
    last_offset: int | None,
    requested: int | None,
    bounds: tuple[int, int] | None = None,
) -> int | None:
    """The ``since`` to send when (re)subscribing.

    Args:
        last_offset: the last offset received in the current epoch, or None if none was.
        requested: the ``since`` the subscription was first opened with.
        bounds: ``(first, next)`` of the last ``subscribed`` reply in the current epoch,
            if one came; it tells where that subscription started delivering.

    Returns:
        ``last_offset + 1`` once anything arrived (no gap, no duplicate). Before that,
        where the confirmed subscription started (live only: ``next``; the last k:
        ``max(first, next - k)``; an offset: that offset), so what was published while
        disconnected still comes and "last k" is not replayed twice. With neither, the
        original request.
    """
    if last_offset is not None:
        return last_offset + 1
    if bounds is None or (requested is not None and requested >= 0):
        return requested
    first, next_offset = bounds
    if requested is None:
        return next_offset
    return max(first, next_offset + requested)


# --- JSON Schema -------------------------------------------------------------------------


def _schema_of(column: _Column) -> dict[str, Any]:
    spec = column.spec
    kind = spec.kind
    out: dict[str, Any]
    if kind is Kind.STREAM:
        out = {"type": "string", "pattern": STREAM_NAME.pattern}
    elif kind is Kind.INT:
        out = {"type": "integer"}
    elif kind is Kind.NAT:
        out = {"type": "integer", "minimum": 0}
    elif kind is Kind.POSITIVE:
        out = {"type": "integer", "minimum": 1}
    elif kind is Kind.STR:
        out = {"type": "string"}
        if spec.limit:
            out["maxLength"] = spec.limit
    elif kind is Kind.NUMBER:
        out = {"type": "number"}
    elif kind is Kind.BOOL:
        out = {"type": "boolean"}
    elif kind is Kind.REF:
        out = {"type": ["string", "integer"], "maxLength": MAX_REF_LENGTH}
    elif kind is Kind.ENUM:
        assert spec.choices is not None
        out = {"enum": [c.value for c in spec.choices]}
    elif kind is Kind.OBJECT:
        out = {"type": "object"}
    else:
        out = {}
    if spec.maximum is not None:
        out["maximum"] = spec.maximum
    if not spec.required and "type" in out:
        types = out["type"] if isinstance(out["type"], list) else [out["type"]]
        out["type"] = [*types, "null"]
    elif not spec.required and "enum" in out:
        out["enum"] = [*out["enum"], None]
    if spec.doc:
        out["description"] = spec.doc
    return out


def _schema_of_message(cls: type[_Base]) -> dict[str, Any]:
    properties: dict[str, Any] = {"type": {"const": cls.TYPE}}
    for column in cls.COLUMNS:
        properties[column.wire] = _schema_of(column)
    if cls in (Message,):
        properties["binary"] = {"type": "boolean"}
    if cls is Batch:
        items = _schema_of_message(Message)
        for name in ("type", "stream", "epoch"):
            items["properties"].pop(name)
        items["required"] = [n for n in items["required"] if n not in ("type", "stream", "epoch")]
        items["description"] = "a `message` without type, stream and epoch (no payload when binary)"
        properties["messages"] = {
            "type": "array",
            "items": items,
            "description": Batch.COLUMNS[2].spec.doc,
        }

    required = ["type"] + [c.wire for c in cls.COLUMNS if c.spec.required]
    return {
        "type": "object",
        "description": cls.DOC,
        "properties": properties,
        "required": required,
    }


def json_schema() -> dict[str, Any]:
    """The JSON Schema of every nbws.v1 JSON message (``docs/nbws.v1.schema.json``).

    ``#/$defs/request`` and ``#/$defs/event`` each match exactly one message of their
    direction (``info`` is both a request and an event); the root matches either.
    Fields nbws does not know are allowed (and ignored by the decoders).
    """
    defs: dict[str, Any] = {}
    for direction, registry in (("request", REQUESTS), ("event", EVENTS)):
        names = [f"{direction}.{kind}" for kind in registry]
        for name, cls in zip(names, registry.values(), strict=True):
            defs[name] = _schema_of_message(cls)
        defs[direction] = {"oneOf": [{"$ref": f"#/$defs/{name}"} for name in names]}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "urn:nbws:v1",
        "title": "nbws.v1 messages",
        "description": "Generated from nbws.protocol.messages "
        "(python -m nbws.protocol.messages --schema); do not edit by hand.",
        "$defs": defs,
        "anyOf": [{"$ref": "#/$defs/request"}, {"$ref": "#/$defs/event"}],
    }


def schema_text() -> str:
    """:func:`json_schema` as the text of ``docs/nbws.v1.schema.json``."""
    return orjson.dumps(json_schema(), option=orjson.OPT_INDENT_2).decode() + "\n"


def _main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m nbws.protocol.messages", description="nbws.v1 message layer"
    )
    parser.add_argument(
        "--schema",
        nargs="?",
        const="-",
        metavar="PATH",
        help="write the JSON Schema to PATH (default: stdout)",
    )
    args = parser.parse_args(argv)
    if args.schema is None:
        parser.print_help()
        return 2
    text = schema_text()
    if args.schema == "-":
        sys.stdout.write(text)
    else:
        with open(args.schema, "w", encoding="utf-8") as out:
            out.write(text)
    return 0


# --- REST bodies -------------------------------------------------------------------------
#
# The JSON bodies of ``nbws/api`` (docs/protocol.md, "REST"), checked with the same field
# kinds as nbws.v1 messages, plus upper bounds: a limit must survive every store (Redis
# keeps numbers as doubles, JavaScript clients too), so integers stop at 2**53 - 1.

__all__ += ["MAX_SAFE_INTEGER", "REST_BODIES", "CreateStream", "PublishBody", "decode_body"]
__all__ += ["since_cursor"]

MAX_SAFE_INTEGER = 2**53 - 1
"""Largest integer a REST limit may have (exact as a double)."""

REST_BODIES: dict[str, type[_Base]] = {}
"""REST request bodies by name (not nbws.v1 messages: they have no ``type``)."""


@_message("create-stream", REST_BODIES)
@dataclass(frozen=True, slots=True)
class CreateStream(_Base):
    """``POST nbws/api/streams/{name}``: create a stream or change its history limits."""

    LIMITS: ClassVar[dict[str, int | float]] = {
        "max_messages": MAX_SAFE_INTEGER,
        "max_bytes": MAX_SAFE_INTEGER,
        "max_age": float(MAX_SAFE_INTEGER),
    }

    max_messages: int | None = _f(Kind.POSITIVE, "history bound in messages")
    max_bytes: int | None = _f(Kind.NAT, "history bound in payload bytes (0: none)")
    max_age: float | None = _f(Kind.NUMBER, "history bound in seconds (0: none)")


@_message("publish-body", REST_BODIES)
@dataclass(frozen=True, slots=True)
class PublishBody(_Base):
    """``POST nbws/api/streams/{name}/messages``: append one JSON message (no ack
    identity: the response carries the offset)."""

    LIMITS: ClassVar[dict[str, int | float]] = {}

    payload: Any = _f(Kind.JSON, "the message (required; may be null)")
    key: str | None = _f(Kind.STR, "conflation key", limit=MAX_KEY_LENGTH)


def decode_body(cls: type[M], raw: bytes) -> M:
    """Parse and check a REST request body (empty means ``{}``).

    Raises:
        BadRequest: not JSON, not an object, or a field of the wrong kind or out of
            range; the message is one line, fit for a 400 response.
    """
    if raw.strip():
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise _bad(f"body is not JSON: {exc}") from None
    else:
        obj = {}
    if type(obj) is not dict:
        raise _bad("body must be a JSON object")
    message = _build(cls, obj)
    limits: dict[str, int | float] = getattr(cls, "LIMITS", {})
    for column in cls.COLUMNS:
        value = getattr(message, column.name)
        if column.spec.kind is Kind.NUMBER and value is not None and value < 0:
            raise _bad(f"'{column.wire}' must be at least 0")
        bound = limits.get(column.name)
        if bound is not None and value is not None and value > bound:
            raise _bad(f"'{column.wire}' must be at most {bound:.0f}")
    if cls is PublishBody and "payload" not in obj:
        raise _bad("body needs a 'payload'")
    return message


def since_cursor(since: int | None, first: int, next_offset: int) -> int:
    """The first offset a ``subscribe`` with ``since`` delivers on a stream holding
    ``first`` … ``next_offset - 1`` (the server's side of :func:`resume_since`).

    None: live only (``next_offset``); ``-k``: the last ``k`` still held; an offset:
    itself (older than ``first`` gives a ``history`` gap first).
    """
    if since is None:
        return next_offset
    if since < 0:
        return max(first, next_offset + since)
    return since


# --- the frame tap (``nbws/tap``) --------------------------------------------------------
#
# Not nbws.v1: what the tap endpoint sends the frame inspector about a labelled connection.

__all__ += ["TAP_EVENTS", "TapAttached", "TapClosed", "TapDropped", "TapFrame"]

TAP_EVENTS: dict[str, type[_Base]] = {}
"""Messages of the ``nbws/tap`` endpoint by ``type``."""


@_message("attached", TAP_EVENTS)
@dataclass(frozen=True, slots=True)
class TapAttached(_Base):
    """The tap follows a connection from now on (earlier frames of it follow)."""

    connection: str = _f(Kind.STR, required=True)
    path: str = _f(Kind.STR, required=True)
    query: dict[str, str] = _f(Kind.OBJECT, required=True)
    subprotocol: str | None = _f(Kind.STR, keep_null=True)


@_message("frame", TAP_EVENTS)
@dataclass(frozen=True, slots=True)
class TapFrame(_Base):
    """One frame of the followed connection (``FrameRecord.as_dict``)."""

    time: float = _f(Kind.NUMBER, required=True)
    direction: str = _f(Kind.STR, required=True)
    opcode: int = _f(Kind.NAT, required=True)
    opcode_name: str = _f(Kind.STR, required=True)
    fin: bool = _f(Kind.BOOL, required=True)
    rsv: list[bool] = _f(Kind.JSON, required=True)
    masked: bool = _f(Kind.BOOL, required=True)
    length: int = _f(Kind.NAT, required=True)
    preview: str = _f(Kind.STR, required=True)
    preview_kind: str = _f(Kind.STR, required=True)


@_message("dropped", TAP_EVENTS)
@dataclass(frozen=True, slots=True)
class TapDropped(_Base):
    """Frames not sent because the tap's own connection was not writable."""

    count: int = _f(Kind.NAT, required=True)


@_message("closed", TAP_EVENTS)
@dataclass(frozen=True, slots=True)
class TapClosed(_Base):
    """The followed connection closed (codes and reasons both ways, if any)."""

    connection: str = _f(Kind.STR, required=True)
    code: int | None = _f(Kind.NAT, keep_null=True)
    reason: str | None = _f(Kind.STR, keep_null=True)
    sent_code: int | None = _f(Kind.NAT, keep_null=True)
    sent_reason: str | None = _f(Kind.STR, keep_null=True)


# --- hot-path shortcuts ------------------------------------------------------------------
#
# The acked-publish path runs once per message: these give exactly what the general
# functions give (tests/server/test_fast_paths.py compares them), without building and
# walking the column table.

__all__ += ["decode_request_fast", "encode_ack"]


def encode_ack(
    stream: str, producer: str, seq: int, epoch: str, duplicate: bool, offset: int | None
) -> bytes:
    """``encode(Ack(stream, producer, seq, epoch, duplicate, offset)).data``."""
    return orjson.dumps(
        {
            "type": "ack",
            "stream": stream,
            "producer": producer,
            "seq": seq,
            "epoch": epoch,
            "duplicate": duplicate,
            "offset": offset,
        }
    )


def _fast_publish(obj: dict[str, Any]) -> Publish | None:
    """A text publish whose every field is plainly valid, else None (then the general
    decoder runs and names what is wrong)."""
    stream = obj.get("stream")
    if type(stream) is not str or STREAM_NAME.match(stream) is None or "payload" not in obj:
        return None
    producer, seq = obj.get("producer"), obj.get("seq")
    if producer is None:
        if seq is not None:
            return None
    elif (
        type(producer) is not str
        or len(producer) > MAX_PRODUCER_LENGTH
        or type(seq) is not int
        or seq < 0
    ):
        return None
    key, content_type, ref = obj.get("key"), obj.get("content_type"), obj.get("id")
    if key is not None and (type(key) is not str or len(key) > MAX_KEY_LENGTH):
        return None
    if content_type is not None and (
        type(content_type) is not str or len(content_type) > MAX_CONTENT_TYPE_LENGTH
    ):
        return None
    if (
        ref is not None
        and type(ref) is not int
        and (type(ref) is not str or len(ref) > MAX_REF_LENGTH)
    ):
        return None
    return Publish(stream, obj["payload"], producer, seq, key, content_type, ref)


def decode_request_fast(
    data: bytes | bytearray | memoryview | str, *, text: bool = True
) -> Request:
    """:func:`decode_request`, with a shortcut for a well-formed text publish."""
    if text:
        obj = _loads(data)
        if obj.get("type") == "publish":
            publish = _fast_publish(obj)
            if publish is not None:
                return publish
        return message_from_dict(obj, REQUESTS)  # type: ignore[return-value]
    return decode_request(data, text=False)


# --- batched deliveries: encoding and decoding -------------------------------------------
#
# A batch element is encoded once per stored message (``batch_item``) and joined into
# batch frames (``encode_batch``); the hub shares both between subscribers.

__all__ += [
    "BATCH_BYTES",
    "BATCH_HEADER_BYTES",
    "MAX_BATCH",
    "MAX_LINGER_MS",
    "Batch",
    "BatchItem",
    "batch_item",
    "encode_batch",
]

BatchItem = bytes | tuple[bytes, bytes]
"""One message of a batch as encoded: the JSON element (payload spliced in), or for a
binary payload ``(metadata JSON, payload bytes)``."""


def batch_item(message: Stored) -> BatchItem:
    """A stored message as a batch element, its JSON payload spliced in unparsed."""
    producer, key = message.producer, message.key
    if key is None and not message.binary:  # the common shapes, formatted in one step
        if producer is None:
            return b'{"offset":%d,"time":%s,"payload":%s}' % (
                message.offset,
                orjson.dumps(message.time),
                message.payload,
            )
        seq = message.seq
        assert seq is not None  # an acked message has both
        return b'{"offset":%d,"time":%s,"producer":%s,"seq":%d,"payload":%s}' % (
            message.offset,
            orjson.dumps(message.time),
            orjson.dumps(producer),
            seq,
            message.payload,
        )
    head: dict[str, Any] = {"offset": message.offset, "time": message.time}
    if producer is not None:
        head["producer"] = producer
        head["seq"] = message.seq
    if key is not None:
        head["key"] = key
    if message.binary:
        content_type = message.content_type
        if content_type is not None:
            head["content_type"] = content_type
        return (orjson.dumps(head), message.payload)
    return orjson.dumps(head)[:-1] + b',"payload":' + message.payload + b"}"


def _item_of(message: Message) -> BatchItem:
    payload = bytes(message.payload) if message.binary else encode_value(message.payload)
    return batch_item(dataclasses.replace(message, payload=payload))


def encode_batch(stream: str, epoch: str, items: list[BatchItem]) -> Encoded:
    """The body of a :class:`Batch` of encoded elements (all JSON or all binary, at
    least one): joined, never re-serialised."""
    prefix = b'{"type":"batch","stream":%s,"epoch":%s,' % (
        orjson.dumps(stream),
        orjson.dumps(epoch),
    )
    if type(items[0]) is bytes:
        return Encoded((prefix + b'"messages":[' + b",".join(items) + b"]}", True))  # type: ignore[arg-type]
    metas = [item[0] for item in items]
    payloads = [item[1] for item in items]
    header = b'%s"binary":true,"messages":[%s],"sizes":[%s]}' % (
        prefix,
        b",".join(metas),  # type: ignore[arg-type]
        b",".join(b"%d" % len(p) for p in payloads),  # type: ignore[arg-type]
    )
    return Encoded((_LEN.pack(len(header)) + header + b"".join(payloads), False))  # type: ignore[arg-type]


_ITEM_COLUMNS = tuple(c for c in Message.COLUMNS if c.wire not in ("stream", "epoch", "payload"))


def _batch_dict(batch: Batch) -> dict[str, Any]:
    """:func:`to_dict` of a batch: its elements as on the wire (binary payloads left out)."""
    elements = []
    for message in batch.messages:
        element = to_dict(message)
        for name in ("type", "stream", "epoch", "binary"):
            element.pop(name, None)
        elements.append(element)
    out: dict[str, Any] = {
        "type": "batch",
        "stream": batch.stream,
        "epoch": batch.epoch,
        "messages": elements,
    }
    if batch.binary:
        out["binary"] = True
    return out


def _decode_batch(obj: dict[str, Any], payload: memoryview | None) -> Batch:
    """A batch event (``payload``: what follows a binary batch's header, else None).

    Raises:
        BadRequest: a field missing or of the wrong kind, offsets not increasing, or
            ``sizes`` not matching the payloads (the server's fault: 1002 in clients).
    """
    stream = obj.get("stream")
    epoch = obj.get("epoch")
    items = obj.get("messages")
    if type(stream) is not str or STREAM_NAME.fullmatch(stream) is None:
        raise _bad(f"batch needs a 'stream' of {STREAM_RULE}")
    if type(epoch) is not str:
        raise _bad("batch needs a string 'epoch'")
    if type(items) is not list or not items:
        raise _bad("batch needs a non-empty list 'messages'")
    binary = payload is not None
    sizes = obj.get("sizes") if binary else None
    if binary:
        if type(sizes) is not list or len(sizes) != len(items):
            raise _bad("binary batch needs 'sizes', one per message")
        if any(type(n) is not int or n < 0 for n in sizes) or sum(sizes) != len(payload):  # type: ignore[arg-type]
            raise _bad("binary batch 'sizes' do not add up to its payload")
    out: list[Message] = []
    last = -1
    at = 0
    new = _new
    for index, item in enumerate(items):
        if type(item) is not dict:
            raise _bad("batch 'messages' must be objects")
        offset, when = item.get("offset"), item.get("time")
        if type(offset) is not int or offset <= last:
            raise _bad("batch offsets must be increasing integers")
        if not (type(when) is float or type(when) is int):
            raise _bad("batch messages need a number 'time'")
        last = offset
        if len(item) > 3 or binary:  # producer, seq, key, content_type: the general check
            values: dict[str, Any] = {}
            for column in _ITEM_COLUMNS:
                value = item.get(column.wire)
                if value is not None:
                    values[column.name] = column.check(value, "batch")
        else:
            values = {"offset": offset, "time": when}
        if binary:
            size = sizes[index]  # type: ignore[index]
            body: Any = bytes(payload[at : at + size])  # type: ignore[index]
            at += size
        elif "payload" in item:
            body = item["payload"]
        else:
            raise _bad("batch messages need a 'payload' (or a binary batch)")
        message = new(Message)
        _init_message(message, stream, epoch, values, body, binary)
        out.append(message)
    return Batch(stream, epoch, tuple(out), binary, None if sizes is None else tuple(sizes))


_MESSAGE_SLOTS = {name: getattr(Message, name).__set__ for name in Message.__slots__}
_MESSAGE_DEFAULTS = {f.name: f.default for f in dataclasses.fields(Message)}


def _init_message(
    message: Message, stream: str, epoch: str, values: dict[str, Any], payload: Any, binary: bool
) -> None:
    """Fill a bare :class:`Message` (as ``Message(...)`` would, without its per-field
    ``object.__setattr__``)."""
    slots = _MESSAGE_SLOTS
    for name, default in _MESSAGE_DEFAULTS.items():
        slots[name](message, values.get(name, default))
    slots["stream"](message, stream)
    slots["epoch"](message, epoch)
    slots["payload"](message, payload)
    slots["binary"](message, binary)


if __name__ == "__main__":
    raise SystemExit(_main())
