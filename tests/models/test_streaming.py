"""Model token streaming: the OpenAI-compatible and Anthropic adapters against a real loopback
HTTP server (Starlette on uvicorn) that streams provider-format SSE, the runtime's delta hook,
and ScriptedModel's emulated streaming."""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import anthropic
import httpx2
import openai
import pytest
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tether import Agent, MemoryStore, Runtime, VirtualClock
from tether.errors import ModelError, ModelUnavailable, RateLimited
from tether.events import ModelCalled, ModelFailed
from tether.models.anthropic import AnthropicModel
from tether.models.base import (
    Message,
    ModelRequest,
    ModelResponse,
    ModelSettings,
    StreamingModel,
    ToolSpec,
)
from tether.models.openai import OpenAIModel
from tether.models.scripted import ScriptedModel, reply

STREAM = ModelSettings(stream=True)
TOOLS = (ToolSpec(name="get_weather", parameters={"type": "object"}),)


# -- the provider: a real HTTP server on loopback --------------------------------------------


@dataclass
class Plan:
    """One answer: a JSON body, or SSE frames then how the stream ends (``done``: as the
    provider ends it; ``stop``: the body just ends early; ``abort``: the connection is cut)."""

    body: Any = None
    frames: list[str] = field(default_factory=list)
    ending: str = "done"


class Provider:
    """Answers each request with the next plan and records the request bodies."""

    def __init__(self) -> None:
        self.plans: deque[Plan] = deque()
        self.bodies: list[dict[str, Any]] = []

    def queue(self, *plans: Plan) -> None:
        self.plans.extend(plans)

    async def answer(self, request: Request) -> Response:
        self.bodies.append(json.loads(await request.body()))
        plan = self.plans.popleft()
        if plan.body is not None:
            return JSONResponse(plan.body)

        async def frames() -> AsyncIterator[bytes]:
            for frame in plan.frames:
                yield frame.encode()
            if plan.ending == "abort":
                raise ConnectionAbortedError("the provider cut the stream")

        return StreamingResponse(frames(), media_type="text/event-stream")


@pytest.fixture(scope="module")
def provider() -> Iterator[tuple[Provider, str]]:
    served = Provider()
    app = Starlette(routes=[Route("/v1/chat/completions", served.answer, methods=["POST"]),
                            Route("/v1/messages", served.answer, methods=["POST"])])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="critical", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(500):
        if server.started:
            break
        time.sleep(0.01)
    assert server.started, "the loopback provider did not start"
    yield served, f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=5)
    sock.close()


@pytest.fixture
def fresh(provider: tuple[Provider, str]) -> tuple[Provider, str]:
    served, url = provider
    served.plans.clear()
    served.bodies.clear()
    return served, url


def openai_model(url: str, http: httpx2.AsyncClient | None = None) -> OpenAIModel:
    if http is None:
        return OpenAIModel("gpt-4.1-mini", base_url=f"{url}/v1", api_key="sk-test", name="oai")
    client = openai.AsyncOpenAI(api_key="sk-test", base_url=f"{url}/v1", http_client=http)
    return OpenAIModel("gpt-4.1-mini", client=client, name="oai")


def anthropic_model(url: str, http: httpx2.AsyncClient) -> AnthropicModel:
    client = anthropic.AsyncAnthropic(api_key="sk-ant-test", base_url=url, http_client=http)
    return AnthropicModel("claude-sonnet-4-6", client=client, name="ant")


def answer(provider: str, url: str, request: ModelRequest, *,
           stream: bool = True) -> tuple[ModelResponse, list[str]]:
    """One call (streamed, or a plain ``complete``) in its own event loop, over an HTTP client
    closed in that loop; returns the response and the deltas the sink got."""
    deltas: list[str] = []

    async def go() -> ModelResponse:
        async with httpx2.AsyncClient() as http:
            model = openai_model(url, http) if provider == "openai" else \
                anthropic_model(url, http)
            if stream:
                return await model.stream(request, deltas.append)
            return await model.complete(request)

    return asyncio.run(go()), deltas


def ask(tools: tuple[ToolSpec, ...] = TOOLS, stream: bool = False) -> ModelRequest:
    return ModelRequest(messages=(Message.system("Be brief."), Message.user("Weather?")),
                        tools=tools, settings=ModelSettings(stream=stream))


# -- OpenAI Chat Completions format ----------------------------------------------------------

OPENAI_MODEL = "gpt-4.1-mini-2025-04-14"
OPENAI_USAGE = {"prompt_tokens": 82, "completion_tokens": 17, "total_tokens": 99,
                "prompt_tokens_details": {"cached_tokens": 64, "audio_tokens": 0}}

