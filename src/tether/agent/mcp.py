"""An MCP server's tools as tether tools, each with a declared effect class.

>>> tools = mcp_toolset("http://127.0.0.1:8765/mcp",                    # doctest: +SKIP
...                     effects={"payments_create_refund": "idempotent"},
...                     key_arg="idempotency_key",
...                     only=["payments_get_charge", "payments_create_refund"])
>>> agent = tether.Agent(name="desk", model=model, tools=tools)        # doctest: +SKIP

**Every tool gets an effect class.** A tool the server marks ``readOnlyHint`` is a ``read``;
every other tool must be declared in ``effects`` (``read``, ``idempotent``, ``reconcilable``,
``unsafe``). A tool without either is refused, all of them named in one error: what a write
does when its outcome is unknown is never guessed. An ``idempotent`` tool must take the
idempotency key in an argument (``key_arg``): tether fills it with the call's key — stable
across attempts and resumes — and hides it from the model, so a re-issue after a lost answer
is deduplicated by the server. A ``reconcilable`` tool needs its lookup in ``reconcile``.

**Arguments** are checked against the tool's input schema before anything is sent (a bad call
is the model's to fix: :class:`~tether.errors.ToolArgsInvalid`). **Results** are the structured
content when the server sends it, else the text (parsed as JSON when it is JSON). When the tool
advertises an output schema, a result that breaks it is a result of the wrong type (the server's
schema drifted): a read fails with :class:`~tether.errors.ToolResultInvalid`, a write is
recorded as applied with an unreadable response — never repeated.

**Errors.** A tool error result (``isError``) raises :class:`MCPToolError`, read by the HTTP-like
``status`` its JSON carries (``{"error": {"status": 504}}`` or ``{"status": …}``), as the
runtime reads a client library's errors: 401 is expired credentials
(:class:`~tether.errors.AuthExpired`), 408/425/429 — and a 4xx whose JSON says
``"retryable": true``, such as a 409 while the key is in flight — were not processed
(:class:`~tether.errors.TransientError`, with ``retry_after_s``), a 5xx may have been applied
(ambiguous), another 4xx is permanent. An error result with **no** status cannot say whether a
write happened: it is ambiguous for a write (re-issued under its key, looked up, or escalated
by effect class) and permanent for a read. A protocol timeout or a lost connection is
ambiguous. ``classify_error`` is asked first.

**Connections.** Given a URL (streamable HTTP) or an in-process server (``MCPServer``), each
call opens its own connection in the calling task — what the SDK's task-scoped connections
require, and what lets an in-process server see which tool is calling. Given an open
``mcp.Client`` or ``ClientSession`` (a stdio server, a custom transport, a server that keeps
state per session), use :func:`mcp_toolset_async`: calls go through that session, whose
lifetime is the caller's.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    WithJsonSchema,
    create_model,
    model_validator,
)

from tether.agent._mcp_connection import Connection, open_session, per_call
from tether.errors import AuthExpired, TransientError, UsageError
from tether.runtime.ambiguity import ErrorClassifier, ErrorOutcome, type_name
from tether.runtime.provenance import Trust
from tether.runtime.tools import Effect, Reconciler, Tool, ToolContext

if TYPE_CHECKING:
    from mcp_types import CallToolResult
    from mcp_types import Tool as MCPToolInfo

__all__ = [
    "LISTING_TIMEOUT_S",
    "MCPToolError",
    "arguments_model",
    "mcp_toolset",
    "mcp_toolset_async",
    "schema_result_type",
]

#: Exceptions of a connection that broke mid-call (the request may have been applied).
_BROKEN = ("anyio.BrokenResourceError", "anyio.ClosedResourceError", "anyio.EndOfStream")

#: Statuses saying the request was not processed: safe to send again.
_NOT_PROCESSED = (408, 425, 429)


class MCPToolError(Exception):
    """An MCP tool answered with an error result (``isError``): ``status`` is the HTTP-like
    status its JSON carried (``None``: it gave none), ``data`` the error's JSON (or text)."""

    def __init__(self, message: str, tool: str = "", status: int | None = None,
                 retry_after_s: float | None = None, data: Any = None) -> None:
        super().__init__(message, tool, status, retry_after_s, data)
        self.message = message
        self.tool = tool
        self.status = status
        self.retry_after_s = retry_after_s
        self.data = data

    def __str__(self) -> str:
        return self.message


