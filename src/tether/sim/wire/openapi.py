"""The OpenAPI 3.1 document of the world's HTTP faces.

:func:`openapi_document` describes what the faces really do, from the same sources they use:
each JSON operation's request body is the argument model :func:`~tether.sim.wire.json_face.
operation_specs` validates with, its ``200`` the JSON Schema of the method's return annotation
(as :func:`~tether.sim.jsonable.plain` serializes it), its errors the face's error shape;
the token endpoint is described as RFC 6749 has it; the payments paths come from the Stripe
face's own route table, with the webhook endpoints and events API served beside it. Schemas
are generated in one pass, so two models of one name would still get distinct component
names (tests/test_names.py keeps the package's public classes apart by name anyway).

>>> document = openapi_document()
>>> document["openapi"], "/crm/v1/get_customer" in document["paths"]
('3.1.0', True)
"""

from __future__ import annotations

import copy
import importlib
import re
import sys
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, TypeAdapter

from tether.sim.scenario import SERVICES
from tether.sim.wire.gateway import DEFAULT_FACES, IN_PROCESS_ROOT
from tether.sim.wire.json_face import operation_specs
from tether.sim.wire.oauth import TOKEN_PATH
from tether.sim.wire.webhook_api import KNOWN_EVENTS

__all__ = ["JSON_ERROR_SCHEMA", "OAUTH_ERROR_SCHEMA", "STRIPE_ERROR_SCHEMA",
           "openapi_document"]

_REF = "#/components/schemas/{model}"

#: The JSON faces' error body.
JSON_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["error"], "additionalProperties": False,
    "properties": {"error": {
        "type": "object", "required": ["type", "message", "status", "retryable"],
        "properties": {
            "type": {"type": "string", "description": "invalid_request, invalid_token, "
                     "insufficient_scope, not_found, method_not_allowed, conflict, "
                     "rate_limited, api_error, service_error"},
            "message": {"type": "string"},
            "status": {"type": "integer"},
            "retryable": {"type": "boolean"},
            "param": {"type": ["string", "null"]},
            "error": {"type": "string", "description": "the service error's class"},
            "service": {"type": "string"},
            "resource": {"type": "string"},
            "resource_id": {"type": "string"},
            "reason": {"type": "string"},
        }}},
}

#: The token endpoint's error body (RFC 6749 §5.2).
OAUTH_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["error"],
    "properties": {"error": {"type": "string", "description": "invalid_request, "
                             "invalid_client, unsupported_grant_type, invalid_scope, "
                             "temporarily_unavailable"},
                   "error_description": {"type": "string"}},
}

_TOKEN_RESPONSE: dict[str, Any] = {
    "type": "object", "required": ["access_token", "token_type", "expires_in"],
    "properties": {"access_token": {"type": "string"},
                   "token_type": {"type": "string", "enum": ["Bearer"]},
                   "expires_in": {"type": "integer", "description": "seconds, rounded down"},
                   "scope": {"type": "string", "description": "space-delimited services"}},
}

_TOKEN_REQUEST: dict[str, Any] = {
    "type": "object", "required": ["grant_type"],
    "properties": {"grant_type": {"type": "string", "enum": ["client_credentials"]},
                   "client_id": {"type": "string"},
                   "client_secret": {"type": "string"},
                   "scope": {"type": "string", "description": "space-delimited services"}},
}


