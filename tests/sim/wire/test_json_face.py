"""The JSON faces: POST /{service}/v1/{operation} validated against the operation's signature,
plain JSON answers, every error in one shape, Idempotency-Key, bearer tokens when OAuth clients
are declared, and the wire's faults in the face's shape — through real httpx clients."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tether.sim import Environment, scenario_from_dict
from tether.sim.episode import environment_for
from tether.sim.services import CRM, Calendar, Email, KnowledgeBase
from tether.sim.wire.json_face import operation_specs

WORLD: dict[str, Any] = {
    "crm": {"customers": [{"id": "c1", "name": "Ada", "email": "ada@example.com"}],
            "tickets": [{"id": "t1", "customer": "c1", "subject": "Charged twice"}]},
    "calendar": {"people": [{"id": "ada@example.com"}]},
    "kb": {"documents": [{"id": "kb_1", "title": "Refund policy", "body": "Within 14 days."}]},
}
CLIENTS = {"access_ttl_s": 600, "clients": [
    {"client_id": "desk", "client_secret": "s3cret"},
    {"client_id": "reader", "client_secret": "r34d", "scopes": ["kb"]}]}


def _env(faults: list[dict[str, Any]] | None = None, identity: dict[str, Any] | None = None,
         ) -> Environment:
    world = {**WORLD, **({"identity": identity} if identity is not None else {})}
    return environment_for(scenario_from_dict({
        "name": "json", "agent": "tests.sim.own_agents.credit:agent", "task": "t",
        "world": world, "faults": faults or []}), 0)


def _token(http: httpx.Client, client: str = "desk", secret: str = "s3cret") -> str:
    answer = http.post("/identity/oauth/token", data={"grant_type": "client_credentials"},
                       auth=(client, secret))
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


def _error(answer: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    error: dict[str, Any] = answer.json()["error"]
    assert (error["type"], error["status"]) == (kind, status)
    assert isinstance(error["message"], str) and error["message"]
    return error


def test_an_operation_answers_its_plain_json_and_is_recorded() -> None:
    """A valid call answers 200 with what env.client answers, recorded as a ServiceCall."""
    env = _env()
    with env.httpx_client() as http:
        answer = http.post("/crm/v1/get_customer", json={"id": "c1"})
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    assert answer.json() == env.service("crm").get_customer("c1").model_dump(mode="json")
    call = env.calls[-1]
    assert (call.target, call.args, call.error) == ("crm.get_customer", {"id": "c1"}, "")


def test_async_client_reaches_the_same_face() -> None:
    """An httpx.AsyncClient on the in-process transport gets the same answers."""
    env = _env()

    async def run() -> list[Any]:
        async with env.async_httpx_client() as http:
            found = await http.post("/kb/v1/search", json={"query": "refund", "limit": 1})
            missing = await http.post("/kb/v1/get", json={"id": "nope"})
            return [found.json()[0]["id"], missing.status_code]

    assert asyncio.run(run()) == ["kb_1", 404]


@pytest.mark.parametrize(("body", "param", "says"), [
    (b"{not json", None, "not valid JSON"),
    (b"[1, 2]", None, "must be a JSON object"),
    (b"{}", "id", "needs id"),
    (b'{"id": 5}', "id", "valid string"),
    (b'{"id": "c1", "zip": 1}', "zip", "takes no argument zip"),
])
def test_a_body_that_breaks_the_signature_is_a_400(body: bytes, param: str | None,
                                                   says: str) -> None:
    """Invalid JSON, a non-object, a missing, mistyped or unknown argument: 400 with param."""
    env = _env()
    with env.httpx_client() as http:
        answer = http.post("/crm/v1/get_customer", content=body,
                           headers={"content-type": "application/json"})
    error = _error(answer, 400, "invalid_request")
    assert error.get("param") == param and says in error["message"]
    assert env.calls == []  # refused at the face: never a call of the service


def test_numbers_are_strict_and_finite() -> None:
    """A number sent as a string, a boolean as a number, NaN or Infinity are refused."""
    env = _env()
    base = {"attendees": ["ada@example.com"], "window_start": "2026-01-05T00:00:00Z",
            "window_end": "2026-01-06T00:00:00Z"}
    with env.httpx_client() as http:
        for bad in ('"30"', "true", "NaN"):
            body = json.dumps(base)[:-1] + f', "duration_min": {bad}}}'
            answer = http.post("/calendar/v1/find_slots", content=body.encode())
            assert _error(answer, 400, "invalid_request")["param"] == "duration_min"
        body = json.dumps({**base, "duration_min": 30})
        answer = http.post("/calendar/v1/find_slots",
                           content=body.replace('"2026-01-05T00:00:00Z"', "Infinity").encode())
        refused = _error(answer, 400, "invalid_request")
    assert refused["param"] == "window_start" and "service" not in refused  # by the face
    assert env.calls == []


def test_a_time_beyond_year_9999_is_a_400_not_a_crash() -> None:
    """Epoch seconds too large for a date are the caller's mistake, in the face's shape."""
    env = _env()
    event = {"title": "Call", "attendees": ["ada@example.com"], "start": 1e15,
             "end": 1e15 + 1800}
    slots = {"attendees": ["ada@example.com"], "duration_min": 30, "window_start": 1e15,
             "window_end": 1e15 + 86_400}
    with env.httpx_client() as http:
        booked = http.post("/calendar/v1/create_event", json=event)
        found = http.post("/calendar/v1/find_slots", json=slots)
    assert _error(booked, 400, "invalid_request")["param"] == "start"
    assert _error(found, 400, "invalid_request")["param"] == "window_start"


def test_unknown_operations_and_methods() -> None:
    """No such operation is a 404; anything but POST a 405 with Allow: POST."""
    env = _env()
    with env.httpx_client() as http:
        _error(http.post("/crm/v1/delete_everything", json={}), 404, "not_found")
        _error(http.post("/crm/v2/get_customer", json={"id": "c1"}), 404, "not_found")
        _error(http.post("/crm/v1/snapshot", json={}), 404, "not_found")
        refused = http.get("/crm/v1/get_customer")
    assert _error(refused, 405, "method_not_allowed") and refused.headers["allow"] == "POST"


def test_service_errors_keep_their_status_and_fields() -> None:
    """NotFound, the service's InvalidRequest and Conflict arrive at their status with their
    own fields."""
    env = _env()
    mail = {"to": "ada@example.com", "subject": "Refund", "body": "Done."}
    with env.httpx_client() as http:
        missing = _error(http.post("/crm/v1/get_ticket", json={"id": "t9"}), 404, "not_found")
        status = _error(http.post("/crm/v1/update_ticket", json={"id": "t1", "status": "gone"}),
                        400, "invalid_request")
        http.post("/email/v1/send", json=mail, headers={"Idempotency-Key": "k1"})
        clash = _error(http.post("/email/v1/send", json={**mail, "body": "Other."},
                                 headers={"Idempotency-Key": "k1"}), 409, "conflict")
    assert (missing["resource"], missing["resource_id"], missing["error"]) == (
        "ticket", "t9", "NotFound")
    assert (status["param"], status["service"]) == ("status", "crm")
    assert (clash["reason"], clash["retryable"]) == ("mismatch", False)


def test_idempotency_key_header_replays_the_first_send() -> None:
    """The Idempotency-Key header is the operation's key: a repeat replays, one effect."""
    env = _env()
    mail = {"to": "ada@example.com", "subject": "Refund", "body": "Done."}
    with env.httpx_client() as http:
        first = http.post("/email/v1/send", json=mail, headers={"Idempotency-Key": "k1"})
        again = http.post("/email/v1/send", json=mail, headers={"Idempotency-Key": "k1"})
        in_body = http.post("/email/v1/send", json={**mail, "idempotency_key": "k2"})
    assert first.json()["id"] == again.json()["id"] == "msg_0001"
    assert "idempotent-replayed" not in first.headers
    assert again.headers["idempotent-replayed"] == "true"
    assert len(env.world.ledger.of("email", "send")) == 1
    assert env.calls[-1].keyed and env.calls[-1].args["idempotency_key"] == "k1"
    assert "Idempotency-Key header" in _error(in_body, 400, "invalid_request")["message"]


