"""A credit agent whose tools and argument shapes are its own (nothing like the reference
agents'): ``credit_order(order_ref, cents)`` calls ``payments.create_refund`` through the client
the environment gives it, and ``order_status(order_ref)`` reads the order.

Its model credits the amount the task names ("credit 700 cents on ord_1"), then answers.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

from pydantic import BaseModel

import tether
from tether.models.base import ModelRequest, ModelResponse
from tether.models.scripted import call, reply
from tether.policy import argument_limit
from tether.sim import Environment


class OrderArgs(BaseModel):
    order_ref: str


class CreditArgs(BaseModel):
    order_ref: str
    cents: int


def credit_tools(env: Environment) -> list[tether.Tool[Any, Any]]:
    """The agent's two tools over ``env``'s payments client."""
    payments = env.client("payments")

    @tether.tool(name="order_status", args=OrderArgs)
    async def order_status(ctx: tether.ToolContext, args: OrderArgs) -> Any:
        """Read an order."""
        return await payments.get_charge(args.order_ref)

    async def find_credit(ctx: tether.ToolContext, key: str) -> Any:
        """The credit a keyed call made, found by the key in its metadata."""
        order_ref = key.split(":")[1]
        return next((r for r in await payments.list_refunds(order_ref)
                     if (r.get("metadata") or {}).get("k") == key), None)

    @tether.tool(name="credit_order", args=CreditArgs, effect="idempotent", tier=2,
                 key=lambda a: f"credit:{a.order_ref}:{a.cents}", reconcile=find_credit)
    async def credit_order(ctx: tether.ToolContext, args: CreditArgs) -> Any:
        """Credit ``cents`` back on an order."""
        key = ctx.idempotency_key or None
        return await payments.create_refund(args.order_ref, amount=args.cents,
                                            metadata={"k": key} if key else None,
                                            idempotency_key=key)

    return [order_status, credit_order]


def credit_script(cents: int | None = None) -> tether.ScriptedModel:
    """A model that credits ``cents`` (else the amount the task names) once, then answers."""

    def script(request: ModelRequest) -> ModelResponse:
        task = next((m.content for m in request.messages if m.role == "user"), "")
        done = [m.content for m in request.messages if m.role == "tool"]
        if done:
            return reply(f"done: {done[-1][:120]}")
        order = re.search(r"ord_\w+", task)
        amount = re.search(r"(\d+) cents", task)
        if order is None or amount is None:
            return reply("which order, and how much?")
        arguments = {"order_ref": order.group(0),
                     "cents": cents if cents is not None else int(amount.group(1))}
        return call("credit_order", json.dumps(arguments), call_id="c1")

    return tether.ScriptedModel(script, name="credit-model")


def agent(env: Environment) -> tether.Agent:
    """The credit agent in ``env``."""
    return tether.Agent(name="credit_agent", model=credit_script(), tools=credit_tools(env),
                        instructions="Credit orders as asked.")


def model(env: Environment) -> tether.ScriptedModel:
    """A scripted model for ``model: {script: ...}``: credits 300 cents whatever the task says."""
    return credit_script(cents=300)


def agent_with_policy(env: Environment) -> tether.Agent:
    """The credit agent with a policy of its own (credits above 10,000 cents need a manager)."""
    own = tether.Policy.of(argument_limit("credit_order", "cents", 10_000, role="manager"))
    return tether.Agent(name="credit_agent", model=credit_script(), tools=credit_tools(env),
                        instructions="Credit orders as asked.", policy=own)



class JournalArgs(BaseModel):
    account: str
    entry: str


def journal_agent(env: Environment) -> tether.Agent:
    """An agent with one reconcilable tool, ``journal_entry(account, entry)`` over
    ``crm.add_note`` (which takes no idempotency key), looked up on the primary by its text."""
    crm = env.client("crm")

    async def find_entry(ctx: tether.ToolContext, key: str) -> Any:
        """The note a keyed call wrote, or ``None``."""
        _, account, entry = key.split(":", 2)
        return next((n for n in await crm.primary_notes(account) if n.get("text") == entry),
                    None)

    @tether.tool(name="journal_entry", args=JournalArgs, effect="reconcilable",
                 key=lambda a: f"entry:{a.account}:{a.entry}", reconcile=find_entry)
    async def journal_entry(ctx: tether.ToolContext, args: JournalArgs) -> Any:
        """Write an entry on an account's record."""
        return await crm.add_note(args.account, args.entry, "journal")

    def script(request: ModelRequest) -> ModelResponse:
        if any(m.role == "tool" for m in request.messages):
            return reply("written")
        return call("journal_entry", json.dumps({"account": "cus_1", "entry": "credited"}),
                    call_id="j1")

    return tether.Agent(name="journal", model=tether.ScriptedModel(script),
                        tools=[journal_entry], instructions="Write the entry.")


def decimal_agent(env: Environment) -> tether.Agent:
    """The credit agent with a money-minded tool: it passes the amount as a ``Decimal``, which
    the payments service accepts as a number."""
    payments = env.client("payments")

    @tether.tool(name="credit_order", args=CreditArgs, effect="idempotent",
                 key=lambda a: f"credit:{a.order_ref}:{a.cents}")
    async def credit_order(ctx: tether.ToolContext, args: CreditArgs) -> Any:
        """Credit ``cents`` back on an order."""
        return await payments.create_refund(args.order_ref, amount=Decimal(args.cents),
                                            idempotency_key=ctx.idempotency_key or None)

    return tether.Agent(name="credit_agent", model=credit_script(), tools=[credit_order],
                        instructions="Credit orders as asked.")


#: How many times :func:`drifting_agent` was built: a model that is not a function of its
#: episode (it reads state outside the simulation), so two runs of one seed differ.
BUILT = [0]


def drifting_agent(env: Environment) -> tether.Agent:
    """The credit agent whose model first looks the order up on every other build, then
    credits: the same seed behaves differently from one run to the next, with the same final
    answer text shape."""
    BUILT[0] += 1
    looks_first = BUILT[0] % 2 == 0
    inner = credit_script()

    def script(request: ModelRequest) -> ModelResponse:
        looked = any(m.role == "tool" and m.name == "order_status" for m in request.messages)
        task = next((m.content for m in request.messages if m.role == "user"), "")
        order = re.search(r"ord_\w+", task)
        if looks_first and not looked and order is not None:
            return call("order_status", json.dumps({"order_ref": order.group(0)}),
                        call_id="c0")
        # Then on as if the lookup had not happened: the same credit, the same answer.
        kept = tuple(m for m in request.messages if not (
            (m.role == "tool" and m.name == "order_status") or
            (m.role == "assistant" and any(c.name == "order_status" for c in m.tool_calls))))
        return inner.script(request.model_copy(update={"messages": kept}))  # type: ignore[no-any-return]

    return tether.Agent(name="credit_agent", model=tether.ScriptedModel(script, name="drift"),
                        tools=credit_tools(env), instructions="Credit orders as asked.")
