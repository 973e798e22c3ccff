"""PostgresStore specifics: schema, damage detection, durability, races, connections."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator

import psycopg
import pytest

from tether.errors import ConcurrencyConflict, CorruptJournal, SchemaTooNew, StoreError, UsageError
from tether.events import Event, RunStarted, StepRecorded
from tether.store import postgres as postgres_module
from tether.store.base import Durability
from tether.store.postgres import SCHEMA_VERSION, PostgresStore
from tether.testing import postgres as temporary_postgres

pytestmark = pytest.mark.postgres

_schemas = itertools.count(1)


@pytest.fixture
def schema() -> str:
    return f"p_{next(_schemas)}"


@pytest.fixture
def raw(postgres_dsn: str) -> Iterator[psycopg.Connection]:
    """A plain connection for looking at and damaging the tables behind the store's back."""
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        yield conn


@pytest.fixture
def open_store(postgres_dsn: str, schema: str) -> Iterator[Callable[..., PostgresStore]]:
    """Opens PostgresStores on this test's schema; all closed afterwards."""
    opened: list[PostgresStore] = []

    def make(**kwargs: object) -> PostgresStore:
        store = PostgresStore(postgres_dsn, **{"schema": schema, **kwargs})  # type: ignore[arg-type]
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


def _journal(length: int) -> list[Event]:
    return [RunStarted(seq=1, at=1.0, workflow="wf", seed=1)] + [
        StepRecorded(seq=s, at=float(s), pos=s, call="step", name="s", result=s)
        for s in range(2, length + 1)
    ]


def _step(seq: int) -> list[Event]:
    return [StepRecorded(seq=seq, at=float(seq), pos=seq, call="step", name="s", result=seq)]


# -- schema ----------------------------------------------------------------------------------


def test_fresh_schema_is_migrated_and_reopening_keeps_data(open_store, raw, schema) -> None:
    """A new schema gets every migration and its version; reopening changes nothing."""
    open_store().append("r", _journal(3), expected_last_seq=0)
    version = raw.execute(f"SELECT value FROM {schema}.meta WHERE name='schema_version'")
    assert version.fetchone() == (SCHEMA_VERSION,)
    assert open_store().read("r") == _journal(3)


def test_empty_existing_schema_is_adopted(open_store, raw, schema) -> None:
    """A schema that exists but holds no tables is fine to migrate into."""
    raw.execute(f"CREATE SCHEMA {schema}")
    assert open_store().list_runs() == []


def test_newer_schema_version_is_refused(open_store, raw, schema) -> None:
    """A meta version above what this tether knows raises SchemaTooNew naming both versions."""
    open_store()
    raw.execute(f"UPDATE {schema}.meta SET value = {SCHEMA_VERSION + 1}")
    with pytest.raises(SchemaTooNew, match=f"version {SCHEMA_VERSION + 1} is newer"):
        open_store()


def test_foreign_schema_is_refused(open_store, raw, schema) -> None:
    """A schema holding tables tether did not create is refused, naming them."""
    raw.execute(f"CREATE SCHEMA {schema}; CREATE TABLE {schema}.invoices (id int)")
    with pytest.raises(UsageError, match="invoices"):
        open_store()


def test_concurrent_first_opens_migrate_once(open_store) -> None:
    """Several workers opening one fresh schema at once all succeed (migrations serialize)."""
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            open_store()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_bad_schema_name_is_a_usage_error(postgres_dsn: str) -> None:
    """Schema names must be plain identifiers; anything else is refused before connecting."""
    with pytest.raises(UsageError, match="identifier"):
        PostgresStore(postgres_dsn, schema="x; DROP TABLE y")


def test_missing_psycopg_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without psycopg, the error names the extra to install."""
    monkeypatch.setattr(postgres_module, "_HAVE_PSYCOPG", False)
    with pytest.raises(UsageError, match=r"pip install 'tether\[postgres\]'"):
        PostgresStore("postgresql://nowhere/db")


# -- damage ------------------------------------------------------------------------------------


def test_tampered_body_is_corrupt_naming_run_and_seq(open_store, raw, schema) -> None:
    """An event body changed behind the store's back fails its checksum on read and check."""
    store = open_store()
    store.append("victim", _journal(4), expected_last_seq=0)
    raw.execute(f"UPDATE {schema}.events SET body = replace(body, '\"result\":3', "
                f"'\"result\":4') WHERE run_id = 'victim' AND seq = 3")
    with pytest.raises(CorruptJournal, match=r"run 'victim' event seq 3: checksum mismatch"):
        store.read("victim")
    assert store.read("victim", after_seq=3) == _journal(4)[3:]
    [problem] = store.check()
    assert "seq 3" in problem


