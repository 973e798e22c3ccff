"""Which runs moved: one watcher per viewer reads the store's index and tells every open page.

The :class:`~tether.store.base.Store` protocol offers no change feed, so the watcher polls
``list_runs`` and compares each run's last seq and status with the previous read
(:func:`tether.view.data.index_marks`). Three things keep that cheap:

- **One poller for every page.** Pages subscribe; the watcher runs while at least one is
  subscribed and reads the index once per round for all of them.
- **A file that has not changed is not read.** For a store kept in files (SQLite: the
  database and its write-ahead log), a round whose files' sizes and modification times are
  those of the last round skips the read; a full read still happens every
  :data:`FULL_READ_S` seconds, in case two writes fell within one timestamp tick.
- **Rounds stretch with the index.** The next round starts no sooner than
  :data:`BUSY_FACTOR` times the last read's duration: reading a 20,000-run index takes
  ~0.3 s, so a busy large store is read every ~1.2 s rather than every ``poll_s``, and the
  viewer never spends more than about a quarter of a core on it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncGenerator
from pathlib import Path

from tether.clock import Clock
from tether.store.base import Store
from tether.view import data

__all__ = ["BUSY_FACTOR", "FULL_READ_S", "IndexWatch", "files_stamp"]

#: At most this long between two full reads of a file store's index.
FULL_READ_S = 5.0
#: A round waits at least this many times the duration of the last index read.
BUSY_FACTOR = 4.0
#: A round with no change is announced (as an empty list) this often, to keep streams open.
QUIET_S = 15.0

Marks = dict[str, tuple[int, str]]


def files_stamp(store: Store) -> tuple[tuple[int, int], ...] | None:
    """The size and modification time of a file store's files (``None``: not a file store)."""
    path = getattr(store, "path", None)
    if not isinstance(path, str | Path):
        return None
    stamps = []
    for name in (str(path), f"{path}-wal"):
        try:
            info = os.stat(name)
        except OSError:
            stamps.append((-1, -1))
        else:
            stamps.append((info.st_size, info.st_mtime_ns))
    # A leased run's lazy appends go to its segment file beside the database (see
    # tether.store._segments), which changes neither file above.
    try:
        with os.scandir(f"{path}-seg") as entries:
            segments = sorted((entry.name, entry.stat()) for entry in entries
                              if entry.name.endswith(".seg"))
    except OSError:
        segments = []
    stamps.extend((info.st_size, info.st_mtime_ns) for _name, info in segments)
    return tuple(stamps)


class IndexWatch:
    """Polls ``store``'s index while pages listen; each gets the ids of the runs that moved.

    ``clock`` times the rounds (the viewer passes the system clock: live updates follow real
    time). :meth:`changes` yields an empty list once it is listening, then a list per round
    with changes, and an empty list after :data:`QUIET_S` without any."""

    def __init__(self, store: Store, clock: Clock, poll_s: float) -> None:
        self.store = store
        self.clock = clock
        self.poll_s = poll_s
        self.reads = 0  # full reads of the index so far (tests and the curious)
        self._queues: set[asyncio.Queue[list[str] | None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready: asyncio.Event | None = None
        self._closed = False

    async def changes(self) -> AsyncGenerator[list[str], None]:
        """The changes seen from now on, until the caller stops iterating or the watch is
        closed. The first item is an empty list, once the index read that later changes are
        relative to is in: whatever the caller reads after it misses nothing."""
        if self._closed:
            return
        queue: asyncio.Queue[list[str] | None] = asyncio.Queue()
        self._queues.add(queue)
        self._loop = asyncio.get_running_loop()
        if self._task is None or self._task.done():
            self._ready = asyncio.Event()
            self._task = self._loop.create_task(self._run(self._ready))
        assert self._ready is not None
        try:
            await self._ready.wait()
            yield []
            while (changed := await queue.get()) is not None:
                yield changed
        finally:
            self._queues.discard(queue)

    def close(self) -> None:
        """End every listener's stream (the viewer is shutting down). Safe to call from a
        signal handler or another thread."""
        self._closed = True
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._end)

    def _end(self) -> None:
        for queue in list(self._queues):
            queue.put_nowait(None)
        if self._task is not None:
            self._task.cancel()
        if self._ready is not None:
            self._ready.set()

    async def _read(self) -> tuple[Marks, float]:
        begun = self.clock.now()
        marks = await asyncio.to_thread(data.index_marks, self.store)
        self.reads += 1
        return marks, self.clock.now() - begun

    async def _run(self, ready: asyncio.Event) -> None:
        stamp = files_stamp(self.store)
        try:
            marks, took = await self._read()
        except Exception:  # the first read that works then reports every run as moved
            marks, took = {}, 0.0
        ready.set()
        since_read = quiet = 0.0
        while self._queues:
            wait = max(self.poll_s, BUSY_FACTOR * took)
            await self.clock.sleep(wait)
            since_read += wait
            quiet += wait
            now_stamp = files_stamp(self.store)
            if now_stamp is not None and now_stamp == stamp and since_read < FULL_READ_S:
                changed: list[str] = []
            else:
                try:
                    fresh, took = await self._read()
                except Exception:
                    # The page keeps what it shows; live updates resume once the store
                    # answers again (a locked SQLite file, a PostgreSQL restart).
                    changed = []
                else:
                    stamp = now_stamp
                    since_read = 0.0
                    changed = data.changed_runs(marks, fresh)
                    marks = fresh
            if changed or quiet >= QUIET_S:
                quiet = 0.0
                for queue in list(self._queues):
                    queue.put_nowait(changed)
