"""A ``websockets`` client connection with a fast lane for small, whole text messages.

A publisher's connection carries thousands of small JSON messages a second each way
(publishes out, acks in). Through the library each costs a frame object, a parser
generator step, a queue hand-off and an ``await`` on both sides, which is most of the
client's cost per message. :class:`TextConnection` keeps the library for everything it
is good at (handshake, pings, close handshake, fragmented and binary messages, errors)
and only adds two shortcuts:

- :meth:`TextConnection.send_texts` writes many whole text messages as pre-masked
  frames in one ``transport.write`` (see :func:`nbws.protocol.framing.client_text_frames`).
- With :attr:`TextConnection.on_text` set, each incoming unfragmented, unmasked text
  frame (``FIN`` + opcode 1, no RSV bits) is handed to it as bytes straight from the
  socket (if it raises, the connection is aborted and the exception kept in
  :attr:`TextConnection.lane_error`).

From the end of the opening handshake on, this class cuts the incoming bytes into frames
itself (:func:`nbws.protocol.framing.split_frames`; the byte feed is
:class:`nbws.protocol._compat.RawClientConnection`) and gives the library only whole
frames, so the library's parser is always at a frame boundary and the fast lane can be
switched on and off at any moment; a partial frame waits here for the rest of its bytes.
Frames that do not take the fast lane reach the library in order and unchanged, so it
still answers pings, reassembles fragments and reports protocol errors (a masked frame,
a new message inside a fragmented one).

Both lanes keep the wire order: nothing else sends data frames on a publisher's
connection while :meth:`send_texts` runs (fragmented binary sends are awaited by the
same task), and frames are handled in the order they arrive.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from websockets.protocol import State

from ..protocol._compat import RawClientConnection
from ..protocol.framing import CONT, TEXT, client_text_frames, split_frames

__all__ = ["TextConnection"]

_FIN_TEXT = 0x80 | TEXT
_FIN = 0x80
_DATA_OPCODES = (CONT, TEXT, 0x2)  # continuation, text, binary
_END_OF_HEADERS = b"\r\n\r\n"


class TextConnection(RawClientConnection):
    """A :class:`~websockets.asyncio.client.ClientConnection` with the fast lanes above."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_text: Callable[[bytes], None] | None = None
        self.lane_error: Exception | None = None  # what on_text raised: the connection ended
        self._response: bytes | None = b""  # the handshake response so far (None: over)
        self._partial: list[bytes] = []  # pieces of a frame whose end has not arrived
        self._partial_size = 0
        self._needed = 0  # bytes the partial frame needs before it is worth a look
        self._library_message = False  # the library is inside a fragmented message

    async def send_texts(self, texts: list[bytes]) -> None:
        """Send whole text messages, in order, with one write and the library's flow
        control. While the connection is not open, the library raises as ``send`` does."""
        if self.protocol.state is not State.OPEN:
            await self.send(texts[0], text=True)
            return
        await self.write_raw(client_text_frames(texts))

    def receive_raw(self, data: bytes) -> None:
        if self._response is not None:
            data = self._after_response(data)
        if self.protocol.state is not State.OPEN:
            self._to_library(data)
            return
        if self._partial:  # collect the pieces of a long frame, join them once
            self._partial.append(data)
            self._partial_size += len(data)
            if self._partial_size < self._needed:
                return
            data = b"".join(self._partial)
            self._partial.clear()
        position, needed = self._split(data)
        if position < len(data):
            if self.protocol.state is State.OPEN:
                self._partial.append(data[position:])
                self._partial_size, self._needed = len(data) - position, needed
            else:  # the library is closing the connection: it takes the rest
                self._to_library(data[position:])

    def _after_response(self, data: bytes) -> bytes:
        """Give the library the handshake response and return the bytes after it."""
        assert self._response is not None
        seen = len(self._response)
        self._response += data
        end = self._response.find(_END_OF_HEADERS)
        if end < 0:
            self.to_library(data)
            return b""
        cut = end + len(_END_OF_HEADERS) - seen  # where the response ends in ``data``
        self._response = None
        self.to_library(data[:cut])
        return data[cut:]

    def _split(self, buffer: bytes) -> tuple[int, int]:
        """Handle the whole frames at the start of ``buffer``: fast-lane texts to
        ``on_text``, runs of the others to the library. Returns where the first
        incomplete frame starts (or the end; or where the library started closing) and
        how many bytes from there are needed before it is worth looking again."""
        frames, stop, needed = split_frames(buffer)
        run = -1  # where a run of frames for the library starts
        position = 0
        for first, start, end in frames:
            on_text = self.on_text
            # (a masked frame, not allowed from a server, has MASKED added to ``first``
            # and is left to the library to refuse)
            if first == _FIN_TEXT and on_text is not None and not self._library_message:
                if run >= 0:
                    self._to_library(buffer[run:position])
                    run = -1
                    if self.protocol.state is not State.OPEN:
                        return position, 0
                try:
                    on_text(buffer[start:end])
                except Exception as exc:  # e.g. not JSON: end the connection, keep why
                    self.lane_error, self.on_text = exc, None
                    self.transport.abort()
                    return len(buffer), 0
            else:
                if (first & 0x0F) in _DATA_OPCODES:  # is a fragmented message under way?
                    self._library_message = not first & _FIN
                if run < 0:
                    run = position
            position = end
        if run >= 0:
            self._to_library(buffer[run:position])
        return stop, needed

    def _to_library(self, data: bytes) -> None:
        if self._partial:  # the library takes over mid-frame (it is closing)
            data = b"".join([*self._partial, data])
            self._partial.clear()
        if data:
            self.to_library(data)
