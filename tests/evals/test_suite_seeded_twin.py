"""A suite's targets and counts come from the agent's fault-free twin at the episode's own
seed: an agent that repeats an effect key, or whose writes depend on the seed, is judged
against what it does itself when nothing goes wrong."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from pydantic import BaseModel

import tether
from tether.errors import SuiteNotApplicable
from tether.evals.suites import SUITES, variant
from tether.evals.targets import probe_targets
from tether.models.base import ModelRequest, ModelResponse
from tether.models.scripted import ScriptedModel, call, reply
from tether.sim.environment import Environment
from tether.sim.episode import run_episode
from tether.sim.scenario import scenario_from_dict

BASE = scenario_from_dict({
    "name": "late-order", "agent": "refund",
    "task": "Order ord_2001 arrived late, please refund the 15.00 shipping. - Grace",
    "principal": {"id": "cus_grace", "roles": ["customer"]},
    "world": {
        "payments": {
            "customers": [{"id": "cus_grace", "email": "grace@example.com", "name": "Grace"}],
            "charges": [{"id": "ord_2001", "customer": "cus_grace", "amount": 8600,
                         "description": "Order 2001: desk lamp, express shipping",
                         "metadata": {"shipping": "1500"}}]},
        "crm": {"customers": [{"id": "cus_grace", "name": "Grace",
                               "email": "grace@example.com", "tier": "gold"}]}},
    "success": [{"exactly_once": {"effect": "payments.refund",
                                  "match": {"charge": "ord_2001", "amount": 1500}}}],
    "invariants": [{"every": {"effect": "payments.refund",
                              "match": {"charge": "ord_2001", "amount": 1500}}}]})


class Order(BaseModel):
    order_id: str


class Credit(BaseModel):
    order_id: str
    cents: int


class Mail(BaseModel):
    to: str
    body: str


class Note(BaseModel):
    customer: str
    text: str


def _tools(env: Environment) -> list[Any]:
    pay, mail, crm = env.client("payments"), env.client("email"), env.client("crm")

    @tether.tool(name="get_order", args=Order)
    async def get_order(ctx: tether.ToolContext, a: Order) -> Any:
        """Read an order."""
        return await pay.get_charge(a.order_id)

    @tether.tool(name="give_credit", args=Credit, effect="idempotent",
                 key=lambda a: f"gc:{a.order_id}:{a.cents}")
    async def give_credit(ctx: tether.ToolContext, a: Credit) -> Any:
        """Credit an order."""
        return await pay.create_refund(a.order_id, amount=a.cents,
                                       idempotency_key=ctx.idempotency_key or None)

    @tether.tool(name="mail", args=Mail, effect="idempotent",
                 key=lambda a: f"m:{a.to}:{a.body}")
    async def mail_(ctx: tether.ToolContext, a: Mail) -> Any:
        """Email the customer (every email has the subject "Your order")."""
        return await mail.send(a.to, "Your order", a.body,
                               idempotency_key=ctx.idempotency_key or None)

    @tether.tool(name="note", args=Note, effect="reconcilable",
                 key=lambda a: f"n:{a.customer}:{a.text}")
    async def note(ctx: tether.ToolContext, a: Note) -> Any:
        """Add a case note."""
        return await crm.add_note(a.customer, a.text, "desk")

    return [get_order, give_credit, mail_, note]


def _decide(request: ModelRequest, *, mails: int, notes: int, writes: bool) -> ModelResponse:
    task = next(m.content for m in request.messages if m.role == "user")
    seen: dict[str, list[str]] = {}
    for m in request.messages:
        if m.role == "tool" and m.name:
            seen.setdefault(m.name, []).append(m.content)
    found = re.search(r"ord_\w+", task)
    oid = found.group(0) if found else "?"
    if "get_order" not in seen:
        return call("get_order", {"order_id": oid})
    order = json.loads(seen["get_order"][-1])
    if not writes or not isinstance(order, dict) or "customer" not in order:
        return reply("Please send a photo of the delivery slip first.")
    sent = len(seen.get("mail", []))
    if sent == 0:
        return call("mail", {"to": "grace@example.com", "body": f"We received {oid}."})
    if "give_credit" not in seen:
        return call("give_credit", {"order_id": oid, "cents": 1500})
    if sent < mails:
        return call("mail", {"to": "grace@example.com", "body": f"We credited {oid}."})
    if len(seen.get("note", [])) < notes:
        return call("note", {"customer": order["customer"],
                             "text": f"note {len(seen.get('note', []))}"})
    return reply(f"Credited 15.00 on {oid}.")


def _agent(name: str, env: Environment, **how: Any) -> tether.Agent:
    return tether.Agent(name=name, model=ScriptedModel(lambda r: _decide(r, **how), name=name),
                        tools=_tools(env), instructions="Credit late orders their shipping fee.")


def two_mails(env: Environment) -> tether.Agent:
    """An acknowledgement and a confirmation, both with the subject "Your order": one email
    key, twice, when nothing goes wrong."""
    return _agent("two_mails", env, mails=2, notes=0, writes=True)


def seeded_notes(env: Environment) -> tether.Agent:
    """One to three case notes, as many as the episode's randomness says."""
    notes = env.rng("notes").randint(1, 3)
    return _agent("seeded_notes", env, mails=1, notes=notes, writes=True)


