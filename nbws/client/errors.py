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

from ..errors import NbwsError

__all__ = ["DeliveryFailed", "FlushError", "OutboxFull", "ServerNotFound", "StreamClosed"]


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
        code: ``expired`` (past the delivery deadline), ``closed`` (the handle closed with
            it unacked), ``too-big`` (over the server's ``max_message_size``), or the
            server's nack code (``oversize``, ``unknown-stream``, ``forbidden``, ...).
        reason: a readable explanation.
    """

    def __init__(self, seq: int, code: str, reason: str) -> None:
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
