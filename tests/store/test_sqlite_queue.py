"""SQLiteStore's work queue: files made before it open and serve it; claims across processes."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.store.claim_race import claim_race
from tether.events import RunStarted, RunStatus, WaitResolved, WaitStarted, checksum, encode
from tether.store.base import Lease
from tether.store.sqlite import SCHEMA_VERSION, SQLiteStore

# The schema as it was before the work queue (version 2), copied verbatim.
_VERSION_2 = (
    """CREATE TABLE runs (
        run_id TEXT PRIMARY KEY,
        workflow TEXT NOT NULL,
        status TEXT NOT NULL,
        last_seq INTEGER NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    )""",
    "CREATE INDEX runs_by_status ON runs (status, created_at)",
    """CREATE TABLE events (
        run_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        kind TEXT NOT NULL,
        body TEXT NOT NULL,
        crc INTEGER NOT NULL,
        PRIMARY KEY (run_id, seq)
    ) WITHOUT ROWID""",
    "ALTER TABLE runs ADD COLUMN owner TEXT",
    "ALTER TABLE runs ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE runs ADD COLUMN lease_expires_at REAL",
)


def _version_2_file(path: Path) -> None:
    """A store file as the previous tether left it: a running run whose owner died and a run
    waiting for an approval."""
    db = sqlite3.connect(path, isolation_level=None)
    for statement in _VERSION_2:
        db.execute(statement)
    runs = [("dead-owner", "running", "w-old", 1, 50.0, []),
            ("waiting", "waiting", None, 1, None, [WaitStarted(seq=2, at=2.0, pos=0, key="k")])]
    for run_id, status, owner, epoch, expires, later in runs:
        events = [RunStarted(seq=1, at=1.0, workflow="wf", seed=1), *later]
        db.execute("INSERT INTO runs VALUES (?, 'wf', ?, ?, 1.0, 1.0, ?, ?, ?)",
                   (run_id, status, len(events), owner, epoch, expires))
        for event in events:
            body = encode(event)
            db.execute("INSERT INTO events VALUES (?, ?, ?, ?, ?)",
                       (run_id, event.seq, json.loads(body)["kind"], body, checksum(body)))
    db.execute("PRAGMA user_version=2")
    db.close()


def test_a_file_from_before_the_queue_opens_and_serves_it(tmp_path: Path) -> None:
    """A version-2 file migrates: old runs are on the default queue with nothing scheduled,
    a dead owner's run is claimable, and a resolution makes the waiting run due."""
    path = tmp_path / "old.db"
    _version_2_file(path)
    store = SQLiteStore(path)
    try:
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        info = store.get_run("waiting")
        assert info is not None and info.queue == "default" and info.wake_at is None
        assert [lease.run_id for lease in store.claim("w", now=60.0, ttl_s=99.0, limit=5)] == [
            "dead-owner"]
        store.append("waiting", [WaitResolved(seq=3, at=70.0, key="k")], expected_last_seq=2)
        assert store.claim("w", now=70.0, ttl_s=10.0) == [Lease("waiting", "w", 2, 80.0)]
        assert store.get_run("waiting").status is RunStatus.RUNNING  # type: ignore[union-attr]
    finally:
        store.close()


def test_the_due_query_uses_the_status_wake_index(tmp_path: Path) -> None:
    """Queued and waiting runs are found through the (status, wake_at) index, not a scan."""
    store = SQLiteStore(tmp_path / "runs.db")
    store.close()
    with sqlite3.connect(tmp_path / "runs.db") as db:
        plan = db.execute("EXPLAIN QUERY PLAN SELECT run_id FROM runs WHERE status IN "
                          "('queued', 'waiting') AND wake_at <= 5").fetchall()
    assert any("runs_by_wake" in str(row[-1]) for row in plan), plan




@pytest.mark.parametrize(("ttl_s", "rounds"), [(1000.0, 10_000), (2.0, 40)])
def test_processes_claiming_one_file_never_share_a_run(tmp_path: Path, ttl_s: float,
                                                       rounds: int) -> None:
    """Three processes claiming in a loop from the same file: no run is handed out twice
    under one epoch, and every epoch of every run went to exactly one claimer (with long
    leases: each run once, under epoch 1; with short ones: taken over again and again)."""
    path = tmp_path / "runs.db"
    store = SQLiteStore(path)
    ids = [f"run-{n:03}" for n in range(60)]
    for n, run_id in enumerate(ids):
        store.append(run_id, [RunStarted(seq=1, at=float(n % 10), workflow="wf", seed=1,
                                         queue="default")], expected_last_seq=0)
    store.close()
    claim_race("from tether.store.sqlite import SQLiteStore\nstore = SQLiteStore(sys.argv[1])",
               [str(path)], ids, ttl_s, rounds)
