"""Anthropic's Messages API as a tether :class:`~tether.models.base.Model`.

Needs the optional extra::

    pip install 'tether[anthropic]'

Example::

    model = AnthropicModel("claude-sonnet-4-6")            # key from ANTHROPIC_API_KEY
    response = await model.complete(ModelRequest(messages=(Message.user("hi"),)))

How tether's conversation maps onto the Messages API:

* system messages go to the ``system`` parameter (several are joined by a blank line);
* an assistant's tool calls become ``tool_use`` blocks, whose ``input`` must be a JSON object:
  the stored argument text is parsed, and arguments that are not a JSON object (the model
  wrote broken JSON, which the agent already reported as malformed output) are sent as ``{}``
  so the conversation can go on and the model can see its failed call answered;
* tool messages become ``tool_result`` blocks of a user message, consecutive results merged
  into one user message as the API asks;
* ``max_tokens`` is required by Anthropic: ``ModelSettings.max_output_tokens`` or 4096;
* ``temperature`` is not sent: API version 2026-10-21, which the 2.x SDK speaks, removed the
  sampling parameters and answers 400 to them. Put it in ``extra`` for a server that still
  takes it.

A response's text blocks are concatenated (citations split one paragraph into several blocks),
and each ``tool_use`` block becomes a :class:`~tether.models.base.ToolCall` whose arguments
are ``json.dumps(input, sort_keys=True)``. Usage counts every input token, cache reads and
writes included, with cache reads as ``cached_input_tokens``, so that ``cached ⊆ input`` holds
as it does for OpenAI and the price table can charge both rates.

Errors are translated at the boundary: 429 → ``RateLimited`` (``retry_after_s``), but a 429
for a reached spend limit → ``ModelError`` (waiting does not help); 413 or a
prompt that is too long → ``ContextOverflow``; 401/403 → ``AuthExpired``; 408, 409, 502, 503,
504, 529 (overloaded), timeouts and lost connections → ``ModelUnavailable``; a 500
(``api_error``) → ``ModelUnavailable`` the first time, but ``ModelError`` when the same request
fails so again (the rule is in :mod:`tether.models._http`); other 4xx → ``ModelError``; an
unreadable message → ``MalformedOutput``.

``ModelSettings.tool_choice`` on a turn with tools: ``"auto"``, ``"required"`` (sent as
``{"type": "any"}``), ``"none"``, or a tool's name (``{"type": "tool", "name": ...}``).

Streaming (``ModelSettings.stream``, or :meth:`AnthropicModel.stream` with a delta sink): the
call is made with ``stream=True`` and its events are assembled into the same
:class:`ModelResponse` a plain call returns — text blocks joined, each ``tool_use`` block's
``input`` parsed from its ``input_json_delta`` fragments, usage from ``message_start`` updated
by ``message_delta`` — while ``text_delta`` text goes to the delta sink. A stream is complete
only at ``message_stop``: one cut before it (the connection lost, the server stopping) is a
lost connection, ``ModelUnavailable``, never half an answer; an ``error`` event inside the
stream is judged by its type as the same error over HTTP would be (``overloaded_error`` →
``ModelUnavailable``, ``rate_limit_error`` → ``RateLimited`` …).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from tether.errors import (
    AuthExpired,
    MalformedOutput,
    ModelError,
    ModelUnavailable,
    TetherError,
    UsageError,
)

# One parser of Retry-After for both adapters; importing the module does not import the
# openai SDK (it is loaded only when an OpenAIModel is built).
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
    from anthropic import AnthropicError, AsyncAnthropic
    from anthropic.types import (
        MessageParam,
        ToolChoiceParam,
        ToolParam,
        ToolResultBlockParam,
        ToolUseBlockParam,
    )

__all__ = ["DEFAULT_MAX_TOKENS", "AnthropicModel"]

DEFAULT_MAX_TOKENS = 4096
"""``max_tokens`` sent when ``ModelSettings.max_output_tokens`` is None (Anthropic needs one)."""

_INSTALL_HINT = "pip install 'tether[anthropic]'"
# "prompt is too long: 210000 tokens > 200000 maximum"; "input length and `max_tokens`
# exceed context limit: …"
_OVERFLOW_PHRASES = ("prompt is too long", "exceed context limit", "context window")
# An ``error`` event inside a stream comes after a 200: the status its type stands for.
_STREAM_ERROR_STATUS = {"invalid_request_error": 400, "authentication_error": 401,
                        "permission_error": 403, "not_found_error": 404,
                        "request_too_large": 413, "rate_limit_error": 429, "api_error": 500,
                        "timeout_error": 504, "overloaded_error": 529}


class AnthropicModel:
    """A Messages API model with tool use.

    ``model`` is the provider's model id; ``name`` (default: ``model``) labels journal
    entries, traces and errors. Give either ``client`` (an ``anthropic.AsyncAnthropic`` you
    built, e.g. with a custom ``http_client``) or ``base_url``/``api_key``, not both; without
    an ``api_key`` the SDK finds credentials itself (``ANTHROPIC_API_KEY``, a profile …).

    Settings: ``max_output_tokens`` as ``max_tokens`` (default :data:`DEFAULT_MAX_TOKENS`),
    ``timeout_s`` as the per-request timeout, ``extra`` merged into the JSON body;
    ``temperature`` is not sent (see the module docstring).

    Event loops: a client built from ``base_url``/``api_key``, or by ``client`` given as a
    function (called with no arguments), is made once per event loop and closed when its loop
    shuts down, so one model serves ``run_sync`` twice or several ``asyncio.run`` calls. A
    client *instance* you pass is used as it is, bound to the loop it first ran in.
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        client: AsyncAnthropic | Callable[[], AsyncAnthropic] | None = None,
        name: str | None = None,
    ) -> None:
        if client is not None and (base_url is not None or api_key is not None):
            raise UsageError("AnthropicModel: give either client= or base_url=/api_key=, not "
                             "both; configure the client you pass instead")
        self.model = model
        self.name = name or model
        self._failures = ServerFailures()
        if client is not None and not callable(client):
            # tether's retry policy owns retries; the SDK must make exactly one attempt.
            self._fixed: AsyncAnthropic | None = client.with_options(max_retries=0)
            self.server_address, self.server_port = server_of(self._fixed.base_url)
            return
        self._fixed = None
        make: Callable[[], AsyncAnthropic] = (client if client is not None
                                               else lambda: _build_client(base_url, api_key))
        # Built now as well, so a missing SDK is reported at construction.
        first = make().with_options(max_retries=0)
        self._clients = LoopClients(lambda: make().with_options(max_retries=0), _close,
                                    first=first)
        #: Where the model is asked (``server.address``/``server.port`` of its spans).
        self.server_address, self.server_port = server_of(first.base_url)

    async def _client(self) -> AsyncAnthropic:
        return self._fixed if self._fixed is not None else await self._clients.get()

    async def complete(self, request: ModelRequest) -> ModelResponse:
        """One Messages API call (streamed, deltas dropped, when ``settings.stream``); raises
        the model errors of :mod:`tether.errors`."""
        if request.settings.stream:
            return await self.stream(request, _drop)
        import anthropic

        params = self._params(request)
        try:
            client = await self._client()
            message: Any = await client.messages.create(**params)
        except anthropic.AnthropicError as exc:
            raise self._failed(exc, request) from exc
        except ValueError as exc:
            # The SDK refuses, before sending, a non-streaming call that may outlast 10 minutes.
            raise UsageError(f"model {self.name!r}: {exc}; set ModelSettings.timeout_s to allow "
                             "a long call, or lower max_output_tokens") from exc
        self._failures.note(request.digest(), None)
        # ``Any``: the SDK builds its response models without validation, so a declared field
        # may be None, and a body that is not JSON comes back as a plain string.
        return _read_message(message, self.name)

    async def stream(self, request: ModelRequest, on_delta: TextSink) -> ModelResponse:
        """One streamed Messages API call: text deltas to ``on_delta``, the assembled response
        returned; raises the model errors of :mod:`tether.errors`."""
        import anthropic
        import httpx2  # the SDK's HTTP client: a lost connection mid-stream surfaces as its error

        assembly = _Assembly()
        params = self._params(request)
        try:
            client = await self._client()
            events: Any = await client.messages.create(**params, stream=True)
            async with events:
                async for event in events:
                    assembly.add(event, on_delta, self.name)
        except anthropic.AnthropicError as exc:
            raise self._failed(exc, request) from exc
        except httpx2.TransportError as exc:  # includes timeouts while reading
            raise ModelUnavailable(f"model {self.name!r}: the stream broke off "
                                   f"({type(exc).__name__}: {exc}); worth retrying later",
                                   model=self.name) from exc
        self._failures.note(request.digest(), None)
        return assembly.response(self.name)

    def _failed(self, exc: AnthropicError, request: ModelRequest) -> TetherError:
        """The tether error for a failed call, judged with this request's earlier failures."""
        key = request.digest()
        error = _translate_error(exc, self.name, repeated=self._failures.repeated(key))
        self._failures.note(key, error.status if isinstance(error, ModelError) else None)
        return error

    def _params(self, request: ModelRequest) -> dict[str, Any]:
        import anthropic

        settings = request.settings
        system = "\n\n".join(m.content for m in request.messages if m.role == "system")
        tools = [_tool_param(spec) for spec in request.tools]
        max_tokens = settings.max_output_tokens
        timeout_s = settings.timeout_s
        return {
            "model": self.model,
            "max_tokens": max_tokens if max_tokens is not None else DEFAULT_MAX_TOKENS,
            "messages": _messages(request.messages),
            "system": system or anthropic.omit,
            "tools": tools or anthropic.omit,
            "tool_choice": (_tool_choice(settings.tool_choice, request.tools)
                            if tools and settings.tool_choice is not None else anthropic.omit),
            "timeout": timeout_s if timeout_s is not None else anthropic.not_given,
            "extra_body": dict(settings.extra) or None,
        }


