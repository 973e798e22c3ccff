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
time —, ``data.object`` — the object as the API answers it (:func:`.stripe_object`) —,
``api_version``, ``livemode: false``, ``pending_webhooks``,
``request.idempotency_key`` — the key as the ledger records it: a UUID-shaped one, such as
the SDK's random keys, under its stable name ``uuid_0001`` …, so that the same seed and
requests deliver the same bytes and an agent's tool that reads events journals the same
result in every run). They are listed at ``GET /payments/v1/events`` and ``/v1/events/{id}``.

An agent registers an endpoint with ``POST /payments/v1/webhook_endpoints`` (``url``,
``enabled_events[]``; ``*`` for all; the API is :mod:`~tether.sim.wire.webhook_api`) and
receives its ``secret`` (``whsec_…``, drawn from the
world's seed, so a seed always hands out the same secrets). Each event is delivered as Stripe
delivers it: a ``POST`` of the event's JSON with ``Stripe-Signature: t=<unix>,v1=<hex
HMAC-SHA256(secret, "<t>.<body>")>``, which the official SDK verifies with
``stripe.Webhook.construct_event(body, header, secret)``. The SDKs check the timestamp ``t``
against the receiver's real clock (stripe-python refuses one older than its ``tolerance``,
300 s by default), so what ``t`` is depends on where the receiver runs:

* over loopback the receiver is another process living in real time, so ``t`` is the real
  time of the attempt and ``construct_event`` with its defaults accepts it, in any language;
* in-process ``t`` is the world's *virtual* time, so deliveries are reproducible; it lies in
  the past of the real clock, so the default tolerance refuses it: verify with
  ``tolerance=0`` — the SDK then skips the time check and still checks the signature
  (``construct_event(body, header, secret, tolerance=0)``) — or, to keep a handler that
  verifies with the defaults unchanged, stamp in-process deliveries with the real time too:
  ``env.webhooks.signing_clock = tether.SystemClock()`` (:attr:`Webhooks.signing_clock`; only
  the signature header then changes from run to run).

Either way the attempts are recorded at the virtual time.

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

import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from tether.clock import Clock, SystemClock
from tether.sim.faults import WEBHOOK_KINDS, WEBHOOK_TARGET
from tether.sim.jsonable import plain
from tether.sim.services._ids import IdCounter
from tether.sim.services.errors import ServiceError
from tether.sim.wire.gateway import Gateway
from tether.sim.wire.stripe_face import stripe_object
from tether.sim.wire.webhook_api import WebhookRoutes

if TYPE_CHECKING:
    from tether.sim.world import WorldEffect

__all__ = ["API_VERSION", "DeliveryAttempt", "WebhookEndpoint", "Webhooks", "sign"]

#: The API version every event names (the simulated objects have one shape, whatever version
#: an endpoint asks for).
API_VERSION = "2026-10-28.endive"
#: The event types each payments effect produces, in order.
EVENT_TYPES: dict[str, tuple[str, ...]] = {
    "customer": ("customer.created",),
    "charge": ("charge.{status}",),
    "refund": ("refund.created", "charge.refunded"),
    "payout": ("payout.created",),
}
DEFAULT_MAX_ATTEMPTS = 3
#: What stamps the signatures of deliveries over HTTP unless told otherwise.
_REAL_TIME = SystemClock()

