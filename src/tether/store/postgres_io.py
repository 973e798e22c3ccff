"""PostgreSQL I/O off the event loop: a few threads, each with a connection of its own.

:class:`~tether.store.postgres.PostgresStore` answers :class:`~tether.store.base.AsyncStore`
through an :class:`IOThreads`: the awaited call runs the store's own blocking code on one of
these threads, against that thread's own store handle (its own connection), and the event loop
goes on meanwhile. Parallel awaited appends (many runs of a worker, parallel tool calls of one
run) so travel side by side, up to one per thread, instead of queueing on the loop.

Why threads and not psycopg's async connections: the SQL, the fencing and the refusals stay
the blocking path's own (one code path, one meaning), and a thread's connection belongs to no
event loop, so one store serves ``asyncio.run`` after ``asyncio.run`` (a new loop each time)
without "event loop is closed" or leaked connections. A hop to a thread costs tens of
microseconds; a round trip to the server costs hundreds (``benchmarks/loop_blocking.py``
measures both paths).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, Protocol, TypeVar

from tether.errors import UsageError

__all__ = ["IOThreads"]

T = TypeVar("T")


class _Closable(Protocol):
    def close(self) -> None: ...


H = TypeVar("H", bound=_Closable)


class IOThreads(Generic[H]):
    """Runs blocking calls on up to ``threads`` threads, each with a handle from ``open_handle``
    (opened on the thread's first call, closed by :meth:`close`).

    >>> import asyncio
    >>> class Handle:
    ...     def close(self) -> None: ...
    >>> io = IOThreads(Handle, threads=2, where="example")
    >>> asyncio.run(io.run(lambda handle: type(handle).__name__))
    'Handle'
    >>> io.close()
    """

    def __init__(self, open_handle: Callable[[], H], *, threads: int, where: str) -> None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise UsageError(f"{where}: io_threads must be 1 or more, got {threads!r}")
        self._open = open_handle
        self._where = where
        self._executor = ThreadPoolExecutor(max_workers=threads,
                                            thread_name_prefix="tether-pg-io")
        self._local = threading.local()
        self._lock = threading.Lock()
        self._handles: list[H] = []
        self._closed = False

    async def run(self, call: Callable[[H], T]) -> T:
        """``call(handle)`` on an I/O thread; the awaiting task resumes with its result (or
        its exception). Cancelling the awaiting task does not stop a call already running."""
        with self._lock:
            if self._closed:
                raise UsageError(f"{self._where}: the store is closed")
            future = self._executor.submit(self._call, call)
        return await asyncio.wrap_future(future)

    def _call(self, call: Callable[[H], T]) -> T:
        handle: H | None = getattr(self._local, "handle", None)
        if handle is None:
            handle = self._open()
            with self._lock:
                self._handles.append(handle)
            self._local.handle = handle
        return call(handle)

    def close(self) -> None:
        """Wait for the calls under way, then close every thread's handle."""
        with self._lock:
            self._closed = True
        self._executor.shutdown(wait=True)
        with self._lock:
            handles, self._handles = self._handles, []
        for handle in handles:
            handle.close()
