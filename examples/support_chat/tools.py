"""The support chat's server tools: an order lookup and a refund, over a payments client.

``tools(env)`` is a *tool factory* the agent file names (``tools.py:tools``): in a simulated
episode ``env`` is tether's environment and the client is ``env.client("payments")`` (faults
apply where a production client meets the network); an application passes its own object with
a ``client(name)`` method. Outside both (``tether agent show``) there is no client, and the
tools say so if called.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

import tether


class OrderRef(BaseModel):
    order_id: str = Field(min_length=1, description="The charge id of the order (ch_...).")


class RefundArgs(BaseModel):
    order_id: str = Field(min_length=1)
    amount_cents: int = Field(gt=0)


class Charge(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    id: StrictStr
    amount: StrictInt
    amount_refunded: StrictInt
    customer: StrictStr


class Refund(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    id: StrictStr
    charge: StrictStr
    amount: StrictInt


class _NoClient:
    """Stands in for the payments client when the tools are only listed."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError("no payments client: build the agent with an environment "
                           "(env.client('payments'))")


def tools(env: Any) -> list[tether.Tool[Any, Any]]:
    """``lookup_order`` (read) and ``issue_refund`` (idempotent, keyed by the order, looked up
    by the order when its outcome stays unknown)."""
    payments = env.client("payments") if env is not None else _NoClient()

    @tether.tool(name="lookup_order", args=OrderRef, result=Charge)
    async def lookup_order(ctx: tether.ToolContext, args: OrderRef) -> Any:
        """Look up an order: its amount, what was refunded already, the customer."""
        return await payments.get_charge(args.order_id)

    @tether.tool(name="issue_refund", args=RefundArgs, result=Refund, effect="idempotent",
                 key=lambda a: f"refund:{a.order_id}", tier=2)
    async def issue_refund(ctx: tether.ToolContext, args: RefundArgs) -> Any:
        """Refund ``amount_cents`` of an order (at most what is left on it)."""
        return await payments.create_refund(args.order_id, amount=args.amount_cents,
                                            idempotency_key=ctx.idempotency_key or None)

    @issue_refund.reconciler
    async def find_refund(ctx: tether.ToolContext, key: str) -> Any:
        """The order's refund, if one was made: what settles a refund whose answers were all
        lost (the key names the order, and an order is refunded once)."""
        made = await payments.list_refunds(charge=key.split(":", 1)[1])
        return made[0] if made else None

    return [lookup_order, issue_refund]