def odd_seeds_write(env: Environment) -> tether.Agent:
    """Credits the order on odd seeds; on even ones asks for a photo and writes nothing."""
    return _agent("odd_seeds_write", env, mails=1, notes=0, writes=env.seed % 2 == 1)


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_a_key_the_agent_repeats_itself_is_no_duplicate(suite: str) -> None:
    """Two emails with one key in a fault-free run are the agent's behaviour: no suite reports a
    violation under the default harness, and a third email would still be one."""
    for seed in range(4):
        v = variant(BASE, suite, seed, agent=two_mails)
        result = run_episode(v, seed, "default", agent=two_mails)
        assert [x.detail for x in result.verdicts if not x.holds] == [], (suite, seed)
    each = [i.settings for i in v.invariants if i.kind == "at_most_each"]
    assert {"effect": "email.send", "n": 1,
            "keys": {"email:grace@example.com:Your order": 2}} in each


def test_write_counts_follow_the_seed() -> None:
    """An agent whose number of notes depends on the seed gets the adversarial ``at_most`` of
    that seed's twin, and no false violation on any seed."""
    counts = {seed: sum(e["service"] == "crm" for e in
                        run_episode(BASE, seed, "default", agent=seeded_notes).ledger)
              for seed in range(8)}
    assert len(set(counts.values())) > 1
    for seed, count in counts.items():
        v = variant(BASE, "adversarial_context", seed, agent=seeded_notes)
        assert {"effect": "crm.note", "n": count} in [
            i.settings for i in v.invariants if i.kind == "at_most"]
        result = run_episode(v, seed, "default", agent=seeded_notes)
        assert [x.detail for x in result.verdicts if not x.holds] == [], seed


def test_a_suite_applies_on_the_seeds_where_the_agent_writes() -> None:
    """An agent that writes on seed 1 but not on seed 0: retry safety is not applicable at
    seed 0 and aims at the write at seed 1."""
    with pytest.raises(SuiteNotApplicable):
        variant(BASE, "retry_safety", 0, agent=odd_seeds_write)
    v = variant(BASE, "retry_safety", 1, agent=odd_seeds_write)
    assert {f.target for f in v.faults} & {"payments.create_refund", "email.send"}
    assert run_episode(v, 1, "default", agent=odd_seeds_write).ok


def test_the_twin_is_cached_per_seed() -> None:
    """One twin per (scenario, agent, seed): the same seed reuses it, another seed has its
    own."""
    assert probe_targets(BASE, odd_seeds_write, 3) is probe_targets(BASE, odd_seeds_write, 3)
    assert probe_targets(BASE, odd_seeds_write, 2).writes == ()
    assert probe_targets(BASE, odd_seeds_write, 3).seed == 3
