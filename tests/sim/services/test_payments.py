"""Payments: Stripe's objects, refund validation, idempotency semantics and ledger effects."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tether.sim.services.errors import PaymentsError
from tether.sim.services.payments import Payments
from tether.sim.world import World

from .conftest import DAY_S, HOUR_S, START

SEED: dict[str, Any] = {
    "customers": [{"id": "cus_0001", "email": "ada@example.com", "name": "Ada"},
                  {"id": "cus_0002", "email": "bo@example.com", "name": "Bo"}],
    "charges": [
        {"id": "ch_0001", "customer": "cus_0001", "amount": 5000, "created": 100},
        {"id": "ch_0002", "customer": "cus_0001", "amount": 1200, "created": 200},
        {"id": "ch_0003", "customer": "cus_0002", "amount": 900, "currency": "eur",
         "disputed": True},
    ],
}


def payments_in(world: World, seed: dict[str, Any] | None = None) -> Payments:
    return Payments(world, SEED if seed is None else seed)


def refund_effects(world: World) -> list[dict[str, Any]]:
    return [{"key": e.key, **e.data} for e in world.ledger.of("payments", "refund")]


def error_of(call: Any, *args: Any, **kwargs: Any) -> PaymentsError:
    with pytest.raises(PaymentsError) as info:
        call(*args, **kwargs)
    return info.value


# -- reads -------------------------------------------------------------------------------


def test_reads_return_stripe_objects(world: World) -> None:
    """Customers and charges carry Stripe's fields, with created defaulting to the start."""
    payments = payments_in(world)
    assert payments.get_customer("cus_0001").object == "customer"
    charge = payments.get_charge("ch_0003")
    assert (charge.object, charge.currency, charge.amount_refunded, charge.refunded,
            charge.created) == ("charge", "eur", 0, False, int(START))


def test_list_charges_newest_first(world: World) -> None:
    """list_charges lists a customer's charges newest first, like Stripe's list endpoints."""
    payments = payments_in(world)
    assert [c.id for c in payments.list_charges("cus_0001")] == ["ch_0002", "ch_0001"]
    assert payments.list_charges("cus_0002")[0].id == "ch_0003"


@pytest.mark.parametrize(("call", "arg", "param"), [
    ("get_customer", "cus_9", "id"), ("list_charges", "cus_9", "customer"),
    ("get_charge", "ch_9", "id"), ("list_refunds", "ch_9", "charge"),
])
def test_unknown_ids_are_resource_missing(world: World, call: str, arg: str, param: str) -> None:
    """Unknown ids raise resource_missing (404) naming the parameter, as Stripe does."""
    err = error_of(getattr(payments_in(world), call), arg)
    assert (err.type, err.code, err.param, err.status) == (
        "invalid_request_error", "resource_missing", param, 404)
    assert arg in err.message and not err.retryable


def test_reads_record_no_effects(world: World) -> None:
    """Reading changes nothing and records nothing."""
    payments = payments_in(world)
    payments.get_charge("ch_0001")
    payments.list_charges("cus_0001")
    payments.list_refunds("ch_0001")
    assert len(world.ledger) == 0


# -- refunds and their validation ----------------------------------------------------------


def test_full_refund_by_default(world: World) -> None:
    """Without an amount, the refund is what remains; the charge becomes refunded."""
    payments = payments_in(world)
    refund = payments.create_refund("ch_0002", reason="requested_by_customer",
                                    metadata={"ticket": "tkt_001"})
    assert (refund.id, refund.object, refund.amount, refund.status, refund.currency,
            refund.reason, refund.metadata, refund.idempotent_replayed) == (
        "re_0001", "refund", 1200, "succeeded", "usd", "requested_by_customer",
        {"ticket": "tkt_001"}, False)
    charge = payments.get_charge("ch_0002")
    assert (charge.amount_refunded, charge.refunded) == (1200, True)
    assert payments.list_refunds("ch_0002") == [refund]


def test_partial_refunds_accumulate(world: World) -> None:
    """Partial refunds add up on the charge and are listed newest first."""
    payments = payments_in(world)
    first = payments.create_refund("ch_0001", amount=1000)
    world.clock.advance(1)
    second = payments.create_refund("ch_0001", amount=1500)
    assert payments.get_charge("ch_0001").amount_refunded == 2500
    assert payments.list_refunds("ch_0001") == [second, first]
    assert payments.create_refund("ch_0001").amount == 2500


