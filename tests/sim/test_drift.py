"""Schema drift never produces a wrong effect: tools declare strict result types, drifted
answers are ``tool_result_invalid``, and the reference agents refuse rather than guess."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from tether.reference.common import bind
from tether.reference.refund import ChargeRef, _item_amount
from tether.runtime.tools import Tool
from tether.sim.agent_ref import load_agent_factory
from tether.sim.episode import environment_for, run_episode
from tether.sim.scenario import Scenario, load_scenario, scenario_from_dict
from tether.sim.services.responses import ChargeResponse

BUILTIN = Path(__file__).resolve().parents[2] / "src" / "tether" / "evals" / "scenarios"
CHARGE: dict[str, Any] = {
    "id": "ch_0001", "object": "charge", "amount": 20000, "amount_refunded": 0,
    "currency": "usd", "customer": "cus_0001", "status": "succeeded", "refunded": False,
    "disputed": False, "description": "Order #1042", "created": 1767225600,
    "metadata": {"item:kettle": "4999", "item:mugs": "7001"},
}


def _loose(tools: list[Tool[Any, Any]]) -> list[str]:
    """The tools whose result type is not precise: neither a model nor a scalar (``Any`` or
    ``dict[str, Any]`` let a renamed field through unnoticed)."""
    def precise(t: Any) -> bool:
        return isinstance(t, type) and (issubclass(t, BaseModel) or t in (str, int, float, bool))
    return [t.name for t in tools if not precise(t.result_type)]


def _drifted(base: Scenario, target: str, **drift: Any) -> Scenario:
    data = base.model_dump(exclude={"source", "invariants"})
    data["faults"] = [{"kind": "schema_drift", "target": target, **drift}]
    return scenario_from_dict(data)


@pytest.mark.parametrize("name", ["refund", "calendar"])
def test_every_reference_tool_declares_a_result_type(name: str) -> None:
    """Every reference agent's tool declares a precise result type: drift is always checked."""
    scenario = load_scenario(BUILTIN / f"{name}.yaml")
    agent = load_agent_factory(name)(environment_for(scenario, 1))
    assert _loose(agent.tools) == []


