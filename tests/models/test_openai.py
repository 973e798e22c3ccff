"""OpenAIModel against recorded-shape Chat Completions exchanges, served through the SDK's own
transport hook (``AsyncOpenAI(http_client=httpx2.AsyncClient(transport=MockTransport(...)))``);
nothing reaches the network."""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
from typing import Any

import httpx2
import openai
import pytest

import tether.models
from tether.errors import (
    AuthExpired,
    ContextOverflow,
    MalformedOutput,
    ModelError,
    ModelUnavailable,
    RateLimited,
    UsageError,
)
from tether.models.base import (
    Message,
    Model,
    ModelRequest,
    ModelResponse,
    ModelSettings,
    ToolCall,
    ToolSpec,
    Usage,
)
from tether.models.openai import OpenAIModel

BASE_URL = "https://api.openai.com/v1"
BROKEN_ARGS = '{"city": "Par'  # a model's truncated JSON: must travel untouched both ways


class Provider:
    """A scripted provider: answers each request with the next reply, records every request."""

    def __init__(self, *replies: httpx2.Response | Exception) -> None:
        self.replies = list(replies)
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply

    def body(self, index: int = 0) -> Any:
        return json.loads(self.requests[index].content)


def reply(status: int, body: object, headers: dict[str, str] | None = None) -> httpx2.Response:
    base = {"content-type": "application/json", "x-request-id": "req_7f3c2a9b81d04e6f",
            "openai-processing-ms": "412", "openai-version": "2020-10-01"}
    return httpx2.Response(status, content=json.dumps(body).encode(),
                           headers={**base, **(headers or {})})


def error_reply(status: int, message: str, type_: str, code: str | None,
                headers: dict[str, str] | None = None) -> httpx2.Response:
    """An error in OpenAI's documented shape: ``{"error": {message, type, param, code}}``."""
    return reply(status, {"error": {"message": message, "type": type_, "param": None,
                                    "code": code}}, headers)


def model_over(provider: Provider, *, max_retries: int = 2) -> OpenAIModel:
    http = httpx2.AsyncClient(transport=httpx2.MockTransport(provider))
    client = openai.AsyncOpenAI(api_key="sk-test", base_url=BASE_URL, http_client=http,
                                max_retries=max_retries)
    return OpenAIModel("gpt-4.1-mini", client=client, name="openai-main")


def complete(model: OpenAIModel, request: ModelRequest) -> ModelResponse:
    return asyncio.run(model.complete(request))


def failure(model: OpenAIModel) -> BaseException:
    with pytest.raises(Exception) as caught:
        complete(model, ModelRequest(messages=(Message.user("hi"),)))
    return caught.value


COMPLETION_WITH_TOOLS = {
    "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
    "object": "chat.completion",
    "created": 1741570283,
    "model": "gpt-4.1-mini-2025-04-14",
    "choices": [{
        "index": 0,
        "message": {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_FthC9qRpsL5kBpwwyw6c7j4k", "type": "function",
                 "function": {"name": "get_weather",
                              "arguments": "{\n  \"city\": \"Paris\",\n  \"unit\": \"c\"\n}"}},
                {"id": "call_9dKq2LxwT0vYb1NmZr4sUe8A", "type": "function",
                 "function": {"name": "get_weather", "arguments": BROKEN_ARGS}},
            ],
            "refusal": None,
            "annotations": [],
        },
        "logprobs": None,
        "finish_reason": "tool_calls",
    }],
    "usage": {
        "prompt_tokens": 82, "completion_tokens": 17, "total_tokens": 99,
        "prompt_tokens_details": {"cached_tokens": 64, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                      "accepted_prediction_tokens": 0,
                                      "rejected_prediction_tokens": 0},
    },
    "service_tier": "default",
    "system_fingerprint": "fp_b376dfbbd5",
}

TEXT_COMPLETION = {
    "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
    "object": "chat.completion",
    "created": 1741569952,
    "model": "gpt-4.1-mini-2025-04-14",
    "choices": [{"index": 0,
                 "message": {"role": "assistant", "content": "Hello! How can I help?",
                             "refusal": None, "annotations": []},
                 "logprobs": None, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29,
              "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
              "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                            "accepted_prediction_tokens": 0,
                                            "rejected_prediction_tokens": 0}},
    "service_tier": "default",
}


