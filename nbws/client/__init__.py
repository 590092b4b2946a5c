"""The kernel-side client: reliable publishing to, and reading from, nbws streams.

``nbws.stream(name)`` (see :mod:`nbws.client.stream`) finds the server, publishes with
acks, retransmits and reconnects in a background I/O thread, and reads streams back as
messages, lists or DataFrames. docs/client.md is the user guide.
"""

from __future__ import annotations

from .discovery import Endpoint, discover
from .errors import (
    DeliveryFailed,
    FailureCode,
    FlushError,
    OutboxFull,
    ServerNotFound,
    StreamClosed,
)
from .frames import Gap, Message
from .frames_pandas import ARROW_STREAM
from .outbox import Receipt, Receipts
from .stream import Stream, StreamOptions, StreamStats, stream
from .subscription import GapWarning, Subscription

__all__ = [
    "ARROW_STREAM",
    "DeliveryFailed",
    "Endpoint",
    "FailureCode",
    "FlushError",
    "Gap",
    "GapWarning",
    "Message",
    "OutboxFull",
    "Receipt",
    "Receipts",
    "ServerNotFound",
    "Stream",
    "StreamClosed",
    "StreamOptions",
    "StreamStats",
    "Subscription",
    "discover",
    "stream",
]
