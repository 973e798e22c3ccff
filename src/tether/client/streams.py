"""A run's stream as the caller iterates it: :class:`EventStream` and :class:`AsyncEventStream`.

Both wrap the client's generator that reads, resumes and deduplicates (see
:mod:`tether.client.follow`), and say where the stream is (``run_id``, ``last_id``) so a caller
that stops early can pick it up later with ``events(run_id, after=last_id)``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator
from types import TracebackType

from tether.client.follow import Follower
from tether.client.models import SessionView, StreamEvent

__all__ = ["AsyncEventStream", "EventStream"]


class _Position:
    _follower: Follower
    #: The session, when the server answered a trigger with it instead of a stream: the
    #: trigger started no turn (it only set variables); the stream then has no events.
    session: SessionView | None = None

    @property
    def run_id(self) -> str | None:
        """The run this stream follows (``None`` until the server named it)."""
        return self._follower.run_id

    @property
    def last_id(self) -> int:
        """The id of the last journal-backed event yielded (where a resume starts)."""
        return self._follower.last_id

    @property
    def finished(self) -> bool:
        """Whether the terminal event (``turn.finished`` or ``run.waiting``) was yielded."""
        return self._follower.done


class EventStream(_Position):
    """The events of one run, each once, until the terminal event; closes its connection when
    exhausted, on :meth:`close` or at the end of a ``with`` block."""

    def __init__(self, events: Generator[StreamEvent, None, None], follower: Follower,
                 session: SessionView | None = None) -> None:
        self._events, self._follower, self.session = events, follower, session

    def __iter__(self) -> EventStream:
        return self

    def __next__(self) -> StreamEvent:
        return next(self._events)

    def close(self) -> None:
        """Stop reading and close the connection."""
        self._events.close()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()


class AsyncEventStream(_Position):
    """:class:`EventStream` for ``async for``. A caller that stops before the end closes the
    connection with ``async with`` or :meth:`aclose` (an async generator is not closed by
    garbage collection in time)."""

    def __init__(self, events: AsyncGenerator[StreamEvent, None], follower: Follower,
                 session: SessionView | None = None) -> None:
        self._events, self._follower, self.session = events, follower, session

    def __aiter__(self) -> AsyncEventStream:
        return self

    async def __anext__(self) -> StreamEvent:
        return await self._events.__anext__()

    async def aclose(self) -> None:
        """Stop reading and close the connection."""
        await self._events.aclose()

    async def __aenter__(self) -> AsyncEventStream:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        trace: TracebackType | None) -> None:
        await self.aclose()
