"""The HTTP face of ``tether serve``: a Starlette app over a :class:`~tether.serve.server.Server`.

Starlette rather than FastAPI: it is what ``tether sim serve`` already uses (no new
dependency), and the API is small enough that its OpenAPI document is written by hand, in
:data:`OPENAPI` below, next to the routes it describes. A test holds the two together: every
route is in the document with its methods, and every documented path is routed.

Every request but ``GET /openapi.json`` and the chat page (``GET /``, ``/static/...``, which
asks for a key itself) needs ``Authorization: Bearer <key>`` (401 without a known key); the
key's tenant scopes everything, so another tenant's session or run is 404.
Errors are ``{"error": {"type", "message", "param"?}}`` with a 4xx status: tether's errors map
to statuses in :func:`problem_of` (409 for a conflict, 422 for refused input, 410 for an
expired session, 404 for an unknown execution), and a malformed or oversized body is a 400/413.
Every error message is rendered for the caller's tenant in :func:`_answer`, the one place
errors are answered (:mod:`tether.serve.redact`): the caller's session ids, never the stored
ones, the server's paths or another tenant.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from tether.errors import (
    AlreadyDecided,
    ClientResultConflict,
    ClientResultRefused,
    ConcurrencyConflict,
    RestoreRefused,
    RunOwned,
    SessionInactive,
    ToolArgsInvalid,
    TriggerInputInvalid,
    UnknownExecution,
    UsageError,
    WebhookRejected,
)
from tether.serve import requires_serve
from tether.serve.server import Refusal, Server, Started
from tether.serve.stream import UiEvent, event_stream
from tether.serve.tenants import KeyHolder, tenant_of_run

requires_serve()

import anyio  # noqa: E402 - Starlette's own dependency
from starlette.applications import Starlette  # noqa: E402 - after the install hint
from starlette.exceptions import HTTPException  # noqa: E402
from starlette.requests import ClientDisconnect, Request  # noqa: E402
from starlette.responses import JSONResponse, Response, StreamingResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402
from starlette.types import Receive, Scope, Send  # noqa: E402

__all__ = ["OPENAPI", "create_app", "problem_of"]

#: How a refused webhook delivery is answered: an unsigned, forged or stale one is not
#: authenticated (401); one that is not shaped as a delivery at all is a bad request (400).
_WEBHOOK_STATUS = {"missing-signature": 401, "bad-signature": 401, "stale": 401,
                   "malformed-signature": 400, "missing-event-id": 400}

#: An API route's handler: the request, the server, and who holds the key it came with.
_ApiHandler = Callable[[Request, Server, KeyHolder], Awaitable[Response]]


def problem_of(exc: Exception) -> Refusal | None:
    """The HTTP answer to a tether error (``None``: not one the API answers with a 4xx)."""
    if isinstance(exc, Refusal):
        return exc
    table: list[tuple[type[Exception], int, str]] = [
        (ClientResultConflict, 409, "client_result_conflict"),
        (AlreadyDecided, 409, "already_decided"),
        (UnknownExecution, 404, "not_found"),
        (ClientResultRefused, 422, "client_result_refused"),
        (TriggerInputInvalid, 422, "trigger_input_invalid"),
        (RestoreRefused, 422, "restore_refused"),
        (ToolArgsInvalid, 422, "invalid_arguments"),
        (ConcurrencyConflict, 409, "session_conflict"),
    ]
    if isinstance(exc, RunOwned):
        # Which server holds the run (its host and address) is the operator's business.
        return Refusal(409, "run_busy", f"execution {exc.run_id!r} is being run by a server "
                       "right now; retry once its turn has moved on", "run_id")
    if isinstance(exc, WebhookRejected):
        return Refusal(_WEBHOOK_STATUS.get(exc.reason, 401), "webhook_rejected",
                       f"{exc} (reason: {exc.reason or 'unknown'})", exc.reason or None)
    if isinstance(exc, SessionInactive):
        if exc.status == "expired":
            return Refusal(410, "session_expired", f"{exc}. POST /v1/sessions/{{id}}/restore "
                           "with the client's copy of the history brings it back")
        return Refusal(409, "session_closed", str(exc))
    for kind, status, name in table:
        if isinstance(exc, kind):
            return Refusal(status, name, str(exc))
    if isinstance(exc, UsageError):
        return Refusal(400, "invalid_request", str(exc))
    return None


def _answer(refusal: Refusal, server: Server, tenant: str | None) -> JSONResponse:
    """The error answer, its message rendered for ``tenant`` (the one place: no stored id,
    server path or other tenant reaches a caller, whichever layer worded the error)."""
    error: dict[str, Any] = {"type": refusal.type,
                             "message": server.redactor.render(refusal.message, tenant)}
    if refusal.param is not None:
        error["param"] = refusal.param
    headers = {"WWW-Authenticate": "Bearer"} if refusal.status == 401 else None
    return JSONResponse({"error": error}, status_code=refusal.status, headers=headers)


def _endpoint(server: Server, handler: _ApiHandler) -> Callable[[Request], Awaitable[Response]]:
    """``handler`` behind authentication and the error mapping."""

    async def endpoint(request: Request) -> Response:
        who: KeyHolder | None = None
        try:
            who = _key_holder(server, request)
            return await handler(request, server, who)
        except Exception as exc:  # every tether error is an answer; anything else a 500
            refusal = problem_of(exc)
            if refusal is None:
                raise
            return _answer(refusal, server, None if who is None else who.tenant)

    return endpoint


def _key_holder(server: Server, request: Request) -> KeyHolder:
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Refusal(401, "unauthorized", "send the API key as 'Authorization: Bearer <key>'")
    who = server.keys.identify(key.strip())
    if who is None:
        raise Refusal(401, "unauthorized", "unknown API key")
    return who


async def _body(request: Request, server: Server) -> dict[str, Any]:
    raw = await _raw(request, server)
    if not raw.strip():
        return {}
    try:
        # NaN, Infinity and numbers beyond a float are refused here: they are not JSON, and
        # stored they could never be answered back as JSON.
        body = json.loads(raw, parse_constant=_not_json, parse_float=_finite)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Refusal(400, "invalid_json", f"the body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise Refusal(422, "invalid_request", "the body must be a JSON object")
    return body


async def _raw(request: Request, server: Server) -> bytes:
    """The request's body as it came, up to the body limit (413 beyond it)."""
    limit = server.limits.body_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise Refusal(413, "too_large", f"the body is over {limit} bytes")
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > limit:
            raise Refusal(413, "too_large", f"the body is over {limit} bytes")
    return raw


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:30]} is beyond a float")
    return value


