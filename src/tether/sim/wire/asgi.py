"""The simulated world as an ASGI application: what ``tether sim serve`` puts on loopback.

``asgi_app(env)`` answers:

========================================  ===============================================
``/{service}/...``                        the service's face through ``env.gateway``
                                          (``/payments/v1/refunds``, ``/crm/v1/...``,
                                          ``/identity/oauth/token``), faults applied
``/mcp``                                  the world's operations as MCP tools (streamable
                                          HTTP), when the ``mcp`` extra is installed
``/openapi.json``                         the OpenAPI document of the HTTP faces
``GET /_tether/verdict``                  the scenario's invariants and task checks against
                                          the ledger *now* (:func:`~.verdict.judge`)
``GET /_tether/ledger``                   every effect so far, and the ledger's digest
``GET /_tether/webhooks``                 the webhook events and every delivery attempt
``POST /_tether/clock/advance``           ``{"seconds": N}``: move the virtual clock (and
                                          run a webhook delivery round)
``GET /_tether/health``                   the scenario, the seed, the virtual time
========================================  ===============================================

**A dropped connection.** Where a fault drops the connection (``timeout_before``,
``timeout_after``, a simulated crash), the server closes the socket *without sending a byte
of a response*: under uvicorn with :func:`dropping_protocol` (what ``tether sim serve`` runs)
the connection is aborted, so clients see what they see when a server or a proxy dies
mid-request:

* ``requests`` (and so the ``stripe`` SDK's default client): ``requests.ConnectionError``
  (``Connection aborted``, ``RemoteDisconnected``) — which the SDK classifies as a network
  error worth retrying (``APIConnectionError``, ``should_retry``), exactly as it treats a read
  timeout; with ``max_network_retries`` it retries with its own ``Idempotency-Key``;
* ``httpx``: ``httpx.RemoteProtocolError`` ("Server disconnected without sending a
  response"), a ``TransportError`` (the stripe SDK's ``HTTPXClient`` turns every such error
  into a retryable ``APIConnectionError``);
* ``curl``: exit status 52 ("Empty reply from server").

Under another ASGI server (no abort extension) the response is started with a
``content-length`` it never completes, so clients see a broken body instead (``requests``:
``ChunkedEncodingError``, which the stripe SDK does *not* retry).

Deliveries of webhook events over HTTP happen after the response of the request that caused
them has been sent (:mod:`~tether.sim.wire.webhooks`).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from tether.errors import Crash, TetherError, UsageError
from tether.sim.wire.messages import ConnectionDropped, WireRequest, WireResponse
from tether.sim.wire.verdict import judge, verdict_data

try:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route
except ImportError as exc:  # pragma: no cover - the extra is installed for the tests
    raise UsageError("serving the simulated world over HTTP needs starlette, uvicorn and "
                     "httpx: pip install 'tether[serve]'") from exc

if TYPE_CHECKING:
    from tether.sim.environment import Environment

__all__ = ["ABORT_EXTENSION", "asgi_app", "dropping_protocol"]

Scope = MutableMapping[str, Any]
ASGIMessage = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[ASGIMessage]]
Send = Callable[[ASGIMessage], Awaitable[None]]

#: The key, in ``scope["extensions"]``, of a function that aborts the request's connection.
ABORT_EXTENSION = "tether.abort"
#: The largest request body read (a bigger one is answered 413).
MAX_BODY_BYTES = 10 * 1024 * 1024
#: The most the clock moves in one ``/_tether/clock/advance`` (a year).
MAX_ADVANCE_S = 366 * 24 * 3600.0


def asgi_app(env: Environment) -> Starlette:
    """The ASGI app serving ``env``'s world (see the module docstring). Webhook deliveries
    to URLs without an in-process receiver go out over HTTP once it serves."""
    gateway = env.gateway
    hooks = env.webhooks
    hooks.over_http = True
    wire = _Wire(env)
    mcp = _mcp_app(env)
    routes = [
        Route("/_tether/health", _endpoint(env, _health)),
        Route("/_tether/verdict", _endpoint(env, _verdict)),
        Route("/_tether/ledger", _endpoint(env, _ledger)),
        Route("/_tether/webhooks", _endpoint(env, _webhooks)),
        Route("/_tether/clock/advance", _endpoint(env, _advancing(wire)), methods=["POST"]),
        Route("/openapi.json", _endpoint(env, _openapi)),
    ]
    if mcp is not None:
        # Routed with its full path (the MCP app answers at /mcp itself; a Mount would strip it).
        # /mcp/ too, which the MCP app redirects to /mcp: else the services' catch-all below
        # would answer a client addressing the endpoint with a trailing slash with a 404.
        routes.append(Route("/mcp", _ThenDeliver(mcp, wire)))
        routes.append(Route("/mcp/", _ThenDeliver(mcp, wire)))
    routes.append(Route("/{path:path}", wire))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            if mcp is not None:
                await stack.enter_async_context(mcp.router.lifespan_context(mcp))
            try:
                yield
            finally:
                await wire.close()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.gateway = gateway
    return app


def _mcp_app(env: Environment) -> Any:
    try:
        from tether.sim.wire.mcp_face import mcp_asgi_app
    except (ImportError, UsageError):
        return None  # the mcp extra is not installed: the world is served without /mcp
    return mcp_asgi_app(env, path="/mcp")


# -- the world's services --------------------------------------------------------------------


class _Wire:
    """Every request below ``/{service}`` to the gateway, as raw ASGI (a dropped connection
    must send nothing at all, which a framework's response objects cannot express)."""

    def __init__(self, env: Environment) -> None:
        self.env = env
        self._delivering = asyncio.Lock()
        self._client: Any = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await _body(receive)
        if body is None:
            await _send(send, _too_large(self.env, scope["path"]))
            return
        raw_path = scope.get("raw_path") or scope["path"].encode()
        query = scope.get("query_string") or b""
        target = raw_path.decode("latin-1") + (f"?{query.decode('latin-1')}" if query else "")
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        request = WireRequest.of(scope["method"], target, headers, body)
        try:
            answer = await self.env.gateway.handle_async(request)
        except (ConnectionDropped, Crash):
            # A timeout on the wire, or a worker crash that cannot reach an agent in another
            # process: either way the client gets no response.
            await _drop(scope, receive, send)
        else:
            await _send(send, answer)
        await self.deliver()

    async def deliver(self) -> None:
        """Send the webhook deliveries that wait for an HTTP endpoint, one round at a time."""
        hooks = self.env.webhooks
        async with self._delivering:
            if not hooks.pending():
                return
            if self._client is None:
                import httpx

                self._client = httpx.AsyncClient(timeout=10.0)
            await hooks.deliver_over_http(self._client)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


class _ThenDeliver:
    """An ASGI app, then the webhook deliveries its calls caused (a refund made as an MCP tool
    call is delivered as one made over HTTP is). A class, not a function: Starlette routes a
    function as a request handler, an object as an ASGI app."""

    def __init__(self, app: Any, wire: _Wire) -> None:
        self.app, self.wire = app, wire

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        finally:
            await self.wire.deliver()


def _too_large(env: Environment, path: str) -> WireResponse:
    """The 413 of an oversized body, in the error shape of the service it was sent to (the
    documented error schema holds for it too)."""
    from tether.sim.wire.json_face import JsonFace
    from tether.sim.wire.oauth import OAuthFace

    message = f"the request body is larger than {MAX_BODY_BYTES} bytes"
    face = env.gateway.faces.get(path.lstrip("/").split("/", 1)[0])
    if isinstance(face, OAuthFace):
        return WireResponse.of_json(413, {"error": "invalid_request",
                                          "error_description": message},
                                    {"cache-control": "no-store", "pragma": "no-cache"})
    if isinstance(face, JsonFace):
        return WireResponse.of_json(413, {"error": {"type": "invalid_request", "message": message,
                                                    "status": 413, "retryable": False}})
    return WireResponse.of_json(413, {"error": {"type": "invalid_request_error",
                                                "message": message}})


async def _body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _send(send: Send, answer: WireResponse) -> None:
    headers = [(k.lower().encode("latin-1"), str(v).encode("latin-1"))
               for k, v in answer.headers.items() if k.lower() != "content-length"]
    headers.append((b"content-length", str(len(answer.body)).encode()))
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body, "more_body": False})


