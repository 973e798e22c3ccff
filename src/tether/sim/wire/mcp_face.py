"""The simulated world's operations as MCP tools: the official MCP SDK's server, in-process,
over streamable HTTP and over stdio.

Every operation a simulated service offers its clients (its ``OPERATIONS``; the simulated user
is not a service an agent calls) is one tool named ``service_operation``
(``payments_create_refund``, ``crm_get_ticket``). Its input schema comes from the operation's
signature, its output schema from the return annotation when that is a pydantic model (the
object itself) or a list of them (``{"result": [...]}``, since an MCP output schema is an
object). Reads carry ``readOnlyHint``; an operation not known to be a read is never marked
read-only. No write carries ``idempotentHint`` (MCP: "repeated calls with the same arguments
have no additional effect"): a write that takes an idempotency key (the optional
``idempotency_key`` argument, whose schema says so) is safe to repeat only *with* the key, and a
client that trusts the hint may repeat a call made without one.

Each call goes through the world's :class:`~tether.sim.wire.gateway.Gateway` under the fault
target ``service.operation`` — the same fault plan and counters as ``env.client`` and the HTTP
faces — so faults apply, the effect reaches the ledger and the call is recorded as a
:class:`~tether.sim.calls.ServiceCall` (attributed to the agent's running tool when the client
runs in the same task, as an in-process :func:`tether.agent.mcp.mcp_toolset` does).

What an MCP client sees (a tool *error result*, ``isError``, whose structured content and text
are ``{"error": {...}}`` with the HTTP-like ``status`` of what happened):

===========================  ================================================================
the service refused          the error JSON its HTTP face sends (Stripe's ``type``/``code``/
                             ``param`` for payments), with its ``status`` (404, 400, 409 …)
                             and ``retryable`` (a 409 while the key is in flight)
arguments it refuses         ``{"type": "invalid_request_error", "status": 400}``
injected 5xx / 429           ``{"type": "api_error" | "rate_limit_error", "status": …,
                             "retry_after_s": …}``: nothing was applied
expired credentials          ``{"type": "authentication_error", "status": 401}``
timeout, never delivered     ``{"type": "timeout", "code": "not_delivered", "status": 408}``:
                             the request never reached the service (certainly not applied)
timeout after commit         ``{"type": "timeout", "code": "response_lost", "status": 504}``:
                             **the write was applied**, but the answer is lost; the outcome is
                             unknown to the client, exactly as a proxy whose upstream read
                             timed out would report it (the error says it may have applied)
drift, wrong content,        a normal result whose structured content is changed: under
injection                    drift it no longer matches the advertised output schema, which
                             the official client refuses (``RuntimeError``) while a lenient
                             one reads the drifted JSON
a worker crash               :class:`tether.errors.Crash` propagates out of the call in-process,
                             where it reaches the agent's runtime; over HTTP or stdio it cannot
                             reach an agent in another process, and the call is answered as a
                             lost response (the 504 above: applied or not, the client cannot
                             know)
===========================  ================================================================

Determinism: in-process (the SDK's direct in-memory pairing) a call runs in the caller's event
loop on the world's virtual clock, so episodes stay byte-for-byte reproducible. Over HTTP or
stdio the fault draws stay seeded, but the order in which a foreign client's requests arrive is
its own.
"""

from __future__ import annotations

import copy
import functools
import inspect
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, get_args, get_origin, get_type_hints

from pydantic import BaseModel, TypeAdapter

from tether.errors import Crash, UsageError
from tether.sim.scenario import SERVICES
from tether.sim.services.errors import PaymentsError, ServiceError
from tether.sim.wire.json_face import error_body
from tether.sim.wire.messages import (
    BadRequestBody,
    ConnectionDropped,
    CredentialsExpired,
    InjectedStatus,
)

try:
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.tools import Tool as MCPTool
    from mcp.server.mcpserver.utilities.func_metadata import (
        ArgModelBase,
        FuncMetadata,
        func_metadata,
    )
    from mcp.server.transport_security import TransportSecuritySettings
    from mcp_types import CallToolResult, TextContent, ToolAnnotations
except ImportError as exc:  # pragma: no cover - the extra is installed for the tests
    raise UsageError("the simulated world's MCP server needs the MCP SDK: "
                     "pip install 'tether[mcp]'") from exc

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from tether.sim.environment import Environment

