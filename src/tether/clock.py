"""Time and entropy: the only module of tether that may touch the wall clock or the OS RNG.

Everything else in tether takes time from a :class:`Clock` and randomness from a seeded
``random.Random`` handed to it. That single rule is what makes simulated runs reproducible
byte for byte and lets a 90-second wait cost no real time.

* :class:`SystemClock` reads the real clock and really sleeps.
* :class:`VirtualClock` starts at a given instant and moves only when told (:meth:`advance`)
  or, with ``autojump`` (the default), jumps straight to the next pending timer whenever every
  task of the event loop is blocked on it.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import os
import time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "SystemClock", "VirtualClock", "system_seed"]


@runtime_checkable
class Clock(Protocol):
    """Where a runtime gets the time and how it waits."""

    def now(self) -> float:
        """Seconds since the Unix epoch (virtual or real)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""
        ...


class SystemClock:
    """The real clock: ``time.time()`` and ``asyncio.sleep``."""

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        """A monotonic reading for measuring durations (never journaled)."""
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class VirtualClock:
    """A clock that moves only when told, for tests and simulation.

    >>> clock = VirtualClock(start=1_000.0)
    >>> clock.advance(90.0)
    >>> clock.now()
    1090.0

    Sleepers wait on timers ordered by (deadline, creation order), so equal deadlines wake in
    a deterministic order. With ``autojump=True``, a sleep whose event loop has nothing else to
    do jumps the clock to the earliest deadline instead of waiting for :meth:`advance`.
    """

    def __init__(self, start: float = 1_767_225_600.0, *, autojump: bool = True) -> None:
        # 2026-01-01T00:00:00Z by default: a fixed origin keeps journals identical across runs.
        self._now = float(start)
        self._autojump = autojump
        self._timers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._jumper: asyncio.Task[None] | None = None

    def now(self) -> float:
        return self._now

    def pending_timers(self) -> int:
        """How many sleepers are waiting."""
        return sum(1 for *_, fut in self._timers if not fut.done())

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every sleeper whose deadline has come."""
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        self._set(self._now + seconds)

    def catch_up(self, instant: float) -> None:
        """Move time forward to ``instant`` if it is later than now (never back).

        A journal taken up by a process whose virtual clock starts at its origin again calls
        this with the journal's last time, so the run's clock goes on from where it was
        instead of reading earlier than what it already journaled."""
        self._set(instant)

    def _set(self, instant: float) -> None:
        self._now = max(self._now, instant)
        while self._timers and self._timers[0][0] <= self._now:
            _, _, fut = heapq.heappop(self._timers)
            if not fut.done():
                fut.set_result(None)

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._timers, (self._now + seconds, next(self._order), fut))
        if self._autojump and (self._jumper is None or self._jumper.done()):
            self._jumper = loop.create_task(self._jump_when_idle())
        await fut

    async def _jump_when_idle(self) -> None:
        # Let every runnable task run first; when the loop has only timers left, jump to the
        # earliest one. A fixed number of yields is not enough: work that needs more loop
        # iterations than that to reach its next timer (a call racing a deadline timer, a
        # chain of tasks) would see the clock jump while it is still running, and a call
        # that took no time would be measured as taking the whole timeout. So keep yielding
        # while the loop has callbacks ready to run; the count of yields is a function of
        # the tasks' own behaviour, so this stays deterministic.
        loop = asyncio.get_running_loop()
        while self._timers:
            for _ in range(8):
                await asyncio.sleep(0)
            spins = 0
            while _has_ready_callbacks(loop) and spins < _MAX_IDLE_SPINS:
                await asyncio.sleep(0)
                spins += 1
            while self._timers and self._timers[0][2].done():
                heapq.heappop(self._timers)
            if not self._timers:
                return
            self._set(self._timers[0][0])


#: Yields the jumper gives busy work before jumping anyway (a task that never blocks must not
#: stop virtual time for ever).
_MAX_IDLE_SPINS = 100_000


def _has_ready_callbacks(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether anything besides the caller is ready to run on ``loop``.

    asyncio's own loops keep ready callbacks in ``_ready``; a loop without it (a third-party
    implementation) is taken as idle after the fixed yields above.
    """
    ready = getattr(loop, "_ready", None)
    return bool(ready)


def system_seed() -> int:
    """A fresh 64-bit seed from the operating system, for runs that are not simulated."""
    return int.from_bytes(os.urandom(8), "big")