def mcp_toolset(
    source: Any,
    *,
    effects: Mapping[str, Effect | str] | None = None,
    key_arg: str | Mapping[str, str] | None = None,
    only: Iterable[str] | None = None,
    reconcile: Mapping[str, Reconciler] | None = None,
    keys: Mapping[str, Callable[[dict[str, Any]], str]] | None = None,
    trust: Trust | str | Mapping[str, Trust | str] = Trust.SYSTEM,
    attempts: int = 3,
    timeout_s: float | None = None,
    key_retention_s: float | None = None,
    classify_error: ErrorClassifier | None = None,
) -> list[Tool[Any, Any]]:
    """The tools of the MCP server at ``source`` — a streamable-HTTP URL or an in-process
    ``MCPServer`` (such as :func:`tether.sim.wire.mcp_face.mcp_server`) — as tether tools.

    The server is asked for its tools now, from synchronous code or from inside a running
    event loop alike (an agent factory), on a private connection; each call later opens its
    own. ``effects`` declares each tool's effect class (required for every tool not marked
    read-only; see the module docstring), ``key_arg`` the argument that carries the
    idempotency key (one name, or one per tool), ``only`` the tools to take (default: all),
    ``reconcile`` the lookup of each reconcilable tool, ``keys`` a business key per tool
    (a function of the arguments as a dict; default: the run and position), ``trust`` how far
    results are trusted (one level, or one per tool, the rest ``system``: give a server's
    tools that return outside text — an inbox, web pages — a lower one). ``attempts``,
    ``timeout_s``, ``key_retention_s`` and ``classify_error`` apply to every tool.
    """
    connection = per_call(source)
    listing = _blocking(lambda: _listed(source, connection))
    return _toolset(listing, connection, effects=effects, key_arg=key_arg, only=only,
                    reconcile=reconcile, keys=keys, trust=trust, attempts=attempts,
                    timeout_s=timeout_s, key_retention_s=key_retention_s,
                    classify_error=classify_error)


async def mcp_toolset_async(
    source: Any,
    *,
    effects: Mapping[str, Effect | str] | None = None,
    key_arg: str | Mapping[str, str] | None = None,
    only: Iterable[str] | None = None,
    reconcile: Mapping[str, Reconciler] | None = None,
    keys: Mapping[str, Callable[[dict[str, Any]], str]] | None = None,
    trust: Trust | str | Mapping[str, Trust | str] = Trust.SYSTEM,
    attempts: int = 3,
    timeout_s: float | None = None,
    key_retention_s: float | None = None,
    classify_error: ErrorClassifier | None = None,
) -> list[Tool[Any, Any]]:
    """:func:`mcp_toolset` in async code; ``source`` may also be an open ``mcp.Client`` or
    ``ClientSession`` (a stdio server, a custom transport), whose session every call then
    uses — keep it open while the agent runs."""
    connection = open_session(source) or per_call(source)
    listing = await _listed(source, connection)
    return _toolset(listing, connection, effects=effects, key_arg=key_arg, only=only,
                    reconcile=reconcile, keys=keys, trust=trust, attempts=attempts,
                    timeout_s=timeout_s, key_retention_s=key_retention_s,
                    classify_error=classify_error)


async def _listed(source: Any, connection: Connection) -> Sequence[MCPToolInfo]:
    """The server's tools; a server that cannot be reached or refuses to list them is the
    caller's to fix (the URL, the path, the server), said with what it answered."""
    try:
        return await connection.list_tools()
    except UsageError:
        raise
    except Exception as exc:
        where = source if isinstance(source, str) else type(source).__name__
        raise UsageError(f"mcp_toolset: could not list the tools of {where!r} "
                         f"({type(exc).__name__}: {exc}); check that an MCP server answers "
                         "there (tether sim serve prints its endpoint as 'mcp')") from exc


