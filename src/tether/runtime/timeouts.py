"""Per-call timeouts measured on the run's clock.

Under a :class:`~tether.clock.VirtualClock` with autojump, the timer fires as soon as nothing
else can run, which is what a simulation wants; real I/O should use a system clock.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TypeVar

from tether.clock import Clock

__all__ = ["within"]

T = TypeVar("T")


async def within(clock: Clock, work: Awaitable[T], timeout_s: float | None) -> T:
    """Await ``work``; raise ``TimeoutError`` (and cancel it) after ``timeout_s`` of clock time."""
    if timeout_s is None:
        return await work
    task = asyncio.ensure_future(work)
    timer = asyncio.ensure_future(clock.sleep(timeout_s))
    try:
        done, _ = await asyncio.wait({task, timer}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        task.cancel()
        timer.cancel()
        raise
    if task in done:
        timer.cancel()
        return task.result()
    task.cancel()
    # The cancellation, or whatever the work raised while stopping: either way it is over.
    with contextlib.suppress(BaseException):
        await task
    raise TimeoutError(f"no answer within {timeout_s:g} s of clock time")
