"""The token endpoint: the OAuth2 client credentials grant over HTTP (RFC 6749 §4.4) — form
bodies, Basic or body client authentication, tokens that expire on the virtual clock and are
asked for again, the RFC's error JSON, and the wire's faults on identity.token."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import httpx
import pytest

from tether.sim import Environment, scenario_from_dict
from tether.sim.episode import environment_for

IDENTITY = {"access_ttl_s": 300, "clients": [
    {"client_id": "desk", "client_secret": "s3cret"},
    {"client_id": "a:b&c", "client_secret": "p@ss word", "scopes": ["crm", "kb"]},
    {"client_id": "reader", "client_secret": "r34d", "scopes": ["kb"]}]}
WORLD = {"identity": IDENTITY,
         "crm": {"customers": [{"id": "c1", "name": "Ada", "email": "ada@example.com"}]}}
GRANT = {"grant_type": "client_credentials"}


def _env(faults: list[dict[str, Any]] | None = None) -> Environment:
    return environment_for(scenario_from_dict({
        "name": "oauth", "agent": "tests.sim.own_agents.credit:agent", "task": "t",
        "world": WORLD, "faults": faults or []}), 0)


def _refused(answer: httpx.Response, status: int, error: str) -> str:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["error"] == error and set(body) == {"error", "error_description"}
    assert answer.headers["cache-control"] == "no-store"
    return str(body["error_description"])


def test_token_by_basic_and_by_body() -> None:
    """Both client authentication methods get a Bearer token, never cached, that calls work
    with; the issue is the identity service's ledger effect."""
    env = _env()
    with env.httpx_client() as http:
        basic = http.post("/identity/oauth/token", data=GRANT, auth=("desk", "s3cret"))
        body = http.post("/identity/oauth/token",
                         data={**GRANT, "client_id": "desk", "client_secret": "s3cret"})
        call = http.post("/crm/v1/get_customer", json={"id": "c1"},
                         headers={"Authorization": f"Bearer {body.json()['access_token']}"})
    assert basic.json() == {"access_token": "at_0001", "token_type": "Bearer",
                            "expires_in": 300}
    assert (basic.headers["cache-control"], basic.headers["pragma"]) == ("no-store", "no-cache")
    assert body.json()["access_token"] == "at_0002" and call.status_code == 200
    assert [e.key for e in env.world.ledger.of("identity", "issue")] == ["grant:desk"] * 2


def test_a_parameter_without_a_value_is_as_if_omitted() -> None:
    """RFC 6749 §3.2: an empty client_secret beside Basic is no second authentication, and an
    empty client_id beside Basic names no other client: both are taken as omitted."""
    env = _env()
    with env.httpx_client() as http:
        answers = [http.post("/identity/oauth/token", data={**GRANT, name: ""},
                             auth=("desk", "s3cret")) for name in ("client_secret", "client_id")]
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]


def test_basic_credentials_are_form_decoded() -> None:
    """RFC 6749 §2.3.1: id and secret are form-encoded before Basic; scopes come back."""
    env = _env()
    pair = b"a%3Ab%26c:p%40ss+word"
    with env.httpx_client() as http:
        answer = http.post("/identity/oauth/token", data={**GRANT, "scope": "kb"},
                           headers={"Authorization": "Basic " + base64.b64encode(pair).decode()})
    assert answer.status_code == 200, answer.text
    assert answer.json()["scope"] == "kb"


def test_the_token_expires_and_the_client_asks_again() -> None:
    """Sync: a call after expires_in seconds of virtual time is a 401 expired; a new token
    from the endpoint carries on."""
    env = _env()
    with env.httpx_client() as http:
        token = http.post("/identity/oauth/token", data=GRANT, auth=("desk", "s3cret")).json()
        bearer = {"Authorization": f"Bearer {token['access_token']}"}
        env.clock.advance(token["expires_in"] - 1)
        assert http.post("/crm/v1/get_customer", json={"id": "c1"}, headers=bearer).is_success
        env.clock.advance(1)
        expired = http.post("/crm/v1/get_customer", json={"id": "c1"}, headers=bearer)
        assert expired.status_code == 401
        assert "expired" in expired.headers["www-authenticate"]
        fresh = http.post("/identity/oauth/token", data=GRANT, auth=("desk", "s3cret")).json()
        again = http.post("/crm/v1/get_customer", json={"id": "c1"},
                          headers={"Authorization": f"Bearer {fresh['access_token']}"})
    assert again.status_code == 200 and fresh["access_token"] != token["access_token"]


class _ClientCredentials(httpx.Auth):
    """What an agent's HTTP client does: fetch a token, send it, fetch again on a 401."""

    requires_response_body = True

    def __init__(self, client_id: str, secret: str) -> None:
        pair = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
        self.basic, self.token, self.fetched = f"Basic {pair}", "", 0

    def auth_flow(self, request: httpx.Request) -> Any:
        for attempt in range(2):
            if not self.token or attempt:
                answer = yield httpx.Request(
                    "POST", request.url.copy_with(path="/identity/oauth/token"), data=GRANT,
                    headers={"Authorization": self.basic})
                self.token = answer.json().get("access_token", "")
                self.fetched += 1
            request.headers["Authorization"] = f"Bearer {self.token}"
            response = yield request
            if response.status_code != 401:
                return


