"""PostgresStore's work queue: old schemas migrate, NOTIFY wakes listeners, processes claiming
one schema never share a run."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable, Iterator

import psycopg
import pytest

from tests.store.claim_race import claim_race
from tether.events import (
    RunStarted,
    RunStatus,
    StepRecorded,
    WaitResolved,
    WaitStarted,
    checksum,
    encode,
)
from tether.store.base import Lease
from tether.store.postgres import SCHEMA_VERSION, PostgresStore

pytestmark = pytest.mark.postgres

_schemas = itertools.count(1)

# The schema as it was before the work queue (version 2), copied verbatim.
_VERSION_2 = (
    """CREATE TABLE {schema}.runs (
        run_id TEXT PRIMARY KEY,
        workflow TEXT NOT NULL,
        status TEXT NOT NULL,
        last_seq BIGINT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL
    )""",
    "CREATE INDEX runs_by_status ON {schema}.runs (status, created_at)",
    """CREATE TABLE {schema}.events (
        run_id TEXT NOT NULL,
        seq BIGINT NOT NULL,
        kind TEXT NOT NULL,
        body TEXT NOT NULL,
        crc BIGINT NOT NULL,
        PRIMARY KEY (run_id, seq)
    )""",
    """ALTER TABLE {schema}.runs ADD COLUMN owner TEXT,
        ADD COLUMN epoch BIGINT NOT NULL DEFAULT 0,
        ADD COLUMN lease_expires_at DOUBLE PRECISION""",
)


@pytest.fixture
def schema() -> str:
    return f"pq_{next(_schemas)}"


@pytest.fixture
def open_store(postgres_dsn: str, schema: str) -> Iterator[Callable[[], PostgresStore]]:
    """Opens PostgresStores on this test's schema; all closed afterwards."""
    opened: list[PostgresStore] = []

    def make() -> PostgresStore:
        opened.append(store := PostgresStore(postgres_dsn, schema=schema))
        return store

    yield make
    for store in opened:
        store.close()


def test_a_schema_from_before_the_queue_opens_and_serves_it(postgres_dsn, open_store,
                                                             schema) -> None:
    """A version-2 schema migrates: old runs are on the default queue with nothing scheduled,
    a dead owner's run is claimable, and a resolution makes the waiting run due."""
    with psycopg.connect(postgres_dsn, autocommit=True) as db:
        db.execute(f"CREATE SCHEMA {schema}")
        for statement in _VERSION_2:
            db.execute(statement.replace("{schema}", schema))
        db.execute(f"CREATE TABLE {schema}.meta (name TEXT PRIMARY KEY, value BIGINT NOT NULL)")
        db.execute(f"INSERT INTO {schema}.meta VALUES ('schema_version', 2)")
        runs = [("dead-owner", "running", "w-old", 1, 50.0, []),
                ("waiting", "waiting", None, 1, None, [WaitStarted(seq=2, at=2.0, pos=0,
                                                                  key="k")])]
        for run_id, status, owner, epoch, expires, later in runs:
            events = [RunStarted(seq=1, at=1.0, workflow="wf", seed=1), *later]
            db.execute(f"INSERT INTO {schema}.runs VALUES (%s, 'wf', %s, %s, 1.0, 1.0, %s, %s, "
                       "%s)", (run_id, status, len(events), owner, epoch, expires))
            for event in events:
                body = encode(event)
                db.execute(f"INSERT INTO {schema}.events VALUES (%s, %s, %s, %s, %s)",
                           (run_id, event.seq, json.loads(body)["kind"], body, checksum(body)))
    store = open_store()
    with psycopg.connect(postgres_dsn, autocommit=True) as db:
        version = db.execute(f"SELECT value FROM {schema}.meta").fetchone()
    assert version == (SCHEMA_VERSION,)
    info = store.get_run("waiting")
    assert info is not None and info.queue == "default" and info.wake_at is None
    claimed = store.claim("w", now=60.0, ttl_s=99.0, limit=5)
    assert [lease.run_id for lease in claimed] == ["dead-owner"]
    store.append("waiting", [WaitResolved(seq=3, at=70.0, key="k")], expected_last_seq=2)
    assert store.claim("w", now=70.0, ttl_s=10.0) == [Lease("waiting", "w", 2, 80.0)]
    assert store.get_run("waiting").status is RunStatus.RUNNING  # type: ignore[union-attr]


