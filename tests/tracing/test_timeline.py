"""The trace view: items, their times and costs, and a run's totals."""

from __future__ import annotations

import asyncio

import pytest

from tests.tracing import T0, agent_journal, approval_flow, failing_run, refund_run
from tether import MemoryStore, Runtime, VirtualClock
from tether.events import Decision, RunStarted, RunStatus
from tether.tracing.timeline import build_trace


def test_agent_totals_match_hand_computed_values() -> None:
    """Duration, tokens, cost, calls, retries and failures add up to the journal's numbers."""
    store = MemoryStore()
    run_id = agent_journal(store)
    totals = build_trace(run_id, store.read(run_id)).totals
    assert totals.duration_s == 5.75
    assert (totals.input_tokens, totals.output_tokens) == (1_030, 204)
    assert totals.total_tokens == 1_234 and totals.cached_input_tokens == 100
    assert totals.cost_usd == pytest.approx(0.042)
    assert (totals.model_calls, totals.tool_calls, totals.retries) == (3, 1, 1)
    assert dict(totals.failures) == {"rate_limited": 1}


def test_a_decision_hangs_on_the_failed_call_it_classifies() -> None:
    """A back-off decision naming a failure class hangs on that model call, counted as a retry."""
    store = MemoryStore()
    run_id = agent_journal(store)
    trace = build_trace(run_id, store.read(run_id))
    assert [(i.kind, i.pos, i.status) for i in trace.items] == [
        ("model", 0, "failed"), ("sleep", 2, "ok"), ("model", 3, "ok"), ("tool", 4, "ok"),
        ("model", 5, "ok")]
    failed = trace.items[0]
    assert failed.retries == 1 and failed.failures == ("rate_limited",)
    assert failed.error_type == "tether.errors.RateLimited"
    assert [(c.kind, c.name, c.pos) for c in failed.children] == [("decision", "recover", 1)]
    assert (failed.start_at, failed.duration_s) == (T0, 1.5)
    asks = trace.items[2]
    assert (asks.start_at - T0, asks.duration_s, asks.input_tokens) == (3.5, 1.5, 1_000)
    assert asks.detail == "→ lookup_order"


def test_a_decision_about_nothing_stays_at_the_run_level() -> None:
    """A decision with no call at its position and no matching failure is a root item."""
    store = MemoryStore()
    run_id = agent_journal(store, finish=False)
    events = store.read(run_id)
    budget = Decision(seq=len(events) + 1, at=T0 + 6, pos=6, name="budget",
                      data={"limit": "max_cost_usd", "action": "stop"})
    trace = build_trace(run_id, [*events, budget])
    assert trace.items[-1].kind == "decision" and trace.items[-1].name == "budget"
    assert "limit=max_cost_usd" in trace.items[-1].detail
    assert trace.totals.retries == 1


def test_a_decision_naming_a_tool_hangs_on_that_tool_call() -> None:
    """A decision naming a tool hangs on that tool's call even if its failure classes differ."""
    store = MemoryStore()
    run_id = failing_run(store)
    events = store.read(run_id)[:-1]  # as the agent sees it: the tool failed, the run goes on
    recover = Decision(seq=len(events) + 1, at=events[-1].at, pos=1, name="recover",
                       data={"failure": "permanent_tool_error", "tool": "close_order",
                             "action": "observe"})
    trace = build_trace(run_id, [*events, recover])
    (item,) = trace.items
    assert [c.name for c in item.children] == ["recover"]
    assert item.retries == 0 and trace.totals.retries == 0


def test_real_run_items_take_their_times_from_the_virtual_clock() -> None:
    """Step, read tool, sleep and re-issued write get the run clock's starts and durations."""
    store = MemoryStore()
    run_id = refund_run(store)
    trace = build_trace(run_id, store.read(run_id))
    assert trace.status is RunStatus.COMPLETED and trace.workflow == "refund"
    rows = [(i.kind, i.name, round(i.start_at - T0, 6), round(i.duration_s, 6))
            for i in trace.items]
    assert rows == [("step", "validate", 0.0, 0.0), ("tool", "lookup_order", 0.0, 0.2),
                    ("sleep", "sleep", 0.2, 30.0), ("tool", "issue_refund", 30.2, 2.0)]
    refund = trace.items[-1]
    assert (refund.retries, refund.failures, refund.status) == (1, ("ambiguous_write",), "ok")
    assert refund.detail == "idempotent"
    assert trace.totals.duration_s == pytest.approx(32.2)
    assert (trace.totals.tool_calls, trace.totals.retries) == (2, 1)


def test_a_failed_tool_call_carries_its_class_and_error_type() -> None:
    """A handler's ValueError is a failed item of class `permanent`; the run failed."""
    store = MemoryStore()
    run_id = failing_run(store)
    trace = build_trace(run_id, store.read(run_id))
    (item,) = trace.items
    assert (item.status, item.failures, item.error_type) == ("failed", ("permanent_tool_error",),
                                                             "ValueError")
    assert trace.status is RunStatus.FAILED
    assert dict(trace.totals.failures) == {"permanent_tool_error": 1}


def test_a_wait_lasts_until_its_resolution() -> None:
    """A wait spans from wait_started to the resolution, and says who resolved it."""
    store, clock = MemoryStore(), VirtualClock(start=T0)
    runtime = Runtime(store, clock=clock, seed=1, workflows=[approval_flow])
    run_id = asyncio.run(runtime.start(approval_flow)).run_id
    clock.advance(90)
    runtime.resolve(run_id, "approval", "yes", by="ada")
    assert asyncio.run(runtime.resume(run_id)).status is RunStatus.COMPLETED
    (wait,) = build_trace(run_id, store.read(run_id)).items
    assert (wait.kind, wait.name, wait.status, wait.detail) == ("wait", "approval", "ok",
                                                                "resolved by ada")
    assert wait.duration_s == 90


def test_part_of_a_journal_uses_the_given_run_started() -> None:
    """A stretch without run_started takes workflow and session from the one passed in."""
    store = MemoryStore()
    run_id = agent_journal(store)
    events = store.read(run_id)
    started = events[0]
    assert isinstance(started, RunStarted)
    trace = build_trace(run_id, events[3:], started=started)
    assert (trace.workflow, trace.conversation_id) == ("support_agent", "sess-1")
    assert trace.started_at == events[3].at and trace.totals.model_calls == 2


def test_no_events_is_an_error() -> None:
    """An empty journal has no trace; the message names the run."""
    with pytest.raises(ValueError, match="run 'r1': no events"):
        build_trace("r1", [])
