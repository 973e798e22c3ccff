"""Budgets.max_retries is enforced when a retry would be made, not after the call succeeded."""

from __future__ import annotations

from typing import Any, Literal

import pytest
from pydantic import BaseModel

from tether import (
    Agent,
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
