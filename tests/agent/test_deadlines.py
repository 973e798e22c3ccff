"""Budgets are deadlines: max_duration_s bounds every model and tool call, not only steps."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel

from tether import (
    Agent,
    Budgets,
    Crash,
    MemoryStore,
    ModelRequest,
    ModelResponse,
    ProbePoint,
    RateLimited,
    RunStatus,
    Runtime,
    ScriptedModel,
    ToolContext,
    VirtualClock,
    tool,
)
from tether.events import Decision, ToolError, ToolIntent
from tether.models.scripted import call, reply

from .helpers import run

BUDGET = Budgets(max_duration_s=60)


class Args(BaseModel):
    order_id: str


def asks_once(name: str) -> ScriptedModel:
    return ScriptedModel(lambda r: reply("done") if any(m.role == "tool" for m in r.messages)
                         else call(name, {"order_id": "A-1"}))


def on(clock: VirtualClock) -> Runtime:
    return Runtime(MemoryStore(), clock=clock, seed=1)


def test_a_slow_read_is_cut_off_at_the_runs_deadline() -> None:
    """A 300 s read under a 60 s budget: the run fails at 60 s, the journal says why."""
    clock = VirtualClock(start=0.0)

    async def slow(ctx: ToolContext, args: Args) -> str:
        await clock.sleep(300)
        return "found"

    lookup = tool(name="lookup", args=Args, result=str, retry_delay_s=1.0)(slow)
    result, events, _ = run(Agent(name="a", model=asks_once("lookup"), tools=[lookup],
                                  budgets=BUDGET), runtime=on(clock))
    assert result.status is RunStatus.FAILED
    assert clock.now() <= 60.0 + 1e-6
    errors = [e for e in events if isinstance(e, ToolError)]
    assert errors and errors[-1].failure == "budget_exceeded"
    assert "max_duration_s" in result.reason


def test_a_slow_model_is_cut_off_at_the_runs_deadline() -> None:
    """A model that takes 300 s under a 60 s budget: stopped at 60 s with a budget decision."""
    clock = VirtualClock(start=0.0)

    async def script(request: ModelRequest) -> ModelResponse:
        await clock.sleep(300)
        return reply("late")

    result, events, _ = run(Agent(name="a", model=ScriptedModel(script), budgets=BUDGET),
                            runtime=on(clock))
    assert result.status is RunStatus.FAILED and clock.now() <= 60.0 + 1e-6
    budget = [e.data for e in events if isinstance(e, Decision) and e.name == "budget"]
    assert budget and budget[-1]["limit"] == "max_duration_s"


def test_a_backoff_that_would_end_after_the_deadline_is_not_waited() -> None:
    """A 429 asking for 100 s at t=10 under a 60 s budget: the run stops at once, at t=10."""
    clock = VirtualClock(start=0.0)

    async def script(request: ModelRequest) -> ModelResponse:
        await clock.sleep(10)
        raise RateLimited("429", retry_after_s=100.0)

    result, _, _ = run(Agent(name="a", model=ScriptedModel(script), budgets=BUDGET),
                       runtime=on(clock))
    assert result.status is RunStatus.FAILED and clock.now() == 10.0
    assert "max_duration_s" in result.reason


def test_a_write_cut_off_by_the_deadline_is_unknown_and_not_reissued() -> None:
    """A slow refund cut at the deadline may have happened: escalated, sent once only."""
    clock = VirtualClock(start=0.0)
    sent: list[int] = []

    async def slow_refund(ctx: ToolContext, args: Args) -> str:
        sent.append(ctx.attempt)
        await clock.sleep(300)
        return "re_1"

    refund = tool(name="refund", args=Args, result=str, effect="idempotent",
                  key=lambda a: f"refund:{a.order_id}")(slow_refund)
    result, events, _ = run(Agent(name="a", model=asks_once("refund"), tools=[refund],
                                  budgets=BUDGET), runtime=on(clock))
    assert sent == [1] and clock.now() <= 60.0 + 1e-6
    assert result.status is RunStatus.ESCALATED and "unknown" in result.reason
    assert [e.attempt for e in events if isinstance(e, ToolIntent)] == [1]


def test_escalate_on_breach_escalates_a_deadline_hit_inside_a_tool() -> None:
    """on_breach='escalate' applies to a deadline met inside a tool call too."""
    clock = VirtualClock(start=0.0)

    async def slow(ctx: ToolContext, args: Args) -> str:
        await clock.sleep(300)
        return "found"

    lookup = tool(name="lookup", args=Args, result=str)(slow)
    budgets = Budgets(max_duration_s=60, on_breach="escalate")
    result, _, _ = run(Agent(name="a", model=asks_once("lookup"), tools=[lookup],
                             budgets=budgets), runtime=on(clock))
    assert result.status is RunStatus.ESCALATED and "max_duration_s" in result.reason
    assert clock.now() <= 60.0 + 1e-6


def test_a_resumed_run_replays_without_waiting_and_keeps_its_deadline() -> None:
    """After a crash, replayed calls return at once; the deadline is the journaled one."""
    clock = VirtualClock(start=0.0)

    async def slow(ctx: ToolContext, args: Args) -> str:
        await clock.sleep(30)
        return "found"

    def crash(point: ProbePoint) -> None:
        if point.point == "after_result":
            raise Crash()

    lookup = tool(name="lookup", args=Args, result=str)(slow)
    agent = Agent(name="a", model=asks_once("lookup"), tools=[lookup], budgets=BUDGET)
    store = MemoryStore()
    with pytest.raises(Crash):
        asyncio.run(Runtime(store, clock=clock, seed=1, probe=crash).start(agent, "help"))
    assert clock.now() == 30.0
    clock.advance(40.0)  # the worker came back after the deadline
    (result,) = asyncio.run(Runtime(store, clock=clock, workflows=[agent]).recover())
    assert clock.now() == 70.0
    assert result.status is RunStatus.FAILED and "max_duration_s" in result.reason