def test_refund_effect_is_recorded_with_its_business_key(world: World) -> None:
    """Each refund records one payments.refund effect keyed refund:{charge}."""
    payments = payments_in(world)
    payments.create_refund("ch_0001", amount=700, idempotency_key="k1")
    assert refund_effects(world) == [{
        "key": "refund:ch_0001", "charge": "ch_0001", "refund_id": "re_0001", "amount": 700,
        "currency": "usd", "reason": None, "idempotency_key": "k1"}]


def test_amount_too_large(world: World) -> None:
    """A refund above the unrefunded amount is amount_too_large on param amount."""
    payments = payments_in(world)
    payments.create_refund("ch_0001", amount=4000)
    err = error_of(payments.create_refund, "ch_0001", amount=1001)
    assert (err.type, err.code, err.param, err.status) == (
        "invalid_request_error", "amount_too_large", "amount", 400)
    assert "1001" in err.message and "1000" in err.message
    assert len(refund_effects(world)) == 1


def test_charge_already_refunded(world: World) -> None:
    """Refunding a fully refunded charge is charge_already_refunded."""
    payments = payments_in(world)
    payments.create_refund("ch_0002")
    err = error_of(payments.create_refund, "ch_0002", amount=1)
    assert (err.type, err.code, err.status) == (
        "invalid_request_error", "charge_already_refunded", 400)


def test_unknown_charge_on_refund(world: World) -> None:
    """Refunding an unknown charge is resource_missing with param charge."""
    err = error_of(payments_in(world).create_refund, "ch_nope", amount=5)
    assert (err.code, err.param, err.status) == ("resource_missing", "charge", 404)


def test_disputed_charge(world: World) -> None:
    """A charged-back charge cannot be refunded (charge_disputed)."""
    err = error_of(payments_in(world).create_refund, "ch_0003")
    assert (err.code, err.status) == ("charge_disputed", 400)


@pytest.mark.parametrize(("kwargs", "param", "code"), [
    ({"charge": "ch_0001", "amount": 0}, "amount", "parameter_invalid_integer"),
    ({"charge": "ch_0001", "amount": -5}, "amount", "parameter_invalid_integer"),
    ({"charge": "ch_0001", "amount": 10.5}, "amount", "parameter_invalid_integer"),
    ({"charge": "", "amount": 5}, "charge", "parameter_missing"),
    ({"charge": "ch_0001", "reason": "because"}, "reason", None),
    ({"charge": "ch_0001", "metadata": {"n": 1}}, "metadata", None),
])
def test_parameter_validation(world: World, kwargs: dict[str, Any], param: str,
                              code: str | None) -> None:
    """Malformed parameters are invalid_request_error naming the parameter, and change nothing."""
    err = error_of(payments_in(world).create_refund, **kwargs)
    assert (err.type, err.param, err.code, err.status) == (
        "invalid_request_error", param, code, 400)
    assert len(world.ledger) == 0


# -- idempotency ---------------------------------------------------------------------------


def test_same_key_same_params_replays(world: World) -> None:
    """A retry with the same key replays the stored refund, marked replayed, applying nothing."""
    payments = payments_in(world)
    first = payments.create_refund("ch_0001", amount=500, idempotency_key="k1")
    world.clock.advance(HOUR_S)
    again = payments.create_refund("ch_0001", amount=500, idempotency_key="k1")
    assert again.idempotent_replayed and not first.idempotent_replayed
    assert again.model_dump(exclude={"idempotent_replayed"}) == first.model_dump(
        exclude={"idempotent_replayed"})
    assert payments.get_charge("ch_0001").amount_refunded == 500
    assert len(refund_effects(world)) == 1 and len(payments.list_refunds("ch_0001")) == 1


def test_replay_returns_the_original_response_not_current_state(world: World) -> None:
    """A full refund's replay is the first response, even after other refunds changed state."""
    payments = payments_in(world)
    first = payments.create_refund("ch_0001", amount=100, idempotency_key="k1")
    payments.create_refund("ch_0001", amount=200)
    assert payments.create_refund("ch_0001", amount=100, idempotency_key="k1").id == first.id


def test_same_key_other_params_is_an_idempotency_error(world: World) -> None:
    """Reusing a key with different parameters is idempotency_error (400), applying nothing."""
    payments = payments_in(world)
    payments.create_refund("ch_0001", amount=500, idempotency_key="k1")
    for kwargs in ({"amount": 600}, {"amount": None}, {"amount": 500, "reason": "duplicate"},
                   {"amount": 500, "metadata": {"a": "b"}}):
        err = error_of(payments.create_refund, "ch_0001", idempotency_key="k1", **kwargs)
        assert (err.type, err.code, err.status, err.retryable) == (
            "idempotency_error", None, 400, False)
        assert "'k1'" in err.message
    err = error_of(payments.create_refund, "ch_0002", amount=500, idempotency_key="k1")
    assert err.type == "idempotency_error"
    assert len(refund_effects(world)) == 1


