"""A support desk built with Pydantic AI, refunding through the official ``stripe`` SDK.

The agent is a plain Pydantic AI ``Agent``; its model here is a deterministic
``FunctionModel`` (:func:`script`) that behaves as an LLM would: it asks which order, refunds
the amount the customer named, and, when the refund tool asks to be retried (the framework's
own retry, ``ModelRetry``), calls it again.

Two ways to hand it its refund tool:

* :func:`plain` — the framework's own: a Pydantic AI tool calling Stripe with no idempotency
  key (and the SDK's retries off), turning a network error into ``ModelRetry``;
* :func:`agent` — the same code declared once as a :class:`tether.Tool` (effect
  ``idempotent``, business key ``refund:{charge}:{amount}``, the SDK given tether's key) and
  handed to Pydantic AI through :func:`tether.sim.foreign.tether_tools`.

Each factory returns the agent as a :class:`tether.sim.foreign.Replier` through
:func:`~tether.sim.foreign.pydantic_ai_replier`. See README.md for what changes, and why.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable
from typing import Any

import stripe
from pydantic import BaseModel
from pydantic_ai import Agent, ModelRetry
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel

import tether
from tether.sim import Environment
from tether.sim.foreign import Replier, pydantic_ai_replier, tether_tools

GOODBYE = "Goodbye!"


# -- the agent (unchanged between the variants) ------------------------------------------------


def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """The desk's model: a deterministic stand-in for an LLM."""
    said = " ".join(str(p.content) for m in messages if isinstance(m, ModelRequest)
                    for p in m.parts if isinstance(p, UserPromptPart))
    last = messages[-1].parts[-1] if messages and messages[-1].parts else None
    charge = re.search(r"\bch_\w+", said)
    amount = re.search(r"\$(\d+)\.(\d\d)", said)
    if isinstance(last, ToolReturnPart) and last.tool_name == "refund":
        if last.outcome == "retried":  # the tool asked to be called again
            return ModelResponse(parts=[ToolCallPart("refund", _refund_args(charge, amount))])
        done: Any = last.content
        if isinstance(done, dict):
            return ModelResponse(parts=[TextPart(
                f"Refunded ${done['amount'] / 100:.2f} on {done['charge']} ({done['id']}). "
                f"{GOODBYE}")])
        return ModelResponse(parts=[TextPart(f"The refund did not go through: {done}")])
    if charge is None or amount is None:
        return ModelResponse(parts=[TextPart("Which order is it, and how much should I "
                                             "refund?")])
    return ModelResponse(parts=[ToolCallPart("refund", _refund_args(charge, amount))])


def _refund_args(charge: Any, amount: Any) -> dict[str, Any]:
    return {"charge": charge.group(), "amount": int(amount.group(1)) * 100 +
            int(amount.group(2))}


def desk(refund: Callable[..., Awaitable[Any]]) -> Agent[None, str]:
    """The Pydantic AI agent with its refund tool."""
    return Agent(FunctionModel(script), tools=[_model_retries(refund)], retries=3,
                 instructions="You are a support desk. Refund what the customer asks for.")


def _model_retries(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """The framework's own retry: a failed call is reported to the model, which may call the
    tool again (up to the agent's ``retries``)."""

    @functools.wraps(fn)
    async def tool(**kwargs: Any) -> Any:
        try:
            return await fn(**kwargs)
        except Exception as exc:
            raise ModelRetry(f"the refund failed ({type(exc).__name__}: {exc}); try "
                             "again") from exc

    return tool


# -- the refund tool, two ways ---------------------------------------------------------------


class RefundArgs(BaseModel):
    """Refund ``amount`` cents of ``charge``."""

    charge: str
    amount: int


def _shown(refund: Any) -> dict[str, Any]:
    return {"id": refund.id, "charge": refund.charge, "amount": refund.amount,
            "status": refund.status}


def plain_refund(client: stripe.StripeClient) -> Callable[..., Awaitable[Any]]:
    """The framework's own tool: Stripe without an idempotency key."""

    async def refund(charge: str, amount: int) -> dict[str, Any]:
        """Refund ``amount`` cents of ``charge``."""
        made = await client.v1.refunds.create_async({"charge": charge, "amount": amount})
        return _shown(made)

    return refund


def refund_tool(client: stripe.StripeClient) -> tether.Tool[Any, Any]:
    """The same call as a tether tool: Stripe deduplicates by the key tether gives it."""

    @tether.tool(name="refund", effect="idempotent", args=RefundArgs, result=dict,
                 key=lambda a: f"refund:{a.charge}:{a.amount}")
    async def refund(ctx: tether.ToolContext, args: RefundArgs) -> dict[str, Any]:
        """Refund ``amount`` cents of ``charge``."""
        options: Any = {"idempotency_key": ctx.idempotency_key} if ctx.idempotency_key else {}
        made = await client.v1.refunds.create_async(
            {"charge": args.charge, "amount": args.amount}, options=options)
        return _shown(made)

    return refund


# -- where Stripe is: the only line that knows about the simulation --------------------------


def stripe_client(env: Environment) -> stripe.StripeClient:
    """The Stripe client the tools use; in production ``stripe.StripeClient(key,
    max_network_retries=0)``, in the simulation pointed at the world."""
    return stripe.StripeClient("sk_test_desk", max_network_retries=0,
                               base_addresses={"api": env.base_url("payments")},
                               http_client=env.stripe_http_client())


def _replier(agent: Agent[None, str]) -> Replier:
    return pydantic_ai_replier(agent, done=lambda output: str(output).endswith(GOODBYE))


def plain(env: Environment) -> Replier:
    """The desk as written for Pydantic AI alone."""
    return _replier(desk(plain_refund(stripe_client(env))))


def agent(env: Environment) -> Replier:
    """The desk with tether's tool in its hands."""
    (refund,) = tether_tools([refund_tool(stripe_client(env))])
    return _replier(desk(refund))
