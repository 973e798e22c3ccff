"""The environment an agent factory receives: clients of the simulated services (async, JSON
answers, faults at the client, production-shaped errors), each call recorded as a ServiceCall
tied to the tool that made it, and ``env.expect``."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
from collections.abc import Awaitable
from datetime import date
from decimal import Decimal
from typing import Any, TypeVar

import pytest

from tests.sim.own_agents.credit import CreditArgs, OrderArgs, credit_tools
from tether.errors import AuthExpired, TransientError, UsageError
from tether.runtime.tools import ToolContext
from tether.sim import Environment, scenario_from_dict
from tether.sim.environment import instrument
from tether.sim.episode import environment_for
from tether.sim.services.errors import ServiceError

T = TypeVar("T")


def _env(faults: list[dict[str, Any]] | None = None, seed: int = 0) -> Environment:
    scenario = scenario_from_dict({
        "name": "env", "agent": "tests.sim.own_agents.credit:agent", "task": "t",
        "world": {"payments": {
            "customers": [{"id": "cus_1", "email": "ann@example.com", "name": "Ann"}],
            "charges": [{"id": "ord_1", "customer": "cus_1", "amount": 5_000}]}},
        "faults": faults or []})
    return environment_for(scenario, seed)


def _run(awaitable: Awaitable[T]) -> T:
    async def wrapped() -> T:
        return await awaitable

    return asyncio.run(wrapped())


def _refunds(env: Environment) -> list[Any]:
    return env.world.ledger.of("payments", "refund")


def _ctx(key: str = "") -> ToolContext:
    return ToolContext(run_id="r", tool="t", position=1, idempotency_key=key, attempt=1,
                       now=0.0)


# -- clients -------------------------------------------------------------------------------


def test_client_operations_are_async_and_answer_json_ready_data() -> None:
    """Operations are coroutine functions answering dicts and lists that survive JSON."""
    payments = _env().client("payments")
    assert inspect.iscoroutinefunction(payments.get_charge)
    charge = _run(payments.get_charge("ord_1"))
    assert isinstance(charge, dict) and charge["id"] == "ord_1" and charge["amount"] == 5_000
    assert json.loads(json.dumps(charge)) == charge
    refund = _run(payments.create_refund("ord_1", amount=500, idempotency_key="k1"))
    assert isinstance(refund, dict) and refund["amount"] == 500
    refunds = _run(payments.list_refunds("ord_1"))
    assert isinstance(refunds, list) and [r["id"] for r in refunds] == [refund["id"]]
    assert json.loads(json.dumps(refunds)) == refunds


def test_one_client_per_service_and_its_operations_listed() -> None:
    """`env.client` returns the same client for a service; dir() lists its operations."""
    env = _env()
    assert env.client("payments") is env.client("payments")
    assert "create_refund" in dir(env.client("payments"))
    assert "snapshot" not in env.client("payments").operations()


def test_unknown_operation_lists_the_operations() -> None:
    """An operation the service does not offer is an AttributeError listing those it does."""
    with pytest.raises(AttributeError, match="no operation 'refund_everything'") as caught:
        _env().client("payments").refund_everything  # noqa: B018
    assert "create_refund" in str(caught.value) and "get_charge" in str(caught.value)
    with pytest.raises(AttributeError):
        _env().client("payments").snapshot  # noqa: B018


def test_unknown_service_is_a_usage_error() -> None:
    """`env.client` of a service the world does not have names the ones it has."""
    with pytest.raises(UsageError, match=r"no simulated service .billing..*payments"):
        _env().client("billing")


def test_wrong_arguments_are_a_type_error_naming_the_target() -> None:
    """Arguments the operation does not take are a TypeError naming `service.operation`, and
    nothing reaches the service."""
    env = _env()
    payments = env.client("payments")
    with pytest.raises(TypeError, match=r"payments\.create_refund"):
        _run(payments.create_refund("ord_1", cents=500))
    with pytest.raises(TypeError, match=r"payments\.get_charge"):
        _run(payments.get_charge())
    assert _refunds(env) == [] and env.calls == []


def test_service_errors_arrive_as_production_clients_raise_them() -> None:
    """A 4xx is a ServiceError; a retryable one (a key in flight, 409) a TransientError; an
    expired token an AuthExpired naming the target."""
    env = _env()
    with pytest.raises(ServiceError) as missing:
        _run(env.client("payments").get_charge("ord_404"))
    assert not isinstance(missing.value, TransientError)
    env.service("payments").begin_request("busy")
    with pytest.raises(TransientError, match=r"payments\.create_refund"):
        _run(env.client("payments").create_refund("ord_1", amount=1, idempotency_key="busy"))
    identity = env.client("identity")
    grant = _run(identity.issue("desk"))
    env.clock.advance(grant["expires_in_s"] + 1)
    with pytest.raises(AuthExpired) as expired:
        _run(identity.check(grant["access_token"]))
    assert expired.value.dependency == "identity.check"


# -- faults at the client ------------------------------------------------------------------


def test_timeout_after_applies_the_write_and_the_caller_times_out() -> None:
    """timeout_after: the service applied the refund, the caller gets TimeoutError; the same
    key again is replayed, not applied twice."""
    env = _env([{"kind": "timeout_after", "target": "payments.create_refund", "on_call": [1]}])
    payments = env.client("payments")
    with pytest.raises(TimeoutError):
        _run(payments.create_refund("ord_1", amount=500, idempotency_key="k"))
    assert [e.data["amount"] for e in _refunds(env)] == [500]
    again = _run(payments.create_refund("ord_1", amount=500, idempotency_key="k"))
    assert again["idempotent_replayed"] is True and len(_refunds(env)) == 1
    first = env.calls[0]
    assert first.error.startswith("TimeoutError") and first.response is None
    assert first.effects == (_refunds(env)[0].seq,)
    assert env.calls[1].effects == ()
    assert [f.kind for f in env.layer.firings] == ["timeout_after"]


def test_timeout_before_applies_nothing() -> None:
    """timeout_before: the caller times out and the service applied nothing."""
    env = _env([{"kind": "timeout_before", "target": "payments.create_refund"}])
    with pytest.raises(TimeoutError):
        _run(env.client("payments").create_refund("ord_1", amount=500))
    assert _refunds(env) == [] and env.calls[0].effects == ()


def test_error_fault_is_a_transient_error_and_applies_nothing() -> None:
    """error 503 (and 429 with Retry-After) reach the caller as TransientError; nothing is
    applied."""
    env = _env([{"kind": "error", "target": "payments.create_refund", "on_call": [1]},
                {"kind": "error", "target": "payments.create_refund", "on_call": [2],
                 "status": 429, "retry_after_s": 2.0}])
    payments = env.client("payments")
    with pytest.raises(TransientError, match="503"):
        _run(payments.create_refund("ord_1", amount=500))
    with pytest.raises(TransientError, match="429") as throttled:
        _run(payments.create_refund("ord_1", amount=500))
    assert throttled.value.retry_after_s == 2.0
    assert _refunds(env) == []
    _run(payments.create_refund("ord_1", amount=500))
    assert len(_refunds(env)) == 1


def test_auth_expiry_fault_is_auth_expired() -> None:
    """auth_expiry reaches the caller as AuthExpired naming the target."""
    env = _env([{"kind": "auth_expiry", "target": "payments.get_charge", "times": 1}])
    with pytest.raises(AuthExpired) as caught:
        _run(env.client("payments").get_charge("ord_1"))
    assert caught.value.dependency == "payments.get_charge"
    assert _run(env.client("payments").get_charge("ord_1"))["id"] == "ord_1"


def test_schema_drift_transforms_the_dict_the_caller_and_the_record_see() -> None:
    """schema_drift renames, removes and retypes fields of the JSON answer; the recorded
    response is what the caller received."""
    env = _env([{"kind": "schema_drift", "target": "payments.get_charge",
                 "rename": {"amount": "details.cents"}, "remove": ["currency"],
                 "retype": ["amount_refunded"]}])
    charge = _run(env.client("payments").get_charge("ord_1"))
    assert "amount" not in charge and charge["details"] == {"cents": 5_000}
    assert "currency" not in charge and charge["amount_refunded"] == "0"
    assert env.calls[0].response == charge


def test_wrong_content_and_injection_transform_list_items_too() -> None:
    """wrong_content replaces values, and applies to each item of a list answer."""
    env = _env([{"kind": "wrong_content", "target": "payments.list_refunds",
                 "replace": {"amount": 1}}])
    _run(env.client("payments").create_refund("ord_1", amount=500))
    assert [r["amount"] for r in _run(env.client("payments").list_refunds("ord_1"))] == [1]
    assert [e.data["amount"] for e in _refunds(env)] == [500]


def test_duplicate_delivery_applies_an_unkeyed_write_twice() -> None:
    """duplicate_delivery: the request reaches the service twice — two refunds without a key,
    one with — and the call records every effect it caused."""
    env = _env([{"kind": "duplicate_delivery", "target": "payments.create_refund"}])
    payments = env.client("payments")
    _run(payments.create_refund("ord_1", amount=100))
    assert len(_refunds(env)) == 2
    assert env.calls[0].effects == tuple(e.seq for e in _refunds(env))
    _run(payments.create_refund("ord_1", amount=100, idempotency_key="k"))
    assert len(_refunds(env)) == 3 and len(env.calls[1].effects) == 1


# -- what each call records ----------------------------------------------------------------


def test_calls_from_a_tool_are_attributed_to_it() -> None:
    """A tool's handler's calls record the tool, its effect class and trust, the target, the
    arguments, whether keyed, the response and the effects caused."""
    env = _env()
    status, credit = instrument(credit_tools(env))
    _run(status.handler(_ctx(), OrderArgs(order_ref="ord_1")))
    _run(credit.handler(_ctx("credit:ord_1:700"), CreditArgs(order_ref="ord_1", cents=700)))
    read, write = env.calls
    assert (read.tool, read.effect, read.trust, read.target, read.keyed, read.effects) == \
        ("order_status", "read", "system", "payments.get_charge", False, ())
    assert read.args == {"id": "ord_1"} and read.response["id"] == "ord_1"
    assert (write.tool, write.effect, write.target, write.keyed, write.lookup) == \
        ("credit_order", "idempotent", "payments.create_refund", True, False)
    assert write.args["amount"] == 700 and write.args["idempotency_key"] == "credit:ord_1:700"
    assert write.effects == (_refunds(env)[0].seq,)
    assert json.loads(json.dumps(write.as_data())) == write.as_data()


def test_unkeyed_call_is_recorded_as_unkeyed() -> None:
    """A write without an idempotency key (what naive passes) is recorded keyed=False."""
    env = _env()
    _, credit = instrument(credit_tools(env))
    _run(credit.handler(_ctx(""), CreditArgs(order_ref="ord_1", cents=700)))
    assert env.calls[0].keyed is False and env.calls[0].args["idempotency_key"] is None


def test_calls_from_a_reconciler_are_lookups() -> None:
    """A reconciler's calls are attributed to its tool with lookup=True."""
    env = _env()
    _, credit = instrument(credit_tools(env))
    assert credit.reconcile is not None
    assert _run(credit.reconcile(_ctx(), "credit:ord_1:700")) is None
    (lookup,) = env.calls
    assert (lookup.tool, lookup.target, lookup.lookup) == \
        ("credit_order", "payments.list_refunds", True)


