"""What every nbws widget shares: its front-end module, the transport handshake, a stream name.

The widgets are ``anywidget.AnyWidget`` subclasses: their views are one ES module
(``static/views.js``, built from ``labextension/src/anywidget.ts``) that travels through
the widget's comm, so JupyterLab, Notebook 7, Voila, marimo, VS Code and Colab can show
them without the nbws labextension or a CDN. The models carry configuration only; each
view asks the kernel where the stream lives (:mod:`.handshake`) and subscribes itself, so
data goes straight from the server to the page whenever the page can reach it.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import anywidget
from traitlets import TraitError, Unicode, validate

from .._version import __version__
from ..protocol.messages import STREAM_RULE, valid_stream_name
from .handshake import TRANSPORTS, Hello, endpoint_message, failure_message, parse_hello

__all__ = [
    "ESM_PATH",
    "MODULE_NAME",
    "MODULE_VERSION",
    "NbwsWidget",
    "StreamWidget",
    "esm_source",
]

MODULE_NAME = "nbws"
"""The npm package the views are built from (``labextension/``)."""

MODULE_VERSION = f"^{__version__}"
"""The version range of that package the views belong to."""

ESM_PATH = Path(__file__).with_name("static") / "views.js"
"""The built views (``npm run build:esm`` in ``labextension/``; shipped in the wheel)."""

_MISSING_ESM = """\
export function render({ el }) {
  el.textContent = "nbws: the widget front end is not built (nbws/widgets/static/views.js " +
    "is missing); run `npm run build:esm` in labextension/ or reinstall nbws";
}
"""


def esm_source() -> Path | str:
    """The views module: the built file, or a stub whose view says it is missing."""
    return ESM_PATH if ESM_PATH.is_file() else _MISSING_ESM


class NbwsWidget(anywidget.AnyWidget):
    """Base of the nbws widgets: the shared views module, ``_view`` and ``transport``.

    ``transport`` is set by the view once it is connected (``direct``, ``kernel-hosted`` or
    ``relay``; ``""`` before any view has connected); read it to see how the data travels.
    """

    _esm = esm_source()
    _view = Unicode("", help="Which view of the views module renders this widget.").tag(sync=True)
    transport = Unicode(
        "", help="How the view reaches the stream (set by the view; '' before any view)."
    ).tag(sync=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._view_hello = threading.Event()
        self.on_msg(self._on_handshake)

    @validate("transport")
    def _check_transport(self, proposal: dict[str, Any]) -> str:
        value = str(proposal["value"])
        if value and value not in TRANSPORTS:
            raise TraitError(f"transport is one of {', '.join(TRANSPORTS)} (got {value!r})")
        return value

    def wait_for_view(self, timeout: float | None = None) -> bool:
        """Whether a view said hello (within ``timeout`` seconds, waiting if needed)."""
        return self._view_hello.wait(timeout)

    def _on_handshake(self, _widget: Any, content: Any, _buffers: list[Any]) -> None:
        hello = parse_hello(content) if isinstance(content, dict) else None
        if hello is None:
            return
        self._view_hello.set()
        self.send(self._answer(hello))

    def _answer(self, hello: Hello) -> dict[str, Any]:
        """Where this kernel publishes, found as ``nbws.stream()`` finds it."""
        from ..client.discovery import discover
        from ..client.errors import ServerNotFound
        from ..server.embedded import shared_server

        try:
            found = discover()
        except (ServerNotFound, ValueError) as exc:
            return failure_message(hello, str(exc))
        if found.kind == "embedded" and hello.origin is not None:
            server = shared_server()
            if server is not None:
                server.allow_origin(hello.origin)
        return endpoint_message(hello, found)


class StreamWidget(NbwsWidget):
    """A widget whose view follows one named stream."""

    stream = Unicode(help="The stream the view subscribes to.").tag(sync=True)

    def __init__(self, stream: str, **kwargs: Any) -> None:
        super().__init__(stream=stream, **kwargs)

    @validate("stream")
    def _check_stream(self, proposal: dict[str, Any]) -> str:
        value = proposal["value"]
        if not valid_stream_name(value):
            raise TraitError(f"stream names are {STREAM_RULE} (got {value!r})")
        return str(value)
