"""A forcing tool_choice holds until the model has called a tool, then the loop sends "auto":
over real HTTP, across a retried first call, and identically when a run is replayed."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel

from tests.models.local_server import Answer, LocalServer, completion, tool_call_completion
from tether import (
    Agent,
    MemoryStore,
    ModelRequest,
    ModelResponse,
    ModelSettings,
    RunStatus,
    Runtime,
    ScriptedModel,
    ToolContext,
    VirtualClock,
    tool,
)
from tether.events import ModelCalled
from tether.models.openai import OpenAIModel
from tether.models.scripted import call, reply

from .helpers import run


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


LOOKUP_WIRE = {"type": "function", "function": {"name": "lookup_order"}}


@pytest.mark.parametrize(("choice", "first"), [("required", "required"),
                                                ("lookup_order", LOOKUP_WIRE)])
def test_a_forced_choice_is_sent_once_then_auto_over_http(choice: str, first: object) -> None:
    """The server is asked with the forced choice, then with "auto" after the tool call, and
    the run ends with the model's text answer instead of running into a budget."""
    answers: list[Answer] = [(200, tool_call_completion("lookup_order", '{"order_id": "A-17"}')),
                             (200, completion("A-17 has shipped."))]
    with LocalServer(answers) as server:
        model = OpenAIModel("local-model", base_url=server.url + "/v1")
        agent = Agent(name="support", model=model, tools=[lookup_order],
                      settings=ModelSettings(tool_choice=choice))
        result, _, _ = run(agent, "Where is order A-17?")
    assert [b["tool_choice"] for b in server.bodies] == [first, "auto"]
    assert result.status is RunStatus.COMPLETED
    assert result.result["answer"] == "A-17 has shipped."


def choices_of(script: list[ModelResponse], seen: list[str | None]) -> ScriptedModel:
    """A model answering ``script`` in turn, noting the tool_choice each request carried."""
    answers = iter(script)

    def answer(request: ModelRequest) -> ModelResponse:
        seen.append(request.settings.tool_choice)
        return next(answers)

    return ScriptedModel(answer)


def test_a_retried_first_call_stays_forced() -> None:
    """A malformed first answer is retried with the choice still forced: no tool was called."""
    seen: list[str | None] = []
    model = choices_of([ModelResponse(text=""),
                        call("lookup_order", {"order_id": "A-17"}), reply("shipped")], seen)
    agent = Agent(name="a", model=model, tools=[lookup_order],
                  settings=ModelSettings(tool_choice="required"))
    result, _, _ = run(agent)
    assert result.status is RunStatus.COMPLETED
    assert seen == ["required", "required", "auto"]


@pytest.mark.parametrize("choice", [None, "auto", "none"])
def test_choices_that_do_not_force_are_sent_unchanged(choice: str | None) -> None:
    """Unset, "auto" and "none" are the agent's setting on every call."""
    seen: list[str | None] = []
    model = choices_of([call("lookup_order", {"order_id": "A-17"}), reply("shipped")], seen)
    agent = Agent(name="a", model=model, tools=[lookup_order],
                  settings=ModelSettings(tool_choice=choice))
    run(agent)
    assert seen == [choice, choice]


def test_each_run_of_a_session_starts_forced() -> None:
    """The revert is per run: a second run of the same agent is forced again at its start."""
    seen: list[str | None] = []
    script = [call("lookup_order", {"order_id": "A-17"}), reply("shipped")] * 2
    agent = Agent(name="a", model=choices_of(script, seen), tools=[lookup_order],
                  settings=ModelSettings(tool_choice="lookup_order"))
    rt = Runtime(MemoryStore(), clock=VirtualClock(), seed=3)
    run(agent, runtime=rt)
    run(agent, runtime=rt)
    assert seen == ["lookup_order", "auto", "lookup_order", "auto"]


def three_calls(seen: list[str | None]) -> ScriptedModel:
    return choices_of([call("lookup_order", {"order_id": "A-17"}),
                       call("track_parcel", {"order_id": "A-17"}), reply("at the depot")], seen)


def test_a_replayed_run_sends_the_same_requests() -> None:
    """Resumed after a crash before its third model call, the run rebuilds the revert from the
    journal: the live third request has the digest the first execution recorded."""
    first_seen: list[str | None] = []
    settings = ModelSettings(tool_choice="required")
    agent = Agent(name="a", model=three_calls(first_seen), tools=[lookup_order, track_parcel],
                  settings=settings)
    store = MemoryStore()
    first = asyncio.run(Runtime(store, clock=VirtualClock(), seed=5).start(agent, "go"))
    assert first.status is RunStatus.COMPLETED
    assert first_seen == ["required", "auto", "auto"]
    events = store.read(first.run_id)
    calls = [e for e in events if isinstance(e, ModelCalled)]
    assert len({c.request_digest for c in calls}) == 3
    # The worker died just before the third model call was journaled.
    prefix = [e for e in events if e.seq < calls[2].seq]
    crashed = MemoryStore()
    crashed.append(first.run_id, prefix, expected_last_seq=0)
    again_seen: list[str | None] = []
    again = Agent(name="a", model=choices_of([reply("at the depot")], again_seen),
                  tools=[lookup_order, track_parcel], settings=settings)
    resumed = asyncio.run(Runtime(crashed, clock=VirtualClock(), workflows=[again]).resume(
        first.run_id))
    assert resumed.status is RunStatus.COMPLETED
    assert again_seen == ["auto"]
    redone = [e for e in crashed.read(first.run_id) if isinstance(e, ModelCalled)]
    assert [c.request_digest for c in redone] == [c.request_digest for c in calls]
