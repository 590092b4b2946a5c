"""``FrameInspector``: every frame of one WebSocket connection, live, with controls to send.

Two sources feed the same view:

- **browser** (``FrameInspector(endpoint="echo")``): the browser opens ``nbws/tap?label=L``
  and ``nbws/echo?tap=L`` itself and shows the server's record of each frame. A browser
  cannot ping, fragment or send most close codes; the view says so and fragments through
  the echo's ``?fragment=N`` option instead.
- **kernel** (:func:`inspect_connection`): any object with ``on_frame(callback)`` and
  ``records`` (e.g. an ``nbws.explore`` raw connection) is shown; its records travel as
  custom comm messages, and the buttons call the object's ``text``/``binary``/
  ``fragments``/``ping``/``close`` in the kernel, so anything can be sent.
"""

from __future__ import annotations

import re
import secrets
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from traitlets import Dict, Enum, TraitError, Unicode, validate

from .._redact import redact_text, redact_url
from ._base import NbwsWidget

__all__ = ["FrameInspector", "FrameSourceLike", "KernelFeed", "inspect_connection", "record_dict"]

ENDPOINT = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
ECHO_OPTIONS = frozenset({"fragment", "stream", "close", "reason", "delay_ms"})
MAX_FRAMES = 500
FLUSH_SECONDS = 0.05


class FrameSourceLike(Protocol):
    """What :func:`inspect_connection` needs: recorded frames and a live listener hook."""

    @property
    def records(self) -> Iterable[Any]: ...

    def on_frame(self, listener: Callable[[Any], None]) -> None: ...


def record_dict(record: Any) -> dict[str, Any]:
    """A frame record as the view reads it (``FrameRecord.as_dict()`` or a dict already)."""
    as_dict = getattr(record, "as_dict", None)
    if callable(as_dict):
        return dict(as_dict())
    if isinstance(record, Mapping):
        return dict(record)
    raise TypeError(f"not a frame record: {record!r}")


class FrameInspector(NbwsWidget):
    """A live list of frames in and out with controls (see the module docstring).

    Args:
        endpoint: the nbws endpoint under ``nbws/`` the browser connects to (``echo``).
        options: echo query options (``delay_ms``, ``close``, ``reason``, ...).
        label: tap label (a random one by default; each view adds its own suffix).
    """

    _view = Unicode("inspector").tag(sync=True)

    endpoint = Unicode("echo", help="Endpoint under nbws/ the browser connects to.").tag(sync=True)
    label = Unicode(help="Tap label for the browser's connection.").tag(sync=True)
    options = Dict(help="Query options of the browser's echo connection.").tag(sync=True)
    source = Enum(["browser", "kernel"], "browser", help="Who makes the connection.").tag(sync=True)
    url = Unicode(
        "", help="The kernel connection's URL (kernel source), tokens and passwords redacted."
    ).tag(sync=True)

    _feed: KernelFeed | None = None

    def __init__(
        self,
        endpoint: str = "echo",
        *,
        options: Mapping[str, Any] | None = None,
        label: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            endpoint=endpoint,
            options=dict(options or {}),
            label=label or f"inspector-{secrets.token_hex(4)}",
            **kwargs,
        )

    @validate("url")
    def _check_url(self, proposal: dict[str, Any]) -> str:
        # Synced state is saved in the notebook: a token must never reach it.
        return redact_url(str(proposal["value"]))

    @validate("endpoint")
    def _check_endpoint(self, proposal: dict[str, Any]) -> str:
        value = str(proposal["value"])
        if not ENDPOINT.match(value):
            raise TraitError(
                f"endpoint is a path segment under nbws/ such as 'echo' (got {value!r})"
            )
        return value

    @validate("label")
    def _check_label(self, proposal: dict[str, Any]) -> str:
        value = str(proposal["value"])
        if not 1 <= len(value) <= 48:
            raise TraitError("label must be 1-48 characters")
        return value

    @validate("options")
    def _check_options(self, proposal: dict[str, Any]) -> dict[str, str]:
        value = dict(proposal["value"])
        unknown = sorted(set(value) - ECHO_OPTIONS)
        if unknown:
            raise TraitError(f"unknown echo options {unknown}; use {sorted(ECHO_OPTIONS)}")
        return {str(k): str(v) for k, v in value.items()}

    def close(self) -> None:
        """Stop following a kernel connection, then close the widget."""
        if self._feed is not None:
            self._feed.detach()
            self._feed = None
        super().close()


