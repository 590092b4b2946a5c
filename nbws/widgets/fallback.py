"""Kernel-rendered fallback: a live view built from standard ipywidgets, for pages that
cannot load the nbws views at all.

A Jupyter server whose environment has ``jupyterlab`` and ``ipywidgets`` but neither nbws
nor anywidget cannot create the widget's model: its output would say "Error displaying
widget". So the widget base displays each stream widget with a ``display_id`` and a
:class:`HelloWatch`: when no view has said ``hello`` within :data:`FALLBACK_AFTER`
seconds of the kernel being free to hear it, that display is updated to a
:class:`KernelRendered` view instead (an HTML table of the newest rows, an SVG line
chart, or the monitor's figures), refreshed a few times a second from a kernel-side
subscription, under a notice naming exactly what to install into the server's
environment for the live view.

The renderers (:func:`table_html`, :func:`chart_svg`, :func:`monitor_html`) are pure
functions of the rows they are given; only :class:`KernelRendered` reads a stream.
"""

from __future__ import annotations

import asyncio
import html
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "FALLBACK_AFTER",
    "NOTICE",
    "HelloWatch",
    "KernelRendered",
    "chart_svg",
    "display_with_fallback",
    "fallback_after",
    "monitor_html",
    "notice_html",
    "page_serves_anywidget",
    "table_html",
]

log = logging.getLogger("nbws.widgets")

FALLBACK_AFTER = 5.0
"""Seconds without a view's ``hello`` before the kernel-rendered view replaces the output
(``NBWS_FALLBACK_AFTER`` overrides it; ``0`` turns the fallback off)."""

REFRESH_INTERVAL = 0.25
"""Seconds between refreshes of a kernel-rendered view (only when something changed)."""

SHOWN_ROWS = 50
"""Rows a kernel-rendered table shows at most (an HTML table is redrawn whole)."""

CHART_POINTS = 500
"""Points a kernel-rendered chart keeps at most."""

NOTICE = (
    "Kernel-rendered view: this page cannot load the nbws live views (the Jupyter "
    "server's environment has neither nbws nor anywidget). For the live view, install "
    "into the Jupyter server's environment: <code>pip install anywidget</code> (live "
    "through the kernel) or <code>pip install nbws</code> (the direct path), then reload "
    "the page."
)


def fallback_after() -> float:
    """The fallback delay in force (``NBWS_FALLBACK_AFTER``, else :data:`FALLBACK_AFTER`)."""
    raw = os.environ.get("NBWS_FALLBACK_AFTER")
    if raw is None:
        return FALLBACK_AFTER
    try:
        value = float(raw)
    except ValueError:
        log.warning("NBWS_FALLBACK_AFTER=%r is not seconds; using %s", raw, FALLBACK_AFTER)
        return FALLBACK_AFTER
    return value if math.isfinite(value) and value > 0 else 0.0


# --- pure renderers ------------------------------------------------------------------------


def notice_html() -> str:
    return f'<div class="nbws-fallback-notice" style="{_NOTICE_STYLE}">{NOTICE}</div>'


_NOTICE_STYLE = (
    "border-left:4px solid #d08700;background:#fff8e1;color:#4a3b00;"
    "padding:4px 8px;margin:0 0 4px;font-size:12px"
)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        text = f"{value:.6g}"
    elif isinstance(value, (dict, list)):
        text = str(value)
    elif value is None:
        text = ""
    else:
        text = str(value)
    return html.escape(text if len(text) <= 200 else text[:199] + "…")


def _field(row: Any, name: str) -> Any:
    """A column's value: a header field (offset, time, key, ...) or a payload field."""
    if name in ("offset", "time", "key", "producer", "seq", "epoch") and hasattr(row, name):
        return getattr(row, name)
    payload = getattr(row, "payload", None)
    return payload.get(name) if isinstance(payload, dict) else None


def table_columns(rows: Sequence[Any], columns: Sequence[str] | None) -> list[str]:
    """The columns shown: the widget's, else ``offset`` and every payload field seen."""
    if columns:
        return list(columns)
    names = ["offset"]
    for row in rows:
        payload = getattr(row, "payload", None)
        if isinstance(payload, dict):
            names += [str(k) for k in payload if str(k) not in names]
        elif "value" not in names:
            names.append("value")
    return names


