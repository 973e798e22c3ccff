"""AnthropicModel against recorded-shape Messages API exchanges, served through the SDK's own
transport hook (``AsyncAnthropic(http_client=httpx2.AsyncClient(transport=MockTransport(...)))``);
nothing reaches the network."""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
from pathlib import Path
from typing import Any

import anthropic
import httpx2
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
from tether.models.anthropic import DEFAULT_MAX_TOKENS, AnthropicModel
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

BASE_URL = "https://api.anthropic.com"
BROKEN_ARGS = '{"city": "Par'  # a model's truncated JSON, as an OpenAI-style model may leave it


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
    base = {"content-type": "application/json", "request-id": "req_011CSHoEeqs5C35K2UUqR7Fy",
            "anthropic-organization-id": "5e3c8a1d-2f7b-4c6e-9a0d-1b2c3d4e5f60"}
    return httpx2.Response(status, content=json.dumps(body).encode(),
                           headers={**base, **(headers or {})})


def error_reply(status: int, type_: str, message: str, headers: dict[str, str] | None = None,
                details: dict[str, str] | None = None) -> httpx2.Response:
    """An error in Anthropic's documented shape: ``{"type": "error", "error": {type, message},
    "request_id"}``, with ``error.details`` when the cause has a code."""
    error: dict[str, object] = {"type": type_, "message": message}
    if details is not None:
        error["details"] = details
    return reply(status, {"type": "error", "error": error,
                          "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy"}, headers)


def model_over(provider: Provider, *, max_retries: int = 2) -> AnthropicModel:
    http = httpx2.AsyncClient(transport=httpx2.MockTransport(provider))
    client = anthropic.AsyncAnthropic(api_key="sk-ant-test", base_url=BASE_URL, http_client=http,
                                      max_retries=max_retries)
    return AnthropicModel("claude-sonnet-4-6", client=client, name="claude-main")


def complete(model: AnthropicModel, request: ModelRequest) -> ModelResponse:
    return asyncio.run(model.complete(request))


def failure(model: AnthropicModel, settings: ModelSettings | None = None) -> BaseException:
    request = ModelRequest(messages=(Message.user("hi"),), settings=settings or ModelSettings())
    with pytest.raises(Exception) as caught:
        complete(model, request)
    return caught.value


