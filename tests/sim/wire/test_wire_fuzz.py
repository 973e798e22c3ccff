"""The HTTP faces fuzzed beyond their OpenAPI document (bodies nested past any sane depth,
oversized bodies): each is a 4xx in the service's own error shape, never an exception out of
the gateway (a 500 on the wire)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tether.sim import scenario_from_dict
from tether.sim.environment import Environment
from tether.sim.episode import environment_for

KEY = "sk_test_fuzz"
WORLD = {"payments": {
    "customers": [{"id": "cus_1", "email": "ann@example.com", "name": "Ann"}],
    "charges": [{"id": "ch_1", "customer": "cus_1", "amount": 5000}]}}


def _env() -> Environment:
    scenario = {"name": "fuzz", "agent": "tests.sim.own_agents.credit:agent", "task": "x",
                "world": WORLD, "invariants": []}
    return environment_for(scenario_from_dict(scenario), 0)


@pytest.mark.parametrize("depth", [40, 2_000])
def test_a_form_key_nested_beyond_the_limit_is_a_stripe_400(depth: int) -> None:
    """``metadata[a][a]…`` nested deeper than any Stripe parameter is refused as Stripe
    refuses a malformed parameter (400 invalid_request_error naming the key), not a
    RecursionError out of the decoder."""
    key = "metadata" + "[a]" * depth
    with _env().httpx_client(auth=(KEY, "")) as http:
        answer = http.post("/payments/v1/refunds", content=f"charge=ch_1&{key}=1".encode(),
                           headers={"content-type": "application/x-www-form-urlencoded"})
        listed = http.get(f"/payments/v1/charges?{key}=1")
    for got in (answer, listed):
        assert got.status_code == 400, got.text
        error: dict[str, Any] = got.json()["error"]
        assert error["type"] == "invalid_request_error" and "deeper" in error["message"]


@pytest.mark.parametrize(("path", "schema"), [
    ("/crm/v1/get_customer", "JSON_ERROR_SCHEMA"),
    ("/identity/oauth/token", "OAUTH_ERROR_SCHEMA"),
    ("/payments/v1/refunds", "STRIPE_ERROR_SCHEMA"),
])
def test_an_oversized_body_is_a_413_in_the_services_documented_error_shape(
        path: str, schema: str) -> None:
    """A body over the served world's limit is answered 413 in the error body the OpenAPI
    document gives the service it was sent to (the JSON faces' ``status`` and ``retryable``,
    RFC 6749's ``error`` string, Stripe's ``invalid_request_error``)."""
    from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

    from tether.sim.wire import openapi
    from tether.sim.wire.asgi import MAX_BODY_BYTES, asgi_app

    env = _env()

    async def main() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi_app(env)),
                                     base_url="http://127.0.0.1") as http:
            return await http.post(path, content=b"x" * (MAX_BODY_BYTES + 1))

    answer = asyncio.run(main())
    assert answer.status_code == 413
    Draft202012Validator(getattr(openapi, schema)).validate(answer.json())


DEEP = b"[" * 100_000 + b"]" * 100_000


def test_json_nested_past_the_parsers_depth_is_a_400_where_json_is_read() -> None:
    """JSON nested deeper than the parser recurses (a RecursionError, not a ValueError) is a
    400 wherever a JSON body is read: a webhook endpoint sent as JSON (Stripe's shape) and the
    served world's clock control."""
    from tether.sim.wire.asgi import asgi_app

    env = _env()

    async def main() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi_app(env)),
                                     base_url="http://127.0.0.1") as http:
            return [await http.post("/payments/v1/webhook_endpoints", content=DEEP,
                                    headers={"content-type": "application/json"},
                                    auth=(KEY, "")),
                    await http.post("/_tether/clock/advance", content=DEEP)]

    hooks, clock = asyncio.run(main())
    assert hooks.status_code == 400 and hooks.json()["error"]["type"] == "invalid_request_error"
    assert clock.status_code == 400 and clock.json()["error"]["param"] == "seconds"
