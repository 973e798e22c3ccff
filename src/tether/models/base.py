"""The model contract: a request in, a response out, one async method.

Everything an agent exchanges with a language model is a plain pydantic value, so a request can
be digested, a response journaled and replayed, and a scripted model written as a function.

>>> request = ModelRequest(messages=[Message.user("hi")])
>>> ModelResponse(text="hello", model="scripted").wants_tools
False
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any, Literal, Protocol, runtime_checkable
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    TypeAdapter,
    field_validator,
    model_serializer,
)

__all__ = [
    "DeltaSink",
    "Message",
    "Model",
    "ModelRequest",
    "ModelResponse",
    "ModelSettings",
    "StreamingModel",
    "TextSink",
    "ToolCall",
    "ToolSpec",
    "Usage",
    "server_of",
]

Role = Literal["system", "user", "assistant", "tool"]

TextSink = Callable[[str], None]
"""Where a streaming model sends each piece of text as it arrives."""

DeltaSink = Callable[[str, int, str], None]
"""Where a runtime sends text deltas: ``(run_id, position, text)``. ``position`` is the model
call's journal position; the call's journal entry (``model_called`` with the complete text, or
``model_failed``, whose deltas are then void) follows them."""


class ToolCall(BaseModel):
    """A tool call the model asked for.

    ``arguments`` is the model's raw argument text (providers send JSON as a string, and it is
    not always valid JSON); the agent parses and validates it, and a parse failure is a
    classified failure, never an exception out of the adapter.
    """

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    arguments: str = "{}"

    def parsed(self) -> Any:
        """The arguments as JSON; raises ``ValueError`` when they are not valid JSON."""
        return json.loads(self.arguments or "{}")


class Message(BaseModel):
    """One message of a conversation.

    ``tool_call_id`` answers a tool call (role ``tool``); ``tool_calls`` are an assistant's
    requests. ``source`` names where the content came from (``user``, ``system``, a tool's
    name, ``kb:refund-policy`` …) and ``trust`` how far it is trusted (see
    :class:`tether.runtime.provenance.Trust`), so policy can weigh it. Providers never see
    either.
    """

    model_config = ConfigDict(frozen=True)

    role: Role
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None
    source: str | None = None
    trust: str | None = None

    @classmethod
    def system(cls, content: str) -> Message:
        return cls(role="system", content=content, source="system", trust="system")

    @classmethod
    def user(cls, content: str) -> Message:
        return cls(role="user", content=content, source="user", trust="user")

    @classmethod
    def assistant(cls, content: str = "", tool_calls: tuple[ToolCall, ...] = ()) -> Message:
        return cls(role="assistant", content=content, tool_calls=tool_calls, source="model")

    @classmethod
    def tool(cls, call: ToolCall, content: str, *, source: str | None = None,
             trust: str | None = None) -> Message:
        return cls(role="tool", content=content, tool_call_id=call.id, name=call.name,
                   source=source or call.name, trust=trust)


class ToolSpec(BaseModel):
    """What the model is told about a tool: its name, description and JSON Schema."""

    model_config = ConfigDict(frozen=True)

    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})


class ModelSettings(BaseModel):
    """Sampling settings passed through to the provider; ``None`` means its default.

    ``stream`` asks a model that can (a :class:`StreamingModel`) to stream its answer: the
    text arrives in deltas while the model writes, and the answer is still one complete
    :class:`ModelResponse`. It changes how the answer travels, not what is asked, so it is
    left out of :meth:`ModelRequest.digest`.

    ``tool_choice`` says whether the model must call a tool on a turn that offers tools:
    ``"auto"`` (it decides), ``"required"`` (some tool), ``"none"`` (no tool), or a tool's
    name (that tool). ``None``, the default, sends nothing, so the provider's own default
    applies: ``"auto"`` for OpenAI, vLLM, Ollama and Anthropic, but llama-cpp-python's
    server ignores the tools entirely unless it gets ``"auto"`` or a tool's name. Forcing
    (``"required"`` or a name) applies to one ``Model.complete`` call as given; in an
    :class:`~tether.agent.agent.Agent` it holds until the model has called a tool in the run (a
    retried call stays forced) and later calls are sent ``"auto"``, so the agent can still end
    with a text answer; replays send the same requests. llama-cpp-python's server accepts
    only ``"auto"`` or a tool's name (``"required"`` answers HTTP 500).

    ``journal_input`` records the request itself (messages, system instructions, tool
    definitions) in the call's ``model_called``/``model_failed`` entry, so a trace sink with
    ``capture_content=True`` can show it as ``gen_ai.input.messages``,
    ``gen_ai.system_instructions`` and ``gen_ai.tool.definitions`` — in this process or in one
    that exports the run after a crash, which only has the journal. Off by default, and think
    before turning it on: the journal then keeps every prompt, tool result and user message
    for as long as the run is stored (personal data, secrets a tool returned), and it grows
    with the square of a conversation's length, since each call records the whole conversation
    so far (without it a call journals a 16-character digest of the request; measured on a
    scripted agent: 1.6 kB → 3.1 kB for one tool turn, 16 kB → 105 kB for twenty). It changes what
    is written, not what is asked, so it is left out of :meth:`ModelRequest.digest`, and the
    model never sees it.

    >>> ModelSettings(tool_choice="auto").tool_choice
    'auto'
    """

    model_config = ConfigDict(frozen=True)

    temperature: float | None = None
    max_output_tokens: int | None = None
    timeout_s: float | None = None
    extra: dict[str, Any] = Field(default_factory=dict)
    stream: bool = False
    tool_choice: str | None = None

    journal_input: bool = False

    @field_validator("tool_choice")
    @classmethod
    def _choice_is_a_word(cls, value: str | None) -> str | None:
        if value is not None and (not value or value != value.strip()):
            raise ValueError(f"tool_choice must be 'auto', 'required', 'none' or a tool's "
                             f"name, not {value!r}")
        return value


class ModelRequest(BaseModel):
    """Messages, the tools the model may call this turn, and settings."""

    model_config = ConfigDict(frozen=True)

    messages: tuple[Message, ...]
    tools: tuple[ToolSpec, ...] = ()
    settings: ModelSettings = ModelSettings()

    def digest(self) -> str:
        """A short stable hash of the request, journaled beside the response.

        ``settings.stream`` and ``settings.journal_input`` are not part of it: a streamed
        and a plain call ask the same, journaled or not. An
        unset ``settings.tool_choice`` is left out too, so requests keep the digests they had
        before the setting existed (recorded journals replay strictly against them)."""
        left_out = {"stream", "journal_input"}
        if self.settings.tool_choice is None:
            left_out.add("tool_choice")
        if type(self) is not ModelRequest:  # a subclass may serialize differently: whole
            body = self.model_dump_json(exclude_defaults=False, exclude={"settings": left_out})
            return hashlib.sha256(body.encode()).hexdigest()[:16]
        # The same bytes as the whole request's JSON, ``{"messages":[m1,…,mn],"tools":…}``, but
        # the messages' part continues the hash of an earlier request whose messages this one's
        # begin with (the agent loop's next turn), so a turn serializes and hashes only the
        # messages it added: the cost of a digest does not grow with the conversation.
        hasher = _messages_hashed(self.messages)
        rest = _tail(self.tools, self.settings, frozenset(left_out))
        hasher.update(rest.encode())
        digest: str = hasher.hexdigest()[:16]
        return digest


_MESSAGES_OPEN = '{"messages":['
_MESSAGE_JSON: TypeAdapter[Message] = TypeAdapter(Message)

#: Hash states after a request's messages, by the ``id`` of its first message (the entry holds
#: the messages, so the id stays theirs): the longest conversations seen lately, least recent
#: first. A request whose messages begin with an entry's continues from its state.
_HASHED: dict[int, tuple[tuple[Message, ...], Any]] = {}
_HASHED_KEEP = 256


#: The JSON after a request's messages, by the identity of its tool specs and settings (the
#: agent loop sends the same objects turn after turn, in a new tuple each time); the entries
#: hold them, so the ids stay theirs.
_TAILS: dict[tuple[tuple[int, ...], int, frozenset[str]], tuple[Any, Any, str]] = {}


def _tail(tools: tuple[ToolSpec, ...], settings: ModelSettings, left_out: frozenset[str]) -> str:
    """``],"tools":[…],"settings":{…}}``: what follows the messages in a request's JSON."""
    key = (tuple(map(id, tools)), id(settings), left_out)
    found = _TAILS.get(key)
    if found is not None and found[1] is settings and len(found[0]) == len(tools) and \
            all(a is b for a, b in zip(found[0], tools, strict=True)):
        known: str = found[2]
        return known
    whole = ModelRequest.model_construct(messages=(), tools=tools, settings=settings)
    rest = whole.model_dump_json(exclude_defaults=False, exclude={"settings": set(left_out)})
    if len(_TAILS) >= _HASHED_KEEP:
        del _TAILS[next(iter(_TAILS))]
    tail = rest[len(_MESSAGES_OPEN):]
    _TAILS[key] = (tools, settings, tail)
    return tail