__all__ = ["KEY_ARGUMENT", "READ_OPERATIONS", "mcp_asgi_app", "mcp_server", "run_stdio",
           "tool_name"]

#: The argument an idempotent operation takes its idempotency key in.
KEY_ARGUMENT = "idempotency_key"

#: The operations known to change nothing (``readOnlyHint``). Anything else — including an
#: operation a service gains later — is advertised as a possible write: a client that trusts
#: the hint must never be told a write is safe to repeat.
READ_OPERATIONS: Mapping[str, frozenset[str]] = {
    "payments": frozenset({"get_customer", "list_customers", "list_charges", "get_charge",
                           "list_refunds", "get_refund", "get_payout", "list_payouts",
                           "get_balance"}),
    "crm": frozenset({"get_customer", "find_customer", "get_ticket", "list_tickets",
                      "primary_notes"}),
    "email": frozenset({"outbox", "list_inbox", "read_message"}),
    "kb": frozenset({"search", "get"}),
    "calendar": frozenset({"find_slots", "list_events"}),
    "identity": frozenset({"check"}),
    "memory": frozenset({"recall"}),
}


def tool_name(service: str, operation: str) -> str:
    """The MCP tool of ``service.operation``: ``payments_create_refund``."""
    return f"{service}_{operation}"


def mcp_server(env: Environment, *, services: Iterable[str] | None = None,
               name: str = "tether-sim", crashes: Literal["raise", "answer"] = "raise",
               ) -> MCPServer:
    """An MCP server whose tools are the operations of ``env``'s simulated services (all of
    them, or ``services``), each call made through ``env.gateway`` under the scenario's
    faults. Taking it marks the environment as used by the agent, as a client does.

    ``crashes="raise"`` (in-process) lets a simulated worker crash out of the call to the
    agent's runtime; ``"answer"`` (a server for other processes) answers it as a lost response.

    >>> from mcp import Client                                       # doctest: +SKIP
    >>> async with Client(mcp_server(env)) as client:                # doctest: +SKIP
    ...     await client.call_tool("payments_get_charge", {"id": "ch_1"})
    """
    env.gateway  # noqa: B018 - taking it marks the environment as used by the agent
    chosen = list(services) if services is not None else \
        [s for s in SERVICES if s in env.world.services]
    unknown = [s for s in chosen if s not in SERVICES or s not in env.world.services]
    if unknown:
        offered = ", ".join(s for s in SERVICES if s in env.world.services)
        raise UsageError(f"mcp_server: no simulated service {', '.join(map(repr, unknown))}; "
                         f"the world offers {offered}")
    tools = [_tool(env, service, operation, crashes) for service in chosen
             for operation in getattr(type(env.world.services[service]), "OPERATIONS", ())]
    return MCPServer(name, instructions=_INSTRUCTIONS, tools=tools, log_level="WARNING")


def mcp_asgi_app(env: Environment, *, path: str = "/mcp",
                 allowed_hosts: Iterable[str] = ("127.0.0.1:*", "localhost:*", "[::1]:*"),
                 json_response: bool = False, stateless: bool = False) -> Starlette:
    """The MCP server of ``env`` over streamable HTTP, as an ASGI app answering at ``path``.

    Give it requests with their full path (route ``/mcp`` to it rather than mounting it under
    a prefix, which would strip the path it answers at), and run its lifespan in the lifespan
    of the app that serves it (``async with app.router.lifespan_context(app):``): the SDK's
    session manager lives there, and a mounted app's lifespan is not run by Starlette. Hosts
    outside ``allowed_hosts`` are refused (DNS-rebinding protection).
    """
    hosts = list(allowed_hosts)
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True, allowed_hosts=hosts,
        allowed_origins=[f"http://{host}" for host in hosts])
    return mcp_server(env, crashes="answer").streamable_http_app(
        streamable_http_path=path, json_response=json_response, stateless_http=stateless,
        transport_security=security)


def run_stdio(env: Environment) -> None:
    """Serve ``env``'s MCP server on this process's stdin and stdout until stdin closes
    (``tether sim serve --stdio``)."""
    mcp_server(env, crashes="answer").run("stdio")


_INSTRUCTIONS = (
    "A simulated world (tether): payments on Stripe's objects, a CRM, email, a calendar, a "
    "knowledge base, identity. Tools are named service_operation. A failed call is a tool "
    "error whose JSON carries the status; a timeout with status 504 means the operation may "
    "have been applied: repeat a write only with the same idempotency_key.")


