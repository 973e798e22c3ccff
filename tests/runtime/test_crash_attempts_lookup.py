"""A keyed write whose worker keeps dying after the effect: stops of its own worker are not the
provider's unknowns, so the write is re-issued under its key past the tool's attempts; once the
retry policy's crash rule is spent (10 stops), the tool's lookup settles it, and a write nothing
can look up escalates as unknown."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import BaseModel

from tether import RunContext, Runtime, ToolContext, tool, workflow
from tether.clock import VirtualClock
from tether.errors import Crash
from tether.events import RunStatus
from tether.runtime.journal import ProbePoint
from tether.store.memory import MemoryStore


class Args(BaseModel):
    order_id: str


def _run(crashes: int, *, lookup: bool) -> tuple[Any, list[str]]:
    """Crash the worker ``crashes`` times right after the provider applied the write, each
    time recovering in a fresh runtime; returns the last result and the provider's effects."""
    applied: dict[str, str] = {}
    effects: list[str] = []

    def refund(ctx: ToolContext, args: Args) -> str:
        key = ctx.idempotency_key
        if key not in applied:  # the provider deduplicates by key
            applied[key] = f"re_{len(applied) + 1}"
            effects.append(applied[key])
        return applied[key]

    write = tool(name="refund", args=Args, result=str, effect="idempotent",
                 key=lambda a: f"refund:{a.order_id}", attempts=3)(refund)
    if lookup:
        write.reconcile = lambda ctx, key: applied.get(key)

    @workflow(name="refund_flow")
    async def flow(ctx: RunContext, order: str) -> str:
        return str(await ctx.call_tool(write, {"order_id": order}))

    left = [crashes]

    def crash(point: ProbePoint) -> None:
        if point.point == "after_call" and left[0] > 0:
            left[0] -= 1
            raise Crash()

    clock, store = VirtualClock(start=0.0), MemoryStore()
    with pytest.raises(Crash):
        asyncio.run(Runtime(store, clock=clock, seed=1, probe=crash).start(flow, "A-1",
                                                                           run_id="r"))
    while True:
        try:
            result = asyncio.run(Runtime(store, clock=clock, workflows=[flow],
                                         probe=crash).resume("r"))
        except Crash:
            continue
        return result, effects


@pytest.mark.parametrize("crashes", [3, 4, 6, 10, 12])
def test_a_write_the_tool_can_look_up_is_settled_after_repeated_crashes(crashes: int) -> None:
    """Crashes after the effect, beyond the tool's attempts and beyond the crash rule: the run
    completes with the write's one result, applied once."""
    result, effects = _run(crashes, lookup=True)
    assert (result.status, result.result) == (RunStatus.COMPLETED, "re_1")
    assert effects == ["re_1"]


@pytest.mark.parametrize("crashes", [3, 9])
def test_without_a_lookup_stops_within_the_crash_rule_are_reissued(crashes: int) -> None:
    """Stops of its own worker, fewer than the crash rule's 10, beyond the tool's 3 attempts:
    re-issued under the key, completed, applied once."""
    result, effects = _run(crashes, lookup=False)
    assert (result.status, result.result) == (RunStatus.COMPLETED, "re_1")
    assert effects == ["re_1"]


def test_without_a_lookup_stops_past_the_crash_rule_escalate() -> None:
    """Ten stops at one call nothing can look up: escalated as unknown, never failed."""
    result, effects = _run(10, lookup=False)
    assert result.status is RunStatus.ESCALATED and "unknown" in result.reason
    assert "stopped 10 time(s)" in result.reason
    assert effects == ["re_1"]