MESSAGE_WITH_TOOL_USE = {
    "id": "msg_01Aq9w938a90dw8q",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-6",
    "content": [
        {"type": "text", "text": "I'll check the weather "},
        {"type": "text", "text": "in San Francisco."},
        {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather",
         "input": {"unit": "celsius", "location": "San Francisco, CA"}},
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {"input_tokens": 472, "output_tokens": 89, "cache_creation_input_tokens": 20,
              "cache_read_input_tokens": 100, "service_tier": "standard"},
}

TEXT_MESSAGE = {
    "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-6",
    "content": [{"type": "text", "text": "Hi! My name is Claude."}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 2095, "output_tokens": 503, "cache_creation_input_tokens": 0,
              "cache_read_input_tokens": 0},
}


def test_is_a_model() -> None:
    """AnthropicModel satisfies the Model protocol and is named by ``name``."""
    model = model_over(Provider())
    assert isinstance(model, Model)
    assert model.name == "claude-main"


def test_request_body_maps_conversation_tools_and_settings() -> None:
    """System → ``system``, tool calls → tool_use, results merged into one user turn."""
    provider = Provider(reply(200, TEXT_MESSAGE))
    earlier = (ToolCall(id="toolu_1", name="get_weather", arguments='{"city": "Oslo"}'),
               ToolCall(id="toolu_2", name="get_weather", arguments=BROKEN_ARGS),
               ToolCall(id="toolu_3", name="get_weather", arguments="[1, 2]"))
    request = ModelRequest(
        messages=(Message.system("Be brief."), Message.system("Use metric units."),
                  Message.user("Weather in Oslo and Paris?"),
                  Message.assistant("Checking.", earlier),
                  Message.tool(earlier[0], "4°C"), Message.tool(earlier[1], "bad arguments"),
                  Message.tool(earlier[2], "bad arguments"),
                  Message.assistant(tool_calls=earlier[:1]), Message.tool(earlier[0], "5°C"),
                  Message.user("Thanks")),
        tools=(ToolSpec(name="get_weather", description="Current weather",
                        parameters={"type": "object",
                                    "properties": {"city": {"type": "string"}},
                                    "required": ["city"]}),
               ToolSpec(name="now")),
        settings=ModelSettings(temperature=0.2, max_output_tokens=512, timeout_s=12.5,
                               extra={"metadata": {"user_id": "u-42"}}),
    )
    complete(model_over(provider), request)
    sent = provider.requests[0]
    assert sent.method == "POST"
    assert sent.url == f"{BASE_URL}/v1/messages"
    assert "anthropic-version" in sent.headers
    assert sent.extensions["timeout"]["read"] == 12.5
    use_1 = {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
             "input": {"city": "Oslo"}}
    assert provider.body() == {
        "model": "claude-sonnet-4-6",
        "max_tokens": 512,
        "system": "Be brief.\n\nUse metric units.",
        "messages": [
            {"role": "user", "content": "Weather in Oslo and Paris?"},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Checking."},
                use_1,
                # Arguments that are not a JSON object go back as {} (documented, lossy resend).
                {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {}},
                {"type": "tool_use", "id": "toolu_3", "name": "get_weather", "input": {}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "4°C"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "bad arguments"},
                {"type": "tool_result", "tool_use_id": "toolu_3", "content": "bad arguments"},
            ]},
            {"role": "assistant", "content": [use_1]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "5°C"},
            ]},
            {"role": "user", "content": "Thanks"},
        ],
        "tools": [
            {"name": "get_weather", "description": "Current weather",
             "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                              "required": ["city"]}},
            {"name": "now", "input_schema": {"type": "object"}},
        ],
        # No temperature: API 2026-10-21 rejects sampling parameters.
        "metadata": {"user_id": "u-42"},
    }


def test_max_tokens_defaults_and_nothing_optional_is_sent() -> None:
    """Without settings, max_tokens is the default and no system, tools or extras are sent."""
    provider = Provider(reply(200, TEXT_MESSAGE))
    response = complete(model_over(provider), ModelRequest(messages=(Message.user("hi"),)))
    assert provider.body() == {"model": "claude-sonnet-4-6", "max_tokens": DEFAULT_MAX_TOKENS,
                               "messages": [{"role": "user", "content": "hi"}]}
    assert DEFAULT_MAX_TOKENS == 4096
    assert response == ModelResponse(text="Hi! My name is Claude.",
                                     usage=Usage(input_tokens=2095, output_tokens=503),
                                     model="claude-sonnet-4-6", finish_reason="end_turn",
                                     id="msg_013Zva2CMHLNnXjNJJKqJ2EF")


def test_text_and_tool_use_blocks_are_read() -> None:
    """Text blocks are joined; tool_use input becomes sorted-key JSON; cache reads count."""
    provider = Provider(reply(200, MESSAGE_WITH_TOOL_USE))
    response = complete(model_over(provider), ModelRequest(messages=(Message.user("hi"),)))
    assert response.text == "I'll check the weather in San Francisco."
    assert response.tool_calls == (
        ToolCall(id="toolu_01A09q90qw90lq917835lq9", name="get_weather",
                 arguments='{"location": "San Francisco, CA", "unit": "celsius"}'),
    )
    # Input counts cache reads and writes too, so cached ⊆ input as the price table expects.
    assert response.usage == Usage(input_tokens=592, output_tokens=89, cached_input_tokens=100)
    assert response.model == "claude-sonnet-4-6"
    assert response.finish_reason == "tool_use"


RATE_LIMIT_MESSAGE = ("This request would exceed your organization's rate limit of 50,000 input "
                      "tokens per minute.")