# -- building the tools ------------------------------------------------------------------


def _toolset(listing: Sequence[MCPToolInfo], connection: Connection, *,
             effects: Mapping[str, Effect | str] | None,
             key_arg: str | Mapping[str, str] | None, only: Iterable[str] | None,
             reconcile: Mapping[str, Reconciler] | None,
             keys: Mapping[str, Callable[[dict[str, Any]], str]] | None,
             trust: Trust | str | Mapping[str, Trust | str], attempts: int,
             timeout_s: float | None,
             key_retention_s: float | None,
             classify_error: ErrorClassifier | None) -> list[Tool[Any, Any]]:
    offered = {t.name: t for t in listing}
    declared = {name: _effect(name, value) for name, value in (effects or {}).items()}
    chosen = list(only) if only is not None else list(offered)
    for what, names in (("effects", declared), ("only", chosen),
                        ("reconcile", reconcile or {}), ("keys", keys or {}),
                        ("trust", trust if isinstance(trust, Mapping) else {}),
                        ("key_arg", key_arg if isinstance(key_arg, Mapping) else {})):
        unknown = sorted(set(names) - set(offered))
        if unknown:
            raise UsageError(f"mcp_toolset: {what} names {', '.join(map(repr, unknown))}, which "
                             f"the server does not offer; it offers {', '.join(sorted(offered))}")
    undeclared = [n for n in chosen if n not in declared and not _read_only(offered[n])]
    if undeclared:
        raise UsageError(
            f"mcp_toolset: the tools {', '.join(undeclared)} are not marked read-only by the "
            "server and have no declared effect class; declare each in effects= ('read', "
            "'idempotent', 'reconcilable' or 'unsafe') or leave it out with only=: what a "
            "write does when its outcome is unknown is never guessed")
    return [_tool(offered[name], connection, declared.get(name, Effect.READ),
                  key_arg=_key_arg(key_arg, name), reconcile=(reconcile or {}).get(name),
                  key=(keys or {}).get(name), trust=_trust(trust, name), attempts=attempts,
                  timeout_s=timeout_s, key_retention_s=key_retention_s,
                  classify_error=classify_error) for name in chosen]


def _effect(name: str, value: Effect | str) -> Effect:
    try:
        return Effect(value)
    except ValueError:
        raise UsageError(f"mcp_toolset: effects[{name!r}] is {value!r}; use 'read', "
                         "'idempotent', 'reconcilable' or 'unsafe'") from None


def _trust(trust: Trust | str | Mapping[str, Trust | str], name: str) -> Trust:
    """The trust of ``name``'s results: one for all tools, or per tool (system by default)."""
    if isinstance(trust, Mapping):
        return Trust(trust.get(name, Trust.SYSTEM))
    return Trust(trust)


def _read_only(info: MCPToolInfo) -> bool:
    return info.annotations is not None and info.annotations.read_only_hint is True


def _key_arg(key_arg: str | Mapping[str, str] | None, name: str) -> str | None:
    if key_arg is None or isinstance(key_arg, str):
        return key_arg
    return key_arg.get(name)