def test_calls_outside_any_tool_name_no_tool() -> None:
    """A call made outside a tool (a factory reading the world) is attributed to no tool."""
    env = _env()
    _run(env.client("payments").get_charge("ord_1"))
    assert (env.calls[0].tool, env.calls[0].effect, env.calls[0].lookup) == ("", "", False)


def test_attribution_does_not_leak_between_concurrent_tools() -> None:
    """Two tools' handlers running concurrently each get their own calls."""
    env = _env([{"kind": "latency", "target": "payments.get_charge", "latency_s": 5.0}])
    status, credit = instrument(credit_tools(env))

    async def both() -> None:
        await asyncio.gather(
            status.handler(_ctx(), OrderArgs(order_ref="ord_1")),
            credit.handler(_ctx("k"), CreditArgs(order_ref="ord_1", cents=1)))

    asyncio.run(both())
    assert {(c.tool, c.target) for c in env.calls} == {
        ("order_status", "payments.get_charge"), ("credit_order", "payments.create_refund")}


def test_instrumented_tools_report_every_handler_called() -> None:
    """`instrument` appends each tool whose handler was called to the given list, whether it
    returned or raised."""
    env = _env([{"kind": "error", "target": "payments.create_refund"}])
    ran: list[str] = []
    status, credit = instrument(credit_tools(env), ran)
    _run(status.handler(_ctx(), OrderArgs(order_ref="ord_1")))
    with pytest.raises(TransientError):
        _run(credit.handler(_ctx("k"), CreditArgs(order_ref="ord_1", cents=1)))
    assert ran == ["order_status", "credit_order"]


