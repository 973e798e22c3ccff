"""Client tools in the agent loop: requested, waited for durably, continued with results."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from pydantic import BaseModel

from tether import (
    Agent,
    MemoryStore,
    ModelRequest,
    ModelResponse,
    RunStatus,
    Runtime,
    ScriptedModel,
    ToolCall,
    ToolContext,
    VirtualClock,
    client_tool,
    tool,
)
from tether.events import WaitStarted
from tether.models.scripted import call, reply


class Question(BaseModel):
    question: str


class Answer(BaseModel):
    answer: str


class Charge(BaseModel):
    order_id: str
    amount_cents: int


class OrderRef(BaseModel):
    order_id: str


ask_user = client_tool("ask_user", args=Question, result=Answer, description="Ask the user.",
                       timeout_s=60)


def tool_texts(request: ModelRequest) -> list[str]:
    return [m.content for m in request.messages if m.role == "tool"]


def runtime() -> Runtime:
    return Runtime(MemoryStore(), clock=VirtualClock(), seed=3)


def start(rt: Runtime, agent: Agent) -> Any:
    return asyncio.run(rt.start(agent, "help"))


def answer_then_echo(request: ModelRequest) -> ModelResponse:
    seen = tool_texts(request)
    if not seen:
        return call("ask_user", {"question": "which order?"}, call_id="c1")
    return reply(f"got: {seen[-1]}")


def test_client_call_suspends_the_run_and_lists_the_request() -> None:
    """A client tool call journals its request and leaves the run waiting, listed as pending."""
    rt = runtime()
    agent = Agent(name="a", model=ScriptedModel(answer_then_echo), tools=[ask_user])
    result = start(rt, agent)
    assert result.status is RunStatus.WAITING
    [pending] = rt.pending_client_calls(result.run_id)
    assert (pending.execution_id, pending.call_id, pending.tool) == (result.run_id, "c1",
                                                                     "ask_user")
    assert pending.arguments == {"question": "which order?"}
    assert pending.result_schema["required"] == ["answer"]
    waits = [e for e in rt.store.read(result.run_id) if isinstance(e, WaitStarted)]
    assert waits[0].data["execution_id"] == result.run_id


def test_continue_resumes_and_the_model_reads_the_result_as_client_content() -> None:
    """Continuing with a valid result finishes the run; the observation is the client's."""
    rt = runtime()
    seen: list[ModelRequest] = []

    def script(request: ModelRequest) -> ModelResponse:
        seen.append(request)
        return answer_then_echo(request)

    agent = Agent(name="a", model=ScriptedModel(script), tools=[ask_user])
    run_id = start(rt, agent).run_id
    done = asyncio.run(rt.continue_execution(run_id, {"c1": {"answer": "A-17"}}))
    assert done.status is RunStatus.COMPLETED
    assert done.result["answer"] == 'got: {"answer": "A-17"}'
    [message] = [m for m in seen[-1].messages if m.role == "tool"]
    assert (message.source, message.trust) == ("client:ask_user", "user")
    assert rt.pending_client_calls(run_id) == []


def test_mixed_turn_runs_server_tools_once_and_asks_every_client_call_at_once() -> None:
    """Server and client tools in one response: the server one runs once, both client calls
    are pending together, and the turn resumes only when both are answered."""
    rt = runtime()
    lookups: list[str] = []

    @tool
    def lookup(tc: ToolContext, args: OrderRef) -> dict[str, Any]:
        """Look up an order."""
        lookups.append(args.order_id)
        return {"order_id": args.order_id, "amount_cents": 500}

    def script(request: ModelRequest) -> ModelResponse:
        seen = tool_texts(request)
        if not seen:
            return ModelResponse(finish_reason="tool_calls", tool_calls=(
                ToolCall(id="q1", name="ask_user", arguments='{"question": "one?"}'),
                ToolCall(id="s1", name="lookup", arguments='{"order_id": "o1"}'),
                ToolCall(id="q2", name="ask_user", arguments='{"question": "two?"}')))
        return reply(" | ".join(seen))

    agent = Agent(name="a", model=ScriptedModel(script), tools=[ask_user, lookup])
    run_id = start(rt, agent).run_id
    assert sorted(p.call_id for p in rt.pending_client_calls(run_id)) == ["q1", "q2"]
    half = asyncio.run(rt.continue_execution(run_id, {"q2": {"answer": "second"}}))
    assert half.status is RunStatus.WAITING
    assert [p.call_id for p in rt.pending_client_calls(run_id)] == ["q1"]
    done = asyncio.run(rt.continue_execution(run_id, {"q1": {"answer": "first"}}))
    assert done.status is RunStatus.COMPLETED
    assert lookups == ["o1"]
    parts = done.result["answer"].split(" | ")
    # In call order: the model reads each answer next to its own call.
    assert json.loads(parts[0]) == {"answer": "first"}
    assert json.loads(parts[1])["order_id"] == "o1"
    assert json.loads(parts[2]) == {"answer": "second"}


