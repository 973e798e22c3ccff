"""Workers SIGKILLed at random (and now and then stopped with SIGTERM) and restarted while they
work through hundreds of queued runs, on one real PostgreSQL database and on one SQLite file:
every run still ends completed (or failed and compensated, for the orders the provider
declines), escalated only where an unsafe write's outcome was unknown, with every write handler
invoked at most once per intent key except the keyed re-issues and reconciled retries its class
allows.

The killer's choices come from ``TETHER_CHAOS_SEED`` (default 14), printed with a summary of
what happened: ``TETHER_CHAOS_SEED=7 python -m pytest -q -s -m chaos tests/chaos``.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tether.store.base import Store
from tether.store.postgres import PostgresStore
from tether.store.sqlite import SQLiteStore

from .checks import describe, store_check_cli, verify
from .harness import Pool, Settings, Summary, chaos_seed, enqueue_all, run_chaos
from .worker_app import External

pytestmark = pytest.mark.chaos

_databases = itertools.count(1)
#: Four workers need about 4 × 7 connections, and killed ones linger until reaped.
_MAX_CONNECTIONS = 100


def _exercise(tmp_path: Path, store: Store, store_url: str, ext: External,
              settings: Settings) -> Summary:
    """Run the chaos with ``settings``, stop the workers gracefully, verify everything."""
    summary = Summary(seed=chaos_seed())
    pool = Pool(tmp_path, store_url, ext.url, settings)
    run_ids: list[str] = []

    def enqueue() -> list[str]:
        run_ids.extend(enqueue_all(pool, store, settings.runs))
        return run_ids

    try:
        run_chaos(pool, store, settings, summary, enqueue)
        stuck = [(i.run_id, i.status.value, i.owner, i.lease_expires_at)
                 for i in store.list_runs() if not i.status.finished]
        pool.wait_registered(store)
        codes = pool.stop()
        left = {w.name for w in store.workers()}  # type: ignore[attr-defined]
    finally:
        pool.cleanup()
    summary.outcomes, noise = pool.reports()
    assert not stuck, (f"{len(stuck)} run(s) unfinished {settings.settle_s:g} s after the "
                       f"killing stopped (run, status, owner, lease until): {stuck[:10]}; "
                       f"{summary.line()}; workers said: {describe(noise)}")
    problems = verify(store, ext, run_ids, summary)
    print(summary.line())
    assert not problems, describe(problems)
    assert not summary.bad_exits, "\n".join(summary.bad_exits)
    # Runs a worker could not execute, store errors, tracebacks: none are expected while the
    # store itself stays up.
    assert not noise, describe(noise)
    assert codes == [0] * settings.workers, f"graceful stop exit codes: {codes}"
    assert not left & set(pool.names), f"stopped workers still registered: {left}"
    checked = store_check_cli(store_url)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # Not vacuous: workers were killed while they held runs, which others then took over.
    assert summary.kills >= 5 and summary.orphaned, summary.line()
    return summary


@pytest.fixture(scope="module")
def chaos_postgres_dsn() -> Iterator[str]:
    """A PostgreSQL server of the chaos tests' own, with room for their connections: each
    worker process holds one for the journal, one per I/O thread, one listening for work and
    one for the external system, and a killed worker's are only reaped after it dies, more
    than the shared test server's 30 allow. Skipped when TETHER_SKIP_POSTGRES=1."""
    if os.environ.get("TETHER_SKIP_POSTGRES") == "1":
        pytest.skip("TETHER_SKIP_POSTGRES=1: PostgreSQL tests are turned off")
    from tether.testing import postgres

    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(postgres._SERVER_CONFIG, "max_connections", str(_MAX_CONNECTIONS))
        server = postgres.TemporaryPostgres()
        server.start()
    try:
        yield server.dsn
    finally:
        server.stop()


@pytest.fixture
def postgres_db(chaos_postgres_dsn: str) -> Iterator[str]:
    """A fresh database on the chaos tests' PostgreSQL server, dropped afterwards."""
    import psycopg

    name = f"chaos_{next(_databases)}"
    with psycopg.connect(chaos_postgres_dsn, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.execute(f"CREATE DATABASE {name}")
    yield chaos_postgres_dsn.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(chaos_postgres_dsn, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.mark.postgres
def test_four_workers_killed_at_random_on_postgres_finish_every_run_exactly_once(
        tmp_path: Path, postgres_db: str) -> None:
    """4 workers on one PostgreSQL database, 500 queued runs, a worker SIGKILLed and
    restarted every few hundred ms: every run ends as its order requires, with no unsafe
    re-execution and no duplicate effect."""
    settings = Settings(workers=4, runs=500, concurrency=8, lease_ttl_s=2.0,
                        kill_every_s=(0.2, 0.8), chaos_s=45.0, settle_s=120.0)
    ext = External(postgres_db)
    ext.create()
    store = PostgresStore(postgres_db)
    try:
        _exercise(tmp_path, store, postgres_db, ext, settings)
    finally:
        store.close()
        ext.close()


def test_three_workers_killed_at_random_on_one_sqlite_file_finish_every_run_exactly_once(
        tmp_path: Path) -> None:
    """3 worker processes on one SQLite file, 120 queued runs, the same killer and checks."""
    settings = Settings(workers=3, runs=120, concurrency=4, lease_ttl_s=2.0,
                        kill_every_s=(0.2, 0.8), chaos_s=25.0, settle_s=60.0)
    ext = External(str(tmp_path / "external.db"))
    ext.create()
    store_path = tmp_path / "runs.db"
    store = SQLiteStore(store_path)
    try:
        _exercise(tmp_path, store, str(store_path), ext, settings)
    finally:
        store.close()
        ext.close()
