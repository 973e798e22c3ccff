"""The agent loop end to end with scripted models: answers, tool calls, replay, determinism."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel

from tether import (
    Agent,
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
from tether.events import ModelCalled, ToolResult, encode
from tether.models.replay import ReplayModel
from tether.models.scripted import call, reply, sequence

from .helpers import kinds, run


class OrderArgs(BaseModel):
    order_id: str


@tool
def lookup_order(ctx: ToolContext, args: OrderArgs) -> dict[str, str]:
    """Look an order up."""
    return {"order_id": args.order_id, "status": "shipped"}


@tool
def track_parcel(ctx: ToolContext, args: OrderArgs) -> dict[str, str]:
    """Where the parcel is."""
    return {"order_id": args.order_id, "at": "depot"}


def support_agent(model: ScriptedModel) -> Agent:
    return Agent(name="support", model=model, tools=[lookup_order, track_parcel],
                 instructions="Answer briefly.")


def test_tool_call_then_answer_is_journaled_as_model_and_tool_calls() -> None:
    """A turn with a tool call and a final answer: two model calls, one tool call, the answer."""
    model = ScriptedModel(sequence([call("lookup_order", {"order_id": "A-1"}),
                                    reply("A-1 has shipped.")]))
    result, events, _ = run(support_agent(model), "Where is A-1?")
    assert result.status is RunStatus.COMPLETED
    assert result.result["answer"] == "A-1 has shipped."
    assert (result.result["model_calls"], result.result["tool_calls"]) == (2, 1)
    assert kinds(events) == ["run_started", "step", "model_called", "tool_result",
                             "model_called", "run_finished"]
    second = [e for e in events if isinstance(e, ModelCalled)][1]
    assert second.response["text"] == "A-1 has shipped."


def test_the_model_sees_instructions_task_and_tool_results_in_order() -> None:
    """Requests carry the system prompt, the task, the assistant's call and the tool result."""
    seen: list[ModelRequest] = []

    def script(request: ModelRequest) -> ModelResponse:
        seen.append(request)
        if len(seen) == 1:
            return call("lookup_order", {"order_id": "A-1"}, call_id="c1")
        return reply("done")

    run(support_agent(ScriptedModel(script)), "Where is A-1?")
    roles = [m.role for m in seen[1].messages]
    assert roles == ["system", "user", "assistant", "tool"]
    tool_message = seen[1].messages[-1]
    assert tool_message.tool_call_id == "c1" and '"status": "shipped"' in tool_message.content
    assert [t.name for t in seen[0].tools] == ["lookup_order", "track_parcel"]
    assert seen[0].tools[0].parameters["required"] == ["order_id"]


def test_parallel_tool_calls_take_positions_in_response_order() -> None:
    """Two calls in one response run concurrently; positions and results follow call order."""
    both = ModelResponse(tool_calls=(
        call("track_parcel", {"order_id": "B-2"}, call_id="t").tool_calls[0],
        call("lookup_order", {"order_id": "B-2"}, call_id="l").tool_calls[0]))
    seen: list[ModelRequest] = []

    def script(request: ModelRequest) -> ModelResponse:
        seen.append(request)
        return both if len(seen) == 1 else reply("ok")

    result, events, _ = run(support_agent(ScriptedModel(script)))
    results = [e for e in events if isinstance(e, ToolResult)]
    assert [(e.pos, e.tool) for e in results] == [(2, "track_parcel"), (3, "lookup_order")]
    assert [m.tool_call_id for m in seen[1].messages if m.role == "tool"] == ["t", "l"]
    assert result.result["tool_calls"] == 2


def test_same_seed_same_journal_byte_for_byte() -> None:
    """Two runs of one agent with one seed write identical journals."""
    def once() -> list[str]:
        model = ScriptedModel(sequence([call("lookup_order", {"order_id": "A-1"}),
                                        reply("shipped")]))
        _, events, _ = run(support_agent(model), seed=11)
        return [encode(e) for e in events]

    assert once() == once()


def test_resuming_a_finished_run_asks_the_model_nothing() -> None:
    """Replay comes from the journal: a second runtime on the same store calls no model."""
    store = MemoryStore()
    model = ScriptedModel(sequence([call("lookup_order", {"order_id": "A-1"}), reply("ok")]))
    agent = support_agent(model)
    first = asyncio.run(Runtime(store, clock=VirtualClock(), seed=1).start(agent, "hi"))
    calls_before = model.calls
    again = asyncio.run(Runtime(store, clock=VirtualClock(), workflows=[agent]).resume(
        first.run_id))
    assert again.result == first.result and model.calls == calls_before == 2


def test_replay_model_reproduces_a_recorded_run() -> None:
    """A ReplayModel built from a journal drives a fresh run to the same answer."""
    model = ScriptedModel(sequence([call("lookup_order", {"order_id": "A-1"}), reply("ok")]))
    first, events, _ = run(support_agent(model))
    replayed, _, _ = run(support_agent(ReplayModel(events, strict=True)))
    assert replayed.result == first.result


def test_sync_entry_points() -> None:
    """Agent.run_sync and Runtime.run_sync run to completion without an event loop."""
    agent = Agent(name="echo", model=ScriptedModel(lambda request: reply("pong")))
    assert agent.run_sync("ping").result["answer"] == "pong"
    rt = Runtime(MemoryStore(), clock=VirtualClock(), seed=3)
    assert rt.run_sync(agent, "ping").status is RunStatus.COMPLETED
