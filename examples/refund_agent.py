"""A refund support agent that meets a flaky world, run durably on SQLite.

    python examples/refund_agent.py [--store runs.db]

The model is scripted (no API key needed) and behaves as an LLM would: it looks the order up,
refunds it, and confirms. The world misbehaves on purpose: the model provider answers 429 once
(with ``retry-after: 2``), and the payments API returns 503 on the first refund attempt. tether
backs off on the run's clock, retries the tool (not the model) under the same idempotency key,
and journals every decision. Then try ``tether trace RUN --store runs.db``.
"""

from __future__ import annotations

import argparse
import json

from pydantic import BaseModel, StrictInt

import tether
from tether.models import ModelRequest, ModelResponse, ScriptedModel, call, reply

ORDERS = {"A-1001": {"customer": "Ada Lovelace", "amount_cents": 4999, "state": "delivered"}}
REFUNDS: dict[str, dict[str, object]] = {}


class OrderRef(BaseModel):
    order_id: str


class RefundArgs(BaseModel):
    order_id: str
    amount_cents: int


class Order(BaseModel):
    """What the order system returns (a renamed or retyped field fails, never guesses)."""

    order_id: str
    customer: str
    amount_cents: StrictInt
    state: str


class Refund(BaseModel):
    refund_id: str
    amount_cents: StrictInt


@tether.tool
def lookup_order(ctx: tether.ToolContext, args: OrderRef) -> Order:
    """Look an order up: customer, amount, delivery state."""
    return Order.model_validate({"order_id": args.order_id, **ORDERS[args.order_id]})


@tether.tool(effect="idempotent", key=lambda a: f"refund:{a.order_id}", retry_delay_s=0.5)
def issue_refund(ctx: tether.ToolContext, args: RefundArgs) -> Refund:
    """Refund an order in full. The payments API deduplicates by idempotency key."""
    if ctx.attempt == 1:
        raise tether.TransientError("payments API: 503 Service Unavailable")
    refund = REFUNDS.setdefault(ctx.idempotency_key, {
        "refund_id": f"re_{len(REFUNDS) + 1:04d}", "amount_cents": args.amount_cents})
    return Refund.model_validate(refund)


def support_model() -> ScriptedModel:
    state = {"throttled": False}

    def script(request: ModelRequest) -> ModelResponse:
        if not state["throttled"]:
            state["throttled"] = True
            raise tether.RateLimited("429 Too Many Requests", retry_after_s=2.0)
        results = [json.loads(m.content) for m in request.messages if m.role == "tool"]
        if not results:
            return call("lookup_order", {"order_id": "A-1001"}, call_id="call_1")
        if len(results) == 1:
            order = results[0]
            return call("issue_refund", {"order_id": order["order_id"],
                                         "amount_cents": order["amount_cents"]},
                        call_id="call_2")
        return reply(f"Done: refund {results[1]['refund_id']} of "
                     f"${int(results[1]['amount_cents']) / 100:.2f} issued for order A-1001.")

    return ScriptedModel(script, name="scripted-support")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--store", default="runs.db")
    args = parser.parse_args()
    agent = tether.Agent(name="refund_support", model=support_model(),
                         tools=[lookup_order, issue_refund],
                         instructions="Refund damaged orders. Be brief.",
                         budgets=tether.Budgets(max_steps=10, max_cost_usd=0.50))
    runtime = tether.Runtime(tether.SQLiteStore(args.store), clock=tether.VirtualClock(),
                             seed=7)
    result = runtime.run_sync(agent, "Order A-1001 arrived broken; please refund it.")
    print(f"run {result.run_id}: {result.status.value}")
    print(result.result["answer"])
    print(f"refunds issued: {len(REFUNDS)}")
    print(f"trace: tether trace {result.run_id} --store {args.store}")


if __name__ == "__main__":
    main()
