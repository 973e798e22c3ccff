"""OpenAI Chat Completions as a tether :class:`~tether.models.base.Model`.

Works with OpenAI and with any server that speaks the Chat Completions protocol (vLLM,
Ollama, llama.cpp, LiteLLM …) through ``base_url``. Needs the optional extra::

    pip install 'tether[openai]'

Example::

    model = OpenAIModel("gpt-4.1-mini")                      # key from OPENAI_API_KEY
    local = OpenAIModel("qwen3:8b", base_url="http://localhost:11434/v1")   # Ollama
    response = await model.complete(ModelRequest(messages=(Message.user("hi"),)))

The adapter is a translation and nothing more: the SDK's own retries are turned off
(``max_retries=0``) because tether's retry policy decides what to retry and journals it, tool
arguments come back exactly as the model wrote them (the agent parses and judges them), and
every SDK exception is translated at the boundary into the model errors of
:mod:`tether.errors`:

=====================================================  ====================================
provider answer                                        raised
=====================================================  ====================================
429                                                    ``RateLimited`` (``retry_after_s``)
429 ``insufficient_quota``                             ``ModelError``: retrying cannot help
400 context length exceeded                            ``ContextOverflow``
401, 403                                               ``AuthExpired``
408, 409, 502, 503, 504, 529                           ``ModelUnavailable``
timeout, lost connection                               ``ModelUnavailable``
500 and other 5xx, the first time                      ``ModelUnavailable``
a 500 again for the same request, 501                  ``ModelError``: the request is at
                                                       fault (see ``tether.models._http``)
a 5xx that says the request is invalid                 ``ModelError``
other 4xx                                              ``ModelError`` (``status`` set)
a body without choices, or not a completion at all     ``MalformedOutput``
a stream that ends before its ``finish_reason``        ``ModelUnavailable``
an error inside a stream                               by its ``type``/``code``, as above
=====================================================  ====================================

Streaming (``ModelSettings.stream``, or :meth:`OpenAIModel.stream` with a delta sink): the call
is made with ``stream=True`` and ``stream_options.include_usage``; text deltas go to the sink
as they arrive, and the chunks are assembled into the same :class:`ModelResponse` a plain call
returns (tool calls by their ``index``, argument text joined from its fragments, usage from the
last chunk). A stream is complete only once a choice said its ``finish_reason``: one cut before
that is a lost connection, never half an answer.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from tether.errors import (
    MalformedOutput,
    ModelError,
    ModelUnavailable,
    TetherError,
    UsageError,
)
from tether.models._clients import LoopClients
from tether.models._http import ServerFailures, status_error
from tether.models.base import (
    Message,
    ModelRequest,
    ModelResponse,
    TextSink,
    ToolCall,
    ToolSpec,
    Usage,
    server_of,
)

if TYPE_CHECKING:  # the SDK is optional: imported for real only when a model is built
    from openai import AsyncOpenAI, OpenAIError
    from openai.types.chat import (
        ChatCompletionFunctionToolParam,
        ChatCompletionMessageFunctionToolCallParam,
        ChatCompletionMessageParam,
        ChatCompletionToolChoiceOptionParam,
    )

__all__ = ["OpenAIModel"]

_INSTALL_HINT = "pip install 'tether[openai]'"
# Phrases OpenAI-compatible servers use when the prompt does not fit: OpenAI and vLLM say
# "maximum context length", llama.cpp "exceeds the available context size".
_OVERFLOW_PHRASES = ("context_length_exceeded", "context length", "context size",
                     "context window", "exceed_context_size")
# An error sent inside a stream has no HTTP status of its own (the answer began with 200):
# the status its type or code stands for.
_STREAM_ERROR_STATUS = {"server_error": 500, "internal_error": 500, "api_error": 500,
                        "service_unavailable": 503, "overloaded": 503, "timeout": 504,
                        "rate_limit_exceeded": 429, "rate_limit_error": 429,
                        "insufficient_quota": 429, "context_length_exceeded": 400}


class OpenAIModel:
    """A Chat Completions model with tool calling.

    ``model`` is the provider's model id; ``name`` (default: ``model``) labels journal
    entries, traces and errors. Give either ``client`` (an ``openai.AsyncOpenAI`` you built,
    e.g. with a custom ``http_client``) or ``base_url``/``api_key``, not both. Without an
    ``api_key`` the SDK reads ``OPENAI_API_KEY``; a ``base_url`` with no key anywhere gets a
    placeholder, since local servers (Ollama, llama.cpp, vLLM without ``--api-key``) ignore it.

    Settings: ``temperature`` as is; ``max_output_tokens`` as ``max_completion_tokens`` (the
    current field; put ``{"max_tokens": n}`` in ``extra`` for an old server that only knows
    that one); ``timeout_s`` as the per-request timeout; ``extra`` merged into the JSON body;
    ``tool_choice``, on a turn with tools, as ``tool_choice`` (``"auto"``, ``"required"``,
    ``"none"``, or ``{"type": "function", "function": {"name": ...}}`` for a tool's name; a
    name the turn does not offer is a ``UsageError`` before anything is sent).

    Event loops: a client built from ``base_url``/``api_key``, or by ``client`` given as a
    function (called with no arguments), is made once per event loop and closed when its loop
    shuts down, so one model serves ``run_sync`` twice or several ``asyncio.run`` calls. A
    client *instance* you pass is used as it is; its connection pool belongs to the loop it
    first ran in, so give a function instead when the model outlives a loop.
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        client: AsyncOpenAI | Callable[[], AsyncOpenAI] | None = None,
        name: str | None = None,
    ) -> None:
        if client is not None and (base_url is not None or api_key is not None):
            raise UsageError("OpenAIModel: give either client= or base_url=/api_key=, not both; "
                             "configure the client you pass instead")
        self.model = model
        self.name = name or model
        self._failures = ServerFailures()
        if client is not None and not callable(client):
            # tether's retry policy owns retries; the SDK must make exactly one attempt.
            self._fixed: AsyncOpenAI | None = client.with_options(max_retries=0)
            self.server_address, self.server_port = server_of(self._fixed.base_url)
            return
        self._fixed = None
        make: Callable[[], AsyncOpenAI] = (client if client is not None
                                            else lambda: _build_client(base_url, api_key))
        # Built now as well, so a missing key or SDK is reported at construction.
        first = make().with_options(max_retries=0)
        self._clients = LoopClients(lambda: make().with_options(max_retries=0), _close,
                                    first=first)
        #: Where the model is asked (``server.address``/``server.port`` of its spans).
        self.server_address, self.server_port = server_of(first.base_url)

    async def _client(self) -> AsyncOpenAI:
        return self._fixed if self._fixed is not None else await self._clients.get()

    async def complete(self, request: ModelRequest) -> ModelResponse:
        """One Chat Completions call (streamed, deltas dropped, when ``settings.stream``);
        raises the model errors of :mod:`tether.errors`."""
        if request.settings.stream:
            return await self.stream(request, _drop)
        import openai

        params = self._params(request)
        try:
            client = await self._client()
            completion: Any = await client.chat.completions.create(**params)
        except openai.OpenAIError as exc:
            raise self._failed(exc, request) from exc
        self._failures.note(request.digest(), None)
        # ``Any``: the SDK builds its response models without validation, so a declared field
        # may be None, and a body that is not JSON comes back as a plain string.
        return _read_completion(completion, self.name)

    async def stream(self, request: ModelRequest, on_delta: TextSink) -> ModelResponse:
        """One streamed Chat Completions call: text deltas to ``on_delta``, the assembled
        response returned; raises the model errors of :mod:`tether.errors`."""
        import openai

        assembly = _Assembly()
        params = self._params(request)
        try:
            client = await self._client()
            chunks: Any = await client.chat.completions.create(
                **params, stream=True, stream_options={"include_usage": True})
            async with chunks:
                async for chunk in chunks:
                    assembly.add(chunk, on_delta, self.name)
        except openai.OpenAIError as exc:
            raise self._failed(exc, request) from exc
        self._failures.note(request.digest(), None)
        return assembly.response(self.name)

    def _failed(self, exc: OpenAIError, request: ModelRequest) -> TetherError:
        """The tether error for a failed call, judged with this request's earlier failures."""
        key = request.digest()
        error = _translate_error(exc, self.name, repeated=self._failures.repeated(key))
        self._failures.note(key, error.status if isinstance(error, ModelError) else None)
        return error

    def _params(self, request: ModelRequest) -> dict[str, Any]:
        import openai

        settings = request.settings
        tools = [_tool_param(spec) for spec in request.tools]
        return {
            "model": self.model,
            "messages": _chat_messages(request.messages),
            "tools": tools or openai.omit,
            "tool_choice": (_tool_choice(settings.tool_choice, request.tools)
                            if tools and settings.tool_choice is not None else openai.omit),
            "temperature": (settings.temperature if settings.temperature is not None
                            else openai.omit),
            "max_completion_tokens": (settings.max_output_tokens
                                      if settings.max_output_tokens is not None else openai.omit),
            "timeout": settings.timeout_s if settings.timeout_s is not None else openai.not_given,
            "extra_body": dict(settings.extra) or None,
        }


