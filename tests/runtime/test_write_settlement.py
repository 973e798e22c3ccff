"""A write's settlement: lookups that fail, crashes between appends, results that cannot be kept."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel

from tether import MemoryStore, RunContext, RunStatus, Runtime, ToolContext, VirtualClock, tool


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
