"""Relay: nbws.v1 between a widget view and the server, carried by the widget's comm.

When the browser can reach neither the page's Jupyter server with nbws (direct) nor the
server the kernel hosts (kernel-hosted), e.g. a remote kernel without the extension or
Colab, the view opens its links through the kernel instead. Each link is one kernel-side
WebSocket (``nbws.v1``, the kernel's own credentials) driven by a daemon thread, so the
kernel's event loop is never touched:

- view → server: the page manager's requests (``subscribe``, ``consumed``, ...) pass
  through unchanged;
- server → view: frames are collected and sent back as one custom message per batch, at
  most ``max_rate`` per second (far below the iopub limit of 1000 messages/s), binary
  frames as buffers. Each batch is acked by the view; with ``max_unacked`` batches (or
  ``max_unacked_bytes``) unacked, no batch goes out, and once ``max_pending_bytes`` have
  queued here the thread stops reading the socket. The server then sees a slow reader and
  its credit, buffer bound and policy act (gap notices reach the view) exactly as for a
  slow browser on a direct WebSocket.

It is nbws.v1 end to end: offsets, gaps and resume are the server's and the page's; the
relay adds no state of its own but the batch window. Credentials stay in the kernel: the
messages to the view carry frames only, never the endpoint's URL or token.

Custom messages (``content["nbws"]``), per link id chosen by the view::

    view → kernel   relay-open {link}   relay-send {link, text}   relay-ack {link, batch}
                    relay-close {link, code, reason}
    kernel → view   relay-opened {link}   relay-batch {link, batch, frames}
                    relay-closed {link, code, reason, was_open}

``frames`` lists the batch's WebSocket messages in order: a string is a text message, an
integer ``i`` the binary message in the custom message's buffer ``i``.

:class:`RelayFlow` is the pure batch window (time comes in as ``now``);
:class:`RelayLink` is its I/O driver; :class:`Relay` serves one widget's links.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..protocol.messages import PROTOCOL

__all__ = [
    "MAX_LINKS",
    "Batch",
    "CustomMessages",
    "Relay",
    "RelayFlow",
    "RelayLink",
    "RelaySettings",
    "attach_relay",
]

log = logging.getLogger("nbws.widgets")

MAX_LINKS = 4
"""Open links per widget: a reloaded page never closes its old links, so the oldest go."""

Connector = Callable[[], Any]
"""Opens the kernel-side WebSocket (a ``websockets.sync`` client connection)."""


class CustomMessages(Protocol):
    """What the relay needs of a widget: ipywidgets' ``send`` and ``on_msg``."""

    def send(self, content: dict[str, Any], buffers: list[bytes] | None = None) -> None: ...

    def on_msg(self, callback: Callable[..., Any], remove: bool = False) -> None: ...


@dataclass(frozen=True)
class RelaySettings:
    """Bounds of one link's batch window (defaults keep iopub far below its 1000/s limit)."""

    max_rate: float = 30.0
    """Batches (custom messages) per second at most."""
    max_unacked: int = 4
    """Batches sent and not yet acked by the view before sending waits."""
    max_unacked_bytes: int = 8 << 20
    """Bytes sent and not yet acked before sending waits."""
    max_batch_bytes: int = 1 << 20
    """A batch closes once it holds this many bytes (one larger frame goes alone)."""
    max_pending_bytes: int = 2 << 20
    """Bytes received and not yet sent before the socket is no longer read."""

    def __post_init__(self) -> None:
        if self.max_rate <= 0 or self.max_unacked < 1:
            raise ValueError("max_rate must be > 0 and max_unacked >= 1")
        if min(self.max_unacked_bytes, self.max_batch_bytes, self.max_pending_bytes) < 1:
            raise ValueError("byte bounds must be positive")