def _drop(text: str) -> None:
    """The delta sink of a streamed call nobody watches."""


async def _close(client: AsyncOpenAI) -> None:
    await client.close()


def _build_client(base_url: str | None, api_key: str | None) -> AsyncOpenAI:
    try:
        import openai
    except ImportError as exc:
        raise UsageError(f"OpenAIModel needs the openai SDK: {_INSTALL_HINT}") from exc
    if api_key is None and base_url is not None and not os.environ.get("OPENAI_API_KEY"):
        api_key = "unused"  # local OpenAI-compatible servers ignore the Authorization header
    try:
        return openai.AsyncOpenAI(api_key=api_key, base_url=base_url, max_retries=0)
    except openai.OpenAIError as exc:
        raise UsageError(f"OpenAIModel cannot build its client: {exc}; pass api_key= or set "
                         "OPENAI_API_KEY") from exc


# -- request ---------------------------------------------------------------------------------


def _chat_messages(messages: tuple[Message, ...]) -> list[ChatCompletionMessageParam]:
    out: list[ChatCompletionMessageParam] = []
    for message in messages:
        if message.role == "system":
            out.append({"role": "system", "content": message.content})
        elif message.role == "user":
            out.append({"role": "user", "content": message.content})
        elif message.role == "assistant":
            calls = [_tool_call_param(call) for call in message.tool_calls]
            if calls:
                # A turn that only calls tools goes out with content "": OpenAI answers such a
                # turn with content null and takes null, "" or no content back, but
                # llama-cpp-python's server refuses null (its validation) and a missing
                # content (its chat template), and Ollama and older llama.cpp servers refused
                # null too. "" is a string every server accepts.
                out.append({"role": "assistant", "content": message.content,
                            "tool_calls": calls})
            else:
                out.append({"role": "assistant", "content": message.content})
        else:
            if message.tool_call_id is None:
                raise UsageError("a tool message has no tool_call_id; build it with "
                                 "Message.tool(call, content) so it answers a tool call")
            out.append({"role": "tool", "tool_call_id": message.tool_call_id,
                        "content": message.content})
    return out