def test_a_call_id_reused_in_a_later_step_is_asked_again_not_answered_from_the_first() -> None:
    """Models reuse call ids across steps; each step's client call is its own request."""
    rt = runtime()

    def script(request: ModelRequest) -> ModelResponse:
        seen = tool_texts(request)
        if len(seen) < 2:
            return call("ask_user", {"question": f"q{len(seen)}"}, call_id="same")
        return reply(" / ".join(seen))

    agent = Agent(name="a", model=ScriptedModel(script), tools=[ask_user])
    run_id = start(rt, agent).run_id
    first = asyncio.run(rt.continue_execution(run_id, {"same": {"answer": "one"}}))
    assert first.status is RunStatus.WAITING
    [again] = rt.pending_client_calls(run_id)
    assert again.arguments == {"question": "q1"}
    done = asyncio.run(rt.continue_execution(run_id, {"same": {"answer": "two"}}))
    assert done.result["answer"] == '{"answer": "one"} / {"answer": "two"}'


def test_unanswered_read_times_out_as_an_observation_the_model_reads() -> None:
    """A read nobody answers within timeout_s fails as an error the model sees."""
    clock = VirtualClock()
    rt = Runtime(MemoryStore(), clock=clock, seed=3)
    agent = Agent(name="a", model=ScriptedModel(answer_then_echo), tools=[ask_user])
    run_id = start(rt, agent).run_id
    clock.advance(61)
    done = asyncio.run(rt.resume(run_id))
    assert done.status is RunStatus.COMPLETED
    assert "did not answer within 60 s" in done.result["answer"]
    assert rt.pending_client_calls(run_id) == []


def charge_agent(effect: str, attempts: int = 2) -> Agent:
    charge = client_tool("charge", args=Charge, result=dict[str, str], effect=effect,
                         key=lambda a: f"charge:{a.order_id}", timeout_s=30,
                         attempts=attempts)

    def script(request: ModelRequest) -> ModelResponse:
        seen = tool_texts(request)
        if not seen:
            return call("charge", {"order_id": "o9", "amount_cents": 900}, call_id="k1")
        return reply(f"charged: {seen[-1]}")

    return Agent(name="payer", model=ScriptedModel(script), tools=[charge])


def test_unanswered_unsafe_client_write_escalates() -> None:
    """An unsafe client write nobody answered may have happened: the run escalates."""
    clock = VirtualClock()
    rt = Runtime(MemoryStore(), clock=clock, seed=3)
    run_id = start(rt, charge_agent("unsafe")).run_id
    clock.advance(31)
    done = asyncio.run(rt.resume(run_id))
    assert done.status is RunStatus.ESCALATED
    assert "charge" in done.reason and "unsafe" in done.reason


def test_unanswered_idempotent_client_write_is_asked_again_under_the_same_key() -> None:
    """An idempotent client write that timed out is requested again with its key, and
    escalates once its attempts are spent with the outcome still unknown."""
    clock = VirtualClock()
    rt = Runtime(MemoryStore(), clock=clock, seed=3)
    run_id = start(rt, charge_agent("idempotent", attempts=2)).run_id
    [first] = rt.pending_client_calls(run_id)
    clock.advance(31)
    again = asyncio.run(rt.resume(run_id))
    assert again.status is RunStatus.WAITING
    [second] = rt.pending_client_calls(run_id)
    assert (second.attempt, second.idempotency_key) == (2, "charge:o9") == (
        first.attempt + 1, first.idempotency_key)
    clock.advance(31)
    done = asyncio.run(rt.resume(run_id))
    assert done.status is RunStatus.ESCALATED
    assert "still unknown after 2 request(s)" in done.reason


def test_a_re_requested_write_answered_completes_the_run() -> None:
    """The second request of a timed-out idempotent write, answered, finishes the turn."""
    clock = VirtualClock()
    rt = Runtime(MemoryStore(), clock=clock, seed=3)
    run_id = start(rt, charge_agent("idempotent")).run_id
    clock.advance(31)
    asyncio.run(rt.resume(run_id))
    done = asyncio.run(rt.continue_execution(run_id, {"k1": {"charge_id": "ch_1"}}))
    assert done.status is RunStatus.COMPLETED
    assert done.result["answer"] == 'charged: {"charge_id": "ch_1"}'


def test_replaying_a_continued_run_in_a_fresh_runtime_takes_the_same_path() -> None:
    """The journal alone settles a client call: a fresh runtime resumes it identically."""
    store = MemoryStore()
    rt = Runtime(store, clock=VirtualClock(), seed=3)
    agent = Agent(name="a", model=ScriptedModel(answer_then_echo), tools=[ask_user])
    run_id = asyncio.run(rt.start(agent, "help")).run_id
    asyncio.run(rt.continue_execution(run_id, {"c1": {"answer": "x"}}, resume=False))
    fresh = Runtime(store, clock=VirtualClock(), seed=4, workflows=[agent])
    done = asyncio.run(fresh.resume(run_id))
    assert done.result["answer"] == 'got: {"answer": "x"}'
