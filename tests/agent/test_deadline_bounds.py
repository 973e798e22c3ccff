"""The run's deadline bounds what the harness itself waits on: approvals, refresh, compression."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import BaseModel

import tether
from tether.errors import UsageError
from tether.events import RunStatus, WaitStarted
from tether.models.base import ModelRequest, ModelResponse
from tether.models.scripted import call, reply
from tether.policy.rules import argument_limit
from tether.runtime.timeouts import within


class PayArgs(BaseModel):
    amount: int


def _held_agent(paid: list[int], on_breach: str) -> tether.Agent:
    @tether.tool(effect="idempotent", key=lambda a: f"pay:{a.amount}")
    async def payout(ctx: tether.ToolContext, args: PayArgs) -> dict[str, int]:
        paid.append(args.amount)
        return {"paid": args.amount}

    def script(req: ModelRequest) -> ModelResponse:
        if req.messages[-1].role == "tool":
            return reply("done")
        return call("payout", {"amount": 5000})

    return tether.Agent(
        name="payer", model=tether.ScriptedModel(script), tools=[payout],
        budgets=tether.Budgets(max_duration_s=60, on_breach=on_breach),  # type: ignore[arg-type]
        policy=tether.Policy.of(argument_limit("payout", "amount", 100, role="supervisor")))


@pytest.mark.parametrize(("on_breach", "status"), [("stop", RunStatus.FAILED),
                                                    ("escalate", RunStatus.ESCALATED)])
def test_an_approval_wait_ends_with_the_runs_time(on_breach: str, status: RunStatus) -> None:
    """A run held for approval past its duration budget ends per on_breach; no late approval."""
    paid: list[int] = []
    agent = _held_agent(paid, on_breach)
    clock = tether.VirtualClock(start=0.0)
    rt = tether.Runtime(store=tether.MemoryStore(), clock=clock, seed=1, workflows=[agent])
    held = asyncio.run(rt.start(agent, tether.Task(text="pay", principal="ada"), run_id="r"))
    assert held.status is RunStatus.WAITING
    wait = next(e for e in rt.store.read("r") if isinstance(e, WaitStarted))
    assert wait.deadline == 60.0
    clock.advance(86_400)
    with pytest.raises(UsageError):
        rt.approve("r", by="sam", role="supervisor")
    [ended] = asyncio.run(rt.recover())
    assert ended.status is status
    assert "max_duration_s" in ended.reason and "approval of 'payout'" in ended.reason
    assert paid == []


def _stalled_refresh_agent(clock: tether.VirtualClock) -> tether.Agent:
    async def refresh(dependency: str) -> None:
        await clock.sleep(1000)  # the identity provider stalls

    def script(req: ModelRequest) -> ModelResponse:
        raise tether.AuthExpired("token expired")

    return tether.Agent(name="a", model=tether.ScriptedModel(script), tools=[],
                        refresh_auth=refresh, budgets=tether.Budgets(max_duration_s=60))


class _StalledSummarizer:
    name = "summarizer"

    def __init__(self, clock: tether.VirtualClock) -> None:
        self.clock = clock

    async def complete(self, request: ModelRequest) -> ModelResponse:
        await self.clock.sleep(1000)
        return ModelResponse(text="summary")


class _Args(BaseModel):
    order_id: str


def _stalled_compress_agent(clock: tether.VirtualClock) -> tether.Agent:
    turns = {"n": 0}

    @tether.tool(effect="read")
    async def fetch(ctx: tether.ToolContext, args: _Args) -> str:
        return "y" * 2000

    def script(req: ModelRequest) -> ModelResponse:
        turns["n"] += 1
        if turns["n"] > 3:
            return reply("done")
        return call("fetch", {"order_id": "x" * 100 + str(turns["n"])}, call_id=f"c{turns['n']}")

    window = tether.ContextWindow(max_tokens=1500,
                                  compressor=tether.summarize_with_model(
                                      _StalledSummarizer(clock)))
    return tether.Agent(name="a", model=tether.ScriptedModel(script), tools=[fetch],
                        window=window, budgets=tether.Budgets(max_duration_s=60))


@pytest.mark.parametrize("build", [_stalled_refresh_agent, _stalled_compress_agent],
                         ids=["refresh_auth", "compress"])
def test_harness_calls_stop_at_the_runs_deadline(build: Any) -> None:
    """A stalled refresh hook or summarising model ends the run at its deadline, not after."""
    clock = tether.VirtualClock(start=0.0)
    rt = tether.Runtime(store=tether.MemoryStore(), clock=clock, seed=1)
    result = asyncio.run(rt.start(build(clock), "go"))
    assert result.status is RunStatus.FAILED
    assert "max_duration_s" in result.reason
    assert clock.now() <= 60.0 + 1e-9


def test_a_timed_out_call_that_ignores_cancellation_is_waited_for_a_bounded_grace() -> None:
    """within() raises TimeoutError after timeout + a short grace, though the work lingers."""
    clock = tether.VirtualClock(start=0.0)

    async def stubborn() -> None:
        try:
            await clock.sleep(10_000)
        except asyncio.CancelledError:
            await clock.sleep(900)  # a slow cleanup on cancel
            raise

    async def scenario() -> None:
        with pytest.raises(TimeoutError):
            await within(clock, stubborn(), 5)

    asyncio.run(scenario())
    assert 5.0 <= clock.now() < 900.0
