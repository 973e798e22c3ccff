"""The JSON face of a simulated service: ``POST /{service}/v1/{operation}``.

One generic :class:`JsonFace` serves any service class that declares ``OPERATIONS`` (the CRM,
email, calendar and knowledge base by default). Each operation is one path; the request body
is a JSON object of the operation's keyword arguments, validated against the method's
signature — a model built from its annotations (:func:`operation_specs`, cached per class) in
pydantic's strict JSON mode, so a number sent as a string or a boolean sent as a number is
refused as it would be by an API that validates against its own OpenAPI schema::

    POST /calendar/v1/create_event
    Authorization: Bearer at_0001
    Idempotency-Key: book-42
    {"title": "Call", "attendees": ["ada@example.com"], "start": "2026-01-05T10:00:00Z",
     "end": "2026-01-05T10:30:00Z"}

    200 {"id": "evt_0001", "title": "Call", ...}

The answer is the operation's plain JSON result. Errors share one shape,
``{"error": {"type", "message", ...}}``:

=======  ========================  ======================================================
status   ``type``                  when
=======  ========================  ======================================================
400      ``invalid_request``       the body is not JSON, not an object, or breaks the
                                   signature (``param`` names the argument); or the
                                   service refused it
401      ``invalid_token``         OAuth clients are declared and the bearer token is
                                   missing, unknown or expired (``WWW-Authenticate`` says
                                   which), or the ``auth_expiry`` fault fired
403      ``insufficient_scope``    the token's scopes do not name this service
404      ``not_found``             no such operation, or the service holds no such object
405      ``method_not_allowed``    anything but ``POST``
409      ``conflict``              an idempotency key in flight or reused with other
                                   arguments
429/5xx  ``rate_limited`` /        an injected fault (``Retry-After`` when the fault sets
         ``api_error``             one)
=======  ========================  ======================================================

A service error also carries its own fields (``service``, ``status``, ``retryable``, the
exception's name as ``error``, and ``param``, ``resource``, ``resource_id`` or ``reason``).
The ``Idempotency-Key`` header becomes the ``idempotency_key`` argument of operations that take
one (it is not accepted in the body: one way to say it); a replayed answer carries
``Idempotent-Replayed: true``.
"""

from __future__ import annotations

import inspect
import math
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from tether.sim.services.errors import (
    AuthError,
    Conflict,
    InvalidRequest,
    NotFound,
    PaymentsError,
    ServiceError,
    TokenExpired,
)
from tether.sim.wire.gateway import Route
from tether.sim.wire.messages import WireRequest, WireResponse

if TYPE_CHECKING:
    from tether.sim.wire.gateway import Gateway

__all__ = ["JsonFace", "OperationSpec", "error_body", "operation_specs"]

