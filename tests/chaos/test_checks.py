"""The chaos tests' checks catch what they exist to catch: a duplicate effect, an unsafe handler
run twice, a reconcilable write run again after its lookup found it, an escalation with no
unknown outcome behind it. Journals come from the real runtime on a memory store, the world's
logs from the real external system in a SQLite file."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tether import MemoryStore, Runtime, VirtualClock
from tether.events import Event, RunFinished, RunStatus

from .checks import check_invocations, check_journal, check_run
from .harness import Summary
from .worker_app import EFFECT_TABLES, WF, External


@pytest.fixture
def ext(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> External:
    url = str(tmp_path / "external.db")
    monkeypatch.setenv("TETHER_CHAOS_EXTERNAL", url)
    monkeypatch.setenv("TETHER_CHAOS_LATENCY_S", "0")
    system = External(url)
    system.create()
    return system


def run_in_process(order_id: str) -> list[Event]:
    """One queued run executed as a worker would: dequeued, parked at its timer, resumed
    once the timer is due, finished."""
    store, clock = MemoryStore(), VirtualClock(start=0.0)
    runtime = Runtime(store, clock=clock, workflows=[WF], park_timers_after_s=0.5)

    async def main() -> None:
        run_id = runtime.enqueue(WF, order_id, run_id=f"chaos-{order_id}")
        assert (await runtime.resume(run_id)).status is RunStatus.WAITING
        clock.advance(10)
        assert (await runtime.resume(run_id)).status.finished

    asyncio.run(main())
    return store.read(f"chaos-{order_id}")


def effects(ext: External) -> dict[str, dict[str, int]]:
    return {table: ext.effects(table) for table in EFFECT_TABLES}


def test_an_undisturbed_run_passes_every_check(ext: External) -> None:
    """A completed run and a declined (compensated) run pass the journal and world checks."""
    for order_id in ("o-0001", "o-0003"):
        events = run_in_process(order_id)
        assert check_journal(f"chaos-{order_id}", events) == []
        assert check_run(f"chaos-{order_id}", order_id, events, effects(ext)) == []
    assert check_invocations(ext.history(), Summary(seed=0)) == []


def test_a_duplicate_effect_is_reported(ext: External) -> None:
    """A second charge for one order fails the world check."""
    events = run_in_process("o-0001")
    world = effects(ext)
    world["charges"]["charge:o-0001"] = 2
    assert "effects" in " ".join(check_run("chaos-o-0001", "o-0001", events, world))


def test_an_escalation_without_an_unknown_unsafe_outcome_is_reported(ext: External) -> None:
    """A run escalated although its unsafe write had answered fails the check."""
    events = run_in_process("o-0001")
    last = events[-1]
    forged = [*events[:-1], RunFinished(seq=last.seq, at=last.at, status=RunStatus.ESCALATED,
                                        reason="forged")]
    problems = check_run("chaos-o-0001", "o-0001", forged, effects(ext))
    assert "no unsafe write's outcome was unknown" in " ".join(problems)


def test_invocation_rules_per_intent_key() -> None:
    """An unsafe handler run twice, a reconcilable write run after a lookup found it, and a
    key applied twice are reported; an idempotent re-issue the provider replayed is not."""
    history = {
        "email:o-1": [("invoked", "emails.send"), ("invoked", "emails.send")],
        "label:o-1": [("invoked", "labels.create"), ("invoked", "labels.find"),
                      ("invoked", "labels.create"), ("applied", "labels.create"),
                      ("found", "labels.find"), ("applied", "labels.create")],
        "charge:o-1": [("invoked", "charges.create"), ("invoked", "charges.create"),
                       ("applied", "charges.create"), ("replayed", "charges.create")],
        "label:o-2": [("invoked", "labels.create"), ("invoked", "labels.find"),
                      ("invoked", "labels.create"), ("not_found", "labels.find"),
                      ("applied", "labels.create")],
    }
    summary = Summary(seed=0)
    problems = check_invocations(history, summary)
    assert any(p.startswith("email:o-1: the unsafe email handler ran 2") for p in problems)
    assert any(p.startswith("label:o-1: applied 2") for p in problems)
    assert any(p.startswith("label:o-1: the reconcilable write ran again") for p in problems)
    assert not any(p.startswith(("charge:o-1", "label:o-2")) for p in problems), problems
    assert summary.max_idempotent_invocations == 2