def _drop(text: str) -> None:
    """The delta sink of a streamed call nobody watches."""


async def _close(client: AsyncAnthropic) -> None:
    await client.close()


def _tool_choice(choice: str, tools: tuple[ToolSpec, ...]) -> ToolChoiceParam:
    if choice == "auto":
        return {"type": "auto"}
    if choice == "none":
        return {"type": "none"}
    if choice == "required":
        return {"type": "any"}
    offered = [spec.name for spec in tools]
    if choice not in offered:
        raise UsageError(f"ModelSettings.tool_choice {choice!r} names no tool this turn offers "
                         f"({', '.join(offered)}); use 'auto', 'required', 'none' or one of "
                         "these names")
    return {"type": "tool", "name": choice}


def _build_client(base_url: str | None, api_key: str | None) -> AsyncAnthropic:
    try:
        import anthropic
    except ImportError as exc:
        raise UsageError(f"AnthropicModel needs the anthropic SDK: {_INSTALL_HINT}") from exc
    try:
        client = anthropic.AsyncAnthropic(api_key=api_key, base_url=base_url, max_retries=0)
    except anthropic.AnthropicError as exc:
        raise UsageError(f"AnthropicModel cannot build its client: {exc}; pass api_key= or set "
                         "ANTHROPIC_API_KEY") from exc
    if client.api_key is None and client.auth_token is None and client.credentials is None:
        # The SDK would only notice at the first call, with a TypeError.
        raise UsageError("AnthropicModel found no credentials: pass api_key= or set "
                         "ANTHROPIC_API_KEY")
    return client


