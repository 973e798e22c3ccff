"""The HTTP faces fuzzed from their OpenAPI document (schemathesis): no request makes the world
answer 500, and every refusal comes back in the service's own error shape, documented."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from schemathesis.specs.openapi.checks import (
    negative_data_rejection,
    positive_data_acceptance,
    unsupported_method,
)

from tether.sim import scenario_from_dict
from tether.sim.episode import environment_for
from tether.sim.services import CRM, Calendar, Email, KnowledgeBase
from tether.sim.wire import Gateway, WireRequest, stripe_face
from tether.sim.wire.openapi import openapi_document

WORLD: dict[str, Any] = {
    "payments": {"customers": [{"id": "cus_1", "email": "ann@example.com", "name": "Ann"}],
                 "charges": [{"id": "ch_1", "customer": "cus_1", "amount": 5_000}]},
    "crm": {"customers": [{"id": "c1", "name": "Ada", "email": "ada@example.com"}],
            "tickets": [{"id": "t1", "customer": "c1", "subject": "Charged twice"}]},
    "email": {"inbox": [{"id": "in_1", "sender": "ada@example.com", "subject": "Refund?",
                         "body": "I was charged twice."}]},
    "calendar": {"people": [{"id": "ada@example.com"}, {"id": "bo@example.com"}]},
    "kb": {"documents": [{"id": "kb_1", "title": "Refund policy", "body": "Within 14 days."}]},
}

#: A test secret key of the payments face.
KEY = "sk_test_fuzz"
_GATEWAY: list[Gateway] = []


def _wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """The world's gateway as a WSGI app (schemathesis drives it in-process)."""
    size = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(size) if size else b""
    headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items()
               if k.startswith("HTTP_")}
    if environ.get("CONTENT_TYPE"):
        headers["content-type"] = environ["CONTENT_TYPE"]
    query = environ.get("QUERY_STRING", "")
    target = environ.get("PATH_INFO", "/") + (f"?{query}" if query else "")
    answer = _GATEWAY[-1].handle(WireRequest.of(environ["REQUEST_METHOD"], target, headers,
                                                body))
    start_response(f"{answer.status} X", list(answer.headers.items()))
    return [answer.body]


SCHEMA = schemathesis.openapi.from_dict(openapi_document())
SCHEMA.app = _wsgi


@SCHEMA.auth()
class _StripeKey:
    """The payments face's test secret key (schemathesis also tries the calls without it)."""

    def get(self, case: Any, context: Any) -> str:
        return KEY

    def set(self, case: Any, data: str, context: Any) -> None:
        if case.operation.path.startswith("/payments/"):
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@pytest.fixture(autouse=True)
def _world() -> Iterator[None]:
    scenario = scenario_from_dict({"name": "fuzz", "agent": "tests.sim.own_agents.credit:agent",
                                   "task": "t", "world": WORLD})
    _GATEWAY.append(environment_for(scenario, 0).gateway)
    yield
    _GATEWAY.pop()


def _own_shape(path: str, status: int, body: Any) -> bool:
    """Whether an error body is in the shape of the service that sent it."""
    if not isinstance(body, dict) or "error" not in body:
        return False
    if path.startswith("/identity/"):
        return isinstance(body["error"], str)
    error = body["error"]
    if path.startswith("/payments/"):
        return isinstance(error, dict) and isinstance(error.get("type"), str) \
            and isinstance(error.get("message"), str)
    return isinstance(error, dict) and isinstance(error.get("type"), str) \
        and isinstance(error.get("message"), str) and error.get("status") == status


def _refused_by_the_face(case: Any, status: int, body: Any) -> bool:
    """Whether a schema-valid request was refused by the face's own reading of it: the
    document then promises what the face does not accept. (A service's business rule — a
    ticket status outside open/pending/closed, an address that is no address, a refund larger
    than the charge — may refuse schema-valid data, as real APIs do; those refusals come from
    the service, not the face.)"""
    if case.meta is None or case.meta.generation.mode.is_negative or status != 400:
        return False
    error = body.get("error") if isinstance(body, dict) else None
    if case.operation.path.startswith("/payments/"):
        # The face's own reading: unknown, missing or mistyped parameters.
        code = error.get("code") if isinstance(error, dict) else None
        message = str(error.get("message", "")) if isinstance(error, dict) else ""
        return code in ("parameter_unknown", "parameter_missing", "parameter_invalid_string") \
            or message.startswith("Invalid integer")
    if case.operation.path.startswith("/identity/"):
        return False  # every refusal of the token endpoint is the service's (RFC 6749)
    return isinstance(error, dict) and "service" not in error


@SCHEMA.parametrize()
@settings(max_examples=15, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_no_server_errors_and_errors_in_the_services_shape(case: Any) -> None:
    """Generated requests (valid and not) never get a 500, refusals are in the service's own
    shape, responses match the document, and what it calls valid the face accepts."""
    response = case.call()
    body = json.loads(response.content) if response.content else None
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert _own_shape(case.operation.path, response.status_code, body), response.text
    assert not _refused_by_the_face(case, response.status_code, body), response.text
    excluded: list[Any] = [positive_data_acceptance]
    if case.operation.path.startswith("/payments/"):
        # Stripe answers a method it does not route with 404 "Unrecognized request URL", not
        # 405; the face does as Stripe does. And a form carries only strings: a "wrongly
        # typed" value such as true for a name arrives as the valid string "true", so the
        # document's types cannot be violated through a form body.
        excluded += [unsupported_method, negative_data_rejection]
    case.validate_response(response, excluded_checks=excluded)


def test_the_document_is_valid_openapi_3_1() -> None:
    """The document passes the OpenAPI 3.1 meta-schema and its schemas are JSON Schema
    2020-12, every operation named once."""
    SCHEMA.validate()
    document = openapi_document(server_url="http://127.0.0.1:8765")
    for schema in document["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
    ids = [op["operationId"] for path in document["paths"].values() for op in path.values()]
    assert len(ids) == len(set(ids))
    token_url = document["components"]["securitySchemes"]["oauth2"]["flows"][
        "clientCredentials"]["tokenUrl"]
    assert token_url == "http://127.0.0.1:8765/identity/oauth/token"


def test_the_document_describes_every_route_the_faces_serve() -> None:
    """Each JSON operation, the token endpoint, each route of the payments face and of its
    webhook endpoints and events API has its path, and nothing else is described."""
    document = openapi_document()
    described = {(method.upper(), path) for path, item in document["paths"].items()
                 for method in item}
    json_routes = {("POST", f"/{name}/v1/{operation}")
                   for name, cls in (("crm", CRM), ("email", Email), ("calendar", Calendar),
                                     ("kb", KnowledgeBase)) for operation in cls.OPERATIONS}
    payments = {(e.method, "/payments" + e.path.pattern.replace("(?P<id>[^/]+)", "{id}"))
                for e in getattr(stripe_face, "_ENDPOINTS", ())}
    assert ("POST", "/payments/v1/refunds") in payments  # the table is read, not missed
    webhooks = {("GET", "/payments/v1/webhook_endpoints"),
                ("POST", "/payments/v1/webhook_endpoints"),
                ("GET", "/payments/v1/webhook_endpoints/{id}"),
                ("POST", "/payments/v1/webhook_endpoints/{id}"),
                ("DELETE", "/payments/v1/webhook_endpoints/{id}"),
                ("GET", "/payments/v1/events"), ("GET", "/payments/v1/events/{id}")}
    assert described == json_routes | payments | webhooks | {
        ("POST", "/identity/oauth/token")}
