"""OpenAIModel against a real HTTP server on 127.0.0.1 (tests/models/local_server.py): what an
OpenAI-compatible server receives (``tool_choice``, a tool-call turn's content), which error
answers are retried (counted at the server), and one model used from several event loops."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import openai
import pytest
from pydantic import BaseModel

from tests.models.local_server import Answer, LocalServer, completion, tool_call_completion
from tether.agent.agent import Agent
from tether.clock import VirtualClock
from tether.errors import ModelError, ModelUnavailable, UsageError
from tether.events import RunStatus
from tether.models.base import Message, ModelRequest, ModelSettings, ToolCall, ToolSpec
from tether.models.openai import OpenAIModel
from tether.runtime.runtime import Runtime
from tether.runtime.tools import ToolContext, tool

LOOKUP = ToolSpec(name="lookup_order", description="Look up an order",
                  parameters={"type": "object", "properties": {"order_id": {"type": "string"}},
                              "required": ["order_id"]})
NOTE = ToolSpec(name="add_note", description="Add a note to an order")
# llama-cpp-python's server answers a request that fails its validation with a 500 (shape
# copied from a real answer of llama_cpp.server 0.3.36 to an assistant turn with content null).
LLAMA_VALIDATION_500 = {"error": {
    "message": "7 validation errors:\n  {'type': 'string_type', 'loc': ('body', 'messages', 2, "
               "'ChatCompletionRequestAssistantMessage', 'content'), 'msg': 'Input should be a "
               "valid string', 'input': None}",
    "type": "internal_server_error", "param": None, "code": None}}
BARE_500 = {"error": {"message": "", "type": "internal_server_error", "param": None,
                      "code": None}}


class OrderArgs(BaseModel):
    order_id: str


@tool
async def lookup_order(ctx: ToolContext, args: OrderArgs) -> dict[str, str]:
    """Look up an order by its id."""
    return {"order_id": args.order_id, "status": "shipped"}


def sent(server: LocalServer, settings: ModelSettings, tools: tuple[ToolSpec, ...]) -> Any:
    """The body the server received for one request with ``settings`` and ``tools``."""
    model = OpenAIModel("local-model", base_url=server.url + "/v1")
    request = ModelRequest(messages=(Message.user("hi"),), tools=tools, settings=settings)
    asyncio.run(model.complete(request))
    return server.bodies[-1]


@pytest.mark.parametrize(("choice", "wire"), [
    ("auto", "auto"), ("required", "required"), ("none", "none"),
    ("lookup_order", {"type": "function", "function": {"name": "lookup_order"}}),
])
def test_tool_choice_reaches_the_server(choice: str, wire: object) -> None:
    """``settings.tool_choice`` is sent as OpenAI spells it; a tool's name forces that tool."""
    with LocalServer([(200, completion())]) as server:
        body = sent(server, ModelSettings(tool_choice=choice), (LOOKUP, NOTE))
    assert body["tool_choice"] == wire


def test_tool_choice_default_and_without_tools_is_not_sent() -> None:
    """No ``tool_choice`` by default (the server's own default), and none without tools."""
    with LocalServer([(200, completion())]) as server:
        assert "tool_choice" not in sent(server, ModelSettings(), (LOOKUP,))
        assert "tool_choice" not in sent(server, ModelSettings(tool_choice="required"), ())


def test_tool_choice_naming_no_offered_tool_is_refused_before_sending() -> None:
    """Forcing a tool the request does not offer is a usage error naming the offered tools."""
    with LocalServer([(200, completion())]) as server:
        with pytest.raises(UsageError, match=r"'refund'.*lookup_order, add_note"):
            sent(server, ModelSettings(tool_choice="refund"), (LOOKUP, NOTE))
        assert server.requests == 0


def test_tool_choice_is_checked_and_left_out_of_old_digests() -> None:
    """An empty tool_choice is refused; an unset one keeps request digests as they were."""
    with pytest.raises(ValueError, match="tool_choice"):
        ModelSettings(tool_choice="")
    request = ModelRequest(messages=(Message.user("hi"),))
    assert request.digest() == "6132661923007bf2"  # the digest before tool_choice existed
    forced = request.model_copy(update={"settings": ModelSettings(tool_choice="auto")})
    assert forced.digest() != request.digest()


def test_tool_call_turn_is_sent_with_empty_content() -> None:
    """An assistant turn that only calls tools goes out with content "" (llama.cpp's server
    rejects null and a missing content; OpenAI, vLLM and Ollama accept "")."""
    call = ToolCall(id="call_1", name="lookup_order", arguments='{"order_id": "A-17"}')
    request = ModelRequest(messages=(Message.user("A-17?"), Message.assistant(tool_calls=(call,)),
                                     Message.tool(call, '{"status": "shipped"}')),
                           tools=(LOOKUP,))
    with LocalServer([(200, completion())]) as server:
        asyncio.run(OpenAIModel("m", base_url=server.url + "/v1").complete(request))
    assistant = server.bodies[0]["messages"][1]
    assert assistant["content"] == ""
    assert assistant["tool_calls"][0]["function"]["arguments"] == '{"order_id": "A-17"}'


def run_agent(answers: list[Answer]) -> tuple[LocalServer, Any]:
    """One agent run against a server giving ``answers``; backoff waits on a virtual clock."""
    with LocalServer(answers) as server:
        model = OpenAIModel("local-model", base_url=server.url + "/v1")
        agent = Agent(name="support", model=model, tools=[lookup_order],
                      settings=ModelSettings(tool_choice="auto"))
        result = agent.run_sync("Where is order A-17?",
                                runtime=Runtime(clock=VirtualClock(), seed=7))
    return server, result