def _sse(server: Server, run_id: str, after: int,
         deltas: AsyncIterator[UiEvent] | None = None, *,
         through_waits: bool = False) -> StreamingResponse:
    """The run's SSE stream after ``after``, with its model's text deltas from now on
    (subscribed here, before the turn's task next runs, so none is missed)."""

    def wake() -> asyncio.Future[None]:
        return server.wake(run_id)

    frames: AsyncIterator[str] = event_stream(
        server.store, run_id, after=after, wake=wake, keepalive_s=server.keepalive_s,
        clock=server.runtime.clock, poll_s=server.poll_s,
        deltas=deltas if deltas is not None else server.deltas.follow(run_id),
        through_waits=through_waits, render=functools.partial(_render, server, run_id))
    # Tether-Run-Id and Tether-After say which run and from which seq before any frame: a
    # client whose connection drops before the first event can still resume at the right place
    # (GET /v1/executions/{run_id}/events after that seq) instead of guessing.
    return EventStreamResponse(frames, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache",
                                        "X-Accel-Buffering": "no", "Tether-Run-Id": run_id,
                                        "Tether-After": str(after)})


class EventStreamResponse(StreamingResponse):
    """A streaming response whose frames are sent from the request's own task.

    Starlette's (under ASGI < 2.4, which uvicorn speaks) sends the body from a task it starts
    and listens for the client's disconnect in the request's: the first frame then waits a
    round of the event loop, behind every turn that is ready to run. Here the request's task
    sends the head and the first frames in the step that made the response, and the
    disconnect listener is the started task (it cancels the stream when the client leaves)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with anyio.create_task_group() as group:

                async def disconnected() -> None:
                    await self.listen_for_disconnect(receive)
                    group.cancel_scope.cancel()

                group.start_soon(disconnected)
                try:
                    await self.stream_response(send)
                except OSError as exc:
                    raise ClientDisconnect() from exc
                finally:
                    group.cancel_scope.cancel()
        except BaseExceptionGroup as group_error:
            # One error (the usual case) is raised as itself, as Starlette's response does.
            if len(group_error.exceptions) != 1:
                raise
            raise group_error.exceptions[0] from None


def _render(server: Server, run_id: str, event: UiEvent) -> UiEvent:
    """A finished turn's reason and error as the run's tenant may read them (the runtime
    words them for the operator: stored session ids, paths); other events are the turn's
    own conversation and go as they are."""
    if event.type != "turn.finished":
        return event
    tenant = tenant_of_run(run_id)

    def worded(value: Any) -> Any:
        if isinstance(value, str):
            return server.redactor.render(value, tenant)
        if isinstance(value, dict):
            return {k: worded(v) for k, v in value.items()}
        if isinstance(value, list):
            return [worded(v) for v in value]
        return value

    data = {**event.data, "reason": worded(event.data.get("reason")),
            "error": worded(event.data.get("error"))}
    return UiEvent(event.type, data, event.id, event.position)


def _after(request: Request) -> int:
    text = request.headers.get("last-event-id") or request.query_params.get("after") or "0"
    if not text.isdigit() or len(text) > 18:
        raise Refusal(422, "invalid_request", f"Last-Event-ID / after must be a seq (a "
                      f"non-negative integer), got {text[:30]!r}", "after")
    return int(text)


def _until(request: Request) -> str:
    until = request.query_params.get("until", "waiting")
    if until not in ("waiting", "finished"):
        raise Refusal(422, "invalid_request", f"until must be 'waiting' (the stream ends when "
                      f"the run waits) or 'finished' (it follows the run through its waits), "
                      f"got {until[:30]!r}", "until")
    return until


# -- handlers -------------------------------------------------------------------------------


async def create_session(request: Request, server: Server, who: KeyHolder) -> Response:
    session = server.create_session(who, await _body(request, server))
    return JSONResponse(server.view(who, session), status_code=201)


async def read_session(request: Request, server: Server, who: KeyHolder) -> Response:
    return JSONResponse(server.view(who, server.session(who, request.path_params["sid"])))


async def fire_trigger(request: Request, server: Server, who: KeyHolder) -> Response:
    body = await _body(request, server)
    sid, trigger = request.path_params["sid"], request.path_params["trigger"]
    done = await server.fire(who, sid, trigger, body)
    if isinstance(done, Started):
        return _sse(server, done.run_id, 0, done.deltas)
    return JSONResponse(server.view(who, done))


async def continue_execution(request: Request, server: Server, who: KeyHolder) -> Response:
    run_id = request.path_params["run_id"]
    after = await server.continue_execution(who, run_id, await _body(request, server))
    return _sse(server, run_id, after)


async def execution_events(request: Request, server: Server, who: KeyHolder) -> Response:
    run_id = request.path_params["run_id"]
    server.own_run(who, run_id)
    return _sse(server, run_id, _after(request), through_waits=_until(request) == "finished")


async def restore_session(request: Request, server: Server, who: KeyHolder) -> Response:
    session = server.restore(who, request.path_params["sid"], await _body(request, server))
    return JSONResponse(server.view(who, session))


async def list_approvals(request: Request, server: Server, who: KeyHolder) -> Response:
    return JSONResponse({"approvals": server.approvals(who)})


async def approve(request: Request, server: Server, who: KeyHolder) -> Response:
    return JSONResponse(server.decide(who, request.path_params["run_id"],
                                      await _body(request, server), approve=True))


async def deny(request: Request, server: Server, who: KeyHolder) -> Response:
    return JSONResponse(server.decide(who, request.path_params["run_id"],
                                      await _body(request, server), approve=False))


async def list_runs(request: Request, server: Server, who: KeyHolder) -> Response:
    return JSONResponse({"runs": server.runs(who)})


async def run_events(request: Request, server: Server, who: KeyHolder) -> Response:
    return JSONResponse({"events": server.run_events(who, request.path_params["run_id"])})


async def webhook(request: Request, server: Server) -> Response:
    """A signed webhook delivery: no API key, the trigger's HMAC secret authenticates it
    and the tenant is the path's. The raw body and headers go to the trigger as they came."""
    params = request.path_params
    done = await server.fire_webhook(params["tenant"], params["sid"], params["trigger"],
                                     await _raw(request, server), dict(request.headers))
    if isinstance(done, Started):
        return _sse(server, done.run_id, 0, done.deltas)
    return JSONResponse({"id": params["sid"], "status": done.status.value,
                         "revision": done.revision})


