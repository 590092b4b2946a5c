"""What the kernel-side client raises. All are :class:`nbws.errors.NbwsError` subclasses.

The tree::

    NbwsError
    ├── ServerNotFound      no url given and none could be discovered (says what was tried)
    ├── OutboxFull          publish(block=False), or block=True past its timeout
    ├── DeliveryFailed      one message's future: nacked, expired, or the handle was closed
    ├── FlushError          flush()/close(): some messages failed, or were not acked in time
    └── StreamClosed        the handle (or subscription) was closed
"""

from __future__ import annotations

import enum

from ..errors import NackCode, NbwsError

__all__ = [
    "DeliveryFailed",
    "FailureCode",
    "FlushError",
    "OutboxFull",
    "ServerNotFound",
    "StreamClosed",
]


class FailureCode(str, enum.Enum):
    """Why a message failed on the client's side (the server's reasons are
    :class:`~nbws.errors.NackCode`); compares equal to its string."""

    EXPIRED = "expired"
    CLOSED = "closed"
    TOO_BIG = "too-big"

    def __str__(self) -> str:
        return self.value


class ServerNotFound(NbwsError):
    """No server URL was given and none could be discovered."""


class OutboxFull(NbwsError):
    """The bounded outbox (messages or bytes) has no room for another message."""


class StreamClosed(NbwsError):
    """The stream handle or subscription is closed."""


class DeliveryFailed(NbwsError):
    """A message could not be delivered; its future fails with this.

    Attributes:
        seq: the message's sequence number for this producer.
        code: a :class:`FailureCode`: ``expired`` (past the delivery deadline),
            ``closed`` (the handle closed with it unacked), ``too-big`` (over the server's
            ``max_message_size``); or the server's :class:`~nbws.errors.NackCode`
            (``oversize``, ``unknown-stream``, ``forbidden``, ...). Both are ``str``
            enums, equal to the code's text.
        reason: a readable explanation.
    """

    def __init__(self, seq: int, code: FailureCode | NackCode, reason: str) -> None:
        super().__init__(f"message seq={seq} failed ({code}): {reason}")
        self.seq = seq
        self.code = code
        self.reason = reason


class FlushError(NbwsError):
    """``flush()`` could not confirm every message.

    Attributes:
        failures: the :class:`DeliveryFailed` errors of messages that failed since the
            last flush.
        pending: messages still unacked (non-zero when the flush timed out).
    """

    def __init__(self, message: str, failures: list[DeliveryFailed], pending: int) -> None:
        super().__init__(message)
        self.failures = failures
        self.pending = pending
