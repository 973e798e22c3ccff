"""Payments beyond refunds: customers, charges and payouts with Stripe's validation, one
idempotency key store for every write, the available balance, effects, seeds and snapshots."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from tether.sim import scenario_from_dict
from tether.sim.services.errors import PaymentsError
from tether.sim.services.payments import Charge, Customer, Payments, Payout
from tether.sim.world import World

from .conftest import DAY_S, START

SEED: dict[str, Any] = {
    "customers": [{"id": "cus_0001", "email": "ada@example.com", "name": "Ada"}],
    "charges": [{"id": "ch_0001", "customer": "cus_0001", "amount": 5000},
                {"id": "ch_0002", "amount": 900, "currency": "eur"}],
}


def error_of(call: Any, *args: Any, **kwargs: Any) -> PaymentsError:
    with pytest.raises(PaymentsError) as info:
        call(*args, **kwargs)
    return info.value


def test_create_customer_and_list_by_email(world: World) -> None:
    """A created customer gets the next free id, is listed newest first and found by email,
    and records a ``payments.customer`` effect."""
    payments = Payments(world, SEED)
    world.clock.advance(10)
    customer = payments.create_customer(email="bo@example.com", name="Bo",
                                        metadata={"src": "web"})
    assert (customer.id, customer.created) == ("cus_0002", int(START) + 10)
    assert [c.id for c in payments.list_customers()] == ["cus_0002", "cus_0001"]
    assert payments.list_customers(email="bo@example.com") == [customer]
    assert [(e.key, e.data["email"]) for e in world.ledger.of("payments", "customer")] == [
        ("customer:cus_0002", "bo@example.com")]


def test_create_charge_records_its_effect(world: World) -> None:
    """A charge lower-cases its currency, is listed without a filter and records
    ``payments.charge`` with key ``charge:<id>``."""
    payments = Payments(world, SEED)
    charge = payments.create_charge(2500, "USD", customer="cus_0001", description="Order 9",
                                    idempotency_key="c1")
    assert (charge.id, charge.currency, charge.status) == ("ch_0003", "usd", "succeeded")
    assert {c.id for c in payments.list_charges()} == {"ch_0001", "ch_0002", "ch_0003"}
    [effect] = world.ledger.of("payments", "charge")
    assert (effect.key, effect.data["amount"], effect.data["idempotency_key"]) == (
        "charge:ch_0003", 2500, "c1")


@pytest.mark.parametrize(("kwargs", "param", "code"), [
    ({"amount": 0, "currency": "usd"}, "amount", "parameter_invalid_integer"),
    ({"amount": True, "currency": "usd"}, "amount", "parameter_invalid_integer"),
    ({"amount": "5", "currency": "usd"}, "amount", "parameter_invalid_integer"),
    ({"amount": 5, "currency": "dollars"}, "currency", None),
    ({"amount": 5, "currency": "usd", "metadata": {"a": 1}}, "metadata", None),
])
def test_charge_parameters_are_validated(world: World, kwargs: dict[str, Any], param: str,
                                         code: str | None) -> None:
    """Malformed charge parameters are 400s naming the parameter, and charge nothing."""
    err = error_of(Payments(world, SEED).create_charge, **kwargs)
    assert (err.type, err.param, err.code, err.status) == (
        "invalid_request_error", param, code, 400)
    assert len(world.ledger) == 0


def test_a_charge_for_an_unknown_customer_is_resource_missing(world: World) -> None:
    """An unknown customer is 404 resource_missing on ``customer``."""
    err = error_of(Payments(world, SEED).create_charge, 100, "usd", customer="cus_9")
    assert (err.code, err.param, err.status) == ("resource_missing", "customer", 404)


def test_a_declined_card_is_saved_under_its_key(world: World) -> None:
    """A declined test token is 402 card_error; retried with its key, the same error
    replays, and nothing is charged."""
    payments = Payments(world, SEED)
    first = error_of(payments.create_charge, 100, "usd", source="tok_chargeDeclined",
                     idempotency_key="d1")
    again = error_of(payments.create_charge, 100, "usd", source="tok_chargeDeclined",
                     idempotency_key="d1")
    assert (first.type, first.code, first.status) == ("card_error", "card_declined", 402)
    assert again.args == first.args and world.ledger.of("payments", "charge") == []


def test_a_charge_that_failed_cannot_be_refunded(world: World) -> None:
    """A failed charge moved no money: refunding it is 400 charge_not_refundable and records
    nothing (a pending charge may be refunded)."""
    payments = Payments(world, {"charges": [
        {"id": "ch_f", "amount": 700, "status": "failed"},
        {"id": "ch_p", "amount": 700, "status": "pending"}]})
    err = error_of(payments.create_refund, "ch_f")
    assert (err.code, err.param, err.status) == ("charge_not_refundable", "charge", 400)
    assert payments.get_charge("ch_f").amount_refunded == 0
    assert payments.create_refund("ch_p").amount == 700
    assert [e.data["charge"] for e in world.ledger.of("payments", "refund")] == ["ch_p"]


def test_every_write_replays_by_key_and_flags_it(world: World) -> None:
    """Customers, charges and payouts replay under a used key with ``idempotent_replayed``,
    which their JSON shows only when set."""
    payments = Payments(world, SEED)
    calls: list[Callable[[], Any]] = [
             lambda: payments.create_customer(email="x@example.com", idempotency_key="a"),
             lambda: payments.create_charge(100, "usd", idempotency_key="b"),
             lambda: payments.create_payout(100, "usd", idempotency_key="c")]
    for call in calls:
        first, again = call(), call()
        assert again.idempotent_replayed and again.id == first.id
        assert "idempotent_replayed" not in first.model_dump(mode="json")
        assert again.model_dump(mode="json")["idempotent_replayed"] is True
    assert len(world.ledger) == 3


def test_one_key_store_for_every_write(world: World) -> None:
    """A key first used for a charge cannot create a payout (idempotency_error), and a key in
    flight is 409 for every write."""
    payments = Payments(world, SEED)
    payments.create_charge(100, "usd", idempotency_key="k")
    err = error_of(payments.create_payout, 100, "usd", idempotency_key="k")
    assert (err.type, err.status) == ("idempotency_error", 400)
    with payments.in_flight("busy"):
        busy = error_of(payments.create_customer, email="y@example.com", idempotency_key="busy")
    assert (busy.code, busy.status, busy.retryable) == ("idempotency_key_in_use", 409, True)


def test_keys_expire_for_every_write(world: World) -> None:
    """After the key's 24 hours, a reused key charges again."""
    payments = Payments(world, SEED)
    first = payments.create_charge(100, "usd", idempotency_key="k")
    world.clock.advance(DAY_S)
    assert payments.create_charge(100, "usd", idempotency_key="k").id != first.id
    assert len(world.ledger.of("payments", "charge")) == 2