def test_deleted_event_is_a_missing_seq(open_store, raw, schema) -> None:
    """A deleted middle event is reported as the missing seq, on read and by check()."""
    store = open_store()
    store.append("victim", _journal(5), expected_last_seq=0)
    raw.execute(f"DELETE FROM {schema}.events WHERE run_id = 'victim' AND seq = 3")
    with pytest.raises(CorruptJournal, match="missing event seq 3"):
        store.read("victim")
    assert any("missing event seq 3" in p for p in store.check())


def test_deleted_tail_is_lost_events(open_store, raw, schema) -> None:
    """A deleted last event is noticed: the index still says how far the journal reached."""
    store = open_store()
    store.append("victim", _journal(5), expected_last_seq=0)
    raw.execute(f"DELETE FROM {schema}.events WHERE run_id = 'victim' AND seq = 5")
    with pytest.raises(CorruptJournal, match="events were lost"):
        store.read("victim", after_seq=4)


def test_check_reports_orphans_and_overlong_journals(open_store, raw, schema) -> None:
    """check() flags events without an index row and events beyond the index's last seq."""
    store = open_store()
    store.append("orphan", _journal(2), expected_last_seq=0)
    store.append("long", _journal(3), expected_last_seq=0)
    store.append("sound", _journal(3), expected_last_seq=0)
    raw.execute(f"DELETE FROM {schema}.runs WHERE run_id = 'orphan'")
    raw.execute(f"UPDATE {schema}.runs SET last_seq = 2 WHERE run_id = 'long'")
    problems = store.check()
    assert len(problems) == 2
    assert "run 'orphan' has events but no index row" in problems[0]
    assert "run 'long' index says last seq 2 but events go on to 3" in problems[1]


def test_index_behind_events_is_corrupt_not_a_conflict(open_store, raw, schema) -> None:
    """When the index lags the events, an append hitting a stored seq is CorruptJournal."""
    store = open_store()
    store.append("r", _journal(3), expected_last_seq=0)
    raw.execute(f"UPDATE {schema}.runs SET last_seq = 2 WHERE run_id = 'r'")
    with pytest.raises(CorruptJournal, match="disagree"):
        store.append("r", _step(3), expected_last_seq=2)


# -- durability --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("durability", "synced_when_sync", "synced_otherwise"),
    [
        (Durability.OUTPUT_COMMIT, True, False),
        (Durability.EVERY_EVENT, True, True),
        (Durability.PROCESS, False, False),
    ],
)
def test_stats_count_synced_commits(open_store, durability, synced_when_sync,
                                    synced_otherwise) -> None:
    """synced_commits counts sync appends under OUTPUT_COMMIT, every append under
    EVERY_EVENT and none under PROCESS."""
    store = open_store(durability=durability)
    store.append("r", _journal(1), expected_last_seq=0)
    store.append("r", _step(2), expected_last_seq=1, sync=True)
    store.append("r", _step(3), expected_last_seq=2)
    assert store.stats.commits == 3
    assert store.stats.synced_commits == synced_when_sync + 2 * synced_otherwise


def _wal_syncs(store: PostgresStore) -> int:
    # Statistics are flushed by the backend that made them; ask the store's own connection.
    store._db.execute("SELECT pg_stat_force_next_flush()")
    row = store._db.execute("SELECT wal_sync FROM pg_stat_wal").fetchone()
    assert row is not None
    return int(row[0])