def test_without_declared_clients_the_apis_are_open() -> None:
    """A world whose identity declares no OAuth clients answers calls without a token."""
    env = _env(identity={})
    with env.httpx_client() as http:
        assert http.post("/crm/v1/get_customer", json={"id": "c1"}).status_code == 200


def test_bearer_tokens_are_required_when_clients_are_declared() -> None:
    """Missing, unknown and expired tokens are 401 invalid_token with RFC 6750 challenges;
    a token whose scopes leave the service out is 403; a valid one passes."""
    env = _env(identity=CLIENTS)
    with env.httpx_client() as http:
        missing = http.post("/crm/v1/get_customer", json={"id": "c1"})
        forged = http.post("/crm/v1/get_customer", json={"id": "c1"},
                           headers={"Authorization": "Bearer at_forged"})
        token = _token(http)
        ok = http.post("/crm/v1/get_customer", json={"id": "c1"},
                       headers={"Authorization": f"Bearer {token}"})
        scoped = http.post("/crm/v1/get_customer", json={"id": "c1"},
                           headers={"Authorization": f"Bearer {_token(http, 'reader', 'r34d')}"})
        env.clock.advance(600)
        expired = http.post("/crm/v1/get_customer", json={"id": "c1"},
                            headers={"Authorization": f"Bearer {token}"})
    _error(missing, 401, "invalid_token")
    assert missing.headers["www-authenticate"] == 'Bearer realm="tether-sim"'
    _error(forged, 401, "invalid_token")
    assert 'error="invalid_token"' in forged.headers["www-authenticate"]
    assert ok.status_code == 200
    _error(scoped, 403, "insufficient_scope")
    assert 'error="insufficient_scope"' in scoped.headers["www-authenticate"]
    assert "expired" in _error(expired, 401, "invalid_token")["message"]
    assert 'error_description="The access token expired"' in expired.headers["www-authenticate"]
    assert [c.target for c in env.calls] == ["identity.token", "crm.get_customer",
                                             "identity.token"]


