"""Every decision, through any public path, passes the same checks: role, request, deadline."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import BaseModel

import tether
from tether.errors import UsageError
from tether.events import RunStatus, WaitResolved
from tether.models.base import ModelRequest, ModelResponse
from tether.models.scripted import call, reply
from tether.policy.rules import argument_limit


class PayArgs(BaseModel):
    amount: int


def _agent(paid: list[int], **policy: Any) -> tether.Agent:
    @tether.tool(effect="idempotent", key=lambda a: f"pay:{a.amount}")
    async def payout(ctx: tether.ToolContext, args: PayArgs) -> dict[str, int]:
        paid.append(args.amount)
        return {"paid": args.amount}

    def script(req: ModelRequest) -> ModelResponse:
        if req.messages[-1].role == "tool":
            return reply("saw: " + (req.messages[-1].content or ""))
        return call("payout", {"amount": 5000})

    return tether.Agent(
        name="payer", model=tether.ScriptedModel(script), tools=[payout],
        policy=tether.Policy.of(argument_limit("payout", "amount", 100, role="supervisor"),
                                **policy))


def _held(agent: tether.Agent) -> tuple[tether.Runtime, tether.VirtualClock, str]:
    clock = tether.VirtualClock(start=0.0)
    rt = tether.Runtime(store=tether.MemoryStore(), clock=clock, seed=1, workflows=[agent])
    result = asyncio.run(rt.start(agent, tether.Task(text="pay", principal="ada"), run_id="r"))
    assert result.status is RunStatus.WAITING and result.waiting_for is not None
    return rt, clock, result.waiting_for


@pytest.mark.parametrize("value", [{"approved": True, "role": None},
                                   {"approved": True, "role": "intern"}, True])
def test_resolve_refuses_an_approval_lacking_the_required_role(value: Any) -> None:
    """Runtime.resolve refuses a role-less approval; the request stays open for a proper one."""
    paid: list[int] = []
    rt, _, key = _held(_agent(paid))
    with pytest.raises(UsageError, match="needs an approval in role 'supervisor'"):
        rt.resolve("r", key, value, by="mallory")
    assert not any(isinstance(e, WaitResolved) for e in rt.store.read("r"))
    assert [p.key for p in rt.pending_approvals("r")] == [key]
    rt.approve("r", by="sam", role="supervisor")
    assert asyncio.run(rt.resume("r")).status is RunStatus.COMPLETED
    assert paid == [5000]


def test_a_denial_needs_no_role() -> None:
    """Refusing a held call through resolve is accepted without a role."""
    paid: list[int] = []
    rt, _, key = _held(_agent(paid))
    rt.resolve("r", key, {"approved": False}, by="dan")
    assert asyncio.run(rt.resume("r")).status is RunStatus.COMPLETED
    assert paid == []


def test_an_approval_cannot_be_given_before_it_is_requested() -> None:
    """resolve(early=True) refuses an approval key the run has not asked for yet."""
    paid: list[int] = []
    rt, _, _ = _held(_agent(paid))
    with pytest.raises(UsageError, match="has not requested yet"):
        rt.resolve("r", "approval:99", {"approved": True, "role": "supervisor"}, by="m",
                    early=True)
    assert not any(isinstance(e, WaitResolved) for e in rt.store.read("r"))


def test_other_keys_may_still_be_resolved_early() -> None:
    """early=True still delivers a value for a non-approval key before its wait."""
    rt, _, _ = _held(_agent([]))
    assert rt.resolve("r", "signal:go", 1, by="ops", early=True).key == "signal:go"


@pytest.mark.parametrize("resumed_in_between", [False, True])
def test_a_decision_after_the_wait_deadline_is_refused(resumed_in_between: bool) -> None:
    """Past approval_timeout_s an approval is refused, whether or not a worker looked."""
    paid: list[int] = []
    rt, clock, key = _held(_agent(paid, approval_timeout_s=3600, on_timeout="deny"))
    clock.advance(5400)
    if resumed_in_between:
        asyncio.run(rt.recover())
    clock.advance(1800)
    # Refused either way: the run finished on its timeout course, or the wait is past its end.
    with pytest.raises(UsageError, match=r"expired|already completed"):
        rt.resolve("r", key, {"approved": True, "role": "supervisor"}, by="sam")
    if not rt.store.get_run("r").status.finished:  # type: ignore[union-attr]
        asyncio.run(rt.resume("r"))
    assert rt.store.get_run("r").status is RunStatus.COMPLETED  # type: ignore[union-attr]
    assert paid == []
