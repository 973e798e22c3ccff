"""Leases in stores written before ownership existed, and how `tether runs list` shows them."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tether import RunContext, Runtime, SQLiteStore, VirtualClock, workflow
from tether.cli import app
from tether.events import Event, RunStarted, StepRecorded, checksum, encode
from tether.store.base import Lease
from tether.store.sqlite import MIGRATIONS

V1_EVENTS: list[Event] = [RunStarted(seq=1, at=5.0, workflow="old", seed=3),
             StepRecorded(seq=2, at=6.0, pos=0, call="step", name="one", result=1)]


async def old(ctx: RunContext) -> int:
    first = await ctx.step("one", lambda: 0)
    return int(first) + int(await ctx.step("two", lambda: 41))


def test_a_schema_1_sqlite_file_is_migrated_and_its_runs_can_be_leased(tmp_path: Path) -> None:
    """A file written before leases (user_version 1) opens, gains owner/epoch/lease columns,
    and its unfinished run is resumed under a lease and released when it completes."""
    path = tmp_path / "v1.db"
    db = sqlite3.connect(path, isolation_level=None)
    for statement in MIGRATIONS[0]:
        db.execute(statement)
    db.execute("INSERT INTO runs VALUES ('r', 'old', 'running', 2, 5.0, 5.0)")
    for event in V1_EVENTS:
        body = encode(event)
        db.execute("INSERT INTO events VALUES (?, ?, ?, ?, ?)",
                   ("r", event.seq, event.kind, body, checksum(body)))
    db.execute("PRAGMA user_version=1")
    db.close()
    store = SQLiteStore(path)
    info = store.get_run("r")
    assert info is not None and (info.owner, info.epoch, info.lease_expires_at) == (None, 0, None)
    runtime = Runtime(store, clock=VirtualClock(), workflows=[workflow(old, name="old")],
                      owner="w1")
    done = asyncio.run(runtime.resume("r"))
    assert done.result == 42
    info = store.get_run("r")
    assert info is not None and (info.owner, info.epoch) == (None, 1)
    assert store.check() == []
    store.close()
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)


@pytest.mark.postgres
def test_a_schema_1_postgres_store_is_migrated(postgres_dsn: str) -> None:
    """A PostgreSQL schema at version 1 gains the lease columns when opened; old runs are
    unowned at epoch 0 and can be acquired."""
    import psycopg

    from tether.store.postgres import MIGRATIONS as PG_MIGRATIONS
    from tether.store.postgres import PostgresStore

    schema = f"v1_{int(time.time() * 1000) % 10**9}"
    with psycopg.connect(postgres_dsn, autocommit=True) as db:
        db.execute(f'CREATE SCHEMA "{schema}"')
        db.execute(f'CREATE TABLE "{schema}".meta (name TEXT PRIMARY KEY, value BIGINT NOT NULL)')
        db.execute(f"INSERT INTO \"{schema}\".meta VALUES ('schema_version', 1)")
        for statement in PG_MIGRATIONS[0]:
            db.execute(statement.replace("{schema}", f'"{schema}"'))
        db.execute(f"INSERT INTO \"{schema}\".runs VALUES ('r', 'old', 'running', 2, 5.0, 5.0)")
        for event in V1_EVENTS:
            body = encode(event)
            db.execute(f'INSERT INTO "{schema}".events VALUES (%s, %s, %s, %s, %s)',
                       ("r", event.seq, event.kind, body, checksum(body)))
    store = PostgresStore(postgres_dsn, schema=schema)
    try:
        info = store.get_run("r")
        assert info is not None and (info.owner, info.epoch) == (None, 0)
        assert store.acquire("r", "w1", now=10.0, ttl_s=5) == Lease("r", "w1", 1, 15.0)
        assert store.read("r") == V1_EVENTS and store.check() == []
    finally:
        store.close()


def test_runs_list_shows_owner_and_lease(tmp_path: Path) -> None:
    """The table names each run's owner with the time its lease has left (or since it
    expired); --json carries owner, epoch and lease_expires_at."""
    path = tmp_path / "runs.db"
    store = SQLiteStore(path)
    now = time.time()
    for run_id, lease in (("held", Lease("held", "host-a:41", 1, now + 600)),
                          ("stale", Lease("stale", "host-b:7", 1, now - 90)),
                          ("free", None)):
        store.append(run_id, [RunStarted(seq=1, at=now, workflow="wf", seed=1)],
                     expected_last_seq=0, lease=lease)
    store.close()
    table = CliRunner().invoke(app, ["runs", "list", "--store", str(path)])
    assert table.exit_code == 0, table.output
    rows = {line.split()[1]: line for line in table.output.splitlines() if "│ " in line}
    assert "host-a:41 (" in rows["held"] and "m left)" in rows["held"]
    assert "host-b:7 (expired 90s ago)" in rows["stale"] or \
        "host-b:7 (expired 91s ago)" in rows["stale"]
    assert rows["free"].rstrip(" │").endswith("-")
    listed = json.loads(CliRunner().invoke(app, ["runs", "list", "--store", str(path),
                                                 "--json"]).output)
    by_id = {r["run_id"]: r for r in listed}
    assert (by_id["held"]["owner"], by_id["held"]["epoch"]) == ("host-a:41", 1)
    assert by_id["free"]["owner"] is None and by_id["free"]["lease_expires_at"] is None