@pytest.mark.parametrize(("status", "body"), [
    (400, {"error": {"message": "messages[1].content: expected string", "type":
                     "invalid_request_error", "param": None, "code": None}}),
    (404, {"error": {"message": "model 'local-model' not found", "type": "not_found_error",
                     "param": None, "code": None}}),
    (422, {"detail": [{"loc": ["body", "messages"], "msg": "field required"}]}),
    (500, LLAMA_VALIDATION_500),
    (501, {"error": {"message": "tool_choice 'required' is not supported", "type":
                     "not_implemented", "param": None, "code": None}}),
])
def test_an_answer_to_a_malformed_request_is_not_retried(status: int, body: object) -> None:
    """4xx (but 408/409/429), a 500 that says the request failed validation, and 501 are
    permanent: one request, and the run fails with the server's message."""
    server, result = run_agent([(status, body)])
    assert server.requests == 1
    assert result.status is RunStatus.FAILED
    assert result.error is not None and f"HTTP {status}" in result.error["message"]


def test_a_bare_500_is_retried_once_then_permanent() -> None:
    """A 500 that says nothing is retried once; the same request failing the same way again
    is the request's fault, not a passing outage: two requests, not four."""
    server, result = run_agent([(500, BARE_500)])
    assert server.requests == 2
    assert server.bodies[0] == server.bodies[1]
    assert result.status is RunStatus.FAILED
    assert "again" in result.error["message"] if result.error else False


def test_a_500_that_passes_is_retried_and_the_run_completes() -> None:
    """A 500 followed by an answer: the retry succeeds."""
    server, result = run_agent([(500, BARE_500), (200, completion("on its way"))])
    assert server.requests == 2
    assert result.status is RunStatus.COMPLETED
    assert result.result["answer"] == "on its way"


@pytest.mark.parametrize("status", [502, 503, 504, 529, 408, 409])
def test_gateway_overload_and_timeout_answers_are_retried(status: int) -> None:
    """502/503/504/529, 408 and 409 say nothing about the request: retried as the policy says
    (model_unavailable: four attempts)."""
    server, result = run_agent([(status, {"error": {"message": "busy", "type": "server_error",
                                                    "param": None, "code": None}})])
    assert server.requests == 4
    assert result.status is RunStatus.FAILED


def test_status_rule_as_errors() -> None:
    """The rule itself, as the adapter reports it: the repeat of a bare 500 is a ModelError
    that is not ModelUnavailable."""
    with LocalServer([(500, BARE_500)]) as server:
        model = OpenAIModel("m", base_url=server.url + "/v1")
        request = ModelRequest(messages=(Message.user("hi"),))

        async def twice() -> list[BaseException]:
            errors: list[BaseException] = []
            for _ in range(2):
                try:
                    await model.complete(request)
                except ModelError as exc:
                    errors.append(exc)
            return errors

        first, second = asyncio.run(twice())
    assert type(first) is ModelUnavailable
    assert type(second) is ModelError and second.status == 500


def test_run_sync_twice_with_one_model() -> None:
    """One model (client built from base_url) serves two run_sync calls, each its own loop."""
    answers: list[Answer] = [
        (200, tool_call_completion("lookup_order", '{"order_id": "A-17"}')),
        (200, completion("shipped")),
    ]
    with LocalServer(answers * 2) as server:
        model = OpenAIModel("local-model", base_url=server.url + "/v1")
        agent = Agent(name="support", model=model, tools=[lookup_order])
        runtime = Runtime(clock=VirtualClock(), seed=3)
        first = agent.run_sync("Where is A-17?", runtime=runtime)
        second = agent.run_sync("Where is A-17 now?", runtime=runtime)
    assert (first.status, second.status) == (RunStatus.COMPLETED, RunStatus.COMPLETED), (
        first.error, second.error)
    assert server.requests == 4
    # the tool's result went back to the server after each tool call
    assert json.loads(server.bodies[1]["messages"][-1]["content"])["status"] == "shipped"


def test_two_asyncio_runs_with_one_model() -> None:
    """Two asyncio.run() calls with one model both complete (no 'Event loop is closed')."""
    with LocalServer([(200, completion("one")), (200, completion("two"))]) as server:
        model = OpenAIModel("m", base_url=server.url + "/v1")
        request = ModelRequest(messages=(Message.user("hi"),))
        texts = [asyncio.run(model.complete(request)).text for _ in range(2)]
    assert texts == ["one", "two"]


def test_a_client_factory_gives_each_loop_its_client() -> None:
    """``client=`` may be a function: called once per event loop, never twice for one; each
    client is closed when its loop shuts down."""
    made: list[openai.AsyncOpenAI] = []
    with LocalServer([(200, completion())]) as server:

        def factory() -> openai.AsyncOpenAI:
            made.append(openai.AsyncOpenAI(api_key="local", base_url=server.url + "/v1"))
            return made[-1]

        model = OpenAIModel("m", client=factory)
        request = ModelRequest(messages=(Message.user("hi"),))

        async def two_calls() -> None:
            await model.complete(request)
            await model.complete(request)

        asyncio.run(two_calls())
        asyncio.run(two_calls())
    assert (len(made), server.requests) == (2, 4)
    assert all(client.is_closed() for client in made)