def test_auth_expiry_fault_expires_the_token_for_real() -> None:
    """The auth_expiry fault answers the face's 401, and the token stays expired: the client
    must fetch a new one (a blind retry with the old token fails again)."""
    env = _env([{"kind": "auth_expiry", "target": "crm.get_customer", "on_call": [1]}],
               identity=CLIENTS)
    with env.httpx_client() as http:
        token = _token(http)
        bearer = {"Authorization": f"Bearer {token}"}
        faulted = http.post("/crm/v1/get_customer", json={"id": "c1"}, headers=bearer)
        retried = http.post("/crm/v1/get_customer", json={"id": "c1"}, headers=bearer)
        renewed = http.post("/crm/v1/get_customer", json={"id": "c1"},
                            headers={"Authorization": f"Bearer {_token(http)}"})
    assert "expired" in faulted.headers["www-authenticate"]
    _error(faulted, 401, "invalid_token")
    _error(retried, 401, "invalid_token")
    assert renewed.status_code == 200


def test_auth_expiry_fault_without_clients_is_still_a_401() -> None:
    """In an open world the auth_expiry fault is the same 401 in the face's shape."""
    env = _env([{"kind": "auth_expiry", "target": "kb.search"}])
    with env.httpx_client() as http:
        _error(http.post("/kb/v1/search", json={"query": "refund"}), 401, "invalid_token")


def test_auth_expiry_in_an_open_world_points_at_a_retry_not_a_token_endpoint() -> None:
    """Without OAuth clients no token can be fetched (the token endpoint refuses every
    client), so the fault's 401 says to call again, and the call again is answered."""
    env = _env([{"kind": "auth_expiry", "target": "kb.search", "on_call": [1]}])
    with env.httpx_client() as http:
        faulted = http.post("/kb/v1/search", json={"query": "refund"})
        again = http.post("/kb/v1/search", json={"query": "refund"})
    message = _error(faulted, 401, "invalid_token")["message"]
    assert "token endpoint" not in message and "call the kb API again" in message
    assert again.status_code == 200


