"""Server-sent events on the wire: write one frame, read frames back from chunks.

A frame is ``id:``, ``event:`` and ``data:`` lines ended by a blank line; a data value that
holds line breaks is sent as one ``data:`` line per line and joined again with ``\\n`` when
read. A line starting with ``:`` is a comment (``: keepalive``). Reading follows the HTML
standard's event-stream rules: lines end with CRLF, LF or CR (a CR at the end of one chunk and
the LF at the start of the next are one line break), one space after the colon is dropped,
a leading byte-order mark is ignored, and a frame without data is not dispatched.

This module needs no web framework: the server writes with :func:`format_frame` and the
client (and the tests) read with :func:`parse_frames` / :func:`aparse_frames`.

>>> text = format_frame("model.text", '{"text": "hi"}', id=3) + comment("keepalive")
>>> [(f.id, f.event, f.data) for f in parse_frames([text])]
[('3', 'model.text', '{"text": "hi"}')]
"""

from __future__ import annotations

import codecs
import re
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from dataclasses import dataclass

__all__ = ["SseFrame", "SseParser", "aparse_frames", "comment", "format_frame", "parse_frames"]

_BREAK = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class SseFrame:
    """One dispatched frame (or, when comments are asked for, one comment line).

    ``id`` is the frame's own ``id:`` field (``None`` when it had none); ``last_id`` is the
    stream's last event id once the frame is read (what a reconnect sends as
    ``Last-Event-ID``); ``comment`` holds a comment's text, with ``event`` ``""``.
    """

    event: str
    data: str
    id: str | None = None
    last_id: str = ""
    retry: int | None = None
    comment: str | None = None


def format_frame(event: str, data: str, *, id: int | str | None = None,
                 retry: int | None = None) -> str:
    """The wire text of one frame; ``data`` may hold any line breaks (one ``data:`` line
    each). Refuses an event name or id with a line break or NUL, which would forge fields."""
    for name, value in (("event", event), ("id", "" if id is None else str(id))):
        if _BREAK.search(value) or "\x00" in value:
            raise ValueError(f"an SSE {name} cannot hold a line break or NUL: {value!r}")
    lines = []
    if id is not None:
        lines.append(f"id: {id}")
    if retry is not None:
        lines.append(f"retry: {int(retry)}")
    if event:
        lines.append(f"event: {event}")
    lines += [f"data: {line}" for line in _BREAK.split(data)]
    return "\n".join(lines) + "\n\n"


def comment(text: str = "") -> str:
    """A comment frame (``: text``), which readers ignore: keeps an idle connection open."""
    return "".join(f": {line}\n" for line in _BREAK.split(text)) + "\n"


class SseParser:
    """An incremental reader: :meth:`feed` chunks (str or bytes, split anywhere), get frames.

    Bytes are decoded as UTF-8 incrementally (a character split across chunks is kept
    whole; invalid bytes become U+FFFD as the standard says)."""

    def __init__(self, *, comments: bool = False) -> None:
        self._comments = comments
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pieces: list[str] = []
        self._started = False
        self._pending_cr = False
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None
        self._retry: int | None = None
        self.last_id = ""

    def feed(self, chunk: str | bytes) -> list[SseFrame]:
        """The frames completed by ``chunk``."""
        text = self._decoder.decode(chunk) if isinstance(chunk, bytes) else chunk
        if not self._started and text:
            self._started = True
            text = text.removeprefix("\ufeff")
        if self._pending_cr and text:
            text = text.removeprefix("\n")
            self._pending_cr = False
        # The unended line so far holds no break: only the new text is searched, it is kept
        # in pieces until a break comes, and the buffer is cut once per chunk, so a long line
        # or a large chunk costs linear time.
        if _BREAK.search(text) is None:
            if text:
                self._pieces.append(text)
            return []
        head = "".join(self._pieces)
        self._pieces = []
        start = len(head)
        buffer = head + text
        frames: list[SseFrame] = []
        begin = 0
        while True:
            match = _BREAK.search(buffer, max(begin, start))
            if match is None:
                break
            if match.group() == "\r" and match.end() == len(buffer):
                # Maybe the first half of a CRLF split across chunks: the line ends here
                # either way, and a following LF is dropped.
                self._pending_cr = True
            frame = self._line(buffer[begin:match.start()])
            begin = match.end()
            if frame is not None:
                frames.append(frame)
        if begin < len(buffer):
            self._pieces.append(buffer[begin:])
        return frames

    def close(self) -> list[SseFrame]:
        """End of stream: a frame not ended by a blank line is discarded (per the standard)."""
        self._decoder.decode(b"", final=True)
        self._pieces, self._data, self._event, self._id = [], [], "", None
        return []

    def _line(self, line: str) -> SseFrame | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            if self._comments:
                return SseFrame(event="", data="", last_id=self.last_id,
                                comment=line[1:].removeprefix(" "))
            return None
        field, colon, value = line.partition(":")
        if colon:
            value = value.removeprefix(" ")
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        elif field == "id":
            if "\x00" not in value:
                self._id = value
                self.last_id = value
        elif field == "retry" and value.isdigit() and value.isascii():
            self._retry = int(value)
        return None

    def _dispatch(self) -> SseFrame | None:
        data, event, id_, retry = self._data, self._event, self._id, self._retry
        self._data, self._event, self._id, self._retry = [], "", None, None
        if not data:
            return None
        return SseFrame(event=event or "message", data="\n".join(data), id=id_,
                        last_id=self.last_id, retry=retry)


def parse_frames(chunks: Iterable[str | bytes], *, comments: bool = False) -> Iterator[SseFrame]:
    """Frames read from ``chunks`` in order (comments too, with ``comments=True``)."""
    parser = SseParser(comments=comments)
    for chunk in chunks:
        yield from parser.feed(chunk)
    yield from parser.close()


async def aparse_frames(chunks: AsyncIterable[str | bytes], *,
                        comments: bool = False) -> AsyncIterator[SseFrame]:
    """:func:`parse_frames` over an asynchronous source (an HTTP response's byte stream)."""
    parser = SseParser(comments=comments)
    async for chunk in chunks:
        for frame in parser.feed(chunk):
            yield frame
    for frame in parser.close():
        yield frame
