"""The payments service as a Stripe-compatible HTTP API (``/payments/v1/...``).

The official ``stripe`` SDK pointed at ``env.base_url("payments")`` works unchanged: bearer
(or basic) secret keys, form-encoded parameters with nested keys (:mod:`.forms`), Stripe's
objects, list objects with cursor pagination, Stripe's error JSON and statuses, and the
``Idempotency-Key`` header with Stripe's semantics (the service's own: replays carry
``Idempotent-Replayed: true``, other parameters with a used key are an ``idempotency_error``,
a key in flight is a 409 ``idempotency_key_in_use``).

==========================  ======  ===================  ==================================
path                        method  operation            parameters
==========================  ======  ===================  ==================================
/v1/customers               GET     list_customers       email; limit, starting_after,
                                                         ending_before
/v1/customers               POST    create_customer      email, name, metadata
/v1/customers/{id}          GET     get_customer
/v1/charges                 GET     list_charges         customer; pagination
/v1/charges                 POST    create_charge        amount, currency, customer,
                                                         description, source, metadata
/v1/charges/{id}            GET     get_charge
/v1/refunds                 GET     list_refunds         charge; pagination
/v1/refunds                 POST    create_refund        charge, amount, reason, metadata
/v1/refunds/{id}            GET     get_refund
/v1/payouts                 GET     list_payouts         pagination
/v1/payouts                 POST    create_payout        amount, currency, description,
                                                         metadata
/v1/payouts/{id}            GET     get_payout
/v1/balance                 GET     get_balance
==========================  ======  ===================  ==================================

Objects carry the fields Stripe's do that SDK code commonly reads and the service's models
leave out (:data:`WIRE_FIELDS`; :func:`stripe_object` adds them to every object and list item,
and webhook events carry the same objects), with what is true of the simulated world:
``livemode`` is false (a test-mode world); a charge is ``paid`` and ``captured``, with
``amount_captured`` its amount, when it succeeded (``false``, ``false``, ``0`` otherwise); a
customer's ``balance`` is 0; the ids of things the world does not model (PaymentIntents,
balance transactions, payment methods, bank accounts) and text it does not keep (a customer's
phone or description, a failure's code) are ``null``. Only the wire has them: ``env.client``,
MCP answers, the recorded calls and the ledger keep the service's own fields.

A parameter the endpoint does not know is a 400 ``parameter_unknown`` and ``expand`` a 400
naming it — never silently ignored. Keys: any ``sk_test_…`` (or ``rk_test_…``), unless the
payments seed lists ``api_keys``. Every response carries a ``Request-Id`` (a counter of the
face, so a replayed episode sends the same ids) and ``Stripe-Version`` (the request's, echoed).

UUID-shaped idempotency keys: the SDK gives every POST without a key of its own a fresh random
one (``os.urandom``), and agents often make their own with ``uuid4()``. The gateway
(:meth:`~tether.sim.wire.gateway.Gateway.key_name`, shared with the JSON and MCP faces, so one
key over two channels stays one key) stands each UUID-shaped key for a name of its own,
``uuid_0001`` … in the order first seen, so the ledger
and the recorded calls stay the same from run to run. Other keys (``refund:ch_0001``) reach the
service as sent, except one that begins with ``uuid_``, which gets a second ``uuid_`` in front
(``uuid_0001`` sent as such is recorded ``uuid_uuid_0001``): the naming is one-to-one over every
key an agent may send, so two different keys never become one and idempotency is unchanged.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tether.sim.services.errors import PaymentsError, ServiceError
from tether.sim.wire.forms import FormError, as_mapping, decode_form, parse_pairs
from tether.sim.wire.gateway import Gateway, Route
from tether.sim.wire.messages import WireRequest, WireResponse

__all__ = ["DEFAULT_STRIPE_VERSION", "WIRE_FIELDS", "StripeFace", "stripe_object"]

#: The API version answered when a request names none (the one stripe-python 16 pins).
DEFAULT_STRIPE_VERSION = "2026-10-28.endive"

_STRING, _INTEGER, _METADATA = "string", "integer", "metadata"
_PAGE = ("limit", "starting_after", "ending_before")
_TEST_KEY = re.compile(r"(sk|rk)_test_\S+")
#: Stripe refuses idempotency keys longer than this.
MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class _Endpoint:
    method: str
    path: re.Pattern[str]
    operation: str
    params: Mapping[str, str]
    required: tuple[str, ...] = ()
    listing: str = ""  # the object listed: the endpoint answers a list object

    def match(self, method: str, path: str) -> dict[str, str] | None:
        found = self.path.fullmatch(path) if method == self.method else None
        return found.groupdict() if found is not None else None


def _endpoint(method: str, path: str, operation: str, params: Mapping[str, str] | None = None,
              required: tuple[str, ...] = (), listing: str = "") -> _Endpoint:
    pattern = re.compile(path.replace("{id}", r"(?P<id>[^/]+)"))
    return _Endpoint(method, pattern, operation, params or {}, required, listing)


_ENDPOINTS = (
    _endpoint("GET", "/v1/customers", "list_customers", {"email": _STRING}, listing="customer"),
    _endpoint("POST", "/v1/customers", "create_customer",
              {"email": _STRING, "name": _STRING, "metadata": _METADATA}),
    _endpoint("GET", "/v1/customers/{id}", "get_customer"),
    _endpoint("GET", "/v1/charges", "list_charges", {"customer": _STRING}, listing="charge"),
    _endpoint("POST", "/v1/charges", "create_charge",
              {"amount": _INTEGER, "currency": _STRING, "customer": _STRING,
               "description": _STRING, "source": _STRING, "metadata": _METADATA},
              required=("amount", "currency")),
    _endpoint("GET", "/v1/charges/{id}", "get_charge"),
    _endpoint("GET", "/v1/refunds", "list_refunds", {"charge": _STRING}, listing="refund"),
    _endpoint("POST", "/v1/refunds", "create_refund",
              {"charge": _STRING, "amount": _INTEGER, "reason": _STRING,
               "metadata": _METADATA}, required=("charge",)),
    _endpoint("GET", "/v1/refunds/{id}", "get_refund"),
    _endpoint("GET", "/v1/payouts", "list_payouts", listing="payout"),
    _endpoint("POST", "/v1/payouts", "create_payout",
              {"amount": _INTEGER, "currency": _STRING, "description": _STRING,
               "metadata": _METADATA}, required=("amount", "currency")),
    _endpoint("GET", "/v1/payouts/{id}", "get_payout"),
    _endpoint("GET", "/v1/balance", "get_balance"),
)


_NULL_ID: dict[str, Any] = {"type": ["string", "null"],
                            "description": "always null: the simulated world has no such object"}
_NULL_TEXT: dict[str, Any] = {"type": ["string", "null"],
                              "description": "always null: the simulated world keeps no such "
                                             "text"}
_LIVEMODE: dict[str, Any] = {"const": False, "description": "a test-mode world"}

#: Left out of the object: what the field derives from is not in it (a drifted answer).
_ABSENT: Any = object()


def _constant(value: Any) -> Callable[[Mapping[str, Any]], Any]:
    return lambda obj: value


def _succeeded(obj: Mapping[str, Any]) -> Any:
    status = obj.get("status", _ABSENT)
    return _ABSENT if status is _ABSENT else status == "succeeded"


def _amount_captured(obj: Mapping[str, Any]) -> Any:
    succeeded, amount = _succeeded(obj), obj.get("amount")
    if succeeded is _ABSENT or isinstance(amount, bool) or not isinstance(amount, int):
        return _ABSENT  # the fields it derives from drifted away: nothing true to say
    return amount if succeeded else 0


#: The fields the face adds, by object type: name → (JSON Schema, its value for an object).
_ADDED: dict[str, dict[str, tuple[dict[str, Any], Callable[[Mapping[str, Any]], Any]]]] = {
    "charge": {
        "paid": ({"type": "boolean", "description": "whether the charge succeeded"},
                 _succeeded),
        "captured": ({"type": "boolean", "description": "whether the charge succeeded "
                      "(the world captures every charge it makes)"}, _succeeded),
        "amount_captured": ({"type": "integer", "minimum": 0,
                             "description": "the amount when the charge succeeded, else 0"},
                            _amount_captured),
        "livemode": (_LIVEMODE, _constant(False)),
        "payment_intent": (_NULL_ID, _constant(None)),
        "payment_method": (_NULL_ID, _constant(None)),
        "balance_transaction": (_NULL_ID, _constant(None)),
        "invoice": (_NULL_ID, _constant(None)),
        "failure_code": (_NULL_TEXT, _constant(None)),
        "failure_message": (_NULL_TEXT, _constant(None)),
        "receipt_email": (_NULL_TEXT, _constant(None)),
        "receipt_url": (_NULL_TEXT, _constant(None)),
        "statement_descriptor": (_NULL_TEXT, _constant(None)),
    },
    "refund": {
        "livemode": (_LIVEMODE, _constant(False)),
        "payment_intent": (_NULL_ID, _constant(None)),
        "balance_transaction": (_NULL_ID, _constant(None)),
        "failure_reason": (_NULL_TEXT, _constant(None)),
        "receipt_number": (_NULL_TEXT, _constant(None)),
    },
    "customer": {
        "livemode": (_LIVEMODE, _constant(False)),
        "balance": ({"const": 0, "description": "the world keeps no customer balances"},
                    _constant(0)),
        "description": (_NULL_TEXT, _constant(None)),
        "phone": (_NULL_TEXT, _constant(None)),
        "default_source": (_NULL_ID, _constant(None)),
        "delinquent": ({"const": False, "description": "the world sends no invoices"},
                       _constant(False)),
    },
    "payout": {
        "livemode": (_LIVEMODE, _constant(False)),
        "balance_transaction": (_NULL_ID, _constant(None)),
        "destination": (_NULL_ID, _constant(None)),
        "failure_code": (_NULL_TEXT, _constant(None)),
        "failure_message": (_NULL_TEXT, _constant(None)),
        "statement_descriptor": (_NULL_TEXT, _constant(None)),
    },
}

#: The JSON Schemas of the fields :func:`stripe_object` adds, by object type (the OpenAPI
#: document describes them).
WIRE_FIELDS: dict[str, dict[str, dict[str, Any]]] = {
    kind: {name: schema for name, (schema, _) in fields.items()}
    for kind, fields in _ADDED.items()}


def stripe_object(plain: Mapping[str, Any]) -> dict[str, Any]:
    """A service object (its plain JSON) as Stripe sends it: without the service's
    ``idempotent_replayed`` flag (a header on the wire), with the fields of
    :data:`WIRE_FIELDS` for its ``object`` type. A field already there (a drifted or wrong
    answer says so) is kept as it is, and one derived from fields a drift took away is left
    out.

    >>> obj = stripe_object({"object": "charge", "amount": 500, "status": "failed"})
    >>> obj["paid"], obj["amount_captured"], obj["livemode"], obj["payment_intent"]
    (False, 0, False, None)
    """
    data = {k: v for k, v in plain.items() if k != "idempotent_replayed"}
    kind = data.get("object")
    for name, (_, value_of) in (_ADDED.get(kind, {}) if isinstance(kind, str) else {}).items():
        if name not in data:
            value = value_of(data)
            if value is not _ABSENT:
                data[name] = value
    return data


class _Refused(Exception):
    """A request the face answers itself with a Stripe error."""

    def __init__(self, status: int, message: str, param: str | None = None,
                 code: str | None = None, type: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.error = PaymentsError(type, code, message, param, status)


class StripeFace:
    """The Stripe-compatible face of the ``payments`` service (see the module docstring)."""

    def __init__(self, service: str = "payments") -> None:
        self.service = service
        self._request_ids = itertools.count(1)

    # -- routing -------------------------------------------------------------------------

    def route(self, request: WireRequest, gateway: Gateway) -> Route | WireResponse:
        """The operation ``request`` asks for, or Stripe's error for it."""
        headers = self._headers(request)
        payments = gateway.env.world.services.get(self.service)
        try:
            key = self._authenticate(request, getattr(payments, "api_keys", None))
            endpoint, ids = self._endpoint(request)
            params = self._params(request)
            page = _page(params) if endpoint.listing else {}
            kwargs = {**ids, **_arguments(endpoint, params)}
            if request.method == "POST":
                idempotency_key = self._idempotency_key(request, gateway)
                if idempotency_key is not None:
                    kwargs["idempotency_key"] = idempotency_key
        except _Refused as refused:
            return _error(refused.error, headers)
        extra = {"headers": headers, "key": key, "listing": endpoint.listing,
                 "url": request.path, **page}
        return Route(endpoint.operation, kwargs, extra)

    def _headers(self, request: WireRequest) -> dict[str, str]:
        headers = {"request-id": f"req_{next(self._request_ids):014d}",
                   "stripe-version": request.header("stripe-version") or DEFAULT_STRIPE_VERSION}
        key = request.header("idempotency-key")
        if request.method == "POST" and key:
            headers["idempotency-key"] = key
        return headers

    def _authenticate(self, request: WireRequest, accepted: tuple[str, ...] | None) -> str:
        key = _presented_key(request.header("authorization") or "")
        if not key:
            raise _Refused(401, "You did not provide an API key. You need to provide your API "
                                "key in the Authorization header, using Bearer auth (e.g. "
                                "'Authorization: Bearer YOUR_SECRET_KEY').")
        valid = _TEST_KEY.fullmatch(key) is not None if accepted is None else key in accepted
        if not valid:
            raise _Refused(401, f"Invalid API Key provided: {mask(key)}")
        return key

    def _endpoint(self, request: WireRequest) -> tuple[_Endpoint, dict[str, str]]:
        for endpoint in _ENDPOINTS:
            ids = endpoint.match(request.method, request.path)
            if ids is not None:
                return endpoint, ids
        raise _Refused(404, f"Unrecognized request URL ({request.method}: {request.path}). "
                            "Please see https://stripe.com/docs or we can help at "
                            "https://support.stripe.com/.")

    def _params(self, request: WireRequest) -> dict[str, Any]:
        pairs = list(request.query)
        if request.method == "POST":
            kind = (request.header("content-type") or "").split(";")[0].strip().lower()
            if kind not in ("", "application/x-www-form-urlencoded"):
                raise _Refused(400, f"Stripe's v1 API takes its parameters form-encoded "
                                    f"(Content-Type: application/x-www-form-urlencoded), not "
                                    f"{kind}.")
            try:
                pairs += parse_pairs(request.body)
            except FormError as exc:
                raise _Refused(400, f"Invalid request body: {exc.problem}") from None
        try:
            params = decode_form(pairs)
        except FormError as exc:
            raise _Refused(400, f"Invalid parameter {exc.key!r}: {exc.problem}.",
                           exc.key.split("[")[0] or None) from None
        if "expand" in params:
            raise _Refused(400, "This simulated API does not support expand; retrieve the "
                                "related object by its id instead.", "expand")
        return params

    def _idempotency_key(self, request: WireRequest, gateway: Gateway) -> str | None:
        key = request.header("idempotency-key")
        if key is None or key == "":
            return None
        if len(key) > MAX_KEY_LENGTH:
            raise _Refused(400, f"Idempotency keys can be at most {MAX_KEY_LENGTH} characters "
                                f"long; this one has {len(key)}.", "idempotency_key")
        return gateway.key_name(key)

    # -- answers -------------------------------------------------------------------------

    def success(self, route: Route, result: Any) -> WireResponse:
        """The object, or a page of the list as Stripe's list object."""
        headers = dict(route.extra["headers"])
        if route.extra["listing"] and isinstance(result, list):
            try:
                body: Any = _list_object(route, [_public(o) for o in result])
            except _Refused as refused:
                return _error(refused.error, headers)
            return WireResponse.of_json(200, body, headers)
        if isinstance(result, dict) and result.get("idempotent_replayed") is True:
            headers["idempotent-replayed"] = "true"
        return WireResponse.of_json(200, _public(result), headers)

    def failure(self, route: Route, error: ServiceError) -> WireResponse:
        """Stripe's error JSON for a refusal of the service."""
        if not isinstance(error, PaymentsError):
            kind = "api_error" if error.status >= 500 else "invalid_request_error"
            error = PaymentsError(kind, None, str(error), None, error.status)
        headers = dict(route.extra["headers"])
        if getattr(error, "idempotent_replayed", False):
            headers["idempotent-replayed"] = "true"  # a saved error, replayed under its key
        if error.code == "idempotency_key_in_use":
            headers["stripe-should-retry"] = "true"
        return _error(error, headers)

    def injected(self, route: Route, status: int, retry_after_s: float | None) -> WireResponse:
        """A 429 ``rate_limit`` (with ``Retry-After``) or a 5xx ``api_error``: nothing was
        applied, so a 5xx says ``Stripe-Should-Retry: true``."""
        headers = dict(route.extra["headers"])
        if retry_after_s is not None:
            headers["retry-after"] = str(max(0, math.ceil(retry_after_s)))
        if status == 429:
            error = PaymentsError("invalid_request_error", "rate_limit",
                                  "Too many requests hit the API too quickly. We recommend an "
                                  "exponential backoff of your requests.", None, 429)
        elif status >= 500:
            headers["stripe-should-retry"] = "true"
            error = PaymentsError("api_error", None, "An unknown error occurred on Stripe's "
                                  "end; the request was not applied.", None, status)
        else:
            error = PaymentsError("invalid_request_error", None,
                                  f"The request failed with status {status}.", None, status)
        return _error(error, headers)

    def expired(self, route: Route) -> WireResponse:
        """401 ``api_key_expired``, as Stripe answers a key that was rolled and expired."""
        message = f"Expired API Key provided: {mask(route.extra['key'])}"
        return _error(PaymentsError("invalid_request_error", "api_key_expired", message, None,
                                    401), dict(route.extra["headers"]))


