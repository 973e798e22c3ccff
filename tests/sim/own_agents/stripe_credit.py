"""The credit agent on the official ``stripe`` SDK: its tools are what a production agent
would write (``StripeClient`` with its retries off, keys from tether), and only where the
client points differs in the simulation — ``base_addresses`` and the in-process HTTP client
the environment gives.

``credit_order`` refunds through ``client.v1.refunds.create`` with tether's idempotency key
as the SDK's ``idempotency_key`` option; its reconciler looks the refund up by the key kept
in the refund's metadata.
"""

from __future__ import annotations

from typing import Any

import stripe

import tether
from tests.sim.own_agents.credit import CreditArgs, OrderArgs, credit_script
from tether.sim import Environment


def stripe_client(env: Environment, *, retries: int = 0) -> stripe.StripeClient:
    """The SDK pointed at the simulated payments API (in-process, on the virtual clock)."""
    return stripe.StripeClient("sk_test_tether", max_network_retries=retries,
                               base_addresses={"api": env.base_url("payments")},
                               http_client=env.stripe_http_client())


def stripe_tools(env: Environment) -> list[tether.Tool[Any, Any]]:
    """``order_status`` and ``credit_order`` over the stripe SDK."""
    client = stripe_client(env)

    @tether.tool(name="order_status", args=OrderArgs)
    async def order_status(ctx: tether.ToolContext, args: OrderArgs) -> Any:
        """Read an order (a charge)."""
        return client.v1.charges.retrieve(args.order_ref).to_dict()

    async def find_credit(ctx: tether.ToolContext, key: str) -> Any:
        """The refund a keyed call made, found by the key in its metadata."""
        order_ref = key.split(":")[1]
        listed = client.v1.refunds.list({"charge": order_ref, "limit": 100})
        return next((r.to_dict() for r in listed.auto_paging_iter()
                     if dict(r.metadata or {}).get("k") == key), None)

    @tether.tool(name="credit_order", args=CreditArgs, effect="idempotent", tier=2,
                 key=lambda a: f"credit:{a.order_ref}:{a.cents}", reconcile=find_credit)
    async def credit_order(ctx: tether.ToolContext, args: CreditArgs) -> Any:
        """Credit ``cents`` back on an order."""
        key = ctx.idempotency_key or None
        params: Any = {"charge": args.order_ref, "amount": args.cents}
        if key:
            params["metadata"] = {"k": key}
        options: Any = {"idempotency_key": key} if key else {}
        return client.v1.refunds.create(params, options).to_dict()

    return [order_status, credit_order]


def agent(env: Environment) -> tether.Agent:
    """The credit agent whose tools speak Stripe's API through the official SDK."""
    return tether.Agent(name="stripe_credit", model=credit_script(), tools=stripe_tools(env),
                        instructions="Credit orders as asked.")