Call = tuple[str, str, list[str]]  # id, name, argument fragments


def openai_completion(text: str | None, calls: list[Call], finish: str) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
    if calls:
        message["tool_calls"] = [{"id": cid, "type": "function",
                                  "function": {"name": name, "arguments": "".join(parts)}}
                                 for cid, name, parts in calls]
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1741570283,
            "model": OPENAI_MODEL, "usage": OPENAI_USAGE,
            "choices": [{"index": 0, "message": message, "finish_reason": finish,
                         "logprobs": None}]}


def openai_frames(parts: list[str], calls: list[Call], finish: str | None,
                  *, usage: bool = True) -> list[str]:
    """The chunks OpenAI streams for that completion: role, text pieces, each tool call's id
    and name then its argument fragments, the finish reason, then usage with no choices."""
    def chunk(choices: list[dict[str, Any]], **extra: Any) -> str:
        body = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1741570283,
                "model": OPENAI_MODEL, "choices": choices, "usage": None, **extra}
        return f"data: {json.dumps(body)}\n\n"

    def delta(d: dict[str, Any], finish_reason: str | None = None) -> str:
        return chunk([{"index": 0, "delta": d, "finish_reason": finish_reason,
                       "logprobs": None}])

    out = [delta({"role": "assistant", "content": "" if parts else None, "refusal": None})]
    out += [delta({"content": part}) for part in parts]
    for index, (cid, name, fragments) in enumerate(calls):
        out.append(delta({"tool_calls": [{"index": index, "id": cid, "type": "function",
                                          "function": {"name": name, "arguments": ""}}]}))
        out += [delta({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]})
                for fragment in fragments]
    if finish is not None:
        out.append(delta({}, finish))
        if usage:
            out.append(chunk([], usage=OPENAI_USAGE))
        out.append("data: [DONE]\n\n")
    return out


def split(text: str, cuts: list[int]) -> list[str]:
    points = sorted({c % (len(text) + 1) for c in cuts} | {0, len(text)})
    return [text[a:b] for a, b in itertools.pairwise(points) if b > a]


TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=40)
ARGS = st.dictionaries(st.text(alphabet="abcxyz", min_size=1, max_size=5),
                       st.one_of(st.integers(),
                                 st.text(alphabet=st.characters(codec="utf-8"), max_size=8)),
                       max_size=3)
CUTS = st.lists(st.integers(min_value=0, max_value=60), max_size=6)


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=TEXT, text_cuts=CUTS, args=st.lists(st.tuples(ARGS, CUTS), max_size=2))
def test_openai_stream_assembles_the_plain_response(fresh: tuple[Provider, str], text: str,
                                                    text_cuts: list[int],
                                                    args: list[tuple[dict[str, Any],
                                                                     list[int]]]) -> None:
    """Streamed chunks (text pieces, tool-call argument fragments, usage) assemble into exactly
    the response the same answer gives unstreamed, and the text deltas reach the sink in
    order."""
    served, url = fresh
    calls = [(f"call_{i}", "get_weather", split(json.dumps(a), cuts))
             for i, (a, cuts) in enumerate(args)]
    parts = split(text, text_cuts)
    finish = "tool_calls" if calls else "stop"
    served.queue(Plan(body=openai_completion(text if text or not calls else None, calls,
                                             finish)),
                 Plan(frames=openai_frames(parts, calls, finish)))
    plain, _ = answer("openai", url, ask(), stream=False)
    streamed, deltas = answer("openai", url, ask(stream=True))
    assert streamed == plain
    assert deltas == parts
    assert served.bodies[1]["stream"] is True
    assert served.bodies[1]["stream_options"] == {"include_usage": True}
    assert "stream" not in served.bodies[0]


def test_openai_stream_reads_usage_and_model(fresh: tuple[Provider, str]) -> None:
    """The usage chunk after the finish reason is read (cached tokens included)."""
    served, url = fresh
    served.queue(Plan(frames=openai_frames(["Sun", "ny."], [], "stop")))
    response, deltas = answer("openai", url, ask())
    assert response.text == "Sunny." and deltas == ["Sun", "ny."]
    assert (response.usage.input_tokens, response.usage.output_tokens,
            response.usage.cached_input_tokens) == (82, 17, 64)
    assert response.model == OPENAI_MODEL and response.finish_reason == "stop"


def test_openai_complete_streams_when_settings_ask(fresh: tuple[Provider, str]) -> None:
    """complete() with settings.stream streams on the wire and still returns the whole
    answer."""
    served, url = fresh
    served.queue(Plan(frames=openai_frames(["Sun", "ny."], [], "stop")))
    response, _ = answer("openai", url, ask(stream=True), stream=False)
    assert response.text == "Sunny." and served.bodies[0]["stream"] is True


