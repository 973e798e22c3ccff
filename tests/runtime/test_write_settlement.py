"""A write's settlement: lookups that fail, crashes between appends, results that cannot be kept."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import BaseModel

from tether import (
    Crash,
    MemoryStore,
    RunContext,
    RunStatus,
    Runtime,
    ToolContext,
    VirtualClock,
    tool,
)


class Args(BaseModel):
    n: int


def start(workflow: Any, store: MemoryStore | None = None) -> tuple[Any, MemoryStore]:
    store = store or MemoryStore()
    rt = Runtime(store, clock=VirtualClock(), seed=1)
    return asyncio.run(rt.start(workflow, run_id="r")), store


def test_lookup_cancelled_by_its_client_is_a_failed_lookup() -> None:
    """A reconcile lookup raising CancelledError while the run is not cancelled is retried and
    then escalates; it does not escape the run and leave it running."""
    async def lookup(ctx: ToolContext, key: str) -> Any:
        raise asyncio.CancelledError()

    @tool(effect="reconcilable", key=lambda a: f"k{a.n}", reconcile=lookup, retry_delay_s=0.0)
    async def write(ctx: ToolContext, args: Args) -> dict[str, int]:
        raise TimeoutError("lost")

    async def workflow(ctx: RunContext) -> Any:
        return await ctx.call_tool(write, {"n": 1})

    result, _ = start(workflow)
    assert result.status is RunStatus.ESCALATED
    assert "unknown" in result.reason


class Refunds:
    """The first request commits and its answer is lost; every re-issue is refused (a 400),
    and the lookup, when the tool has one, fails."""

    def __init__(self, *, reconcilable: bool) -> None:
        async def refund(ctx: ToolContext, args: Args) -> dict[str, int]:
            if ctx.attempt == 1:
                raise TimeoutError("read timed out (the provider committed)")
            raise ValueError("400 idempotency key reused with other parameters")

        async def lookup(ctx: ToolContext, key: str) -> Any:
            raise KeyError("refunds")

        self.tool = tool(name="refund", effect="reconcilable" if reconcilable else "idempotent",
                         key=lambda a: f"refund:{a.n}", retry_delay_s=0.0,
                         reconcile=lookup if reconcilable else None)(refund)

        async def refunds(ctx: RunContext) -> Any:
            return await ctx.call_tool(self.tool, {"n": 1})

        self.workflow = refunds


@pytest.mark.parametrize("reconcilable", [False, True])
def test_a_crash_at_any_append_replays_to_the_same_settlement(reconcilable: bool) -> None:
    """An ambiguous write whose re-issue is refused (or whose lookup fails) escalates; a crash
    after any append of that run, then recovery, escalates too and never reads as failed."""
    workflow = Refunds(reconcilable=reconcilable).workflow
    whole, store = start(workflow)
    assert whole.status is RunStatus.ESCALATED
    for crash_at in range(2, len(store.read("r")) + 1):
        store, clock = MemoryStore(), VirtualClock()

        def crash(run_id: str, event: Any, crash_at: int = crash_at) -> None:
            if event.seq == crash_at:
                raise Crash("killed")

        with pytest.raises(Crash):
            asyncio.run(Runtime(store, clock=clock, seed=1, listeners=[crash],
                                owner="w1").start(workflow, run_id="r"))
        clock.advance(3600)
        again = asyncio.run(Runtime(store, clock=clock, seed=1, workflows=[workflow],
                                    owner="w2").resume("r"))
        assert again.status is RunStatus.ESCALATED, (crash_at, again.reason)
