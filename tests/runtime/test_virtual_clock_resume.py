"""A run on a virtual clock, taken up by a process whose virtual clock starts at its origin
again, goes on from the journal's time: its clock never reads earlier than what it journaled."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tether import RunContext, RunStatus, Runtime, SQLiteStore, VirtualClock, workflow


@workflow(name="slow_review")
async def slow_review(ctx: RunContext, order_id: str) -> dict[str, float]:
    await ctx.sleep(3_600)                       # an hour of virtual time before the wait
    before = ctx.now()
    await ctx.wait_for(f"review:{order_id}")     # suspended: the process may go away here
    after = ctx.now()
    await ctx.sleep(60)
    return {"before": before, "after": after, "end": ctx.now()}


def _runtime(path: Path) -> Runtime:
    # A new store object and a new clock at the same origin: what a new process has.
    return Runtime(SQLiteStore(path), workflows=[slow_review], clock=VirtualClock(), seed=1)


def test_resumed_run_continues_from_the_journals_time(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    first = asyncio.run(_runtime(path).start(slow_review, "A-1", run_id="r1"))
    assert first.status is RunStatus.WAITING
    second = _runtime(path)
    second.resolve("r1", "review:A-1", "ok", by="grace")
    done = asyncio.run(second.resume("r1"))
    assert done.status is RunStatus.COMPLETED, done
    result = done.result
    assert result["after"] >= result["before"], result
    assert result["end"] - result["after"] == 60.0
    events = SQLiteStore(path).read("r1")
    times = [event.at for event in events]
    assert times == sorted(times), "the journal's time went backwards on resume"


def test_result_reads_where_a_run_stands_without_executing_it(tmp_path: Path) -> None:
    """``Runtime.result`` answers from the journal: unknown → None, waiting → the key it
    waits for, finished → the stored result; it takes no lease and appends nothing."""
    path = tmp_path / "runs.db"
    runtime = _runtime(path)
    assert runtime.result("r1") is None
    asyncio.run(runtime.start(slow_review, "A-1", run_id="r1"))
    store = SQLiteStore(path)
    length = len(store.read("r1"))
    waiting = _runtime(path).result("r1")
    assert waiting is not None
    assert (waiting.status, waiting.waiting_for) == (RunStatus.WAITING, "review:A-1")
    assert len(store.read("r1")) == length and store.get_run("r1").owner is None  # type: ignore[union-attr]
    runtime.resolve("r1", "review:A-1", "ok", by="grace")
    due = runtime.result("r1")       # resolved: due for a worker to go on with it
    assert due is not None and (due.status, due.waiting_for) == (RunStatus.RUNNING, None)
    done = asyncio.run(runtime.resume("r1"))
    read = _runtime(path).result("r1")
    assert read is not None
    assert (read.status, read.result, read.error) == (done.status, done.result, done.error)
