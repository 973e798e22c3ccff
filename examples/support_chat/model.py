"""A scripted stand-in for the support chat's model: what an LLM following the instructions
would do, as a plain function of the conversation (deterministic, so episodes replay and a
resumed turn asks the same questions).

Only the current turn's messages (after the last user message) decide what to do next; earlier
turns are history. With an order id (``ch_...``) in the customer's message it looks the order
up; when the message asks for a refund it refunds what is left on the order, first asking the
customer to confirm in the app (the ``confirm_in_app`` client tool) when that is above 50.00;
otherwise it answers the question from the order. A message saying the plan changed is
acknowledged, and "which plan" is answered from the instructions (rendered each turn from the
session's variables), or the latest such message when the instructions do not say. After a
refund it reads the session's ``order_notes`` document and writes it back with a line about the
refund (the session tools); where there is no session (a simulated episode) the tools fail and
it just answers. With no order id it asks for one.

When the environment variable ``SUPPORT_CHAT_MODEL_LOG`` names a file, every invocation
appends the request's digest (the ``request_digest`` its ``model_called`` event records) and
the process id to it, one line each: the model calls each process really made, so a test can
tell a call asked again after a crash from one replayed from the journal.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from tether.models import ModelRequest, ModelResponse, call, reply
from tether.models.base import Message

_ORDER = re.compile(r"\bch_\w+")
_PLAN_CHANGED = re.compile(r"plan changed to ([\w-]+)", re.IGNORECASE)
_PLAN_IN_INSTRUCTIONS = re.compile(r"\(plan: ([\w-]+)\)")
_REFUND = re.compile(r"\brefund\b", re.IGNORECASE)
#: The session document the agent keeps a line per refund in.
NOTES = "order_notes"
#: Refunds above this many cents are confirmed by the customer in the app first.
CONFIRM_ABOVE_CENTS = 5000


def script(request: ModelRequest) -> ModelResponse:
    """The next response, from the messages so far."""
    log = os.environ.get("SUPPORT_CHAT_MODEL_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as f:
            f.write(f"{request.digest()} {os.getpid()}\n")
    messages = list(request.messages)
    last_user = max((i for i, m in enumerate(messages) if m.role == "user"), default=None)
    if last_user is None:
        return reply("How can I help?")
    text = messages[last_user].content
    if _PLAN_CHANGED.search(text):
        return reply(f"Noted: you are now on the {_plan(messages)} plan.")
    if "which plan" in text.lower():
        return reply(f"You are on the {_plan(messages)} plan.")
    order = _ORDER.search(text)
    if order is None:
        return reply("Which order is it? Please give me its number (ch_...).")
    order_id = order.group(0)
    results = {m.name: m.content for m in messages[last_user + 1:] if m.role == "tool"}
    if "lookup_order" not in results:
        return call("lookup_order", {"order_id": order_id})
    charge = _json(results["lookup_order"])
    try:
        amount, refunded = int(charge["amount"]), int(charge["amount_refunded"])
    except (KeyError, TypeError, ValueError):
        return reply("I could not read that order; a colleague will follow up.")
    if _REFUND.search(text) is None:
        return reply(f"Order {order_id}: you paid {_money(amount)}, and {_money(refunded)} "
                     "of it has been refunded so far.")
    left = amount - refunded
    if "issue_refund" not in results:
        if left <= 0:
            return reply(f"Order {order_id} is already fully refunded.")
        if left > CONFIRM_ABOVE_CENTS:
            if "confirm_in_app" not in results:
                return call("confirm_in_app", {
                    "question": f"Refund {_money(left)} for order {order_id}?"})
            if _json(results["confirm_in_app"]).get("confirmed") is not True:
                return reply(f"All right, I will not refund order {order_id}.")
        return call("issue_refund", {"order_id": order_id, "amount_cents": left})
    refund = _json(results["issue_refund"])
    if not str(refund.get("id", "")).startswith("re_"):
        return reply(f"The refund of order {order_id} did not go through: "
                     f"{results['issue_refund']}")
    done = f"Done: order {order_id} is refunded ({_money(int(refund['amount']))})."
    if "read_resource" not in results:
        return call("read_resource", {"name": NOTES})
    notes = _json(results["read_resource"])
    if "update_resource" not in results and "version" in notes:
        line = f"{order_id}: refunded {_money(int(refund['amount']))} ({refund['id']})"
        content = "\n".join(filter(None, [notes.get("content") or "", line]))
        return call("update_resource", {"name": NOTES, "content": content})
    return reply(f"{done} Anything else?")


def _plan(messages: list[Message]) -> str:
    """The plan the instructions state (the session's variable), else the latest plan change
    the conversation mentions."""
    for message in messages:
        stated = _PLAN_IN_INSTRUCTIONS.search(message.content)
        if message.role == "system" and stated is not None:
            return stated.group(1)
    for message in reversed(messages):
        changed = _PLAN_CHANGED.search(message.content) if message.role == "user" else None
        if changed is not None:
            return changed.group(1).rstrip(".")
    return "unknown"


def _json(content: str) -> dict[str, Any]:
    try:
        value = json.loads(content)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _money(cents: int) -> str:
    return f"{cents / 100:.2f}"