# -- the rest of the environment -----------------------------------------------------------


def test_environment_exposes_seed_clock_scenario_and_named_random_streams() -> None:
    """seed, clock, scenario; rng(name) is seeded per episode and per name."""
    env, same, other = _env(seed=3), _env(seed=3), _env(seed=4)
    assert env.seed == 3 and env.scenario.name == "env" and env.clock is env.world.clock
    draws = [env.rng("a").random() for _ in range(3)]
    assert draws == [same.rng("a").random() for _ in range(3)]
    assert draws != [other.rng("a").random() for _ in range(3)]
    assert env.rng("a").random() != env.rng("b").random()


def test_expect_adds_checks() -> None:
    """Valid checks are added as invariants the episode judges the task by."""
    env = _env()
    env.expect([{"exactly_once": {"effect": "payments.refund", "match": {"amount": 5}}}])
    assert [(c.kind, c.settings["match"]) for c in env.expected] == \
        [("exactly_once", {"amount": 5})]


@pytest.mark.parametrize("checks", [
    ["exactly_once"],
    [{"exactly_once": {"effect": "payments.refund"}, "never": {"effect": "payments.refund"}}],
    [{"exactly_once": {"effect": "payments.refunds"}}],
    [{"exactly_once": {"effect": "payments.refund", "match": {"cents": 5}}}],
    [{"exactly_once": {"effect": "payments.refund", "match": {"amount": "5"}}}],
])
def test_expect_refuses_bad_checks(checks: list[Any]) -> None:
    """A check that is not a one-key mapping, names an unknown effect, or matches a field the
    effect lacks or with the wrong type is a UsageError from env.expect."""
    env = _env()
    with pytest.raises(UsageError, match=r"env\.expect"):
        env.expect(checks)
    assert env.expected == []


