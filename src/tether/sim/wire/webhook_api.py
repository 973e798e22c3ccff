"""The webhook endpoints and events API of the payments face, on Stripe's.

``POST /v1/webhook_endpoints`` (``url``, ``enabled_events[]``, optional ``api_version``,
``description``, ``metadata``) answers the endpoint with its ``secret``; ``GET`` lists and
retrieves endpoints (never showing the secret again), ``POST /v1/webhook_endpoints/{id}``
updates one (``url``, ``enabled_events``, ``disabled``, ``description``), ``DELETE`` removes it.
``GET /v1/events`` lists events newest first (``limit``, ``starting_after``, ``ending_before``,
``type`` with Stripe's wildcard ``charge.*``, ``types[]``, ``created`` with ``gt``/``gte``/``lt``/
``lte``; any other filter is a 400 ``parameter_unknown``) and ``GET /v1/events/{id}`` retrieves
one. Errors
are Stripe's JSON (``invalid_request_error`` with ``param``; ``resource_missing`` 404); the API
key is checked by the payments face itself, so a request without one is its 401.

:class:`WebhookRoutes` wraps the payments face to answer these paths; the events and their
delivery are :class:`~tether.sim.wire.webhooks.Webhooks`.
"""

from __future__ import annotations

import fnmatch
import operator
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from tether.sim.services.errors import ServiceError
from tether.sim.wire.forms import FormError, decode_form, parse_pairs
from tether.sim.wire.gateway import Face, Gateway, Route
from tether.sim.wire.messages import WireRequest, WireResponse

if TYPE_CHECKING:
    from tether.sim.wire.webhooks import WebhookEndpoint, Webhooks

__all__ = ["KNOWN_EVENTS", "WebhookRoutes", "answer"]

#: The parameters creating and updating a webhook endpoint take.
_CREATE_PARAMS = ("url", "enabled_events", "api_version", "description", "metadata")
_UPDATE_PARAMS = ("url", "enabled_events", "disabled", "description", "metadata")
#: The parameters ``GET /v1/events`` takes.
_EVENT_PARAMS = ("limit", "starting_after", "ending_before", "type", "types", "created")
#: The comparisons of a ``created`` filter.
_RANGE: dict[str, Callable[[int, int], bool]] = {
    "eq": operator.eq, "gt": operator.gt, "gte": operator.ge, "lt": operator.lt,
    "lte": operator.le}

#: Every event type an endpoint may enable (``*`` enables them all): what the world sends.
KNOWN_EVENTS = ("customer.created", "charge.succeeded", "charge.failed", "charge.pending",
                "refund.created", "charge.refunded", "payout.created")


class WebhookRoutes:
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
            answered = answer(self.hooks, request)
            if answered is not None:
                # The face's own headers (Request-Id, Stripe-Version), as on its answers.
                carried = routed.headers if isinstance(routed, WireResponse) else {}
                kept = {k: v for k, v in carried.items()
                        if k.lower() in ("request-id", "stripe-version")}
                return WireResponse(answered.status, {**answered.headers, **kept},
                                    answered.body)
        return routed

    def success(self, route: Route, result: Any) -> WireResponse:
        return self.inner.success(route, result)

    def failure(self, route: Route, error: ServiceError) -> WireResponse:
        return self.inner.failure(route, error)

    def injected(self, route: Route, status: int, retry_after_s: float | None) -> WireResponse:
        return self.inner.injected(route, status, retry_after_s)

    def expired(self, route: Route) -> WireResponse:
        return self.inner.expired(route)


def answer(hooks: Webhooks, request: WireRequest) -> WireResponse | None:
    """The answer to a webhook-endpoint or event request, or ``None`` for other paths."""
    parts = [p for p in request.path.split("/") if p]
    if len(parts) < 2 or parts[0] != "v1" or parts[1] not in ("webhook_endpoints", "events"):
        return None
    hooks.catch_up()
    if len(parts) > 3:
        return _unrecognized(request)
    ident = parts[2] if len(parts) == 3 else None
    if parts[1] == "events":
        return _events(hooks, request, ident)
    return _endpoints(hooks, request, ident)


def _events(hooks: Webhooks, request: WireRequest, ident: str | None) -> WireResponse:
    if request.method != "GET":
        return _unrecognized(request)
    if ident is not None:
        found = next((e for e in hooks.events if e["id"] == ident), None)
        if found is None:
            return _missing("event", ident)
        return WireResponse.of_json(200, hooks.shown(found))
    wanted = _event_filter(request)
    if isinstance(wanted, WireResponse):
        return wanted
    chosen = [hooks.shown(e) for e in reversed(hooks.events) if wanted(e)]
    return _page(chosen, request, "/v1/events")