def _tool_call_param(call: ToolCall) -> ChatCompletionMessageFunctionToolCallParam:
    # The stored argument text goes back verbatim, valid JSON or not: it is what the model said.
    return {"id": call.id, "type": "function",
            "function": {"name": call.name, "arguments": call.arguments}}


def _tool_choice(choice: str, tools: tuple[ToolSpec, ...]) -> ChatCompletionToolChoiceOptionParam:
    if choice == "auto" or choice == "required" or choice == "none":
        return choice  # type: ignore[return-value]  # mypy does not narrow a str by ==
    offered = [spec.name for spec in tools]
    if choice not in offered:
        raise UsageError(f"ModelSettings.tool_choice {choice!r} names no tool this turn offers "
                         f"({', '.join(offered)}); use 'auto', 'required', 'none' or one of "
                         "these names")
    return {"type": "function", "function": {"name": choice}}


def _tool_param(spec: ToolSpec) -> ChatCompletionFunctionToolParam:
    return {"type": "function", "function": {"name": spec.name, "description": spec.description,
                                             "parameters": spec.parameters}}


# -- response --------------------------------------------------------------------------------


def _read_completion(completion: Any, name: str) -> ModelResponse:
    try:
        return _response_of(completion)
    except (AttributeError, TypeError, ValueError) as exc:  # ValueError: pydantic's, too
        raise MalformedOutput(f"model {name!r} answered something that cannot be read as a "
                              f"completion ({exc}): {completion!r:.300}", model=name) from exc


