"""Stripe-style webhooks of the payments service: events, endpoints, signed delivery, faults.

After every request the gateway answers, each new effect of the payments service in the
world's ledger becomes one or more Stripe events (``evt_0001`` …, from a counter):

=================  =========================================================
``customer``       ``customer.created``
``charge``         ``charge.succeeded`` (``charge.failed``/``charge.pending`` by its status)
``refund``         ``refund.created``, then ``charge.refunded`` (the charge after the refund)
``payout``         ``payout.created``
=================  =========================================================

with Stripe's event object (``object: "event"``, ``type``, ``created`` — the effect's virtual
time —, ``data.object``, ``api_version``, ``livemode: false``, ``pending_webhooks``). They are
listed at ``GET /payments/v1/events`` and ``/v1/events/{id}``.

An agent registers an endpoint with ``POST /payments/v1/webhook_endpoints`` (``url``,
``enabled_events[]``; ``*`` for all) and receives its ``secret`` (``whsec_…``, drawn from the
world's seed, so a seed always hands out the same secrets). Each event is delivered as Stripe
delivers it: a ``POST`` of the event's JSON with ``Stripe-Signature: t=<unix>,v1=<hex
HMAC-SHA256(secret, "<t>.<body>")>``, which the official SDK verifies with
``stripe.Webhook.construct_event(body, header, secret)``. The timestamp ``t`` is the world's
*virtual* time (so deliveries are reproducible), which lies in the past of the real clock,
so the SDK's default ``tolerance`` (300 s against ``time.time()``) refuses it: verify with
``tolerance=0`` — the SDK skips the time check for a falsy tolerance and still checks the
signature (``construct_event(body, header, secret, tolerance=0)``).

Where deliveries go:

* **in-process** — to a receiver the agent registers for the endpoint's URL,
  ``env.webhooks.receive(url, handler)``: ``handler(body: bytes, headers: dict) -> int | None``
  (the HTTP status it answers; ``None`` is 200), or an ``httpx`` transport such as
  ``httpx.WSGITransport(app=flask_app)``. They run synchronously, in order, when the request
  that caused them completes (before its response reaches the client). A URL without a
  receiver cannot be reached in-process: the attempt fails as a refused connection would.
* **over loopback** (``tether sim serve``) — real HTTP ``POST`` s with ``httpx``, sent after the
  response of the request that caused them.

A delivery that gets no 2xx is retried on the next delivery round (after the next request;
served, also after ``POST /_tether/clock/advance``), up to ``max_attempts`` in all, then
recorded as failed. Every attempt is kept in
:attr:`Webhooks.attempts`. Faults on the target ``payments.webhook`` apply per event and
endpoint: ``duplicate_delivery`` delivers the same event (same ``id``) twice;
``out_of_order`` holds the event back and delivers it right after the next event for that
endpoint (:meth:`Webhooks.flush` releases what is still held).
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from tether.sim.faults import WEBHOOK_KINDS, WEBHOOK_TARGET
from tether.sim.services._ids import IdCounter
from tether.sim.services.errors import ServiceError
from tether.sim.wire.forms import FormError, decode_form, parse_pairs
from tether.sim.wire.gateway import Face, Gateway, Route
from tether.sim.wire.messages import WireRequest, WireResponse

if TYPE_CHECKING:
    from tether.sim.world import Effect

__all__ = ["API_VERSION", "DeliveryAttempt", "Webhooks", "sign"]

#: The API version events are rendered in unless an endpoint asks for another.
API_VERSION = "2026-10-28.endive"
#: The event types each payments effect produces, in order.
EVENT_TYPES: dict[str, tuple[str, ...]] = {
    "customer": ("customer.created",),
    "charge": ("charge.{status}",),
    "refund": ("refund.created", "charge.refunded"),
    "payout": ("payout.created",),
}
#: Every event type an endpoint may enable (``*`` enables them all).
KNOWN_EVENTS = ("customer.created", "charge.succeeded", "charge.failed", "charge.pending",
                "refund.created", "charge.refunded", "payout.created")
DEFAULT_MAX_ATTEMPTS = 3

#: A receiver in-process: ``handler(body, headers) -> status`` (``None`` is 200).
Handler = Callable[[bytes, dict[str, str]], "int | None"]


class _SyncTransport(Protocol):
    def handle_request(self, request: Any) -> Any: ...


def sign(payload: bytes, secret: str, timestamp: int) -> str:
    """The ``Stripe-Signature`` header of ``payload`` signed with ``secret`` at ``timestamp``.

    >>> sign(b"{}", "whsec_x", 1)  # doctest: +ELLIPSIS
    't=1,v1=...'
    """
    signed = f"{timestamp}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


@dataclass
class _Endpoint:
    id: str
    url: str
    secret: str
    enabled_events: list[str]
    created: int
    api_version: str | None = None
    description: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    disabled: bool = False
    #: Events held back by an ``out_of_order`` fault, released after the next one.
    held: list[dict[str, Any]] = field(default_factory=list)

    def wants(self, event_type: str) -> bool:
        return not self.disabled and ("*" in self.enabled_events or
                                      event_type in self.enabled_events)

    def as_data(self, *, with_secret: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id, "object": "webhook_endpoint", "url": self.url,
            "enabled_events": list(self.enabled_events), "created": self.created,
            "api_version": self.api_version, "description": self.description,
            "metadata": dict(self.metadata), "livemode": False, "application": None,
            "status": "disabled" if self.disabled else "enabled"}
        if with_secret:
            data["secret"] = self.secret
        return data


@dataclass
class _Delivery:
    event: dict[str, Any]
    endpoint: _Endpoint
    attempts: int = 0
    #: The round of the last attempt: a failed delivery waits for the next round.
    last_round: int = -1


@dataclass(frozen=True)
class DeliveryAttempt:
    """One attempt to deliver an event to an endpoint, and how it ended."""

    event: str
    type: str
    endpoint: str
    url: str
    attempt: int
    at: float
    status: int | None = None
    error: str = ""
    #: ``delivered`` (a 2xx), ``retrying`` (will be tried again) or ``failed`` (gave up).
    outcome: str = "delivered"

    def as_data(self) -> dict[str, Any]:
        return {"event": self.event, "type": self.type, "endpoint": self.endpoint,
                "url": self.url, "attempt": self.attempt, "at": self.at,
                "status": self.status, "error": self.error, "outcome": self.outcome}


class Webhooks:
    """The payments service's events and their delivery, for one gateway (see the module
    docstring). Built by :meth:`attach`; in-process it is ``env.webhooks``."""

    def __init__(self, gateway: Gateway, *, max_attempts: int = DEFAULT_MAX_ATTEMPTS) -> None:
        self.gateway = gateway
        self.world = gateway.env.world
        self.max_attempts = max_attempts
        self.events: list[dict[str, Any]] = []
        self.attempts: list[DeliveryAttempt] = []
        #: Whether deliveries to URLs without an in-process receiver go out over HTTP
        #: (:meth:`deliver_over_http`, called by the loopback server after each response).
        self.over_http = False
        self._endpoints: dict[str, _Endpoint] = {}
        self._receivers: dict[str, Handler | _SyncTransport] = {}
        self._queue: list[_Delivery] = []
        self._seen = 0  # ledger effects already turned into events
        self._round = 0
        self._busy = False
        self._event_ids = IdCounter("evt_")
        self._endpoint_ids = IdCounter("we_")
        self._secrets = self.world.rng("webhooks:secrets")

    @classmethod
    def attach(cls, gateway: Gateway, **options: Any) -> Webhooks:
        """Webhooks for ``gateway``: its payments face also answers ``/v1/webhook_endpoints``
        and ``/v1/events``, and events are made and delivered after every request."""
        hooks = cls(gateway, **options)
        face = gateway.faces.get("payments")
        if face is not None:
            gateway.mount(_WebhookRoutes(face, hooks))
        gateway.after(hooks.after_request)
        return hooks

    # -- the agent's side ----------------------------------------------------------------

    def receive(self, url: str, handler: Handler | _SyncTransport) -> None:
        """Deliver, in-process, what is sent to ``url`` to ``handler``: a function
        ``(body, headers) -> status`` or an ``httpx`` transport (``httpx.WSGITransport``)."""
        self._receivers[url] = handler

    def flush(self) -> None:
        """Deliver the events still held back by ``out_of_order`` (in-process receivers)."""
        for endpoint in self._endpoints.values():
            self._queue += [_Delivery(event, endpoint) for event in endpoint.held]
            endpoint.held.clear()
        self._deliver_in_process()

    def pending(self) -> int:
        """How many deliveries wait for a (next) attempt, held ones included."""
        return len(self._queue) + sum(len(e.held) for e in self._endpoints.values())

    # -- events --------------------------------------------------------------------------

    def after_request(self) -> None:
        """Turn new payments effects into events, queue them for each endpoint that wants
        them, and run a delivery round for in-process receivers."""
        self._round += 1
        self._catch_up()
        self._deliver_in_process()

    def _catch_up(self) -> None:
        effects = self.world.ledger.effects
        while self._seen < len(effects):
            effect = effects[self._seen]
            self._seen += 1
            if effect.service == "payments":
                for event in self._events_of(effect):
                    self.events.append(event)
                    self._enqueue(event)

    def _events_of(self, effect: Effect) -> list[dict[str, Any]]:
        made = []
        for pattern in EVENT_TYPES.get(effect.operation, ()):
            kind = "charge" if pattern.startswith("charge.") else effect.operation
            obj = self._object(kind, effect)
            if obj is None:
                continue
            event_type = pattern.format(status=obj.get("status", "succeeded"))
            wanted = sum(1 for e in self._endpoints.values() if e.wants(event_type))
            made.append({"id": self._event_ids.new(), "object": "event",
                         "api_version": API_VERSION, "created": int(effect.at),
                         "data": {"object": obj}, "livemode": False,
                         "pending_webhooks": wanted,
                         "request": {"id": None,
                                     "idempotency_key": effect.data.get("idempotency_key")},
                         "type": event_type})
        return made

    def _object(self, kind: str, effect: Effect) -> dict[str, Any] | None:
        """The object an event carries, as the API shows it now."""
        from tether.sim.environment import plain

        ident = effect.data.get(f"{kind}_id") or (
            effect.data.get("charge") if kind == "charge" else None) or \
            effect.key.partition(":")[2]
        getter = getattr(self.world.services.get("payments"), f"get_{kind}", None)
        if getter is None or not ident:
            return None
        try:
            found = plain(getter(ident))
        except ServiceError:
            return None
        if isinstance(found, dict):
            found.pop("idempotent_replayed", None)
            return found
        return None

    def _enqueue(self, event: dict[str, Any]) -> None:
        for endpoint in list(self._endpoints.values()):
            if not endpoint.wants(event["type"]):
                continue
            faults = {f.kind for f in self.gateway.env.layer.firing(WEBHOOK_TARGET,
                                                                    WEBHOOK_KINDS)}
            copies = 2 if "duplicate_delivery" in faults else 1
            if "out_of_order" in faults:
                endpoint.held += [event] * copies
                continue
            self._queue += [_Delivery(event, endpoint) for _ in range(copies)]
            # What an out_of_order fault held back goes right after the next event.
            self._queue += [_Delivery(held, endpoint) for held in endpoint.held]
            endpoint.held.clear()

    # -- delivery ------------------------------------------------------------------------

    def _due(self, network: bool) -> list[_Delivery]:
        return [d for d in self._queue if d.last_round < self._round and
                (d.endpoint.url not in self._receivers) == network]

    def _deliver_in_process(self) -> None:
        # A receiver that calls the world again re-enters here: its events join this round.
        if self._busy:
            return
        self._busy = True
        try:
            while True:
                due = [d for d in self._due(network=False)] + \
                    ([] if self.over_http else self._due(network=True))
                if not due:
                    return
                for delivery in due:
                    self._attempt(delivery, *self._call_receiver(delivery), self._round)
        finally:
            self._busy = False

    async def deliver_over_http(self, client: Any) -> None:
        """Deliver what waits for an HTTP endpoint with ``client`` (an ``httpx.AsyncClient``)."""
        # The round these attempts belong to, fixed before any await: a request answered
        # meanwhile opens the next round, in which a failed attempt is due again.
        current = self._round
        for delivery in self._due(network=True):
            body, headers = self._signed(delivery)
            try:
                answer = await client.post(delivery.endpoint.url, content=body,
                                           headers=headers)
            except Exception as exc:  # a refused connection, a timeout: the attempt failed
                self._attempt(delivery, None, f"{type(exc).__name__}: {exc}", current)
            else:
                self._attempt(delivery, answer.status_code, "", current)

    def _signed(self, delivery: _Delivery) -> tuple[bytes, dict[str, str]]:
        body = json.dumps(delivery.event, indent=2, sort_keys=True).encode()
        signature = sign(body, delivery.endpoint.secret, int(self.world.now()))
        return body, {"content-type": "application/json; charset=utf-8",
                      "stripe-signature": signature, "user-agent": "Stripe/1.0 (+tether sim)"}

    def _call_receiver(self, delivery: _Delivery) -> tuple[int | None, str]:
        receiver = self._receivers.get(delivery.endpoint.url)
        if receiver is None:
            return None, (f"ConnectError: nothing receives {delivery.endpoint.url} in-process; "
                          "register a receiver with env.webhooks.receive(url, handler), or "
                          "serve the world with tether sim serve")
        body, headers = self._signed(delivery)
        try:
            if hasattr(receiver, "handle_request"):
                import httpx

                request = httpx.Request("POST", delivery.endpoint.url, content=body,
                                        headers=headers)
                response = receiver.handle_request(request)
                response.read()
                return int(response.status_code), ""
            status = receiver(body, dict(headers))
        except Exception as exc:  # the receiver's own failure: a 500, as a server answers
            return 500, f"{type(exc).__name__}: {exc}"
        return (200 if status is None else int(status)), ""

    def _attempt(self, delivery: _Delivery, status: int | None, error: str,
                 round_: int) -> None:
        delivery.attempts += 1
        delivery.last_round = round_
        ok = status is not None and 200 <= status < 300
        outcome = "delivered" if ok else \
            ("failed" if delivery.attempts >= self.max_attempts else "retrying")
        if outcome != "retrying" and delivery in self._queue:
            self._queue.remove(delivery)
        self.attempts.append(DeliveryAttempt(
            delivery.event["id"], delivery.event["type"], delivery.endpoint.id,
            delivery.endpoint.url, delivery.attempts, self.world.now(), status,
            error or ("" if ok else f"HTTP {status}"), outcome))

    # -- the API -------------------------------------------------------------------------

    def answer(self, request: WireRequest) -> WireResponse | None:
        """The answer to a webhook-endpoint or event request, or ``None`` for other paths."""
        parts = [p for p in request.path.split("/") if p]
        if len(parts) < 2 or parts[0] != "v1" or parts[1] not in ("webhook_endpoints",
                                                                   "events"):
            return None
        self._catch_up()
        ident = parts[2] if len(parts) == 3 else None
        if len(parts) > 3:
            return _error(404, f"Unrecognized request URL ({request.method}: {request.path}).")
        if parts[1] == "events":
            return self._events_api(request, ident)
        return self._endpoints_api(request, ident)

    def _events_api(self, request: WireRequest, ident: str | None) -> WireResponse:
        if request.method != "GET":
            return _error(405, f"Unrecognized request URL ({request.method}: {request.path}).")
        if ident is not None:
            found = next((e for e in self.events if e["id"] == ident), None)
            if found is None:
                return _missing("event", ident)
            return WireResponse.of_json(200, found)
        wanted = request.param("type") or "*"  # Stripe takes a wildcard: type=charge.*
        chosen = [e for e in reversed(self.events) if fnmatch.fnmatchcase(e["type"], wanted)]
        return _page(chosen, request, "/v1/events")

    def _endpoints_api(self, request: WireRequest, ident: str | None) -> WireResponse:
        if ident is None and request.method == "GET":
            return _page([e.as_data() for e in reversed(self._endpoints.values())], request,
                         "/v1/webhook_endpoints")
        if ident is None and request.method == "POST":
            return self._create(request)
        endpoint = self._endpoints.get(ident or "")
        if endpoint is None or ident is None:
            return _missing("webhook endpoint", ident or "")
        if request.method == "GET":
            return WireResponse.of_json(200, endpoint.as_data())
        if request.method == "DELETE":
            del self._endpoints[endpoint.id]
            self._queue = [d for d in self._queue if d.endpoint is not endpoint]
            return WireResponse.of_json(200, {"id": endpoint.id, "object": "webhook_endpoint",
                                              "deleted": True})
        if request.method == "POST":
            return self._update(request, endpoint)
        return _error(405, f"Unrecognized request URL ({request.method}: {request.path}).")

    def _create(self, request: WireRequest) -> WireResponse:
        params = _params(request)
        if isinstance(params, WireResponse):
            return params
        url, problem = _url(params.get("url"))
        if problem:
            return _error(400, problem, param="url", code="url_invalid")
        events, problem = _enabled(params.get("enabled_events"), required=True)
        if problem:
            return _error(400, problem, param="enabled_events")
        secret = "whsec_" + f"{self._secrets.getrandbits(192):048x}"
        endpoint = _Endpoint(self._endpoint_ids.new(), url, secret, events,
                             int(self.world.now()), _text(params.get("api_version")),
                             _text(params.get("description")), _strings(params.get("metadata")))
        self._endpoints[endpoint.id] = endpoint
        return WireResponse.of_json(200, endpoint.as_data(with_secret=True))

    def _update(self, request: WireRequest, endpoint: _Endpoint) -> WireResponse:
        params = _params(request)
        if isinstance(params, WireResponse):
            return params
        if "url" in params:
            url, problem = _url(params["url"])
            if problem:
                return _error(400, problem, param="url", code="url_invalid")
            endpoint.url = url
        if "enabled_events" in params:
            events, problem = _enabled(params["enabled_events"], required=True)
            if problem:
                return _error(400, problem, param="enabled_events")
            endpoint.enabled_events = events
        if "disabled" in params:
            endpoint.disabled = str(params["disabled"]).lower() == "true"
        if "description" in params:
            endpoint.description = _text(params["description"])
        return WireResponse.of_json(200, endpoint.as_data())


class _WebhookRoutes:
    """The payments face, also answering the webhook endpoints and events API."""

    def __init__(self, inner: Face, hooks: Webhooks) -> None:
        self.inner, self.hooks = inner, hooks
        self.service = inner.service

    def route(self, request: WireRequest, gateway: Gateway) -> Route | WireResponse:
        routed = self.inner.route(request, gateway)
        if request.path.startswith(("/v1/webhook_endpoints", "/v1/events")):
            # The face checks the API key before the path: its 401 stands, as Stripe's would.
            if isinstance(routed, WireResponse) and routed.status == 401:
                return routed
            answered = self.hooks.answer(request)
            if answered is not None:
                return answered
        return routed

    def success(self, route: Route, result: Any) -> WireResponse:
        return self.inner.success(route, result)

    def failure(self, route: Route, error: ServiceError) -> WireResponse:
        return self.inner.failure(route, error)

    def injected(self, route: Route, status: int, retry_after_s: float | None) -> WireResponse:
        return self.inner.injected(route, status, retry_after_s)

    def expired(self, route: Route) -> WireResponse:
        return self.inner.expired(route)


def _params(request: WireRequest) -> dict[str, Any] | WireResponse:
    try:
        if (request.header("content-type") or "").startswith("application/json"):
            data = request.json()
            return data if isinstance(data, dict) else {}
        return decode_form(parse_pairs(request.body))
    except (FormError, ValueError) as exc:
        return _error(400, str(exc))


def _url(value: Any) -> tuple[str, str]:
    if not isinstance(value, str) or not value:
        return "", "Missing required param: url."
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return "", f"Invalid URL: {value!r}. URLs must begin with http:// or https://."
    return value, ""


def _enabled(value: Any, *, required: bool) -> tuple[list[str], str]:
    if isinstance(value, str):
        value = [value]
    if isinstance(value, dict):
        value = list(value.values())
    if not value:
        return [], "Missing required param: enabled_events." if required else ""
    unknown = [v for v in value if v != "*" and v not in KNOWN_EVENTS]
    if unknown:
        return [], (f"Invalid enabled_events: {', '.join(map(str, unknown))}; this simulation "
                    f"sends {', '.join(KNOWN_EVENTS)} (or * for all).")
    return [str(v) for v in value], ""


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _strings(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, Mapping) else {}


def _page(items: list[dict[str, Any]], request: WireRequest, url: str) -> WireResponse:
    try:
        limit = int(request.param("limit") or 10)
    except ValueError:
        return _error(400, "Invalid integer: limit", param="limit")
    if not 1 <= limit <= 100:
        return _error(400, "Limit must be between 1 and 100.", param="limit")
    after, before = request.param("starting_after"), request.param("ending_before")
    ids = [i["id"] for i in items]
    for cursor, name in ((after, "starting_after"), (before, "ending_before")):
        if cursor is not None and cursor not in ids:
            return _error(400, f"No such object: {cursor!r}", param=name,
                          code="resource_missing")
    if after is not None:
        items = items[ids.index(after) + 1:]
        page, more = items[:limit], len(items) > limit
    elif before is not None:
        items = items[:ids.index(before)]
        page, more = items[-limit:], len(items) > limit
    else:
        page, more = items[:limit], len(items) > limit
    return WireResponse.of_json(200, {"object": "list", "data": page, "has_more": more,
                                      "url": url})


def _missing(what: str, ident: str) -> WireResponse:
    return _error(404, f"No such {what}: {ident!r}", param="id", code="resource_missing")


def _error(status: int, message: str, *, param: str | None = None, code: str | None = None,
           kind: str = "invalid_request_error") -> WireResponse:
    error: dict[str, Any] = {"type": kind, "message": message}
    if param is not None:
        error["param"] = param
    if code is not None:
        error["code"] = code
    return WireResponse.of_json(status, {"error": error})
