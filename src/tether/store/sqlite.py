"""The embedded default store: one SQLite file in WAL mode.

Durability (see :class:`~tether.store.base.Durability`): an acknowledged append survives
``kill -9`` of the process at any instant. A leased run's lazy appends (one event, not
``sync``, not changing the run's status) are lines written to the run's segment file beside
the database (``<file>-seg/``, see :mod:`tether.store._segments`): one ``write()`` of ~120
bytes, which the kernel keeps once it returned, instead of a transaction writing whole pages to
the WAL. Every other append is its own transaction, which takes the segment's lines in first;
SQLite's WAL never exposes a torn transaction. Under ``OUTPUT_COMMIT`` ordinary transactions
commit with ``synchronous=NORMAL`` (no fsync) and ``sync=True`` appends with
``synchronous=FULL``, which fsyncs the WAL and with it every frame written before (the segment's
lines included): the durable journal is always a prefix. ``EVERY_EVENT`` uses no segments.

The schema version lives in ``PRAGMA user_version``; :data:`MIGRATIONS` upgrades older files and
a file from a newer tether is refused with :class:`~tether.errors.SchemaTooNew`.

Leases (see :mod:`tether.store.base`) live in the ``runs`` row (``owner``, ``epoch``,
``lease_expires_at``; schema version 2). Each lease operation is one ``BEGIN IMMEDIATE``
transaction, so it is serialized with every append of every process on the file; a fenced
append checks the row's owner and epoch inside its own statement or transaction.

The work queue (schema version 3): the row's ``queue`` and ``wake_at``, indexed by
``(status, wake_at)``, and a ``workers`` table. A claim is one ``BEGIN IMMEDIATE`` transaction
(select the due runs, lease them), so claimers in any number of processes never share a run.
SQLite has no notifications: :meth:`SQLiteStore.wait_for_work` returns False and workers poll.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

from tether.errors import CorruptJournal, SchemaTooNew, StoreError, TetherError, UsageError
from tether.events import Event, RunFinished, RunStarted, RunStatus, encode_with_checksum
from tether.store._segments import SEGMENTS_SUPPORTED, Segments, parse, read_all
from tether.store.base import (
    DEFAULT_QUEUE,
    Durability,
    Lease,
    RunInfo,
    WorkerInfo,
    advance,
    check_batch,
    check_claim_args,
    check_lease_args,
    conflict,
    decode_rows,
    lease_lost,
    only_resolutions,
    queue_of,
    run_owned,
    status_filter,
    touches_index,
    wake_after,
)

__all__ = ["MIGRATIONS", "SQLiteStats", "SQLiteStore"]

#: Schema migrations, applied in order; index + 1 is the schema version each one produces.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
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
    ),
    (
        # Ownership: the lease of the worker executing the run (NULL owner: nobody).
        "ALTER TABLE runs ADD COLUMN owner TEXT",
        "ALTER TABLE runs ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE runs ADD COLUMN lease_expires_at REAL",
    ),
    (
        # The work queue: which queue a run is on and when a worker should next look at it;
        # existing runs are on the default queue with nothing scheduled.
        f"ALTER TABLE runs ADD COLUMN queue TEXT NOT NULL DEFAULT '{DEFAULT_QUEUE}'",
        "ALTER TABLE runs ADD COLUMN wake_at REAL",
        "CREATE INDEX runs_by_wake ON runs (status, wake_at)",
        """CREATE TABLE workers (
            name TEXT PRIMARY KEY,
            host TEXT NOT NULL,
            pid INTEGER NOT NULL,
            queues TEXT NOT NULL,
            concurrency INTEGER NOT NULL,
            started_at REAL NOT NULL,
            seen_at REAL NOT NULL,
            stopping INTEGER NOT NULL DEFAULT 0
        )""",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

_INSERT_AFTER = (
    "INSERT INTO events SELECT ?, ?, ?, ?, ? WHERE EXISTS "
    "(SELECT 1 FROM events WHERE run_id=? AND seq=?)"
)
_RUN_COLUMNS = (
    "r.run_id, r.workflow, r.status, "
    "(SELECT max(seq) FROM events e WHERE e.run_id = r.run_id), r.created_at, r.updated_at, "
    "r.owner, r.epoch, r.lease_expires_at, r.queue, r.wake_at"
)
_CREATE_RUN = (
    "INSERT INTO runs (run_id, workflow, status, last_seq, created_at, updated_at, owner, "
    "epoch, lease_expires_at, queue) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# The hot path's fenced insert: one statement, so the owner check and the insert are atomic.
_INSERT_FENCED = (
    "INSERT INTO events SELECT ?, ?, ?, ?, ? WHERE EXISTS "
    "(SELECT 1 FROM runs WHERE run_id=? AND owner=? AND epoch=?)"
)
_INSERT_UNOWNED = (
    "INSERT INTO events SELECT ?, ?, ?, ?, ? WHERE EXISTS "
    "(SELECT 1 FROM runs WHERE run_id=? AND owner IS NULL)"
)
_ACQUIRE = (
    "UPDATE runs SET owner=?, epoch=epoch+1, lease_expires_at=? WHERE run_id=? AND "
    "(owner IS NULL OR owner=? OR lease_expires_at IS NULL OR lease_expires_at<=?) "
    "RETURNING epoch"
)
# The work queue's rules (tether.store.base.claimable, claim_order, wake_time) in SQL.
_UNHELD = "(owner IS NULL OR lease_expires_at IS NULL OR lease_expires_at <= :now)"
_DUE = (
    f"{_UNHELD} AND (status = 'running' OR "
    "(status IN ('queued', 'waiting') AND wake_at <= :now))"
)
_DUE_ORDER = (
    "status = 'queued', "
    "CASE WHEN status = 'running' THEN coalesce(wake_at, lease_expires_at, updated_at) "
    "ELSE wake_at END, created_at, run_id"
)
_WAKE_TIME = (
    "min(CASE WHEN status IN ('queued', 'waiting') THEN "
    "CASE WHEN owner IS NOT NULL AND lease_expires_at IS NOT NULL "
    "THEN max(wake_at, lease_expires_at) ELSE wake_at END "
    "ELSE CASE WHEN owner IS NOT NULL AND lease_expires_at IS NOT NULL "
    "THEN lease_expires_at ELSE updated_at END END)"
)
_BEAT = (
    "INSERT INTO workers (name, host, pid, queues, concurrency, started_at, seen_at, stopping) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET host=excluded.host, "
    "pid=excluded.pid, queues=excluded.queues, concurrency=excluded.concurrency, "
    "started_at=excluded.started_at, seen_at=excluded.seen_at, stopping=excluded.stopping"
)


@dataclass
class SQLiteStats:
    """Commit counters, so tests and benchmarks can see what was flushed."""

    commits: int = 0
    synced_commits: int = 0
    #: Lease transactions (acquire, renew, release), apart from the appends' commits.
    lease_commits: int = 0


@contextmanager
def _openers_take_turns(path: str) -> Iterator[None]:
    """Processes opening stores in one folder set them up one at a time.

    Switching a new file to WAL needs an exclusive lock, and two connections that both read the
    file and both ask for it deadlock in SQLite's eyes: one is told "database is locked" at once,
    whatever the busy timeout. An exclusive ``flock`` on the folder (not the file: closing any
    descriptor of the database would drop SQLite's own POSIX locks on it) makes the openers
    queue in the kernel instead; it is held only while the connection is set up."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - no flock on this platform: SQLite's locks alone
        yield
        return
    try:
        folder = os.open(os.path.dirname(os.path.abspath(path)) or ".", os.O_RDONLY)
    except OSError:  # a folder we cannot open: let sqlite3 report what is wrong
        yield
        return
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        yield
    finally:
        os.close(folder)


class SQLiteStore:
    """Journals in one SQLite file.

    >>> import tempfile, os
    >>> store = SQLiteStore(os.path.join(tempfile.mkdtemp(), "runs.db"))
    >>> store.list_runs()
    []
    >>> store.close()

    One store object may be shared by threads (a lock serializes its connection); several
    processes may open the same file (SQLite's write lock, waited on up to ``busy_timeout_s``).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        durability: Durability | str = Durability.OUTPUT_COMMIT,
        busy_timeout_s: float = 10.0,
    ) -> None:
        self.path = os.fspath(path)
        self.durability = Durability(durability)
        self.stats = SQLiteStats()
        self._lock = threading.Lock()
        # Last seq this object itself appended, per run: lets the hot path skip the check that
        # the previous event exists (see append).
        self._written: dict[str, int] = {}
        # A segment's rows taken in by the lease change in progress (see _taking_segment).
        self._pending: list[tuple[str, int, str, str, int]] = []
        self._own_pending = False  # whether they are this object's own (see _merge)
        # Where leased lazy appends go (see tether.store._segments); None: all in SQLite.
        self._segments = (Segments(self.path) if SEGMENTS_SUPPORTED
                          and self.durability is not Durability.EVERY_EVENT else None)
        if os.path.isdir(self.path):
            raise UsageError(f"{self.path} is a directory; SQLiteStore needs a file path")
        try:
            with _openers_take_turns(self.path):
                self._setup(busy_timeout_s)
        except sqlite3.DatabaseError as exc:
            raise self._translate(exc) from exc

    def _setup(self, busy_timeout_s: float) -> None:
        """Connect, set the pragmas and bring the schema to this version."""
        self._db = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False,
            timeout=busy_timeout_s,
        )
        # Small pages for a new file: an append writes whole pages to the WAL, and events
        # are a few hundred bytes (measured 80 -> 65 us per no-op step). A no-op for an
        # existing file, which keeps the page size it was created with.
        self._db.execute("PRAGMA page_size=1024")
        self._db.execute("PRAGMA journal_mode=WAL").fetchone()
        self._base_sync = {
            Durability.OUTPUT_COMMIT: "NORMAL",
            Durability.EVERY_EVENT: "FULL",
            Durability.PROCESS: "OFF",
        }[self.durability]
        self._db.execute(f"PRAGMA synchronous={self._base_sync}")
        # Checkpoint the WAL every ~40 MB rather than every ~4 MB: each checkpoint costs
        # fsyncs, and on the lazy path they dominated the cost of a commit (measured 46 µs
        # vs 26 µs per single-event commit on a 2-core VM). Cap the file kept afterwards.
        self._db.execute("PRAGMA wal_autocheckpoint=10000")
        self._db.execute(f"PRAGMA journal_size_limit={64 * 1024 * 1024}")
        self._migrate()

    # -- schema ---------------------------------------------------------------------------

    def _migrate(self) -> None:
        if self._version() == SCHEMA_VERSION:
            return
        # Under the write lock, and the version read again there: another process opening
        # the same new (or old) file at this moment may have created or migrated it since.
        self._db.execute("BEGIN IMMEDIATE")
        try:
            version = self._version()
            if version == 0:
                foreign = self._db.execute(
                    "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE "
                    "'sqlite_%'").fetchall()
                if foreign:
                    names = ", ".join(sorted(r[0] for r in foreign))
                    raise UsageError(
                        f"{self.path} already holds tables ({names}) that tether did not "
                        "create; give the store a file of its own"
                    )
            for target in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[target]:
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version={target + 1}")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def _version(self) -> int:
        version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise SchemaTooNew(
                f"{self.path}: store schema version {version} is newer than the version "
                f"{SCHEMA_VERSION} this tether knows; upgrade tether to open it"
            )
        return version

    # -- the contract ---------------------------------------------------------------------

    def append(
        self,
        run_id: str,
        events: Sequence[Event],
        *,
        expected_last_seq: int,
        sync: bool = False,
        lease: Lease | None = None,
    ) -> None:
        check_batch(run_id, events, expected_last_seq)
        rows: list[tuple[str, int, str, str, int]] = []
        for event in events:
            body, crc = encode_with_checksum(event)
            rows.append((run_id, event.seq, event.kind, body, crc))
        changes = [e for e in events if touches_index(e)]
        with self._lock:
            try:
                self._append_locked(run_id, events, rows, changes, expected_last_seq, sync,
                                    lease)
            except sqlite3.DatabaseError as exc:
                raise self._translate(exc) from exc

    def _append_locked(
        self,
        run_id: str,
        events: Sequence[Event],
        rows: list[tuple[str, int, str, str, int]],
        changes: list[Event],
        expected_last_seq: int,
        sync: bool,
        lease: Lease | None,
    ) -> None:
        db = self._db
        segments = self._segments
        lazy = (not changes and not sync and len(rows) == 1
                and self._written.get(run_id) == expected_last_seq)
        if segments is not None and (lease is not None or not lazy):
            if (lazy and lease is not None
                    and segments.append(run_id, lease.owner, lease.epoch, rows[0])):
                # The leased hot path: one line in the run's segment, no SQLite transaction.
                self._written[run_id] = expected_last_seq + 1
                self.stats.commits += 1
                return
            # Otherwise through SQLite, taking the segment's lines in first.
            self._append_merging(segments, run_id, events, rows, changes, expected_last_seq,
                                 sync, lease)
            return
        if lazy:
            # The hot path of every lazy step: one INSERT, its own transaction. This store
            # wrote seq `expected_last_seq` itself, so the run cannot be shorter than that; if
            # another writer went further, the primary key refuses the taken seq. The insert
            # only happens while the run's owner is the lease's (or nobody, unfenced).
            params: tuple[object, ...]
            if lease is None and only_resolutions(events):
                statement, params = "INSERT INTO events VALUES (?, ?, ?, ?, ?)", rows[0]
            elif lease is None:
                statement, params = _INSERT_UNOWNED, (*rows[0], run_id)
            else:
                statement, params = _INSERT_FENCED, (*rows[0], run_id, lease.owner, lease.epoch)
            try:
                inserted = db.execute(statement, params).rowcount == 1
            except sqlite3.IntegrityError:
                inserted = False
            if not inserted:
                raise self._refusal(run_id, events, expected_last_seq, lease)
            self._written[run_id] = expected_last_seq + 1
            self.stats.commits += 1
            if self.durability is Durability.EVERY_EVENT:
                self.stats.synced_commits += 1
            return
        self._append_synced(run_id, events, rows, changes, expected_last_seq, sync, lease, [])

    def _append_merging(
        self,
        segments: Segments,
        run_id: str,
        events: Sequence[Event],
        rows: list[tuple[str, int, str, str, int]],
        changes: list[Event],
        expected_last_seq: int,
        sync: bool,
        lease: Lease | None,
    ) -> None:
        """An append through SQLite: the run's segment's lines are inserted in the same
        transaction, then a fresh segment this object writes next under ``lease`` takes its
        place (none unleased, or once the run finished)."""
        with segments.exclusive(run_id) as fd:
            assert fd is not None
            lines, own = segments.pending(run_id, fd)
            pending = [(run_id, seq, kind, body, crc) for seq, kind, body, crc in lines]
            self._own_pending = own
            try:
                self._append_synced(run_id, events, rows, changes, expected_last_seq, sync,
                                    lease, pending)
            finally:
                self._own_pending = False
            if lease is None or isinstance(events[-1], RunFinished):
                segments.replace(run_id, fd, None, 0)
            else:
                segments.replace(run_id, fd, lease.owner, lease.epoch)

    def _append_synced(
        self,
        run_id: str,
        events: Sequence[Event],
        rows: list[tuple[str, int, str, str, int]],
        changes: list[Event],
        expected_last_seq: int,
        sync: bool,
        lease: Lease | None,
        pending: list[tuple[str, int, str, str, int]],
    ) -> None:
        db = self._db
        flush = sync and self.durability is Durability.OUTPUT_COMMIT
        if flush:
            db.execute("PRAGMA synchronous=FULL")
        try:
            self._append_transaction(run_id, events, rows, changes, expected_last_seq, lease,
                                     pending)
        finally:
            if flush:
                db.execute(f"PRAGMA synchronous={self._base_sync}")
        self._remember(run_id, events[-1].seq)
        self.stats.commits += 1
        if flush or self.durability is Durability.EVERY_EVENT:
            self.stats.synced_commits += 1

    def _remember(self, run_id: str, seq: int) -> None:
        if len(self._written) >= 4096:  # bounded: forgetting only costs the checked path
            self._written.clear()
        self._written[run_id] = seq

    def _append_transaction(
        self,
        run_id: str,
        events: Sequence[Event],
        rows: list[tuple[str, int, str, str, int]],
        changes: list[Event],
        expected_last_seq: int,
        lease: Lease | None,
        pending: list[tuple[str, int, str, str, int]],
    ) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            self._merge(run_id, pending)
            try:
                if expected_last_seq == 0:
                    first = events[0]
                    assert isinstance(first, RunStarted)
                    db.execute(_CREATE_RUN, (
                        run_id, first.workflow, RunStatus.RUNNING.value, 0, first.at, first.at,
                        *((None, 0, None) if lease is None
                          else (lease.owner, lease.epoch, lease.expires_at)),
                        queue_of(first)))
                    db.execute("INSERT INTO events VALUES (?, ?, ?, ?, ?)", rows[0])
                elif (refused := self._fence(run_id, events, lease)) is not None:
                    raise refused
                elif self._written.get(run_id) == expected_last_seq:
                    db.execute("INSERT INTO events VALUES (?, ?, ?, ?, ?)", rows[0])
                elif db.execute(_INSERT_AFTER, (*rows[0], run_id, expected_last_seq)).rowcount != 1:
                    # Not known to this object: insert only after the expected previous event
                    # (slower: SQLite materializes a SELECT over the table it inserts into).
                    raise conflict(run_id, expected_last_seq, self._last_seq(run_id))
            except sqlite3.IntegrityError:
                raise conflict(run_id, expected_last_seq, self._last_seq(run_id)) from None
            if len(rows) > 1:
                db.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?)", rows[1:])
            # The index row remembers how far the journal reached at each status change and
            # flush, so a journal that later ends short of it is reported as lost events.
            if changes:
                self._update_index(run_id, events, expected_last_seq == 0)
            else:
                db.execute("UPDATE runs SET last_seq=? WHERE run_id=?", (events[-1].seq, run_id))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _merge(self, run_id: str, pending: Sequence[tuple[str, int, str, str, int]]) -> None:
        """Insert a segment's rows that SQLite does not hold yet (inside a transaction).

        A segment of a run the file has no row for is a stale one (the database file was
        replaced, its ``-seg`` folder left): ignored, and replaced once the run is created.
        This object's own lines since its last merge need neither check."""
        if pending and self._own_pending:
            self._db.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?)", pending)
        elif pending and self._db.execute("SELECT 1 FROM runs WHERE run_id=?",
                                        (run_id,)).fetchone() is not None:
            top = self._last_sql_seq(run_id)
            self._db.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?)",
                                 [row for row in pending if row[1] > top])

    def _last_sql_seq(self, run_id: str) -> int:
        row = self._db.execute("SELECT max(seq) FROM events WHERE run_id=?", (run_id,)).fetchone()
        return 0 if row is None or row[0] is None else int(row[0])

    @contextmanager
    def _taking_segment(self, run_id: str) -> Iterator[None]:
        """Around a lease change (the caller holds the lock, then opens the transaction
        inside): the run's segment is merged by the transaction and removed once it
        committed, so its writer, superseded, goes through SQLite and meets the new fence."""
        segments = self._segments
        if segments is None:
            yield
            return
        with segments.exclusive(run_id) as fd:
            assert fd is not None
            self._pending = [(run_id, seq, kind, body, crc)
                             for seq, kind, body, crc in parse(read_all(fd))]
            try:
                yield
            finally:
                self._pending = []
            segments.replace(run_id, fd, None, 0)

    def _update_index(self, run_id: str, events: Sequence[Event], new: bool) -> None:
        """Move the run's status, updated_at, wake_at and last_seq past ``events`` (inside the
        append's transaction, from the row as it stands, by the rules every store shares)."""
        status: RunStatus | None = None
        wake_at: float | None = None
        if not new:
            row = self._db.execute("SELECT status, wake_at FROM runs WHERE run_id=?",
                                   (run_id,)).fetchone()
            status, wake_at = RunStatus(row[0]), row[1]
        after, changed_at = advance(status, events)
        self._db.execute(
            "UPDATE runs SET status=?, updated_at=coalesce(?, updated_at), wake_at=?, "
            "last_seq=? WHERE run_id=?",
            (after.value, changed_at, wake_after(status, wake_at, events), events[-1].seq,
             run_id))

    def _fence(self, run_id: str, events: Sequence[Event],
               lease: Lease | None) -> TetherError | None:
        """The LeaseLost an append to ``run_id`` would meet, or None when the lease allows it
        (the caller holds the lock, inside a transaction or just after a refused insert)."""
        row = self._db.execute("SELECT owner, epoch FROM runs WHERE run_id=?",
                               (run_id,)).fetchone()
        if row is None:
            return None
        owner, epoch = row[0], int(row[1])
        if lease is None:
            if owner is not None and not only_resolutions(events):
                return lease_lost(run_id, None, owner, epoch)
        elif (owner, epoch) != (lease.owner, lease.epoch):
            return lease_lost(run_id, lease, owner, epoch)
        return None

    def _refusal(self, run_id: str, events: Sequence[Event], expected_last_seq: int,
                 lease: Lease | None) -> TetherError:
        """Why a hot-path insert stored nothing: the lease fenced it off, or a lost race."""
        fenced = self._fence(run_id, events, lease)
        return fenced if fenced is not None else conflict(
            run_id, expected_last_seq, self._last_seq(run_id))

    # -- leases ---------------------------------------------------------------------------

    def acquire(self, run_id: str, owner: str, *, now: float, ttl_s: float) -> Lease:
        check_lease_args(owner, now, ttl_s)
        with self._lock, self._errors(), self._taking_segment(run_id), self._immediate() as db:
            self._merge(run_id, self._pending)
            row = db.execute(_ACQUIRE, (owner, now + ttl_s, run_id, owner, now)).fetchone()
            if row is not None:
                return Lease(run_id, owner, int(row[0]), now + ttl_s)
            held = db.execute("SELECT owner, epoch, lease_expires_at FROM runs WHERE run_id=?",
                              (run_id,)).fetchone()
        if held is None:
            raise UsageError(f"no run {run_id!r} in {self.path}; nothing to acquire")
        raise run_owned(run_id, str(held[0]), float(held[2]), int(held[1]))

    def renew(self, lease: Lease, *, now: float, ttl_s: float) -> Lease:
        check_lease_args(lease.owner, now, ttl_s)
        with self._lock, self._errors(), self._immediate() as db:
            if db.execute("UPDATE runs SET lease_expires_at=? WHERE run_id=? AND owner=? AND "
                          "epoch=?", (now + ttl_s, lease.run_id, lease.owner,
                                      lease.epoch)).rowcount == 1:
                return Lease(lease.run_id, lease.owner, lease.epoch, now + ttl_s)
            held = db.execute("SELECT owner, epoch FROM runs WHERE run_id=?",
                              (lease.run_id,)).fetchone()
        raise lease_lost(lease.run_id, lease, None if held is None else held[0],
                         0 if held is None else int(held[1]))

    def release(self, lease: Lease) -> bool:
        with self._lock, self._errors(), self._taking_segment(lease.run_id), \
                self._immediate() as db:
            self._merge(lease.run_id, self._pending)
            return bool(db.execute(
                "UPDATE runs SET owner=NULL, lease_expires_at=NULL WHERE run_id=? AND owner=? "
                "AND epoch=?", (lease.run_id, lease.owner, lease.epoch)).rowcount == 1)

    @contextmanager
    def _immediate(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (the caller holds the lock): commit, or roll back on error."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        self.stats.lease_commits += 1

    def _last_seq(self, run_id: str) -> int | None:
        row = self._db.execute("SELECT max(seq) FROM events WHERE run_id=?", (run_id,)).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    @contextmanager
    def _segment_rows(self, run_id: str) -> Iterator[list[tuple[int, str, str, int]]]:
        """The rows of the run's segment, held still (a shared lock) while in use."""
        if self._segments is None:
            yield []
            return
        with self._segments.shared(run_id) as rows:
            yield rows

    def _with_segment(self, run_id: str, rows: list[tuple[int, str, int]], after_seq: int,
                      pending: list[tuple[int, str, str, int]]) -> list[tuple[int, str, int]]:
        """SQLite's rows of a run after ``after_seq``, then its segment's newer ones."""
        if not pending:
            return rows
        top = max(after_seq, rows[-1][0] if rows else self._last_sql_seq(run_id))
        return rows + [(seq, body, crc) for seq, _, body, crc in pending if seq > top]

    def read(self, run_id: str, *, after_seq: int = 0) -> list[Event]:
        with self._lock, self._errors(), self._segment_rows(run_id) as pending:
            info = self._db.execute(
                "SELECT last_seq FROM runs WHERE run_id=?", (run_id,)
            ).fetchone()
            rows = self._db.execute(
                "SELECT seq, body, crc FROM events WHERE run_id=? AND seq>? ORDER BY seq",
                (run_id, after_seq),
            ).fetchall()
            if info is not None:  # a segment without its run's row is stale (see _merge)
                rows = self._with_segment(run_id, rows, after_seq, pending)
        last_seq = 0 if info is None else int(info[0])
        return decode_rows(f"{self.path}", run_id, rows, after_seq, last_seq)

    def get_run(self, run_id: str) -> RunInfo | None:
        with self._lock, self._errors(), self._segment_rows(run_id) as pending:
            row = self._db.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs r WHERE r.run_id=?", (run_id,)
            ).fetchone()
        return None if row is None else _run_info(_reaching(row, pending))

    def list_runs(
        self, *, status: RunStatus | Sequence[RunStatus] | None = None, limit: int = 1000
    ) -> list[RunInfo]:
        wanted = status_filter(status)
        sql = f"SELECT {_RUN_COLUMNS} FROM runs r"
        params: list[object] = []
        if wanted is not None:
            sql += f" WHERE r.status IN ({', '.join('?' * len(wanted))})"
            params.extend(sorted(s.value for s in wanted))
        sql += " ORDER BY r.created_at, r.run_id LIMIT ?"
        params.append(limit)
        with self._lock, self._errors():
            rows = self._db.execute(sql, params).fetchall()
            if self._segments is not None and (names := self._segments.existing()):
                for i, row in enumerate(rows):
                    if os.path.basename(self._segments.path(row[0])) in names:
                        with self._segment_rows(row[0]) as pending:
                            rows[i] = _reaching(row, pending)
        return [_run_info(row) for row in rows]

    def close(self) -> None:
        with self._lock:
            if self._segments is not None:
                self._segments.close()
            self._db.close()

    # -- the work queue -------------------------------------------------------------------

    def claim(self, owner: str, *, now: float, ttl_s: float,
              queues: Sequence[str] | None = None, limit: int = 1) -> list[Lease]:
        check_claim_args(owner, now, ttl_s, limit, queues)
        if limit == 0 or (queues is not None and not queues):
            return []
        where, params = _in_queues(queues, {"now": now})
        segments = self._segments
        with self._lock, self._errors(), ExitStack() as held:
            taken: dict[str, int] = {}
            with self._immediate() as db:
                due = db.execute(f"SELECT run_id, epoch FROM runs WHERE {_DUE}{where} "
                                 f"ORDER BY {_DUE_ORDER} LIMIT :limit",
                                 {**params, "limit": limit}).fetchall()
                if segments is not None:
                    # Not waiting for a segment's lock under SQLite's (appenders take them the
                    # other way round): a run whose segment is busy is left to the next claim.
                    granted = []
                    for run_id, epoch in due:
                        fd = held.enter_context(segments.exclusive(run_id, wait=False))
                        if fd is None:
                            continue
                        self._merge(run_id, [(run_id, seq, kind, body, crc) for
                                             seq, kind, body, crc in parse(read_all(fd))])
                        taken[run_id] = fd
                        granted.append((run_id, epoch))
                    due = granted
                db.executemany("UPDATE runs SET owner=?, epoch=?, lease_expires_at=? "
                               "WHERE run_id=?", [(owner, int(epoch) + 1, now + ttl_s, run_id)
                                                  for run_id, epoch in due])
            for run_id, fd in taken.items():
                assert segments is not None
                segments.replace(run_id, fd, None, 0)
        return [Lease(str(run_id), owner, int(epoch) + 1, now + ttl_s) for run_id, epoch in due]

    def next_wake(self, *, queues: Sequence[str] | None = None) -> float | None:
        if queues is not None and not queues:
            return None
        where, params = _in_queues(queues, {})
        with self._lock, self._errors():
            row = self._db.execute(
                f"SELECT {_WAKE_TIME} FROM runs WHERE status IN ('queued', 'waiting', "
                f"'running'){where}", params).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def beat(self, worker: WorkerInfo) -> None:
        with self._lock, self._errors(), self._immediate() as db:
            db.execute(_BEAT, (worker.name, worker.host, worker.pid, json.dumps(worker.queues),
                               worker.concurrency, worker.started_at, worker.seen_at,
                               int(worker.stopping)))

    def forget(self, name: str) -> None:
        with self._lock, self._errors(), self._immediate() as db:
            db.execute("DELETE FROM workers WHERE name=?", (name,))

    def workers(self) -> list[WorkerInfo]:
        with self._lock, self._errors():
            rows = self._db.execute(
                "SELECT name, host, pid, queues, concurrency, started_at, seen_at, stopping "
                "FROM workers ORDER BY name").fetchall()
        return [_worker_info(row) for row in rows]

    def wait_for_work(self, timeout_s: float) -> bool:
        return False

    # -- maintenance ----------------------------------------------------------------------

    def check(self) -> list[str]:
        """Verify the whole file: SQLite's integrity check, then every event's checksum and
        sequence. Returns a list of problems (empty when the store is sound)."""
        problems: list[str] = []
        with self._lock, self._errors():
            result = self._db.execute("PRAGMA integrity_check").fetchall()
            if result != [("ok",)]:
                problems.extend(f"{self.path}: {r[0]}" for r in result)
                return problems
            runs = self._db.execute("SELECT run_id, last_seq FROM runs").fetchall()
        for run_id, last_seq in runs:
            try:
                with self._lock, self._errors(), self._segment_rows(run_id) as pending:
                    rows = self._db.execute(
                        "SELECT seq, body, crc FROM events WHERE run_id=? ORDER BY seq",
                        (run_id,),
                    ).fetchall()
                    rows = self._with_segment(run_id, rows, 0, pending)
                decode_rows(self.path, run_id, rows, 0, int(last_seq))
            except (CorruptJournal, SchemaTooNew) as exc:
                problems.append(str(exc))
        return problems

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.DatabaseError as exc:
            raise self._translate(exc) from exc

    def _translate(self, exc: sqlite3.DatabaseError) -> StoreError:
        text = str(exc)
        if isinstance(exc, sqlite3.OperationalError) and "locked" in text:
            return StoreError(f"{self.path}: {text} (another process holds the write lock)")
        if isinstance(exc, sqlite3.OperationalError) and "unable to open" in text:
            return StoreError(f"{self.path}: {text}")
        if isinstance(exc, sqlite3.IntegrityError):
            return CorruptJournal(f"{self.path}: {text}")
        return CorruptJournal(
            f"{self.path}: SQLite reports {text!r}; the file is damaged or not a tether store. "
            "Nothing was changed; restore it from a backup or inspect it with `tether store check`"
        )