def _event_filter(request: WireRequest) -> Callable[[dict[str, Any]], bool] | WireResponse:
    """Which events ``GET /v1/events`` asks for: ``type`` (Stripe's wildcard ``charge.*``),
    ``types[]`` (exact names), ``created`` (a time, or ``gt``/``gte``/``lt``/``lte``). Any other
    filter is refused: ignoring it would answer with events the caller excluded."""
    try:
        params = decode_form(request.query)
    except FormError as exc:
        return _error(400, str(exc), param=exc.key.split("[")[0] or None)
    unknown = [name for name in params if name not in _EVENT_PARAMS]
    if unknown:
        return _error(400, f"Received unknown parameter: {unknown[0]}", param=unknown[0],
                      code="parameter_unknown")
    if "type" in params and "types" in params:
        return _error(400, "You may only specify one of these parameters: type, types.",
                      param="types")
    pattern = params.get("type", "*")
    types = params.get("types")
    types = list(types.values()) if isinstance(types, dict) else \
        [types] if isinstance(types, str) else types
    if not isinstance(pattern, str) or (types is not None and not all(
            isinstance(t, str) for t in types)):
        param = "type" if not isinstance(pattern, str) else "types"
        return _error(400, f"Invalid {param}: expected event type names.", param=param)
    bounds = _created_bounds(params.get("created"))
    if bounds is None:
        return _error(400, "Invalid created: expected a Unix time or created[gt|gte|lt|lte].",
                      param="created")

    def wanted(event: dict[str, Any]) -> bool:
        kind, at = event["type"], event["created"]
        return (fnmatch.fnmatchcase(kind, pattern) and (types is None or kind in types)
                and all(_RANGE[op](at, bound) for op, bound in bounds))

    return wanted


def _created_bounds(value: Any) -> list[tuple[str, int]] | None:
    """``created`` as (operator, time) pairs; ``None`` when it is not one Stripe takes."""
    if value is None:
        return []
    pairs = [("eq", value)] if isinstance(value, str) else \
        list(value.items()) if isinstance(value, dict) and value and "eq" not in value else None
    if pairs is None or any(op not in _RANGE or not isinstance(at, str)
                            or not at.lstrip("-").isdigit() for op, at in pairs):
        return None
    return [(op, int(at)) for op, at in pairs]


def _endpoints(hooks: Webhooks, request: WireRequest, ident: str | None) -> WireResponse:
    if ident is None and request.method == "GET":
        return _page([e.as_data() for e in reversed(hooks.endpoints())], request,
                     "/v1/webhook_endpoints")
    if ident is None and request.method == "POST":
        return _create(hooks, request)
    endpoint = hooks.endpoint(ident or "")
    if endpoint is None:
        return _missing("webhook endpoint", ident or "")
    if request.method == "GET":
        return WireResponse.of_json(200, endpoint.as_data())
    if request.method == "DELETE":
        hooks.remove(endpoint.id)
        return WireResponse.of_json(200, {"id": endpoint.id, "object": "webhook_endpoint",
                                          "deleted": True})
    if request.method == "POST":
        return _update(request, endpoint)
    return _unrecognized(request)


def _create(hooks: Webhooks, request: WireRequest) -> WireResponse:
    params = _params(request, _CREATE_PARAMS)
    if isinstance(params, WireResponse):
        return params
    url, problem = _url(params.get("url"))
    if problem:
        return _error(400, problem, param="url", code="url_invalid")
    events, problem = _enabled(params.get("enabled_events"))
    if problem:
        return _error(400, problem, param="enabled_events")
    endpoint = hooks.register(url, events, api_version=_text(params.get("api_version")),
                              description=_text(params.get("description")),
                              metadata=_strings(params.get("metadata")))
    return WireResponse.of_json(200, endpoint.as_data(with_secret=True))


def _update(request: WireRequest, endpoint: WebhookEndpoint) -> WireResponse:
    params = _params(request, _UPDATE_PARAMS)
    if isinstance(params, WireResponse):
        return params
    # Everything is checked before anything changes: a refused update leaves the endpoint.
    url, events = endpoint.url, endpoint.enabled_events
    if "url" in params:
        url, problem = _url(params["url"])
        if problem:
            return _error(400, problem, param="url", code="url_invalid")
    if "enabled_events" in params:
        events, problem = _enabled(params["enabled_events"])
        if problem:
            return _error(400, problem, param="enabled_events")
    disabled = params.get("disabled", "true" if endpoint.disabled else "false")
    if disabled not in ("true", "false", True, False):
        return _error(400, f"Invalid boolean: {disabled!r}", param="disabled")
    endpoint.url, endpoint.enabled_events = url, events
    endpoint.disabled = disabled in ("true", True)
    if "description" in params:
        endpoint.description = _text(params["description"])
    if "metadata" in params:
        # Stripe merges: ``metadata[key]=`` unsets one key, an empty ``metadata=`` all of them.
        given = params["metadata"]
        merged = {} if given == "" else {**endpoint.metadata, **_strings(given)}
        endpoint.metadata = {k: v for k, v in merged.items() if v != ""}
    return WireResponse.of_json(200, endpoint.as_data())


def _params(request: WireRequest, known: tuple[str, ...]) -> dict[str, Any] | WireResponse:
    try:
        if (request.header("content-type") or "").startswith("application/json"):
            data = request.json()
            params = data if isinstance(data, dict) else {}
        else:
            params = decode_form(parse_pairs(request.body))
    except (FormError, ValueError) as exc:
        return _error(400, str(exc))
    unknown = [name for name in params if name not in known]
    if unknown:
        return _error(400, f"Received unknown parameter: {unknown[0]} (this simulated endpoint "
                           f"takes {', '.join(known)})", param=unknown[0],
                      code="parameter_unknown")
    return params


def _url(value: Any) -> tuple[str, str]:
    if not isinstance(value, str) or not value:
        return "", "Missing required param: url."
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return "", f"Invalid URL: {value!r}. URLs must begin with http:// or https://."
    return value, ""


def _enabled(value: Any) -> tuple[list[str], str]:
    if isinstance(value, str):
        value = [value]
    if isinstance(value, dict):
        value = list(value.values())
    if not value:
        return [], "Missing required param: enabled_events."
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


def _unrecognized(request: WireRequest) -> WireResponse:
    return _error(404, f"Unrecognized request URL ({request.method}: {request.path}).")


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