def mask(key: str) -> str:
    """A secret key as Stripe quotes it in errors: its prefix and last four characters.

    >>> mask("sk_test_4eC39HqLyjWDarjtT1zdp7dc")
    'sk_test_********************p7dc'
    """
    prefix = re.match(r"[a-z]+_(?:test_|live_)?", key)
    head = prefix.group(0) if prefix else ""
    rest = key[len(head):]
    shown = rest[-4:] if len(rest) > 4 else ""
    return head + "*" * (len(rest) - len(shown)) + shown


def _presented_key(authorization: str) -> str:
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    if scheme.lower() == "basic":  # ``curl -u sk_test_…:``: the key is the user name
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return ""
        return decoded.partition(":")[0]
    return ""


def _page(params: dict[str, Any]) -> dict[str, Any]:
    """Pops and checks ``limit``, ``starting_after`` and ``ending_before``."""
    page: dict[str, Any] = {"limit": 10}
    raw = params.pop("limit", None)
    if raw is not None and raw != "":
        limit = _integer("limit", raw)
        if not 1 <= limit <= 100:
            raise _Refused(400, f"Invalid limit: must be between 1 and 100, not {limit}.",
                           "limit", "parameter_invalid_integer")
        page["limit"] = limit
    for name in _PAGE[1:]:
        value = params.pop(name, None)
        if value not in (None, ""):
            page[name] = _string(name, value)
    if "starting_after" in page and "ending_before" in page:
        raise _Refused(400, "You may only specify one of these parameters: ending_before, "
                            "starting_after.", "ending_before")
    return page


