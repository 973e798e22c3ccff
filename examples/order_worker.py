"""A queued workflow for `tether worker`: confirm an order, wait for payment, charge it.

    tether runs start examples/order_worker.py:confirm_order --input '"A-1001"' --store runs.db
    tether worker --store runs.db --workflow examples/order_worker.py:confirm_order

The wait is a durable timer (``ORDER_WAIT_S``, a day by default): a worker parks the run, so it
holds no slot and no lease while it sleeps, and whichever worker is up when it is due continues
it. The charge is an idempotent write keyed by the order; the stand-in provider (a SQLite file,
``charges.db``) deduplicates by that key the way Stripe does, so a worker killed after the
provider charged re-issues the call under the same key and gets the first charge back.
"""

from __future__ import annotations

import os
import sqlite3

from pydantic import BaseModel

from tether import RunContext, ToolContext, tool, workflow

WAIT_S = float(os.environ.get("ORDER_WAIT_S", "86400"))
PROVIDER = os.environ.get("ORDER_PROVIDER_DB", "charges.db")


class Charge(BaseModel):
    order_id: str


@tool(effect="idempotent", key=lambda a: f"charge:{a.order_id}")
def charge(tc: ToolContext, args: Charge) -> str:
    """Charge the order's customer (the provider keeps one charge per key)."""
    with sqlite3.connect(PROVIDER) as db:
        db.execute("CREATE TABLE IF NOT EXISTS charges (key TEXT PRIMARY KEY, id TEXT)")
        db.execute("INSERT OR IGNORE INTO charges VALUES (?, 'ch_' || "
                   "(SELECT count(*) + 1 FROM charges))", (tc.idempotency_key,))
        row = db.execute("SELECT id FROM charges WHERE key = ?", (tc.idempotency_key,))
        return str(row.fetchone()[0])


@workflow
async def confirm_order(ctx: RunContext, order_id: str) -> str:
    await ctx.step("confirm", lambda: f"order {order_id} confirmed")
    await ctx.sleep(WAIT_S)
    receipt = await ctx.call_tool(charge, {"order_id": order_id})
    return f"{order_id} charged: {receipt}"