def _response_of(completion: Any) -> ModelResponse:
    choices = completion.choices
    if not choices or choices[0].message is None:
        raise ValueError("no choices, or a choice without a message")
    message = choices[0].message
    calls = tuple(_tool_call_of(call, i) for i, call in enumerate(message.tool_calls or ()))
    # A refusal arrives in its own field with content null; it is still the model's answer.
    text = message.content if message.content is not None else (message.refusal or "")
    return ModelResponse(text=text, tool_calls=calls, usage=_usage(completion.usage),
                         model=completion.model or "", finish_reason=choices[0].finish_reason,
                         id=_response_id(completion))


def _response_id(completion: Any) -> str | None:
    """The completion's id (``chatcmpl-…``); ``None`` when a server sends none or an empty
    one."""
    value = getattr(completion, "id", None)
    return value if isinstance(value, str) and value else None


def _tool_call_of(call: Any, index: int) -> ToolCall:
    # Some compatible servers leave out the id; a positional one still pairs call and result.
    call_id = call.id or f"call_{index}"
    if getattr(call, "custom", None) is not None:  # a free-form custom tool: raw text input
        return ToolCall(id=call_id, name=call.custom.name, arguments=call.custom.input)
    arguments = call.function.arguments
    if arguments is None:
        arguments = ""
    elif not isinstance(arguments, str):  # a server that sent an object instead of its text
        arguments = json.dumps(arguments, sort_keys=True)
    return ToolCall(id=call_id, name=call.function.name, arguments=arguments)


def _usage(usage: Any) -> Usage:
    if usage is None:  # some compatible servers omit usage
        return Usage()
    details = usage.prompt_tokens_details
    cached = details.cached_tokens if details is not None else None
    return Usage(input_tokens=usage.prompt_tokens or 0, output_tokens=usage.completion_tokens or 0,
                 cached_input_tokens=cached or 0)


