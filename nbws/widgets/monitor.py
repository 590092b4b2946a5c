"""``StreamMonitor``: live rate, offsets, lag, gaps, subscribers and policies of a stream."""

from __future__ import annotations

from traitlets import Unicode

from ._base import StreamWidget

__all__ = ["StreamMonitor"]


class StreamMonitor(StreamWidget):
    """Health of ``stream``: its own subscription's rate and gap notices, plus the server's
    view (``GET nbws/api/streams/{name}``: offsets, subscribers, policies, lag, drops)."""

    _view = Unicode("monitor").tag(sync=True)
