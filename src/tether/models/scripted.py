"""A model that is a plain function of the conversation: deterministic, for tests and the
simulator.

>>> def script(request: ModelRequest) -> ModelResponse:
...     if request.messages[-1].role == "tool":
...         return reply("done")
...     return call("lookup", {"order_id": "A-1"})
>>> model = ScriptedModel(script)
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from tether.models.base import ModelRequest, ModelResponse, TextSink, ToolCall, Usage

__all__ = ["ScriptedModel", "call", "reply", "sequence"]

Script = Callable[[ModelRequest], ModelResponse | Awaitable[ModelResponse]]


class ScriptedModel:
    """Answers with ``script(request)``. The script may raise the model errors of
    :mod:`tether.errors` to play a failing provider. Usage, when the script does not set it,
    is estimated as one token per four characters, so budgets have something to count.

    It can stream (:meth:`stream`, used when ``ModelSettings.stream`` is set): the reply's
    text goes out in deltas of ``delta_chars`` characters, then the reply is returned whole,
    so a server's streaming can be tested without a provider."""

    def __init__(self, script: Script, *, name: str = "scripted", delta_chars: int = 8) -> None:
        if delta_chars < 1:
            raise ValueError(f"delta_chars must be at least 1, got {delta_chars}")
        self.script = script
        self.name = name
        self.delta_chars = delta_chars
        self.calls = 0

    async def stream(self, request: ModelRequest, on_delta: TextSink) -> ModelResponse:
        """The scripted reply, its text sent to ``on_delta`` piece by piece first."""
        response = await self.complete(request)
        step = self.delta_chars
        for start in range(0, len(response.text), step):
            on_delta(response.text[start:start + step])
        return response

    async def complete(self, request: ModelRequest) -> ModelResponse:
        self.calls += 1
        response = self.script(request)
        if inspect.isawaitable(response):
            response = await response
        if not response.model:
            response = response.model_copy(update={"model": self.name})
        if response.usage == Usage():
            response = response.model_copy(update={"usage": estimate_usage(request, response)})
        return response


def reply(text: str) -> ModelResponse:
    """A final answer."""
    return ModelResponse(text=text, finish_reason="stop")


def call(name: str, arguments: dict[str, Any] | str | None = None, *,
         call_id: str | None = None, text: str = "") -> ModelResponse:
    """A response asking for one tool call (``arguments`` as a dict, or raw text to play a
    model that writes broken JSON)."""
    raw = arguments if isinstance(arguments, str) else json.dumps(arguments or {},
                                                                   sort_keys=True)
    return ModelResponse(text=text, finish_reason="tool_calls",
                         tool_calls=(ToolCall(id=call_id or f"call_{name}", name=name,
                                              arguments=raw),))


def sequence(responses: Sequence[ModelResponse]) -> Script:
    """A script answering turn n (the number of assistant messages so far) with
    ``responses[n]``; past the end it repeats the last. A function of the conversation only,
    so a resumed run in a new process gets the same answers."""
    items = list(responses)
    if not items:
        raise ValueError("sequence() needs at least one response")

    def script(request: ModelRequest) -> ModelResponse:
        turn = sum(1 for m in request.messages if m.role == "assistant")
        return items[min(turn, len(items) - 1)]

    return script


def estimate_usage(request: ModelRequest, response: ModelResponse) -> Usage:
    chars_in = sum(len(m.content) + sum(len(c.arguments) for c in m.tool_calls)
                   for m in request.messages)
    chars_out = len(response.text) + sum(len(c.arguments) + len(c.name)
                                         for c in response.tool_calls)
    return Usage(input_tokens=max(1, chars_in // 4), output_tokens=max(1, chars_out // 4))
