"""Journals for the tracing tests, made by running real tether code on a virtual clock.

* :func:`refund_run` — a workflow with a step, a read tool (0.2 s), a 30 s durable sleep and an
  idempotent write whose first attempt times out (0.5 s), backs off 1 s and is re-issued.
* :func:`failing_run` — a write whose handler raises ``ValueError``: the run fails.
* :func:`approval_run` — a run that waits for ``approval`` and suspends.
* :func:`agent_journal` — the events an agent loop journals (a rate-limited model call, the
  decision to back off, the durable sleep, a model call asking for a tool, the tool, the final
  answer), appended through a real :class:`RunJournal` so no model or agent code is needed.

Times are offsets from ``T0``, the virtual clock's origin.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from tether import RunContext, Runtime, Tool, ToolContext, VirtualClock, tool, workflow
from tether.events import (
    Decision,
    ModelCalled,
    ModelFailed,
    RunFinished,
    RunStarted,
    RunStatus,
    TimerFired,
    TimerStarted,
    ToolResult,
)
from tether.models.base import ModelResponse, ToolCall, Usage
from tether.runtime.journal import Listener, RunJournal
from tether.store.base import Store

T0 = 1_767_225_600.0  # VirtualClock's default origin


class OrderArgs(BaseModel):
    order_id: str


def _tools(clock: VirtualClock) -> tuple[Tool[Any, Any], Tool[Any, Any], Tool[Any, Any]]:
    attempts = {"n": 0}

    async def lookup(ctx: ToolContext, args: OrderArgs) -> dict[str, Any]:
        await clock.sleep(0.2)
        return {"order_id": args.order_id, "amount_cents": 1250}

    async def refund(ctx: ToolContext, args: OrderArgs) -> dict[str, Any]:
        await clock.sleep(0.5)
        attempts["n"] += 1
        if attempts["n"] == 1:
            raise TimeoutError("bank did not answer")
        return {"refund_id": f"re_{ctx.idempotency_key}"}

    def broken(ctx: ToolContext, args: OrderArgs) -> dict[str, Any]:
        raise ValueError("order is closed")

    return (
        tool(name="lookup_order", args=OrderArgs, result=dict[str, Any])(lookup),
        tool(name="issue_refund", effect="idempotent", key=lambda a: f"refund:{a.order_id}",
             retry_delay_s=1.0, args=OrderArgs, result=dict[str, Any])(refund),
        tool(name="close_order", effect="idempotent", args=OrderArgs,
             result=dict[str, Any])(broken),
    )


def refund_run(store: Store, listeners: Sequence[Listener] = ()) -> str:
    """Run the refund workflow to completion; returns its run id."""
    clock = VirtualClock(start=T0)
    lookup, refund, _ = _tools(clock)

    @workflow(name="refund")
    async def flow(ctx: RunContext, order_id: str) -> str:
        await ctx.step("validate", lambda: order_id.upper())
        await ctx.call_tool(lookup, {"order_id": order_id})
        await ctx.sleep(30)
        done = await ctx.call_tool(refund, {"order_id": order_id})
        return str(done["refund_id"])

    runtime = Runtime(store, clock=clock, seed=3, listeners=listeners)
    result = asyncio.run(runtime.start(flow, "o-1"))
    assert result.status is RunStatus.COMPLETED, result
    return result.run_id


def failing_run(store: Store, listeners: Sequence[Listener] = ()) -> str:
    """Run a workflow whose write fails permanently; returns its run id."""
    clock = VirtualClock(start=T0)
    _, _, broken = _tools(clock)

    @workflow(name="close")
    async def flow(ctx: RunContext) -> None:
        await ctx.call_tool(broken, {"order_id": "o-2"})

    result = asyncio.run(Runtime(store, clock=clock, seed=4, listeners=listeners).start(flow))
    assert result.status is RunStatus.FAILED, result
    return result.run_id


@workflow(name="approval_flow")
async def approval_flow(ctx: RunContext) -> str:
    """Wait for a human's approval, then answer with it."""
    answer = await ctx.wait_for("approval", timeout_s=3600)
    return f"approved: {answer}"


def agent_journal(store: Store, listeners: Sequence[Listener] = (), *,
                  run_id: str = "run_agent", finish: bool = True) -> str:
    """Journal an agent run's events as the agent loop does; returns the run id.

    ====  ======  =========================================================================
    pos   t (s)   event
    ====  ======  =========================================================================
    --    0       run_started support_agent, session ``sess-1``
    0     1.5     model_failed (rate_limited) after 1.5 s
    1     1.5     decision ``recover``: back off 2 s
    2     1.5     timer_started; timer_fired at 3.5
    3     5.0     model_called after 1.5 s: 1,000 in / 200 out tokens, $0.030, wants a tool
    4     5.5     tool_result lookup_order after 0.5 s
    5     5.75    model_called after 0.25 s: 30 in / 4 out tokens, $0.012; run_finished
    ====  ======  =========================================================================
    """
    clock = VirtualClock(start=T0)
    journal = RunJournal(store, run_id, clock, listeners=listeners)
    journal.record(RunStarted, workflow="support_agent", input={"question": "where is o-1?"},
                   seed=9, session_id="sess-1")
    clock.advance(1.5)
    journal.record(ModelFailed, pos=0, model="openai:gpt-4o", request_digest="d0",
                   failure="rate_limited", latency_s=1.5,
                   error={"type": "tether.errors.RateLimited", "message": "429: slow down",
                          "data": {"model": "openai:gpt-4o", "retry_after_s": 2.0,
                                   "status": 429}})
    journal.record(Decision, pos=1, name="recover",
                   data={"failure": "rate_limited", "domain": "infrastructure",
                         "message": "RateLimited: 429: slow down", "retry_after_s": 2.0,
                         "action": "backoff", "attempt": 1, "delay_s": 2.0, "reason": ""})
    journal.record(TimerStarted, pos=2, wake_at=clock.now() + 2.0)
    clock.advance(2.0)
    journal.record(TimerFired, pos=2)
    clock.advance(1.5)
    asks = ModelResponse(
        tool_calls=(ToolCall(id="call_1", name="lookup_order", arguments='{"order_id":"o-1"}'),),
        usage=Usage(input_tokens=1_000, output_tokens=200, cached_input_tokens=100),
        model="gpt-4o-2024-08-06", finish_reason="tool_calls",
    )
    journal.record(ModelCalled, pos=3, model="openai:gpt-4o", request_digest="d3",
                   response=asks.model_dump(mode="json"), cost_usd=0.03, latency_s=1.5)
    clock.advance(0.5)
    journal.record(ToolResult, pos=4, tool="lookup_order", result={"status": "shipped"},
                   latency_s=0.5)
    clock.advance(0.25)
    answer = ModelResponse(text="It ships tomorrow.", usage=Usage(input_tokens=30,
                           output_tokens=4), model="gpt-4o-2024-08-06", finish_reason="stop")
    journal.record(ModelCalled, pos=5, model="openai:gpt-4o", request_digest="d5",
                   response=answer.model_dump(mode="json"), cost_usd=0.012, latency_s=0.25)
    if finish:
        journal.record(RunFinished, status=RunStatus.COMPLETED, result="It ships tomorrow.")
    return run_id
