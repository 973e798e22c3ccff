"""A refund support agent in a real process, so a test can SIGKILL it in the middle of its loop.

    python tests/crash/agent_app.py --store runs.db --external ext.db --model-log m.log \
        [--kill-at POS:POINT | --recover]

The model is scripted (a function of the conversation) and writes one line to ``--model-log``
each time it is really asked, so a test can count paid model calls across processes. Tools reach
the same provider-like external SQLite file as ``app.py``: a read, two idempotent writes.
``--kill-at`` takes a position or a name and a probe point (``after_model``, ``after_intent``,
``after_call``, ``after_result``, …). Prints the run's status and result as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

sys.path.insert(0, str(Path(__file__).parent))

from app import ORDER_ID, External, Killer

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
from tether.models.scripted import call, reply

RUN_ID = "run-agent-A1001"


class OrderRef(BaseModel):
    order_id: str


class RefundArgs(BaseModel):
    order_id: str
    amount_cents: int


def build_agent(ext: External, model_log: Path) -> Agent:
    @tool
    def lookup_order(tc: ToolContext, args: OrderRef) -> dict[str, Any]:
        """Look up an order: customer email, item, amount."""
        return ext.get_order(args.order_id)

    @tool(effect="idempotent", key=lambda a: f"refund:{a.order_id}")
    def refund(tc: ToolContext, args: RefundArgs) -> dict[str, Any]:
        """Refund an order."""
        return ext.create_refund(tc.idempotency_key, args.order_id, args.amount_cents)

    @tool(effect="idempotent", key=lambda a: f"close:{a.order_id}")
    def close_ticket(tc: ToolContext, args: OrderRef) -> dict[str, Any]:
        """Close the customer's support ticket."""
        return ext.close_ticket(tc.idempotency_key, args.order_id)

    def script(request: ModelRequest) -> ModelResponse:
        with model_log.open("a") as log:
            log.write(f"{len(request.messages)}\n")
        results = [json.loads(m.content) for m in request.messages if m.role == "tool"]
        if not results:
            return call("lookup_order", {"order_id": ORDER_ID}, call_id="c1")
        if len(results) == 1:
            return call("refund", {"order_id": ORDER_ID,
                                   "amount_cents": results[0]["amount_cents"]}, call_id="c2")
        if len(results) == 2:
            return call("close_ticket", {"order_id": ORDER_ID}, call_id="c3")
        refund_id = results[1].get("refund_id") or results[1].get("id")
        return reply(f"Refunded order {ORDER_ID} ({refund_id}); ticket closed.")

    return Agent(name="refund_support", model=ScriptedModel(script, name="scripted-support"),
                 tools=[lookup_order, refund, close_ticket],
                 instructions="Refund damaged orders and close the ticket.")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", required=True)
    parser.add_argument("--external", required=True)
    parser.add_argument("--model-log", required=True, type=Path)
    parser.add_argument("--kill-at")
    parser.add_argument("--recover", action="store_true")
    args = parser.parse_args(argv)
    ext = External(args.external)
    agent = build_agent(ext, args.model_log)
    # One owner name: each invocation is the same worker restarting, which takes back at once
    # the run the killed process held instead of waiting for that lease to expire.
    runtime = Runtime(SQLiteStore(args.store), clock=SystemClock(), workflows=[agent],
                      probe=Killer(args.kill_at), seed=3, owner="crash-agent-worker")
    if args.recover:
        (result,) = asyncio.run(runtime.recover())
    else:
        result = asyncio.run(runtime.start(agent, "Order A-1001 arrived broken; refund it.",
                                           run_id=RUN_ID))
    print(json.dumps({"status": result.status.value, "result": result.result}))


if __name__ == "__main__":
    main()
