"""A scripted stand-in for the support chat's model: what an LLM following the instructions
would do, as a plain function of the conversation (deterministic, so episodes replay).

It finds an order id (``ch_...``) in the customer's last message, looks the order up, refunds
what is left on it, and answers; with no order id it asks for one.
"""

from __future__ import annotations

import json
import re

from tether.models import ModelRequest, ModelResponse, call, reply

_ORDER = re.compile(r"\bch_\w+")


def script(request: ModelRequest) -> ModelResponse:
    """The next response, from the messages so far."""
    users = [m for m in request.messages if m.role == "user"]
    order = _ORDER.search(users[-1].content) if users else None
    if order is None:
        return reply("Which order is it? Please give me its number (ch_...).")
    results = {m.name: m.content for m in request.messages if m.role == "tool"}
    if "lookup_order" not in results:
        return call("lookup_order", {"order_id": order.group(0)})
    if "issue_refund" not in results:
        try:
            charge = json.loads(results["lookup_order"])
            left = int(charge["amount"]) - int(charge["amount_refunded"])
        except (ValueError, KeyError, TypeError):
            return reply("I could not read that order; a colleague will follow up.")
        if left <= 0:
            return reply(f"Order {order.group(0)} is already fully refunded.")
        return call("issue_refund", {"order_id": order.group(0), "amount_cents": left})
    return reply(f"Done: order {order.group(0)} is refunded. Anything else?")
