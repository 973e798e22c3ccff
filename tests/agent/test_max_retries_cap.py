"""Budgets.max_retries is enforced when a retry would be made, not after the call succeeded."""

from __future__ import annotations

from typing import Any, Literal

import pytest
from pydantic import BaseModel

from tether import (
    Agent,
    AuthExpired,
    Budgets,
    ModelRequest,
    ModelResponse,
    RunStatus,
    ScriptedModel,
    ToolContext,
    TransientError,
    tool,
)
from tether.models.scripted import call, reply

from .helpers import run


class Args(BaseModel):
    n: int


def flaky_agent(attempts: list[int], succeed_at: int, budgets: Budgets) -> Agent:
    @tool(effect="read", attempts=6, retry_delay_s=0.0)
    async def flaky(ctx: ToolContext, args: Args) -> dict[str, Any]:
        attempts.append(ctx.attempt)
        if ctx.attempt < succeed_at:
            raise TransientError("503")
        return {"ok": 1}

    def script(request: ModelRequest) -> ModelResponse:
        if request.messages[-1].role == "tool":
            return reply("done")
        return call("flaky", {"n": 1})

    return Agent(name="a", model=ScriptedModel(script), tools=[flaky], budgets=budgets)


@pytest.mark.parametrize(("on_breach", "status"), [("stop", RunStatus.FAILED),
                                                   ("escalate", RunStatus.ESCALATED)])
def test_no_retry_is_made_past_max_retries(on_breach: Literal["stop", "escalate"],
                                           status: RunStatus) -> None:
    """With max_retries=1 the call is tried twice, then the run stops (or escalates) naming
    the limit."""
    attempts: list[int] = []
    result, _, _ = run(flaky_agent(attempts, 5, Budgets(max_retries=1, on_breach=on_breach)))
    assert attempts == [1, 2]
    assert result.status is status and "max_retries" in result.reason


def test_a_call_that_succeeded_within_max_retries_completes() -> None:
    """Retries up to the cap are made and a call that then succeeds completes the run."""
    attempts: list[int] = []
    result, _, _ = run(flaky_agent(attempts, 3, Budgets(max_retries=2)))
    assert attempts == [1, 2, 3] and result.status is RunStatus.COMPLETED


def test_no_credential_refresh_is_made_past_max_retries() -> None:
    """A refresh-and-call-again is a retry: past max_retries it is not made and the run stops
    naming the limit."""
    refreshes: list[str] = []

    @tool(effect="read", attempts=1)
    async def expiring(ctx: ToolContext, args: Args) -> dict[str, Any]:
        raise AuthExpired("token expired")

    async def refresh(dependency: str) -> None:
        refreshes.append(dependency)

    def script(request: ModelRequest) -> ModelResponse:
        if request.messages[-1].role == "tool":
            return reply("done")
        return call("expiring", {"n": 1})

    agent = Agent(name="a", model=ScriptedModel(script), tools=[expiring],
                  refresh_auth=refresh, budgets=Budgets(max_retries=1))
    result, _, _ = run(agent)
    assert refreshes == ["expiring"]
    assert result.status is RunStatus.FAILED and "max_retries" in result.reason
