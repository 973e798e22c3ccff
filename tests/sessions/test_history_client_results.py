"""A session's derived history answers client-tool calls with the results the caller gave, as
the model read them in the live run (not with "no result recorded")."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import BaseModel

from tether import Agent, ModelRequest, ModelResponse, Runtime, ScriptedModel, ToolCall, tool
from tether.clock import VirtualClock
from tether.models.scripted import reply
from tether.runtime.client_tools import client_tool
from tether.sessions import Sessions


class Question(BaseModel):
    question: str


class Answer(BaseModel):
    confirmed: bool


class OrderRef(BaseModel):
    order_id: str


def _agent(calls: list[ToolCall], trust: str, seen: list[ModelRequest]) -> Agent:
    @tool
    def lookup(tc: Any, args: OrderRef) -> dict[str, Any]:
        """Look an order up."""
        return {"order_id": args.order_id, "amount": 1200}

    confirm = client_tool("confirm", args=Question, result=Answer, trust=trust,
                          description="Ask the customer in the app.")

    def script(request: ModelRequest) -> ModelResponse:
        seen.append(request)
        if not any(m.role == "tool" for m in request.messages):
            return ModelResponse(finish_reason="tool_calls", tool_calls=tuple(calls))
        return reply("done")

    return Agent(name="asker", model=ScriptedModel(script), tools=[lookup, confirm])


def _tool_messages(messages: Any) -> list[tuple[str | None, str, str | None, str | None]]:
    return [(m.tool_call_id, m.content, m.source, m.trust) for m in messages
            if m.role == "tool"]


@pytest.mark.parametrize(("calls", "answers", "trust"), [
    ([ToolCall(id="q1", name="confirm", arguments='{"question": "ok?"}')],
     {"q1": {"confirmed": True}}, "user"),
    ([ToolCall(id="s1", name="lookup", arguments='{"order_id": "o1"}'),
      ToolCall(id="q1", name="confirm", arguments='{"question": "a?"}'),
      ToolCall(id="q2", name="confirm", arguments='{"question": "b?"}')],
     {"q1": {"confirmed": True}, "q2": {"confirmed": False}}, "external"),
])
def test_client_results_in_history_are_what_the_model_read(
        calls: list[ToolCall], answers: dict[str, Any], trust: str) -> None:
    """Client calls (alone, or mixed with a server call) answered by continue_execution appear
    in the session's history with the caller's result, source and the tool's trust, exactly
    as the loop showed them to the model."""
    seen: list[ModelRequest] = []
    agent = _agent(calls, trust, seen)
    sessions = Sessions(Runtime(clock=VirtualClock(), seed=1), agents=[agent])
    sessions.create("s", agent=agent)
    waiting = asyncio.run(sessions.turn("s", "go"))
    assert waiting.run.status.value == "waiting"
    asyncio.run(sessions.runtime.continue_execution(waiting.run.run_id, answers))
    done = asyncio.run(sessions.resume("s"))
    assert done is not None and done.run.status.value == "completed"
    live = _tool_messages(seen[-1].messages)
    assert len(live) == len(calls)
    assert _tool_messages(sessions.session("s").history()) == live
