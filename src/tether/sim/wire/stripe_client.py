"""The official ``stripe`` SDK reaching the simulated world in-process, on its virtual clock.

``stripe.HTTPClient`` is the SDK's documented extension point for its transport.
:class:`StripeInProcess` implements it on the world's :class:`~tether.sim.wire.gateway.Gateway`,
so an agent's own Stripe code runs unchanged inside an episode::

    client = stripe.StripeClient("sk_test_tether", http_client=env.stripe_http_client(),
                                 base_addresses={"api": env.base_url("payments")})
    client.v1.refunds.create({"charge": "ch_0001"})

(Without ``base_addresses`` the SDK's requests go to ``https://api.stripe.com``; this client
reaches only the simulated world, so it sends those to the payments service too.)

What differs from a network client is only what would break determinism:

* a dropped connection (a ``timeout_before`` / ``timeout_after`` fault) is the SDK's own
  ``APIConnectionError(should_retry=True)``, exactly as its ``requests`` or ``httpx`` clients
  report a read timeout — the SDK cannot know whether the server applied the request;
* the SDK's retry backoff (``max_network_retries``) is its own schedule — 0.5 s doubling up to
  5 s — without the random jitter, and it passes on the world's clock: the synchronous retry
  loop (which calls ``time.sleep`` in the SDK) is re-implemented here with the SDK's own
  ``_should_retry`` decision, and the asynchronous one sleeps through ``sleep_async``;
* the read timeout is the SDK clients' own default, 80 s (``timeout_s``), counted on the
  world's clock: a latency fault longer than that is the same ``APIConnectionError`` after
  80 virtual seconds, never a call that blocks the episode for as long as the fault says;
* no request metrics are kept, because they measure wall time and the SDK would send them
  in the next request's telemetry header.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from tether.errors import UsageError
from tether.sim.wire.messages import ConnectionDropped, WireRequest

try:
    import stripe
except ImportError as exc:  # pragma: no cover - stripe ships with the test extras
    raise UsageError("the in-process Stripe client needs the stripe SDK: "
                     "pip install stripe") from exc

if TYPE_CHECKING:
    from tether.sim.wire.gateway import Gateway

__all__ = ["StripeInProcess"]

#: The service behind Stripe's own hosts.
PAYMENTS = "payments"

_Response = tuple[bytes, int, Mapping[str, str]]
_TextResponse = tuple[str, int, Mapping[str, str]]


class StripeInProcess(stripe.HTTPClient):
    """A ``stripe.HTTPClient`` that sends every request to ``gateway`` (see the module
    docstring); pass it as ``StripeClient(..., http_client=...)``."""

    name = "tether-sim"

    def __init__(self, gateway: Gateway, *, timeout_s: float | None = 80.0) -> None:
        super().__init__()
        self.gateway = gateway
        #: The read timeout, as the SDK's own clients have (80 s by default): a response
        #: delayed longer is given up after that long of virtual time.
        self.timeout_s = timeout_s

    # -- one request ---------------------------------------------------------------------

    def request(self, method: str, url: str, headers: Mapping[str, str] | None,
                post_data: Any = None, *, _usage: list[str] | None = None) -> _TextResponse:
        """Send one request through the gateway (latency advances the virtual clock)."""
        try:
            answer = self.gateway.handle(_wire(method, url, headers, post_data),
                                         timeout_s=self.timeout_s)
        except ConnectionDropped as exc:
            raise _connection_error(exc) from exc
        return answer.body.decode("utf-8"), answer.status, _Headers(answer.headers)

    async def request_async(self, method: str, url: str, headers: Mapping[str, str],
                            post_data: Any = None) -> _Response:
        """Send one request through the gateway, waiting on the virtual clock."""
        try:
            answer = await self.gateway.handle_async(_wire(method, url, headers, post_data),
                                                     timeout_s=self.timeout_s)
        except ConnectionDropped as exc:
            raise _connection_error(exc) from exc
        return answer.body, answer.status, _Headers(answer.headers)

    def request_stream(self, method: str, url: str, headers: Mapping[str, str] | None,
                       post_data: Any = None, *, _usage: list[str] | None = None,
                       ) -> tuple[Iterator[bytes], int, Mapping[str, str]]:
        """:meth:`request`, its body as an iterator of one chunk."""
        body, status, answer_headers = self.request(method, url, headers, post_data)
        return iter([body.encode("utf-8")]), status, answer_headers

    async def request_stream_async(self, method: str, url: str, headers: Mapping[str, str],
                                   post_data: Any = None,
                                   ) -> tuple[AsyncIterator[bytes], int, Mapping[str, str]]:
        """:meth:`request_async`, its body as an async iterator of one chunk."""
        body, status, answer_headers = await self.request_async(method, url, headers,
                                                                post_data)

        async def chunks() -> AsyncIterator[bytes]:
            yield body

        return chunks(), status, answer_headers

    def close(self) -> None:
        """Nothing to close: no connection is held."""

    async def close_async(self) -> None:
        """Nothing to close: no connection is held."""

    # -- retries on the virtual clock ----------------------------------------------------

    def request_with_retries(self, method: str, url: str, headers: Mapping[str, str],
                             post_data: Any = None, max_network_retries: int | None = None,
                             *, _usage: list[str] | None = None) -> _TextResponse:
        """The SDK's retry loop, its backoff passing on the world's clock."""
        response: _TextResponse = self._with_retries(False, method, url, headers, post_data,
                                                     max_network_retries)
        return response

    def request_stream_with_retries(self, method: str, url: str, headers: Mapping[str, str],
                                    post_data: Any = None,
                                    max_network_retries: int | None = None, *,
                                    _usage: list[str] | None = None) -> Any:
        """:meth:`request_with_retries` for a streamed response."""
        return self._with_retries(True, method, url, headers, post_data, max_network_retries)

    def _with_retries(self, stream: bool, method: str, url: str, headers: Mapping[str, str],
                      post_data: Any, max_network_retries: int | None) -> Any:
        retries = 0
        while True:
            response: Any = None
            error: stripe.APIConnectionError | None = None
            try:
                send = self.request_stream if stream else self.request
                response = send(method, url, headers, post_data)
            except stripe.APIConnectionError as exc:
                error = exc
            if not self._should_retry(response, error, retries, max_network_retries):
                if error is not None:
                    raise error
                return response
            retries += 1
            self.gateway.env.clock.advance(self._sleep_time_seconds(retries))

    def _sleep_time_seconds(self, num_retries: int) -> float:
        """The SDK's backoff (0.5 s doubling, at most 5 s) without its random jitter."""
        delay_s: float = min(self.INITIAL_DELAY * 2 ** (num_retries - 1), self.MAX_DELAY)
        return max(float(self.INITIAL_DELAY), delay_s)

    async def sleep_async(self, secs: float) -> None:
        """A retry's backoff on the world's clock."""
        await self.gateway.env.clock.sleep(secs)