# -- request ---------------------------------------------------------------------------------


def _messages(messages: tuple[Message, ...]) -> list[MessageParam]:
    out: list[MessageParam] = []
    results: list[ToolResultBlockParam] = []  # tool results waiting to become one user turn
    for message in messages:
        if message.role == "tool":
            if message.tool_call_id is None:
                raise UsageError("a tool message has no tool_call_id; build it with "
                                 "Message.tool(call, content) so it answers a tool call")
            results.append({"type": "tool_result", "tool_use_id": message.tool_call_id,
                            "content": message.content})
            continue
        if results:
            out.append({"role": "user", "content": results})
            results = []
        if message.role == "user":
            out.append({"role": "user", "content": message.content})
        elif message.role == "assistant":
            out.append(_assistant(message))
    if results:
        out.append({"role": "user", "content": results})
    return out


def _assistant(message: Message) -> MessageParam:
    if not message.tool_calls:
        return {"role": "assistant", "content": message.content}
    uses: list[ToolUseBlockParam] = [
        {"type": "tool_use", "id": call.id, "name": call.name, "input": _tool_input(call)}
        for call in message.tool_calls
    ]
    if message.content:
        return {"role": "assistant", "content": [{"type": "text", "text": message.content},
                                                 *uses]}
    return {"role": "assistant", "content": uses}