def openapi_document(services: Mapping[str, type] | None = None, *, payments: bool = True,
                     identity: bool = True, server_url: str = IN_PROCESS_ROOT,
                     ) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the JSON faces of ``services`` (name → service class;
    default: every service the gateway serves through the JSON face), the token endpoint
    (``identity``) and the Stripe-compatible payments paths (``payments``)."""
    json_services = dict(_json_services() if services is None else services)
    adapters: list[tuple[tuple[str, str, str], Any, TypeAdapter[Any]]] = []
    for name, cls in json_services.items():
        for operation, spec in operation_specs(cls).items():
            adapters.append(((name, operation, "in"), "validation", TypeAdapter(spec.request)))
            if spec.returns is not None:
                adapters.append(((name, operation, "out"), "serialization",
                                 TypeAdapter(spec.returns)))
    endpoints = _stripe_endpoints() if payments else []
    payments_cls = _service_class("payments") if endpoints else None
    if payments_cls is not None:
        for operation, spec in operation_specs(payments_cls).items():
            if spec.returns is not None:
                # A field with a default is not required in these schemas (pydantic's
                # default), so the face may leave out the service's replay flag (a header).
                adapters.append((("payments", operation, "out"), "serialization",
                                 TypeAdapter(spec.returns)))
    found, top = TypeAdapter.json_schemas(adapters, ref_template=_REF)
    schemas: dict[str, Any] = {**top.get("$defs", {}), "JsonError": JSON_ERROR_SCHEMA}
    paths: dict[str, Any] = {}
    for name, cls in json_services.items():
        for operation, spec in operation_specs(cls).items():
            paths[f"/{name}/v1/{operation}"] = {"post": _json_operation(
                name, operation, spec.doc, spec.keyed,
                found[((name, operation, "in"), "validation")],
                found.get(((name, operation, "out"), "serialization")),
                required=bool(spec.request.model_json_schema().get("required")))}
    if identity:
        schemas["OAuthError"] = OAUTH_ERROR_SCHEMA
        schemas["TokenResponse"] = _TOKEN_RESPONSE
        paths[f"/identity{TOKEN_PATH}"] = {"post": _token_operation()}
    if endpoints and payments_cls is not None:
        schemas["StripeError"] = STRIPE_ERROR_SCHEMA
        added = _wire_fields()
        for endpoint in endpoints:
            returns = found.get((("payments", endpoint.operation, "out"), "serialization"))
            _describe_wire_fields(schemas, returns, added)
            path = "/payments" + _template(endpoint)
            paths.setdefault(path, {})[endpoint.method.lower()] = _stripe_operation(
                endpoint, returns, payments_cls)
        schemas.update(_WEBHOOK_SCHEMAS)
        for path, item in _webhook_paths().items():
            paths["/payments" + path] = item
    return {
        "openapi": "3.1.0",
        "info": {"title": "tether simulated services", "version": "1",
                 "description": "The simulated world's services on the wire: JSON APIs, an "
                                "OAuth2 token endpoint and a Stripe-compatible payments API."},
        "servers": [{"url": server_url}],
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": _security(json_services,
                                                                       server_url)},
    }


def _json_services() -> dict[str, type]:
    face = "tether.sim.wire.json_face:JsonFace"
    return {name: SERVICES[name] for name, where in DEFAULT_FACES.items()  # type: ignore[misc]
            if where == face and name in SERVICES}


def _json_operation(service: str, operation: str, doc: str, keyed: bool,
                    request: dict[str, Any], response: dict[str, Any] | None, *,
                    required: bool) -> dict[str, Any]:
    error = {"content": {"application/json": {"schema": {"$ref": _REF.format(
        model="JsonError")}}}}
    responses: dict[str, Any] = {
        "200": {"description": "the operation's result",
                "content": {"application/json": {"schema": response or {}}}},
        "400": {"description": "invalid_request: the body breaks the signature, or the "
                               "service refused the arguments", **error},
        "401": {"description": "invalid_token: missing, unknown or expired bearer token "
                               "(only when the world declares OAuth clients)", **error},
        "403": {"description": "insufficient_scope: the token's scopes leave out "
                               f"{service}", **error},
        "404": {"description": "not_found: no such object in the service", **error},
        "4XX": {"description": "another refusal of the service, at its own status", **error},
        "429": {"description": "rate_limited (Retry-After says when to come back)", **error},
        "5XX": {"description": "api_error: the service failed (nothing was applied when "
                               "injected)", **error},
    }
    if keyed:
        responses["409"] = {"description": "conflict: the idempotency key is in flight, or "
                                           "was used with other arguments", **error}
    summary, _, rest = doc.partition("\n")
    spec: dict[str, Any] = {
        "operationId": f"{service}.{operation}",
        "tags": [service],
        "summary": summary.strip() or operation,
        "requestBody": {"required": required,
                        "content": {"application/json": {"schema": request}}},
        "responses": responses,
        "security": [{"oauth2": [service]}, {"bearerAuth": []}, {}],
    }
    if rest.strip():
        spec["description"] = rest.strip()
    if keyed:
        spec["parameters"] = [{"name": "Idempotency-Key", "in": "header", "required": False,
                               "description": "the operation's idempotency key: a repeat "
                                              "with the same arguments replays the first "
                                              "answer (Idempotent-Replayed: true)",
                               "schema": {"type": "string"}}]
    return spec


def _token_operation() -> dict[str, Any]:
    error = {"content": {"application/json": {"schema": {"$ref": _REF.format(
        model="OAuthError")}}}}
    return {
        "operationId": "identity.token",
        "tags": ["identity"],
        "summary": "An access token for the client credentials grant (RFC 6749 §4.4)",
        "requestBody": {"required": True, "content": {"application/x-www-form-urlencoded": {
            "schema": _TOKEN_REQUEST}}},
        "security": [{"clientBasic": []}, {}],
        "responses": {
            "200": {"description": "the token (Cache-Control: no-store)", "content": {
                "application/json": {"schema": {"$ref": _REF.format(model="TokenResponse")}}}},
            "400": {"description": "invalid_request, unsupported_grant_type, invalid_scope",
                    **error},
            "401": {"description": "invalid_client", **error},
            "4XX": {"description": "another refusal", **error},
            "5XX": {"description": "temporarily_unavailable (injected)", **error},
        },
    }


def _security(services: Mapping[str, type], server_url: str) -> dict[str, Any]:
    return {
        "oauth2": {"type": "oauth2", "description": "client credentials; a token's scopes, "
                   "when granted, name the services it may call",
                   "flows": {"clientCredentials": {
                       # An absolute URL: the OpenAPI 3.1 schema wants a URI here.
                       "tokenUrl": f"{server_url.rstrip('/')}/identity{TOKEN_PATH}",
                       "scopes": {name: f"call the {name} API" for name in services}}}},
        "bearerAuth": {"type": "http", "scheme": "bearer"},
        "clientBasic": {"type": "http", "scheme": "basic"},
        "stripeKey": {"type": "http", "scheme": "bearer",
                      "description": "a test secret key, sk_test_…"},
    }


def _service_class(name: str) -> type | None:
    found = SERVICES.get(name)
    return found if isinstance(found, type) else None


def _stripe_endpoints() -> list[Any]:
    """The payments face's own endpoint table (none when this installation has no payments
    face): the document describes exactly the routes the face matches."""
    module, _, _ = DEFAULT_FACES["payments"].partition(":")
    try:
        face = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise
        return []
    table = getattr(face, "ENDPOINTS", None) or getattr(face, "_ENDPOINTS", None)
    return list(table or ())


def _wire_fields() -> Mapping[str, Mapping[str, Any]]:
    """The fields the payments face adds to the service's objects, by object type (called
    once :func:`_stripe_endpoints` found the face's module)."""
    module, _, _ = DEFAULT_FACES["payments"].partition(":")
    found = getattr(importlib.import_module(module), "WIRE_FIELDS", None)
    return found if isinstance(found, Mapping) else {}