class _Headers(Mapping[str, str]):
    """Response headers, looked up without regard to case (the SDK reads
    ``stripe-should-retry`` and ``Request-Id``)."""

    def __init__(self, headers: Mapping[str, str]) -> None:
        self._headers = {k.lower(): (k, v) for k, v in headers.items()}

    def __getitem__(self, name: str) -> str:
        return self._headers[name.lower()][1]

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self._headers.values())

    def __len__(self) -> int:
        return len(self._headers)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._headers


def _wire(method: str, url: str, headers: Mapping[str, str] | None,
          post_data: Any) -> WireRequest:
    parts = urlsplit(url)
    path = parts.path
    if parts.hostname is not None and (parts.hostname == "stripe.com"
                                       or parts.hostname.endswith(".stripe.com")):
        # The SDK's default address (api.stripe.com): this client reaches only the simulated
        # world, so Stripe's own host means its payments service.
        path = f"/{PAYMENTS}{path}"
    target = path + (f"?{parts.query}" if parts.query else "")
    if post_data is None:
        body = b""
    elif isinstance(post_data, bytes):
        body = post_data
    else:
        body = str(post_data).encode("utf-8")
    return WireRequest.of(method, target, dict(headers or {}), body)


def _connection_error(exc: ConnectionDropped) -> stripe.APIConnectionError:
    where = ("after the request was sent: the server may have applied it" if exc.delivered
             else "while waiting for the response: the server may have applied it"
             if exc.read_timeout else "before the request reached the server")
    return stripe.APIConnectionError(  # type: ignore[no-untyped-call]
        f"Unexpected error communicating with Stripe: the connection dropped {where}. "
        f"(Network error: {exc})", should_retry=True)
