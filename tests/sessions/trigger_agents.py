"""A tool and a script that the trigger-kind tests' agent files name by import path."""

from __future__ import annotations

from pydantic import BaseModel

import tether
from tether.models import ModelRequest, ModelResponse, call, reply


class Refund(BaseModel):
    amount_cents: int


@tether.tool(effect="idempotent", key=lambda a: f"refund:{a.amount_cents}")
async def refund(ctx: tether.ToolContext, args: Refund) -> dict[str, int]:
    """Refund an amount (a policy holds large ones for a supervisor)."""
    return {"refunded": args.amount_cents}


def script(request: ModelRequest) -> ModelResponse:
    """Refund 50.00 once in the session, then answer with what came back."""
    results = [m for m in request.messages if m.role == "tool"]
    if not results:
        return call("refund", {"amount_cents": 5000})
    return reply(f"got {results[-1].content}")