@pytest.mark.parametrize(("fault", "status", "kind", "retry_after"), [
    ({"kind": "error", "status": 429, "retry_after_s": 1.5}, 429, "rate_limited", "2"),
    ({"kind": "error", "status": 503}, 503, "api_error", None),
])
def test_injected_statuses_are_in_the_faces_shape(fault: dict[str, Any], status: int,
                                                  kind: str, retry_after: str | None) -> None:
    """An injected 429 carries Retry-After (whole seconds, rounded up); both are retryable
    and apply nothing."""
    env = _env([{**fault, "target": "email.send"}])
    with env.httpx_client() as http:
        answer = http.post("/email/v1/send", json={"to": "ada@example.com", "subject": "s",
                                                    "body": "b"})
    assert _error(answer, status, kind)["retryable"] is True
    assert answer.headers.get("retry-after") == retry_after
    assert env.world.ledger.of("email") == []


def test_drifted_answers_reach_the_client() -> None:
    """A schema_drift fault changes the JSON the face sends."""
    env = _env([{"kind": "schema_drift", "target": "crm.get_customer",
                 "rename": {"email": "email_address"}}])
    with env.httpx_client() as http:
        body = http.post("/crm/v1/get_customer", json={"id": "c1"}).json()
    assert "email" not in body and body["email_address"] == "ada@example.com"


def test_specs_cover_every_declared_operation() -> None:
    """Every operation a JSON service declares gets an argument model (keys left out)."""
    for cls in (CRM, Email, Calendar, KnowledgeBase):
        specs = operation_specs(cls)
        assert list(specs) == list(cls.OPERATIONS)
    assert operation_specs(Email)["send"].keyed
    assert "idempotency_key" not in operation_specs(Email)["send"].request.model_fields


_JSON = st.recursive(st.none() | st.booleans() | st.integers()
                     | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)
_OPERATIONS = [(s, o) for s, cls in (("crm", CRM), ("email", Email), ("calendar", Calendar),
                                     ("kb", KnowledgeBase)) for o in cls.OPERATIONS]


@given(target=st.sampled_from(_OPERATIONS),
       body=st.dictionaries(st.sampled_from(["id", "email", "status", "text", "query", "limit",
                                             "attendees", "duration_min", "window_start",
                                             "window_end", "start", "end", "title", "to",
                                             "subject", "body", "version", "customer",
                                             "customer_or_ticket", "person", "x"]),
                            _JSON, max_size=5) | _JSON)
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_any_body_gets_an_answer_in_the_faces_shape(target: tuple[str, str], body: Any) -> None:
    """Whatever JSON arrives, the face answers 200 or a 4xx in its shape, never crashes."""
    service, operation = target
    env = _env()
    with env.httpx_client() as http:
        answer = http.post(f"/{service}/v1/{operation}", json=body)
    assert answer.status_code in (200, 400, 404, 409), answer.text
    if answer.status_code != 200:
        _error(answer, answer.status_code, answer.json()["error"]["type"])


_ARGS_ORDER = """
from tests.sim.wire.test_json_face import _env
env = _env()
with env.httpx_client() as http:
    http.post("/calendar/v1/find_slots", json={
        "limit": 2, "window_end": "2026-01-06T00:00:00Z", "window_start": "2026-01-05T00:00:00Z",
        "duration_min": 30, "attendees": ["ada@example.com"]})
print(",".join(env.calls[-1].args))
"""


def test_recorded_arguments_follow_the_signature_in_any_process() -> None:
    """The arguments a call records are in signature order, whatever PYTHONHASHSEED is."""
    orders = set()
    for seed in ("1", "2"):
        done = subprocess.run([sys.executable, "-c", _ARGS_ORDER], capture_output=True,
                              text=True, check=True, cwd=Path(__file__).parents[3],
                              env={**os.environ, "PYTHONHASHSEED": seed})
        orders.add(done.stdout.strip())
    assert orders == {"attendees,duration_min,window_start,window_end,limit"}