#: The realm named in ``WWW-Authenticate`` challenges.
REALM = "tether-sim"
_KEY = "idempotency_key"
_BEARER = re.compile(r"^\s*bearer\s+(\S+)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class OperationSpec:
    """One operation of a service class as the JSON face offers it."""

    #: The operation (method) name: the last path segment.
    name: str
    #: Its arguments as a model (``extra`` forbidden; ``idempotency_key`` left out).
    request: type[BaseModel]
    #: Its return annotation (``None`` when it declares none).
    returns: Any
    #: Whether it takes an ``idempotency_key`` (from the ``Idempotency-Key`` header).
    keyed: bool
    #: The method's docstring.
    doc: str


@cache
def operation_specs(cls: type) -> Mapping[str, OperationSpec]:
    """The operations of service class ``cls`` (its ``OPERATIONS``), with their argument
    models built once from the methods' annotations."""
    return {name: _spec(cls, name) for name in getattr(cls, "OPERATIONS", ())}


def _spec(cls: type, name: str) -> OperationSpec:
    method = getattr(cls, name)
    hints = typing.get_type_hints(method)
    fields: dict[str, Any] = {}
    keyed = False
    for param in list(inspect.signature(method).parameters.values())[1:]:
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if param.name == _KEY:
            keyed = True
            continue
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (hints.get(param.name, Any), default)
    title = "".join(part[:1].upper() + part[1:] for part in name.split("_"))
    request = create_model(f"{cls.__name__}{title}Request",
                           __config__=ConfigDict(extra="forbid", strict=True,
                                                 allow_inf_nan=False), **fields)
    request.__doc__ = f"The arguments of ``{name}``."
    return OperationSpec(name, request, hints.get("return"), keyed,
                         inspect.getdoc(method) or "")


class JsonFace:
    """The JSON API of one simulated service (see the module docstring)."""

    def __init__(self, service: str) -> None:
        self.service = service

    def route(self, request: WireRequest, gateway: Gateway) -> Route | WireResponse:
        """The operation ``request`` names with its validated arguments, or the refusal."""
        holder = gateway.env.world.services[self.service]
        auth = _authorize(request, gateway, self.service)
        if isinstance(auth, WireResponse):
            return auth
        specs = operation_specs(holder.__class__)
        parts = request.path.strip("/").split("/")
        if len(parts) != 2 or parts[0] != "v1" or parts[1] not in specs:
            return _refusal(404, "not_found", f"no operation at {request.path!r}; the "
                            f"{self.service} API offers POST /{self.service}/v1/{{operation}} "
                            f"for {', '.join(specs)}")
        if request.method != "POST":
            return _refusal(405, "method_not_allowed",
                            f"{request.path} takes POST, not {request.method}",
                            headers={"allow": "POST"})
        spec = specs[parts[1]]
        try:
            arguments = spec.request.model_validate_json(request.body.strip() or b"{}")
        except ValidationError as exc:
            return _invalid(exc, spec)
        # In signature order (the fields set is a set: its order follows PYTHONHASHSEED, and
        # the recorded call must not).
        given = arguments.model_fields_set
        kwargs = {name: getattr(arguments, name) for name in spec.request.model_fields
                  if name in given}
        key = request.header("idempotency-key")
        if spec.keyed and key:
            kwargs[_KEY] = gateway.key_name(key)
        return Route(spec.name, kwargs, {"auth": auth} if auth is not None else {})

    def success(self, route: Route, result: Any) -> WireResponse:
        """``200`` with the plain JSON result."""
        replayed = isinstance(result, dict) and result.get("idempotent_replayed") is True
        return WireResponse.of_json(200, result,
                                    {"idempotent-replayed": "true"} if replayed else None)

    def failure(self, route: Route, error: ServiceError) -> WireResponse:
        """The service's refusal at its own status, in the face's error shape."""
        headers = _challenge("invalid_token", str(error)) if isinstance(error, AuthError) else {}
        return WireResponse.of_json(error.status, error_body(error), headers)

    def injected(self, route: Route, status: int, retry_after_s: float | None) -> WireResponse:
        """An injected 429 or 5xx; nothing was applied."""
        kind = "rate_limited" if status == 429 else "api_error"
        message = (f"the {self.service} API answered {status} (injected); nothing was "
                   "applied, the request may be retried")
        headers = {} if retry_after_s is None else {
            "retry-after": str(max(0, math.ceil(retry_after_s)))}
        return _refusal(status, kind, message, retryable=True, headers=headers)

    def expired(self, route: Route) -> WireResponse:
        """The ``auth_expiry`` fault: the caller's token has expired (and, when the world
        checks tokens, it really is: the client must fetch a new one)."""
        auth = route.extra.get("auth")
        if isinstance(auth, _Caller):
            auth.identity.expire(auth.client)
            return _expired(self.service)
        # An open world (no OAuth clients): no token can be fetched, a call again is answered.
        return _refusal(401, "invalid_token", f"the credentials expired; this world declares "
                        f"no OAuth clients, so no token is needed: call the {self.service} "
                        "API again", headers=_challenge("invalid_token",
                                                        "The access token expired"))


@dataclass(frozen=True)
class _Caller:
    identity: Any
    client: str


def _authorize(request: WireRequest, gateway: Gateway,
               service: str) -> _Caller | WireResponse | None:
    """``None`` when the world declares no OAuth clients (the API is open), the caller when
    its bearer token is valid for ``service``, else the 401 or 403."""
    identity = gateway.env.world.services.get("identity")
    if identity is None or not getattr(identity, "clients", None):
        return None
    match = _BEARER.match(request.header("authorization") or "")
    if match is None:
        token_url = f"{gateway.root}/identity/oauth/token"
        # RFC 6750 §3.1: a request without credentials gets a challenge without an error code.
        return _refusal(401, "invalid_token",
                        f"the {service} API needs an access token: POST "
                        "grant_type=client_credentials with your client credentials to "
                        f"{token_url}, then send Authorization: Bearer <access_token>",
                        headers={"www-authenticate": f'Bearer realm="{REALM}"'})
    try:
        info = identity.check(match.group(1))
    except TokenExpired:
        return _expired(service)
    except AuthError as exc:
        return _refusal(401, "invalid_token", f"{exc}; fetch a token from the token endpoint",
                        headers=_challenge("invalid_token", "The access token is unknown"))
    if info.scopes and service not in info.scopes:
        return _refusal(403, "insufficient_scope",
                        f"the token of {info.client} is granted {' '.join(info.scopes)}, not "
                        f"{service}; ask the token endpoint for scope={service}",
                        headers=_challenge("insufficient_scope",
                                           f"The token's scopes do not include {service}",
                                           scope=service))
    return _Caller(identity, info.client)


def _expired(service: str) -> WireResponse:
    return _refusal(401, "invalid_token",
                    f"the access token expired; fetch a new one from the token endpoint and "
                    f"call the {service} API again",
                    headers=_challenge("invalid_token", "The access token expired"))


def _challenge(error: str, description: str, scope: str | None = None) -> dict[str, str]:
    """An RFC 6750 §3 ``WWW-Authenticate`` challenge."""
    # RFC 6750 §3: printable ASCII on one line, without backslashes or double quotes.
    text = " ".join(description.replace("\\", "").replace('"', "'").split())
    text = text.encode("ascii", "replace").decode("ascii")
    value = f'Bearer realm="{REALM}", error="{error}", error_description="{text}"'
    return {"www-authenticate": value + (f', scope="{scope}"' if scope else "")}


def _refusal(status: int, kind: str, message: str, *, param: str | None = None,
             retryable: bool = False, headers: Mapping[str, str] | None = None,
             ) -> WireResponse:
    error: dict[str, Any] = {"type": kind, "message": message, "status": status,
                             "retryable": retryable}
    if param is not None:
        error["param"] = param
    return WireResponse.of_json(status, {"error": error}, headers)


def _invalid(exc: ValidationError, spec: OperationSpec) -> WireResponse:
    """The 400 of a body that breaks the signature, naming the first culprit."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    param = str(first["loc"][0]) if first["loc"] else None
    takes = ", ".join(spec.request.model_fields) or "no arguments"
    if first["type"] == "json_invalid":
        return _refusal(400, "invalid_request", f"the body is not valid JSON: {first['msg']}")
    if first["type"] == "model_type":
        return _refusal(400, "invalid_request", f"the body must be a JSON object of the "
                        f"arguments of {spec.name} ({takes})")
    if first["type"] == "missing":
        message = f"{spec.name} needs {param} (it takes {takes})"
    elif first["type"] == "extra_forbidden":
        hint = ("; send the key as the Idempotency-Key header" if param == _KEY
                else f"; it takes {takes}")
        message = f"{spec.name} takes no argument {param}{hint}"
    else:
        # A union reports one error per member it tried: say them all, once each.
        said = dict.fromkeys(e["msg"] for e in errors if e["loc"][:1] == first["loc"][:1])
        where = ".".join(str(part) for part in first["loc"]) if len(said) == 1 else param
        message = f"{where}: {' or '.join(said)}"
    return _refusal(400, "invalid_request", message, param=param)


def error_body(error: ServiceError) -> dict[str, Any]:
    """``{"error": {...}}``: the face's shape of a service error (its ``to_data()`` fields,
    a ``type`` and the fields of its class).

    >>> error_body(NotFound("no ticket 't9'", "crm", "ticket", "t9"))["error"]["type"]
    'not_found'
    """
    data: dict[str, Any] = {**error.to_data(), "type": _kind(error)}
    for name in ("param", "resource", "resource_id", "reason"):
        value = getattr(error, name, None)
        if value is not None:
            data[name] = value
    return {"error": data}


def _kind(error: ServiceError) -> str:
    if isinstance(error, PaymentsError):
        return error.type
    if isinstance(error, AuthError):
        return "invalid_token"
    for cls, kind in ((NotFound, "not_found"), (InvalidRequest, "invalid_request"),
                      (Conflict, "conflict")):
        if isinstance(error, cls):
            return kind
    return "api_error" if error.status >= 500 else "service_error"