def test_payouts_draw_on_the_available_balance(world: World) -> None:
    """The available balance is the opening balance plus succeeded charges less refunds and
    payouts, per currency; more than that is balance_insufficient and pays nothing."""
    payments = Payments(world, {**SEED, "balance": {"usd": 1000}})
    payments.create_refund("ch_0001", amount=2000)
    assert payments.available("usd") == 1000 + 5000 - 2000
    assert payments.available("eur") == 900
    payout = payments.create_payout(4000, "usd", description="weekly")
    err = error_of(payments.create_payout, 1, "USD")
    assert (err.code, err.param, err.status) == ("balance_insufficient", "amount", 400)
    assert payments.get_payout(payout.id) == payout and payments.list_payouts() == [payout]
    assert [(e.key, e.data["amount"]) for e in world.ledger.of("payments", "payout")] == [
        ("payout:po_0001", 4000)]


def test_the_balance_lists_every_currency_used(world: World) -> None:
    """``get_balance`` is Stripe's balance object: available per currency, sorted, usd at 0
    for an account that has used none."""
    assert Payments(World(seed=1), {}).get_balance().model_dump(mode="json") == {
        "object": "balance", "available": [{"amount": 0, "currency": "usd"}], "pending": [],
        "livemode": False}
    payments = Payments(world, {**SEED, "balance": {"gbp": 10}})
    payments.create_payout(1000, "usd")
    assert [(a.currency, a.amount) for a in payments.get_balance().available] == [
        ("eur", 900), ("gbp", 10), ("usd", 4000)]