def test_work_that_becomes_due_notifies_listeners(open_store) -> None:
    """wait_for_work returns True after an enqueue, a resolution and a release of an
    unfinished run by another handle, and False when nothing happens."""
    listener, writer = open_store(), open_store()
    assert listener.wait_for_work(0.05) is False  # starts listening; nothing came
    writer.append("q1", [RunStarted(seq=1, at=1.0, workflow="wf", seed=1, queue="default")],
                  expected_last_seq=0)
    assert listener.wait_for_work(5.0) is True
    lease = Lease("r1", "w", 1, 100.0)
    writer.append("r1", [RunStarted(seq=1, at=1.0, workflow="wf", seed=1),
                         WaitStarted(seq=2, at=1.0, pos=0, key="k")], expected_last_seq=0,
                  lease=lease)
    writer.release(lease)
    while listener.wait_for_work(0.05):  # drain whatever the setup notified
        pass
    writer.append("r1", [WaitResolved(seq=3, at=2.0, key="k")], expected_last_seq=2)
    assert listener.wait_for_work(5.0) is True
    taken = {lease.run_id: lease for lease in writer.claim("w2", now=3.0, ttl_s=10.0,
                                                           limit=5)}
    writer.append("r1", [StepRecorded(seq=4, at=3.0, pos=1, call="step", name="s")],
                  expected_last_seq=3, lease=taken["r1"])
    assert listener.wait_for_work(0.05) is False  # claims and plain steps are no news
    writer.release(taken["r1"])
    assert listener.wait_for_work(5.0) is True


def test_a_listener_ignores_other_schemas(postgres_dsn, open_store) -> None:
    """Work in another schema of the same database does not wake this store's workers."""
    mine = open_store()
    other = PostgresStore(postgres_dsn, schema=f"pq_other_{next(_schemas)}")
    try:
        assert mine.wait_for_work(0.05) is False
        other.append("x", [RunStarted(seq=1, at=1.0, workflow="wf", seed=1, queue="default")],
                     expected_last_seq=0)
        assert mine.wait_for_work(0.3) is False
    finally:
        other.close()


def test_a_blocked_listener_does_not_hold_up_the_journal(open_store) -> None:
    """While a thread waits for work, the same store appends and claims."""
    store = open_store()
    waiter = threading.Thread(target=store.wait_for_work, args=(1.0,))
    waiter.start()
    store.append("a", [RunStarted(seq=1, at=1.0, workflow="wf", seed=1, queue="default")],
                 expected_last_seq=0)
    assert [lease.run_id for lease in store.claim("w", now=5.0, ttl_s=10.0)] == ["a"]
    waiter.join()




@pytest.mark.parametrize(("ttl_s", "rounds"), [(1000.0, 10_000), (2.0, 40)])
def test_processes_claiming_one_schema_never_share_a_run(postgres_dsn, open_store, schema,
                                                         ttl_s: float, rounds: int) -> None:
    """Three processes claiming in a loop from one schema: no run is handed out twice under
    one epoch, and every epoch of every run went to exactly one claimer (with long leases:
    each run once, under epoch 1; with short ones: taken over again and again)."""
    store = open_store()
    ids = [f"run-{n:03}" for n in range(60)]
    for n, run_id in enumerate(ids):
        store.append(run_id, [RunStarted(seq=1, at=float(n % 10), workflow="wf", seed=1,
                                         queue="default")], expected_last_seq=0)
    claim_race("from tether.store.postgres import PostgresStore\n"
               "store = PostgresStore(sys.argv[1], schema=sys.argv[2])",
               [postgres_dsn, schema], ids, ttl_s, rounds)
