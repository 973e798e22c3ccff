"""The naive loop's retries as graded: counted once per extra attempt, and "blind" only when the
write's service call carried no idempotency key (whatever the tool's effect class)."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

import tether
from tether.evals.grading import grade
from tether.models.base import ModelRequest, ModelResponse
from tether.models.scripted import ScriptedModel, call, reply
from tether.sim.environment import Environment
from tether.sim.episode import run_episode
from tether.sim.scenario import scenario_from_dict


class Order(BaseModel):
    order_id: str


class Credit(BaseModel):
    order_id: str
    cents: int


class Mail(BaseModel):
    to: str
    body: str


def _script(request: ModelRequest) -> ModelResponse:
    seen = {m.name for m in request.messages if m.role == "tool"}
    if "give_credit" not in seen:
        return call("give_credit", {"order_id": "ord_1", "cents": 1500})
    if "mail" not in seen:
        return call("mail", {"to": "grace@example.com", "body": "We credited 15.00."})
    return reply("Credited 15.00 on ord_1.")


def build(env: Environment) -> tether.Agent:
    """A credit whose handler keys its own request (Stripe-style, whatever loop runs it), and
    a mail sent with the harness's key (none under naive)."""
    pay, mail = env.client("payments"), env.client("email")

    @tether.tool(effect="idempotent", key=lambda a: f"gc:{a.order_id}:{a.cents}")
    async def give_credit(ctx: tether.ToolContext, args: Credit) -> Any:
        """Credit an order."""
        return await pay.create_refund(args.order_id, amount=args.cents,
                                       idempotency_key=f"gc:{args.order_id}:{args.cents}")

    @tether.tool(name="mail", effect="idempotent", key=lambda a: f"m:{a.to}:{a.body}")
    async def mail_(ctx: tether.ToolContext, args: Mail) -> Any:
        """Mail the customer."""
        return await mail.send(args.to, "Your order", args.body,
                               idempotency_key=ctx.idempotency_key or None)

    return tether.Agent(name="credit", model=ScriptedModel(_script, name="credit-model"),
                        tools=[give_credit, mail_], instructions="Credit, then mail.")


def _scenario(faults: list[dict[str, Any]]) -> Any:
    return scenario_from_dict({
        "name": "credit", "agent": f"{__name__}:build",
        "task": "Order ord_1 arrived late; credit the 15.00 shipping.",
        "principal": {"id": "cus_1", "roles": ["customer"]},
        "world": {"payments": {
            "customers": [{"id": "cus_1", "email": "grace@example.com", "name": "Grace"}],
            "charges": [{"id": "ord_1", "customer": "cus_1", "amount": 8600}]}},
        "budgets": {"max_steps": 10},
        "success": [{"exactly_once": {"effect": "payments.refund",
                                      "match": {"charge": "ord_1", "amount": 1500}}}],
        "faults": faults})


def _graded(faults: list[dict[str, Any]]) -> tuple[Any, Any]:
    scenario = _scenario(faults)
    result = run_episode(scenario, 0, "naive")
    return result, grade(scenario, result)


def test_a_retry_of_a_write_whose_handler_keys_it_is_not_blind() -> None:
    """The credit's request timed out after committing; naive retried it with the handler's
    own key, the provider deduplicated: a pass, not a blind retry."""
    result, g = _graded([{"kind": "timeout_after", "target": "payments.create_refund",
                          "on_call": [1]}])
    assert [c.keyed for c in result.calls if c.target == "payments.create_refund"] == [True,
                                                                                     True]
    assert not any("blind" in p for p in g.problems), g.problems
    assert g.verdict == "pass" and g.metrics["retries"] == 1


def test_a_retry_of_an_unkeyed_write_is_blind() -> None:
    """The mail went out with no key and failed once: naive's retry is a blind one."""
    _, g = _graded([{"kind": "error", "target": "email.send", "on_call": [1], "status": 503}])
    assert "1 blind retry of a write without an idempotency key" in g.problems
    assert g.verdict == "unacceptable_process" and g.metrics["retries"] == 1


def test_three_failures_are_two_retries_and_one_give_up() -> None:
    """Three failed attempts: two retries, the third logged as given up, not as a retry."""
    result, g = _graded([{"kind": "error", "target": "email.send", "on_call": [1, 2, 3],
                          "status": 503}])
    transcript = result.outcome.transcript
    assert [e["attempt"] for e in transcript if "retry" in e] == [1, 2]
    assert [e["attempts"] for e in transcript if "gave_up" in e] == [3]
    assert g.metrics["retries"] == 2 and g.metrics["unpaced_retries"] == 2
    assert "2 blind retries of a write without an idempotency key" in g.problems
    assert json.dumps(transcript)  # the transcript stays plain JSON (the naive journal)


_DRAWN = [0]


def build_drawn_keys(env: Environment) -> tether.Agent:
    """The credit with a key drawn afresh for every call (as the stripe SDK draws one when the
    agent gives none): each request is keyed, yet a retry is a new request."""
    pay = env.client("payments")

    @tether.tool(effect="idempotent", key=lambda a: f"gc:{a.order_id}:{a.cents}")
    async def give_credit(ctx: tether.ToolContext, args: Credit) -> Any:
        """Credit an order."""
        _DRAWN[0] += 1
        return await pay.create_refund(args.order_id, amount=args.cents,
                                       idempotency_key=f"drawn-{_DRAWN[0]}")

    def script(request: ModelRequest) -> ModelResponse:
        if any(m.role == "tool" for m in request.messages):
            return reply("Credited 15.00 on ord_1.")
        return call("give_credit", {"order_id": "ord_1", "cents": 1500})

    return tether.Agent(name="credit", model=ScriptedModel(script, name="drawn"),
                        tools=[give_credit], instructions="Credit.")


def test_a_retry_under_a_freshly_drawn_key_is_blind() -> None:
    """Each request carried a key, but the retry's differs from the failed call's: the
    provider saw two requests (two refunds), and the retry is graded blind."""
    scenario = scenario_from_dict({**_scenario([{"kind": "timeout_after",
                                                 "target": "payments.create_refund",
                                                 "on_call": [1]}]).model_dump(
        exclude={"source"}), "agent": f"{__name__}:build_drawn_keys"})
    result = run_episode(scenario, 0, "naive")
    g = grade(scenario, result)
    assert all(c.keyed for c in result.calls if c.target == "payments.create_refund")
    assert len([e for e in result.ledger if e["operation"] == "refund"]) == 2
    assert "1 blind retry of a write without an idempotency key" in g.problems
