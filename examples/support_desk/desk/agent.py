"""The support desk's billing agent: credits for orders that arrived late or damaged.

The agent is written once. Its tools call three services — payments (Stripe-shaped orders and
credits), a CRM (customer profiles, case notes) and email — through whatever clients they are
given; nothing in a tool knows whether those clients reach production or tether's simulator:

* :func:`build` is what a scenario names (``agent: ../desk/agent.py:build``): the clients come
  from the simulated environment, ``env.client("payments")`` …, with faults applied where a
  production client meets the network;
* :func:`production` builds the *same* agent over HTTP clients of the real services and a real
  model. Nothing else changes: same tools, same argument shapes, same effect classes, same
  keys, same policy.

Tools (names and shapes are the desk's own)::

    lookup_order(order_id)                 read         payments.get_charge
    customer_profile(customer_id)          read         crm.get_customer
    issue_credit(order_id, cents, memo)    idempotent   payments.create_refund (+ reconciler)
    notify_customer(address, text)         idempotent   email.send (+ reconciler)
    log_case(customer_id, summary)         reconcilable crm.add_note (looked up on the primary)

The desk's rules: late delivery earns the shipping fee back (half of it below the gold tier), a
damaged order what is left on it; credits above :data:`CREDIT_LIMIT_CENTS` need a supervisor
(the policy holds them for approval).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

import tether
from tether.models import call, reply
from tether.policy import argument_limit

if TYPE_CHECKING:  # production never imports the simulator
    from tether.sim import Environment

__all__ = ["CREDIT_LIMIT_CENTS", "INSTRUCTIONS", "Clients", "build", "desk_model", "desk_tools",
           "production"]

INSTRUCTIONS = ("You are the billing desk. Credit customers whose orders arrived late (the "
                "shipping fee) or damaged (what is left on the order), tell them, and log the "
                "case. Credits above the limit need a supervisor.")

#: Credits above this many cents are held for a supervisor.
CREDIT_LIMIT_CENTS = 20_000


# -- what the tools take -------------------------------------------------------------------


class OrderRef(BaseModel):
    order_id: str = Field(min_length=1)


class CustomerRef(BaseModel):
    customer_id: str = Field(min_length=1)


class CreditArgs(BaseModel):
    order_id: str = Field(min_length=1)
    cents: int = Field(gt=0)
    memo: str


class NoticeArgs(BaseModel):
    address: str
    text: str


class CaseArgs(BaseModel):
    customer_id: str
    summary: str = Field(min_length=1)


# -- what they return (checked: a drifted answer is an error, not a plausible value) --------


class _Answer(BaseModel):
    # Services add fields all the time; only a missing, renamed or retyped one is an error.
    model_config = ConfigDict(extra="ignore", frozen=True)


class Order(_Answer):
    # Every field the desk reads is required, even those Stripe may send as null or empty: an
    # answer without one has drifted, and a default would quietly stand in for the real value.
    id: StrictStr
    amount: StrictInt
    amount_refunded: StrictInt
    customer: StrictStr
    description: StrictStr | None
    metadata: dict[str, StrictStr]


class Profile(_Answer):
    id: StrictStr
    name: StrictStr
    email: StrictStr
    tier: StrictStr


class Credit(_Answer):
    id: StrictStr
    charge: StrictStr
    amount: StrictInt
    status: StrictStr


class Notice(_Answer):
    id: StrictStr
    to: StrictStr


class CaseNote(_Answer):
    id: StrictStr
    target: StrictStr
    text: StrictStr


# -- the tools -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Clients:
    """What the tools talk to: each attribute offers the service's operations as ``async``
    callables answering JSON data (the simulator's clients, or :class:`HttpService`)."""

    payments: Any
    crm: Any
    email: Any


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def desk_tools(clients: Clients) -> list[tether.Tool[Any, Any]]:
    """The desk's five tools over ``clients``."""
    payments, crm, email = clients.payments, clients.crm, clients.email

    @tether.tool(name="lookup_order", args=OrderRef, result=Order)
    async def lookup_order(ctx: tether.ToolContext, args: OrderRef) -> Any:
        """Look up an order: amount, what was refunded, the customer, the fees."""
        return await payments.get_charge(args.order_id)

    @tether.tool(name="customer_profile", args=CustomerRef, result=Profile)
    async def customer_profile(ctx: tether.ToolContext, args: CustomerRef) -> Any:
        """A customer's profile: name, email, tier."""
        return await crm.get_customer(args.customer_id)

    async def find_credit(ctx: tether.ToolContext, key: str) -> Any:
        """The credit a keyed ``issue_credit`` made, found by the key in its metadata (what a
        Stripe integration does: list the order's refunds and match), or ``None``."""
        order_id = key.split(":")[1]
        return next((r for r in await payments.list_refunds(order_id)
                     if (r.get("metadata") or {}).get("desk_key") == key), None)

    @tether.tool(name="issue_credit", args=CreditArgs, result=Credit, effect="idempotent",
                 key=lambda a: f"credit:{a.order_id}:{a.cents}", reconcile=find_credit, tier=2)
    async def issue_credit(ctx: tether.ToolContext, args: CreditArgs) -> Any:
        """Credit ``cents`` back on an order, with a memo saying why."""
        key = ctx.idempotency_key or None
        metadata = {"memo": args.memo, **({"desk_key": key} if key else {})}
        return await payments.create_refund(args.order_id, amount=args.cents,
                                            reason="requested_by_customer", metadata=metadata,
                                            idempotency_key=key)

    async def find_notice(ctx: tether.ToolContext, key: str) -> Any:
        return next((m for m in await email.outbox() if m.get("idempotency_key") == key), None)

    @tether.tool(name="notify_customer", args=NoticeArgs, result=Notice, effect="idempotent",
                 key=lambda a: f"notify:{a.address}:{_digest(a.text)}", reconcile=find_notice)
    async def notify_customer(ctx: tether.ToolContext, args: NoticeArgs) -> Any:
        """Email the customer."""
        return await email.send(args.address, "About your order", args.text,
                                idempotency_key=ctx.idempotency_key or None)

    async def find_case(ctx: tether.ToolContext, key: str) -> Any:
        """The case note a keyed ``log_case`` wrote, read from the CRM's primary (a lagging
        replica would hide it and invite a second one)."""
        _, customer_id, digest = key.split(":", 2)
        return next((n for n in await crm.primary_notes(customer_id)
                     if _digest(str(n.get("text", ""))) == digest), None)

    @tether.tool(name="log_case", args=CaseArgs, result=CaseNote, effect="reconcilable",
                 key=lambda a: f"case:{a.customer_id}:{_digest(a.summary)}", reconcile=find_case)
    async def log_case(ctx: tether.ToolContext, args: CaseArgs) -> Any:
        """Log what was done on the customer's record (the CRM takes no idempotency key)."""
        return await crm.add_note(args.customer_id, args.summary, "billing-desk")

    return [lookup_order, customer_profile, issue_credit, notify_customer, log_case]


# -- the model (a function of the conversation, standing in for the LLM) -------------------

ORDER_ID = re.compile(r"\bord_\w+")


def desk_model() -> tether.ScriptedModel:
    """The desk's model in tests and simulation: decides from what it has read so far, as an
    LLM would, deterministically."""
    return tether.ScriptedModel(decide, name="desk-scripted")


def _answers(request: tether.ModelRequest) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for message in request.messages:
        if message.role == "tool" and message.name:
            found.setdefault(message.name, []).append(message.content)
    return found


def _data(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def credit_for(task: str, order: dict[str, Any], profile: dict[str, Any]) -> tuple[int, str]:
    """The credit the desk's rules give, in cents, and its memo (0: nothing to credit)."""
    left = int(order.get("amount", 0)) - int(order.get("amount_refunded", 0))
    if re.search(r"\b(damaged|broken|smashed)\b", task, re.IGNORECASE):
        return max(left, 0), "damaged on arrival"
    shipping = str((order.get("metadata") or {}).get("shipping", ""))
    if re.search(r"\blate\b", task, re.IGNORECASE) and shipping.isdigit():
        fee = int(shipping) if profile.get("tier") == "gold" else int(shipping) // 2
        return min(fee, max(left, 0)), "late delivery: shipping fee"
    return 0, ""


def decide(request: tether.ModelRequest) -> tether.ModelResponse:
    """The next move, from the task and what the tools have answered."""
    task = next((m.content for m in request.messages if m.role == "user"), "")
    seen = _answers(request)
    found = ORDER_ID.search(task)
    if found is None:
        return reply("Which order is it about? I need its number (ord_…).")
    order_id = found.group(0)
    if "lookup_order" not in seen:
        return call("lookup_order", {"order_id": order_id}, call_id="c_order")
    order = _data(seen["lookup_order"][-1])
    if order is None or not isinstance(order.get("customer"), str):
        return reply(f"I could not read order {order_id} ({seen['lookup_order'][-1][:160]}); "
                     "I have not credited anything.")
    if "customer_profile" not in seen:
        return call("customer_profile", {"customer_id": order["customer"]}, call_id="c_profile")
    profile = _data(seen["customer_profile"][-1])
    if profile is None or not isinstance(profile.get("email"), str):
        return reply(f"I could not read the customer's profile "
                     f"({seen['customer_profile'][-1][:160]}); I have not credited anything.")
    cents, memo = credit_for(task, order, profile)
    if cents <= 0:
        return reply(f"Order {order_id} has nothing I can credit under our rules.")
    if "issue_credit" not in seen:
        return call("issue_credit", {"order_id": order_id, "cents": cents, "memo": memo},
                    call_id="c_credit")
    credit = _data(seen["issue_credit"][-1])
    if credit is None or "id" not in credit:
        return reply(f"I could not credit {order_id}: {seen['issue_credit'][-1][:200]}")
    text = (f"Hello {profile.get('name', '')}, we credited {cents / 100:.2f} on order "
            f"{order_id} ({memo}).")
    if "notify_customer" not in seen:
        return call("notify_customer", {"address": profile["email"], "text": text},
                    call_id="c_notify")
    if "log_case" not in seen:
        return call("log_case", {"customer_id": profile["id"],
                                 "summary": f"Credited {cents} on {order_id} ({credit['id']}): "
                                            f"{memo}."}, call_id="c_case")
    return reply(f"Credited {cents / 100:.2f} on {order_id} ({credit['id']}); the customer "
                 "has been told and the case logged.")


# -- the agent, wired two ways --------------------------------------------------------------


def desk_agent(clients: Clients, model: tether.Model) -> tether.Agent:
    """The desk's agent over ``clients`` with ``model``: the one definition both factories
    share."""
    return tether.Agent(
        name="billing_desk", model=model, tools=desk_tools(clients), instructions=INSTRUCTIONS,
        policy=tether.Policy.of(argument_limit("issue_credit", "cents", CREDIT_LIMIT_CENTS,
                                               role="supervisor")),
        budgets=tether.Budgets(max_steps=20))


def build(env: Environment) -> tether.Agent:
    """The agent in tether's simulator: ``env`` (a ``tether.sim.Environment``) gives clients
    bound to the simulated services."""
    clients = Clients(payments=env.client("payments"), crm=env.client("crm"),
                      email=env.client("email"))
    return desk_agent(clients, desk_model())


class HttpService:
    """A JSON-over-HTTP client of one service: ``await service.operation(*args, **kwargs)``
    posts to ``{base_url}/{operation}`` and answers the decoded JSON (a sketch of the desk's
    production clients; any client answering JSON data fits)."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url, self.token = base_url.rstrip("/"), token

    def __getattr__(self, operation: str) -> Callable[..., Awaitable[Any]]:
        if operation.startswith("_"):
            raise AttributeError(operation)

        async def invoke(*args: Any, idempotency_key: str | None = None, **kwargs: Any) -> Any:
            import httpx  # only production needs it

            headers = {"Authorization": f"Bearer {self.token}"}
            if idempotency_key:
                headers["Idempotency-Key"] = idempotency_key
            async with httpx.AsyncClient(timeout=10.0) as http:
                answer = await http.post(f"{self.base_url}/{operation}", headers=headers,
                                         json={"args": list(args), **kwargs})
                answer.raise_for_status()
                return answer.json()

        return invoke


def production(settings: dict[str, str]) -> tether.Agent:
    """The same agent in production: the real services' HTTP clients and a real model.

    ``settings`` holds ``payments_url``, ``crm_url``, ``email_url``, ``token`` (the services'),
    ``openai_api_key`` and optionally ``model``; run it with
    ``tether.Runtime(store=tether.SQLiteStore("desk.db")).run(agent, task)``.
    """
    from tether.models import OpenAIModel

    token = settings["token"]
    clients = Clients(payments=HttpService(settings["payments_url"], token),
                      crm=HttpService(settings["crm_url"], token),
                      email=HttpService(settings["email_url"], token))
    model = OpenAIModel(settings.get("model", "gpt-4.1"), api_key=settings["openai_api_key"])
    return desk_agent(clients, model)