def _message_json(message: Message) -> bytes:
    """One message as it appears inside a request's JSON."""
    return _MESSAGE_JSON.dump_json(message)


def _messages_hashed(messages: tuple[Message, ...]) -> Any:
    """A sha256 of ``{"messages":[`` and ``messages`` as JSON (comma-separated, unclosed): a
    fresh object the caller may go on updating."""
    if not messages:
        return hashlib.sha256(_MESSAGES_OPEN.encode())
    key = id(messages[0])
    entry = _HASHED.pop(key, None)
    hasher, start = None, 0
    if entry is not None:
        known, state = entry
        if len(known) <= len(messages) and messages[:len(known)] == known:
            hasher, start = state.copy(), len(known)
        elif len(known) > len(messages) and known[:len(messages)] == messages:
            _HASHED[key] = entry  # a shorter request of the same run: keep the longer one
    if hasher is None:
        hasher = hashlib.sha256(_MESSAGES_OPEN.encode())
    for index in range(start, len(messages)):
        if index:
            hasher.update(b",")
        hasher.update(_message_json(messages[index]))
    if key not in _HASHED:
        _HASHED[key] = (messages, hasher.copy())
        if len(_HASHED) > _HASHED_KEEP:
            del _HASHED[next(iter(_HASHED))]
    return hasher