@pytest.mark.parametrize("checks", [
    [{"exactly_twice": {"effect": "payments.refund"}}],
    [{"exactly_once": "payments.refund"}],
    [{"at_most": {"effect": "payments.refund"}}],
    [{"exactly_once": {"effect": "payments.refund", "mach": {"amount": 5}}}],
    [{"never": {"effect": "payments.refund", "match": "amount"}}],
])
def test_expect_validates_each_check_as_a_scenario_does(checks: list[Any]) -> None:
    """An unknown kind, settings that are not a mapping, a missing setting (at_most without n)
    or an unknown one (a misspelt match) is a UsageError from env.expect — never a pydantic or
    attribute error, a KeyError when judged, or a check silently ignoring its filter."""
    env = _env()
    with pytest.raises(UsageError, match=r"env\.expect"):
        env.expect(checks)


@pytest.mark.parametrize("kwargs", [
    {"amount": Decimal(5)},
    {"metadata": {"at": date(2026, 1, 1)}},
    {"reason": b"duplicate"},
])
def test_recorded_arguments_are_json_ready_whatever_the_caller_passed(
        kwargs: dict[str, Any]) -> None:
    """A call's recorded arguments are JSON-ready even when the caller passed a Decimal, a date
    or bytes (accepted or refused by the service): the record must encode."""
    env = _env()
    with contextlib.suppress(ServiceError):
        _run(env.client("payments").create_refund("ord_1", **kwargs))
    json.dumps(env.calls[-1].as_data())


