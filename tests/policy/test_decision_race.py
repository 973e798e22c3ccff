"""Two processes decide the same approval at the same instant, many times over: exactly one is
told it succeeded, the other is told who decided first, and the journal holds one decision."""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import os
from pathlib import Path
from typing import Any

import pytest

from tether import Runtime, VirtualClock
from tether.agent.agent import Task
from tether.errors import AlreadyDecided
from tether.events import WaitResolved
from tether.policy.approvals import Approvals
from tether.store.base import Store
from tether.store.sqlite import SQLiteStore

from .approval_app import build_agent

TRIALS = 25
_schemas = itertools.count(1)


def open_store(spec: tuple[str, str]) -> Store:
    kind, where = spec
    if kind == "sqlite":
        return SQLiteStore(where)
    from tether.store.postgres import PostgresStore

    dsn, schema = where.split("#")
    return PostgresStore(dsn, schema=schema)


def decide_all(spec: tuple[str, str], approve: bool, runs: list[str], barrier: Any,
               results: Any) -> None:
    """In a child process: decide every run, each right after the barrier releases both."""
    approvals = Approvals(open_store(spec))
    who = "ada" if approve else "bob"
    told = []
    for run_id in runs:
        barrier.wait(timeout=60)
        try:
            decide = approvals.approve if approve else approvals.deny
            decide(run_id, by=who, role="supervisor")
            told.append((run_id, who, "ok"))
        except AlreadyDecided as exc:
            told.append((run_id, who, str(exc)))
    results.put(told)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def spec(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    if request.param == "sqlite":
        return ("sqlite", str(tmp_path / "runs.db"))
    dsn = request.getfixturevalue("postgres_dsn")
    return ("postgres", f"{dsn}#race_{os.getpid()}_{next(_schemas)}")


def test_racing_approve_and_deny_one_wins_the_other_is_told(spec: tuple[str, str],
                                                            tmp_path: Path) -> None:
    """For each of TRIALS held calls, an approve and a deny released by one barrier from two
    processes: one succeeds, the other gets AlreadyDecided naming the winner's decision."""
    store = open_store(spec)
    agent = build_agent(str(tmp_path / "ledger.db"))
    runtime = Runtime(store, clock=VirtualClock(), seed=1)
    runs = [f"r{n}" for n in range(TRIALS)]
    for run_id in runs:
        asyncio.run(runtime.start(agent, Task(text="refund", principal="agent-1"),
                                  run_id=run_id))
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(2), context.Queue()
    procs = [context.Process(target=decide_all, args=(spec, approve, runs, barrier, results))
             for approve in (True, False)]
    for proc in procs:
        proc.start()
    told = results.get(timeout=120) + results.get(timeout=120)
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    for run_id in runs:
        answers = {who: said for r, who, said in told if r == run_id}
        winners = [who for who, said in answers.items() if said == "ok"]
        assert len(winners) == 1, (run_id, answers)
        (winner,) = winners
        (loser,) = set(answers) - {winner}
        verb = "approved" if winner == "ada" else "denied"
        assert f"already {verb} by {winner} as 'supervisor'" in answers[loser], answers
        stored = [e for e in store.read(run_id) if isinstance(e, WaitResolved)]
        assert [e.by for e in stored] == [winner]
    store.close()