def _tool(info: MCPToolInfo, connection: Connection, effect: Effect, *, key_arg: str | None,
          reconcile: Reconciler | None, key: Callable[[dict[str, Any]], str] | None,
          trust: Trust, attempts: int, timeout_s: float | None, key_retention_s: float | None,
          classify_error: ErrorClassifier | None) -> Tool[Any, Any]:
    name = info.name
    schema = dict(info.input_schema or {"type": "object"})
    properties = schema.get("properties") or {}
    passes_key = effect.writes and key_arg is not None and key_arg in properties
    if effect is Effect.IDEMPOTENT and not passes_key:
        where = f"its input schema has no argument {key_arg!r}" if key_arg else \
            "key_arg= names none"
        raise UsageError(
            f"mcp_toolset: tool {name!r} is declared idempotent, but {where}; an idempotent "
            "tool must pass tether's idempotency key to the server (key_arg='...'), or be "
            "declared 'reconcilable' or 'unsafe'")
    if effect is Effect.RECONCILABLE and reconcile is None:
        raise UsageError(f"mcp_toolset: tool {name!r} is declared reconcilable; give its "
                         f"lookup in reconcile={{{name!r}: fn}} (fn(ctx, key) -> result | None)")
    shown = _without(schema, key_arg) if passes_key else schema
    args_type = arguments_model(name, shown)
    output = info.output_schema

    async def handler(ctx: ToolContext, args: BaseModel) -> Any:
        arguments = args.model_dump()
        if passes_key and ctx.idempotency_key:
            # (A harness without keys passes none: an empty key would be a key all the same.)
            arguments[str(key_arg)] = ctx.idempotency_key
        result = await connection.call(name, arguments)
        if result.is_error:
            _raise_error(result, name)
        return _value(result)

    handler.__name__ = name
    return Tool(
        name=name, description=info.description or info.title or name, effect=effect,
        handler=handler, args_type=args_type, result_type=schema_result_type(name, output),
        key=(lambda a: key(a.model_dump())) if key is not None else None,
        reconcile=reconcile, attempts=attempts, timeout_s=timeout_s, trust=trust,
        key_retention_s=key_retention_s, classify_error=_classifier(effect, classify_error))


def _without(schema: dict[str, Any], argument: str | None) -> dict[str, Any]:
    """``schema`` without ``argument`` (tether fills it in; the model never sees it)."""
    shown = copy.deepcopy(schema)
    shown.get("properties", {}).pop(argument, None)
    if argument in shown.get("required", []):
        shown["required"] = [r for r in shown["required"] if r != argument]
    return shown


def _validator(schema: Mapping[str, Any], what: str) -> Any:
    from jsonschema import validators  # type: ignore[import-untyped]
    from jsonschema.exceptions import SchemaError  # type: ignore[import-untyped]

    cls = validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except SchemaError as exc:
        raise UsageError(f"mcp_toolset: {what} is not a valid JSON Schema: {exc.message}") \
            from None
    return cls(schema)


def _problem(validator: Any, value: Any) -> str | None:
    from jsonschema.exceptions import best_match

    error = best_match(validator.iter_errors(value))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path)
    return f"{error.message}" + (f" (at {where})" if where else "")


def arguments_model(name: str, schema: dict[str, Any]) -> type[BaseModel]:
    """A pydantic model for the arguments of tool ``name`` declared by a JSON Schema: its JSON
    Schema is ``schema`` as written (what the model is shown) and its validation is that
    schema's (needs the ``jsonschema`` package). Used for MCP tools and for client tools
    declared in an agent file."""
    validator = _validator(schema, f"the input schema of tool {name!r}")

    def show(out: dict[str, Any]) -> None:
        out.clear()
        out.update(copy.deepcopy(schema))

    def check(cls: type[BaseModel], data: Any) -> Any:
        problem = _problem(validator, data)
        if problem is not None:
            raise ValueError(f"the arguments break the input schema of {name!r}: {problem}")
        return data

    return create_model(
        f"{name}_arguments", __config__=ConfigDict(extra="allow", json_schema_extra=show),
        __validators__={"check_schema": model_validator(mode="before")(check)},  # type: ignore[dict-item]
    )


def schema_result_type(name: str, output: dict[str, Any] | None) -> Any:
    """The result type of tool ``name`` declared by the JSON Schema ``output``: ``Any`` when
    there is none, else ``Any`` checked against that schema and showing it as its own."""
    if not output:
        return Any
    validator = _validator(output, f"the output schema of tool {name!r}")

    def check(value: Any) -> Any:
        problem = _problem(validator, value)
        if problem is not None:
            raise ValueError(f"the result breaks the output schema of {name!r}: {problem}")
        return value

    return Annotated[Any, AfterValidator(check), WithJsonSchema(output)]


# -- results and errors -------------------------------------------------------------------