def _tool_input(call: ToolCall) -> dict[str, object]:
    """The call's arguments as the JSON object ``tool_use`` needs; ``{}`` when they are not
    one (the raw text stays in the journal; only this resend is lossy)."""
    try:
        parsed = call.parsed()
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _tool_param(spec: ToolSpec) -> ToolParam:
    param: ToolParam = {"name": spec.name, "input_schema": spec.parameters}
    if spec.description:
        param["description"] = spec.description
    return param


# -- response --------------------------------------------------------------------------------


def _read_message(message: Any, name: str) -> ModelResponse:
    try:
        return _response_of(message)
    except (AttributeError, TypeError, ValueError) as exc:  # ValueError: pydantic's, too
        raise MalformedOutput(f"model {name!r} answered something that cannot be read as a "
                              f"message ({exc}): {message!r:.300}", model=name) from exc


def _response_of(message: Any) -> ModelResponse:
    if message.content is None:
        raise ValueError("no content")
    texts: list[str] = []
    calls: list[ToolCall] = []
    for block in message.content:
        if block.type == "text":
            texts.append(block.text)
        elif block.type == "tool_use":
            calls.append(ToolCall(id=block.id, name=block.name,
                                  arguments=json.dumps(block.input, sort_keys=True)))
        # thinking, server tool blocks …: not part of tether's contract, left out.
    return ModelResponse(text="".join(texts), tool_calls=tuple(calls),
                         usage=_usage(message.usage), model=message.model or "",
                         finish_reason=message.stop_reason, id=_message_id(message))


def _message_id(message: Any) -> str | None:
    """The message's id (``msg_…``); ``None`` when the answer has none."""
    value = getattr(message, "id", None)
    return value if isinstance(value, str) and value else None


def _usage(usage: Any) -> Usage:
    if usage is None:
        return Usage()
    cache_read = usage.cache_read_input_tokens or 0
    cache_write = usage.cache_creation_input_tokens or 0
    return Usage(input_tokens=(usage.input_tokens or 0) + cache_read + cache_write,
                 output_tokens=usage.output_tokens or 0, cached_input_tokens=cache_read)


class _Assembly:
    """The events of one streamed message, put back together as one response."""

    def __init__(self) -> None:
        self.blocks: dict[int, dict[str, Any]] = {}
        self.model = ""
        self.id: str | None = None
        self.usage: dict[str, int | None] = {}
        self.stop_reason: str | None = None
        self.stopped = False

    def add(self, event: Any, on_delta: TextSink, name: str) -> None:
        try:
            self._add(event, on_delta)
        except (AttributeError, TypeError, ValueError, KeyError) as exc:
            raise MalformedOutput(f"model {name!r} streamed something that cannot be read as a "
                                  f"message event ({exc}): {event!r:.300}", model=name) from exc

    def _add(self, event: Any, on_delta: TextSink) -> None:
        kind = event.type
        if kind == "message_start":
            self.model = event.message.model or ""
            self.id = _message_id(event.message)
            self._take_usage(event.message.usage)
        elif kind == "content_block_start":
            block = event.content_block
            if block.type == "text":
                self.blocks[event.index] = {"type": "text", "text": [block.text or ""]}
                if block.text:
                    on_delta(block.text)
            elif block.type == "tool_use":
                self.blocks[event.index] = {"type": "tool_use", "id": block.id,
                                            "name": block.name, "input": block.input,
                                            "json": []}
            # thinking, server tool blocks …: not part of tether's contract, left out.
        elif kind == "content_block_delta":
            block = self.blocks.get(event.index)
            delta = event.delta
            if block is None:
                return
            if delta.type == "text_delta" and block["type"] == "text":
                block["text"].append(delta.text)
                on_delta(delta.text)
            elif delta.type == "input_json_delta" and block["type"] == "tool_use":
                block["json"].append(delta.partial_json)
        elif kind == "message_delta":
            self.stop_reason = event.delta.stop_reason
            self._take_usage(event.usage)
        elif kind == "message_stop":
            self.stopped = True

    def _take_usage(self, usage: Any) -> None:
        """Counts as reported so far; ``message_delta``'s are cumulative and win."""
        if usage is None:
            return
        for field in ("input_tokens", "output_tokens", "cache_read_input_tokens",
                      "cache_creation_input_tokens"):
            value = getattr(usage, field, None)
            if value is not None:
                self.usage[field] = value

    def response(self, name: str) -> ModelResponse:
        if not self.stopped:
            raise ModelUnavailable(f"model {name!r}: the stream ended before message_stop; "
                                   "worth retrying later", model=name)
        texts: list[str] = []
        calls: list[ToolCall] = []
        for _, block in sorted(self.blocks.items()):
            if block["type"] == "text":
                texts.append("".join(block["text"]))
            else:
                calls.append(ToolCall(id=block["id"], name=block["name"],
                                      arguments=_streamed_input(block)))
        u = self.usage
        cache_read = u.get("cache_read_input_tokens") or 0
        cache_write = u.get("cache_creation_input_tokens") or 0
        usage = Usage(input_tokens=(u.get("input_tokens") or 0) + cache_read + cache_write,
                      output_tokens=u.get("output_tokens") or 0, cached_input_tokens=cache_read)
        return ModelResponse(text="".join(texts), tool_calls=tuple(calls), usage=usage,
                             model=self.model, finish_reason=self.stop_reason, id=self.id)