class Usage(BaseModel):
    """Tokens a call consumed, as the provider reported them."""

    model_config = ConfigDict(frozen=True)

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cached_input_tokens=self.cached_input_tokens + other.cached_input_tokens,
        )


class ModelResponse(BaseModel):
    """What the model answered: text and/or tool calls, usage, the model's own name, and the
    provider's id of the response (``id``: OpenAI's ``chatcmpl-…``, Anthropic's ``msg_…``;
    ``None`` for scripted models), exported as ``gen_ai.response.id``.

    ``id`` is left out of the response's JSON while it is ``None``, so a model without ids
    journals exactly what it did before the field existed.

    >>> ModelResponse(text="hi").model_dump()
    {'text': 'hi', 'tool_calls': (), 'usage': {'input_tokens': 0, 'output_tokens': 0, \
'cached_input_tokens': 0}, 'model': '', 'finish_reason': None}
    """

    model_config = ConfigDict(frozen=True)

    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage = Usage()
    model: str = ""
    finish_reason: str | None = None
    id: str | None = None

    @model_serializer(mode="wrap")
    def _serialize(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if self.id is None:
            data.pop("id", None)
        return data

    @property
    def wants_tools(self) -> bool:
        return bool(self.tool_calls)


def server_of(url: object) -> tuple[str | None, int | None]:
    """The host and port a base URL points at (``server.address``/``server.port`` of a
    model's spans): the URL's own port, else its scheme's (443 for ``https``, 80 for
    ``http``). ``(None, None)`` when ``url`` is not a URL with a host.

    >>> server_of("http://127.0.0.1:8080/v1"), server_of("https://api.openai.com/v1")
    (('127.0.0.1', 8080), ('api.openai.com', 443))
    """
    try:
        parts = urlsplit(str(url))
        host, port = parts.hostname, parts.port
    except ValueError:
        return None, None
    if not host:
        return None, None
    if port is None:
        port = {"https": 443, "http": 80}.get(parts.scheme.lower())
    return host, port


@runtime_checkable
class Model(Protocol):
    """A language model. ``name`` labels journal entries, traces and the price lookup.

    A model that talks to a server may also have ``server_address`` and ``server_port``
    (see :func:`server_of`), journaled with each call and exported as ``server.address`` /
    ``server.port``; models without them (scripted, in-process) are journaled without.

    Implementations raise the model failures of :mod:`tether.errors` (``RateLimited``,
    ``ContextOverflow``, ``ModelUnavailable``, ``AuthExpired``, ``MalformedOutput``) so the
    agent can apply its retry policy; any other exception is treated as a permanent failure.
    """

    name: str

    async def complete(self, request: ModelRequest) -> ModelResponse: ...


@runtime_checkable
class StreamingModel(Model, Protocol):
    """A model that can stream: :meth:`stream` sends text to ``on_delta`` as it arrives and
    returns the complete response, exactly what :meth:`complete` would have returned.

    A stream that ends before the provider said it was done (a cut connection, a server that
    stopped) raises :class:`~tether.errors.ModelUnavailable` like a lost connection; the text
    already sent to ``on_delta`` is then void, and nothing partial is returned.
    """

    async def stream(self, request: ModelRequest, on_delta: TextSink) -> ModelResponse: ...
