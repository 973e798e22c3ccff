"""The run's retry budget counts every retry the one definition counts, wherever it is made."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import BaseModel

from tether import (
    Crash,
    MemoryStore,
    RetryPolicy,
    RunContext,
    RunStatus,
    Runtime,
    ToolContext,
    TransientError,
    VirtualClock,
    tool,
)
from tether.events import ToolRetry
from tether.retries import count_retries


class Args(BaseModel):
    n: int


def start(workflow: Any, budget: int) -> tuple[Any, list[Any]]:
    store = MemoryStore()
    rt = Runtime(store, clock=VirtualClock(), seed=1, retry=RetryPolicy(retry_budget=budget))
    result = asyncio.run(rt.start(workflow, run_id="r"))
    return result, store.read("r")


def calling(write: Any) -> Any:
    async def once(ctx: RunContext) -> Any:
        return await ctx.call_tool(write, {"n": 1})

    return once


def test_parallel_calls_draw_from_one_budget() -> None:
    """Calls running side by side cannot together retry more than the run's budget."""
    clock_steps: list[int] = []

    @tool(effect="read", attempts=5, retry_delay_s=1.0)
    async def flaky(ctx: ToolContext, args: Args) -> int:
        clock_steps.append(args.n)
        raise TransientError("503")

    async def fan_out(ctx: RunContext) -> Any:
        calls = [ctx.call_tool(flaky, {"n": n}) for n in range(4)]
        settled = await asyncio.gather(*calls, return_exceptions=True)
        return len(settled)

    _, events = start(fan_out, budget=2)
    assert count_retries(events) <= 2


def test_reissues_after_an_ambiguous_outcome_draw_from_the_budget() -> None:
    """A write whose answers keep getting lost is re-issued only while the budget lasts, then
    escalates as unknown (never failed)."""
    sent: list[int] = []

    @tool(effect="idempotent", key=lambda a: f"w:{a.n}", attempts=5, retry_delay_s=0.0)
    async def write(ctx: ToolContext, args: Args) -> int:
        sent.append(ctx.attempt)
        raise TimeoutError("read timed out")

    async def once(ctx: RunContext) -> Any:
        return await ctx.call_tool(write, {"n": 1})

    result, events = start(once, budget=2)
    assert result.status is RunStatus.ESCALATED and "retry budget" in result.reason
    assert sent == [1, 2, 3] and count_retries(events) == 2


def test_lookup_retries_are_journaled_counted_and_budgeted() -> None:
    """A lookup made again is a journaled retry; with no budget left, no second lookup is made
    and the unknown write escalates."""
    for budget, lookups_made, status in ((20, 3, RunStatus.COMPLETED),
                                         (0, 1, RunStatus.ESCALATED)):
        lookups: list[str] = []

        async def look(ctx: ToolContext, key: str, lookups: list[str] = lookups) -> Any:
            lookups.append(key)
            if len(lookups) < 3:
                raise TimeoutError("lookup timed out")
            return 7

        @tool(effect="reconcilable", key=lambda a: f"k:{a.n}", reconcile=look, attempts=3,
              retry_delay_s=0.0)
        async def write(ctx: ToolContext, args: Args) -> int:
            raise TimeoutError("lost after commit")

        result, events = start(calling(write), budget=budget)
        assert result.status is status and len(lookups) == lookups_made
        journaled = [e for e in events if isinstance(e, ToolRetry) and e.lookup]
        assert len(journaled) == lookups_made - 1 == count_retries(events)


def test_a_crash_between_lookups_resumes_the_lookups_where_they_stopped() -> None:
    """After a crash right after a journaled lookup retry, recovery looks the write up again
    (never re-issues it) and the journaled lookups keep counting from where they were."""
    lookups: list[str] = []
    sent: list[int] = []

    async def look(ctx: ToolContext, key: str) -> Any:
        lookups.append(key)
        if len(lookups) < 3:
            raise TimeoutError("lookup timed out")
        return 7

    @tool(effect="reconcilable", key=lambda a: f"k:{a.n}", reconcile=look, attempts=3,
          retry_delay_s=0.0)
    async def write(ctx: ToolContext, args: Args) -> int:
        sent.append(ctx.attempt)
        raise TimeoutError("lost after commit")

    workflow = calling(write)
    store, clock = MemoryStore(), VirtualClock()

    def crash(run_id: str, event: Any) -> None:
        if isinstance(event, ToolRetry) and event.lookup:
            raise Crash("killed")

    with pytest.raises(Crash):
        asyncio.run(Runtime(store, clock=clock, seed=1, listeners=[crash], owner="w1").start(
            workflow, run_id="r"))
    result = asyncio.run(Runtime(store, clock=clock, seed=1, workflows=[workflow],
                                 owner="w1").resume("r"))
    events = store.read("r")
    assert result.status is RunStatus.COMPLETED and result.result == 7
    assert sent == [1] and len(lookups) == 3
    assert [e.attempt for e in events if isinstance(e, ToolRetry)] == [1, 2]
    assert count_retries(events) == 2
