"""A small payments world for the Stripe face's tests, and ways in: raw httpx on the in-process
transport, and the official SDK through tether's client or the SDK's own httpx client."""

from __future__ import annotations

import types
from functools import partial
from typing import Any

import httpx
import stripe

from tether.sim import Environment, scenario_from_dict
from tether.sim.episode import environment_for

KEY = "sk_test_tether"
AUTH = {"Authorization": f"Bearer {KEY}"}

PAYMENTS: dict[str, Any] = {
    "customers": [{"id": "cus_0001", "email": "ada@example.com", "name": "Ada"},
                  {"id": "cus_0002", "email": "bo@example.com", "name": "Bo"}],
    "charges": [{"id": "ch_0001", "customer": "cus_0001", "amount": 5000, "created": 100},
                {"id": "ch_0002", "customer": "cus_0001", "amount": 1200, "created": 200},
                {"id": "ch_0003", "customer": "cus_0002", "amount": 900, "created": 300}],
}


def world(faults: list[dict[str, Any]] | None = None, seed: int = 0,
          **payments: Any) -> Environment:
    """An environment whose payments service holds :data:`PAYMENTS` (updated by ``payments``)
    under ``faults``."""
    scenario = scenario_from_dict({
        "name": "stripe", "agent": "tests.sim.own_agents.credit:agent", "task": "t",
        "world": {"payments": {**PAYMENTS, **payments}}, "faults": faults or []})
    return environment_for(scenario, seed)


def http(env: Environment) -> httpx.Client:
    """A plain httpx client on the in-process transport, at the payments base URL."""
    return httpx.Client(transport=env.http_transport(), base_url=env.base_url("payments"),
                        headers=AUTH)


def sdk(env: Environment, retries: int = 0, key: str = KEY) -> stripe.StripeClient:
    """The official SDK on tether's in-process client."""
    return stripe.StripeClient(key, http_client=env.stripe_http_client(),
                               base_addresses={"api": env.base_url("payments")},
                               max_network_retries=retries)


def sdk_over_httpx(env: Environment, retries: int = 0) -> stripe.StripeClient:
    """The official SDK on its own ``HTTPXClient``, whose httpx clients use the in-process
    transport (the SDK's ``_lib`` parameter hands it an httpx module to build them from)."""
    transport = env.http_transport()
    lib = types.SimpleNamespace(Client=partial(httpx.Client, transport=transport),
                                AsyncClient=partial(httpx.AsyncClient, transport=transport))
    client = stripe.HTTPXClient(allow_sync_methods=True, _lib=lib)
    return stripe.StripeClient(KEY, http_client=client,
                               base_addresses={"api": env.base_url("payments")},
                               max_network_retries=retries)


def effects(env: Environment, operation: str) -> list[dict[str, Any]]:
    """The ledger's payments effects of ``operation``, their keys included."""
    return [{"key": e.key, **e.data} for e in env.world.ledger.of("payments", operation)]