async def _drop(scope: Scope, receive: Receive, send: Send) -> None:
    """Close the connection without a response (see the module docstring)."""
    abort = (scope.get("extensions") or {}).get(ABORT_EXTENSION)
    if abort is not None:
        abort()
        # Wait until the server has seen the connection go, so it does not answer for us.
        with contextlib.suppress(Exception):
            while (await receive())["type"] != "http.disconnect":
                pass
        return
    # Another server: promise a body and never send it; returning closes the connection.
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"1")]})


def dropping_protocol() -> type[asyncio.Protocol]:
    """uvicorn's HTTP/1.1 protocol, giving each request a way to abort its connection."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class DroppingH11Protocol(H11Protocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            app = self.app

            async def with_abort(scope: Scope, receive: Receive, send: Send) -> None:
                if scope.get("type") == "http":
                    extensions = dict(scope.get("extensions") or {})
                    extensions[ABORT_EXTENSION] = transport.abort
                    scope = {**scope, "extensions": extensions}
                await app(scope, receive, send)

            self.app = with_abort

    return DroppingH11Protocol


# -- control endpoints -----------------------------------------------------------------------

_Handler = Callable[["Environment", Request], Awaitable[tuple[int, Any]]]


def _endpoint(env: Environment, handler: _Handler) -> Callable[[Request], Awaitable[Any]]:
    async def endpoint(request: Request) -> JSONResponse:
        status, data = await handler(env, request)
        return JSONResponse(data, status_code=status)

    return endpoint


async def _health(env: Environment, request: Request) -> tuple[int, Any]:
    return 200, {"ok": True, "scenario": env.scenario.name, "seed": env.seed,
                 "now": env.clock.now(), "services": sorted(env.gateway.faces)}


async def _verdict(env: Environment, request: Request) -> tuple[int, Any]:
    try:
        return 200, verdict_data(judge(env))
    except TetherError as exc:
        # A check that cannot judge (a python invariant that raised): no verdict, the reason.
        return 500, {"error": {"type": "verdict_error", "message": str(exc)}}


async def _ledger(env: Environment, request: Request) -> tuple[int, Any]:
    ledger = env.world.ledger
    return 200, {"effects": [e.as_data() for e in ledger], "digest": ledger.digest()}


async def _webhooks(env: Environment, request: Request) -> tuple[int, Any]:
    hooks = env.webhooks
    return 200, {"events": hooks.events, "attempts": [a.as_data() for a in hooks.attempts],
                 "pending": hooks.pending()}


def _advancing(wire: _Wire) -> _Handler:
    async def advance(env: Environment, request: Request) -> tuple[int, Any]:
        status, data = await _advance(env, request)
        if status == 200:
            # Time passing is a delivery round too: failed webhooks are retried, as Stripe
            # retries on a schedule, even when the agent sends nothing more.
            env.webhooks.after_request()
            await wire.deliver()
        return status, data

    return advance


async def _advance(env: Environment, request: Request) -> tuple[int, Any]:
    try:
        data = await request.json()
    except (ValueError, RecursionError):  # not JSON, or nested deeper than the parser goes
        data = None
    seconds = data.get("seconds") if isinstance(data, dict) else None
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or \
            not math.isfinite(seconds) or not 0 <= seconds <= MAX_ADVANCE_S:
        return 400, {"error": {"type": "invalid_request", "param": "seconds", "message":
                               "expected a JSON body {\"seconds\": N} with 0 <= N <= "
                               f"{MAX_ADVANCE_S:g}, found {str(data)[:200]}"}}
    env.clock.advance(float(seconds))
    return 200, {"now": env.clock.now(), "advanced_s": float(seconds)}


async def _openapi(env: Environment, request: Request) -> tuple[int, Any]:
    from tether.sim.wire.openapi import openapi_document

    return 200, openapi_document(server_url=env.gateway.root)