def table_html(rows: Sequence[Any], columns: Sequence[str] | None = None) -> str:
    """An HTML table of ``rows`` (client ``Message`` objects), newest at the bottom."""
    names = table_columns(rows, columns)
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    body = []
    for row in rows:
        payload = getattr(row, "payload", None)
        cells = []
        for n in names:
            value = payload if n == "value" and not isinstance(payload, dict) else _field(row, n)
            cells.append(f"<td>{_cell(value)}</td>")
        body.append(f'<tr data-offset="{int(row.offset)}">{"".join(cells)}</tr>')
    return (
        '<div style="max-height:360px;overflow:auto">'
        '<table class="nbws-fallback-table" style="border-collapse:collapse;font-size:12px;'
        'line-height:1.3">'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def chart_svg(
    rows: Sequence[Any],
    x: str,
    ys: Sequence[str],
    *,
    width: int = 640,
    height: int = 240,
    title: str = "",
) -> str:
    """An SVG line chart of the ``ys`` fields of ``rows`` against ``x``."""
    pad = 30
    series: dict[str, list[tuple[float, float]]] = {y: [] for y in ys}
    for row in rows:
        xv = _number(_field(row, x))
        if xv is None:
            continue
        for y in ys:
            yv = _number(_field(row, y))
            if yv is not None:
                series[y].append((xv, yv))
    points = [p for line in series.values() for p in line]
    parts = [
        f'<svg class="nbws-fallback-chart" xmlns="http://www.w3.org/2000/svg" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">',
        f'<rect width="{width}" height="{height}" fill="white" stroke="#ccc"/>',
    ]
    if title:
        parts.append(f'<text x="{pad}" y="14" font-size="12">{html.escape(title)}</text>')
    if points:
        x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
        y0, y1 = min(p[1] for p in points), max(p[1] for p in points)
        xs = (width - 2 * pad) / ((x1 - x0) or 1.0)
        yscale = (height - 2 * pad) / ((y1 - y0) or 1.0)
        for i, (name, line) in enumerate(series.items()):
            coords = " ".join(
                f"{pad + (px - x0) * xs:.1f},{height - pad - (py - y0) * yscale:.1f}"
                for px, py in line
            )
            colour = _COLOURS[i % len(_COLOURS)]
            parts.append(
                f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" '
                f'data-field="{html.escape(name)}" points="{coords}"/>'
            )
            parts.append(
                f'<text x="{width - pad - 80}" y="{14 + 12 * i}" font-size="11" '
                f'fill="{colour}">{html.escape(name)}</text>'
            )
        parts.append(
            f'<text x="{pad}" y="{height - 8}" font-size="10">{_cell(x0)} … {_cell(x1)}'
            f" ({html.escape(x)})</text>"
            f'<text x="2" y="{pad}" font-size="10">{_cell(y1)}</text>'
            f'<text x="2" y="{height - pad}" font-size="10">{_cell(y0)}</text>'
        )
    else:
        parts.append(f'<text x="{pad}" y="{height // 2}" font-size="12">waiting for data…</text>')
    parts.append("</svg>")
    return "".join(parts)


def monitor_html(figures: dict[str, Any]) -> str:
    """The monitor's figures as a two-column table (name, value)."""
    rows = "".join(
        f"<tr><th style='text-align:left;padding-right:12px'>{html.escape(k)}</th>"
        f"<td>{_cell(v)}</td></tr>"
        for k, v in figures.items()
    )
    return f'<table class="nbws-fallback-monitor" style="font-size:12px">{rows}</table>'


# --- the kernel-rendered view --------------------------------------------------------------


class KernelRendered:
    """A standard-ipywidgets view of one stream widget, fed by a kernel-side subscription.

    Args:
        widget: the ``LiveTable``, ``LiveChart`` or ``StreamMonitor`` it stands in for.
        subscribe: opens the subscription (default: ``nbws.stream(name).subscribe``);
            called with ``since`` (``-k`` for the last k messages).
        refresh: seconds between refreshes.
    """

    def __init__(
        self,
        widget: Any,
        subscribe: Callable[[int], Any] | None = None,
        refresh: float = REFRESH_INTERVAL,
    ) -> None:
        import ipywidgets

        self.source = widget
        self.kind = type(widget).__name__
        self.refresh = refresh
        self.rows: deque[Any] = deque(maxlen=self._keep())
        self.received = 0
        self.skipped = 0
        self.gaps = 0
        self._recent: deque[float] = deque(maxlen=100_000)
        self._changed = True
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._subscribe = subscribe or self._default_subscribe
        self._sub: Any = None
        self.notice = ipywidgets.HTML(notice_html())
        self.body = ipywidgets.HTML(self.render())
        self.view = ipywidgets.VBox([self.notice, self.body])
        self._threads = [
            threading.Thread(target=self._read, name="nbws-fallback-read", daemon=True),
            threading.Thread(target=self._refresh, name="nbws-fallback-refresh", daemon=True),
        ]

    def _keep(self) -> int:
        if self.kind == "LiveTable":
            return max(1, min(int(getattr(self.source, "max_rows", SHOWN_ROWS)), SHOWN_ROWS))
        if self.kind == "LiveChart":
            return max(2, min(int(getattr(self.source, "window", CHART_POINTS)), CHART_POINTS))
        return 1

    def _default_subscribe(self, since: int) -> Any:
        import nbws

        handle = nbws.stream(self.source.stream)
        return handle.subscribe(since=since, policy="drop-oldest", on_gap=self._on_gap)

    def _on_gap(self, gap: Any) -> None:
        with self._lock:
            self.gaps += 1
            self.skipped += gap.count or 0
            self._changed = True

    def start(self) -> KernelRendered:
        for thread in self._threads:
            thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        sub = self._sub
        if sub is not None:
            try:
                sub.close(timeout=2)
            except Exception:
                log.debug("fallback: closing the subscription failed", exc_info=True)
        try:
            self.view.close()
        except Exception:
            log.debug("fallback: closing the view failed", exc_info=True)

    def _read(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                self._sub = self._subscribe(-self._keep())
                backoff = 0.5
                while not self._stop.is_set():
                    try:
                        message = self._sub.get(timeout=0.5)
                    except TimeoutError:
                        continue
                    with self._lock:
                        self.rows.append(message)
                        self.received += 1
                        self._recent.append(time.monotonic())
                        self._changed = True
                return
            except StopIteration:
                pass
            except Exception as exc:  # e.g. no such stream yet: try again shortly
                log.debug("fallback: subscription failed: %s", exc)
            if self._stop.wait(backoff):
                return
            backoff = min(backoff * 2, 5.0)

    def _refresh(self) -> None:
        while not self._stop.wait(self.refresh):
            with self._lock:
                changed, self._changed = self._changed, False
            if changed or self.kind == "StreamMonitor":
                try:
                    self.body.value = self.render()
                except Exception:  # the comm is gone: the view closed
                    log.debug("fallback: refresh failed", exc_info=True)
                    return

    def figures(self) -> dict[str, Any]:
        with self._lock:
            now = time.monotonic()
            while self._recent and self._recent[0] < now - 1.0:
                self._recent.popleft()
            newest = self.rows[-1].offset if self.rows else None
            return {
                "stream": self.source.stream,
                "messages received": self.received,
                "rate (msg/s, last second)": len(self._recent),
                "newest offset": newest,
                "gap notices": self.gaps,
                "messages skipped": self.skipped,
            }

    def render(self) -> str:
        """The body's HTML now."""
        if self.kind == "StreamMonitor":
            return monitor_html(self.figures())
        with self._lock:
            rows = list(self.rows)
        if self.kind == "LiveChart":
            return chart_svg(
                rows,
                self.source.x,
                self.source.y,
                height=max(120, int(self.source.height)),
                title=self.source.title,
            )
        columns = getattr(self.source, "columns", None)
        return table_html(rows, columns)


# --- the display hook ----------------------------------------------------------------------


class HelloWatch:
    """Replaces a displayed widget by its kernel-rendered view if no view says ``hello``.

    The deadline counts only while the kernel can hear the view: a view's ``hello`` is a
    shell message, which waits while a cell runs, so a check that comes due during a cell
    is repeated once the kernel's loop is free again (``grace`` seconds later).
    """

    def __init__(
        self,
        widget: Any,
        handle: Any,
        after: float,
        *,
        grace: float = 1.0,
        make: Callable[[Any], KernelRendered] | None = None,
        start: bool = True,
    ) -> None:
        self.widget = widget
        self.handle = handle
        self.after = after
        self.grace = grace
        self.hello = threading.Event()
        self.fallback: KernelRendered | None = None
        self._make = make or (lambda w: KernelRendered(w).start())
        self._loop = _running_loop()
        widget.on_msg(self._on_msg)
        if start:
            threading.Thread(target=self._watch, name="nbws-hello-watch", daemon=True).start()

    def _on_msg(self, _widget: Any, content: Any, _buffers: Any = None) -> None:
        if isinstance(content, dict) and content.get("nbws") == "hello":
            self.hello.set()

    def _loop_free(self) -> bool:
        """Whether the kernel's loop ran a callback within ``grace`` (no cell running)."""
        if self._loop is None or self._loop.is_closed():
            return True
        ran = threading.Event()
        try:
            self._loop.call_soon_threadsafe(ran.set)
        except RuntimeError:
            return True
        return ran.wait(self.grace)

    def _watch(self) -> None:
        if self.hello.wait(self.after):
            return
        # The hello may be queued behind a running cell: wait until the loop has been
        # free for a grace period, then look once more.
        while not self._loop_free():
            if self.hello.is_set():
                return
        if self.hello.wait(self.grace):
            return
        self.show_fallback()

    def show_fallback(self, *, first: bool = False) -> None:
        """Show the kernel-rendered view (``first``: as the display itself, not an update)."""
        if self.fallback is not None or getattr(self.widget, "comm", True) is None:
            return
        self.fallback = self._make(self.widget)
        if first:
            self.handle.display(self.fallback.view)
        else:
            self.handle.update(self.fallback.view)
        observe = getattr(self.widget, "observe", None)
        if observe is not None:  # closing the widget closes its stand-in too
            fallback = self.fallback

            def _closed(change: dict[str, Any]) -> None:
                if change.get("new") is None:
                    fallback.close()

            observe(_closed, names="comm")


_WIDGET_MANAGER = "@jupyter-widgets/jupyterlab-manager"
_page_checks: dict[str, bool | None] = {}


def _served(opener: Any, url: str, token: str | None) -> int | None:
    """The HTTP status of ``url`` (None: no answer)."""
    from urllib.error import HTTPError, URLError
    from urllib.request import Request

    headers = {"Authorization": f"token {token}"} if token else {}
    try:
        with opener.open(Request(url, headers=headers), timeout=5) as response:
            return int(response.status)
    except HTTPError as exc:
        return int(exc.code)
    except (URLError, OSError):
        return None


def page_serves_anywidget(env: dict[str, str] | None = None) -> bool | None:
    """Whether the Jupyter server this kernel runs under serves anywidget's front end.

    False when it serves ipywidgets' front end but not anywidget's (its environment lacks
    anywidget): no view of ours can load, so the kernel-rendered view is shown at once
    instead of after an error and a wait. True when it serves both: the views load, so no
    watch is needed (a slow page is never mistaken for one that cannot render). None when
    it cannot tell (no Jupyter server, no answer, a refusal): the hello watch decides.
    Asked once per server for the life of the process.
    """
    import urllib.request

    from ..client.discovery import _from_runtime_file, _runtime_dir

    env = dict(os.environ) if env is None else env
    parent = env.get("JPY_PARENT_PID", "").strip()
    if not parent:
        return None
    path = _runtime_dir() / f"jpserver-{parent}.json"
    try:
        found = _from_runtime_file(path).endpoint
    except Exception:
        return None
    if found.url in _page_checks:
        return _page_checks[found.url]
    token = found.token or env.get("JUPYTERHUB_API_TOKEN") or None
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    served: bool | None = None
    manager = _served(
        opener, found.http_url(f"lab/extensions/{_WIDGET_MANAGER}/package.json"), token
    )
    if manager == 200:
        status = _served(opener, found.http_url("lab/extensions/anywidget/package.json"), token)
        served = {200: True, 404: False}.get(status or 0)
    _page_checks[found.url] = served
    return served


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def display_with_fallback(widget: Any, after: float | None = None) -> HelloWatch | None:
    """Display ``widget`` with a display id (the widget base's ``_ipython_display_``): as
    the kernel-rendered view if the page cannot load it, watched by a :class:`HelloWatch`
    if the kernel cannot tell; with the fallback off, a plain display."""
    from IPython.display import DisplayHandle

    delay = fallback_after() if after is None else after
    watched = delay > 0 and bool(getattr(widget, "stream", None))
    handle = DisplayHandle()  # type: ignore[no-untyped-call]
    served = page_serves_anywidget() if watched else None
    if watched and served is False:
        watch = HelloWatch(widget, handle, delay, start=False)
        watch.show_fallback(first=True)
        return watch
    bundle = widget._repr_mimebundle_()
    data, metadata = bundle if isinstance(bundle, tuple) else (bundle, {})
    handle.display(data, metadata=metadata, raw=True)  # type: ignore[no-untyped-call]
    return HelloWatch(widget, handle, delay) if watched and served is None else None