def _arguments(endpoint: _Endpoint, params: dict[str, Any]) -> dict[str, Any]:
    """The operation's keyword arguments: every parameter known, typed, required ones given."""
    arguments: dict[str, Any] = {}
    for name, value in params.items():
        kind = endpoint.params.get(name)
        if kind is None:
            raise _Refused(400, f"Received unknown parameter: {name}", name,
                           "parameter_unknown")
        if value == "":
            continue  # Stripe reads an empty value as "not set" (a required one as missing)
        if kind == _INTEGER:
            arguments[name] = _integer(name, value)
        elif kind == _METADATA:
            arguments[name] = _metadata(value)
        else:
            arguments[name] = _string(name, value)
    for name in endpoint.required:
        if name not in arguments:
            raise _Refused(400, f"Missing required param: {name}.", name, "parameter_missing")
    return arguments


def _integer(name: str, value: Any) -> int:
    if not isinstance(value, str) or re.fullmatch(r"-?[0-9]{1,18}", value) is None:
        raise _Refused(400, f"Invalid integer: {_shown(value)}", name,
                       "parameter_invalid_integer")
    return int(value)


def _string(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise _Refused(400, f"Invalid string: {_shown(value)}", name, "parameter_invalid_string")
    return value


def _metadata(value: Any) -> dict[str, str]:
    value = as_mapping(value)
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise _Refused(400, f"Invalid metadata: expected metadata[key]=value pairs of strings, "
                            f"got {_shown(value)}", "metadata")
    # ``metadata[key]=`` is how Stripe unsets a key: on a new object it stores nothing.
    return {k: v for k, v in value.items() if v != ""}


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _public(data: Any) -> Any:
    """An answer as Stripe sends it: an object through :func:`stripe_object`, anything else
    (a drifted answer that is no object) as it is."""
    return stripe_object(data) if isinstance(data, Mapping) else data


def _list_object(route: Route, items: list[Any]) -> dict[str, Any]:
    """One page of ``items`` (newest first) as Stripe's list object."""
    limit: int = route.extra["limit"]
    after, before = route.extra.get("starting_after"), route.extra.get("ending_before")
    cursor = after if after is not None else before
    if cursor is None:
        page, more = items[:limit], len(items) > limit
    else:
        ids = [o.get("id") if isinstance(o, dict) else None for o in items]
        if cursor not in ids:
            param = "starting_after" if after is not None else "ending_before"
            raise _Refused(404, f"No such {route.extra['listing']}: {cursor!r}", param,
                           "resource_missing")
        at = ids.index(cursor)
        if after is not None:
            rest = items[at + 1:]
            page, more = rest[:limit], len(rest) > limit
        else:
            rest = items[:at]
            page, more = rest[-limit:], len(rest) > limit
    return {"object": "list", "data": page, "has_more": more, "url": route.extra["url"]}


def _error(error: PaymentsError, headers: Mapping[str, str]) -> WireResponse:
    body = error.to_stripe()
    if error.code is not None:
        body["error"]["doc_url"] = f"https://stripe.com/docs/error-codes/{error.code}"
    return WireResponse.of_json(error.status, body, headers)