def test_openai_stream_tool_calls_without_index(fresh: tuple[Provider, str]) -> None:
    """Compatible servers that leave out a tool call fragment's index: a new id opens a call,
    fragments without one continue it, and a call may come whole in one chunk."""
    served, url = fresh

    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        body = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "qwen3:8b",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        return f"data: {json.dumps(body)}\n\n"

    served.queue(Plan(frames=[
        chunk({"role": "assistant", "tool_calls": [
            {"id": "call_a", "function": {"name": "get_weather", "arguments": '{"city": '}}]}),
        chunk({"tool_calls": [{"function": {"arguments": '"Paris"}'}}]}),
        chunk({"tool_calls": [{"id": "call_b", "function": {"name": "get_weather",
                                                            "arguments": {"city": "Oslo"}}}]}),
        chunk({}, "tool_calls"), "data: [DONE]\n\n"]))
    response, deltas = answer("openai", url, ask())
    assert [(c.id, c.name, c.arguments) for c in response.tool_calls] == [
        ("call_a", "get_weather", '{"city": "Paris"}'),
        ("call_b", "get_weather", '{"city": "Oslo"}')]
    assert deltas == [] and response.usage.total_tokens == 0


@pytest.mark.parametrize("ending", ["abort", "stop"])
def test_openai_stream_cut_before_finish_is_unavailable(fresh: tuple[Provider, str],
                                                        ending: str) -> None:
    """A stream cut before its finish_reason (connection dropped, or body ended) is a lost
    connection, ModelUnavailable, never a half answer."""
    served, url = fresh
    served.queue(Plan(frames=openai_frames(["Sun", "ny", " and"], [], None), ending=ending))
    with pytest.raises(ModelUnavailable):
        answer("openai", url, ask())


def test_openai_error_inside_stream_is_judged_by_its_type(fresh: tuple[Provider, str]) -> None:
    """An error sent inside an OpenAI stream is classified by its type: a server error is
    retryable (ModelUnavailable), a rate limit RateLimited, an unknown one ModelError."""
    served, url = fresh

    def error(type_: str) -> Plan:
        body = {"error": {"message": "The server had an error", "type": type_,
                          "param": None, "code": None}}
        return Plan(frames=[*openai_frames(["Sun"], [], None), f"data: {json.dumps(body)}\n\n"])

    served.queue(error("server_error"), error("rate_limit_exceeded"), error("mystery"))
    with pytest.raises(ModelUnavailable):
        answer("openai", url, ask())
    with pytest.raises(RateLimited):
        answer("openai", url, ask())
    with pytest.raises(ModelError) as caught:
        answer("openai", url, ask())
    assert not isinstance(caught.value, ModelUnavailable | RateLimited)


# -- Anthropic Messages format ---------------------------------------------------------------

ANTHROPIC_MODEL = "claude-sonnet-4-6"


def anthropic_message(text_parts: list[str], calls: list[tuple[str, dict[str, Any]]],
                      stop: str) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if text_parts:
        content.append({"type": "text", "text": "".join(text_parts)})
    content += [{"type": "tool_use", "id": cid, "name": "get_weather", "input": args}
                for cid, args in calls]
    return {"id": "msg_1", "type": "message", "role": "assistant", "model": ANTHROPIC_MODEL,
            "content": content, "stop_reason": stop, "stop_sequence": None,
            "usage": {"input_tokens": 40, "output_tokens": 21, "cache_read_input_tokens": 30,
                      "cache_creation_input_tokens": 5}}


