"""A turn runs on behalf of its principal and roles, before and after a crash."""

from __future__ import annotations

import asyncio

import pytest

from tether import Crash
from tether.agent.agent import Agent
from tether.models.base import ModelRequest, ModelResponse
from tether.models.scripted import ScriptedModel, call, reply
from tether.policy.policy import Policy
from tether.policy.rules import require_role
from tether.runtime.tools import ToolContext, tool
from tether.store.memory import MemoryStore

from .session_helpers import CrashingStore, Query, sessions_on


def guarded_agent(calls: list[str]) -> Agent:
    """An agent whose one write needs the ``clerk`` role, and that says how its call went."""
    @tool(name="close_ticket", args=Query, effect="idempotent", key=lambda a: a.q)
    async def close_ticket(ctx: ToolContext, args: Query) -> dict[str, str]:
        calls.append(args.q)
        return {"closed": args.q}

    def script(request: ModelRequest) -> ModelResponse:
        last = request.messages[-1]
        if last.role == "user":
            return call("close_ticket", {"q": last.content}, call_id="c1")
        return reply(f"tool said: {last.content}")

    policy = Policy(rules=[require_role("clerk", tools=["close_ticket"])])
    return Agent(name="desk", model=ScriptedModel(script), tools=[close_ticket], policy=policy)


def test_the_turns_principal_and_roles_reach_the_policy() -> None:
    """A turn for a principal holding the role may write; one for a principal without it is
    refused by the policy, whatever the message says."""
    calls: list[str] = []
    sessions = sessions_on(MemoryStore(), guarded_agent(calls))
    sessions.create("s", agent="desk")
    denied = asyncio.run(sessions.turn("s", "T-1", principal="bob"))
    allowed = asyncio.run(sessions.turn("s", "T-2", principal="ada", roles=["clerk"]))
    assert calls == ["T-2"]
    assert "closed" not in denied.run.result["answer"]
    assert "closed" in allowed.run.result["answer"]
    turns = sessions.session("s").turns
    assert [(t.principal, t.roles) for t in turns] == [("bob", ()), ("ada", ("clerk",))]


@pytest.mark.parametrize("crash_at", [1, 2])
def test_a_turn_resumed_after_a_crash_runs_for_the_same_principal(crash_at: int) -> None:
    """A worker dying after turn_started (before or as the run is created): the next worker
    starts or resumes the run for the principal and roles the turn was recorded with, not
    for anonymous."""
    calls: list[str] = []
    store = MemoryStore()
    agent = guarded_agent(calls)
    sessions_on(store, agent).create("s", agent="desk")
    crashing = sessions_on(CrashingStore(store, crash_at, after=True), agent)  # type: ignore[arg-type]
    with pytest.raises(Crash):
        asyncio.run(crashing.turn("s", "T-9", principal="ada", roles=["clerk"]))
    finished = asyncio.run(sessions_on(store, agent).resume("s"))
    assert finished is not None
    assert calls == ["T-9"]
    started = store.read("session:s:turn:1")[0]
    assert started.input["principal"] == "ada" and started.input["roles"] == ["clerk"]