#: A receiver in-process: ``handler(body, headers) -> status`` (``None`` is 200).
WebhookHandler = Callable[[bytes, dict[str, str]], "int | None"]


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
class WebhookEndpoint:
    """An endpoint an agent registered: where events go, which ones, signed with what."""

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
    endpoint: WebhookEndpoint
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
        self._endpoints: dict[str, WebhookEndpoint] = {}
        self._receivers: dict[str, WebhookHandler | _SyncTransport] = {}
        self._queue: list[_Delivery] = []
        self._seen = 0  # ledger effects already turned into events
        self._round = 0
        self._busy = False
        self._event_ids = IdCounter("evt_")
        self._endpoint_ids = IdCounter("we_")
        self._secrets = self.world.rng("webhooks:secrets")
        #: The clock that stamps the signatures; ``None``: the world's virtual time in-process
        #: (reproducible), the real time over HTTP (the receiver, in another process, checks
        #: the stamp against its own real clock).
        self.signing_clock: Clock | None = None

    @classmethod
    def attach(cls, gateway: Gateway, **options: Any) -> Webhooks:
        """Webhooks for ``gateway``: its payments face also answers ``/v1/webhook_endpoints``
        and ``/v1/events``, and events are made and delivered after every request."""
        hooks = cls(gateway, **options)
        face = gateway.faces.get("payments")
        if face is not None:
            gateway.mount(WebhookRoutes(face, hooks))
        gateway.after(hooks.after_request)
        return hooks

    # -- the agent's side ----------------------------------------------------------------

    def receive(self, url: str, handler: WebhookHandler | _SyncTransport) -> None:
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

    def shown(self, event: dict[str, Any]) -> dict[str, Any]:
        """``event`` as the API shows it now: ``pending_webhooks`` counts the endpoints still
        waiting for it (queued, retrying or held back), as Stripe's count goes down."""
        ident = event["id"]
        waiting = {d.endpoint.id for d in self._queue if d.event["id"] == ident}
        waiting |= {e.id for e in self._endpoints.values()
                    if any(held["id"] == ident for held in e.held)}
        return {**event, "pending_webhooks": len(waiting)}

    # -- endpoints (the API is :mod:`~tether.sim.wire.webhook_api`) -------------------------

    def endpoints(self) -> list[WebhookEndpoint]:
        """The registered endpoints, oldest first."""
        return list(self._endpoints.values())

    def endpoint(self, ident: str) -> WebhookEndpoint | None:
        return self._endpoints.get(ident)

    def register(self, url: str, enabled_events: list[str], *, api_version: str | None = None,
                 description: str | None = None,
                 metadata: Mapping[str, str] | None = None) -> WebhookEndpoint:
        """A new endpoint (``we_0001`` …) with a secret drawn from the world's seed."""
        secret = "whsec_" + f"{self._secrets.getrandbits(192):048x}"
        endpoint = WebhookEndpoint(self._endpoint_ids.new(), url, secret, enabled_events,
                                   int(self.world.now()), api_version, description,
                                   dict(metadata or {}))
        self._endpoints[endpoint.id] = endpoint
        return endpoint

    def remove(self, ident: str) -> bool:
        """Delete an endpoint and whatever still waited to be delivered to it."""
        endpoint = self._endpoints.pop(ident, None)
        if endpoint is None:
            return False
        self._queue = [d for d in self._queue if d.endpoint is not endpoint]
        return True

    # -- events --------------------------------------------------------------------------

    def after_request(self) -> None:
        """Turn new payments effects into events, queue them for each endpoint that wants
        them, and run a delivery round for in-process receivers."""
        self._round += 1
        self.catch_up()
        self._deliver_in_process()

    def catch_up(self) -> None:
        """Turn the payments effects not seen yet into events (and queue them)."""
        effects = self.world.ledger.effects
        while self._seen < len(effects):
            effect = effects[self._seen]
            self._seen += 1
            if effect.service == "payments":
                for event in self._events_of(effect):
                    self.events.append(event)
                    self._enqueue(event)

    def _events_of(self, effect: WorldEffect) -> list[dict[str, Any]]:
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

    def _object(self, kind: str, effect: WorldEffect) -> dict[str, Any] | None:
        """The object an event carries, as the API shows it now."""
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
        # The object as the Stripe face answers it, so an event and a retrieve agree.
        return stripe_object(found) if isinstance(found, dict) else None

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
            body, headers = self._signed(delivery, (self.signing_clock or _REAL_TIME).now())
            try:
                answer = await client.post(delivery.endpoint.url, content=body,
                                           headers=headers)
            except Exception as exc:  # a refused connection, a timeout: the attempt failed
                self._attempt(delivery, None, f"{type(exc).__name__}: {exc}", current)
            else:
                self._attempt(delivery, answer.status_code, "", current)

    def _signed(self, delivery: _Delivery, at: float) -> tuple[bytes, dict[str, str]]:
        body = json.dumps(self.shown(delivery.event), indent=2, sort_keys=True).encode()
        signature = sign(body, delivery.endpoint.secret, int(at))
        return body, {"content-type": "application/json; charset=utf-8",
                      "stripe-signature": signature, "user-agent": "Stripe/1.0 (+tether sim)"}

    def _call_receiver(self, delivery: _Delivery) -> tuple[int | None, str]:
        receiver = self._receivers.get(delivery.endpoint.url)
        if receiver is None:
            return None, (f"ConnectError: nothing receives {delivery.endpoint.url} in-process; "
                          "register a receiver with env.webhooks.receive(url, handler), or "
                          "serve the world with tether sim serve")
        body, headers = self._signed(delivery, (self.signing_clock or self.world).now())
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