def test_every_demo_and_example_tool_declares_a_result_type(tmp_path: Path) -> None:
    """The crash demo's and the examples' tools declare precise results too."""
    from tether.demo.bank import Bank
    from tether.demo.crash import build

    examples = Path(__file__).resolve().parents[2] / "examples"
    tools = list(build(Bank(tmp_path / "bank.db"))[1].values())
    for name in ("refund_agent", "guarded_agent"):
        spec = importlib.util.spec_from_file_location(f"example_{name}", examples / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        found = [v for v in vars(module).values() if isinstance(v, Tool)]
        if hasattr(module, "build_agent"):
            found += module.build_agent(str(tmp_path / "ledger.db")).tools
        assert found, name
        tools += found
    assert _loose(tools) == []


def test_bind_refuses_a_tool_without_a_result_type() -> None:
    """Binding a service operation without a result type is a usage error, not ``Any``."""
    with pytest.raises(Exception, match="declare its result type"):
        bind("get_charge", ChargeRef, "look up", lambda a, k: {})  # type: ignore[arg-type,return-value]


@settings(max_examples=60, deadline=None)
@given(field=st.sampled_from(sorted(ChargeResponse.model_fields)),
       how=st.sampled_from(["rename", "remove", "retype", "nest"]))
def test_a_drifted_charge_field_never_validates(field: str, how: str) -> None:
    """Renaming, removing, nesting or retyping any charge field fails validation (a retype
    of a string field to a string is no drift at all)."""
    data = dict(CHARGE)
    value = data.pop(field)
    if how == "rename":
        data[f"{field}_v2"] = value
    elif how == "retype":
        if isinstance(value, str) or value is None:
            return
        data[field] = str(value)
    elif how == "nest":
        data[field] = {"value": value}
    with pytest.raises(ValidationError):
        ChargeResponse.model_validate(data)


def test_added_fields_are_kept_not_refused() -> None:
    """An API that adds fields does not break a client (extra fields are allowed)."""
    charge = ChargeResponse.model_validate({**CHARGE, "payment_intent": "pi_1"})
    assert charge.model_dump()["payment_intent"] == "pi_1"


@pytest.mark.parametrize("drift", [
    {"rename": {"metadata": "meta"}},
    {"remove": ["metadata"]},
    {"rename": {"amount": "amount_cents"}},
    {"retype": ["amount_refunded"]},
    {"remove": ["customer"]},
])
def test_drifted_charge_is_never_refunded_wrongly_under_tether(drift: dict[str, Any]) -> None:
    """Under the default harness a drifted charge lookup is ``tool_result_invalid`` and no
    refund other than the item's price (4999 of 20000) is ever issued."""
    scenario = _drifted(load_scenario(BUILTIN / "refund.yaml"), "payments.get_charge", **drift)
    result = run_episode(scenario, 1, "default")
    amounts = [e["data"]["amount"] for e in result.ledger if e["operation"] == "refund"]
    assert set(amounts) <= {4999}
    assert result.outcome is not None
    assert any(e.kind == "tool_error" and e.failure == "tool_result_invalid"
               for e in result.outcome.events)


def test_drifted_slots_book_nothing_under_tether() -> None:
    """A slot whose ``start`` was renamed is refused, so no meeting is booked at a guess."""
    scenario = _drifted(load_scenario(BUILTIN / "calendar.yaml"), "calendar.find_slots",
                        rename={"start": "begins"})
    result = run_episode(scenario, 1, "default")
    assert [e for e in result.ledger if e["operation"] == "create_event"] == []


def test_the_agent_refuses_when_the_item_price_is_missing() -> None:
    """Without the named item's price the agent refunds nothing, even unvalidated (naive)."""
    task = "Hi, the kettle from my order ch_0001 arrived broken. Please refund it."
    assert _item_amount(task, {**CHARGE, "metadata": {}}) is None
    assert _item_amount(task, {**CHARGE, "metadata": {"item:kettle": "49.99"}}) is None
    assert _item_amount(task, CHARGE) == 4999
    assert _item_amount("Please refund the whole order ch_0001.", CHARGE) == 20000
    scenario = _drifted(load_scenario(BUILTIN / "refund.yaml"), "payments.get_charge",
                        rename={"metadata": "meta"})
    naive = run_episode(scenario, 1, "naive")
    assert [e for e in naive.ledger if e["operation"] == "refund"] == []
    assert "have not refunded" in naive.answer


def test_a_dotted_rename_moves_a_field_into_a_nested_object() -> None:
    """``rename: {amount: amounts.total}`` nests the field, and a tool refuses the result."""
    from tether.sim.faults import Fault, _transform

    fault = Fault(kind="schema_drift", target="payments.get_charge",
                  rename={"amount": "amounts.total", "metadata": "details.metadata"})
    moved = _transform(fault, dict(CHARGE))
    assert moved["amounts"] == {"total": 20000} and "amount" not in moved
    assert moved["details"] == {"metadata": CHARGE["metadata"]}
    with pytest.raises(ValidationError):
        ChargeResponse.model_validate(moved)


_ALREADY_REFUNDED: dict[str, Any] = {
    "name": "already-refunded", "agent": "refund",
    "task": "Hi, the kettle from my order ch_0001 arrived broken. Please refund it. - Ada",
    "principal": {"id": "cus_0001", "roles": ["customer"]},
    "world": {
        "payments": {
            "customers": [{"id": "cus_0001", "email": "ada@example.com", "name": "Ada"}],
            "charges": [{"id": "ch_0001", "customer": "cus_0001", "amount": 20000,
                         "metadata": {"item:kettle": "4999", "item:mugs": "7001"}}],
            "refunds": [{"id": "re_0001", "charge": "ch_0001", "amount": 4999,
                         "reason": "requested_by_customer"}]},
        "crm": {"customers": [{"id": "cus_0001", "name": "Ada", "email": "ada@example.com",
                               "tier": "gold", "notes": [
                                   "Refunded 4999 on ch_0001 (re_0001): item arrived damaged."]}]},
        "kb": {"documents": [{"id": "refund-policy", "title": "Refund policy",
                              "body": "Damaged items are refunded in full."}]}},
    "invariants": [{"never": {"effect": "payments.refund", "match": {"charge": "ch_0001"}}}],
}


@pytest.mark.parametrize("drift", [{"remove": ["email"]}, {"rename": {"notes": "history.notes"}},
                                   {"retype": ["notes"]}])
def test_a_drifted_guard_read_never_lets_a_second_refund_through(drift: dict[str, Any]) -> None:
    """The record that says "refunded already" drifts: the default harness refunds nothing."""
    scenario = scenario_from_dict({**_ALREADY_REFUNDED, "faults": [
        {"kind": "schema_drift", "target": "crm.get_customer", **drift}]})
    for seed in range(3):
        result = run_episode(scenario, seed, "default")
        assert result.ok, [v for v in result.verdicts if not v.holds]
        assert not any(e["operation"] == "refund" for e in result.ledger)
        assert result.task_checks and all(v.holds for v in result.task_checks)


def test_an_order_refunded_before_the_episode_asks_for_no_new_refund() -> None:
    """Derived task checks: a charge refunded in the seeded world is done when nothing more is
    refunded (and the honest "already refunded" answer is a success)."""
    scenario = scenario_from_dict(_ALREADY_REFUNDED)
    result = run_episode(scenario, 0, "default")
    assert "already refunded" in result.answer
    assert result.task_checks and all(v.holds for v in result.task_checks)