@pytest.mark.parametrize("model", [Customer, Charge, Payout])
def test_objects_describe_their_json(model: type[Any]) -> None:
    """The flag shown only when set leaves each object's JSON schema (what the OpenAPI
    document publishes) describing its fields."""
    schema = TypeAdapter(model).json_schema(mode="serialization")
    assert {"id", "object", "created", "metadata"} <= set(schema["properties"])


def test_refunds_are_retrieved_and_listed_across_charges(world: World) -> None:
    """``get_refund`` finds a refund by id and ``list_refunds()`` lists every charge's."""
    payments = Payments(world, SEED)
    one = payments.create_refund("ch_0001", amount=10)
    two = payments.create_refund("ch_0002", amount=10)
    assert payments.get_refund(one.id) == one
    assert {r.id for r in payments.list_refunds()} == {one.id, two.id}
    for call, arg in ((payments.get_refund, "re_9"), (payments.get_payout, "po_9")):
        err = error_of(call, arg)
        assert (err.code, err.param, err.status) == ("resource_missing", "id", 404)


def test_seeded_payouts_and_keys(world: World) -> None:
    """Payouts may be seeded (arrival defaults to creation, ids skip them, they count against
    the balance); ``api_keys`` is kept for the HTTP face; the snapshot lists payouts only
    once there are any."""
    assert "payouts" not in Payments(World(seed=1), SEED).snapshot()
    payments = Payments(world, {**SEED, "payouts": [{"id": "po_0001", "amount": 300}],
                                "api_keys": ["sk_test_a"]})
    assert payments.get_payout("po_0001").arrival_date == int(START)
    assert payments.available("usd") == 4700 and payments.api_keys == ("sk_test_a",)
    assert payments.create_payout(100, "usd").id == "po_0002"
    assert set(payments.snapshot()["payouts"]) == {"po_0001", "po_0002"}


def test_the_new_effects_are_known_to_scenarios() -> None:
    """A scenario may name ``payments.charge``, ``payments.payout`` and
    ``payments.customer`` in its invariants and target the new operations with faults."""
    scenario = scenario_from_dict({
        "name": "s", "agent": "tests.sim.own_agents.credit:agent", "task": "t",
        "world": {"payments": SEED},
        "faults": [{"kind": "timeout_after", "target": "payments.create_charge"}],
        "invariants": [{"exactly_once": {"effect": "payments.charge",
                                         "match": {"customer": "cus_0001"}}},
                       {"never": {"effect": "payments.payout"}},
                       {"at_most": {"effect": "payments.customer", "n": 1}}]})
    assert len(scenario.invariants) == 3


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["charge", "refund", "payout"]),
                          st.integers(1, 7000),
                          st.one_of(st.none(), st.sampled_from(["k1", "k2"]))), max_size=20))
def test_payouts_never_exceed_the_balance_and_it_matches_the_ledger(
        steps: list[tuple[str, int, str | None]]) -> None:
    """Whatever charges, refunds and payouts are asked for, a payout is made only out of the
    available balance, and the balance equals the ledger's charges less refunds less payouts
    (a refund may take it below zero, as a Stripe refund debits the account)."""
    world = World(seed=2)
    payments = Payments(world, SEED)
    for kind, amount, key in steps:
        before = payments.available("usd")
        try:
            if kind == "charge":
                payments.create_charge(amount, "usd", idempotency_key=key)
            elif kind == "refund":
                payments.create_refund("ch_0001", amount=amount, idempotency_key=key)
            else:
                payout = payments.create_payout(amount, "usd", idempotency_key=key)
                assert payout.idempotent_replayed or payout.amount <= before
        except PaymentsError:
            assert payments.available("usd") == before
        usd = sum(e.data["amount"] * (1 if e.operation == "charge" else -1)
                  for e in world.ledger.of("payments")
                  if e.data["currency"] == "usd" and e.operation != "customer")
        assert payments.available("usd") == 5000 + usd