@dataclass(frozen=True)
class Batch:
    """One custom message's worth of frames, numbered from 1 per link."""

    number: int
    frames: tuple[str | bytes, ...]
    size: int

    def content(self, link: int) -> tuple[dict[str, Any], list[bytes]]:
        """The custom message (content, buffers) that carries this batch to the view."""
        listed: list[str | int] = []
        buffers: list[bytes] = []
        for frame in self.frames:
            if isinstance(frame, bytes):
                listed.append(len(buffers))
                buffers.append(frame)
            else:
                listed.append(frame)
        content = {"nbws": "relay-batch", "link": link, "batch": self.number, "frames": listed}
        return content, buffers


@dataclass
class RelayFlow:
    """The batch window of one link (PURE: no socket, thread or clock).

    The driver feeds what the socket delivered (:meth:`receive_frame`) and the view's
    acks (:meth:`receive_ack`), sends :meth:`batch_to_send` when it returns one, and
    reads the socket only while :attr:`can_read`.
    """

    settings: RelaySettings = field(default_factory=RelaySettings)
    pending: deque[str | bytes] = field(default_factory=deque)
    pending_bytes: int = 0
    unacked: dict[int, int] = field(default_factory=dict)  # batch number -> bytes
    last_sent: float = float("-inf")
    sent_batches: int = 0
    sent_frames: int = 0
    paused_reads: int = 0  # times reading stopped because the window was full

    @property
    def unacked_bytes(self) -> int:
        return sum(self.unacked.values())

    @property
    def window_open(self) -> bool:
        """Whether another batch may be sent now (acks permitting)."""
        return (
            len(self.unacked) < self.settings.max_unacked
            and self.unacked_bytes < self.settings.max_unacked_bytes
        )

    @property
    def can_read(self) -> bool:
        """Whether the driver may read another frame from the socket."""
        return self.pending_bytes < self.settings.max_pending_bytes

    def receive_frame(self, data: str | bytes) -> None:
        """A WebSocket message from the server, to go out with the next batch."""
        was_readable = self.can_read
        self.pending.append(data)
        self.pending_bytes += len(data)
        if was_readable and not self.can_read:
            self.paused_reads += 1

    def receive_ack(self, number: int) -> None:
        """The view applied batch ``number`` (an unknown or repeated ack is ignored)."""
        self.unacked.pop(number, None)

    def next_send_time(self) -> float | None:
        """When the next batch may go out, if one is waiting and the window is open."""
        if not self.pending or not self.window_open:
            return None
        return self.last_sent + 1.0 / self.settings.max_rate

    def batch_to_send(self, now: float, *, final: bool = False) -> Batch | None:
        """The next batch if one is due at ``now`` (``final``: the link is closing, send
        what is left regardless of rate and window)."""
        if not self.pending:
            return None
        if not final:
            due = self.next_send_time()
            if due is None or now < due:
                return None
        frames: list[str | bytes] = []
        size = 0
        limit = self.settings.max_batch_bytes
        while self.pending and (not frames or final or size + len(self.pending[0]) <= limit):
            frame = self.pending.popleft()
            frames.append(frame)
            size += len(frame)
        self.pending_bytes -= size
        self.sent_batches += 1
        self.sent_frames += len(frames)
        self.last_sent = now
        self.unacked[self.sent_batches] = size
        return Batch(self.sent_batches, tuple(frames), size)


def _default_connector() -> Any:
    """A ``websockets.sync`` connection to the server this kernel publishes to."""
    from websockets.sync.client import connect
    from websockets.typing import Subprotocol

    from ..client.discovery import endpoint

    found = endpoint()
    headers = {"Authorization": f"token {found.token}"} if found.token else None
    return connect(
        found.url,
        subprotocols=[Subprotocol(PROTOCOL)],
        additional_headers=headers,
        compression=None,
        proxy=None,
        open_timeout=30,
        max_size=None,
        close_timeout=2,
    )