def anthropic_frames(text_parts: list[str], calls: list[tuple[str, list[str]]],
                     stop: str | None) -> list[str]:
    """The events the Messages API streams for that message: message_start, a text block in
    deltas, each tool_use block with its input in partial_json fragments, message_delta with
    the stop reason and output tokens, message_stop."""
    def event(kind: str, **body: Any) -> str:
        return f"event: {kind}\ndata: {json.dumps({'type': kind, **body})}\n\n"

    out = [event("message_start", message={
        "id": "msg_1", "type": "message", "role": "assistant", "model": ANTHROPIC_MODEL,
        "content": [], "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 40, "output_tokens": 1, "cache_read_input_tokens": 30,
                  "cache_creation_input_tokens": 5}}),
           'event: ping\ndata: {"type": "ping"}\n\n']
    index = 0
    if text_parts:
        out.append(event("content_block_start", index=index,
                         content_block={"type": "text", "text": ""}))
        out += [event("content_block_delta", index=index,
                      delta={"type": "text_delta", "text": part}) for part in text_parts]
        out.append(event("content_block_stop", index=index))
        index += 1
    for cid, fragments in calls:
        out.append(event("content_block_start", index=index, content_block={
            "type": "tool_use", "id": cid, "name": "get_weather", "input": {}}))
        out += [event("content_block_delta", index=index,
                      delta={"type": "input_json_delta", "partial_json": fragment})
                for fragment in fragments]
        out.append(event("content_block_stop", index=index))
        index += 1
    if stop is not None:
        out.append(event("message_delta", delta={"stop_reason": stop, "stop_sequence": None},
                         usage={"output_tokens": 21}))
        out.append(event("message_stop"))
    return out


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=TEXT, text_cuts=CUTS, args=st.lists(st.tuples(ARGS, CUTS), max_size=2))
def test_anthropic_stream_assembles_the_plain_response(fresh: tuple[Provider, str], text: str,
                                                       text_cuts: list[int],
                                                       args: list[tuple[dict[str, Any],
                                                                        list[int]]]) -> None:
    """Streamed Messages events (text deltas, tool input in partial_json fragments, usage from
    message_start and message_delta) assemble into exactly the unstreamed response, and the
    text deltas reach the sink in order."""
    served, url = fresh
    parts = split(text, text_cuts)
    calls = [(f"toolu_{i}", a, split(json.dumps(a), cuts)) for i, (a, cuts) in enumerate(args)]
    stop = "tool_use" if calls else "end_turn"
    served.queue(Plan(body=anthropic_message(parts, [(c, a) for c, a, _ in calls], stop)),
                 Plan(frames=anthropic_frames(parts, [(c, f) for c, _, f in calls], stop)))
    plain, _ = answer("anthropic", url, ask(), stream=False)
    streamed, deltas = answer("anthropic", url, ask(stream=True))
    assert streamed == plain
    assert deltas == parts
    assert served.bodies[1]["stream"] is True and "stream" not in served.bodies[0]


@pytest.mark.parametrize("ending", ["abort", "stop"])
def test_anthropic_stream_cut_before_message_stop_is_unavailable(
        fresh: tuple[Provider, str], ending: str) -> None:
    """A Messages stream cut before message_stop (connection dropped, or body ended) is a lost
    connection, ModelUnavailable, never a half answer."""
    served, url = fresh
    served.queue(Plan(frames=anthropic_frames(["Sun", "ny"], [("toolu_1", ['{"ci'])], None),
                      ending=ending))
    with pytest.raises(ModelUnavailable):
        answer("anthropic", url, ask())


@pytest.mark.parametrize(("type_", "expected"), [("overloaded_error", ModelUnavailable),
                                                 ("api_error", ModelUnavailable),
                                                 ("rate_limit_error", RateLimited)])
def test_anthropic_error_event_is_judged_by_its_type(fresh: tuple[Provider, str], type_: str,
                                                     expected: type[Exception]) -> None:
    """An error event inside a Messages stream (after a 200) is classified by its type as the
    same error over HTTP: overloaded is retryable, not a permanent ModelError."""
    served, url = fresh
    error = {"type": "error", "error": {"type": type_, "message": "Overloaded"}}
    served.queue(Plan(frames=[*anthropic_frames(["Sun"], [], None),
                              f"event: error\ndata: {json.dumps(error)}\n\n"]))
    with pytest.raises(expected):
        answer("anthropic", url, ask())


# -- the runtime: deltas out, one complete response journaled --------------------------------


def test_cut_stream_is_retried_and_journal_holds_one_complete_response(
        fresh: tuple[Provider, str]) -> None:
    """An agent whose first streamed answer is cut mid-way asks again; the journal holds the
    failed call and one complete response, the deltas name their positions, and resuming the
    finished run asks nothing and streams nothing."""
    served, url = fresh
    served.queue(Plan(frames=openai_frames(["It is ", "sun"], [], None), ending="abort"),
                 Plan(frames=openai_frames(["It is ", "sunny."], [], "stop")))
    agent = Agent(name="weather", model=openai_model(url), settings=STREAM)
    store = MemoryStore()
    runtime = Runtime(store, clock=VirtualClock(), seed=1)
    deltas: list[tuple[str, int, str]] = []
    runtime.add_delta_listener(lambda run_id, pos, text: deltas.append((run_id, pos, text)))
    result = asyncio.run(runtime.start(agent, "Weather?"))
    assert result.result["answer"] == "It is sunny."
    events = store.read(result.run_id)
    failed = [e for e in events if isinstance(e, ModelFailed)]
    called = [e for e in events if isinstance(e, ModelCalled)]
    assert len(failed) == 1 and failed[0].failure == "model_unavailable"
    assert len(called) == 1 and called[0].response["text"] == "It is sunny."
    assert [d for d in deltas if d[1] == failed[0].pos] == [
        (result.run_id, failed[0].pos, "It is "), (result.run_id, failed[0].pos, "sun")]
    assert [d[2] for d in deltas if d[1] == called[0].pos] == ["It is ", "sunny."]
    assert all(d[0] == result.run_id for d in deltas)

    again = Runtime(store, clock=VirtualClock(), workflows=[agent])
    replayed: list[tuple[str, int, str]] = []
    again.add_delta_listener(lambda run_id, pos, text: replayed.append((run_id, pos, text)))
    resumed = asyncio.run(again.resume(result.run_id))
    assert resumed.result == result.result
    assert replayed == [] and len(served.bodies) == 2