LIMIT_HEADERS = {"anthropic-ratelimit-input-tokens-limit": "50000",
                 "anthropic-ratelimit-input-tokens-remaining": "0",
                 "anthropic-ratelimit-input-tokens-reset": "2026-11-03T10:15:17Z",
                 "x-should-retry": "true"}


@pytest.mark.parametrize(("headers", "expected_s"), [
    ({"retry-after": "17"}, 17.0),
    ({"retry-after-ms": "250", "retry-after": "1"}, 0.25),
    ({"retry-after": "Tue, 03 Nov 2026 10:15:17 GMT",
      "date": "Tue, 03 Nov 2026 10:15:00 GMT"}, 17.0),
    ({"retry-after": "later"}, None),
    ({}, None),
])
def test_429_is_rate_limited_with_retry_after(headers: dict[str, str],
                                              expected_s: float | None) -> None:
    """429 rate_limit_error → RateLimited with the server's retry-after."""
    provider = Provider(error_reply(429, "rate_limit_error", RATE_LIMIT_MESSAGE,
                                    {**LIMIT_HEADERS, **headers}))
    error = failure(model_over(provider))
    assert type(error) is RateLimited
    assert error.retry_after_s == expected_s
    assert (error.model, error.status) == ("claude-main", 429)


ERRORS = [
    # (status, error.type, message, details) → error class
    (429, "rate_limit_error", "Your organization has reached its monthly API usage limit.",
     {"error_code": "enforced_spend_limit_reached"}, ModelError),
    (400, "invalid_request_error", "prompt is too long: 215402 tokens > 200000 maximum", None,
     ContextOverflow),
    (400, "invalid_request_error", "input length and `max_tokens` exceed context limit: "
          "197000 + 8192 > 200000, decrease input length or `max_tokens` and try again", None,
     ContextOverflow),
    (413, "request_too_large", "Request exceeds the maximum allowed number of bytes.", None,
     ContextOverflow),
    (400, "invalid_request_error", "messages.1.content.0.type: Field required", None,
     ModelError),
    (402, "billing_error", "Your credit balance is too low to access the Anthropic API.", None,
     ModelError),
    (404, "not_found_error", "model: claude-nonexistent", None, ModelError),
    (409, "conflict_error", "Conflict.", None, ModelUnavailable),
    (500, "api_error", "Internal server error", None, ModelUnavailable),
    (529, "overloaded_error", "Overloaded", None, ModelUnavailable),
]


@pytest.mark.parametrize(("status", "type_", "message", "details", "expected"), ERRORS)
def test_status_errors_map_to_model_errors(status: int, type_: str, message: str,
                                           details: dict[str, str] | None,
                                           expected: type[ModelError]) -> None:
    """Each documented error maps to its tether error, with model and status."""
    error = failure(model_over(Provider(error_reply(status, type_, message, details=details))))
    assert type(error) is expected
    assert isinstance(error, ModelError)
    assert (error.model, error.status, error.retry_after_s) == ("claude-main", status, None)
    assert message in str(error)


@pytest.mark.parametrize(("status", "type_", "message"), [
    (401, "authentication_error", "invalid x-api-key"),
    (403, "permission_error", "Your API key does not have permission to use the specified "
                              "resource."),
])
def test_401_403_are_auth_expired(status: int, type_: str, message: str) -> None:
    """401 and 403 → AuthExpired naming the model as the dependency."""
    error = failure(model_over(Provider(error_reply(status, type_, message))))
    assert type(error) is AuthExpired
    assert error.dependency == "claude-main"


@pytest.mark.parametrize("raised", [
    httpx2.ReadTimeout("timed out"), httpx2.ConnectError("connection refused"),
])
def test_timeouts_and_lost_connections_are_unavailable(raised: Exception) -> None:
    """A transport timeout or connection failure → ModelUnavailable, no status."""
    error = failure(model_over(Provider(raised)))
    assert type(error) is ModelUnavailable
    assert (error.model, error.status) == ("claude-main", None)