class RelayLink:
    """One view link: a kernel-side WebSocket and the thread that batches its frames.

    Args:
        link: the view's id for this link.
        send: sends one custom message to the view (``content, buffers``); called from
            this link's thread.
        connector: opens the WebSocket (default: the endpoint ``nbws.stream`` uses).
        settings: the batch window's bounds.
    """

    def __init__(
        self,
        link: int,
        send: Callable[[dict[str, Any], list[bytes]], None],
        connector: Connector | None = None,
        settings: RelaySettings | None = None,
    ) -> None:
        self.link = link
        self._send = send
        self._connector = connector or _default_connector
        self.flow = RelayFlow(settings or RelaySettings())
        self._lock = threading.Condition()
        self._ws: Any = None
        self._closing: tuple[int, str] | None = None  # what the view asked for
        self._outbox: list[str] = []  # view requests sent before the socket opened
        self._thread = threading.Thread(target=self._run, name=f"nbws-relay-{link}", daemon=True)
        self.closed = threading.Event()

    def start(self) -> None:
        self._thread.start()

    # --- from the view (the kernel's shell thread) -------------------------------------

    def send_text(self, text: str) -> None:
        """Forward one nbws.v1 request from the view to the server."""
        with self._lock:
            ws = self._ws
            if ws is None:
                self._outbox.append(text)
                return
        try:
            ws.send(text)
        except Exception:  # the socket is closing: the thread reports it to the view
            log.debug("relay link %s: send after close", self.link)

    def ack(self, number: int) -> None:
        with self._lock:
            self.flow.receive_ack(number)
            self._lock.notify_all()

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the link (the view asked, or the widget closed); returns at once."""
        with self._lock:
            if self._closing is None:
                self._closing = (code, reason)
            ws = self._ws
            self._lock.notify_all()
        if ws is not None:
            threading.Thread(target=_close_quietly, args=(ws, code, reason), daemon=True).start()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    # --- the link's thread ----------------------------------------------------------------

    def _run(self) -> None:
        code, reason, was_open = 1006, "", False
        try:
            ws = self._connector()
        except Exception as exc:
            reason = f"the kernel could not reach the nbws server ({type(exc).__name__})"
            self._notify_closed(1011, reason, False)
            return
        with ws:  # (websockets >= 17.1 wants its connections used as context managers)
            with self._lock:
                self._ws = ws
                outbox, self._outbox = self._outbox, []
                closing = self._closing
            if closing is not None:
                _close_quietly(ws, *closing)
                self._notify_closed(*closing, False)
                return
            was_open = True
            try:
                self._send({"nbws": "relay-opened", "link": self.link}, [])
                for text in outbox:
                    ws.send(text)
                code, reason = self._pump(ws)
            except Exception as exc:  # e.g. a failed comm send: nothing reaches the view
                log.warning("relay link %s stopped: %s", self.link, exc)
                _close_quietly(ws, 1011, "relay failed")
                code, reason = 1011, "relay failed"
        self._notify_closed(code, reason, was_open)

    def _pump(self, ws: Any) -> tuple[int, str]:
        """Read, batch and send until the socket closes; returns its close code/reason."""
        from websockets.exceptions import ConnectionClosed

        flow = self.flow
        while True:
            with self._lock:
                while True:
                    now = time.monotonic()
                    batch = flow.batch_to_send(now)
                    if batch is not None or flow.can_read or self._closing is not None:
                        break
                    due = flow.next_send_time()
                    self._lock.wait(None if due is None else max(0.0, due - now))
            if batch is not None:
                content, buffers = batch.content(self.link)
                self._send(content, buffers)
                continue
            due = flow.next_send_time()
            wait = 0.05 if due is None else max(0.0, min(0.05, due - time.monotonic()))
            if not flow.pending and flow.window_open:
                wait = 0.25  # nothing queued: block on the socket a while
            try:
                data = ws.recv(timeout=wait)
            except TimeoutError:
                continue
            except ConnectionClosed:
                break
            with self._lock:
                flow.receive_frame(data)
        with self._lock:
            last = flow.batch_to_send(time.monotonic(), final=True)
        if last is not None:
            content, buffers = last.content(self.link)
            self._send(content, buffers)
        if self._closing is not None:
            return self._closing
        code = ws.close_code
        return (code, ws.close_reason or "") if code is not None else (1006, "")

    def _notify_closed(self, code: int, reason: str, was_open: bool) -> None:
        self.closed.set()
        try:
            self._send(
                {
                    "nbws": "relay-closed",
                    "link": self.link,
                    "code": code,
                    "reason": reason,
                    "was_open": was_open,
                },
                [],
            )
        except Exception:  # the widget is gone
            log.debug("relay link %s: closed after its widget", self.link)


def _close_quietly(ws: Any, code: int, reason: str) -> None:
    try:
        ws.close(code, reason)
    except Exception:
        log.debug("relay: close failed", exc_info=True)


class Relay:
    """Serves the relay links a widget's views open (see the module docstring).

    Args:
        widget: the widget whose custom messages carry the links.
        connector: opens each link's WebSocket (default: the kernel's nbws endpoint).
        settings: every link's batch window.
    """

    def __init__(
        self,
        widget: CustomMessages,
        connector: Connector | None = None,
        settings: RelaySettings | None = None,
    ) -> None:
        self._widget = widget
        self._connector = connector
        self.settings = settings or RelaySettings()
        self.links: dict[int, RelayLink] = {}
        self._lock = threading.Lock()
        widget.on_msg(self._on_msg)
        _live.add(self)

    def _send(self, content: dict[str, Any], buffers: list[bytes]) -> None:
        self._widget.send(content, buffers or None)

    def _on_msg(self, _widget: Any, content: Any, buffers: Any = None) -> None:
        if not isinstance(content, dict):
            return
        kind = content.get("nbws")
        link = content.get("link")
        if not isinstance(kind, str) or not kind.startswith("relay-"):
            return
        if not isinstance(link, int) or isinstance(link, bool):
            log.warning("relay: %s without an integer link id ignored", kind)
            return
        if kind == "relay-open":
            self.open(link)
            return
        found = self.links.get(link)
        if found is None:
            return
        if kind == "relay-send" and isinstance(content.get("text"), str):
            found.send_text(content["text"])
        elif kind == "relay-ack" and isinstance(content.get("batch"), int):
            found.ack(content["batch"])
        elif kind == "relay-close":
            code = content.get("code")
            reason = content.get("reason")
            found.close(code if isinstance(code, int) else 1000, str(reason or "")[:120])
            self._forget(link)

    def open(self, link: int) -> RelayLink:
        """Open link ``link`` for the view (the oldest goes past :data:`MAX_LINKS`)."""
        made = RelayLink(link, self._send, self._connector, self.settings)
        with self._lock:
            old = self.links.pop(link, None)
            self.links[link] = made
            surplus = list(self.links.values())[:-MAX_LINKS]
        for gone in [old, *surplus]:
            if gone is not None:
                gone.close(1001, "replaced by a newer relay link")
                self._forget(gone.link, gone)
        made.start()
        return made

    def _forget(self, link: int, which: RelayLink | None = None) -> None:
        with self._lock:
            if which is None or self.links.get(link) is which:
                self.links.pop(link, None)

    def close(self, timeout: float = 5.0) -> None:
        """Close every link (the widget or the kernel is going away)."""
        with self._lock:
            links = list(self.links.values())
            self.links.clear()
        for link in links:
            link.close(1001, "the widget closed")
        deadline = time.monotonic() + timeout
        for link in links:
            link.join(max(0.0, deadline - time.monotonic()))
        try:
            self._widget.on_msg(self._on_msg, remove=True)
        except Exception:
            log.debug("relay: on_msg removal failed", exc_info=True)


_live: weakref.WeakSet[Relay] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    """The kernel is exiting: close every link with a close frame, briefly."""
    for relay in list(_live):
        relay.close(timeout=1.0)


def attach_relay(widget: Any, **kwargs: Any) -> Relay:
    """Serve relay links for ``widget`` until it closes (the widget base calls this)."""
    relay = Relay(widget, **kwargs)
    if hasattr(widget, "observe"):  # ipywidgets: closing the widget drops its comm

        def _closed(change: dict[str, Any]) -> None:
            if change.get("new") is None:
                relay.close(timeout=0)

        try:
            widget.observe(_closed, names="comm")
        except Exception:
            log.debug("relay: cannot observe the widget's comm", exc_info=True)
    return relay
