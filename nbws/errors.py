"""Every error nbws raises, and the WebSocket close code each one maps to.

The tree::

    NbwsError
    ├── ConnectionError_            (base of errors that end a connection; has close_code)
    │   ├── ProtocolViolation       1002  the peer broke RFC 6455 or nbws.v1 framing
    │   ├── InvalidPayload          1007  text that is not UTF-8, JSON that does not parse
    │   ├── PolicyViolation         1008  rate limit, abuse, not authorised
    │   ├── MessageTooBig           1009  a message over max_message_size
    │   ├── InternalError           1011  a bug or a missed heartbeat; never the peer's fault
    │   └── TryAgainLater           1013  overload: a full buffer with the `disconnect` policy
    ├── InvalidState                local misuse: sending on a CLOSING/CLOSED connection
    └── ConnectionClosed            the connection is gone; carries the codes both sides sent

Like h11's ``error_status_hint``, each connection-ending error carries the close code the
server (or client) sends for it, and :func:`close_for` is the one place that maps any
exception to a ``(code, reason)`` pair.
"""

from __future__ import annotations

import enum

__all__ = [
    "CloseCode",
    "ConnectionClosed",
    "ConnectionError_",
    "InternalError",
    "InvalidPayload",
    "InvalidState",
    "MessageTooBig",
    "NbwsError",
    "PolicyViolation",
    "ProtocolViolation",
    "TryAgainLater",
    "close_for",
    "describe_close_code",
    "is_sendable_close_code",
    "truncate_reason",
]


class CloseCode(enum.IntEnum):
    """Close codes nbws sends (RFC 6455 section 7.4.1), and its application range."""

    NORMAL_CLOSURE = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS_RCVD = 1005
    ABNORMAL_CLOSURE = 1006
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_GATEWAY = 1014
    TLS_HANDSHAKE = 1015


_MEANINGS: dict[int, str] = {
    1000: "normal closure",
    1001: "going away",
    1002: "protocol error",
    1003: "unsupported data",
    1005: "no status code (never sent on the wire)",
    1006: "connection closed abnormally, without a close frame (never sent on the wire)",
    1007: "invalid frame payload data (e.g. text that is not UTF-8)",
    1008: "policy violation",
    1009: "message too big",
    1010: "mandatory extension missing",
    1011: "internal error",
    1012: "service restart",
    1013: "try again later",
    1014: "bad gateway",
    1015: "TLS handshake failure (never sent on the wire)",
}


def describe_close_code(code: int | None) -> str:
    """Return a human-readable meaning for a close code, including unknown ranges."""
    if code is None:
        return "no close code"
    if code in _MEANINGS:
        return _MEANINGS[code]
    if 3000 <= code <= 3999:
        return "registered for libraries and frameworks"
    if 4000 <= code <= 4999:
        return "private use (application-defined)"
    return "invalid close code"


class NbwsError(Exception):
    """Base class of everything nbws raises on purpose."""


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
