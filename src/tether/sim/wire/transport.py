"""In-process ``httpx`` transports: an agent's own HTTP client reaches the simulated world
without a socket, on the world's virtual clock, so its episodes stay byte-for-byte
reproducible.

>>> from tether.sim.episode import environment_for          # doctest: +SKIP
>>> env = environment_for(scenario, seed=7)                  # doctest: +SKIP
>>> with httpx.Client(transport=env.http_transport()) as http:   # doctest: +SKIP
...     http.get(env.base_url("payments") + "/v1/charges/ch_1",
...              headers={"Authorization": "Bearer sk_test_x"})

A request whose connection the wire drops raises what ``httpx`` raises on a real network:
:class:`httpx.ReadTimeout` when the server applied it first (the response was lost) or when a
latency fault outlasts the client's read timeout (``httpx.Timeout``; the client gives up after
that long on the virtual clock), and :class:`httpx.ConnectTimeout` when it never arrived. The
host of the URL is not looked at: every request goes to the world, routed by its first path
segment (the service).
"""

from __future__ import annotations

from typing import Any

from tether.errors import UsageError
from tether.sim.wire.gateway import Gateway
from tether.sim.wire.messages import ConnectionDropped, WireRequest, WireResponse

try:
    import httpx
except ImportError as exc:  # pragma: no cover - httpx ships with the test and serve extras
    raise UsageError("the simulated world's in-process HTTP transport needs httpx: "
                     "pip install httpx (or pip install 'tether[serve]')") from exc

__all__ = ["InProcessTransport", "httpx_client"]


class InProcessTransport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """Carries ``httpx`` requests to a :class:`Gateway` (sync clients: latency advances the
    virtual clock; async clients: requests wait on it, and interleave)."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        wire = _wire(request, request.read())
        try:
            answer = self.gateway.handle(wire, timeout_s=_read_timeout(request))
        except ConnectionDropped as exc:
            raise _dropped(exc, request) from None
        return _response(answer, request)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        wire = _wire(request, await request.aread())
        try:
            answer = await self.gateway.handle_async(wire, timeout_s=_read_timeout(request))
        except ConnectionDropped as exc:
            raise _dropped(exc, request) from None
        return _response(answer, request)


def httpx_client(gateway: Gateway, *, asynchronous: bool, **options: Any) -> Any:
    """An ``httpx`` client on the in-process transport, its ``base_url`` the world's root."""
    options.setdefault("base_url", gateway.root)
    transport = InProcessTransport(gateway)
    if asynchronous:
        return httpx.AsyncClient(transport=transport, **options)
    return httpx.Client(transport=transport, **options)


def _wire(request: httpx.Request, body: bytes) -> WireRequest:
    target = request.url.raw_path.decode("ascii", "replace")
    return WireRequest.of(request.method, target, dict(request.headers.items()), body)


def _read_timeout(request: httpx.Request) -> float | None:
    """The client's read timeout for ``request`` (httpx puts it in the extensions)."""
    timeout = request.extensions.get("timeout") or {}
    value = timeout.get("read")
    return float(value) if value is not None else None


def _response(answer: WireResponse, request: httpx.Request) -> httpx.Response:
    return httpx.Response(answer.status, headers=answer.headers, content=answer.body,
                          request=request)


def _dropped(exc: ConnectionDropped, request: httpx.Request) -> httpx.TransportError:
    if exc.read_timeout:
        return httpx.ReadTimeout(f"no response in time: {exc}", request=request)
    if exc.delivered:
        return httpx.ReadTimeout(f"the connection dropped after the request was sent: {exc}",
                                 request=request)
    return httpx.ConnectTimeout(f"the request never reached the server: {exc}",
                                request=request)