def _streamed_input(block: dict[str, Any]) -> str:
    """A streamed ``tool_use`` block's arguments as a plain answer gives them:
    ``json.dumps(input, sort_keys=True)``. Fragments that do not join into JSON stay as
    written, for the agent to report as malformed."""
    raw = "".join(block["json"])
    if not raw:
        return json.dumps(block["input"] or {}, sort_keys=True)
    try:
        return json.dumps(json.loads(raw), sort_keys=True)
    except ValueError:
        return raw


# -- errors ----------------------------------------------------------------------------------


def _translate_error(exc: AnthropicError, name: str, *, repeated: bool = False) -> TetherError:
    """``repeated``: the same request already got a 5xx that was not an outage."""
    import anthropic

    if isinstance(exc, anthropic.APIStatusError):
        # ``error.details.error_code`` names the cause more precisely than ``error.type``.
        code = exc.error_code or str(exc.type or "")
        detail = exc.api_message or exc.message
        status = exc.status_code
        if status < 400:  # an ``error`` event inside a stream that began with 200
            status = _STREAM_ERROR_STATUS.get(str(exc.type or ""), 0)
            if not status:
                return ModelError(f"model {name!r} sent an error inside its stream "
                                  f"({code or 'no type'}): {detail}", model=name)
            detail = f"in the stream: {detail}"
        return _status_error(status, exc.response.headers, code, detail, name, repeated)
    if isinstance(exc, anthropic.APIConnectionError):  # includes APITimeoutError
        return ModelUnavailable(f"model {name!r} could not be reached: {exc.message}; worth "
                                "retrying later", model=name)
    if isinstance(exc, anthropic.APIResponseValidationError):
        return MalformedOutput(f"model {name!r} answered something that is not a message: "
                               f"{exc.message}", model=name, status=exc.status_code)
    if isinstance(exc, anthropic.CredentialsError):
        return AuthExpired(f"model {name!r}: credentials could not be loaded: {exc}",
                           dependency=name)
    return ModelError(f"model {name!r}: the anthropic SDK failed: {type(exc).__name__}: {exc}",
                      model=name)


def _status_error(status: int, headers: Mapping[str, str], code: str, detail: str,
                  name: str, repeated: bool = False) -> TetherError:
    """The tether error for an HTTP error answer from the Messages API."""
    return status_error(
        status, headers, code, detail, name,
        # A spend limit lasts until it is raised or the month ends: do not retry.
        billing=status == 429 and code.endswith("spend_limit_reached"),
        overflow=status == 413 or (status == 400
                                   and any(p in detail.lower() for p in _OVERFLOW_PHRASES)),
        repeated=repeated,
    )