def test_is_a_model() -> None:
    """OpenAIModel satisfies the Model protocol and is named by ``name``."""
    model = model_over(Provider())
    assert isinstance(model, Model)
    assert model.name == "openai-main"


def test_request_body_maps_conversation_tools_and_settings() -> None:
    """Messages, tool calls (raw arguments), tool results, tools and settings reach the wire."""
    provider = Provider(reply(200, TEXT_COMPLETION))
    earlier = (ToolCall(id="call_1", name="get_weather", arguments='{"city": "Oslo"}'),
               ToolCall(id="call_2", name="get_weather", arguments=BROKEN_ARGS))
    request = ModelRequest(
        messages=(Message.system("Be brief."), Message.user("Weather in Oslo and Paris?"),
                  Message.assistant("Checking.", earlier),
                  Message.tool(earlier[0], "4°C"), Message.tool(earlier[1], "bad arguments"),
                  Message.assistant(tool_calls=earlier[:1]), Message.user("Thanks")),
        tools=(ToolSpec(name="get_weather", description="Current weather",
                        parameters={"type": "object",
                                    "properties": {"city": {"type": "string"}},
                                    "required": ["city"]}),),
        settings=ModelSettings(temperature=0.2, max_output_tokens=256, timeout_s=12.5,
                               extra={"seed": 7, "parallel_tool_calls": False}),
    )
    complete(model_over(provider), request)
    sent = provider.requests[0]
    assert sent.method == "POST"
    assert sent.url == f"{BASE_URL}/chat/completions"
    assert sent.headers["authorization"] == "Bearer sk-test"
    assert sent.extensions["timeout"]["read"] == 12.5
    call_1 = {"id": "call_1", "type": "function",
              "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
    call_2 = {"id": "call_2", "type": "function",
              "function": {"name": "get_weather", "arguments": BROKEN_ARGS}}
    assert provider.body() == {
        "model": "gpt-4.1-mini",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather in Oslo and Paris?"},
            {"role": "assistant", "content": "Checking.", "tool_calls": [call_1, call_2]},
            {"role": "tool", "tool_call_id": "call_1", "content": "4°C"},
            {"role": "tool", "tool_call_id": "call_2", "content": "bad arguments"},
            {"role": "assistant", "content": "", "tool_calls": [call_1]},
            {"role": "user", "content": "Thanks"},
        ],
        "tools": [{"type": "function",
                   "function": {"name": "get_weather", "description": "Current weather",
                                "parameters": {"type": "object",
                                               "properties": {"city": {"type": "string"}},
                                               "required": ["city"]}}}],
        "temperature": 0.2,
        "max_completion_tokens": 256,
        "seed": 7,
        "parallel_tool_calls": False,
    }


def test_defaults_send_only_model_and_messages() -> None:
    """Without tools or settings the body carries no tools, temperature or token limit."""
    provider = Provider(reply(200, TEXT_COMPLETION))
    response = complete(model_over(provider), ModelRequest(messages=(Message.user("hi"),)))
    assert provider.body() == {"model": "gpt-4.1-mini",
                               "messages": [{"role": "user", "content": "hi"}]}
    assert response == ModelResponse(text="Hello! How can I help?",
                                     usage=Usage(input_tokens=19, output_tokens=10),
                                     model="gpt-4.1-mini-2025-04-14", finish_reason="stop",
                                     id="chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT")


def test_tool_calls_keep_raw_arguments_and_usage() -> None:
    """Tool calls come back with their argument text verbatim, broken JSON included."""
    provider = Provider(reply(200, COMPLETION_WITH_TOOLS))
    response = complete(model_over(provider), ModelRequest(messages=(Message.user("hi"),)))
    assert response.tool_calls == (
        ToolCall(id="call_FthC9qRpsL5kBpwwyw6c7j4k", name="get_weather",
                 arguments="{\n  \"city\": \"Paris\",\n  \"unit\": \"c\"\n}"),
        ToolCall(id="call_9dKq2LxwT0vYb1NmZr4sUe8A", name="get_weather", arguments=BROKEN_ARGS),
    )
    assert response.text == ""
    assert response.usage == Usage(input_tokens=82, output_tokens=17, cached_input_tokens=64)
    assert response.model == "gpt-4.1-mini-2025-04-14"
    assert response.finish_reason == "tool_calls"


