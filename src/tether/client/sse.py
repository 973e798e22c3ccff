"""Server-sent events read off the wire: text chunks in, complete frames out.

The decoder follows the WHATWG event-stream rules: lines end in ``\\r\\n``, ``\\n`` or ``\\r``
(a ``\\r`` at the end of one chunk and a ``\\n`` at the start of the next are one line end);
``field: value`` loses one space after the colon; lines starting with ``:`` are comments (the
server's ``: keepalive``); ``data`` lines join with ``\\n``; a blank line ends a frame, and a
frame with no ``data`` is not dispatched. A frame's ``id`` is the ``id`` line *of that frame*
(``None`` when it has none): the server marks exactly the journal-backed events with one.

>>> decoder = FrameDecoder()
>>> decoder.feed("id: 3\\nevent: model.text\\ndata: {\\"text\\"")
[]
>>> decoder.feed(": \\"hi\\"}\\n\\n: keepalive\\n\\n")
[Frame(id='3', event='model.text', data='{"text": "hi"}')]
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field

__all__ = ["Frame", "FrameDecoder", "aparse_frames", "parse_frames"]

_LINE_END = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class Frame:
    """One dispatched event: its ``id`` line (if any), ``event`` type and joined ``data``."""

    id: str | None
    event: str
    data: str


@dataclass(slots=True)
class FrameDecoder:
    """An incremental decoder: :meth:`feed` it text as it arrives, get the frames it completes."""

    _pending: str = ""
    _after_cr: bool = False
    _id: str | None = None
    _event: str = ""
    _data: list[str] = field(default_factory=list)

    def feed(self, text: str) -> list[Frame]:
        """The frames completed by ``text`` (the tail of an unfinished line is kept)."""
        if self._after_cr and text.startswith("\n"):
            text = text[1:]  # the second half of a "\r\n" split across two chunks
        self._after_cr = text.endswith("\r")
        # Only CR, LF and CRLF end lines: str.splitlines would also split at U+2028 and other
        # characters that may sit inside a JSON string of the data.
        *lines, self._pending = _LINE_END.split(self._pending + text)
        frames: list[Frame] = []
        for line in lines:
            frame = self._line(line)
            if frame is not None:
                frames.append(frame)
        return frames

    def _line(self, line: str) -> Frame | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        # "retry" and unknown fields are ignored: the client keeps its own reconnect policy.
        return None

    def _dispatch(self) -> Frame | None:
        frame = None
        if self._data:
            frame = Frame(id=self._id, event=self._event or "message", data="\n".join(self._data))
        self._id, self._event, self._data = None, "", []
        return frame


def parse_frames(chunks: Iterable[str]) -> Iterator[Frame]:
    """The frames of a stream given as text chunks, as each completes."""
    decoder = FrameDecoder()
    for chunk in chunks:
        yield from decoder.feed(chunk)


async def aparse_frames(chunks: AsyncIterable[str]) -> AsyncIterator[Frame]:
    """:func:`parse_frames` over an asynchronous stream of chunks."""
    decoder = FrameDecoder()
    async for chunk in chunks:
        for frame in decoder.feed(chunk):
            yield frame