class KernelFeed:
    """Forwards a kernel-side connection's frames to a FrameInspector and runs its buttons.

    Frames arrive on the connection's threads; they are batched (every 50 ms, at most
    ``max_frames`` pending, the oldest dropped and counted) into custom comm messages.

    Each frame is numbered once (``seq``, from 1) and the newest ``max_frames`` are kept
    with their numbers. A view asks for a replay when it starts, but the kernel answers
    only when it is idle: under "Run All" the view has meanwhile received the same frames
    live. The numbers let it show each frame once, in order.
    """

    def __init__(
        self,
        widget: FrameInspector,
        conn: FrameSourceLike,
        *,
        max_frames: int = MAX_FRAMES,
        reconnect: Callable[[], FrameSourceLike] | None = None,
    ) -> None:
        self.widget = widget
        self.conn = conn
        self.max_frames = max_frames
        self.reconnect = reconnect
        self.dropped = 0
        self._pending: list[dict[str, Any]] = []
        self._history: deque[dict[str, Any]] = deque(maxlen=max_frames)
        self._seq = 0
        self._early: list[Any] | None = None
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._attached = False

    def attach(self, *, announce: bool = False) -> None:
        """Start forwarding frames and answering the view.

        Args:
            announce: also send the frames the connection recorded before (a new
                connection after Reconnect, whose views are already showing).
        """
        with self._lock:
            self._early = []  # frames delivered while the records are read
        self._attached = True
        self.conn.on_frame(self._on_frame)
        self.widget.on_msg(self._on_view_message)
        # Read without holding our lock: the connection calls _on_frame under its own.
        recorded = list(self.conn.records)
        with self._lock:
            early, self._early = self._early or [], None
            delivered = {id(item) for item in early}
            older = [r for r in recorded if id(r) not in delivered]
            kept = older[-self.max_frames :] if self.max_frames else []
            self._seq += len(older) - len(kept)  # numbered, but past what is kept
            before = [self._number(r) for r in kept]
            during = [self._number(r) for r in early]
            if announce:
                self._pending.extend(before)
            self._pending.extend(during)
        if (before and announce) or during:
            self._schedule()

    def detach(self) -> None:
        """Stop forwarding (the connection itself stays as it is)."""
        if not self._attached:
            return
        self._attached = False
        off = getattr(self.conn, "off_frame", None)
        if callable(off):
            off(self._on_frame)
        self.widget.on_msg(self._on_view_message, remove=True)
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    # --- frames -> view ---------------------------------------------------------------

    def _number(self, record: Any) -> dict[str, Any]:
        """The record as the view reads it, with the next ``seq`` (call with the lock)."""
        self._seq += 1
        frame = {**record_dict(record), "seq": self._seq}
        self._history.append(frame)
        return frame

    def _on_frame(self, record: Any) -> None:
        if not self._attached:
            return
        with self._lock:
            if self._early is not None:
                self._early.append(record)
                return
            self._pending.append(self._number(record))
            if len(self._pending) > self.max_frames:
                del self._pending[0]
                self.dropped += 1
        self._schedule()

    def _schedule(self) -> None:
        with self._lock:
            if self._timer is None and self._attached:
                self._timer = threading.Timer(FLUSH_SECONDS, self.flush)
                self._timer.daemon = True
                self._timer.start()

    def flush(self) -> None:
        """Send the pending frames now (the timer calls this)."""
        with self._lock:
            frames, self._pending = self._pending, []
            dropped, self.dropped = self.dropped, 0
            self._timer = None
        if not self._attached:
            return
        if dropped:
            self._note(f"{dropped} frame records not shown: they arrived faster than shown", True)
        if frames:
            self.widget.send({"type": "frames", "frames": frames})
        self._send_state()

    def _send_state(self, view: str | None = None) -> None:
        state = getattr(self.conn, "state", None)
        name = getattr(state, "name", None) or (str(state) if state is not None else "open")
        code = getattr(self.conn, "close_code", None)
        detail = f"{redact_url(str(getattr(self.conn, 'url', '')))} {name}".strip()
        if code is not None:
            reason = getattr(self.conn, "close_reason", "")
            detail += f"; the server closed with {code}" + (f" {reason!r}" if reason else "")
        detail = redact_text(detail)
        message: dict[str, Any] = {
            "type": "state",
            "state": name.lower(),
            "detail": detail,
            "problem": code not in (None, 1000),
        }
        if view is not None:
            message["view"] = view
        self.widget.send(message)

    def _note(self, text: str, problem: bool = False, view: str | None = None) -> None:
        message: dict[str, Any] = {"type": "note", "text": redact_text(text), "problem": problem}
        if view is not None:
            message["view"] = view
        self.widget.send(message)

    # --- view -> connection ---------------------------------------------------------------

    def _on_view_message(self, _widget: Any, content: dict[str, Any], buffers: list[Any]) -> None:
        action = content.get("action")
        if action is None:
            return  # not a control (e.g. the view's transport handshake)
        try:
            self.handle(str(action), content, buffers)
        except Exception as exc:  # shown in the view: the user's experiment, not our crash
            self._note(f"{action} failed: {type(exc).__name__}: {exc}", True)

    def handle(self, action: str, content: Mapping[str, Any], buffers: list[Any]) -> None:
        """Run one button's action on the connection."""
        conn: Any = self.conn
        if action == "replay":
            view = str(content.get("view", ""))
            with self._lock:
                frames = list(self._history)
            self.widget.send({"type": "frames", "frames": frames, "view": view})
            self._send_state(view)
        elif action == "text":
            self._call("text", str(content.get("data", "")))
        elif action == "binary":
            data = bytes(buffers[0]) if buffers else str(content.get("data", "")).encode()
            self._call("binary", data)
        elif action == "fragments":
            n = max(1, int(content.get("n", 2)))
            self._call("fragments", str(content.get("data", "")), n)
        elif action == "ping":
            self._call("ping", str(content.get("data", "")))
        elif action == "close":
            code = int(content.get("code", 1000))
            reason = str(content.get("reason", ""))
            close = getattr(conn, "close", None)
            if close is None:
                self._note("this connection has no close()", True)
                return
            try:
                close(code, reason, wait=False)
            except TypeError:
                close(code, reason)
        elif action == "reconnect":
            self._reconnect()
        else:
            self._note(f"unknown action {action!r}", True)

    def _call(self, method: str, *args: Any) -> None:
        function = getattr(self.conn, method, None)
        if not callable(function):
            self._note(f"this connection cannot {method}()", True)
            return
        function(*args)

    def _reconnect(self) -> None:
        make = self.reconnect or getattr(self.conn, "reconnect", None)
        if not callable(make):
            self._note("reconnect: open a new connection in the kernel and inspect it", True)
            return
        new = make()
        if new is None:
            return
        self.detach()
        self.conn = new
        self.widget.url = str(getattr(new, "url", self.widget.url))
        self.attach(announce=True)
        self._note("reconnected")
        self.flush()


def inspect_connection(
    conn: FrameSourceLike,
    *,
    max_frames: int = MAX_FRAMES,
    reconnect: Callable[[], FrameSourceLike] | None = None,
) -> FrameInspector:
    """A FrameInspector showing a kernel-side connection's frames, live.

    Args:
        conn: any object with ``records`` (frame records so far) and ``on_frame(callback)``
            (called with each new record); ``text``/``binary``/``fragments``/``ping``/``close``
            are called by the buttons when it has them.
        max_frames: frames replayed to a new view and held between two sends.
        reconnect: makes a new connection for the Reconnect button.
    """
    widget = FrameInspector(source="kernel", url=str(getattr(conn, "url", "")))
    feed = KernelFeed(widget, conn, max_frames=max_frames, reconnect=reconnect)
    feed.attach()
    widget._feed = feed
    return widget
