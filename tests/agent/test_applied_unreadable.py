"""A write that returned took effect: an unusable response is told as applied, never as failed."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import BaseModel

from tether import (
    Agent,
    Crash,
    MemoryStore,
    ModelRequest,
    ModelResponse,
    RunStatus,
    Runtime,
    ScriptedModel,
    ToolContext,
    VirtualClock,
    tool,
)
from tether.events import ToolError, ToolResult
from tether.models.scripted import call, reply


class Args(BaseModel):
    order_id: str


class Refund(BaseModel):
    id: str
    amount: int


RESPONSES = [
    pytest.param({"id": "re_1", "raw": b"\xff\xd8"}, id="bytes-not-utf8"),
    pytest.param({"id": "re_1", "raw": 2 ** 20000}, id="int-too-large"),
    pytest.param({"id": "re_1", "amount_cents": 4999}, id="breaks-declared-type"),
]


def refund_agent(response: dict[str, Any], applied: list[str],
                 seen: list[str]) -> Agent:
    """A model that refunds two orders, then answers; each refund applies and returns
    ``response``."""
    async def refund(ctx: ToolContext, args: Args) -> Refund:
        applied.append(ctx.idempotency_key)
        return response  # type: ignore[return-value]

    made = tool(name="refund", args=Args, result=Refund, effect="idempotent",
                key=lambda a: f"refund:{a.order_id}")(refund)

    def script(request: ModelRequest) -> ModelResponse:
        tools = [m.content for m in request.messages if m.role == "tool"]
        if len(tools) < 2:
            return call("refund", {"order_id": f"o{len(tools)}"}, call_id=f"c{len(tools)}")
        seen.extend(tools)
        return reply("Both refunds were issued.")

    return Agent(name="refunds", model=ScriptedModel(script), tools=[made])


@pytest.mark.parametrize("response", RESPONSES)
def test_an_applied_write_with_an_unusable_response_is_told_as_applied(
        response: dict[str, Any]) -> None:
    """The model reads that each write was applied, the tool is not disabled, and the journal
    settles the position with a flagged tool_result (no tool_error)."""
    applied: list[str] = []
    seen: list[str] = []
    rt = Runtime(MemoryStore(), clock=VirtualClock(), seed=1)
    result = asyncio.run(rt.start(refund_agent(response, applied, seen), "refund", run_id="r"))
    assert result.status is RunStatus.COMPLETED, result.reason
    assert applied == ["refund:o0", "refund:o1"]
    assert len(seen) == 2 and all(s.startswith("applied") and "disabled" not in s for s in seen)
    events = rt.store.read("r")
    assert not [e for e in events if isinstance(e, ToolError)]
    assert all(e.unreadable for e in events if isinstance(e, ToolResult))


@pytest.mark.parametrize("response", RESPONSES)
def test_an_applied_write_with_an_unusable_response_replays_the_same(
        response: dict[str, Any]) -> None:
    """After a crash past the flagged result, recovery does not re-issue the write and the
    model reads the same observation."""
    applied: list[str] = []
    live: list[str] = []
    rt = Runtime(MemoryStore(), clock=VirtualClock(), seed=1)
    asyncio.run(rt.start(refund_agent(response, [], live), "refund", run_id="r"))
    store, clock = MemoryStore(), VirtualClock()
    seen: list[str] = []
    agent = refund_agent(response, applied, seen)

    def crash(run_id: str, event: Any) -> None:
        if isinstance(event, ToolResult) and event.pos > 1:
            raise Crash("killed")

    with pytest.raises(Crash):
        asyncio.run(Runtime(store, clock=clock, seed=1, listeners=[crash], owner="w1").start(
            agent, "refund", run_id="r"))
    result = asyncio.run(Runtime(store, clock=clock, seed=1, workflows=[agent],
                                 owner="w1").resume("r"))
    assert result.status is RunStatus.COMPLETED, result.reason
    assert applied == ["refund:o0", "refund:o1"] and seen == live