def test_sync_appends_flush_the_wal_and_lazy_ones_do_not(open_store) -> None:
    """Under OUTPUT_COMMIT every sync append fsyncs the WAL; lazy appends leave it to the
    WAL writer (asynchronous commit)."""
    store = open_store()
    store.append("r", _journal(1), expected_last_seq=0)
    before = _wal_syncs(store)
    for seq in range(2, 22):
        store.append("r", _step(seq), expected_last_seq=seq - 1, sync=True)
    synced = _wal_syncs(store) - before
    for seq in range(22, 42):
        store.append("r", _step(seq), expected_last_seq=seq - 1)
    lazy = _wal_syncs(store) - before - synced
    assert synced >= 20
    assert lazy < 20


# -- races -------------------------------------------------------------------------------------


def _race(appends: list[Callable[[], None]], raw: psycopg.Connection,
          release: Callable[[], None]) -> list[str]:
    """Start the appends while `raw` holds a lock they need, wait until all are blocked on
    it, release, and return each append's outcome ("ok" or "conflict")."""
    outcomes: list[str] = []

    def attempt(append: Callable[[], None]) -> None:
        try:
            append()
            outcomes.append("ok")
        except ConcurrencyConflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=attempt, args=(a,)) for a in appends]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    blocked = 0
    while blocked < len(appends) and time.monotonic() < deadline:
        time.sleep(0.01)
        row = raw.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                          ).fetchone()
        blocked = 0 if row is None else row[0]
    release()
    assert blocked == len(appends), f"only {blocked} of {len(appends)} appends got to the lock"
    for thread in threads:
        thread.join()
    return sorted(outcomes)


def test_two_writers_blocked_on_one_run_exactly_one_wins(open_store, raw, schema) -> None:
    """Two handles appending at the same expected seq while the run row is locked: once it
    is released, exactly one append succeeds and the other is a conflict."""
    first, second = open_store(), open_store()
    first.append("r", _journal(2), expected_last_seq=0)
    raw.execute("BEGIN")
    raw.execute(f"SELECT 1 FROM {schema}.runs WHERE run_id = 'r' FOR UPDATE")
    appends = [lambda s=s: s.append("r", _step(3), expected_last_seq=2) for s in (first, second)]
    assert _race(appends, raw, lambda: raw.execute("COMMIT")) == ["conflict", "ok"]
    assert first.read("r") == [*_journal(2), *_step(3)]


def test_two_writers_creating_one_run_exactly_one_wins(open_store, raw, schema) -> None:
    """Two handles creating the same run while an uncommitted insert holds its key: after
    that insert rolls back, exactly one creation succeeds."""
    first, second = open_store(), open_store()
    raw.execute("BEGIN")
    raw.execute(f"INSERT INTO {schema}.runs VALUES ('r', 'other', 'running', 1, 0, 0)")
    appends = [lambda s=s: s.append("r", _journal(1), expected_last_seq=0)
               for s in (first, second)]
    assert _race(appends, raw, lambda: raw.execute("ROLLBACK")) == ["conflict", "ok"]
    assert first.read("r") == _journal(1)


# -- connections -------------------------------------------------------------------------------


def test_lost_connection_is_a_store_error_then_reconnects(open_store, raw) -> None:
    """A killed server connection fails the next call with StoreError; the one after works."""
    store = open_store()
    store.append("r", _journal(1), expected_last_seq=0)
    pid = store._db.info.backend_pid
    raw.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with pytest.raises(StoreError, match="reconnects"):
        store.read("r")
    assert store.read("r") == _journal(1)


def test_unreachable_server_is_a_store_error_without_the_password() -> None:
    """Connecting to a closed port raises StoreError naming the host, never the password."""
    with pytest.raises(StoreError) as caught:
        PostgresStore("postgresql://u:s3cret@127.0.0.1:1/db?connect_timeout=2")
    assert "127.0.0.1:1/db" in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_closed_store_refuses_calls(open_store) -> None:
    """Calls on a closed store are a UsageError, not a silent reconnect."""
    store = open_store()
    store.close()
    with pytest.raises(UsageError, match="closed"):
        store.list_runs()


# -- the throwaway server ----------------------------------------------------------------------


def test_missing_server_binaries_say_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """TemporaryPostgres without initdb/pg_ctl fails naming the package to install."""
    monkeypatch.setattr(temporary_postgres, "find_postgres_bin", lambda: None)
    assert not temporary_postgres.postgres_available()
    with pytest.raises(RuntimeError, match="apt-get install postgresql"), \
            temporary_postgres.TemporaryPostgres():
        pass