def _describe_wire_fields(schemas: dict[str, Any], returns: dict[str, Any] | None,
                          added: Mapping[str, Mapping[str, Any]]) -> None:
    """Add to the component a payments answer refers to the fields the face adds to its
    objects (not required: one derived from fields a drift fault took away is left out)."""
    answer = returns or {}
    ref = answer.get("$ref") or answer.get("items", {}).get("$ref")  # an object or a list's
    name = ref.rpartition("/")[2] if isinstance(ref, str) else None
    component = schemas.get(name) if name is not None else None
    if not isinstance(component, dict):
        return
    properties = component.get("properties", {})
    kind = properties.get("object", {}).get("const")
    fields = added.get(kind, {}) if isinstance(kind, str) else {}
    if fields:
        component["properties"] = {**properties, **{
            field: copy.deepcopy(dict(schema)) for field, schema in fields.items()
            if field not in properties}}


def _template(endpoint: Any) -> str:
    """``/v1/charges/{id}`` from the endpoint's path pattern."""
    template = getattr(endpoint, "template", None)
    if isinstance(template, str):
        return template
    return re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", endpoint.path.pattern)


#: How the payments face reads each kind of parameter.
_STRIPE_KINDS: dict[str, dict[str, Any]] = {
    "string": {"type": "string"},
    # The face reads at most 18 digits, as a signed 64-bit integer fits.
    "integer": {"type": "integer", "minimum": -(10**18) + 1, "maximum": 10**18 - 1},
    "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
}

#: Stripe's error body.
STRIPE_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["error"],
    "properties": {"error": {
        "type": "object", "required": ["type", "message"],
        "properties": {"type": {"type": "string"}, "message": {"type": "string"},
                       "code": {"type": "string"}, "param": {"type": "string"},
                       "doc_url": {"type": "string"}}}},
}


#: The JSON Schema keywords a parameter takes over from the service's request model.
_CONSTRAINTS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength",
                "maxLength", "pattern", "enum")


