"""Every error nbws raises, and what each one means on the wire.

The tree::

    NbwsError
    ├── ConnectionError_            ends a WebSocket connection with ``close_code``
    │   ├── ProtocolViolation       1002  the peer broke RFC 6455 or nbws.v1 framing
    │   ├── InvalidPayload          1007  text that is not UTF-8, JSON that does not parse
    │   ├── PolicyViolation         1008  rate limit, abuse, not an nbws.v1 peer
    │   ├── MessageTooBig           1009  a message over max_message_size
    │   ├── InternalError           1011  a bug or a missed heartbeat; never the peer's fault
    │   └── TryAgainLater           1013  overload: a subscriber or peer too slow to keep up
    ├── RequestError                answered on the connection, which stays open
    │   │                           (``error_code`` for an ``error``, ``nack_code`` for a nack)
    │   ├── BadRequest              bad-request     fields missing, of the wrong type, too long
    │   ├── UnknownType             unknown-type    a ``type`` nbws.v1 does not have
    │   ├── UnknownStream           unknown-stream  no such stream (auto-create is off)
    │   ├── NotSubscribed           not-subscribed  unsubscribe without a subscription
    │   ├── PayloadTooLarge         oversize        over the stream's history bound (nack)
    │   └── BrokerUnavailable       unavailable     the broker is down; retry later
    ├── InvalidState                local misuse: sending on a CLOSING/CLOSED connection
    └── ConnectionClosed            the connection is gone; carries the codes both sides sent

Like h11's ``error_status_hint``, each error carries what the server (or client) sends
for it: :func:`close_for` is the one place that maps any exception to a ``(code, reason)``
close, and :class:`RequestError` subclasses name their ``error``/``nack`` code. Close codes
are ``websockets``' own :class:`~websockets.frames.CloseCode`.
"""

from __future__ import annotations

import enum

from websockets.frames import CLOSE_CODE_EXPLANATIONS, CloseCode

__all__ = [
    "BadRequest",
    "BrokerUnavailable",
    "CloseCode",
    "ConnectionClosed",
    "ConnectionError_",
    "ErrorCode",
    "InternalError",
    "InvalidPayload",
    "InvalidState",
    "MessageTooBig",
    "NackCode",
    "NbwsError",
    "NotSubscribed",
    "PayloadTooLarge",
    "PolicyViolation",
    "ProtocolViolation",
    "RequestError",
    "TryAgainLater",
    "UnknownStream",
    "UnknownType",
    "close_for",
    "describe_close_code",
    "is_sendable_close_code",
    "truncate_reason",
]


class ErrorCode(str, enum.Enum):
    """``code`` of an nbws.v1 ``error`` message (docs/protocol.md, "error")."""

    BAD_REQUEST = "bad-request"
    UNKNOWN_TYPE = "unknown-type"
    UNKNOWN_STREAM = "unknown-stream"
    NOT_SUBSCRIBED = "not-subscribed"
    UNAVAILABLE = "unavailable"

    def __str__(self) -> str:
        return self.value


class NackCode(str, enum.Enum):
    """``code`` of an nbws.v1 ``nack`` (docs/protocol.md, the nack table)."""

    UNKNOWN_STREAM = "unknown-stream"
    OVERSIZE = "oversize"
    FORBIDDEN = "forbidden"
    UNAVAILABLE = "unavailable"
    BAD_REQUEST = "bad-request"

    def __str__(self) -> str:
        return self.value


def describe_close_code(code: int | None) -> str:
    """Return a human-readable meaning for a close code, including unknown ranges."""
    if code is None:
        return "no close code"
    try:
        meaning = CLOSE_CODE_EXPLANATIONS[CloseCode(code)]
    except ValueError:
        pass
    else:
        return meaning.replace(" [internal]", " (never sent on the wire)")
    if 3000 <= code <= 3999:
        return "registered for libraries and frameworks"
    if 4000 <= code <= 4999:
        return "private use (application-defined)"
    return "invalid close code"


class NbwsError(Exception):
    """Base class of everything nbws raises on purpose."""


# --- errors that end a connection ------------------------------------------------------


class ConnectionError_(NbwsError):
    """An error that ends a WebSocket connection with :attr:`close_code`."""

    close_code: int = CloseCode.INTERNAL_ERROR

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason)
        self.reason = reason


class ProtocolViolation(ConnectionError_):
    """The peer broke the framing rules of RFC 6455 (or of nbws.v1 framing)."""

    close_code = CloseCode.PROTOCOL_ERROR


class InvalidPayload(ConnectionError_):
    """A payload that is not what its frame type promises (non-UTF-8 text, broken JSON)."""

    close_code = CloseCode.INVALID_DATA


class PolicyViolation(ConnectionError_):
    """The peer did something it is not allowed to (rate limit, abuse)."""

    close_code = CloseCode.POLICY_VIOLATION