def test_in_flight_key_is_a_409(world: World) -> None:
    """While a key is in flight, a request using it is a retryable 409 idempotency_key_in_use."""
    payments = payments_in(world)
    payments.begin_request("k1")
    err = error_of(payments.create_refund, "ch_0001", amount=500, idempotency_key="k1")
    assert (err.type, err.code, err.status, err.retryable) == (
        "invalid_request_error", "idempotency_key_in_use", 409, True)
    assert payments.create_refund("ch_0001", amount=500, idempotency_key="k2").id == "re_0001"
    payments.finish_request("k1")
    assert payments.create_refund("ch_0001", amount=500, idempotency_key="k1").id == "re_0002"
    assert len(refund_effects(world)) == 2


def test_in_flight_context_manager(world: World) -> None:
    """in_flight(key) holds the key only inside the block."""
    payments = payments_in(world)
    with payments.in_flight("k1"):
        assert error_of(payments.create_refund, "ch_0001", idempotency_key="k1").status == 409
    assert payments.create_refund("ch_0001", idempotency_key="k1").amount == 5000


def test_keys_are_forgotten_after_24_hours(world: World) -> None:
    """A key replays until 24 h of virtual time have passed, then a reuse refunds again."""
    payments = payments_in(world)
    payments.create_refund("ch_0001", amount=1000, idempotency_key="k1")
    world.clock.advance(DAY_S - 1)
    assert payments.create_refund("ch_0001", amount=1000, idempotency_key="k1").idempotent_replayed
    world.clock.advance(1)
    again = payments.create_refund("ch_0001", amount=1000, idempotency_key="k1")
    assert (again.id, again.idempotent_replayed) == ("re_0002", False)
    assert payments.get_charge("ch_0001").amount_refunded == 2000
    assert [e["refund_id"] for e in refund_effects(world)] == ["re_0001", "re_0002"]


def test_forgotten_key_accepts_other_params(world: World) -> None:
    """After expiry a key is free: other parameters are a new request, not a mismatch."""
    payments = payments_in(world)
    payments.create_refund("ch_0001", amount=1000, idempotency_key="k1")
    world.clock.advance(DAY_S)
    assert payments.create_refund("ch_0002", idempotency_key="k1").charge == "ch_0002"


def test_ttl_is_configurable(world: World) -> None:
    """idempotency_ttl_s in the seed shortens the key lifetime."""
    payments = Payments(world, {**SEED, "idempotency_ttl_s": 60})
    payments.create_refund("ch_0001", amount=10, idempotency_key="k1")
    world.clock.advance(60)
    assert not payments.create_refund("ch_0001", amount=10,
                                      idempotency_key="k1").idempotent_replayed


def test_errors_after_execution_began_are_replayed(world: World) -> None:
    """An error raised once the refund executed is saved: the same request raises it again."""
    payments = payments_in(world)
    first = error_of(payments.create_refund, "ch_0001", amount=9999, idempotency_key="k1")
    again = error_of(payments.create_refund, "ch_0001", amount=9999, idempotency_key="k1")
    assert again is not first and again.args == first.args
    assert again.code == "amount_too_large"


def test_validation_failures_are_not_saved(world: World) -> None:
    """A request failing validation saves nothing: the key then serves a valid request."""
    payments = payments_in(world)
    assert error_of(payments.create_refund, "ch_0001", amount=-1,
                    idempotency_key="k1").param == "amount"
    assert payments.create_refund("ch_0001", amount=10, idempotency_key="k1").amount == 10


def test_no_key_means_no_deduplication(world: World) -> None:
    """Without a key a retried refund refunds again: the double refund of the seeds' story."""
    payments = payments_in(world)
    payments.create_refund("ch_0001", amount=1000)
    payments.create_refund("ch_0001", amount=1000)
    assert [e["key"] for e in refund_effects(world)] == ["refund:ch_0001"] * 2


# -- seeds and snapshots -------------------------------------------------------------------


def test_seeded_refunds_set_amount_refunded_and_ids_skip_them(world: World) -> None:
    """Seeded refunds count toward amount_refunded and new ids never collide with them."""
    seed = {**SEED, "refunds": [{"id": "re_0001", "charge": "ch_0001", "amount": 800}]}
    payments = Payments(world, seed)
    assert payments.get_charge("ch_0001").amount_refunded == 800
    assert payments.list_refunds("ch_0001")[0].created == int(START)
    assert payments.create_refund("ch_0001", amount=1).id == "re_0002"
    assert len(world.ledger) == 1