def _request_constraints(payments_cls: type, operation: str) -> dict[str, dict[str, Any]]:
    """The constraints the payments service puts on ``operation``'s parameters, from its
    request model (``create_refund`` → ``RefundRequest``), by parameter."""
    namespace = vars(sys.modules[payments_cls.__module__])
    name = "".join(part.title() for part in operation.split("_")[1:]) + "Request"
    model = namespace.get(name)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return {}
    found: dict[str, dict[str, Any]] = {}
    for param, schema in model.model_json_schema().get("properties", {}).items():
        variants = [v for v in schema.get("anyOf", [schema]) if v.get("type") != "null"]
        if len(variants) == 1:
            found[param] = {k: v for k, v in variants[0].items() if k in _CONSTRAINTS}
    return found


def _stripe_operation(endpoint: Any, returns: dict[str, Any] | None,
                      payments_cls: type) -> dict[str, Any]:
    error = {"content": {"application/json": {"schema": {"$ref": _REF.format(
        model="StripeError")}}}}
    params: dict[str, str] = dict(endpoint.params)
    required: tuple[str, ...] = tuple(endpoint.required)
    constraints = _request_constraints(payments_cls, endpoint.operation)

    def schema(name: str) -> dict[str, Any]:
        kind = dict(_STRIPE_KINDS[params[name]])
        if kind["type"] != "object":
            kind.update(constraints.get(name, {}))
        if kind["type"] != "string":
            return kind
        if name in required:
            kind.setdefault("minLength", 1)  # an empty value reads as "not set"
            return kind
        # An empty optional value reads as "not set", whatever the constraints on a value.
        return {"anyOf": [{"type": "string", "maxLength": 0}, kind]} if len(kind) > 1 else kind

    parameters: list[dict[str, Any]] = [
        {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
        ] if "{id}" in _template(endpoint) else []
    answer = returns or {}
    if endpoint.listing:
        answer = {"type": "object", "required": ["object", "data", "has_more", "url"],
                  "properties": {"object": {"const": "list"},
                                 "data": answer or {"type": "array"},
                                 "has_more": {"type": "boolean"},
                                 "url": {"type": "string"}}}
        parameters += [
            {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                        "maximum": 100}},
            {"name": "starting_after", "in": "query", "schema": {"type": "string"}},
            {"name": "ending_before", "in": "query", "schema": {"type": "string"}}]
    spec: dict[str, Any] = {
        "operationId": f"payments.{endpoint.operation}",
        "tags": ["payments"],
        "summary": f"Stripe-compatible {endpoint.operation}",
        "security": [{"stripeKey": []}],
        "responses": {
            "200": {"description": "the Stripe object (or list object)",
                    "content": {"application/json": {"schema": answer}}},
            "400": {"description": "invalid_request_error", **error},
            "401": {"description": "no, an invalid or an expired API key", **error},
            "402": {"description": "card_error", **error},
            "404": {"description": "resource_missing", **error},
            "409": {"description": "idempotency_key_in_use", **error},
            "429": {"description": "rate_limit (Retry-After)", **error},
            "4XX": {"description": "another refusal", **error},
            "5XX": {"description": "api_error", **error},
        },
    }
    if endpoint.method == "GET":
        parameters += [{"name": name, "in": "query", "schema": schema(name)}
                       for name in params]
    else:
        parameters.append({"name": "Idempotency-Key", "in": "header", "required": False,
                           "schema": {"type": "string", "maxLength": 255}})
        body: dict[str, Any] = {"type": "object", "additionalProperties": False,
                                "properties": {name: schema(name) for name in params}}
        if required:
            body["required"] = list(required)
        encoding = {name: {"style": "deepObject", "explode": True}
                    for name, kind in params.items() if kind == "metadata"}
        form: dict[str, Any] = {"schema": body}
        if encoding:
            form["encoding"] = encoding
        spec["requestBody"] = {"required": bool(required), "content": {
            "application/x-www-form-urlencoded": form}}
    if parameters:
        spec["parameters"] = parameters
    return spec


# -- the webhook endpoints and events API (tether.sim.wire.webhook_api) ----------------------

