"""The one-method contract an agent of another framework meets, and its adapters: a plain
function, an OpenAI-chat HTTP endpoint, Pydantic AI, LangGraph (see :mod:`tether.sim.foreign`).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from pydantic_core import to_jsonable_python

from tether.errors import ModelError, UsageError
from tether.models.base import Message

__all__ = ["Done", "FinalReply", "Replier", "langgraph_replier", "openai_chat_replier",
           "pydantic_ai_replier", "replier"]

#: Whether the framework's output (a reply, a run's output, a graph's state) ends the
#: conversation.
Done = Callable[[Any], bool]


@runtime_checkable
class Replier(Protocol):
    """An agent of any framework, as an episode drives it: the conversation so far (the
    user's and the agent's messages, oldest first, the last one the user's) in, the agent's
    next reply out. Return a :class:`FinalReply` to end the conversation. (A plain ``def``
    reply is driven too.)"""

    async def reply(self, conversation: Sequence[Message]) -> str: ...


class FinalReply(str):
    """A reply after which the agent is done: the conversation ends with it.

    >>> FinalReply("Refunded. Goodbye!") == "Refunded. Goodbye!"
    True
    """

    __slots__ = ()


def _ending(text: str, output: Any, done: Done | None) -> str:
    return FinalReply(text) if done is not None and done(output) else text


@dataclass
class _FunctionReplier:
    fn: Callable[[Sequence[Message]], str | Awaitable[str]]
    done: Done | None = None

    async def reply(self, conversation: Sequence[Message]) -> str:
        said = self.fn(conversation)
        if inspect.isawaitable(said):
            said = await said
        if isinstance(said, FinalReply):
            return said
        return _ending(_text(said, "the function"), said, self.done)


def replier(fn: Callable[[Sequence[Message]], str | Awaitable[str]], *,
            done: Done | None = None) -> Replier:
    """A :class:`Replier` from a plain function (sync or async) of the conversation;
    ``done(reply)`` says whether a reply ends the conversation.

    >>> echo = replier(lambda conversation: "you said " + conversation[-1].content)
    """
    return _FunctionReplier(fn, done)


@dataclass
class _OpenAIChatReplier:
    base_url: str
    model: str
    api_key: str | None
    instructions: str | None
    transport: Any
    headers: dict[str, str]
    timeout_s: float
    extra: dict[str, Any]
    done: Done | None

    async def reply(self, conversation: Sequence[Message]) -> str:
        httpx = _needs("httpx", "httpx")
        messages = [{"role": "system", "content": self.instructions}] if self.instructions \
            else []
        messages += [{"role": m.role, "content": m.content} for m in conversation]
        headers = dict(self.headers)
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        url = self.base_url.rstrip("/") + "/chat/completions"
        body = {**self.extra, "model": self.model, "messages": messages}
        async with httpx.AsyncClient(transport=self.transport, timeout=self.timeout_s) as http:
            answer = await http.post(url, json=body, headers=headers)
        if answer.status_code >= 400:
            raise ModelError(f"{url} answered {answer.status_code}: {answer.text[:300]}",
                             model=self.model, status=answer.status_code)
        try:
            content = answer.json()["choices"][0]["message"].get("content")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise ModelError(f"{url} answered what is not a chat completion "
                             f"({type(exc).__name__}: {exc}): {answer.text[:300]}",
                             model=self.model, status=answer.status_code) from None
        if not isinstance(content, str):
            raise ModelError(f"{url}: the completion carries no text reply (content "
                             f"{content!r}); an agent behind an endpoint runs its own tools "
                             "and answers in text", model=self.model)
        return _ending(content, content, self.done)


def openai_chat_replier(base_url: str, model: str, *, api_key: str | None = None,
                        instructions: str | None = None, transport: Any = None,
                        headers: dict[str, str] | None = None, timeout_s: float = 60.0,
                        extra: dict[str, Any] | None = None,
                        done: Done | None = None) -> Replier:
    """A :class:`Replier` for an agent behind an HTTP endpoint that speaks OpenAI chat
    completions: each turn POSTs the conversation to ``{base_url}/chat/completions`` (with
    ``instructions`` as a system message, ``extra`` merged into the body) and returns the
    first choice's text. ``transport`` is an ``httpx`` transport (default: the network).
    A status >= 400 or an answer that is not a completion raises
    :class:`~tether.errors.ModelError`."""
    return _OpenAIChatReplier(base_url, model, api_key, instructions, transport,
                              dict(headers or {}), timeout_s, dict(extra or {}), done)


@dataclass
class _PydanticAIReplier:
    agent: Any
    deps: Any
    done: Done | None
    history: list[Any] = field(default_factory=list)
    seen: int = 0

    async def reply(self, conversation: Sequence[Message]) -> str:
        messages = _needs("pydantic_ai.messages", "pydantic-ai-slim")
        if self.seen == 0 and len(conversation) > 1:
            # Built anew mid-conversation (a worker replaced after a crash): the conversation
            # so far becomes the history the agent would have had.
            self.history = [
                messages.ModelRequest(parts=[messages.UserPromptPart(m.content)])
                if m.role == "user" else
                messages.ModelResponse(parts=[messages.TextPart(m.content)])
                for m in conversation[:-1]]
            self.seen = len(conversation) - 1
        prompt = "\n\n".join(m.content for m in conversation[self.seen:] if m.role == "user")
        result = await self.agent.run(prompt, message_history=self.history or None,
                                      deps=self.deps)
        self.history = list(result.all_messages())
        self.seen = len(conversation) + 1  # and the reply, which the conversation gets next
        output = result.output
        text = output if isinstance(output, str) else \
            json.dumps(to_jsonable_python(output), sort_keys=True)
        return _ending(text, output, self.done)


def pydantic_ai_replier(agent: Any, *, deps: Any = None, done: Done | None = None) -> Replier:
    """A :class:`Replier` for a Pydantic AI ``Agent``: each turn runs it on the user's new
    message with the agent's message history so far (``result.all_messages()`` of the last
    turn), so it remembers the conversation as in a chat app. ``done(output)`` says whether
    the run's output ends the conversation; a non-text output is replied as JSON."""
    return _PydanticAIReplier(agent, deps, done)


