"""Live widgets for notebooks: each view subscribes in the browser, straight to the server.

``LiveTable``, ``LiveChart`` and ``StreamMonitor`` follow a named stream;
``FrameInspector`` shows every frame of one WebSocket connection (the browser's echo
connection, or a kernel-side raw connection via :func:`inspect_connection`). The views are
in the ``nbws`` JupyterLab extension, which ``pip install nbws`` ships prebuilt.
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