def test_async_client_refreshes_through_an_auth_flow() -> None:
    """Async: an httpx.Auth flow fetches a token, and fetches a new one when it expires."""
    env = _env()

    async def run() -> list[int]:
        auth = _ClientCredentials("desk", "s3cret")
        async with env.async_httpx_client(auth=auth) as http:
            first = await http.post("/crm/v1/get_customer", json={"id": "c1"})
            env.clock.advance(300)
            second = await http.post("/crm/v1/get_customer", json={"id": "c1"})
        return [first.status_code, second.status_code, auth.fetched]

    assert asyncio.run(run()) == [200, 200, 2]


@pytest.mark.parametrize(("data", "auth", "status", "error", "says"), [
    ({"grant_type": "password"}, ("desk", "s3cret"), 400, "unsupported_grant_type",
     "client_credentials"),
    ({}, ("desk", "s3cret"), 400, "invalid_request", "grant_type"),
    ({**GRANT, "client_id": "desk", "client_secret": "nope"}, None, 401, "invalid_client",
     "wrong"),
    ({**GRANT, "client_id": "ghost", "client_secret": "x"}, None, 401, "invalid_client",
     "not registered"),
    (GRANT, None, 401, "invalid_client", "no client credentials"),
    ({**GRANT, "scope": "email"}, ("reader", "r34d"), 400, "invalid_scope", "email"),
    ({**GRANT, "client_secret": "s3cret"}, ("desk", "s3cret"), 400, "invalid_request",
     "twice"),
])
def test_refusals_are_rfc_6749_json(data: dict[str, str], auth: tuple[str, str] | None,
                                    status: int, error: str, says: str) -> None:
    """Each refusal carries the §5.2 code at its status, with a description saying why."""
    env = _env()
    with env.httpx_client() as http:
        answer = http.post("/identity/oauth/token", data=data, auth=auth)
    assert says in _refused(answer, status, error)
    assert env.world.ledger.of("identity") == []


def test_invalid_basic_credentials_get_a_basic_challenge() -> None:
    """A client that tried Basic and failed gets 401 with WWW-Authenticate: Basic."""
    env = _env()
    with env.httpx_client() as http:
        wrong = http.post("/identity/oauth/token", data=GRANT, auth=("desk", "nope"))
        garbled = http.post("/identity/oauth/token", data=GRANT,
                            headers={"Authorization": "Basic !!!"})
        in_body = http.post("/identity/oauth/token",
                            data={**GRANT, "client_id": "desk", "client_secret": "nope"})
    for answer in (wrong, garbled):
        _refused(answer, 401, "invalid_client")
        assert answer.headers["www-authenticate"].startswith("Basic ")
    assert "www-authenticate" not in in_body.headers


def test_the_request_must_be_a_form_posted_once_per_parameter() -> None:
    """JSON bodies, repeated parameters, other methods and paths are refused."""
    env = _env()
    with env.httpx_client() as http:
        as_json = http.post("/identity/oauth/token", json=GRANT, auth=("desk", "s3cret"))
        repeated = http.post("/identity/oauth/token", auth=("desk", "s3cret"),
                             content=b"grant_type=client_credentials&scope=a&scope=b",
                             headers={"content-type": "application/x-www-form-urlencoded"})
        fetched = http.get("/identity/oauth/token")
        elsewhere = http.post("/identity/oauth/authorize", data=GRANT)
    assert "form-encoded" in _refused(as_json, 400, "invalid_request")
    assert "repeated" in _refused(repeated, 400, "invalid_request")
    _refused(fetched, 405, "invalid_request")
    assert fetched.headers["allow"] == "POST"
    _refused(elsewhere, 404, "not_found")
    assert env.calls == []


@pytest.mark.parametrize(("fault", "status", "retry_after"), [
    ({"kind": "error", "status": 503}, 503, None),
    ({"kind": "error", "status": 429, "retry_after_s": 3}, 429, "3"),
])
def test_faults_reach_the_token_endpoint(fault: dict[str, Any], status: int,
                                         retry_after: str | None) -> None:
    """identity.token is a fault target: an injected status is temporarily_unavailable and
    issues nothing; the next request gets its token."""
    env = _env([{**fault, "target": "identity.token", "on_call": [1]}])
    with env.httpx_client() as http:
        refused = http.post("/identity/oauth/token", data=GRANT, auth=("desk", "s3cret"))
        issued = http.post("/identity/oauth/token", data=GRANT, auth=("desk", "s3cret"))
    _refused(refused, status, "temporarily_unavailable")
    assert refused.headers.get("retry-after") == retry_after
    assert issued.status_code == 200
    assert len(env.world.ledger.of("identity", "issue")) == 1
    assert [c.target for c in env.calls] == ["identity.token"] * 2
