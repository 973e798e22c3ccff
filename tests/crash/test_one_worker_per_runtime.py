"""One run, one executing worker, also within one process: each runtime is its own worker."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pydantic import BaseModel

from tether import SQLiteStore
from tether.clock import VirtualClock
from tether.errors import Crash, RunOwned
from tether.events import RunStatus
from tether.runtime.context import RunContext
from tether.runtime.journal import ProbePoint
from tether.runtime.runtime import Runtime, Workflow, workflow
from tether.runtime.tools import Tool, ToolContext, tool


class Args(BaseModel):
    order_id: str


def _held_write() -> tuple[Workflow, list[str], asyncio.Event, asyncio.Event]:
    """A workflow whose write (its first call) stays in flight until ``release`` is set."""
    calls: list[str] = []
    entered, release = asyncio.Event(), asyncio.Event()

    async def lookup(ctx: ToolContext, key: str) -> dict[str, str] | None:
        return None

    async def refund(ctx: ToolContext, args: Args) -> dict[str, str]:
        calls.append(ctx.idempotency_key)
        if len(calls) == 1:  # only the first call is held: a second one must not hang the test
            entered.set()
            await release.wait()
        return {"id": ctx.idempotency_key}

    write: Tool[Args, dict[str, str]] = tool(
        effect="reconcilable", key=lambda a: f"refund:{a.order_id}",
        reconcile=lookup)(refund)

    @workflow(name="refund_flow")
    async def flow(ctx: RunContext, order_id: str) -> dict[str, str]:
        return await ctx.call_tool(write, {"order_id": order_id})  # type: ignore[no-any-return]

    return flow, calls, entered, release


def test_two_runtimes_of_one_process_get_distinct_default_owners() -> None:
    """Runtimes made without an owner name different workers."""
    assert Runtime().owner != Runtime().owner


@pytest.mark.parametrize("how", ["recover", "resume"])
def test_a_second_runtime_does_not_take_a_run_the_first_is_executing(
        tmp_path: Path, how: str) -> None:
    """recover() skips, and resume() refuses, a run another runtime of this process holds."""
    flow, calls, entered, release = _held_write()
    path = tmp_path / "runs.db"

    async def scenario() -> None:
        clock = VirtualClock(start=0.0)
        a = Runtime(SQLiteStore(path), clock=clock, workflows=[flow])
        b = Runtime(SQLiteStore(path), clock=clock, workflows=[flow])
        running = asyncio.create_task(a.start(flow, "o1", run_id="r1"))
        await entered.wait()
        if how == "recover":
            assert await b.recover() == []
        else:
            with pytest.raises(RunOwned):
                await b.resume("r1")
        release.set()
        assert (await running).status is RunStatus.COMPLETED

    asyncio.run(scenario())
    assert calls == ["refund:o1"]


def test_resuming_a_run_this_runtime_is_executing_raises(tmp_path: Path) -> None:
    """resume() of a run the same runtime is executing raises RunOwned; the handler runs once."""
    flow, calls, entered, release = _held_write()

    async def scenario() -> None:
        rt = Runtime(SQLiteStore(tmp_path / "runs.db"), clock=VirtualClock(start=0.0),
                     workflows=[flow], owner="worker-1")
        running = asyncio.create_task(rt.start(flow, "o1", run_id="r1"))
        await entered.wait()
        with pytest.raises(RunOwned, match="being executed by this runtime"):
            await rt.resume("r1")
        release.set()
        assert (await running).status is RunStatus.COMPLETED

    asyncio.run(scenario())
    assert calls == ["refund:o1"]


def test_a_restarted_worker_with_the_same_owner_takes_its_run_back_at_once(
        tmp_path: Path) -> None:
    """A fresh runtime under the crashed one's owner name resumes a run whose lease is live."""
    flow, _calls, entered, release = _held_write()
    path = tmp_path / "runs.db"
    clock = VirtualClock(start=0.0)

    async def crash() -> None:
        first = Runtime(SQLiteStore(path), clock=clock, workflows=[flow], owner="w")
        running = asyncio.create_task(first.start(flow, "o1", run_id="r1"))
        await entered.wait()
        running.cancel()  # the worker dies with its lease live
        with pytest.raises(asyncio.CancelledError):
            await running

    asyncio.run(crash())
    release.set()
    again = Runtime(SQLiteStore(path), clock=clock, workflows=[flow], owner="w")
    assert asyncio.run(again.resume("r1")).status is RunStatus.COMPLETED


def test_a_fresh_default_runtime_recovers_a_run_after_a_simulated_crash(tmp_path: Path) -> None:
    """A simulated Crash frees the run's lease: another runtime of the process recovers it."""
    flow, calls, _, release = _held_write()
    release.set()
    path = tmp_path / "runs.db"
    clock = VirtualClock(start=0.0)

    def crash(point: ProbePoint) -> None:
        if point.point == "after_call":
            raise Crash()

    with pytest.raises(Crash):
        asyncio.run(Runtime(SQLiteStore(path), clock=clock, workflows=[flow],
                            probe=crash).start(flow, "o1", run_id="r1"))
    [result] = asyncio.run(Runtime(SQLiteStore(path), clock=clock, workflows=[flow]).recover())
    assert result.status is RunStatus.COMPLETED
    # The lookup finds nothing under the key, so the recovered run issues the write again.
    assert calls == ["refund:o1", "refund:o1"]