def _reaching(row: Sequence[object],
              pending: list[tuple[int, str, str, int]]) -> tuple[object, ...]:
    """A runs row whose last seq (column 3) counts the run's segment's events too."""
    if not pending:
        return tuple(row)
    stored = row[3]
    last = max(int(stored) if isinstance(stored, int) else 0, pending[-1][0])
    return (*row[:3], last, *row[4:])


def _run_info(row: Sequence[object]) -> RunInfo:
    return RunInfo(
        run_id=str(row[0]),
        workflow=str(row[1]),
        status=RunStatus(str(row[2])),
        last_seq=int(row[3]),  # type: ignore[call-overload]
        created_at=float(row[4]),  # type: ignore[arg-type]
        updated_at=float(row[5]),  # type: ignore[arg-type]
        owner=None if row[6] is None else str(row[6]),
        epoch=int(row[7]),  # type: ignore[call-overload]
        lease_expires_at=None if row[8] is None else float(row[8]),  # type: ignore[arg-type]
        queue=str(row[9]),
        wake_at=None if row[10] is None else float(row[10]),  # type: ignore[arg-type]
    )


def _worker_info(row: Sequence[object]) -> WorkerInfo:
    return WorkerInfo(
        name=str(row[0]), host=str(row[1]), pid=int(row[2]),  # type: ignore[call-overload]
        queues=tuple(json.loads(str(row[3]))),
        concurrency=int(row[4]),  # type: ignore[call-overload]
        started_at=float(row[5]), seen_at=float(row[6]),  # type: ignore[arg-type]
        stopping=bool(row[7]),
    )


def _in_queues(queues: Sequence[str] | None,
               params: dict[str, object]) -> tuple[str, dict[str, object]]:
    """The ``AND queue IN (…)`` clause for ``queues`` (None: every queue) and its params."""
    if queues is None:
        return "", params
    names = {f"q{i}": name for i, name in enumerate(dict.fromkeys(queues))}
    return f" AND queue IN ({', '.join(':' + n for n in names)})", {**params, **names}
