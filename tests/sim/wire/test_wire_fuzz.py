"""The HTTP faces fuzzed beyond their OpenAPI document (bodies nested past any sane depth,
oversized bodies): each is a 4xx in the service's own error shape, never an exception out of
the gateway (a 500 on the wire)."""

from __future__ import annotations

from typing import Any

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
