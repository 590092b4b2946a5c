"""What every nbws widget shares: the front-end module it lives in and a validated stream name.

The models carry configuration only. Each view in the browser subscribes to the stream
itself (``nbws/ws`` on the Jupyter server, with the page's credentials), so data never
travels through the kernel or iopub.
"""

from __future__ import annotations

from typing import Any

from ipywidgets import DOMWidget
from traitlets import TraitError, Unicode, validate

from .._version import __version__
from ..protocol.messages import STREAM_RULE, valid_stream_name

__all__ = ["MODULE_NAME", "MODULE_VERSION", "NbwsWidget", "StreamWidget"]

MODULE_NAME = "nbws"
"""The npm package (labextension) that registers the views."""

MODULE_VERSION = f"^{__version__}"
"""Semver range the front end must satisfy; the labextension registers its package.json version."""


class NbwsWidget(DOMWidget):  # type: ignore[misc]
    """Base of the nbws widgets: model and view live in the ``nbws`` labextension."""

    _model_module = Unicode(MODULE_NAME).tag(sync=True)
    _model_module_version = Unicode(MODULE_VERSION).tag(sync=True)
    _view_module = Unicode(MODULE_NAME).tag(sync=True)
    _view_module_version = Unicode(MODULE_VERSION).tag(sync=True)


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
