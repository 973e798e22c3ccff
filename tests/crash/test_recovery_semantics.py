"""How a resumed run settles unknown outcomes, invalid results, compensations and changed code.

In-process: a probe (or a handler) raises :class:`tether.Crash` to abandon a run the way a dead
worker would, then a fresh :class:`Runtime` on the same SQLite file resumes it. The external
system is the crash app's provider file, so effects are counted per key, not inferred.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tether import (
    Action,
    Crash,
    NonDeterminismError,
    ProbePoint,
    RetryPolicy,
    Rule,
    RunContext,
    RunResult,
    RunStatus,
    Runtime,
    SQLiteStore,
    Tool,
    ToolContext,
    ToolResultInvalid,
    VirtualClock,
    Workflow,
    tool,
    workflow,
)
from tether.events import (
    RunFinished,
    ToolAmbiguous,
    ToolError,
    ToolIntent,
    ToolResult,
    decode,
    encode,
)
from tether.runtime.failures import FailureType

from .app import (
    ORDER_ID,
    Email,
    EmailArgs,
    External,
    Hold,
    HoldArgs,
    Label,
    OrderRef,
    Refund,
    RefundArgs,
    Ticket,
)

RUN = "run-1"
REFUND = {"order_id": ORDER_ID, "amount_cents": 500}
EMAIL = {"order_id": ORDER_ID, "to": "ada@example.com", "body": "hello"}


class Rig:
    """One journal file and one external-system file; every runtime made here is fresh."""

    def __init__(self, directory: Path) -> None:
        self.store_path = directory / "runs.db"
        self.ext = External(directory / "ext.db")
        self._stores: list[SQLiteStore] = []

    def runtime(self, wf: Workflow, probe: Callable[[ProbePoint], None] | None = None,
                retry: RetryPolicy | None = None) -> Runtime:
        store = SQLiteStore(self.store_path)
        self._stores.append(store)
        return Runtime(store, clock=VirtualClock(), workflows=[wf], seed=7, probe=probe,
                       retry=retry)

    def run(self, wf: Workflow, crash: Callable[[ProbePoint], None] | None = None) -> RunResult:
        """Start the run; if it crashes, recover it with a fresh runtime."""
        if crash is None:
            return asyncio.run(self.runtime(wf).start(wf, ORDER_ID, run_id=RUN))
        with pytest.raises(Crash):
            asyncio.run(self.runtime(wf, crash).start(wf, ORDER_ID, run_id=RUN))
        return self.recover(wf)

    def recover(self, wf: Workflow) -> RunResult:
        results = asyncio.run(self.runtime(wf).recover())
        assert [r.run_id for r in results] == [RUN]
        return results[0]

    def events(self) -> list[Any]:
        store = SQLiteStore(self.store_path)
        self._stores.append(store)
        assert store.check() == []
        return store.read(RUN)

    def close(self) -> None:
        for store in self._stores:
            store.close()
        self.ext.close()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path)
    yield r
    r.close()


def crash_at(name: str, point: str) -> Callable[[ProbePoint], None]:
    """A probe that abandons the run when ``name`` reaches ``point``."""

    def probe(where: ProbePoint) -> None:
        if where.name == name and where.point == point:
            raise Crash(f"{name}:{point}")

    return probe


def one_call(t: Tool[Any, Any], args: dict[str, Any]) -> Workflow:
    """A workflow that makes one tool call and returns its result."""

    @workflow(name="one_call")
    async def wf(ctx: RunContext, order_id: str) -> Any:
        return await ctx.call_tool(t, args)

    return wf


def of(events: list[Any], kind: type[Any]) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


# -- unknown outcomes, by effect class ------------------------------------------------------

@pytest.mark.parametrize("how", ["timeout", "crash"])
def test_unknown_idempotent_outcome_is_reissued_with_the_same_key(rig: Rig, how: str) -> None:
    """An unknown idempotent outcome is re-issued with the same key and deduplicated."""
    seen: list[tuple[str, int]] = []

    @tool(effect="idempotent", key=lambda a: f"refund:{a.order_id}")
    def refund(tc: ToolContext, args: RefundArgs) -> Refund:
        seen.append((tc.idempotency_key, tc.attempt))
        receipt = rig.ext.create_refund(tc.idempotency_key, args.order_id, args.amount_cents)
        if how == "timeout" and len(seen) == 1:
            raise TimeoutError("the response was lost after the provider committed")
        return Refund.model_validate(receipt)

    wf = one_call(refund, REFUND)
    result = rig.run(wf, crash_at("refund", "after_call") if how == "crash" else None)

    key = f"refund:{ORDER_ID}"
    assert result.status is RunStatus.COMPLETED
    assert seen == [(key, 1), (key, 2)]
    assert rig.ext.effects("refunds") == {key: 1}
    assert rig.ext.outcomes("refunds.create") == ["applied", "replayed"]
    assert result.result == {"refund_id": "re_1", "amount_cents": 500}
    events = rig.events()
    assert [(e.key, e.attempt) for e in of(events, ToolIntent)] == [(key, 1), (key, 2)]
    assert len(of(events, ToolAmbiguous)) == 1


def _stopping_refund(rig: Rig, seen: list[int]) -> Workflow:
    """A one-call workflow whose idempotent refund the provider applies (once per key)."""

    @tool(effect="idempotent", key=lambda a: f"refund:{a.order_id}")
    def refund(tc: ToolContext, args: RefundArgs) -> Refund:
        seen.append(tc.attempt)
        return Refund.model_validate(
            rig.ext.create_refund(tc.idempotency_key, args.order_id, args.amount_cents))

    return one_call(refund, REFUND)


def _stop_times(rig: Rig, wf: Workflow, times: int, retry: RetryPolicy | None = None) -> None:
    """Start the run and take it up again ``times - 1`` times, each worker stopping right
    after the provider answered and before the result was journaled."""
    probe = crash_at("refund", "after_call")
    with pytest.raises(Crash):
        asyncio.run(rig.runtime(wf, probe, retry).start(wf, ORDER_ID, run_id=RUN))
    for _ in range(times - 1):
        with pytest.raises(Crash):
            asyncio.run(rig.runtime(wf, probe, retry).recover())


def test_a_write_its_workers_keep_stopping_in_is_reissued_past_the_tools_attempts(
        rig: Rig) -> None:
    """Attempts cut off by the worker stopping are not the provider's unknowns: an idempotent
    write (``attempts=3``) whose workers stopped five times in a row is re-issued a sixth
    time and completes, applied once, rather than escalating."""
    seen: list[int] = []
    wf = _stopping_refund(rig, seen)
    _stop_times(rig, wf, 5)
    result = rig.recover(wf)

    key = f"refund:{ORDER_ID}"
    assert result.status is RunStatus.COMPLETED, result.reason
    assert seen == [1, 2, 3, 4, 5, 6]
    assert rig.ext.effects("refunds") == {key: 1}
    events = rig.events()
    assert [a.interrupted for a in of(events, ToolAmbiguous)] == [True] * 5


def test_a_write_that_keeps_stopping_its_worker_escalates_at_the_crash_rule(rig: Rig) -> None:
    """The retry policy's ``crash`` rule bounds the stops at one call: past it the run
    escalates (the call may be what kills the worker), and the default is 10."""
    seen: list[int] = []
    wf = _stopping_refund(rig, seen)
    retry = RetryPolicy().with_rule(FailureType.CRASH, Rule(Action.RESOLVE, max_attempts=2))
    assert RetryPolicy().rule(FailureType.CRASH).max_attempts == 10
    assert RetryPolicy.never().rule(FailureType.CRASH).max_attempts == 10
    _stop_times(rig, wf, 2, retry)
    [result] = asyncio.run(rig.runtime(wf, retry=retry).recover())

    assert result.status is RunStatus.ESCALATED
    assert "stopped 2 time(s)" in result.reason and "crash rule allows 2" in result.reason
    assert seen == [1, 2]  # not sent a third time
    assert rig.ext.effects("refunds") == {f"refund:{ORDER_ID}": 1}


def test_a_live_unknown_and_a_stop_count_apart(rig: Rig) -> None:
    """A timeout is the provider's unknown and counts against ``attempts``; a stop does not:
    with ``attempts=2``, one timeout then one stop still leaves a re-issue."""
    seen: list[int] = []

    @tool(effect="idempotent", key=lambda a: f"refund:{a.order_id}", attempts=2)
    def refund(tc: ToolContext, args: RefundArgs) -> Refund:
        seen.append(tc.attempt)
        receipt = rig.ext.create_refund(tc.idempotency_key, args.order_id, args.amount_cents)
        if tc.attempt == 1:
            raise TimeoutError("the response was lost after the provider committed")
        return Refund.model_validate(receipt)

    wf = one_call(refund, REFUND)
    stop_once = crash_at("refund", "after_call")
    with pytest.raises(Crash):
        asyncio.run(rig.runtime(wf, stop_once).start(wf, ORDER_ID, run_id=RUN))
    result = rig.recover(wf)

    assert result.status is RunStatus.COMPLETED, result.reason
    assert seen == [1, 2, 3]
    assert [a.interrupted for a in of(rig.events(), ToolAmbiguous)] == [False, True]


def test_an_ambiguous_event_without_interrupted_encodes_as_before() -> None:
    """``interrupted`` is left out of the JSON while false: older journals stay byte for byte."""
    old = ToolAmbiguous(seq=3, at=1.0, pos=1, tool="t", key="k", reason="x")
    assert "interrupted" not in encode(old)
    stopped = old.model_copy(update={"interrupted": True})
    assert '"interrupted":true' in encode(stopped)
    assert decode(encode(stopped)) == stopped


@pytest.mark.parametrize("how", ["timeout", "crash"])
def test_unknown_reconcilable_outcome_is_looked_up_not_reissued(rig: Rig, how: str) -> None:
    """An unknown reconcilable outcome is looked up first and, found, never re-executed."""
    calls: list[str] = []
    consulted: list[str] = []

    def find(tc: ToolContext, key: str) -> Label | None:
        consulted.append(key)
        found = rig.ext.find_label(key)
        return None if found is None else Label.model_validate(found)

    @tool(effect="reconcilable", key=lambda a: f"label:{a.order_id}", reconcile=find)
    def return_label(tc: ToolContext, args: OrderRef) -> Label:
        calls.append(tc.idempotency_key)
        label = rig.ext.create_label(tc.idempotency_key, args.order_id)
        if how == "timeout":
            raise TimeoutError("connection reset after the label was created")
        return Label.model_validate(label)

    wf = one_call(return_label, {"order_id": ORDER_ID})
    result = rig.run(wf, crash_at("return_label", "after_call") if how == "crash" else None)

    key = f"label:{ORDER_ID}"
    assert result.status is RunStatus.COMPLETED
    assert calls == [key]
    assert consulted == [key]
    assert rig.ext.effects("labels") == {key: 1}
    assert rig.ext.outcomes("labels.find") == ["found"]
    [recorded] = of(rig.events(), ToolResult)
    assert recorded.reconciled and recorded.result == {"label_id": "lbl_1"}


def test_reconcilable_write_not_found_is_executed_once(rig: Rig) -> None:
    """A reconcilable write crashed after its intent is looked up, not found, run once."""
    calls: list[str] = []

    def find(tc: ToolContext, key: str) -> Label | None:
        found = rig.ext.find_label(key)
        return None if found is None else Label.model_validate(found)

    @tool(effect="reconcilable", key=lambda a: f"label:{a.order_id}", reconcile=find)
    def return_label(tc: ToolContext, args: OrderRef) -> Label:
        calls.append(tc.idempotency_key)
        return Label.model_validate(rig.ext.create_label(tc.idempotency_key, args.order_id))

    result = rig.run(one_call(return_label, {"order_id": ORDER_ID}),
                     crash_at("return_label", "after_intent"))

    key = f"label:{ORDER_ID}"
    assert result.status is RunStatus.COMPLETED
    assert calls == [key]
    assert rig.ext.outcomes("labels.find") == ["not_found"]
    assert rig.ext.effects("labels") == {key: 1}
    [recorded] = of(rig.events(), ToolResult)
    assert not recorded.reconciled


def test_failed_lookup_does_not_reissue_a_reconcilable_write(rig: Rig) -> None:
    """A failing reconcile lookup does not make a reconcilable write happen twice."""
    lookups: list[str] = []

    def flaky_find(tc: ToolContext, key: str) -> Label | None:
        lookups.append(key)
        if len(lookups) == 1:
            raise ConnectionError("label service unreachable")
        found = rig.ext.find_label(key)
        return None if found is None else Label.model_validate(found)

    @tool(effect="reconcilable", key=lambda a: f"label:{a.order_id}", reconcile=flaky_find)
    def return_label(tc: ToolContext, args: OrderRef) -> Label:
        return Label.model_validate(rig.ext.create_label(tc.idempotency_key, args.order_id))

    rig.run(one_call(return_label, {"order_id": ORDER_ID}), crash_at("return_label", "after_call"))

    assert rig.ext.effects("labels") == {f"label:{ORDER_ID}": 1}


def test_a_failed_lookup_leaves_the_write_unknown_and_escalates(rig: Rig) -> None:
    """reconcile() failing (not timing out) says nothing about the write: the run escalates
    with the reason journaled, and the write is neither re-issued nor recorded as failed."""
    lookups: list[str] = []
    made: list[str] = []

    def find(tc: ToolContext, key: str) -> Label | None:
        lookups.append(key)
        raise PermissionError("403: lookup token expired")

    @tool(effect="reconcilable", key=lambda a: f"label:{a.order_id}", reconcile=find)
    def return_label(tc: ToolContext, args: OrderRef) -> Label:
        made.append(tc.idempotency_key)
        rig.ext.create_label(tc.idempotency_key, args.order_id)
        raise TimeoutError("no response")

    @workflow(name="label_only")
    async def wf(ctx: RunContext, order_id: str) -> None:
        await ctx.call_tool(return_label, {"order_id": order_id})

    result = rig.run(wf)
    assert result.status is RunStatus.ESCALATED
    assert "looking it up failed (PermissionError" in result.reason
    assert made == [f"label:{ORDER_ID}"] and lookups == [f"label:{ORDER_ID}"]
    assert not of(rig.events(), ToolError)  # the last word is that the outcome is unknown
    assert len(of(rig.events(), ToolAmbiguous)) == 1
    assert rig.ext.effects("labels") == {f"label:{ORDER_ID}": 1}


def _unsafe_email(rig: Rig, calls: list[str], *, timeout: bool) -> Tool[Any, Any]:
    @tool(effect="unsafe", key=lambda a: f"email:{a.order_id}")
    def notify_customer(tc: ToolContext, args: EmailArgs) -> Email:
        calls.append(tc.idempotency_key)
        sent = rig.ext.send_email(tc.idempotency_key, args.to, args.body)
        if timeout:
            raise TimeoutError("SMTP session dropped after DATA")
        return Email.model_validate(sent)

    return notify_customer


@pytest.mark.parametrize("how", ["timeout", "crash"])
def test_unknown_unsafe_outcome_escalates_without_reissuing(rig: Rig, how: str) -> None:
    """An unknown unsafe outcome escalates (reason journaled); its handler never runs again."""
    calls: list[str] = []
    wf = one_call(_unsafe_email(rig, calls, timeout=how == "timeout"), EMAIL)
    result = rig.run(wf, crash_at("notify_customer", "after_call") if how == "crash" else None)

    key = f"email:{ORDER_ID}"
    assert result.status is RunStatus.ESCALATED
    assert "notify_customer" in result.reason and "unsafe" in result.reason
    assert asyncio.run(rig.runtime(wf).recover()) == []
    assert asyncio.run(rig.runtime(wf).resume(RUN)).status is RunStatus.ESCALATED
    assert calls == [key]
    assert rig.ext.effects("emails") == {key: 1}
    events = rig.events()
    assert [e.key for e in of(events, ToolAmbiguous)] == [key]
    assert isinstance(events[-1], RunFinished) and events[-1].reason == result.reason


def test_unsafe_crash_after_intent_escalates_though_nothing_was_sent(rig: Rig) -> None:
    """An unsafe crash after its intent escalates by protocol, though nothing was sent."""
    calls: list[str] = []
    wf = one_call(_unsafe_email(rig, calls, timeout=False), EMAIL)
    result = rig.run(wf, crash_at("notify_customer", "after_intent"))

    assert result.status is RunStatus.ESCALATED
    assert calls == []
    assert rig.ext.effects("emails") == {}
    events = rig.events()
    [ambiguous] = of(events, ToolAmbiguous)
    assert "after journaling the intent" in ambiguous.reason
    assert isinstance(events[-1], RunFinished) and "unsafe" in events[-1].reason


# -- results that break the declared type ---------------------------------------------------


def test_invalid_result_raises_tool_result_invalid_and_is_journaled(rig: Rig) -> None:
    """A mistyped write result raises ToolResultInvalid, is journaled as an applied result
    flagged unreadable, and replays."""
    calls: list[str] = []
    caught: list[tuple[str, str]] = []

    @tool(effect="idempotent", key=lambda a: f"label:{a.order_id}")
    def drifted_label(tc: ToolContext, args: OrderRef) -> Label:
        calls.append(tc.idempotency_key)
        return {"labelId": "lbl_9"}  # type: ignore[return-value]  # the provider renamed it

    @tool(effect="idempotent", key=lambda a: f"close:{a.order_id}")
    def close_ticket(tc: ToolContext, args: OrderRef) -> Ticket:
        return Ticket.model_validate(rig.ext.close_ticket(tc.idempotency_key, args.order_id))

    @workflow(name="drift")
    async def wf(ctx: RunContext, order_id: str) -> str:
        try:
            await ctx.call_tool(drifted_label, {"order_id": order_id})
        except ToolResultInvalid as exc:
            caught.append((type(exc).__name__, exc.failure))
        ticket = await ctx.call_tool(close_ticket, {"order_id": order_id})
        return ticket.status

    result = rig.run(wf, crash_at("close_ticket", "before_intent"))

    assert result.status is RunStatus.COMPLETED and result.result == "closed"
    assert calls == [f"label:{ORDER_ID}"]  # not re-executed on resume
    assert caught == [("ToolResultInvalid", "tool_result_invalid")] * 2  # live, then replayed
    # The write took effect: its position is settled by a result flagged unreadable.
    assert not of(rig.events(), ToolError)
    [applied] = [e for e in of(rig.events(), ToolResult) if e.pos == 0]
    assert applied.tool == "drifted_label" and applied.unreadable
    assert rig.ext.effects("tickets") == {f"close:{ORDER_ID}": 1}


# -- saga compensation ----------------------------------------------------------------------

SKUS = ("SKU-A", "SKU-B", "SKU-C")


def _saga(rig: Rig, undo_calls: list[tuple[str, str]],
          crash_in_undo: str | None = None) -> Workflow:
    """Hold three SKUs, then fail a charge: the holds must be released, newest first.

    ``crash_in_undo`` ("before"/"after") crashes the worker in the middle hold's release, before
    or after the provider applied it, the first time it runs.
    """

    def release(tc: ToolContext, args: HoldArgs, result: Hold) -> dict[str, Any]:
        undo_calls.append((args.sku, tc.idempotency_key))
        first = sum(1 for sku, _ in undo_calls if sku == args.sku) == 1
        crash_here = first and args.sku == "SKU-B"
        if crash_here and crash_in_undo == "before":
            raise Crash("release SKU-B, before the provider saw it")
        released = rig.ext.release_hold(tc.idempotency_key, result.hold_id)
        if crash_here and crash_in_undo == "after":
            raise Crash("release SKU-B, after the provider applied it")
        return released

    @tool(effect="idempotent", key=lambda a: f"hold:{a.sku}", compensate=release)
    def hold_stock(tc: ToolContext, args: HoldArgs) -> Hold:
        return Hold.model_validate(rig.ext.place_hold(tc.idempotency_key, args.order_id,
                                                      args.sku))

    @tool(effect="idempotent", key=lambda a: f"charge:{a.order_id}")
    def charge(tc: ToolContext, args: RefundArgs) -> Refund:
        raise ValueError("card declined")

    @workflow(name="saga")
    async def wf(ctx: RunContext, order_id: str) -> None:
        for sku in SKUS:
            await ctx.call_tool(hold_stock, {"order_id": order_id, "sku": sku})
        await ctx.call_tool(charge, REFUND)

    return wf


def _assert_released_newest_first(rig: Rig, result: RunResult) -> None:
    assert result.status is RunStatus.FAILED
    assert result.error is not None and result.error["type"] == "tether.errors.ToolFailed"
    assert rig.ext.effects("holds") == {f"hold:{s}": 1 for s in SKUS}
    assert rig.ext.effects("releases") == {f"hold:{s}:undo": 1 for s in SKUS}
    released = [row[1] for row in rig.ext.snapshot()["releases"]]  # in provider order
    assert released == [f"hold:{s}:undo" for s in reversed(SKUS)]
    events = rig.events()
    undo_intents = [e for e in of(events, ToolIntent) if e.compensates is not None]
    assert list(dict.fromkeys(e.compensates for e in undo_intents)) == [2, 1, 0]
    for pos in {e.pos for e in undo_intents}:
        assert len([e for e in of(events, ToolResult) if e.pos == pos]) == 1


def test_failure_compensates_completed_writes_newest_first(rig: Rig) -> None:
    """A definitive failure undoes writes newest first, each a journaled compensating intent."""
    undo_calls: list[tuple[str, str]] = []
    result = rig.run(_saga(rig, undo_calls))

    _assert_released_newest_first(rig, result)
    assert undo_calls == [(s, f"hold:{s}:undo") for s in reversed(SKUS)]
    assert "card declined" in result.reason


@pytest.mark.parametrize("when", ["before", "after"])
def test_crash_during_compensation_does_not_undo_twice(rig: Rig, when: str) -> None:
    """A crash mid-compensation, then recovery, undoes every write exactly once."""
    undo_calls: list[tuple[str, str]] = []
    wf = _saga(rig, undo_calls, crash_in_undo=when)
    with pytest.raises(Crash):
        asyncio.run(rig.runtime(wf).start(wf, ORDER_ID, run_id=RUN))
    assert rig.ext.effects("releases") == {
        f"hold:{s}:undo": 1 for s in (("SKU-C", "SKU-B") if when == "after" else ("SKU-C",))}

    result = rig.recover(wf)

    _assert_released_newest_first(rig, result)
    assert undo_calls == [("SKU-C", "hold:SKU-C:undo"), ("SKU-B", "hold:SKU-B:undo"),
                          ("SKU-B", "hold:SKU-B:undo"), ("SKU-A", "hold:SKU-A:undo")]
    replays = rig.ext.outcomes("holds.release").count("replayed")
    assert replays == (1 if when == "after" else 0)


# -- non-determinism ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "was", "now"),
    [
        ("tool", "call_tool('refund')", "call_tool('notify_customer')"),
        ("step", "step('plan')", "step('plan_v2')"),
    ],
)
def test_changed_workflow_raises_non_determinism_naming_both_calls(
    rig: Rig, change: str, was: str, now: str
) -> None:
    """A changed call at a recorded position raises NonDeterminismError naming both calls."""
    emails: list[str] = []

    @tool(effect="idempotent", key=lambda a: f"refund:{a.order_id}")
    def refund(tc: ToolContext, args: RefundArgs) -> Refund:
        return Refund.model_validate(
            rig.ext.create_refund(tc.idempotency_key, args.order_id, args.amount_cents))

    @tool(effect="idempotent", key=lambda a: f"close:{a.order_id}")
    def close_ticket(tc: ToolContext, args: OrderRef) -> Ticket:
        return Ticket.model_validate(rig.ext.close_ticket(tc.idempotency_key, args.order_id))

    notify = _unsafe_email(rig, emails, timeout=False)

    @workflow(name="changing")
    async def v1(ctx: RunContext, order_id: str) -> None:
        await ctx.step("plan", lambda: 1)
        await ctx.call_tool(refund, REFUND)
        await ctx.call_tool(close_ticket, {"order_id": order_id})

    @workflow(name="changing")
    async def v2(ctx: RunContext, order_id: str) -> None:
        await ctx.step("plan_v2" if change == "step" else "plan", lambda: 1)
        await ctx.call_tool(notify, EMAIL)

    with pytest.raises(Crash):
        asyncio.run(rig.runtime(v1, crash_at("close_ticket", "before_intent"))
                    .start(v1, ORDER_ID, run_id=RUN))
    before = rig.events()

    with pytest.raises(NonDeterminismError) as info:
        asyncio.run(rig.runtime(v2).resume(RUN))

    message = str(info.value)
    assert was in message and now in message
    assert emails == []
    assert rig.ext.effects("emails") == {}
    assert rig.ext.effects("refunds") == {f"refund:{ORDER_ID}": 1}
    assert rig.events() == before  # nothing journaled for the changed code
