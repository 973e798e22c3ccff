"""AnthropicModel against a real HTTP server on 127.0.0.1: one model used from several event
loops, and the rule for 5xx answers, counted at the server."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.models.local_server import LocalServer
from tether.errors import ModelError, ModelUnavailable
from tether.models.anthropic import AnthropicModel
from tether.models.base import Message, ModelRequest

REQUEST = ModelRequest(messages=(Message.user("hi"),))


def message(text: str) -> dict[str, Any]:
    """A Messages API body answering with text."""
    return {"id": "msg_local", "type": "message", "role": "assistant", "model": "claude-local",
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
            "stop_sequence": None, "usage": {"input_tokens": 5, "output_tokens": 2}}


def error(type_: str, text: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": type_, "message": text}}


def model_at(server: LocalServer) -> AnthropicModel:
    return AnthropicModel("claude-local", base_url=server.url, api_key="local")


def test_two_asyncio_runs_with_one_model() -> None:
    """Two asyncio.run() calls with one model both complete (no 'Event loop is closed')."""
    with LocalServer([(200, message("one")), (200, message("two"))]) as server:
        model = model_at(server)
        texts = [asyncio.run(model.complete(REQUEST)).text for _ in range(2)]
    assert texts == ["one", "two"]
    assert server.paths == ["/v1/messages", "/v1/messages"]


def test_a_repeated_500_is_permanent_and_529_is_not() -> None:
    """An api_error 500 is worth one retry; the same request failing again is a ModelError.
    529 (overloaded) stays unavailable however often it comes."""
    with LocalServer([(500, error("api_error", "Internal server error"))]) as server:
        model = model_at(server)

        async def attempts(n: int) -> list[ModelError]:
            errors: list[ModelError] = []
            for _ in range(n):
                try:
                    await model.complete(REQUEST)
                except ModelError as exc:
                    errors.append(exc)
            return errors

        first, second = asyncio.run(attempts(2))
    assert (type(first), type(second)) == (ModelUnavailable, ModelError)
    assert second.status == 500 and "again" in str(second)
    with LocalServer([(529, error("overloaded_error", "Overloaded"))]) as server:
        model = model_at(server)
        assert {type(e) for e in asyncio.run(attempts(3))} == {ModelUnavailable}
        assert server.requests == 3


def test_a_400_is_permanent_at_once() -> None:
    """invalid_request_error (400) is a ModelError on the first answer."""
    with LocalServer([(400, error("invalid_request_error", "messages: bad"))]) as server:
        try:
            asyncio.run(model_at(server).complete(REQUEST))
        except ModelError as exc:
            assert type(exc) is ModelError and exc.status == 400
        else:
            raise AssertionError("a 400 must raise")
    assert server.requests == 1