def _value(result: CallToolResult) -> Any:
    """A result as JSON: its structured content, else its text (parsed when it is JSON)."""
    from mcp_types import TextContent

    if result.structured_content is not None:
        return result.structured_content
    texts = [c.text for c in result.content if isinstance(c, TextContent)]
    if texts and len(texts) == len(result.content):
        text = "\n".join(texts)
        try:
            return json.loads(text)
        except ValueError:
            return text
    return [c.model_dump(mode="json", by_alias=True, exclude_none=True) for c in result.content]


def _raise_error(result: CallToolResult, name: str) -> None:
    data = _value(result)
    # The error's fields: ``{"error": {...}}``, else the JSON itself — also when its "error"
    # is only a message beside the status (``{"error": "Not Found", "status": 404}``).
    error = data.get("error") if isinstance(data, dict) else None
    fields = error if isinstance(error, dict) else data if isinstance(data, dict) else {}
    status = _number(fields.get("status", fields.get("status_code")))
    retry = fields.get("retry_after_s", fields.get("retry_after"))
    retry_after_s = float(retry) if isinstance(retry, int | float) and retry >= 0 else None
    message = fields.get("message", error)
    text = message if isinstance(message, str) else \
        (data if isinstance(data, str) else json.dumps(data, sort_keys=True, default=str))
    failure = MCPToolError(f"MCP tool {name!r} failed"
                           + (f" (status {status})" if status is not None else "")
                           + f": {text}", name, status if isinstance(status, int) else None,
                           retry_after_s, data)
    if status == 401:
        raise AuthExpired(str(failure), dependency=name) from failure
    refused = status is not None and status < 500 and fields.get("retryable") is True
    if status in _NOT_PROCESSED or refused:
        # Not processed: a 408/425/429, or a refusal the server says to retry (a 409 while
        # the key is in flight). A 5xx stays ambiguous whatever it says.
        raise TransientError(str(failure), retry_after_s=retry_after_s) from failure
    raise failure


def _number(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
        return value
    return None


def _classifier(effect: Effect, own: ErrorClassifier | None) -> ErrorClassifier:
    """The tool's reading of what its handler raised: the caller's ``classify_error`` first,
    then the MCP errors: a 5xx result, or a write's result without a status, may have been
    applied; a protocol timeout or a broken connection too."""
    from mcp.shared.exceptions import MCPError
    from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT

    def classify(exc: BaseException) -> ErrorOutcome | str | None:
        if own is not None:
            said = own(exc)
            if said is not None:
                return said
        if isinstance(exc, MCPToolError):
            if exc.status is None:
                return ErrorOutcome.AMBIGUOUS if effect.writes else ErrorOutcome.PERMANENT
            return ErrorOutcome.AMBIGUOUS if exc.status >= 500 else ErrorOutcome.PERMANENT
        if isinstance(exc, MCPError):
            lost = exc.code in (REQUEST_TIMEOUT, CONNECTION_CLOSED)
            return ErrorOutcome.AMBIGUOUS if lost else ErrorOutcome.PERMANENT
        if type_name(exc) in _BROKEN:
            return ErrorOutcome.AMBIGUOUS
        return None

    return classify


#: How long a toolset built from synchronous code waits for the server's tool listing.
LISTING_TIMEOUT_S = 60.0


def _blocking(fn: Callable[[], Awaitable[Any]]) -> Any:
    """``await fn()`` from synchronous code, also while an event loop runs in this thread (an
    agent factory called inside an episode): then on a private loop in a helper thread, for
    at most :data:`LISTING_TIMEOUT_S` — a server answering from the blocked loop itself never
    could, and that is said rather than waited for."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_awaited(fn))
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        return pool.submit(lambda: asyncio.run(_awaited(fn))).result(timeout=LISTING_TIMEOUT_S)
    except FutureTimeout:
        raise UsageError(
            f"mcp_toolset: the server did not list its tools within {LISTING_TIMEOUT_S:g} s "
            "while this thread's event loop was blocked waiting for it; if the server runs "
            "in this event loop, build the tools with await mcp_toolset_async(...)") from None
    finally:
        pool.shutdown(wait=False)


async def _awaited(fn: Callable[[], Awaitable[Any]]) -> Any:
    return await fn()