# -- one operation as a tool -----------------------------------------------------------------


@dataclass(frozen=True)
class _Shape:
    """What a tool of one operation looks like, whatever the world: built once per class."""

    name: str
    description: str
    defaults: Mapping[str, Any]
    arguments: type[ArgModelBase]
    parameters: dict[str, Any]
    output: dict[str, Any] | None
    wrapped: bool
    annotations: ToolAnnotations


@functools.lru_cache(maxsize=512)
def _shape(cls: type, service: str, operation: str) -> _Shape:
    method = getattr(cls, operation)
    hints = get_type_hints(method)
    parameters = [
        inspect.Parameter(p.name, inspect.Parameter.KEYWORD_ONLY,
                          default=p.default, annotation=hints.get(p.name, Any))
        for p in list(inspect.signature(method).parameters.values())[1:]  # self
        if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)]

    def signature() -> None: ...  # only its signature is read, for the arguments' model

    name = tool_name(service, operation)
    signature.__name__ = name
    signature.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        parameters, return_annotation=CallToolResult)
    arguments = func_metadata(signature, structured_output=False).arg_model
    output, wrapped = _output_schema(hints.get("return"))
    read = operation in READ_OPERATIONS.get(service, frozenset())
    schema = arguments.model_json_schema(by_alias=True)
    key = schema.get("properties", {}).get(KEY_ARGUMENT)
    if key is not None:
        key["description"] = _KEY_DESCRIPTION
    return _Shape(
        name=name, description=f"{service}: {inspect.getdoc(method) or operation}",
        defaults={p.name: p.default for p in parameters
                  if p.default is not inspect.Parameter.empty},
        arguments=arguments, parameters=schema,
        output=output, wrapped=wrapped,
        annotations=ToolAnnotations(
            title=f"{service}.{operation}", read_only_hint=read,
            destructive_hint=False if read else None,
            # Even a keyed write is not idempotent for the same arguments: its key is optional,
            # and a repeat without one applies again.
            idempotent_hint=None if read else False, open_world_hint=False))


_KEY_DESCRIPTION = (
    "Optional idempotency key: a repeat of this call with the same key applies nothing again "
    "and is answered with the first call's result. Send one with any write you may repeat, "
    "e.g. after a timeout; without it, a repeat applies again.")


def _tool(env: Environment, service: str, operation: str,
          crashes: Literal["raise", "answer"]) -> MCPTool:
    holder: object = env.world.services[service]  # (a class is hashable; mypy disagrees)
    shape = _shape(type(holder), service, operation)  # type: ignore[arg-type]
    defaults = shape.defaults

    async def call(**arguments: Any) -> CallToolResult:
        # Only what the caller gave (a default left out is what the operation assumes anyway),
        # so the recorded call and the idempotency fingerprint see the request as sent.
        given = {k: v for k, v in arguments.items()
                 if k not in defaults or not _same(v, defaults[k])}
        try:
            return await _invoke(env, service, operation, given, shape.wrapped)
        except Crash:
            if crashes == "raise":
                raise
            # The worker that crashed is the agent's, in another process: all the client can
            # see is that no answer came, whether or not the write was applied.
            return _error(_dropped(f"{service}.{operation}", delivered=True))

    call.__name__ = shape.name
    return MCPTool(
        fn=call, name=shape.name, title=shape.annotations.title,
        description=shape.description, parameters=copy.deepcopy(shape.parameters),
        # The schema is advertised but not enforced here: a drifted answer (a fault) must
        # reach the client as it is, and the client decides what to make of it.
        fn_metadata=FuncMetadata(arg_model=shape.arguments, output_schema=shape.output),
        is_async=True, context_kwarg=None, annotations=shape.annotations)


def _same(value: Any, default: Any) -> bool:
    return type(value) is type(default) and value == default