def test_stale_read_makes_crm_reads_old() -> None:
    """stale_read at the CRM client: a note written just before is not seen by a read that
    goes stale."""
    scenario = scenario_from_dict({
        "name": "stale", "agent": "tests.sim.own_agents.credit:agent", "task": "t",
        "world": {"crm": {"customers": [{"id": "cus_1", "name": "Ann",
                                         "email": "ann@example.com"}]}},
        "faults": [{"kind": "stale_read", "target": "crm.get_customer", "on_call": [2],
                    "stale_s": 60.0}]})
    env = environment_for(scenario, 0)
    crm = env.client("crm")
    assert _run(crm.get_customer("cus_1"))["notes"] == []
    env.clock.advance(30)
    _run(crm.add_note("cus_1", "called back"))
    env.clock.advance(1)
    assert _run(crm.get_customer("cus_1"))["notes"] == []
    assert [n["text"] for n in _run(crm.primary_notes("cus_1"))] == ["called back"]
    env.clock.advance(120)  # past the staleness: the replica has caught up
    assert [n["text"] for n in _run(crm.get_customer("cus_1"))["notes"]] == ["called back"]


def test_stale_read_on_a_service_without_a_replica_is_not_claimed() -> None:
    """A stale_read on payments (which has no replica) is refused at load, or at least not
    recorded as a fault that reached the agent."""
    data = {"name": "stale", "agent": "tests.sim.own_agents.credit:agent", "task": "t",
            "world": {"payments": {
                "customers": [{"id": "cus_1", "email": "ann@example.com", "name": "Ann"}],
                "charges": [{"id": "ord_1", "customer": "cus_1", "amount": 5_000}]}},
            "faults": [{"kind": "stale_read", "target": "payments.get_charge"}]}
    try:
        scenario = scenario_from_dict(data)
    except UsageError:
        return
    env = environment_for(scenario, 0)
    _run(env.client("payments").get_charge("ord_1"))
    assert env.layer.firings == []


@pytest.mark.parametrize("target", ["payments.create_refunds", "paymnts.create_refund",
                                    "payments.refund*"])
def test_a_fault_on_no_operation_is_refused_at_load(target: str) -> None:
    """A fault whose target names no operation of any simulated service (a typo) is a
    UsageError naming it, as an invariant on an unknown effect is."""
    data = {"name": "typo", "agent": "tests.sim.own_agents.credit:agent", "task": "t",
            "faults": [{"kind": "timeout_after", "target": target}]}
    with pytest.raises(UsageError, match="target"):
        scenario_from_dict(data)


@pytest.mark.parametrize("target", ["payments.create_refund", "payments.*", "*.create_refund",
                                    "crm.add_note", "user.ask", "model"])
def test_faults_on_real_targets_load(target: str) -> None:
    """Fault targets naming real operations (or wildcards matching one, or the model) load."""
    kind = "rate_limit" if target == "model" else "timeout_after"
    scenario = scenario_from_dict({"name": "ok", "agent": "tests.sim.own_agents.credit:agent",
                                   "task": "t", "faults": [{"kind": kind, "target": target}]})
    assert scenario.faults[0].target == target