class _Assembly:
    """The chunks of one streamed completion, put back together as one response."""

    def __init__(self) -> None:
        self.content: list[str] | None = None  # None: no content chunk came (content null)
        self.refusal: list[str] = []
        self.calls: dict[int, dict[str, Any]] = {}
        self.model = ""
        self.id: str | None = None
        self.finish_reason: str | None = None
        self.usage: Any = None

    def add(self, chunk: Any, on_delta: TextSink, name: str) -> None:
        try:
            self._add(chunk, on_delta)
        except (AttributeError, TypeError, ValueError) as exc:
            raise MalformedOutput(f"model {name!r} streamed something that cannot be read as a "
                                  f"completion chunk ({exc}): {chunk!r:.300}",
                                  model=name) from exc

    def _add(self, chunk: Any, on_delta: TextSink) -> None:
        if not self.model and chunk.model:
            self.model = chunk.model
        if self.id is None:
            self.id = _response_id(chunk)  # every chunk carries the completion's id
        if chunk.usage is not None:
            self.usage = chunk.usage
        for choice in chunk.choices or ():
            if choice.index != 0:  # n > 1 is not asked for; the first choice is the answer
                continue
            delta = choice.delta
            if delta is not None:
                if delta.content is not None:
                    self.content = [*(self.content or []), delta.content]
                    if delta.content:  # the opening chunk's "" is no text
                        on_delta(delta.content)
                if delta.refusal:
                    self.refusal.append(delta.refusal)
                    on_delta(delta.refusal)
                for fragment in delta.tool_calls or ():
                    self._add_call(fragment)
            if choice.finish_reason is not None:
                self.finish_reason = choice.finish_reason

    def _add_call(self, fragment: Any) -> None:
        index = getattr(fragment, "index", None)
        if not isinstance(index, int):
            # A server that leaves out the index: a fragment with a new id (or the first one)
            # opens a call, any other continues the last one.
            known = {call["id"] for call in self.calls.values()}
            opens = not self.calls or (fragment.id and fragment.id not in known)
            index = len(self.calls) if opens else max(self.calls)
        call = self.calls.setdefault(index, {"id": None, "name": "", "arguments": []})
        if fragment.id and not call["id"]:
            call["id"] = fragment.id
        function = fragment.function
        if function is None:
            return
        # The name comes whole in one fragment; servers that repeat it must not double it.
        if function.name and not call["name"]:
            call["name"] = function.name
        arguments = function.arguments
        if arguments is not None and not isinstance(arguments, str):
            arguments = json.dumps(arguments, sort_keys=True)  # an object instead of its text
        if arguments:
            call["arguments"].append(arguments)

    def response(self, name: str) -> ModelResponse:
        if self.finish_reason is None:
            raise ModelUnavailable(f"model {name!r}: the stream ended before the answer was "
                                   "finished (no finish_reason); worth retrying later",
                                   model=name)
        calls = tuple(
            ToolCall(id=call["id"] or f"call_{i}", name=call["name"],
                     arguments="".join(call["arguments"]))
            for i, (_, call) in enumerate(sorted(self.calls.items()))
        )
        text = "".join(self.content) if self.content is not None else "".join(self.refusal)
        try:
            usage = _usage(self.usage)
        except (AttributeError, TypeError, ValueError) as exc:
            raise MalformedOutput(f"model {name!r} streamed usage that cannot be read ({exc}): "
                                  f"{self.usage!r:.300}", model=name) from exc
        return ModelResponse(text=text, tool_calls=calls, usage=usage, model=self.model,
                             finish_reason=self.finish_reason, id=self.id)


# -- errors ----------------------------------------------------------------------------------


def _translate_error(exc: OpenAIError, name: str, *, repeated: bool = False) -> TetherError:
    """``repeated``: the same request already got a 5xx that was not an outage."""
    import openai

    if isinstance(exc, openai.APIStatusError):
        body = exc.body if isinstance(exc.body, Mapping) else {}
        detail = str(body.get("message") or exc.message)
        code = str(body.get("code") or body.get("type") or "")
        return _status_error(exc.status_code, exc.response.headers, code, detail, name,
                             repeated)
    if isinstance(exc, openai.APIConnectionError):  # includes APITimeoutError
        return ModelUnavailable(f"model {name!r} could not be reached: {exc.message}; worth "
                                "retrying later", model=name)
    if isinstance(exc, openai.APIResponseValidationError):
        return MalformedOutput(f"model {name!r} answered something that is not a completion: "
                               f"{exc.message}", model=name, status=exc.status_code)
    if type(exc) is openai.APIError and isinstance(exc.body, Mapping):
        # An error sent inside a stream: judged by what it says, as its HTTP answer would be.
        code = str(exc.body.get("code") or exc.body.get("type") or "")
        status = _STREAM_ERROR_STATUS.get(code) or _STREAM_ERROR_STATUS.get(
            str(exc.body.get("type") or ""))
        if status is not None:
            return _status_error(status, {}, code, f"in the stream: {exc.message}", name,
                                 repeated)
    return ModelError(f"model {name!r}: the openai SDK failed: {type(exc).__name__}: {exc}",
                      model=name)


def _status_error(status: int, headers: Mapping[str, str], code: str, detail: str,
                  name: str, repeated: bool = False) -> TetherError:
    """The tether error for an HTTP error answer from an OpenAI-compatible server."""
    return status_error(
        status, headers, code, detail, name,
        # Billing, not throttling: waiting does not refill the account.
        billing=status == 429 and code == "insufficient_quota",
        overflow=status == 400 and any(p in f"{code} {detail}".lower() for p in _OVERFLOW_PHRASES),
        repeated=repeated,
    )