def test_streaming_journal_equals_the_plain_one() -> None:
    """Streaming changes nothing durable: a streamed run writes the same journal, byte for
    byte, as the same run unstreamed, and the request digest ignores settings.stream."""
    def journal(stream: bool) -> list[str]:
        model = ScriptedModel(lambda request: reply("The weather is sunny today."))
        agent = Agent(name="weather", model=model, settings=ModelSettings(stream=stream))
        runtime = Runtime(MemoryStore(), clock=VirtualClock(), seed=3)
        result = asyncio.run(runtime.start(agent, "Weather?"))
        return [e.model_dump_json(exclude={"run_id"}) for e in runtime.store.read(result.run_id)]

    assert journal(True) == journal(False)
    assert ask(stream=True).digest() == ask(stream=False).digest()
    # The digest of a request without streaming keeps the bytes it had before streaming.
    assert ModelRequest(messages=(Message.user("hi"),)).digest() == "6132661923007bf2"


def test_scripted_model_streams_its_reply_in_deltas() -> None:
    """ScriptedModel emulates streaming: with settings.stream its reply's text reaches the
    runtime's delta listeners in delta_chars pieces, in order; without it, no delta."""
    def deltas(stream: bool) -> list[tuple[int, str]]:
        model = ScriptedModel(lambda request: reply("abcdefghij"), delta_chars=4)
        assert isinstance(model, StreamingModel)
        agent = Agent(name="echo", model=model, settings=ModelSettings(stream=stream))
        runtime = Runtime(MemoryStore(), clock=VirtualClock(), seed=3)
        seen: list[tuple[int, str]] = []
        runtime.add_delta_listener(lambda run_id, pos, text: seen.append((pos, text)))
        asyncio.run(runtime.start(agent, "hi"))
        return seen

    streamed = deltas(True)
    assert [text for _, text in streamed] == ["abcd", "efgh", "ij"]
    assert len({pos for pos, _ in streamed}) == 1
    assert deltas(False) == []


def test_a_failing_delta_listener_does_not_fail_the_run() -> None:
    """A delta listener that raises is ignored: the run still completes with its answer."""
    def broken(run_id: str, pos: int, text: str) -> None:
        raise RuntimeError("watcher broke")

    agent = Agent(name="echo", model=ScriptedModel(lambda request: reply("pong")),
                  settings=STREAM)
    runtime = Runtime(MemoryStore(), clock=VirtualClock(), seed=3)
    runtime.add_delta_listener(broken)
    assert asyncio.run(runtime.start(agent, "ping")).result["answer"] == "pong"


def test_agent_file_settings_turn_streaming_on() -> None:
    """An agent file's ``model.settings.stream: true`` reaches the built agent, whose run then
    streams its model's text to the runtime's delta listeners; the default stays off."""
    from tether.sessions.loader import definition_from_dict

    def agent(settings: dict[str, Any]) -> Agent:
        return definition_from_dict({
            "name": "w", "instructions": "Be brief.",
            "model": {"provider": "scripted", "script": "tests.sessions.helpers_agents:script",
                      "settings": settings}}).build()

    assert agent({}).settings.stream is False
    streaming = agent({"stream": True})
    assert streaming.settings.stream is True
    runtime = Runtime(MemoryStore(), clock=VirtualClock(), seed=3)
    seen: list[tuple[int, str]] = []
    runtime.add_delta_listener(lambda run_id, pos, text: seen.append((pos, text)))
    result = asyncio.run(runtime.start(streaming, "hi"))
    last = [e for e in runtime.store.read(result.run_id) if isinstance(e, ModelCalled)][-1]
    assert "".join(text for pos, text in seen if pos == last.pos) == last.response["text"] != ""
