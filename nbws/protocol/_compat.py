"""Everything nbws needs from ``websockets`` beyond its documented API, in one place.

nbws supports websockets 15 to 17 (``pyproject.toml``). What changed between them, or is
not part of the library's public API, is reached only through this module, so a new
release is checked here and in ``tests/test_compat.py``, nowhere else:

- ``apply_mask``: the C speedup when the library was built with it; ``accept_key``
  (``Sec-WebSocket-Accept`` from the key), which the library keeps in ``utils``;
- the size limits of the Sans-I/O parser (``max_size`` became a ``(message, fragment)``
  pair and ``cur_size`` became ``current_size`` in 16);
- whether a fragmented message is in flight either way (parser attributes);
- :class:`RawClientConnection`: the asyncio client connection's byte feed
  (``data_received``), transport and ``drain``, for the client's fast lanes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.protocol import Protocol
from websockets.server import ServerProtocol
from websockets.utils import accept_key as _accept_key
from websockets.version import version as _version

try:
    from websockets.speedups import apply_mask as _apply_mask
except ImportError:  # pragma: no cover - websockets built without its C extension
    from websockets.utils import apply_mask as _apply_mask

__all__ = [
    "WEBSOCKETS_VERSION",
    "RawClientConnection",
    "accept_key",
    "apply_mask",
    "receiving_fragmented",
    "sending_fragmented",
    "server_protocol",
    "set_frame_limit",
]

WEBSOCKETS_VERSION: tuple[int, ...] = tuple(
    int(part) for part in _version.split(".")[:2] if part.isdigit()
)
_SPLIT_LIMITS = WEBSOCKETS_VERSION >= (16,)  # max_size=(message, fragment), current_size
_NO_LIMITS: Any = (None, None) if _SPLIT_LIMITS else None
_IN_FLIGHT = "current_size" if _SPLIT_LIMITS else "cur_size"  # None between messages
# Typed loosely so that this module type-checks against every supported version.
_mask: Callable[[Any, bytes], bytes] = _apply_mask


def apply_mask(data: bytes | bytearray | memoryview, key: bytes) -> bytes:
    """XOR ``data`` with the 4-byte masking ``key`` repeated (RFC 6455 section 5.3)."""
    return _mask(data, key)


def accept_key(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` a server answers ``Sec-WebSocket-Key: key`` with."""
    return _accept_key(key)


def server_protocol(**kwargs: Any) -> ServerProtocol:
    """A ``ServerProtocol`` whose own size limits are off: the caller sets a limit per
    frame with :func:`set_frame_limit` (every keyword but ``max_size`` is passed on)."""
    return ServerProtocol(max_size=_NO_LIMITS, **kwargs)


def set_frame_limit(protocol: Protocol, limit: int | None, in_flight: int) -> None:
    """Make the parser refuse the next frame from its header when it declares more than
    ``limit`` bytes (None: no limit). Called once per inbound frame.

    Args:
        protocol: made by :func:`server_protocol`.
        limit: largest payload the next frame may declare.
        in_flight: bytes of the fragmented message in flight once the current frame
            counts (0 between messages). websockets 15 subtracts them from its one limit.
    """
    parser: Any = protocol
    parser.max_fragment_size = limit


def _set_frame_limit_15(protocol: Protocol, limit: int | None, in_flight: int) -> None:
    setattr(protocol, "max_size", None if limit is None else limit + in_flight)  # noqa: B010


if not _SPLIT_LIMITS:  # pragma: no cover - websockets 15
    _set_frame_limit_15.__doc__ = set_frame_limit.__doc__
    set_frame_limit = _set_frame_limit_15


def receiving_fragmented(protocol: Protocol) -> bool:
    """True while an inbound fragmented message is in flight."""
    return getattr(protocol, _IN_FLIGHT) is not None


def sending_fragmented(protocol: Protocol) -> bool:
    """True while an outbound fragmented message is in flight."""
    return bool(protocol.expect_continuation_frame)


class RawClientConnection(ClientConnection):
    """The asyncio client connection, with the bytes it reads passed to
    :meth:`receive_raw` first. A subclass hands the library what it does not handle
    itself with :meth:`to_library`, and writes pre-built frames with :meth:`write_raw`."""

    def data_received(self, data: bytes) -> None:
        self.receive_raw(data)

    def receive_raw(self, data: bytes) -> None:
        """Bytes as read from the socket (default: all to the library)."""
        self.to_library(data)

    def to_library(self, data: bytes) -> None:
        """Feed bytes to the library's parser."""
        super().data_received(data)

    async def write_raw(self, data: bytes) -> None:
        """Write already-framed bytes and wait as the library's own sends do."""
        self.transport.write(data)
        await self.drain()
