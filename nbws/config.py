"""The one settings object, read by the Jupyter extension and by ``nbws serve`` alike.

Set options in ``jupyter_server_config.py`` / ``jupyter_nbws_config.py`` as ``c.Nbws.<name>``
or on the command line as ``--Nbws.<name>=value``. ``docs/configuration.md`` lists each one.
"""

from __future__ import annotations

from typing import Any

from traitlets import Bool, Dict, Float, Int, List, Unicode, validate
from traitlets.config import Configurable

__all__ = ["Nbws", "endpoint_compression"]

MiB = 1024 * 1024


class Nbws(Configurable):
    """nbws settings: WebSocket limits and liveness, streams, buffers, broker."""

    # --- WebSocket protocol limits -------------------------------------------------------
    max_message_size = Int(
        16 * MiB,
        help="Largest inbound message in bytes, summed across fragments; over it the "
        "connection closes with 1009. 0 means no limit.",
    ).tag(config=True)

    max_frame_size = Int(
        16 * MiB,
        help="Largest single inbound frame in bytes (each frame is held whole while it "
        "is parsed, so this bounds per-connection memory). Over it: close 1009.",
    ).tag(config=True)

    max_connections = Int(
        10_000,
        help="WebSocket connections this process accepts at once; past it the upgrade "
        "is refused with HTTP 503 before any WebSocket traffic.",
    ).tag(config=True)

    rate_limit = Float(
        0.0,
        help="Inbound messages per second allowed on one connection (token bucket with "
        "a burst of rate_limit_burst). Exceeding it closes the connection with 1008. "
        "0 disables the limit.",
    ).tag(config=True)

    rate_limit_burst = Int(
        0,
        help="Burst size of the per-connection rate limit; 0 means one second's worth.",
    ).tag(config=True)

    # --- liveness ----------------------------------------------------------------------------
    heartbeat_interval = Float(
        30.0,
        help="Seconds of silence from a peer after which the server sends a ping. 0 disables "
        "heartbeats.",
    ).tag(config=True)

    heartbeat_timeout = Float(
        20.0,
        help="Seconds to wait for the pong; a peer that does not answer is closed with 1011 "
        "and dropped.",
    ).tag(config=True)

    idle_timeout = Float(
        0.0,
        help="Seconds without any data message from a peer after which the server closes "
        "the connection with 1001. 0 disables it (heartbeats still detect dead peers).",
    ).tag(config=True)

    close_timeout = Float(
        5.0,
        help="Seconds to wait for the peer to finish the closing handshake before the TCP "
        "connection is dropped.",
    ).tag(config=True)

    # --- flow control ------------------------------------------------------------------------
    write_high_water = Int(
        1 * MiB,
        help="Bytes queued in the transport above which a connection counts as not drained: "
        "streaming sends wait, echo stops reading, subscriber buffers start to fill.",
    ).tag(config=True)

    write_low_water = Int(
        256 * 1024,
        help="Bytes queued in the transport below which a paused sender resumes.",
    ).tag(config=True)

    read_high_water = Int(
        4 * MiB,
        help="Bytes of received frames waiting for the application above which the server "
        "stops reading from the socket (TCP backpressure to the peer).",
    ).tag(config=True)

    # --- negotiation -----------------------------------------------------------------------
    subprotocols = Dict(
        {"echo": ["nbws.echo"], "streams": ["nbws.v1"]},
        help="Subprotocols each endpoint offers, in the server's order of preference. The "
        "first one the client also offers is selected; a client offering none of them is "
        "still accepted, without a subprotocol.",
    ).tag(config=True)

    compression = Dict(
        {},
        help="permessage-deflate per endpoint, off by default (see docs/security.md on "
        "CRIME/BREACH). Example: {'echo': {'server_max_window_bits': 12, "
        "'client_max_window_bits': 12, 'server_no_context_takeover': False, "
        "'client_no_context_takeover': False}}. An empty dict for an endpoint enables "
        "deflate with the defaults.",
    ).tag(config=True)

    frame_tap_size = Int(
        1000,
        help="Frames kept per connection by the frame tap once someone watches it (oldest "
        "are dropped first).",
    ).tag(config=True)

    # --- standalone server -----------------------------------------------------------------
    allow_origins = List(
        Unicode(),
        [],
        help="Origins allowed to open WebSockets to `nbws serve` besides the server's own. "
        "'*' allows any origin. Inside Jupyter, Jupyter's own allow_origin settings apply.",
    ).tag(config=True)

    # --- streams -------------------------------------------------------------------------
    backend = Unicode(
        "memory",
        help="Stream broker: 'memory' (embedded, one process) or 'redis' (scale-out).",
    ).tag(config=True)

    redis_url = Unicode(
        "redis://127.0.0.1:6379/0",
        help="Redis URL used when backend = 'redis' (rediss:// for TLS, "
        "redis://:password@host:port/db with a password).",
    ).tag(config=True)

    redis_prefix = Unicode(
        "nbws",
        help="Prefix of every Redis key nbws writes. Processes that share streams must use "
        "the same prefix; different prefixes keep deployments apart on one Redis.",
    ).tag(config=True)

    redis_command_timeout = Float(
        2.0,
        help="Seconds a Redis command may take before it counts as a failure: the publish "
        "is nacked with retry and health shows degraded until Redis answers again.",
    ).tag(config=True)

    auto_create_streams = Bool(
        True,
        help="Create a stream on its first publish or subscribe. When False, streams must "
        "be created through the REST API and unknown streams are refused.",
    ).tag(config=True)

    history_max_messages = Int(
        10_000,
        help="Messages of history each stream keeps by default (for replay and resume).",
    ).tag(config=True)

    history_max_bytes = Int(
        64 * MiB,
        help="Bytes of payload history each stream keeps by default.",
    ).tag(config=True)

    history_max_age = Float(
        0.0,
        help="Seconds of history each stream keeps by default; 0 keeps messages regardless of age.",
    ).tag(config=True)

    dedupe_window = Int(
        4096,
        help="Per producer, how many of its most recent sequence numbers the server "
        "remembers to acknowledge a retransmitted publish without appending it twice.",
    ).tag(config=True)

    buffer_max_messages = Int(
        10_000,
        help="Default bound of each subscriber's outbound buffer, in messages.",
    ).tag(config=True)

    buffer_max_bytes = Int(
        8 * MiB,
        help="Default bound of each subscriber's outbound buffer, in bytes.",
    ).tag(config=True)

    buffer_policy = Unicode(
        "drop-oldest",
        help="Default policy when a subscriber's buffer is full: drop-oldest, drop-newest, "
        "conflate, disconnect or block.",
    ).tag(config=True)

    @validate("write_low_water")
    def _low_below_high(self, proposal: Any) -> int:
        value = int(proposal["value"])
        if value > self.write_high_water:
            raise ValueError("write_low_water must not exceed write_high_water")
        return value


def endpoint_compression(config: Nbws, endpoint: str) -> dict[str, Any] | None:
    """Return the permessage-deflate settings for ``endpoint``, or None when it is off."""
    settings = config.compression.get(endpoint)
    return None if settings is None else dict(settings)