_WEBHOOK_SCHEMAS: dict[str, Any] = {
    "WebhookEndpoint": {
        "type": "object",
        "required": ["id", "object", "url", "enabled_events", "created", "metadata", "status"],
        "properties": {
            "id": {"type": "string"}, "object": {"const": "webhook_endpoint"},
            "url": {"type": "string"},
            "enabled_events": {"type": "array", "items": {"type": "string"}},
            "created": {"type": "integer"},
            "api_version": {"type": ["string", "null"]},
            "description": {"type": ["string", "null"]},
            "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
            "livemode": {"type": "boolean"}, "application": {"type": "null"},
            "status": {"enum": ["enabled", "disabled"]},
            "secret": {"type": "string", "description": "only in the answer that creates it"}}},
    "Event": {
        "type": "object", "required": ["id", "object", "type", "created", "data"],
        "properties": {
            "id": {"type": "string"}, "object": {"const": "event"}, "type": {"type": "string"},
            "created": {"type": "integer"}, "data": {"type": "object"},
            "api_version": {"type": ["string", "null"]}, "livemode": {"type": "boolean"},
            "pending_webhooks": {"type": "integer"}, "request": {"type": ["object", "null"]}}},
}

_EVENT_TYPES: dict[str, Any] = {"type": "array", "minItems": 1,
                                "items": {"enum": ["*", *KNOWN_EVENTS]}}


def _webhook_paths() -> dict[str, Any]:
    """The paths :mod:`~tether.sim.wire.webhook_api` answers beside the payments face's own
    (not service operations: no fault reaches them, so no 429 or injected 5xx)."""
    endpoint = {"$ref": _REF.format(model="WebhookEndpoint")}
    event = {"$ref": _REF.format(model="Event")}
    ident = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]
    page = [{"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                        "maximum": 100}},
            {"name": "starting_after", "in": "query", "schema": {"type": "string"}},
            {"name": "ending_before", "in": "query", "schema": {"type": "string"}}]
    writable = {"url": {"type": "string", "minLength": 1},
                "enabled_events": _EVENT_TYPES,
                "description": {"type": "string"},
                "metadata": {"type": "object", "additionalProperties": {"type": "string"}}}

    def operation(name: str, answer: dict[str, Any], parameters: list[dict[str, Any]],
                  body: dict[str, Any] | None = None, listing: bool = False) -> dict[str, Any]:
        error = {"content": {"application/json": {"schema": {"$ref": _REF.format(
            model="StripeError")}}}}
        if listing:
            answer = {"type": "object", "required": ["object", "data", "has_more", "url"],
                      "properties": {"object": {"const": "list"},
                                     "data": {"type": "array", "items": answer},
                                     "has_more": {"type": "boolean"},
                                     "url": {"type": "string"}}}
        spec: dict[str, Any] = {
            "operationId": f"payments.webhooks.{name}", "tags": ["payments"],
            "summary": f"Stripe-compatible {name}", "security": [{"stripeKey": []}],
            "responses": {
                "200": {"description": "the Stripe object (or list object)",
                        "content": {"application/json": {"schema": answer}}},
                "400": {"description": "invalid_request_error", **error},
                "401": {"description": "no or an invalid API key", **error},
                "404": {"description": "resource_missing", **error},
                "4XX": {"description": "another refusal", **error}}}
        if parameters:
            spec["parameters"] = parameters
        if body is not None:
            spec["requestBody"] = {"required": bool(body.get("required")), "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {"type": "object", "additionalProperties": False, **body},
                    "encoding": {"metadata": {"style": "deepObject", "explode": True}}}}}
        return spec

    created = {"required": ["url", "enabled_events"],
               "properties": {**writable, "api_version": {"type": "string"}}}
    updated = {"properties": {**writable, "disabled": {"type": "boolean"}}}
    deleted = {"type": "object", "required": ["id", "object", "deleted"],
               "properties": {"id": {"type": "string"}, "object": {"const": "webhook_endpoint"},
                              "deleted": {"const": True}}}
    filters = [{"name": "type", "in": "query", "schema": {"type": "string"},
                "description": "an event type, or Stripe's wildcard (charge.*)"},
               {"name": "created", "in": "query", "schema": {"type": "integer"}}]
    return {
        "/v1/webhook_endpoints": {
            "get": operation("list_webhook_endpoints", endpoint, page, listing=True),
            "post": operation("create_webhook_endpoint", endpoint, [], created)},
        "/v1/webhook_endpoints/{id}": {
            "get": operation("retrieve_webhook_endpoint", endpoint, ident),
            "post": operation("update_webhook_endpoint", endpoint, ident, updated),
            "delete": operation("delete_webhook_endpoint", deleted, ident)},
        "/v1/events": {"get": operation("list_events", event, page + filters, listing=True)},
        "/v1/events/{id}": {"get": operation("retrieve_event", event, ident)},
    }