@dataclass
class _LangGraphReplier:
    graph: Any
    config: dict[str, Any] | None
    done: Done | None
    seen: int = 0

    async def reply(self, conversation: Sequence[Message]) -> str:
        # A graph with a checkpointer (a thread in ``config``) keeps the history itself: send
        # it only what is new. Without one, it is sent the whole conversation every turn.
        new = conversation[self.seen:] if self.config is not None else conversation
        state = {"messages": [{"role": m.role, "content": m.content} for m in new]}
        result = await self.graph.ainvoke(state, config=self.config)
        self.seen = len(conversation) + 1
        try:
            last = result["messages"][-1]
        except (KeyError, IndexError, TypeError) as exc:
            raise UsageError(f"the graph's final state has no messages ({type(exc).__name__}: "
                             f"{exc}); langgraph_replier drives graphs whose state has a "
                             "'messages' list (MessagesState)") from None
        if _role(last) not in ("ai", "assistant", "AIMessageChunk"):
            # The state ends with what was sent (or a tool's answer): the graph said nothing,
            # and its input is not its reply.
            raise UsageError(f"the graph gave no reply: its final state ends with a "
                             f"{_role(last) or type(last).__name__} message, not one of the "
                             "agent's (an AIMessage)")
        content = getattr(last, "content", None)
        if content is None and isinstance(last, dict):
            content = last.get("content")
        if isinstance(content, list):  # content blocks: keep the text ones
            content = "".join(b if isinstance(b, str) else str(b.get("text", ""))
                              for b in content if isinstance(b, str | dict))
        return _ending(_text(content, "the graph's last message"), result, self.done)


def langgraph_replier(graph: Any, *, config: dict[str, Any] | None = None,
                      done: Done | None = None) -> Replier:
    """A :class:`Replier` for a compiled LangGraph graph whose state has a ``messages`` list:
    each turn ``await graph.ainvoke({"messages": [...]}, config=config)`` and the last
    message's text is the reply (a graph whose state does not end with an AI message gave
    none: :class:`~tether.errors.UsageError`). With ``config`` (a checkpointed thread) only the new
    messages are sent; without it, the whole conversation. ``done(state)`` says whether the
    final state ends the conversation."""
    return _LangGraphReplier(graph, config, done)


def _role(message: Any) -> str:
    """Who said a LangGraph state's message: a message object's ``type`` (``ai``, ``human``,
    ``tool`` …), a dict's ``role`` or ``type``."""
    if isinstance(message, dict):
        said = message.get("role", message.get("type"))
    else:
        said = getattr(message, "type", None)
    return said if isinstance(said, str) else ""


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise UsageError(f"{what} replied {type(value).__name__} {value!r}; a reply is text")
    return value


def _needs(module: str, package: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise UsageError(f"this adapter needs {package}: pip install {package}") from exc


