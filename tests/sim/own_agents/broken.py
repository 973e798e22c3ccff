"""Factories that cannot work, each in its own way (the loader must say why)."""

from __future__ import annotations

from typing import Any

import tether
from tests.sim.own_agents.credit import CreditArgs, credit_script
from tether.sim import Environment


def zero_args() -> tether.Agent:
    """Takes no environment."""
    raise AssertionError("never called")


def two_args(env: Environment, extra: Any) -> tether.Agent:
    """Takes a second required argument."""
    raise AssertionError("never called")


async def async_factory(env: Environment) -> tether.Agent:
    """Returns a coroutine instead of the agent."""
    raise AssertionError("never awaited")


def not_an_agent(env: Environment) -> dict[str, Any]:
    """Returns something other than a tether.Agent."""
    return {"name": "agent?"}


NOT_CALLABLE = 42


def offline(env: Environment) -> tether.Agent:
    """An agent whose tool answers without reaching any simulated service (as if it held a real
    client)."""

    @tether.tool(name="credit_order", args=CreditArgs, effect="idempotent",
                 key=lambda a: f"credit:{a.order_ref}")
    async def credit_order(ctx: tether.ToolContext, args: CreditArgs) -> Any:
        """Credit an order on a 'real' service."""
        return {"id": "re_real", "amount": args.cents}

    return tether.Agent(name="offline", model=credit_script(), tools=[credit_order],
                        instructions="Credit orders as asked.")



def offline_unreachable(env: Environment) -> tether.Agent:
    """An agent whose tool tries a real service, which the simulation cannot reach: the call
    fails with a connection error instead of answering."""

    @tether.tool(name="credit_order", args=CreditArgs, effect="idempotent",
                 key=lambda a: f"credit:{a.order_ref}")
    async def credit_order(ctx: tether.ToolContext, args: CreditArgs) -> Any:
        """Credit an order on the 'real' service."""
        raise ConnectionError("api.payments.example: connection refused")

    return tether.Agent(name="offline", model=credit_script(), tools=[credit_order],
                        instructions="Credit orders as asked.")


def raises(env: Environment) -> tether.Agent:
    """A factory with a bug: it raises while building the agent."""
    settings: dict[str, str] = {}
    return tether.Agent(name=settings["name"], model=credit_script(), tools=[],
                        instructions="")


def not_a_model(env: Environment) -> str:
    """A model script returning something other than a model."""
    return "gpt-4o"


def model_raises(env: Environment) -> tether.ScriptedModel:
    """A model script with a bug: it raises while building the model."""
    raise LookupError("no model configured for this environment")


def refuses_bad_amounts(env: Environment) -> tether.Agent:
    """A correctly wired agent (its tool uses ``env.client``) whose handler refuses a credit of
    zero cents before calling the service; its model asks for zero, then gives up."""
    payments = env.client("payments")

    @tether.tool(name="credit_order", args=CreditArgs, effect="idempotent",
                 key=lambda a: f"credit:{a.order_ref}:{a.cents}")
    async def credit_order(ctx: tether.ToolContext, args: CreditArgs) -> Any:
        """Credit an order; zero or negative amounts are refused here."""
        if args.cents <= 0:
            raise ValueError(f"refusing to credit {args.cents} cents")
        return await payments.create_refund(args.order_ref, amount=args.cents,
                                            idempotency_key=ctx.idempotency_key or None)

    return tether.Agent(name="careful", model=credit_script(cents=0), tools=[credit_order],
                        instructions="Credit orders as asked.")
