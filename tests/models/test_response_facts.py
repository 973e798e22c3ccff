"""The facts the adapters give traces: the provider's response id (plain and streamed) and the
server a model talks to, read from its base URL. Over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
from typing import Any

import openai
import pytest

from tests.models.local_server import LocalServer, completion
from tests.models.test_anthropic_local import message
from tests.models.test_streaming import (  # noqa: F401  (fresh, provider: pytest fixtures)
    Plan,
    answer,
    anthropic_frames,
    ask,
    fresh,
    openai_frames,
    provider,
)
from tether.models.anthropic import AnthropicModel
from tether.models.base import Message, ModelRequest, ModelResponse, server_of
from tether.models.openai import OpenAIModel

HI = ModelRequest(messages=(Message.user("hi"),))


def test_openai_response_id_and_server_over_http() -> None:
    with LocalServer([(200, completion("hello"))]) as server:
        model = OpenAIModel("local-model", base_url=server.url + "/v1")
        response = asyncio.run(model.complete(HI))
    assert response.id == "chatcmpl-local"
    assert model.server_address == "127.0.0.1"
    assert model.server_port == int(server.url.rsplit(":", 1)[1])
    assert response.model_dump(mode="json")["id"] == "chatcmpl-local"


def test_a_completion_without_an_id_has_none_and_journals_as_before() -> None:
    body = completion("hello")
    del body["id"]
    with LocalServer([(200, body)]) as server:
        response = asyncio.run(OpenAIModel("m", base_url=server.url + "/v1").complete(HI))
    assert response.id is None
    assert "id" not in response.model_dump(mode="json")
    assert response == ModelResponse.model_validate(response.model_dump(mode="json"))


def test_anthropic_response_id_and_server_over_http() -> None:
    with LocalServer([(200, message("hello"))]) as server:
        model = AnthropicModel("claude-local", base_url=server.url, api_key="local")
        response = asyncio.run(model.complete(HI))
    assert response.id == "msg_local"
    assert (model.server_address, model.server_port) == ("127.0.0.1",
                                                         int(server.url.rsplit(":", 1)[1]))


def test_streamed_responses_carry_the_id(request: pytest.FixtureRequest) -> None:
    served, url = request.getfixturevalue("fresh")  # the SSE server of test_streaming
    served.queue(Plan(frames=openai_frames(["Sun", "ny."], [], "stop")),
                 Plan(frames=anthropic_frames(["Sun", "ny."], [], "end_turn")))
    streamed, _ = answer("openai", url, ask(stream=True))
    assert streamed.id == "chatcmpl-1"
    streamed, _ = answer("anthropic", url, ask(stream=True))
    assert streamed.id == "msg_1"


def test_a_model_given_a_client_reads_the_server_from_it() -> None:
    client = openai.AsyncOpenAI(api_key="sk-test", base_url="http://10.1.2.3:8000/v1")
    model = OpenAIModel("m", client=client)
    assert (model.server_address, model.server_port) == ("10.1.2.3", 8000)
    default = OpenAIModel("gpt-4o", api_key="sk-test")
    assert (default.server_address, default.server_port) == ("api.openai.com", 443)
    hosted = AnthropicModel("claude-sonnet-4-6", api_key="sk-ant-test")
    assert (hosted.server_address, hosted.server_port) == ("api.anthropic.com", 443)


@pytest.mark.parametrize(("url", "expected"), [
    ("https://api.openai.com/v1", ("api.openai.com", 443)),
    ("http://localhost:11434/v1", ("localhost", 11434)),
    ("http://example.test/v1", ("example.test", 80)),
    ("http://[::1]:8080/v1", ("::1", 8080)),
    ("not a url", (None, None)),
    ("http://host:99999/", (None, None)),  # an impossible port: urlsplit refuses it
    (None, (None, None)),
])
def test_server_of(url: Any, expected: tuple[str | None, int | None]) -> None:
    assert server_of(url) == expected
