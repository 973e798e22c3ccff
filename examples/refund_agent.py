"""A refund support agent that meets a flaky world, run durably on SQLite.

    python examples/refund_agent.py [--store runs.db] [--payments payments.db]
    python examples/refund_agent.py --crash     # killed (SIGKILL) right after the refund
    python examples/refund_agent.py             # again: resumes, or reports the stored result

The model is scripted (no API key needed) and behaves as an LLM would: it looks the order up,
refunds it, and confirms. The world misbehaves on purpose: the model provider answers 429 once
(with ``retry-after: 2``), and the payments API returns 503 on the first refund attempt. tether
backs off on the run's clock, retries the tool (not the model) under the same idempotency key,
and journals every decision. Then try ``tether trace refund-A-1001 --store runs.db``.

Run it as often as you like. The run is named after the order (``refund-A-1001``), as the
refund's idempotency key is, so a second invocation finds it instead of starting another: a run
that finished reports its stored result (nothing runs again), and a run whose process died is
resumed from its journal. ``--crash`` kills the process with SIGKILL after the payments API
committed the refund and before the run heard back; the next invocation re-issues the refund
under the same key, and the payments API (a SQLite file, deduplicating by key as Stripe does)
answers with the first refund: one refund, however often it is run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sqlite3
from contextlib import closing

from pydantic import BaseModel, StrictInt

import tether
from tether.models import ModelRequest, ModelResponse, ScriptedModel, call, reply

ORDERS = {"A-1001": {"customer": "Ada Lovelace", "amount_cents": 4999, "state": "delivered"}}
#: The run's id is the business identity of the job, so a rerun finds the run it started.
RUN_ID = "refund-A-1001"
#: A stable worker name: a rerun after a crash takes the run back at once, without waiting for
#: the dead process's lease to expire (see tether.runtime.ownership).
OWNER = "refund-example"


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


class Payments:
    """A stand-in payments API on a SQLite file: one refund per idempotency key, as Stripe
    keeps one per ``Idempotency-Key`` (a repeated key answers the first refund)."""

    def __init__(self, path: str, *, crash_after_refund: bool = False) -> None:
        self.path = path
        self.crash_after_refund = crash_after_refund
        with self._db() as db:
            db.execute("CREATE TABLE IF NOT EXISTS refunds (key TEXT PRIMARY KEY, "
                       "refund_id TEXT, amount_cents INTEGER)")

    def _db(self) -> closing[sqlite3.Connection]:
        # Autocommit: a refund is durable the moment it is made, as the provider's would be.
        return closing(sqlite3.connect(self.path, isolation_level=None))

    def refund(self, key: str, amount_cents: int) -> Refund:
        with self._db() as db:
            db.execute("INSERT OR IGNORE INTO refunds VALUES (?, 're_' || printf('%04d', "
                       "(SELECT count(*) + 1 FROM refunds)), ?)", (key, amount_cents))
            row = db.execute("SELECT refund_id, amount_cents FROM refunds WHERE key = ?",
                             (key,)).fetchone()
        if self.crash_after_refund:  # committed above; the run never hears back
            os.kill(os.getpid(), signal.SIGKILL)
        return Refund(refund_id=row[0], amount_cents=row[1])

    def count(self) -> int:
        with self._db() as db:
            return int(db.execute("SELECT count(*) FROM refunds").fetchone()[0])


def refund_tool(payments: Payments) -> tether.Tool[RefundArgs, Refund]:
    @tether.tool(effect="idempotent", key=lambda a: f"refund:{a.order_id}", retry_delay_s=0.5)
    def issue_refund(ctx: tether.ToolContext, args: RefundArgs) -> Refund:
        """Refund an order in full. The payments API deduplicates by idempotency key."""
        if ctx.attempt == 1:
            raise tether.TransientError("payments API: 503 Service Unavailable")
        return payments.refund(ctx.idempotency_key, args.amount_cents)

    return issue_refund


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
    parser.add_argument("--payments", default="payments.db",
                        help="the stand-in payments API's SQLite file")
    parser.add_argument("--crash", action="store_true",
                        help="SIGKILL this process right after the refund is committed")
    args = parser.parse_args()
    payments = Payments(args.payments, crash_after_refund=args.crash)
    agent = tether.Agent(name="refund_support", model=support_model(),
                         tools=[lookup_order, refund_tool(payments)],
                         instructions="Refund damaged orders. Be brief.",
                         budgets=tether.Budgets(max_steps=10, max_cost_usd=0.50))
    store = tether.SQLiteStore(args.store)
    runtime = tether.Runtime(store, clock=tether.VirtualClock(), seed=7, owner=OWNER,
                             workflows=[agent])
    # Start the run, or pick it up where it stands: resume() continues an unfinished run from
    # its journal, and returns a finished run's stored result without running anything.
    before = store.get_run(RUN_ID)
    if before is None:
        result = runtime.run_sync(agent, "Order A-1001 arrived broken; please refund it.",
                                  run_id=RUN_ID)
        how = ""
    else:
        result = asyncio.run(runtime.resume(RUN_ID))
        how = (" (finished earlier: its stored result, nothing ran again)"
               if before.status.finished else " (resumed from its journal)")
    print(f"run {result.run_id}: {result.status.value}{how}")
    print(result.result["answer"] if result.result else f"error: {result.reason}")
    print(f"refunds in {args.payments}: {payments.count()}")
    print(f"trace: tether trace {result.run_id} --store {args.store}")


if __name__ == "__main__":
    main()
