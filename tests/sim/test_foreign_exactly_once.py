"""tether_tools in a foreign agent's hands give each write once, for every effect class, with
or without a business key, under a timeout after commit, a worker crash and a 5xx; what tether
had to escalate stays escalated whatever the framework does next."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import pytest
from pydantic import BaseModel

import tether
from tether.models.base import Message
from tether.sim import Environment, run_episode, scenario_from_dict
from tether.sim.foreign import FinalReply, Replier, tether_tools

WORLD = {"payments": {
    "customers": [{"id": "cus_1", "email": "ann@example.com", "name": "Ann"}],
    "charges": [{"id": "ch_1", "customer": "cus_1", "amount": 4_999}]}}

FAULTS = {
    "timeout_after": {"kind": "timeout_after", "target": "payments.create_refund",
                      "on_call": [1]},
    "crash": {"kind": "crash", "target": "payments.create_refund", "on_call": [1]},
    "crash_before": {"kind": "crash", "point": "before", "target": "payments.create_refund",
                     "on_call": [1]},
    "error_500": {"kind": "error", "target": "payments.create_refund", "on_call": [1],
                  "status": 500},
}


class RefundArgs(BaseModel):
    charge: str
    amount: int = 1_000


def refund_tool(env: Environment, effect: str, business_key: bool) -> tether.Tool[Any, Any]:
    """A refund through the payments client as a tool of ``effect``: the key reaches the
    provider only when it deduplicates by it (idempotent); a reconcilable one looks it up."""
    payments = env.client("payments")

    async def look_up(ctx: tether.ToolContext, key: str) -> Any:
        found = await payments.list_refunds(charge="ch_1")
        return found[0] if found else None

    @tether.tool(name="refund", effect=effect, args=RefundArgs, result=dict,
                 key=(lambda a: f"refund:{a.charge}") if business_key else None,
                 reconcile=look_up if effect == "reconcilable" else None)
    async def refund(ctx: tether.ToolContext, args: RefundArgs) -> Any:
        """Refund part of a charge."""
        keyed = effect == "idempotent" and ctx.idempotency_key
        return await payments.create_refund(
            args.charge, amount=args.amount,
            **({"idempotency_key": ctx.idempotency_key} if keyed else {}))

    return refund


class RetryingDesk:
    """A framework's agent: it refunds the order the user names, retrying any failure of the
    tool up to three times, as frameworks do; rebuilt after a crash, it does so again."""

    def __init__(self, refund: Any) -> None:
        self.refund = refund

    async def reply(self, conversation: Sequence[Message]) -> str:
        said = " ".join(m.content for m in conversation if m.role == "user")
        found = re.search(r"ch_\w+", said)
        if found is None:
            return "Which order is it?"
        for _ in range(3):
            try:
                done = await self.refund(charge=found.group())
            except Exception as exc:
                failure = exc
                continue
            return FinalReply(f"Refunded {done['charge']} ({done['id']}). Goodbye!")
        return FinalReply(f"The refund failed: {failure}")


def _desk(effect: str, business_key: bool) -> Any:
    def factory(env: Environment) -> Replier:
        return RetryingDesk(tether_tools([refund_tool(env, effect, business_key)])[0])

    return factory


def _scenario(fault: str) -> Any:
    return scenario_from_dict({
        "name": "foreign-exactly-once", "agent": "unused:agent",
        "task": "My order arrived broken; please refund it.",
        "persona": {"name": "Ann", "known_facts": {"order": "ch_1"}, "patience": 3},
        "world": WORLD, "faults": [FAULTS[fault]],
        "invariants": [{"exactly_once": {"effect": "payments.refund"}}]})


def _refunds(result: Any) -> int:
    return sum(1 for e in result.ledger if (e["service"], e["operation"]) ==
               ("payments", "refund"))


@pytest.mark.parametrize("business_key", [True, False], ids=["business_key", "no_key"])
@pytest.mark.parametrize("effect", ["idempotent", "reconcilable", "unsafe"])
@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_each_write_is_made_once_whatever_the_fault_and_the_frameworks_retries(
        fault: str, effect: str, business_key: bool) -> None:
    """One refund per episode under default: a write settled by tether (re-issued, looked
    up, recovered after a crash) is not made again by the framework's retry or by the agent
    rebuilt after the crash; an unsafe write whose outcome is unknown escalates the episode."""
    result = run_episode(_scenario(fault), 1, "default", agent=_desk(effect, business_key))
    assert result.firings
    unknown = effect == "unsafe" and fault != "error_500"
    # (An unsafe write cut off by a crash before it reached the service stays unknown to
    # tether: escalated, and never sent again.)
    expected = 0 if unknown and fault == "crash_before" else 1
    assert _refunds(result) == expected, (result.status, result.reason, result.answer)
    assert result.status == ("escalated" if unknown else "completed"), result.reason
    if unknown:
        assert "refund" in result.reason and "unsafe" in result.reason
        refund_calls = [c for c in result.calls if c.target == "payments.create_refund"]
        assert len(refund_calls) <= 1  # the framework's retries were refused unsent
    else:
        assert result.ok and result.answer.startswith("Refunded ch_1"), result.answer
