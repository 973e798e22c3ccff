"""An agent whose refund needs a supervisor's approval, run as a real process.

    python tests/policy/approval_app.py --store runs.db --ledger ledger.db            # start
    python tests/policy/approval_app.py --store runs.db --ledger ledger.db --recover  # resume

The refund's effect is a row in its own SQLite ledger, keyed by idempotency key. Prints the
run's status and result as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
from typing import Any

from pydantic import BaseModel

from tether import (
    Agent,
    ModelRequest,
    ModelResponse,
    Runtime,
    ScriptedModel,
    SQLiteStore,
    SystemClock,
    ToolContext,
    tool,
)
from tether.agent.agent import Task
from tether.models.scripted import call, reply
from tether.policy import Policy, argument_limit

RUN_ID = "run-refund-approval"


class RefundArgs(BaseModel):
    order_id: str
    amount_cents: int


def build_agent(ledger_path: str) -> Agent:
    @tool(effect="idempotent", key=lambda a: f"refund:{a.order_id}")
    def refund(ctx: ToolContext, args: RefundArgs) -> dict[str, Any]:
        """Refund an order (the ledger deduplicates by key)."""
        db = sqlite3.connect(ledger_path, isolation_level=None)
        db.execute("CREATE TABLE IF NOT EXISTS refunds (key TEXT PRIMARY KEY, amount INTEGER)")
        db.execute("INSERT OR IGNORE INTO refunds VALUES (?, ?)",
                   (ctx.idempotency_key, args.amount_cents))
        db.close()
        return {"refunded": args.amount_cents}

    def script(request: ModelRequest) -> ModelResponse:
        results = [m for m in request.messages if m.role == "tool"]
        if not results:
            return call("refund", {"order_id": "A-7", "amount_cents": 72_000}, call_id="r1")
        return reply(results[-1].content)

    policy = Policy.of(argument_limit("refund", "amount_cents", 50_000, role="supervisor"))
    return Agent(name="refunds", model=ScriptedModel(script), tools=[refund], policy=policy)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", required=True)
    parser.add_argument("--ledger", required=True)
    parser.add_argument("--recover", action="store_true")
    args = parser.parse_args()
    agent = build_agent(args.ledger)
    runtime = Runtime(SQLiteStore(args.store), clock=SystemClock(), workflows=[agent])
    if args.recover:
        results = asyncio.run(runtime.recover())
        result = next(r for r in results if r.run_id == RUN_ID)
    else:
        result = asyncio.run(runtime.start(agent, Task(text="refund A-7", principal="agent-1"),
                                           run_id=RUN_ID))
    print(json.dumps({"status": result.status.value, "result": result.result,
                      "waiting_for": result.waiting_for}))


if __name__ == "__main__":
    main()