@pytest.mark.parametrize(("seed", "message"), [
    ({"charges": [{"id": "ch_1", "customer": "cus_x", "amount": 5}]}, "cus_x"),
    ({"charges": [{"id": "ch_1", "amount": 5}],
      "refunds": [{"id": "re_1", "charge": "ch_1", "amount": 6}]}, "amount is 5"),
    ({"charges": [{"id": "ch_1", "amount": 5, "amount_refunded": 1}],
      "refunds": [{"id": "re_1", "charge": "ch_1", "amount": 2}]}, "sum to 2"),
    ({"refunds": [{"id": "re_1", "charge": "ch_x", "amount": 2}]}, "ch_x"),
    ({"charges": [{"id": "ch_1", "amount": 5}, {"id": "ch_1", "amount": 6}]}, "ch_1"),
])
def test_inconsistent_seeds_are_refused(world: World, seed: dict[str, Any],
                                        message: str) -> None:
    """A seed whose objects do not fit together is refused with the facts."""
    with pytest.raises(ValueError, match=message):
        Payments(world, seed)


def test_unknown_seed_fields_are_refused(world: World) -> None:
    """A typo in a seed is a validation error naming the field."""
    with pytest.raises(ValidationError, match="amout"):
        Payments(world, {"charges": [{"id": "ch_1", "amout": 5}]})


def test_snapshot_is_canonical_json_keyed_by_id(world: World) -> None:
    """The snapshot is JSON-able, keyed by id, and reflects refunds."""
    payments = payments_in(world)
    payments.create_refund("ch_0001", amount=300, idempotency_key="k")
    snap = payments.snapshot()
    assert json.loads(json.dumps(snap)) == snap
    assert snap["charges"]["ch_0001"]["amount_refunded"] == 300
    assert snap["refunds"]["re_0001"]["amount"] == 300
    assert "idempotent_replayed" not in snap["refunds"]["re_0001"]


def test_objects_validate_back_from_their_json(world: World) -> None:
    """A journaled (JSON) customer, charge or refund validates back into an equal object."""
    payments = payments_in(world)
    refund = payments.create_refund("ch_0001", amount=300)
    for obj in (payments.get_customer("cus_0001"), payments.get_charge("ch_0001"), refund):
        assert type(obj).model_validate(obj.model_dump(mode="json")) == obj


def test_same_calls_same_snapshot_and_ledger() -> None:
    """Two worlds given the same calls end with identical snapshots and ledger digests."""
    def run() -> tuple[str, str]:
        world = World(seed=3)
        payments = payments_in(world)
        payments.create_refund("ch_0001", amount=300, idempotency_key="a")
        world.clock.advance(5)
        payments.create_refund("ch_0001", amount=300, idempotency_key="a")
        payments.create_refund("ch_0002")
        return json.dumps(payments.snapshot(), sort_keys=True), world.ledger.digest()

    assert run() == run()


# -- properties ----------------------------------------------------------------------------

requests = st.lists(st.tuples(
    st.sampled_from(["ch_0001", "ch_0002"]),
    st.one_of(st.none(), st.integers(min_value=-10, max_value=6000)),
    st.one_of(st.none(), st.sampled_from(["k1", "k2", "k3"])),
    st.sampled_from([0.0, 60.0, 12 * HOUR_S, DAY_S]),
), max_size=25)


@settings(max_examples=150, deadline=None)
@given(requests)
def test_refunds_never_exceed_the_charge_and_replays_add_nothing(
        calls: list[tuple[str, int | None, str | None, float]]) -> None:
    """Any sequence of refund requests never refunds more than a charge's amount in total,
    every new refund records exactly one effect, and replays and errors record none."""
    world = World(seed=1)
    payments = payments_in(world)
    for charge_id, amount, key, wait_s in calls:
        world.clock.advance(wait_s)
        before = len(world.ledger)
        try:
            refund = payments.create_refund(charge_id, amount=amount, idempotency_key=key)
        except PaymentsError:
            assert len(world.ledger) == before
            continue
        assert len(world.ledger) == before + (0 if refund.idempotent_replayed else 1)
    for checked in ("ch_0001", "ch_0002"):
        charge = payments.get_charge(checked)
        effects = [e for e in refund_effects(world) if e["charge"] == checked]
        refunds = payments.list_refunds(checked)
        assert charge.amount_refunded <= charge.amount
        assert sum(e["amount"] for e in effects) == sum(r.amount for r in refunds) \
            == charge.amount_refunded
