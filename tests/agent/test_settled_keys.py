"""A key whose earlier request was answered is settled: a later refusal under it is a failure."""

from __future__ import annotations

from typing import Any

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
    order_id: str


def refund_twice(later: BaseException) -> tuple[Agent, list[str]]:
    """The first refund succeeds; the model asks again under the same business key and every
    later request fails with ``later``, which says it was not applied."""
    seen: list[str] = []
    calls = {"n": 0}

    async def refund(ctx: ToolContext, args: Args) -> dict[str, Any]:
        calls["n"] += 1
        if calls["n"] == 1:
            return {"id": "re_1"}
        raise later

    made = tool(name="refund", args=Args, effect="idempotent", attempts=3, retry_delay_s=0.0,
                key=lambda a: f"refund:{a.order_id}")(refund)

    def script(request: ModelRequest) -> ModelResponse:
        tools = [m for m in request.messages if m.role == "tool"]
        if len(tools) >= 2:
            seen.append(tools[-1].content)
            return reply("done")
        return call("refund", {"order_id": "o1"}, call_id=f"c{len(tools)}")

    agent = Agent(name="a", model=ScriptedModel(script), tools=[made],
                  budgets=Budgets(repeat_limit=5))
    return agent, seen


@pytest.mark.parametrize("later", [
    pytest.param(ValueError("400: charge already refunded"), id="rejected"),
    pytest.param(TransientError("503"), id="transient"),
    pytest.param(AuthExpired("token expired"), id="auth"),
])
def test_refusal_under_an_answered_key_is_reported_not_escalated(later: BaseException) -> None:
    """A refused call under a key whose earlier request returned a result reaches the model as
    an error; the run does not escalate for an outcome that is known."""
    agent, seen = refund_twice(later)
    result, _, _ = run(agent)
    assert result.status is RunStatus.COMPLETED, result.reason
    assert seen and seen[-1].startswith("error")
