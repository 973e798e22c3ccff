"""Per-call timeouts measured on the run's clock.

Under a :class:`~tether.clock.VirtualClock` with autojump, the timer fires as soon as nothing
else can run, which is what a simulation wants; real I/O should use a system clock.

Limits, stated rather than papered over:

- A timeout applies to *awaitable* work: an ``async`` handler, hook or model client. A
  blocking (synchronous) function runs to its end before asyncio regains control, so no
  timeout — a tool's ``timeout_s`` or the run's deadline — can interrupt it. A slow blocking
  handler should be made ``async`` by its author, or run in a thread
  (``await asyncio.to_thread(fn, ...)``), which makes it awaitable and so bounded.
- When the time is up the work is cancelled, and :func:`within` waits for it to stop for at
  most a short grace (``cancel_grace_s``, on the same clock). Work that ignores or delays its
  cancellation beyond that is left behind: :func:`within` raises ``TimeoutError`` anyway, and
  that work may still be running (and may still take effect) afterwards. For a write that is
  exactly the ambiguous outcome the write protocol settles by key.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import Any, TypeVar

from tether.clock import Clock

__all__ = ["CANCEL_GRACE_S", "within"]

T = TypeVar("T")

#: How long, on the clock, a timed-out call is given to stop after it was cancelled.
CANCEL_GRACE_S = 1.0


async def within(clock: Clock, work: Awaitable[T], timeout_s: float | None, *,
                 cancel_grace_s: float = CANCEL_GRACE_S) -> T:
    """Await ``work``; raise ``TimeoutError`` (and cancel it) after ``timeout_s`` of clock time.

    After cancelling, waits at most ``cancel_grace_s`` of clock time for the work to stop; work
    still running then is abandoned (it may go on running) and ``TimeoutError`` is raised."""
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
    grace = asyncio.ensure_future(clock.sleep(cancel_grace_s))
    try:
        await asyncio.wait({task, grace}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        grace.cancel()
    # The cancellation, or whatever the work raised while stopping: either way it is over for
    # the caller. Work still running keeps a callback that takes its outcome when it ends, so
    # it is not reported as an exception nobody retrieved.
    if task.done():
        _consume(task)
    else:
        task.add_done_callback(_consume)
    raise TimeoutError(f"no answer within {timeout_s:g} s of clock time")


def _consume(task: asyncio.Future[Any]) -> None:
    with contextlib.suppress(BaseException):
        task.result()
