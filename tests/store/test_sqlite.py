"""SQLiteStore specifics: schema, damaged files, durability counters and kill -9 survival."""

from __future__ import annotations

import importlib.util
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tether.errors import CorruptJournal, SchemaTooNew, UsageError
from tether.events import Event, RunStarted, StepRecorded
from tether.store.base import Durability
from tether.store.sqlite import SCHEMA_VERSION, SQLiteStore

HELPER = Path(__file__).with_name("sqlite_appender.py")


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "runs.db"


@pytest.fixture
def store(path: Path) -> Iterator[SQLiteStore]:
    store = SQLiteStore(path)
    yield store
    store.close()


def _journal(length: int) -> list[Event]:
    return [RunStarted(seq=1, at=1.0, workflow="wf", seed=1)] + [
        StepRecorded(seq=s, at=float(s), pos=s, call="step", name="s", result="x" * 200)
        for s in range(2, length + 1)
    ]


def _step(seq: int) -> list[Event]:
    return [StepRecorded(seq=seq, at=float(seq), pos=seq, call="step", name="s")]


def _problems(store: SQLiteStore) -> list[str]:
    """check()'s findings, counting a check that itself fails on a damaged file as one."""
    try:
        return store.check()
    except CorruptJournal as exc:
        return [str(exc)]


# -- schema ----------------------------------------------------------------------------------


def test_empty_file_is_migrated_to_the_current_schema(path: Path) -> None:
    """An empty file becomes a store: every migration applied, user_version set."""
    path.touch()
    SQLiteStore(path).close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"runs", "events"} <= tables
    reopened = SQLiteStore(path)
    assert reopened.list_runs() == []
    reopened.close()


def test_newer_user_version_is_refused(path: Path) -> None:
    """A file whose user_version is above what this tether knows raises SchemaTooNew."""
    SQLiteStore(path).close()
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(SchemaTooNew, match=f"version {SCHEMA_VERSION + 1} is newer"):
        SQLiteStore(path)


def test_foreign_sqlite_file_is_refused(path: Path) -> None:
    """A SQLite file holding someone else's tables is refused, naming them, and left as is."""
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE invoices (id INTEGER)")
    with pytest.raises(UsageError, match="invoices"):
        SQLiteStore(path)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (0,)


# -- damaged files ---------------------------------------------------------------------------


@pytest.mark.parametrize("header", [b"", b"SQLite format 3\x00"], ids=["random", "sqlite-header"])
def test_garbage_file_is_corrupt(path: Path, header: bytes) -> None:
    """A file of random bytes (with or without SQLite's magic header) is CorruptJournal."""
    path.write_bytes(header + random.Random(7).randbytes(8192 - len(header)))
    with pytest.raises(CorruptJournal, match="damaged or not a tether store"):
        SQLiteStore(path)


@pytest.mark.parametrize("keep", [0.02, 0.5, 0.98])
def test_truncated_file_is_corrupt_never_short(path: Path, store: SQLiteStore,
                                               keep: float) -> None:
    """A store file cut mid-page fails with CorruptJournal on open, read or check; it never
    reads back as a shorter journal."""
    store.append("r", _journal(300), expected_last_seq=0)
    store.close()
    size = path.stat().st_size
    assert not Path(f"{path}-wal").exists()  # everything is in the main file now
    with open(path, "r+b") as file:
        file.truncate(int(size * keep) // 4096 * 4096 + 1000)
    try:
        damaged = SQLiteStore(path)
    except CorruptJournal:
        return
    try:
        with pytest.raises(CorruptJournal):
            damaged.read("r")
        assert _problems(damaged) != []
    finally:
        damaged.close()


def test_tampered_body_is_corrupt_naming_run_and_seq(path: Path, store: SQLiteStore) -> None:
    """An event body changed behind the store's back fails its checksum on read and check."""
    store.append("victim", _journal(4), expected_last_seq=0)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE events SET body = replace(body, 'xxx', 'yyy') "
                   "WHERE run_id = 'victim' AND seq = 3")
    with pytest.raises(CorruptJournal, match=r"run 'victim' event seq 3: checksum mismatch"):
        store.read("victim")
    [problem] = store.check()
    assert "run 'victim' event seq 3" in problem


def test_deleted_event_is_a_missing_seq(path: Path, store: SQLiteStore) -> None:
    """A deleted event row is reported as the missing seq, on read and by check()."""
    store.append("victim", _journal(5), expected_last_seq=0)
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM events WHERE run_id = 'victim' AND seq = 3")
    with pytest.raises(CorruptJournal, match="missing event seq 3"):
        store.read("victim")
    [problem] = store.check()
    assert "missing event seq 3" in problem


# -- durability ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("durability", "synced_when_sync", "synced_otherwise"),
    [
        (Durability.OUTPUT_COMMIT, True, False),
        (Durability.EVERY_EVENT, True, True),
        (Durability.PROCESS, False, False),
    ],
)
def test_stats_count_synced_commits(path: Path, durability: Durability, synced_when_sync: bool,
                                    synced_otherwise: bool) -> None:
    """synced_commits counts sync appends under OUTPUT_COMMIT, every append under
    EVERY_EVENT and none under PROCESS."""
    store = SQLiteStore(path, durability=durability)
    store.append("r", _journal(1), expected_last_seq=0)
    store.append("r", _step(2), expected_last_seq=1, sync=True)
    store.append("r", _step(3), expected_last_seq=2)
    store.append("r", _step(4), expected_last_seq=3)
    store.close()
    assert store.stats.commits == 4
    assert store.stats.synced_commits == synced_when_sync + 3 * synced_otherwise


def _load_helper() -> ModuleType:
    # By path, so this works whether or not tests/store is a package.
    spec = importlib.util.spec_from_file_location("sqlite_appender", HELPER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("trial", range(5))
def test_kill_9_leaves_a_valid_prefix_holding_every_acknowledged_event(
    path: Path, trial: int
) -> None:
    """A process SIGKILLed while appending leaves a contiguous, checksum-valid journal
    1 … N that holds every seq it acknowledged, and check() finds nothing."""
    helper = _load_helper()
    delay_s = [0.0, 0.01, 0.03, 0.08, 0.2][trial] + random.Random(trial).uniform(0, 0.005)
    child = subprocess.Popen([sys.executable, str(HELPER), str(path)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    acked: list[int] = []
    first_ack = threading.Event()

    def collect() -> None:  # drained continuously, so the child never blocks on a full pipe
        assert child.stdout is not None
        for line in child.stdout:
            if line.endswith("\n"):  # a torn last line was not acknowledged
                acked.append(int(line))
                first_ack.set()

    reader = threading.Thread(target=collect)
    reader.start()
    try:
        started = first_ack.wait(timeout=60)
        time.sleep(delay_s)
    finally:
        child.kill()
        child.wait()
        reader.join()  # the reader owns stdout: it drains it to EOF
        assert child.stdout is not None and child.stderr is not None
        stderr = child.stderr.read()
        child.stdout.close()
        child.stderr.close()
    assert started and child.returncode == -signal.SIGKILL, f"the child failed: {stderr}"

    store = SQLiteStore(path)
    try:
        journal = store.read(helper.RUN_ID)
        assert journal == [helper.expected(seq) for seq in range(1, len(journal) + 1)]
        assert max(acked) <= len(journal), f"acknowledged {max(acked)}, kept {len(journal)}"
        info = store.get_run(helper.RUN_ID)
        assert info is not None and info.last_seq == len(journal)
        assert store.check() == []
    finally:
        store.close()
