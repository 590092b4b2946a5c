"""Events a :class:`~nbws.protocol.session.Session` hands to its driver.

Frozen, slotted dataclasses: the driver matches on their type. Data arrives fragment by
fragment (nothing is reassembled here), so a consumer can stream a huge message.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CloseReceived", "Event", "Fragment", "Ping", "Pong"]


@dataclass(frozen=True, slots=True)
class Fragment:
    """One frame of a data message.

    Attributes:
        text: True for a text message (already checked to be valid UTF-8 so far).
        data: the frame's payload (decompressed when permessage-deflate is on).
        first: this frame starts a message.
        last: this frame ends it (FIN set).
    """

    text: bool
    data: bytes
    first: bool
    last: bool


@dataclass(frozen=True, slots=True)
class Ping:
    """A ping from the peer; the session has already queued the pong."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Pong:
    """A pong from the peer (answer to our ping, or unsolicited)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class CloseReceived:
    """The peer sent a close frame; the session has echoed it if it had not closed first."""

    code: int
    reason: str


Event = Fragment | Ping | Pong | CloseReceived
