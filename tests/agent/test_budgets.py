"""Budgets, the no-progress detector and circuit breakers stop or steer the loop, journaled."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel

from tether import (
    Agent,
    Breakers,
    BreakerState,
    Budgets,
    MemoryStore,
    ModelRequest,
    ModelResponse,
    Price,
    PriceTable,
    RunStatus,
    Runtime,
    ScriptedModel,
    ToolContext,
    TransientError,
    Usage,
    VirtualClock,
    tool,
)
from tether.models.scripted import call, reply

from .helpers import decisions, run


class Args(BaseModel):
    n: int


@tool
def count(ctx: ToolContext, args: Args) -> int:
    """Count."""
    return args.n


def counting_model() -> ScriptedModel:
    """Calls ``count`` with a new number each turn, forever."""
    return ScriptedModel(lambda r: call("count", {"n": len(r.messages)}))


def test_step_limit_stops_the_run_with_the_reason_journaled() -> None:
    """max_steps=3: the fourth turn is refused; the run fails with BudgetExceeded."""
    agent = Agent(name="a", model=counting_model(), tools=[count],
                  budgets=Budgets(max_steps=3))
    result, events, _ = run(agent)
    assert result.status is RunStatus.FAILED
    assert result.error is not None and result.error["data"] == {"limit": "max_steps"}
    budget = decisions(events, "budget")
    assert [(d["failure"], d["domain"], d["limit"]) for d in budget] == \
        [("budget_exceeded", "harness", "max_steps")]
    assert "used 4 steps, limit 3" in result.reason


def test_a_breach_can_escalate_instead() -> None:
    """on_breach='escalate' hands the run to a human: status escalated, reason kept."""
    agent = Agent(name="a", model=counting_model(), tools=[count],
                  budgets=Budgets(max_tool_calls=2, on_breach="escalate"))
    result, _, _ = run(agent)
    assert result.status is RunStatus.ESCALATED and "max_tool_calls" in result.reason


def test_cost_limit_uses_the_price_table() -> None:
    """Each call costs $0.01 by the table; a $0.025 budget allows three calls, not four."""
    model = ScriptedModel(lambda r: ModelResponse(
        tool_calls=call("count", {"n": len(r.messages)}).tool_calls,
        usage=Usage(input_tokens=1000, output_tokens=0), model="pricey"))
    prices = PriceTable().with_prices({"pricey": Price(10.0, 0.0)})
    agent = Agent(name="a", model=model, tools=[count], prices=prices,
                  budgets=Budgets(max_cost_usd=0.025))
    result, _, _ = run(agent)
    assert result.status is RunStatus.FAILED and "max_cost_usd" in result.reason
    assert model.calls == 3


def test_token_and_duration_limits() -> None:
    """Token totals and run-clock duration are limits too."""
    tokens = Agent(name="t", model=counting_model(), tools=[count],
                   budgets=Budgets(max_tokens=60))
    assert "max_tokens" in run(tokens)[0].reason

    async def slow(ctx: ToolContext, args: Args) -> int:
        await clock.sleep(40)
        return args.n

    clock = VirtualClock()
    slow_tool = tool(name="count", args=Args, result=int)(slow)
    timed = Agent(name="d", model=counting_model(), tools=[slow_tool],
                  budgets=Budgets(max_duration_s=100))
    result, _, _ = run(timed, runtime=Runtime(MemoryStore(), clock=clock, seed=1))
    assert "max_duration_s" in result.reason


def test_the_same_call_repeated_is_no_progress() -> None:
    """The model calling count(n=1) again and again trips the repeat detector."""
    model = ScriptedModel(lambda r: call("count", {"n": 1}))
    result, events, _ = run(Agent(name="a", model=model, tools=[count],
                                  budgets=Budgets(repeat_limit=3)))
    assert result.status is RunStatus.FAILED
    (budget,) = decisions(events, "budget")
    assert budget["failure"] == "no_progress" and budget["limit"] == "repeat_limit"
    assert 'count:{"n":1}' in budget["reason"] and "3 times" in budget["reason"]


def test_failed_calls_in_a_row_are_no_progress() -> None:
    """Five failing tool calls in a row stop the run even with different arguments."""
    @tool
    def fails(ctx: ToolContext, args: Args) -> int:
        """Always rejects."""
        raise ValueError("rejected")

    model = ScriptedModel(lambda r: call("fails", {"n": len(r.messages)}))
    agent = Agent(name="a", model=model, tools=[fails],
                  budgets=Budgets(failure_streak_limit=2, repeat_limit=None))
    result, events, _ = run(agent)
    assert result.status is RunStatus.FAILED
    (budget,) = decisions(events, "budget")
    assert budget["limit"] == "failure_streak_limit"


def test_breaker_opens_refuses_then_probes_after_cooldown() -> None:
    """Shared breaker: opens after 2 failures, refuses (journaled), half-opens after cooldown."""
    clock = VirtualClock(start=0.0)
    breakers = Breakers(clock, failure_threshold=2, cooldown_s=60.0)
    up = {"ok": False}

    @tool(attempts=1)
    def upstream(ctx: ToolContext, args: Args) -> int:
        """Depends on an upstream service."""
        if not up["ok"]:
            raise TransientError("503")
        return args.n

    def agent_calling(times: int) -> Agent:
        def script(request: ModelRequest) -> ModelResponse:
            done = sum(1 for m in request.messages if m.role == "tool")
            return call("upstream", {"n": done}) if done < times else reply("stop")
        from tether import Action, RetryPolicy, Rule
        # Keep the tool enabled across failures so the breaker is what refuses.
        policy = RetryPolicy().with_rule("transient_tool_error",
                                         Rule(Action.RETRY_TOOL, then=Action.OBSERVE))
        return Agent(name=f"a{times}", model=ScriptedModel(script), tools=[upstream],
                     retry=policy, budgets=Budgets(failure_streak_limit=None))

    rt = Runtime(MemoryStore(), clock=clock, seed=1, breakers=breakers)
    result, events, _ = run(agent_calling(3), runtime=rt)
    assert result.status is RunStatus.COMPLETED
    refused = decisions(events, "breaker_open")
    assert len(refused) == 1 and refused[0]["tool"] == "upstream"
    assert breakers["upstream"].state is BreakerState.OPEN
    clock.advance(61)
    up["ok"] = True
    result, events, _ = run(agent_calling(1), runtime=rt)
    assert decisions(events, "breaker_open") == []
    assert breakers["upstream"].state is BreakerState.CLOSED


def test_budget_decisions_replay_without_being_recomputed() -> None:
    """A run resumed after its budget decision takes the decision from the journal, even when
    the agent's budgets have since been relaxed."""
    store = MemoryStore()
    agent = Agent(name="a", model=counting_model(), tools=[count],
                  budgets=Budgets(max_steps=2))
    first = asyncio.run(Runtime(store, clock=VirtualClock(), seed=4).start(agent, "go"))
    # The worker died after journaling the decision and before finishing the run.
    prefix = [e for e in store.read(first.run_id) if e.kind != "run_finished"]
    crashed = MemoryStore()
    crashed.append(first.run_id, prefix, expected_last_seq=0)
    relaxed = Agent(name="a", model=counting_model(), tools=[count],
                    budgets=Budgets(max_steps=100))
    again = asyncio.run(Runtime(crashed, clock=VirtualClock(), workflows=[relaxed]).resume(
        first.run_id))
    assert again.status is RunStatus.FAILED and again.reason == first.reason