def test_sdk_makes_one_attempt() -> None:
    """Even a client built with retries makes exactly one attempt: tether owns retrying."""
    provider = Provider(error_reply(529, "overloaded_error", "Overloaded"),
                        reply(200, TEXT_MESSAGE))
    error = failure(model_over(provider, max_retries=5))
    assert type(error) is ModelUnavailable
    assert len(provider.requests) == 1


@pytest.mark.parametrize("answer", [
    reply(200, {key: value for key, value in TEXT_MESSAGE.items() if key != "content"}),
    httpx2.Response(200, content=b"<html>Bad gateway</html>",
                    headers={"content-type": "text/html"}),
])
def test_unreadable_answers_are_malformed_output(answer: httpx2.Response) -> None:
    """A 200 without content, or not JSON at all → MalformedOutput."""
    error = failure(model_over(Provider(answer)))
    assert type(error) is MalformedOutput
    assert error.model == "claude-main"


def test_long_non_streaming_call_needs_a_timeout() -> None:
    """A max_tokens the SDK will not send without streaming is a usage error; a timeout
    lets it through."""
    provider = Provider(reply(200, TEXT_MESSAGE))
    model = model_over(provider)
    error = failure(model, ModelSettings(max_output_tokens=64_000))
    assert type(error) is UsageError
    assert "timeout_s" in str(error)
    assert provider.requests == []
    complete(model, ModelRequest(messages=(Message.user("hi"),),
                                 settings=ModelSettings(max_output_tokens=64_000,
                                                        timeout_s=1800.0)))
    assert provider.body()["max_tokens"] == 64_000


def test_tool_message_without_call_id_is_a_usage_error() -> None:
    """A tool message that answers no call is refused before anything is sent."""
    provider = Provider()
    with pytest.raises(UsageError, match="tool_call_id"):
        complete(model_over(provider),
                 ModelRequest(messages=(Message(role="tool", content="42"),)))
    assert provider.requests == []


def test_client_and_connection_arguments_are_exclusive() -> None:
    """Passing a client together with base_url or api_key is a usage error."""
    client = anthropic.AsyncAnthropic(api_key="sk-ant-test")
    with pytest.raises(UsageError, match="either client"):
        AnthropicModel("claude-sonnet-4-6", client=client, base_url="http://127.0.0.1:1")


def test_no_credentials_is_a_usage_error(monkeypatch: pytest.MonkeyPatch,
                                         tmp_path: Path) -> None:
    """With no key anywhere, construction fails and names ANTHROPIC_API_KEY."""
    for var in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_PROFILE",
                "ANTHROPIC_IDENTITY_TOKEN", "ANTHROPIC_IDENTITY_TOKEN_FILE",
                "ANTHROPIC_FEDERATION_RULE_ID", "ANTHROPIC_ORGANIZATION_ID",
                "ANTHROPIC_CONFIG_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no profile in ~/.config/anthropic
    with pytest.raises(UsageError, match="ANTHROPIC_API_KEY"):
        AnthropicModel("claude-sonnet-4-6")
    assert AnthropicModel("claude-sonnet-4-6", api_key="sk-ant-test").name == "claude-sonnet-4-6"


def test_missing_sdk_fails_at_construction_with_install_hint(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the anthropic SDK the module imports, and building a model says how to install."""
    monkeypatch.setitem(sys.modules, "anthropic", None)  # makes `import anthropic` fail
    # A fresh copy of the adapter module; both entries are put back when the test ends.
    monkeypatch.delitem(sys.modules, "tether.models.anthropic")
    monkeypatch.delattr(tether.models, "anthropic")
    module = importlib.import_module("tether.models.anthropic")
    with pytest.raises(UsageError, match=r"pip install 'tether\[anthropic\]'"):
        module.AnthropicModel("claude-sonnet-4-6", api_key="sk-ant-test")