class MessageTooBig(ConnectionError_):
    """A message (summed across its fragments) over the configured limit."""

    close_code = CloseCode.MESSAGE_TOO_BIG


class InternalError(ConnectionError_):
    """The server could not go on with this connection (a bug, or a missed heartbeat)."""

    close_code = CloseCode.INTERNAL_ERROR


class TryAgainLater(ConnectionError_):
    """The server is overloaded for this connection (e.g. a slow subscriber's full buffer)."""

    close_code = CloseCode.TRY_AGAIN_LATER


# --- errors answered on the connection -------------------------------------------------


class RequestError(NbwsError):
    """A request nbws refuses with an ``error`` (or a ``nack`` for a publish); the
    connection stays open.

    Attributes:
        error_code: the ``code`` of the ``error`` message.
        nack_code: the ``code`` of the ``nack`` when the request was an acked publish.
        retry: whether a nack says the same publish may succeed later.
        ref: the request's ``id`` when it had a valid one (the reply's ``ref``).
        publish: ``(stream, producer, seq)`` of an acked publish whose identity was
            valid, so the refusal is a ``nack`` for that seq instead of an ``error``.
    """

    error_code: ErrorCode = ErrorCode.BAD_REQUEST
    nack_code: NackCode = NackCode.BAD_REQUEST
    retry: bool = False
    ref: str | int | None = None
    publish: tuple[str, str, int] | None = None
    publish_last: int | None = None  # a refused publish_batch: the last seq of its range


class BadRequest(RequestError):
    """Fields missing, of the wrong type or out of range (also a REST 400)."""


class UnknownType(RequestError):
    """A message ``type`` nbws.v1 does not define."""

    error_code = ErrorCode.UNKNOWN_TYPE


class UnknownStream(RequestError):
    """The stream does not exist and the broker was told not to create it."""

    error_code = ErrorCode.UNKNOWN_STREAM
    nack_code = NackCode.UNKNOWN_STREAM


class NotSubscribed(RequestError):
    """``unsubscribe`` of a stream this connection is not subscribed to."""

    error_code = ErrorCode.NOT_SUBSCRIBED


class PayloadTooLarge(RequestError):
    """The payload is larger than the stream's history may hold (``max_bytes``), so it
    could never be replayed: refused with an ``oversize`` nack."""

    nack_code = NackCode.OVERSIZE

    @classmethod
    def over(cls, size: int, bound: int) -> PayloadTooLarge:
        return cls(f"payload of {size} bytes is over this stream's history bound of {bound} bytes")


class BrokerUnavailable(RequestError):
    """The broker's backing store cannot be reached (nack with ``retry: true``)."""

    error_code = ErrorCode.UNAVAILABLE
    nack_code = NackCode.UNAVAILABLE
    retry = True


# --- local errors ----------------------------------------------------------------------


class InvalidState(NbwsError):
    """A local call that the connection's state does not allow (e.g. send while CLOSING)."""


class ConnectionClosed(NbwsError):
    """The connection is closed; no more data can be sent or received.

    Attributes:
        code: close code received from the peer (1006 when no close frame arrived).
        reason: close reason received from the peer.
        sent_code: close code this side sent, if any.
    """

    def __init__(self, code: int | None, reason: str = "", sent_code: int | None = None) -> None:
        self.code = code
        self.reason = reason
        self.sent_code = sent_code
        text = f"connection closed: {code} ({describe_close_code(code)})"
        if reason:
            text += f": {reason}"
        super().__init__(text)


def close_for(exc: BaseException) -> tuple[int, str]:
    """Map any exception to the close code and reason to send for it.

    Args:
        exc: what went wrong while serving a connection.

    Returns:
        ``(code, reason)``; the reason is trimmed so the close frame fits in 125 bytes.
    """
    if isinstance(exc, ConnectionError_):
        code, reason = int(exc.close_code), exc.reason
    elif isinstance(exc, UnicodeDecodeError):
        code, reason = int(CloseCode.INVALID_DATA), "invalid UTF-8"
    else:
        code, reason = int(CloseCode.INTERNAL_ERROR), "internal error"
    return code, truncate_reason(reason)


def is_sendable_close_code(code: int) -> bool:
    """True for codes an endpoint may put in a close frame (RFC 6455 section 7.4)."""
    return code in (1000, 1001, 1002, 1003) or 1007 <= code <= 1014 or 3000 <= code <= 4999


def truncate_reason(reason: str, limit: int = 123) -> str:
    """Trim a close reason to at most ``limit`` UTF-8 bytes without splitting a character."""
    raw = reason.encode("utf-8")
    if len(raw) <= limit:
        return reason
    return raw[:limit].decode("utf-8", errors="ignore")