def _output_schema(annotation: Any) -> tuple[dict[str, Any] | None, bool]:
    """The output schema of a return annotation, and whether results are wrapped as
    ``{"result": [...]}`` (a list: an MCP output schema must be an object)."""
    if _is_model(annotation):
        return _json_schema(annotation), False
    if get_origin(annotation) is list:
        (item,) = get_args(annotation) or (Any,)
        if _is_model(item):
            inner = _json_schema(annotation)
            definitions = inner.pop("$defs", None)
            schema: dict[str, Any] = {"type": "object", "properties": {"result": inner},
                                      "required": ["result"]}
            if definitions is not None:
                schema["$defs"] = definitions
            return schema, True
        return None, True
    return None, False


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _json_schema(annotation: Any) -> dict[str, Any]:
    """The JSON Schema of what a service answers: the models' fields (validation mode, since a
    model's own serializer hides its shape from the serialization schema) plus their computed
    fields, which the answer carries too (a charge's ``refunded``)."""
    schema = TypeAdapter(annotation).json_schema(mode="validation")
    definitions = schema.get("$defs", {})
    for model in _models(annotation, set()):
        node = schema if model is annotation else definitions.get(model.__name__)
        if node is None or not model.model_computed_fields:
            continue
        properties = node.setdefault("properties", {})
        required = node.setdefault("required", [])
        for name, field in model.model_computed_fields.items():
            properties[name] = TypeAdapter(field.return_type).json_schema(mode="serialization")
            if name not in required:
                required.append(name)
    return schema


def _models(annotation: Any, seen: set[type[BaseModel]]) -> list[type[BaseModel]]:
    """Every model class reachable from ``annotation`` (its fields, their items …)."""
    if _is_model(annotation):
        if annotation in seen:
            return []
        seen.add(annotation)
        found = [annotation]
        for field in annotation.model_fields.values():
            found.extend(_models(field.annotation, seen))
        return found
    return [model for arg in get_args(annotation) for model in _models(arg, seen)]


async def _invoke(env: Environment, service: str, operation: str, arguments: dict[str, Any],
                  wrapped: bool) -> CallToolResult:
    target = f"{service}.{operation}"
    key = arguments.get(KEY_ARGUMENT)
    if isinstance(key, str) and key:
        arguments = {**arguments, KEY_ARGUMENT: env.gateway.key_name(key)}
    try:
        result = await env.gateway.invoke_async(service, operation, arguments)
    except ServiceError as exc:
        return _error(_service_error(exc))
    except InjectedStatus as exc:
        throttled = exc.status == 429
        return _error({
            "type": "rate_limit_error" if throttled else "api_error", "status": exc.status,
            "retry_after_s": exc.retry_after_s,
            "message": f"{target}: HTTP {exc.status}; the service applied nothing"
                       + ("; retry after the delay" if throttled else "")})
    except CredentialsExpired:
        return _error({"type": "authentication_error", "status": 401,
                       "message": f"{target}: the access credentials expired; renew them and "
                                  "call again"})
    except ConnectionDropped as exc:
        return _error(_dropped(target, delivered=exc.delivered))
    except (BadRequestBody, UsageError) as exc:
        # Arguments the schema admits but the operation refuses (an empty memory subject): the
        # caller's mistake, answered as such rather than as a failure of the server.
        return _error({"type": "invalid_request_error", "status": 400, "message": str(exc)})
    structured = {"result": result} if wrapped else result
    text = json.dumps(structured, sort_keys=True, default=str)
    return CallToolResult(content=[TextContent(type="text", text=text)],
                          structured_content=structured if isinstance(structured, dict)
                          else None)


def _dropped(target: str, *, delivered: bool) -> dict[str, Any]:
    # A proxy knows whether its upstream connection was ever made: a request that never got
    # there is a 408 (certainly not applied, safe to repeat); one whose answer was lost is a
    # 504 whose outcome is unknown — the write may have been applied (here: it was).
    if delivered:
        return {"type": "timeout", "code": "response_lost", "status": 504,
                "message": f"{target}: timed out waiting for the service's answer; the "
                           "operation may have been applied (its outcome is unknown): repeat "
                           "a write only with the same idempotency key"}
    return {"type": "timeout", "code": "not_delivered", "status": 408,
            "message": f"{target}: the request did not reach the service (nothing was "
                       "applied); it is safe to send again"}


def _service_error(exc: ServiceError) -> dict[str, Any]:
    """The service's own error JSON, as its HTTP face sends it (Stripe's for payments), with
    its status and whether it may be retried."""
    if isinstance(exc, PaymentsError):
        body: dict[str, Any] = dict(exc.to_stripe()["error"])
    else:
        body = dict(error_body(exc)["error"])
    body["status"] = exc.status
    body["retryable"] = exc.retryable
    return body


def _error(error: dict[str, Any]) -> CallToolResult:
    body = {"error": error}
    return CallToolResult(content=[TextContent(type="text", text=json.dumps(body,
                                                                           sort_keys=True))],
                          structured_content=body, is_error=True)