def _open_endpoint(server: Server, handler: Callable[[Request, Server], Awaitable[Response]],
                   ) -> Callable[[Request], Awaitable[Response]]:
    """``handler`` behind the error mapping only: it authenticates the request itself."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request, server)
        except Exception as exc:
            refusal = problem_of(exc)
            if refusal is None:
                raise
            # Not authenticated by a key: the message is rendered for no tenant.
            return _answer(refusal, server, None)

    return endpoint


#: Routes without an API key (path, method, handler): each authenticates its caller itself.
OPEN_ROUTES: list[tuple[str, str, Callable[[Request, Server], Awaitable[Response]]]] = [
    ("/v1/tenants/{tenant}/sessions/{sid}/webhooks/{trigger}", "POST", webhook),
]

#: (path, method, handler): the API. OPENAPI describes exactly these and OPEN_ROUTES.
ROUTES: list[tuple[str, str, _ApiHandler]] = [
    ("/v1/sessions", "POST", create_session),
    ("/v1/sessions/{sid}", "GET", read_session),
    ("/v1/sessions/{sid}/triggers/{trigger}", "POST", fire_trigger),
    ("/v1/sessions/{sid}/restore", "POST", restore_session),
    ("/v1/executions/{run_id}/continue", "POST", continue_execution),
    ("/v1/executions/{run_id}/events", "GET", execution_events),
    ("/v1/approvals", "GET", list_approvals),
    ("/v1/approvals/{run_id}/approve", "POST", approve),
    ("/v1/approvals/{run_id}/deny", "POST", deny),
    ("/v1/runs", "GET", list_runs),
    ("/v1/runs/{run_id}/events", "GET", run_events),
]


def create_app(server: Server) -> Starlette:
    """The ASGI app of ``server``; its lifespan resumes unfinished turns at start-up and
    cancels the background tasks at shutdown."""
    routes = [Route(path, _endpoint(server, handler), methods=[method])
              for path, method, handler in ROUTES]
    routes += [Route(path, _open_endpoint(server, handler), methods=[method])
               for path, method, handler in OPEN_ROUTES]

    async def openapi(request: Request) -> Response:
        return JSONResponse(OPENAPI)

    routes.append(Route("/openapi.json", openapi, methods=["GET"]))
    routes += page_routes()

    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await server.start()
        yield
        await server.stop()

    from contextlib import asynccontextmanager

    async def http_error(request: Request, exc: Exception) -> Response:
        # Starlette's own refusals (no such route, a method a route does not take) in the
        # API's error shape too.
        assert isinstance(exc, HTTPException)
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        answer = _answer(Refusal(exc.status_code, kind, str(exc.detail)), server, None)
        answer.headers.update(exc.headers or {})
        return answer

    return Starlette(routes=routes, lifespan=asynccontextmanager(lifespan),
                     exception_handlers={HTTPException: http_error})


# -- the chat page (no key: it asks for one; outside /v1 and the OpenAPI document) ----------

#: The page's files and their media types; nothing else is served from the page directory.
_PAGE_FILES = {"index.html": "text/html; charset=utf-8",
               "chat.js": "text/javascript; charset=utf-8",
               "chat.css": "text/css; charset=utf-8"}
# The page loads only its own files and talks only to this server.
_PAGE_HEADERS = {"Content-Security-Policy": "default-src 'self'; script-src 'self'; "
                 "style-src 'self'; connect-src 'self'; img-src 'self'; frame-ancestors 'none'",
                 "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}


def page_routes() -> list[Route]:
    """``GET /`` (the chat page) and ``GET /static/{name}`` (its script and style sheet)."""
    from importlib.resources import files

    folder = files("tether.serve") / "page"

    def serve(name: str) -> Response:
        media = _PAGE_FILES.get(name)
        if media is None:
            raise HTTPException(404, f"no static file {name!r}")
        return Response((folder / name).read_bytes(), media_type=media, headers=_PAGE_HEADERS)

    async def index(request: Request) -> Response:
        return serve("index.html")

    async def static(request: Request) -> Response:
        return serve(request.path_params["name"])

    return [Route("/", index, methods=["GET"]),
            Route("/static/{name}", static, methods=["GET"])]


# -- the OpenAPI document -------------------------------------------------------------------

_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["type", "message"],
    "properties": {"type": {"type": "string"}, "message": {"type": "string"},
                   "param": {"type": "string"}}}}}
_ANY_OBJECT: dict[str, Any] = {"type": "object", "additionalProperties": True}
_SESSION = {"type": "object",
            "required": ["id", "agent", "status", "revision", "variables", "resources",
                         "turns", "history"],
            "properties": {
                "id": {"type": "string"}, "agent": {"type": "string"},
                "status": {"type": "string", "enum": ["active", "expired", "closed"]},
                "revision": {"type": "integer"}, "variables": _ANY_OBJECT,
                "resources": _ANY_OBJECT,
                "turns": {"type": "array", "items": {"type": "object", "properties": {
                    "number": {"type": "integer"}, "run_id": {"type": "string"},
                    "trigger": {"type": "string"}, "status": {"type": ["string", "null"]}}}},
                "history": {"type": "array", "items": _ANY_OBJECT}}}
_SID = {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,128}$"}
_SSE: dict[str, Any] = {"description": "Server-sent events of the run (id: the journal's seq)",
        "headers": {"Tether-Run-Id": {"description": "the run the stream follows",
                                      "schema": {"type": "string"}},
                    "Tether-After": {"description": "the seq the stream starts after",
                                     "schema": {"type": "string", "pattern": "^[0-9]+$"}}},
        "content": {"text/event-stream": {"schema": {"type": "string"}}}}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _op(summary: str, ok: dict[str, dict[str, Any]], errors: tuple[int, ...],
        params: tuple[str, ...] = (), body: dict[str, Any] | None = None,
        query: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
    responses: dict[str, Any] = dict(ok)
    for status in (401, *errors):
        responses[str(status)] = _json(_ERROR, "Error")
    operation: dict[str, Any] = {
        "summary": summary, "security": [{"bearer": []}], "responses": responses,
        "parameters": [{"name": p, "in": "path", "required": True,
                        "schema": _SID if p == "sid" else {"type": "string"}}
                       for p in params] + list(query)}
    if body is not None:
        operation["requestBody"] = {"required": True,
                                    "content": {"application/json": {"schema": body}}}
    return operation


def _object(required: tuple[str, ...], **properties: Any) -> dict[str, Any]:
    return {"type": "object", "required": list(required), "properties": properties}


_DECISION = _object((), note={"type": "string"}, step={"type": "integer"})


def _webhook_op() -> dict[str, Any]:
    """A webhook delivery: no bearer key (the HMAC signature is the authentication)."""
    operation = _op(
        "Deliver a signed webhook event to a session's webhook trigger (no API key: the "
        "trigger's HMAC-SHA256 secret authenticates the sender; the signature header is "
        "t=<unix seconds>,v1=<hex HMAC of \"<t>.<event id>.\" + body>). The turn's event "
        "stream; a repeated event id streams the first delivery's turn again",
        {"200": {**_SSE, "content": {**_SSE["content"], "application/json": {
            "schema": _object(("id", "status", "revision"), id={"type": "string"},
                              status={"type": "string"}, revision={"type": "integer"})}}}},
        (400, 404, 409, 410, 413, 422, 503), ("tenant", "sid", "trigger"),
        body={"type": "object"})
    operation["security"] = []
    operation["parameters"][0]["schema"] = {"type": "string",
                                            "pattern": "^[A-Za-z0-9_-]{1,64}$"}
    return operation
_LIST = {"type": "array", "items": _ANY_OBJECT}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "tether serve", "version": "1",
             "description": "Agents and durable sessions over HTTP with resumable SSE streams."},
    "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    "paths": {
        "/v1/sessions": {"post": _op(
            "Create a session", {"201": _json(_SESSION, "Created")}, (400, 409, 413, 422),
            body=_object(("agent",), agent={"type": "string"}, session_id=_SID,
                         variables=_ANY_OBJECT, ttl_s={"type": "number"}))},
        "/v1/sessions/{sid}": {"get": _op(
            "Read a session", {"200": _json(_SESSION)}, (404, 422), ("sid",))},
        "/v1/sessions/{sid}/triggers/{trigger}": {"post": _op(
            "Fire a trigger: the turn's event stream (or the session, if no turn started)",
            {"200": {**_SSE, "content": {**_SSE["content"],
                                          "application/json": {"schema": _SESSION}}}},
            (400, 404, 409, 410, 413, 422), ("sid", "trigger"),
            body=_object((), input={}, key={"type": "string"},
                         expected_revision={"type": "integer"}))},
        "/v1/sessions/{sid}/restore": {"post": _op(
            "Restore an expired or lost session from the client's history",
            {"200": _json(_SESSION)}, (400, 404, 409, 413, 422), ("sid",),
            body=_object(("history",), history=_LIST, agent={"type": "string"},
                         variables=_ANY_OBJECT, ttl_s={"type": "number"}))},
        "/v1/executions/{run_id}/continue": {"post": _op(
            "Answer client tool calls; the run's event stream from there",
            {"200": _SSE}, (400, 404, 409, 413, 422), ("run_id",),
            body=_object(("results",), results=_ANY_OBJECT))},
        "/v1/executions/{run_id}/events": {"get": _op(
            "The run's event stream after a seq (Last-Event-ID or ?after=)",
            {"200": _SSE}, (404, 422), ("run_id",),
            query=({"name": "after", "in": "query", "required": False,
                    "schema": {"type": "integer", "minimum": 0}},
                   {"name": "Last-Event-ID", "in": "header", "required": False,
                    "schema": {"type": "string"}},
                   {"name": "until", "in": "query", "required": False,
                    "description": "waiting (default): the stream ends when the run waits; "
                                   "finished: it sends run.waiting and follows the run "
                                   "through its waits to turn.finished",
                    "schema": {"type": "string", "enum": ["waiting", "finished"]}}))},
        "/v1/approvals": {"get": _op(
            "Pending approvals of the tenant",
            {"200": _json(_object(("approvals",), approvals=_LIST))}, ())},
        "/v1/approvals/{run_id}/approve": {"post": _op(
            "Approve a held call (needs the role it asks for)", {"200": _json(_ANY_OBJECT)},
            (400, 403, 404, 409, 413, 422), ("run_id",), body=_DECISION)},
        "/v1/approvals/{run_id}/deny": {"post": _op(
            "Deny a held call (needs the role it asks for)", {"200": _json(_ANY_OBJECT)},
            (400, 403, 404, 409, 413, 422), ("run_id",), body=_DECISION)},
        "/v1/runs": {"get": _op(
            "The tenant's turn runs", {"200": _json(_object(("runs",), runs=_LIST))}, ())},
        "/v1/runs/{run_id}/events": {"get": _op(
            "A run's journal", {"200": _json(_object(("events",), events=_LIST))}, (404,),
            ("run_id",))},
        "/v1/tenants/{tenant}/sessions/{sid}/webhooks/{trigger}": {"post": _webhook_op()},
    },
}
