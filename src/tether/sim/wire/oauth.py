"""The identity service's face: an OAuth2 token endpoint for the client credentials grant.

``POST /identity/oauth/token`` takes a form-encoded body (RFC 6749 §4.4.2) and authenticates
the client by HTTP Basic or by ``client_id`` and ``client_secret`` in the body (§2.3.1, never
both)::

    POST /identity/oauth/token
    Content-Type: application/x-www-form-urlencoded
    Authorization: Basic ZGVzazpzM2NyZXQ=

    grant_type=client_credentials&scope=crm

    200 Cache-Control: no-store
    {"access_token": "at_0001", "token_type": "Bearer", "expires_in": 3600, "scope": "crm"}

The request is the ``identity.token`` operation
(:meth:`~tether.sim.services.identity.Identity.token`), so the scenario's faults reach it like
any other call and the issue is a ledger effect. A refusal is RFC 6749 §5.2 JSON,
``{"error": code, "error_description": text}``: ``invalid_request`` (400: not a form, a
parameter repeated, two authentication methods), ``unsupported_grant_type`` (400),
``invalid_scope`` (400), ``invalid_client`` (401; with ``WWW-Authenticate: Basic`` when the
client tried Basic). An injected 5xx or 429 is ``temporarily_unavailable``. A parameter sent
without a value counts as omitted (§3.2).
"""

from __future__ import annotations

import base64
import binascii
import math
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote_plus

from tether.sim.services.errors import ServiceError
from tether.sim.services.identity import OAuthError
from tether.sim.wire.gateway import Route
from tether.sim.wire.messages import WireRequest, WireResponse

if TYPE_CHECKING:
    from tether.sim.wire.gateway import Gateway

__all__ = ["TOKEN_PATH", "OAuthFace"]

#: The token endpoint, below the identity service's prefix.
TOKEN_PATH = "/oauth/token"
#: RFC 6749 §5.1: token responses must not be cached.
_NO_STORE = {"cache-control": "no-store", "pragma": "no-cache"}
_BASIC_CHALLENGE = {"www-authenticate": 'Basic realm="tether-sim"'}
#: What the token response leaves out of the operation's answer (the service's own fields).
_INTERNAL = ("client", "expires_at")


class OAuthFace:
    """The token endpoint of the world's identity service (see the module docstring)."""

    def __init__(self, service: str = "identity") -> None:
        self.service = service

    def route(self, request: WireRequest, gateway: Gateway) -> Route | WireResponse:
        """The ``token`` operation with the form's parameters, or the RFC's refusal."""
        if request.path.rstrip("/") != TOKEN_PATH:
            return _error(404, "not_found", f"no endpoint at {request.path!r}; the token "
                          f"endpoint is POST /{self.service}{TOKEN_PATH}")
        if request.method != "POST":
            return _error(405, "invalid_request", f"the token endpoint takes POST, not "
                          f"{request.method}", {"allow": "POST"})
        media = (request.header("content-type") or "").split(";")[0].strip().lower()
        # An empty body is an empty form whatever it is labelled: what is missing is said
        # by the grant (invalid_request naming grant_type), not by the content type.
        if request.body.strip() and media != "application/x-www-form-urlencoded":
            return _error(400, "invalid_request", "the token request must be form-encoded "
                          "(Content-Type: application/x-www-form-urlencoded), got "
                          f"{media or 'no content type'}")
        form = _form(request.body)
        if isinstance(form, WireResponse):
            return form
        basic = _basic(request.header("authorization"))
        if isinstance(basic, WireResponse):
            return basic
        if basic is not None:
            if "client_secret" in form or form.get("client_id", basic[0]) != basic[0]:
                return _error(400, "invalid_request", "the client authenticated twice (HTTP "
                              "Basic and the body); use one method")
            form["client_id"], form["client_secret"] = basic
        kwargs = {"grant_type": form.get("grant_type", ""), "client_id": form.get("client_id"),
                  "client_secret": form.get("client_secret"), "scope": form.get("scope")}
        return Route("token", kwargs, {"basic": basic is not None})

    def success(self, route: Route, result: Any) -> WireResponse:
        """RFC 6749 §5.1: the access token, its type, lifetime and scope; never cached."""
        if isinstance(result, dict):
            # Whatever a drift fault did to the answer shows; only the service's own
            # bookkeeping fields stay off the wire.
            result = {k: v for k, v in result.items()
                      if k not in _INTERNAL and not (k == "scope" and v is None)}
        return WireResponse.of_json(200, result, _NO_STORE)

    def failure(self, route: Route, error: ServiceError) -> WireResponse:
        """RFC 6749 §5.2 JSON at the error's status."""
        if isinstance(error, OAuthError):
            challenge = _BASIC_CHALLENGE if (error.error == "invalid_client"
                                             and route.extra.get("basic")) else {}
            return WireResponse.of_json(error.status, error.to_oauth(),
                                        {**_NO_STORE, **challenge})
        code = "temporarily_unavailable" if error.status >= 500 else "invalid_request"
        return _error(error.status, code, str(error))

    def injected(self, route: Route, status: int, retry_after_s: float | None) -> WireResponse:
        """An injected 429 or 5xx: ``temporarily_unavailable``; nothing was issued."""
        headers = {} if retry_after_s is None else {
            "retry-after": str(max(0, math.ceil(retry_after_s)))}
        return _error(status, "temporarily_unavailable", f"the token endpoint answered "
                      f"{status} (injected); nothing was issued, retry the request", headers)

    def expired(self, route: Route) -> WireResponse:
        """The ``auth_expiry`` fault at the token endpoint: the client's credentials are
        refused this time."""
        return _error(401, "invalid_client", "the client's credentials were refused (they "
                      "expired); retry the request", _BASIC_CHALLENGE)


def _error(status: int, code: str, description: str,
           headers: dict[str, str] | None = None) -> WireResponse:
    return WireResponse.of_json(status, {"error": code, "error_description": description},
                                {**_NO_STORE, **(headers or {})})


def _form(body: bytes) -> dict[str, str] | WireResponse:
    """The form's parameters; a parameter sent twice is refused, one sent without a value is
    taken as omitted (RFC 6749 §3.2)."""
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except (UnicodeDecodeError, ValueError) as exc:
        return _error(400, "invalid_request", f"the form body cannot be read: {exc}")
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            return _error(400, "invalid_request", f"parameter {name!r} is repeated")
        form[name] = value
    return {name: value for name, value in form.items() if value}


def _basic(header: str | None) -> tuple[str, str] | WireResponse | None:
    """HTTP Basic client credentials (each form-encoded first, RFC 6749 §2.3.1), ``None``
    without a Basic header, or the 401 of an unreadable one."""
    scheme, _, value = (header or "").strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        decoded = ""
    client_id, colon, secret = decoded.partition(":")
    if not colon:
        return _error(401, "invalid_client", "the Basic credentials are not base64 of "
                      "client_id:client_secret", _BASIC_CHALLENGE)
    return unquote_plus(client_id), unquote_plus(secret)
