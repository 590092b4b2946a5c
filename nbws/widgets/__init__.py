"""Live widgets for notebooks: each view subscribes in the browser, straight to the server
whenever the page can reach it.

``LiveTable``, ``LiveChart`` and ``StreamMonitor`` follow a named stream;
``FrameInspector`` shows every frame of one WebSocket connection (the browser's echo
connection, or a kernel-side raw connection via :func:`inspect_connection`). They are
anywidgets: the views are one ES module shipped in this package (``static/views.js``) and
loaded through the widget's comm, so no front-end extension is needed; each view tells the
kernel which transport it uses (``widget.transport``, see :mod:`.handshake`).
"""

from __future__ import annotations

from ._base import MODULE_NAME, MODULE_VERSION, NbwsWidget, StreamWidget
from .chart import LiveChart
from .inspector import FrameInspector, KernelFeed, inspect_connection
from .monitor import StreamMonitor
from .table import LiveTable

__all__ = [
    "MODULE_NAME",
    "MODULE_VERSION",
    "FrameInspector",
    "KernelFeed",
    "LiveChart",
    "LiveTable",
    "NbwsWidget",
    "StreamMonitor",
    "StreamWidget",
    "inspect_connection",
]
