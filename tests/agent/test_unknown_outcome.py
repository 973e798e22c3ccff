"""Unknown stays unknown: an ambiguous write is never reported to the model as a failure."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import BaseModel

from tether import (
    Agent,
    AuthExpired,
    Crash,
    MemoryStore,
    ModelRequest,
    ModelResponse,
    ProbePoint,
    RetryPolicy,
    RunStatus,
    Runtime,
    ScriptedModel,
    ToolContext,
    TransientError,
    VirtualClock,
    tool,
)
from tether.events import ToolAmbiguous
from tether.models.scripted import call, reply
from tether.runtime.breaker import Breakers
from tether.runtime.tools import Tool
from tether.tracing.render import trace_to_json
from tether.tracing.timeline import build_trace

from .helpers import run


class Args(BaseModel):
    order_id: str


class Refunds:
    """A payments double: the first request commits and its answer is lost; every later one
    fails with ``later`` (a 429, a 503 …) before reaching the provider."""

    def __init__(self, later: BaseException) -> None:
        self.later = later
        self.effects: list[str] = []

    def tool(self, *, reconcilable: bool = False) -> Tool[Any, Any]:
        async def refund(ctx: ToolContext, args: Args) -> str:
            if ctx.attempt == 1:
                self.effects.append(ctx.idempotency_key)
                raise TimeoutError("the answer was lost")
            raise self.later

        made = tool(name="refund", args=Args, result=str, effect="idempotent",
                    retry_delay_s=0.0, key=lambda a: f"refund:{a.order_id}")(refund)
        if reconcilable:
            made.reconcile = lambda ctx, key: "re_1" if key in self.effects else None
        return made


def refund_then_answer(seen: list[ModelRequest]) -> ScriptedModel:
    def script(request: ModelRequest) -> ModelResponse:
        seen.append(request)
        tool_messages = [m for m in request.messages if m.role == "tool"]
        if not tool_messages:
            return call("refund", {"order_id": "A-1"})
        if "error" in tool_messages[-1].content:
            return reply("Sorry, the refund failed.")
        return reply("The refund was issued.")

    return ScriptedModel(script)


FAILURES = [
    pytest.param(TransientError("HTTP 429", retry_after_s=2.0), id="throttled"),
    pytest.param(TransientError("HTTP 503"), id="unavailable"),
    pytest.param(ConnectionResetError("reset"), id="connection-lost"),
    pytest.param(AuthExpired("token expired", dependency="payments"), id="auth-expired"),
    pytest.param(ValueError("409: a request with this key is in progress"), id="rejected"),
]


@pytest.mark.parametrize("later", FAILURES)
def test_a_write_whose_reissues_keep_failing_escalates_as_unknown(later: BaseException) -> None:
    """Committed, timed out, then every re-issue refused: escalated, the model told nothing
    failed, the journal's last word at the call is tool_ambiguous, the trace says unknown."""
    refunds, seen = Refunds(later), list[ModelRequest]()
    agent = Agent(name="a", model=refund_then_answer(seen), tools=[refunds.tool()])
    result, events, _ = run(agent)
    assert refunds.effects == ["refund:A-1"]
    assert result.status is RunStatus.ESCALATED
    assert "unknown" in result.reason and "refund:A-1" in result.reason
    assert not any(m.role == "tool" for r in seen for m in r.messages)
    pos = next(e.pos for e in events if isinstance(e, ToolAmbiguous))
    assert isinstance([e for e in events if getattr(e, "pos", None) == pos][-1], ToolAmbiguous)
    trace = build_trace(result.run_id, events)
    (item,) = [i for i in trace.items if i.kind == "tool"]
    assert item.status == "unknown"
    shown = trace_to_json(trace)
    assert shown["status"] == "escalated"
    assert [i["status"] for i in shown["items"] if i["kind"] == "tool"] == ["unknown"]


def test_a_spent_retry_budget_leaves_the_write_unknown_not_failed() -> None:
    """The run's retry budget running out while settling a write: still unknown, escalated."""
    refunds, seen = Refunds(TransientError("HTTP 429")), list[ModelRequest]()
    agent = Agent(name="a", model=refund_then_answer(seen), tools=[refunds.tool()],
                  retry=RetryPolicy(retry_budget=1))
    result, _, _ = run(agent)
    assert result.status is RunStatus.ESCALATED and "retry budget" in result.reason
    assert not any(m.role == "tool" for r in seen for m in r.messages)


def test_a_write_that_can_be_looked_up_is_reconciled_instead() -> None:
    """With a lookup, the same storm ends in the refund found: the model reads the result."""
    refunds, seen = Refunds(TransientError("HTTP 429")), list[ModelRequest]()
    agent = Agent(name="a", model=refund_then_answer(seen),
                  tools=[refunds.tool(reconcilable=True)])
    result, _, _ = run(agent)
    assert result.status is RunStatus.COMPLETED
    assert result.result["answer"] == "The refund was issued."
    assert refunds.effects == ["refund:A-1"]


def test_a_lookup_that_finds_nothing_lets_the_certain_failure_be_told() -> None:
    """If the lookup says it never happened, the failure is certain and the model hears it."""
    seen: list[ModelRequest] = []

    async def refund(ctx: ToolContext, args: Args) -> str:
        if ctx.attempt == 1:
            raise TimeoutError("lost before the provider saw it")
        raise TransientError("HTTP 429")

    lost = tool(name="refund", args=Args, result=str, effect="idempotent", retry_delay_s=0.0,
                key=lambda a: f"refund:{a.order_id}")(refund)
    lost.reconcile = lambda ctx, key: None
    result, _, _ = run(Agent(name="a", model=refund_then_answer(seen), tools=[lost]),
                       runtime=Runtime(MemoryStore(), clock=VirtualClock(), seed=3))
    assert result.status is RunStatus.COMPLETED
    assert result.result["answer"] == "Sorry, the refund failed."


def test_an_open_breaker_does_not_refuse_the_resumed_write_at_its_position() -> None:
    """A write interrupted mid-flight is settled on resume even if its breaker is open: the
    call at that position is already under way, and a refusal would read as a failure."""
    clock, store, seen = VirtualClock(), MemoryStore(), list[ModelRequest]()
    breakers = Breakers(clock)
    effects: list[str] = []

    async def refund(ctx: ToolContext, args: Args) -> str:
        if ctx.idempotency_key not in effects:  # the provider deduplicates by key
            effects.append(ctx.idempotency_key)
        return "re_1"

    made = tool(name="refund", args=Args, result=str, effect="idempotent",
                key=lambda a: f"refund:{a.order_id}")(refund)
    made.reconcile = lambda ctx, key: "re_1" if key in effects else None
    agent = Agent(name="a", model=refund_then_answer(seen), tools=[made])

    def crash(point: ProbePoint) -> None:
        if point.point == "after_call":
            raise Crash()

    with pytest.raises(Crash):
        asyncio.run(Runtime(store, clock=clock, seed=1, probe=crash, breakers=breakers).start(
            agent, "refund A-1"))
    for _ in range(breakers.failure_threshold):
        breakers["refund"].record(ok=False)
    (result,) = asyncio.run(Runtime(store, clock=clock, workflows=[agent],
                                    breakers=breakers).recover())
    assert result.status is RunStatus.COMPLETED
    assert result.result["answer"] == "The refund was issued." and effects == ["refund:A-1"]