def test_refusal_is_the_text() -> None:
    """A refusal (content null, ``refusal`` set) is returned as the answer's text."""
    refused = json.loads(json.dumps(TEXT_COMPLETION))
    refused["choices"][0]["message"].update(content=None, refusal="I can't help with that.")
    response = complete(model_over(Provider(reply(200, refused))),
                        ModelRequest(messages=(Message.user("hi"),)))
    assert response.text == "I can't help with that."


RATE_LIMIT_MESSAGE = ("Rate limit reached for gpt-4.1-mini in organization org-abc on tokens per "
                      "min (TPM): Limit 200000, Used 199100, Requested 1432. Please try again "
                      "in 2s.")
LIMIT_HEADERS = {"x-ratelimit-limit-tokens": "200000", "x-ratelimit-remaining-tokens": "0",
                 "x-ratelimit-reset-tokens": "2s"}


@pytest.mark.parametrize(("headers", "expected_s"), [
    ({"retry-after": "2"}, 2.0),
    ({"retry-after-ms": "1500", "retry-after": "2"}, 1.5),
    ({"retry-after": "Wed, 21 Oct 2026 07:28:30 GMT",
      "date": "Wed, 21 Oct 2026 07:28:00 GMT"}, 30.0),
    ({"retry-after": "Wed, 21 Oct 2026 07:28:30 GMT"}, None),  # no Date to measure from
    ({"retry-after": "soon"}, None),
    ({"retry-after": "-3"}, None),
    ({}, None),
])
def test_429_is_rate_limited_with_retry_after(headers: dict[str, str],
                                              expected_s: float | None) -> None:
    """429 → RateLimited; retry-after-ms, seconds or an HTTP date set retry_after_s."""
    provider = Provider(error_reply(429, RATE_LIMIT_MESSAGE, "tokens", "rate_limit_exceeded",
                                    {**LIMIT_HEADERS, **headers}))
    error = failure(model_over(provider))
    assert type(error) is RateLimited
    assert error.retry_after_s == expected_s
    assert (error.model, error.status) == ("openai-main", 429)
    assert "rate_limit_exceeded" in str(error)


ERRORS = [
    # (status, message, type, code) → (error class, status on the error)
    (429, "You exceeded your current quota, please check your plan and billing details.",
     "insufficient_quota", "insufficient_quota", ModelError),
    (400, "This model's maximum context length is 128000 tokens. However, your messages "
          "resulted in 130542 tokens. Please reduce the length of the messages.",
     "invalid_request_error", "context_length_exceeded", ContextOverflow),
    # vLLM: same sentence, no code.
    (400, "This model's maximum context length is 8192 tokens. However, you requested 9000 "
          "tokens (8000 in the messages, 1000 in the completion).", "BadRequestError", None,
     ContextOverflow),
    (400, "Invalid value for 'temperature': must be between 0 and 2.",
     "invalid_request_error", "invalid_value", ModelError),
    (404, "The model `gpt-9` does not exist or you do not have access to it.",
     "invalid_request_error", "model_not_found", ModelError),
    (408, "Request timed out.", "timeout", None, ModelUnavailable),
    (409, "Conflict.", "conflict", None, ModelUnavailable),
    (500, "The server had an error while processing your request. Sorry about that!",
     "server_error", None, ModelUnavailable),
    (503, "The engine is currently overloaded, please try again later.", "server_error", None,
     ModelUnavailable),
]


@pytest.mark.parametrize(("status", "message", "type_", "code", "expected"), ERRORS)
def test_status_errors_map_to_model_errors(status: int, message: str, type_: str,
                                           code: str | None, expected: type[ModelError]) -> None:
    """Each documented error status maps to its tether error, with model and status."""
    error = failure(model_over(Provider(error_reply(status, message, type_, code))))
    assert type(error) is expected
    assert isinstance(error, ModelError)
    assert (error.model, error.status, error.retry_after_s) == ("openai-main", status, None)
    assert message in str(error)


