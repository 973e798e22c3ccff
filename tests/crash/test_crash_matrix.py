"""Kill a real worker process (SIGKILL) at every point of every durable call, recover in a fresh
process, and check the external system: idempotent and reconcilable effects exactly once, no
unsafe effect twice, and an ambiguous unsafe write escalated with its reason journaled."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tether import RunStatus, SQLiteStore
from tether.events import RunFinished, ToolAmbiguous, ToolIntent

from .app import ORDER_ID, RUN_ID, External

APP = Path(__file__).with_name("app.py")
WRITES = ("hold_stock", "refund", "return_label", "notify_customer", "close_ticket")
POINTS = ("before_intent", "after_intent", "after_call", "after_result")
KILLS = [(w, p) for w in WRITES for p in POINTS] + [
    ("lookup_order", "in_handler"),
    ("plan_refund", "in_step"),
    ("plan_refund", "after_step"),
]
#: Effect table → (tool whose effect it holds, the business key the workflow uses).
EFFECTS = {
    "holds": ("hold_stock", f"hold:{ORDER_ID}"),
    "refunds": ("refund", f"refund:{ORDER_ID}"),
    "labels": ("return_label", f"label:{ORDER_ID}"),
    "emails": ("notify_customer", f"email:{ORDER_ID}"),
    "tickets": ("close_ticket", f"close:{ORDER_ID}"),
}


@dataclass
class Worker:
    """Runs the app against one journal file and one external-system file."""

    dir: Path
    opened: list[External] = field(default_factory=list)

    @property
    def store_path(self) -> Path:
        return self.dir / "runs.db"

    def run(self, *args: str, expect_rc: int = 0) -> dict[str, Any]:
        cmd = [sys.executable, str(APP), "--store", str(self.store_path),
               "--external", str(self.dir / "ext.db"), *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == expect_rc, (
            f"{' '.join(cmd)} exited {proc.returncode}, expected {expect_rc}\n"
            f"stdout: {proc.stdout}\nstderr: {proc.stderr}")
        return json.loads(proc.stdout) if expect_rc == 0 else {}

    def external(self) -> External:
        ext = External(self.dir / "ext.db")
        self.opened.append(ext)
        return ext

    def journal(self) -> list[Any]:
        store = SQLiteStore(self.store_path)
        try:
            assert store.check() == []
            return store.read(RUN_ID)
        finally:
            store.close()

    def fingerprint(self) -> tuple[Any, ...]:
        return (self.external().snapshot(), [e.model_dump() for e in self.journal()])


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[Worker]:
    w = Worker(tmp_path)
    yield w
    for ext in w.opened:
        ext.close()


def expected_effects(name: str | None, point: str | None) -> dict[str, int]:
    """How many effect rows each table must hold for its key after a kill and recovery."""
    counts = dict.fromkeys(EFFECTS, 1)
    if name == "notify_customer" and point == "after_intent":
        counts["emails"] = 0  # escalated before the handler ran: nothing was sent
    if name == "notify_customer" and point in ("after_intent", "after_call"):
        counts["tickets"] = 0  # the run stopped at the escalation
    return counts


def assert_effects(ext: External, counts: dict[str, int]) -> None:
    for table, (_, key) in EFFECTS.items():
        want = {key: counts[table]} if counts[table] else {}
        assert ext.effects(table) == want, f"{table}: {ext.effects(table)} != {want}"
    assert ext.effects("releases") == {}  # the compensation is not triggered on these paths


def test_no_kill_completes_with_every_effect_once(worker: Worker) -> None:
    """Without a crash the workflow completes and applies each effect exactly once."""
    summary = worker.run()
    assert summary["statuses"] == {RUN_ID: "completed"}
    ext = worker.external()
    assert_effects(ext, expected_effects(None, None))
    assert ext.effects("step_runs") == {"plan_refund": 1}
    assert ext.outcomes("orders.get") == ["read"]
    assert ext.outcomes("labels.find") == []  # nothing was ambiguous: no lookup needed
    assert not any("replayed" in ext.outcomes(e) for e in ("holds.create", "refunds.create"))
    finished = worker.journal()[-1]
    assert isinstance(finished, RunFinished) and finished.status is RunStatus.COMPLETED


@pytest.mark.parametrize(("name", "point"), KILLS, ids=[f"{n}-{p}" for n, p in KILLS])
def test_kill_then_recover(worker: Worker, name: str, point: str) -> None:
    """After a SIGKILL here, recovery completes (or escalates) with no effect doubled."""
    worker.run("--kill-at", f"{name}:{point}", expect_rc=-signal.SIGKILL)
    assert worker.journal()[-1].kind != "run_finished"

    summary = worker.run("--recover")
    escalates = name == "notify_customer" and point in ("after_intent", "after_call")
    status = "escalated" if escalates else "completed"
    assert summary["statuses"] == {RUN_ID: status}
    assert [r["status"] for r in summary["results"]] == [status]

    ext = worker.external()
    assert_effects(ext, expected_effects(name, point))
    events = worker.journal()
    finished = events[-1]
    assert isinstance(finished, RunFinished) and finished.status == status
    if escalates:
        ambiguous = [e for e in events if isinstance(e, ToolAmbiguous)]
        assert [e.tool for e in ambiguous] == ["notify_customer"]
        assert "notify_customer" in finished.reason and "unsafe" in finished.reason

    # How each ambiguity was settled, seen from the provider's side: an idempotent write
    # killed after its call is re-issued and replayed by the provider, never applied twice.
    counts = expected_effects(name, point)
    endpoints = {"holds": "holds.create", "refunds": "refunds.create", "tickets": "tickets.close"}
    for table, endpoint in endpoints.items():
        reissued = EFFECTS[table][0] == name and point == "after_call"
        want = ["applied"] + ["replayed"] * reissued if counts[table] else []
        assert ext.outcomes(endpoint) == want, endpoint
    killed_in_flight = point in ("after_intent", "after_call")
    lookups = ext.outcomes("labels.find")
    if name == "return_label" and killed_in_flight:
        assert lookups == ["not_found" if point == "after_intent" else "found"]
        assert ext.outcomes("labels.create") == ["applied"]
    else:
        assert lookups == []

    # Reads and steps run again only if the kill came before their outcome was journaled.
    assert len(ext.outcomes("orders.get")) == (2 if name == "lookup_order" else 1)
    assert ext.effects("step_runs") == {"plan_refund": 2 if point == "in_step" else 1}

    # Re-issues of a write carry the same key on every attempt.
    for pos_events in _intents_by_position(events).values():
        assert len({e.key for e in pos_events}) == 1
        assert [e.attempt for e in pos_events] == list(range(1, len(pos_events) + 1))


def test_recovering_a_finished_run_again_changes_nothing(worker: Worker) -> None:
    """Recovering or resuming an already recovered run changes neither world nor journal."""
    worker.run("--kill-at", "refund:after_call", expect_rc=-signal.SIGKILL)
    assert worker.run("--recover")["statuses"] == {RUN_ID: "completed"}
    before = worker.fingerprint()

    assert worker.run("--recover")["results"] == []
    again = worker.run("--resume", RUN_ID)
    assert [r["status"] for r in again["results"]] == ["completed"]
    assert worker.fingerprint() == before
    assert_effects(worker.external(), expected_effects(None, None))


def test_kill_during_recovery_then_recover_again(worker: Worker) -> None:
    """A second SIGKILL while recovering is recovered too, still with every effect once."""
    worker.run("--kill-at", "refund:after_call", expect_rc=-signal.SIGKILL)
    worker.run("--recover", "--kill-at", "return_label:after_call", expect_rc=-signal.SIGKILL)
    assert worker.run("--recover")["statuses"] == {RUN_ID: "completed"}
    ext = worker.external()
    assert_effects(ext, expected_effects(None, None))
    assert ext.outcomes("refunds.create") == ["applied", "replayed"]
    assert ext.outcomes("labels.find") == ["found"]


def _intents_by_position(events: list[Any]) -> dict[int, list[ToolIntent]]:
    by_pos: dict[int, list[ToolIntent]] = {}
    for event in events:
        if isinstance(event, ToolIntent):
            by_pos.setdefault(event.pos, []).append(event)
    return by_pos