@pytest.mark.parametrize(("status", "code"), [(401, "invalid_api_key"), (403, None)])
def test_401_403_are_auth_expired(status: int, code: str | None) -> None:
    """401 and 403 → AuthExpired naming the model as the dependency."""
    provider = Provider(error_reply(status, "Incorrect API key provided: sk-test. You can find "
                                    "your API key at https://platform.openai.com/account/api-keys.",
                                    "invalid_request_error", code))
    error = failure(model_over(provider))
    assert type(error) is AuthExpired
    assert error.dependency == "openai-main"


@pytest.mark.parametrize("raised", [
    httpx2.ReadTimeout("timed out"), httpx2.ConnectError("connection refused"),
])
def test_timeouts_and_lost_connections_are_unavailable(raised: Exception) -> None:
    """A transport timeout or connection failure → ModelUnavailable, no status."""
    error = failure(model_over(Provider(raised)))
    assert type(error) is ModelUnavailable
    assert (error.model, error.status) == ("openai-main", None)


def test_sdk_makes_one_attempt() -> None:
    """Even a client built with retries makes exactly one attempt: tether owns retrying."""
    provider = Provider(error_reply(503, "overloaded", "server_error", None),
                        reply(200, TEXT_COMPLETION))
    error = failure(model_over(provider, max_retries=5))
    assert type(error) is ModelUnavailable
    assert len(provider.requests) == 1


@pytest.mark.parametrize("answer", [
    reply(200, {**TEXT_COMPLETION, "choices": []}),
    httpx2.Response(200, content=b"<html>Bad gateway</html>",
                    headers={"content-type": "text/html"}),
    reply(200, {**TEXT_COMPLETION, "choices": [{"index": 0, "finish_reason": "stop"}]}),
])
def test_unreadable_answers_are_malformed_output(answer: httpx2.Response) -> None:
    """A 200 without choices, without a message, or not JSON at all → MalformedOutput."""
    error = failure(model_over(Provider(answer)))
    assert type(error) is MalformedOutput
    assert error.model == "openai-main"


def test_tool_message_without_call_id_is_a_usage_error() -> None:
    """A tool message that answers no call is refused before anything is sent."""
    provider = Provider()
    request = ModelRequest(messages=(Message(role="tool", content="42"),))
    with pytest.raises(UsageError, match="tool_call_id"):
        complete(model_over(provider), request)
    assert provider.requests == []


def test_client_and_connection_arguments_are_exclusive() -> None:
    """Passing a client together with base_url or api_key is a usage error."""
    client = openai.AsyncOpenAI(api_key="sk-test")
    with pytest.raises(UsageError, match="either client"):
        OpenAIModel("gpt-4.1-mini", client=client, api_key="sk-other")


def test_base_url_without_a_key_builds(monkeypatch: pytest.MonkeyPatch) -> None:
    """A local server's base_url needs no API key; without one and no base_url it's refused."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_ADMIN_KEY", raising=False)
    model = OpenAIModel("qwen3:8b", base_url="http://127.0.0.1:11434/v1")
    assert model.name == "qwen3:8b"
    with pytest.raises(UsageError, match="OPENAI_API_KEY"):
        OpenAIModel("gpt-4.1-mini")


def test_missing_sdk_fails_at_construction_with_install_hint(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the openai SDK the module imports, and building a model says how to install."""
    monkeypatch.setitem(sys.modules, "openai", None)  # makes `import openai` fail
    # A fresh copy of the adapter module; both entries are put back when the test ends.
    monkeypatch.delitem(sys.modules, "tether.models.openai")
    monkeypatch.delattr(tether.models, "openai")
    module = importlib.import_module("tether.models.openai")
    with pytest.raises(UsageError, match=r"pip install 'tether\[openai\]'"):
        module.OpenAIModel("gpt-4.1-mini", api_key="sk-test")
