"""Journals in PostgreSQL, for many workers on many machines.

The tables match :mod:`tether.store.sqlite` (``runs``, ``events`` with the exact encoded body and
its CRC-32), inside one schema (``tether`` by default), with the schema version in ``meta``.
:data:`MIGRATIONS` upgrades older schemas; a schema from a newer tether is refused with
:class:`~tether.errors.SchemaTooNew`.

Each append is one SQL statement, so one round trip and one implicit transaction: a
compare-and-set on ``runs.last_seq`` (``UPDATE … WHERE last_seq = expected``, or ``INSERT … ON
CONFLICT DO NOTHING`` for a new run) and the event inserts, which only happen when the
compare-and-set matched a row. PostgreSQL re-checks the ``WHERE`` of an ``UPDATE`` that waited
for a concurrent writer's row lock against the committed row, so of two racing writers exactly
one matches; the other gets :class:`~tether.errors.ConcurrencyConflict` and stores nothing.

Leases (see :mod:`tether.store.base`) live in the ``runs`` row (``owner``, ``epoch``,
``lease_expires_at``; schema version 2). Acquire, renew and release are each one ``UPDATE``
whose ``WHERE`` is the compare-and-set (the row lock serializes racers, and the loser's
``WHERE`` is re-checked against the winner's committed row); a fenced append adds the owner
and epoch to the ``WHERE`` of its own compare-and-set, so the check and the insert are one.

The work queue (schema version 3): the row's ``queue`` and ``wake_at`` (indexed with
``status``), computed inside the append's one statement from the stored status and wake_at
(:func:`~tether.store.base.wake_transform`), and a ``workers`` table. A claim is one statement
that locks the due rows it takes with ``FOR UPDATE SKIP LOCKED``, so concurrent claimers pass
each other by instead of queueing or taking the same run. An append that may make a run due (an
enqueue, a resolution, a new deadline or parked timer) and a release of an unfinished run
``NOTIFY`` the channel ``tether_work`` (payload: the schema) in their own transaction;
:meth:`PostgresStore.wait_for_work` listens on a connection of its own.

Durability (see :class:`~tether.store.base.Durability`) maps onto ``synchronous_commit``, set
for the append's own transaction only (``set_config(…, true)`` is ``SET LOCAL`` as a function,
which lets it ride in the same statement). Under ``OUTPUT_COMMIT`` ordinary appends commit with
``off`` and ``sync=True`` appends with ``on``, which flushes the WAL up to their commit record
and with it every earlier asynchronous commit: the durable journal is always a prefix. Note that
an asynchronous commit survives a crash of the tether process but not a crash of the
*PostgreSQL server* within the WAL writer's delay (~0.6 s); ``EVERY_EVENT`` always uses ``on``.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import groupby
from typing import Any

from tether.errors import CorruptJournal, SchemaTooNew, StoreError, TetherError, UsageError
from tether.events import (
    Event,
    RunStarted,
    RunStatus,
    TimerStarted,
    WaitResolved,
    WaitStarted,
    checksum,
    encode,
)
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
    wake_after,
    wake_transform,
)
from tether.store.postgres_io import IOThreads

try:
    import psycopg
    from psycopg import sql
except ImportError:  # pragma: no cover - only without the optional dependency
    _HAVE_PSYCOPG = False
else:
    _HAVE_PSYCOPG = True

__all__ = ["MIGRATIONS", "PostgresStats", "PostgresStore"]

#: Schema migrations, applied in order; index + 1 is the schema version each one produces.
#: ``{schema}`` stands for the store's quoted schema name.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
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
    ),
    (
        # Ownership: the lease of the worker executing the run (NULL owner: nobody).
        """ALTER TABLE {schema}.runs ADD COLUMN owner TEXT,
            ADD COLUMN epoch BIGINT NOT NULL DEFAULT 0,
            ADD COLUMN lease_expires_at DOUBLE PRECISION""",
    ),
    (
        # The work queue: which queue a run is on and when a worker should next look at it;
        # existing runs are on the default queue with nothing scheduled.
        f"""ALTER TABLE {{schema}}.runs
            ADD COLUMN IF NOT EXISTS queue TEXT NOT NULL DEFAULT '{DEFAULT_QUEUE}',
            ADD COLUMN IF NOT EXISTS wake_at DOUBLE PRECISION""",
        "CREATE INDEX IF NOT EXISTS runs_by_wake ON {schema}.runs (status, wake_at)",
        """CREATE TABLE IF NOT EXISTS {schema}.workers (
            name TEXT PRIMARY KEY,
            host TEXT NOT NULL,
            pid BIGINT NOT NULL,
            queues TEXT[] NOT NULL,
            concurrency BIGINT NOT NULL,
            started_at DOUBLE PRECISION NOT NULL,
            seen_at DOUBLE PRECISION NOT NULL,
            stopping BOOLEAN NOT NULL DEFAULT FALSE
        )""",
    ),
)

#: The channel appends and releases that may make a run due notify (payload: the schema).
CHANNEL = "tether_work"
SCHEMA_VERSION = len(MIGRATIONS)

# The compare-and-set for a new run: the insert matches no row when the run exists.
_CREATE_RUN = """
    INSERT INTO {schema}.runs (run_id, workflow, status, last_seq, created_at, updated_at,
                               owner, epoch, lease_expires_at, queue, wake_at)
    VALUES (%(run_id)s, %(workflow)s, %(status)s, %(last_seq)s, %(created)s, %(at)s,
            %(owner)s, %(epoch)s, %(expires_at)s, %(queue)s, %(wake_at)s)
    ON CONFLICT (run_id) DO NOTHING
    RETURNING run_id"""

# The compare-and-set for an existing run. The new status depends on the stored one (a
# wait_resolved only means "running" after a wait), so the caller passes the status each
# possible stored status turns into, as a JSON object; likewise wake_at, as [keep, due] per
# stored status (see wake_transform; LEAST ignores NULLs, which is "None means never").
_ADVANCE_RUN = """
    UPDATE {schema}.runs
    SET status = %(transitions)s::jsonb ->> status, last_seq = %(last_seq)s,
        updated_at = COALESCE((%(changed_at)s::jsonb ->> status)::float8, updated_at),
        wake_at = CASE WHEN (%(wakes)s::jsonb -> status ->> 0)::boolean
                       THEN LEAST(wake_at, (%(wakes)s::jsonb -> status ->> 1)::float8)
                       ELSE (%(wakes)s::jsonb -> status ->> 1)::float8 END
    WHERE run_id = %(run_id)s AND last_seq = %(expected)s AND {fence}
    RETURNING run_id"""

# What an existing run's owner must be for an append: the lease's (fenced), nobody (unfenced),
# or anyone (unfenced, resolutions only).
_FENCES = {
    "lease": "owner = %(owner)s AND epoch = %(epoch)s",
    "unowned": "owner IS NULL",
    "any": "TRUE",
}

_ACQUIRE = """
    UPDATE {schema}.runs SET owner = %(owner)s, epoch = epoch + 1,
                             lease_expires_at = %(expires_at)s
    WHERE run_id = %(run_id)s AND (owner IS NULL OR owner = %(owner)s
                                   OR lease_expires_at IS NULL OR lease_expires_at <= %(now)s)
    RETURNING epoch"""
#: How often an acquire refused by a lease that was released meanwhile is tried again.
_ACQUIRE_TRIES = 5
_RENEW = """
    UPDATE {schema}.runs SET lease_expires_at = %(expires_at)s
    WHERE run_id = %(run_id)s AND owner = %(owner)s AND epoch = %(epoch)s
    RETURNING epoch"""
# A released run that is unfinished may be due (or due sooner than workers think): notify.
_RELEASE = """
    WITH released AS (
        UPDATE {schema}.runs SET owner = NULL, lease_expires_at = NULL
        WHERE run_id = %(run_id)s AND owner = %(owner)s AND epoch = %(epoch)s
        RETURNING status, wake_at
    )
    SELECT CASE WHEN status IN ('queued', 'running') OR wake_at IS NOT NULL
                THEN pg_notify(%(channel)s, %(payload)s) END
    FROM released"""

# The work queue's rules (tether.store.base.claimable, claim_order, wake_time) in SQL.
_DUE = """
    (owner IS NULL OR lease_expires_at IS NULL OR lease_expires_at <= %(now)s)
    AND (status = 'running' OR (status IN ('queued', 'waiting') AND wake_at <= %(now)s))"""
_DUE_AT = ("CASE WHEN status = 'running' THEN COALESCE(wake_at, lease_expires_at, updated_at) "
           "ELSE wake_at END")
_CLAIM = f"""
    WITH due AS (
        SELECT run_id, status = 'queued' AS queued, {_DUE_AT} AS due_at, created_at
        FROM {{schema}}.runs
        WHERE {_DUE} {{queues}}
        ORDER BY 2, 3, created_at, run_id COLLATE "C"
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    )
    UPDATE {{schema}}.runs AS r
    SET owner = %(owner)s, epoch = r.epoch + 1, lease_expires_at = %(expires_at)s
    FROM due WHERE r.run_id = due.run_id
    RETURNING r.run_id, r.epoch, due.queued, due.due_at, due.created_at"""
_NEXT_WAKE = """
    SELECT min(CASE WHEN status IN ('queued', 'waiting') THEN
                   -- GREATEST ignores NULLs: a run with no wake_at must stay out.
                   CASE WHEN wake_at IS NOT NULL AND owner IS NOT NULL
                             AND lease_expires_at IS NOT NULL
                        THEN GREATEST(wake_at, lease_expires_at) ELSE wake_at END
               ELSE CASE WHEN owner IS NOT NULL AND lease_expires_at IS NOT NULL
                         THEN lease_expires_at ELSE updated_at END END)
    FROM {schema}.runs WHERE status IN ('queued', 'waiting', 'running') {queues}"""
_BEAT = """
    INSERT INTO {schema}.workers (name, host, pid, queues, concurrency, started_at, seen_at,
                                  stopping)
    VALUES (%(name)s, %(host)s, %(pid)s, %(queues)s, %(concurrency)s, %(started_at)s,
            %(seen_at)s, %(stopping)s)
    ON CONFLICT (name) DO UPDATE SET host = EXCLUDED.host, pid = EXCLUDED.pid,
        queues = EXCLUDED.queues, concurrency = EXCLUDED.concurrency,
        started_at = EXCLUDED.started_at, seen_at = EXCLUDED.seen_at,
        stopping = EXCLUDED.stopping"""

# One statement: compare-and-set, insert the events only if it matched, commit at the asked
# durability. Data-modifying CTEs always run to completion, read or not.
_APPEND = """
    WITH cas AS ({cas}),
    inserted AS (
        INSERT INTO {schema}.events (run_id, seq, kind, body, crc)
        SELECT cas.run_id, e.seq, e.kind, e.body, e.crc
        FROM cas, unnest(%(seqs)s::bigint[], %(kinds)s::text[], %(bodies)s::text[],
                         %(crcs)s::bigint[]) AS e(seq, kind, body, crc)
    )
    SELECT (SELECT count(*) FROM cas), set_config('synchronous_commit', %(commit)s, true),
           (SELECT pg_notify(%(channel)s, %(payload)s) FROM cas WHERE %(notify)s)"""

# The index row and the events after a seq in one snapshot; the outer row exists even for an
# unknown run or when no events follow, so a lost tail is still noticed.
_READ = """
    SELECT r.last_seq, e.seq, e.body, e.crc
    FROM (SELECT %(run_id)s::text AS run_id) AS q
    LEFT JOIN {schema}.runs AS r ON r.run_id = q.run_id
    LEFT JOIN {schema}.events AS e ON e.run_id = q.run_id AND e.seq > %(after)s
    ORDER BY e.seq"""

_RUN_COLUMNS = ("run_id, workflow, status, last_seq, created_at, updated_at, owner, epoch, "
                "lease_expires_at, queue, wake_at")
_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


@dataclass
class PostgresStats:
    """Commit counters, so tests and benchmarks can see what was flushed."""

    commits: int = 0
    synced_commits: int = 0


class PostgresStore:
    """Journals in a PostgreSQL database, in their own schema.

    >>> store = PostgresStore("postgresql://postgres@127.0.0.1:5432/postgres")  # doctest: +SKIP
    >>> store.list_runs()  # doctest: +SKIP
    []

    One store object holds one connection, shared by threads under a lock; for parallel
    appends open one store per worker. Any number of processes may use the same schema.
    After a lost connection the call fails with :class:`~tether.errors.StoreError` and the
    next call reconnects; an append that failed that way may or may not have committed, so
    re-read the run before going on.

    Async code appends and reads without blocking its event loop through
    :meth:`append_async` / :meth:`read_async` (:class:`~tether.store.base.AsyncStore`, which
    the runtime uses on its own): up to ``io_threads`` threads, each with a connection of its
    own, opened on first use and closed by :meth:`close`.
    """

    def __init__(
        self,
        dsn: str,
        *,
        durability: Durability | str = Durability.OUTPUT_COMMIT,
        schema: str = "tether",
        io_threads: int = 4,
    ) -> None:
        if not _HAVE_PSYCOPG:
            raise UsageError("PostgresStore needs psycopg 3; install it with "
                             "`pip install 'tether[postgres]'`")
        if not _SCHEMA_NAME.fullmatch(schema):
            raise UsageError(f"schema {schema!r} is not a plain SQL identifier "
                             "(letters, digits, underscores; at most 63)")
        self.durability = Durability(durability)
        self.schema = schema
        self.stats = PostgresStats()
        self._dsn = dsn
        self._where = _describe(dsn, schema)
        self._lock = threading.Lock()
        self._closed = False
        # wait_for_work's own connection (LISTEN), opened on first use, under its own lock so
        # a worker blocked on it never holds up the journal's connection.
        self._listen_lock = threading.Lock()
        self._listener: psycopg.Connection[tuple[Any, ...]] | None = None
        # The name is checked above; quoting it keeps its case as written.
        q = self._q = sql.Identifier(schema).as_string()
        self._create_sql = _APPEND.replace("{cas}", _CREATE_RUN).replace("{schema}", q)
        self._advance_sql = {
            kind: _APPEND.replace("{cas}", _ADVANCE_RUN.replace("{fence}", fence))
            .replace("{schema}", q) for kind, fence in _FENCES.items()}
        self._acquire_sql = _ACQUIRE.replace("{schema}", q)
        self._renew_sql = _RENEW.replace("{schema}", q)
        self._release_sql = _RELEASE.replace("{schema}", q)
        self._read_sql = _READ.replace("{schema}", q)
        self._claim_sql = {
            every: _CLAIM.replace("{schema}", q).replace(
                "{queues}", "" if every else "AND queue = ANY(%(queues)s::text[])")
            for every in (True, False)}
        self._next_wake_sql = {
            every: _NEXT_WAKE.replace("{schema}", q).replace(
                "{queues}", "" if every else "AND queue = ANY(%(queues)s::text[])")
            for every in (True, False)}
        self._beat_sql = _BEAT.replace("{schema}", q)
        # The awaited form's threads and their connections, opened on first use.
        self.io_threads = io_threads
        self._io: IOThreads[PostgresStore] | None = None
        with self._lock, self._errors():
            self._db = self._connect()
            try:
                self._migrate()
            except BaseException:
                self._db.close()
                raise

    # -- schema ---------------------------------------------------------------------------

    def _connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        return psycopg.connect(self._dsn, autocommit=True)

    def _migrate(self) -> None:
        q = self._q
        with self._db.transaction():
            # Two processes opening a fresh schema at once must not both create it.
            self._db.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"tether:{q}",))
            has_meta = self._db.execute(
                "SELECT to_regclass(%s) IS NOT NULL", (f"{q}.meta",)
            ).fetchone()
            if has_meta is None or not has_meta[0]:
                foreign = self._db.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
                    "ORDER BY 1", (self.schema,),
                ).fetchall()
                if foreign:
                    raise UsageError(
                        f"{self._where} already holds tables ({', '.join(r[0] for r in foreign)})"
                        " that tether did not create; give the store a schema of its own"
                    )
                # Only when missing: CREATE SCHEMA needs a privilege on the database that a
                # user given an empty schema may lack.
                if not self._db.execute(
                    "SELECT 1 FROM pg_namespace WHERE nspname = %s", (self.schema,)
                ).fetchone():
                    self._db.execute(f"CREATE SCHEMA {q}")
                self._db.execute(
                    f"CREATE TABLE {q}.meta (name TEXT PRIMARY KEY, value BIGINT NOT NULL)"
                )
                self._db.execute(f"INSERT INTO {q}.meta VALUES ('schema_version', 0)")
            row = self._db.execute(
                f"SELECT value FROM {q}.meta WHERE name = 'schema_version'"
            ).fetchone()
            version = 0 if row is None else int(row[0])
            if version > SCHEMA_VERSION:
                raise SchemaTooNew(
                    f"{self._where}: store schema version {version} is newer than the version "
                    f"{SCHEMA_VERSION} this tether knows; upgrade tether to open it"
                )
            if version == SCHEMA_VERSION:
                return
            for target in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[target]:
                    self._db.execute(statement.replace("{schema}", q))
            self._db.execute(
                f"UPDATE {q}.meta SET value = %s WHERE name = 'schema_version'", (SCHEMA_VERSION,)
            )

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
        flush = self.durability is Durability.EVERY_EVENT or (
            sync and self.durability is Durability.OUTPUT_COMMIT
        )
        bodies = [encode(event) for event in events]
        params: dict[str, Any] = {
            "run_id": run_id,
            "last_seq": events[-1].seq,
            "seqs": [event.seq for event in events],
            "kinds": [event.kind for event in events],
            "bodies": bodies,
            "crcs": [checksum(body) for body in bodies],
            "commit": "on" if flush else "off",
            "owner": None if lease is None else lease.owner,
            "epoch": 0 if lease is None else lease.epoch,
            "expires_at": None if lease is None else lease.expires_at,
            "channel": CHANNEL,
            "payload": self.schema,
            "notify": _may_make_due(events),
        }
        if expected_last_seq == 0:
            first = events[0]
            assert isinstance(first, RunStarted)
            status, changed_at = advance(None, events)
            params.update(workflow=first.workflow, status=status.value, created=first.at,
                          at=first.at if changed_at is None else changed_at,
                          queue=queue_of(first),
                          wake_at=wake_after(None, None, events))
            statement = self._create_sql
        else:
            outcomes = {s.value: advance(s, events) for s in RunStatus}
            transitions = {s: status.value for s, (status, _) in outcomes.items()}
            changed_by_status = {s: at for s, (_, at) in outcomes.items() if at is not None}
            params.update(
                transitions=json.dumps(transitions),
                changed_at=json.dumps({s: _float_text(at) for s, at in changed_by_status.items()}),
                wakes=json.dumps({s.value: [keep, _float_text(due)] for s in RunStatus
                                  for keep, due in [wake_transform(s, events)]}),
                expected=expected_last_seq,
            )
            fence = ("lease" if lease is not None
                     else "any" if only_resolutions(events) else "unowned")
            statement = self._advance_sql[fence]
        with self._lock, self._errors():
            row = self._connection().execute(statement, params).fetchone()
            if row is None or row[0] != 1:
                raise self._refusal(run_id, events, expected_last_seq, lease)
            self.stats.commits += 1
            if flush:
                self.stats.synced_commits += 1

    def _refusal(self, run_id: str, events: Sequence[Event], expected_last_seq: int,
                 lease: Lease | None) -> TetherError:
        """Why an append stored nothing: the lease fenced it off, or a lost race (the caller
        holds the lock)."""
        row = self._db.execute(
            f"SELECT last_seq, owner, epoch FROM {self._q}.runs WHERE run_id = %s", (run_id,)
        ).fetchone()
        if row is not None and expected_last_seq > 0:
            owner, epoch = row[1], int(row[2])
            if lease is not None and (owner, epoch) != (lease.owner, lease.epoch):
                return lease_lost(run_id, lease, owner, epoch)
            if lease is None and owner is not None and not only_resolutions(events):
                return lease_lost(run_id, None, owner, epoch)
        return conflict(run_id, expected_last_seq, None if row is None else int(row[0]))

    # -- leases ---------------------------------------------------------------------------

    def acquire(self, run_id: str, owner: str, *, now: float, ttl_s: float) -> Lease:
        check_lease_args(owner, now, ttl_s)
        params = {"run_id": run_id, "owner": owner, "now": now, "expires_at": now + ttl_s}
        # The refusal is read in a second statement, so the holder may have released (or its
        # lease expired) in between: then the run is free and the acquire is tried again.
        held: tuple[Any, ...] | None = None
        for _ in range(_ACQUIRE_TRIES):
            with self._lock, self._errors():
                row = self._connection().execute(self._acquire_sql, params).fetchone()
                if row is not None:
                    return Lease(run_id, owner, int(row[0]), now + ttl_s)
                held = self._db.execute(
                    f"SELECT owner, epoch, lease_expires_at FROM {self._q}.runs "
                    "WHERE run_id = %s", (run_id,)).fetchone()
            if held is None:
                raise UsageError(f"no run {run_id!r} in {self._where}; nothing to acquire")
            if held[0] is not None and held[2] is not None and float(held[2]) > now:
                raise run_owned(run_id, str(held[0]), float(held[2]), int(held[1]))
        assert held is not None  # the loop ran and returned or raised otherwise
        raise run_owned(run_id, str(held[0]), float(held[2] or now), int(held[1]))

    def renew(self, lease: Lease, *, now: float, ttl_s: float) -> Lease:
        check_lease_args(lease.owner, now, ttl_s)
        params = {"run_id": lease.run_id, "owner": lease.owner, "epoch": lease.epoch,
                  "expires_at": now + ttl_s}
        with self._lock, self._errors():
            if self._connection().execute(self._renew_sql, params).fetchone() is not None:
                return Lease(lease.run_id, lease.owner, lease.epoch, now + ttl_s)
            held = self._db.execute(
                f"SELECT owner, epoch FROM {self._q}.runs WHERE run_id = %s", (lease.run_id,)
            ).fetchone()
        raise lease_lost(lease.run_id, lease, None if held is None else held[0],
                         0 if held is None else int(held[1]))

    def release(self, lease: Lease) -> bool:
        params = {"run_id": lease.run_id, "owner": lease.owner, "epoch": lease.epoch,
                  "channel": CHANNEL, "payload": self.schema}
        with self._lock, self._errors():
            return self._connection().execute(self._release_sql, params).fetchone() is not None

    def read(self, run_id: str, *, after_seq: int = 0) -> list[Event]:
        with self._lock, self._errors():
            rows = self._connection().execute(
                self._read_sql, {"run_id": run_id, "after": after_seq}
            ).fetchall()
        last_seq = rows[0][0] or 0  # one row at least; NULL when the run is unknown
        events = [row[1:] for row in rows if row[1] is not None]
        return decode_rows(self._where, run_id, events, after_seq, last_seq)

    def get_run(self, run_id: str) -> RunInfo | None:
        with self._lock, self._errors():
            row = self._connection().execute(
                f"SELECT {_RUN_COLUMNS} FROM {self._q}.runs WHERE run_id = %s", (run_id,)
            ).fetchone()
        return None if row is None else _run_info(row)

    def list_runs(
        self, *, status: RunStatus | Sequence[RunStatus] | None = None, limit: int = 1000
    ) -> list[RunInfo]:
        wanted = status_filter(status)
        where = "" if wanted is None else "WHERE status = ANY(%(statuses)s::text[])"
        params = {"statuses": sorted(s.value for s in wanted or ()), "limit": limit}
        with self._lock, self._errors():
            rows = self._connection().execute(
                f"SELECT {_RUN_COLUMNS} FROM {self._q}.runs {where} "
                "ORDER BY created_at, run_id LIMIT %(limit)s",
                params,
            ).fetchall()
        return [_run_info(row) for row in rows]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._db.close()
            io, self._io = self._io, None
        if io is not None:
            io.close()
        with self._listen_lock:
            if self._listener is not None:
                self._listener.close()

    # -- the awaited form (tether.store.base.AsyncStore) ---------------------------------

    async def append_async(
        self,
        run_id: str,
        events: Sequence[Event],
        *,
        expected_last_seq: int,
        sync: bool = False,
        lease: Lease | None = None,
    ) -> None:
        """:meth:`append` without blocking the event loop: run on one of ``io_threads``
        threads, each with a connection of its own (see :mod:`tether.store.postgres_io`)."""
        await self._io_threads().run(lambda store: store.append(
            run_id, events, expected_last_seq=expected_last_seq, sync=sync, lease=lease))

    async def read_async(self, run_id: str, *, after_seq: int = 0) -> list[Event]:
        """:meth:`read` without blocking the event loop (see :meth:`append_async`)."""
        return await self._io_threads().run(lambda store: store.read(run_id,
                                                                     after_seq=after_seq))

    def _io_threads(self) -> IOThreads[PostgresStore]:
        with self._lock:
            if self._closed:
                raise UsageError(f"{self._where}: the store is closed")
            if self._io is None:
                self._io = IOThreads(self._io_handle, threads=self.io_threads,
                                     where=self._where)
            return self._io

    def _io_handle(self) -> PostgresStore:
        """An I/O thread's own handle on this store's schema, counting into its stats."""
        handle = PostgresStore(self._dsn, durability=self.durability, schema=self.schema,
                               io_threads=1)
        handle.stats = self.stats
        return handle

    # -- the work queue -------------------------------------------------------------------

    def claim(self, owner: str, *, now: float, ttl_s: float,
              queues: Sequence[str] | None = None, limit: int = 1) -> list[Lease]:
        check_claim_args(owner, now, ttl_s, limit, queues)
        if limit == 0 or (queues is not None and not queues):
            return []
        params = {"owner": owner, "now": now, "expires_at": now + ttl_s, "limit": limit,
                  "queues": None if queues is None else list(queues)}
        with self._lock, self._errors():
            rows = self._connection().execute(self._claim_sql[queues is None],
                                              params).fetchall()
        # RETURNING comes in no particular order: oldest due first again.
        # RETURNING has no order: sort as the claim chose (base.claim_order).
        rows.sort(key=lambda row: (row[2], row[3], row[4], row[0].encode()))
        return [Lease(row[0], owner, int(row[1]), now + ttl_s) for row in rows]

    def next_wake(self, *, queues: Sequence[str] | None = None) -> float | None:
        if queues is not None and not queues:
            return None
        params = {"queues": None if queues is None else list(queues)}
        with self._lock, self._errors():
            row = self._connection().execute(self._next_wake_sql[queues is None],
                                             params).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def beat(self, worker: WorkerInfo) -> None:
        params = {"name": worker.name, "host": worker.host, "pid": worker.pid,
                  "queues": list(worker.queues), "concurrency": worker.concurrency,
                  "started_at": worker.started_at, "seen_at": worker.seen_at,
                  "stopping": worker.stopping}
        with self._lock, self._errors():
            self._connection().execute(self._beat_sql, params)

    def forget(self, name: str) -> None:
        with self._lock, self._errors():
            self._connection().execute(f"DELETE FROM {self._q}.workers WHERE name = %s",
                                       (name,))

    def workers(self) -> list[WorkerInfo]:
        with self._lock, self._errors():
            rows = self._connection().execute(
                "SELECT name, host, pid, queues, concurrency, started_at, seen_at, stopping "
                f"FROM {self._q}.workers ORDER BY name COLLATE \"C\"").fetchall()
        return [WorkerInfo(row[0], row[1], int(row[2]), tuple(row[3]), int(row[4]),
                           float(row[5]), float(row[6]), bool(row[7])) for row in rows]

    def wait_for_work(self, timeout_s: float) -> bool:
        """Block up to ``timeout_s`` for a NOTIFY on :data:`CHANNEL` about this store's schema
        (LISTEN on a connection of its own); True if one came. Notifications for other schemas
        sharing the database are skipped."""
        if not timeout_s > 0:
            return False
        with self._listen_lock, self._errors():
            listener = self._listener
            if listener is None or listener.closed:
                if self._closed:
                    raise UsageError(f"{self._where}: the store is closed")
                listener = self._listener = self._connect()
                listener.execute(f"LISTEN {CHANNEL}")
            return any(note.payload == self.schema
                       for note in listener.notifies(timeout=timeout_s))

    # -- maintenance ----------------------------------------------------------------------

    def check(self) -> list[str]:
        """Verify every run: each event's checksum, no gaps, the index row agreeing with the
        events, and no events without an index row. Returns the problems (empty when sound)."""
        problems: list[str] = []
        with self._lock, self._errors():
            db = self._connection()
            orphans = db.execute(
                f"SELECT DISTINCT run_id FROM {self._q}.events AS e WHERE NOT EXISTS "
                f"(SELECT 1 FROM {self._q}.runs AS r WHERE r.run_id = e.run_id) ORDER BY 1"
            ).fetchall()
            problems.extend(
                f"{self._where}: run {r[0]!r} has events but no index row" for r in orphans
            )
            # Streamed, so a large store is checked without holding it all in memory.
            rows = db.cursor().stream(
                f"SELECT r.run_id, r.last_seq, e.seq, e.body, e.crc FROM {self._q}.runs AS r "
                f"LEFT JOIN {self._q}.events AS e USING (run_id) ORDER BY r.run_id, e.seq"
            )
            for run_id, group in groupby(rows, key=lambda row: row[0]):
                run_rows = list(group)
                stored = [row[2:] for row in run_rows if row[2] is not None]
                last_seq = int(run_rows[0][1])
                try:
                    decode_rows(self._where, run_id, stored, 0, last_seq)
                except (CorruptJournal, SchemaTooNew) as exc:
                    problems.append(str(exc))
                    continue
                if len(stored) > last_seq:
                    problems.append(
                        f"{self._where}: run {run_id!r} index says last seq {last_seq} but "
                        f"events go on to {len(stored)}"
                    )
        return problems

    # -- the connection -------------------------------------------------------------------

    def _connection(self) -> psycopg.Connection[tuple[Any, ...]]:
        """The connection, reopened if the last one was lost (the caller holds the lock)."""
        if self._closed:
            raise UsageError(f"{self._where}: the store is closed")
        if self._db.closed:
            self._db = self._connect()
        return self._db

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except psycopg.IntegrityError as exc:
            raise CorruptJournal(
                f"{self._where}: PostgreSQL refused a write ({exc}); the runs index and the "
                "events disagree. Inspect the store with `tether store check`"
            ) from exc
        except psycopg.OperationalError as exc:
            raise StoreError(
                f"{self._where}: {exc}; is the server running and reachable? The next call "
                "reconnects"
            ) from exc
        except psycopg.Error as exc:
            raise StoreError(f"{self._where}: PostgreSQL reports {exc!r}") from exc


def _float_text(value: float | None) -> str | None:
    """A time as text for a JSON parameter that SQL casts to float8: JSON numbers cannot be
    infinite (a wait with an infinite timeout has an infinite deadline), float8 text can, and
    Python's repr reads back as the same double."""
    return None if value is None else repr(value)


def _may_make_due(events: Sequence[Event]) -> bool:
    """Whether appending ``events`` may make their run due, or due sooner (then the append
    notifies waiting workers): an enqueue, a resolution, a new deadline or parked timer."""
    return any((isinstance(e, RunStarted) and e.queue is not None)
               or isinstance(e, WaitResolved)
               or (isinstance(e, WaitStarted) and e.deadline is not None)
               or (isinstance(e, TimerStarted) and e.parked) for e in events)


def _describe(dsn: str, schema: str) -> str:
    """Where the store is, for messages: host, port, database and schema, never a password."""
    try:
        params = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise UsageError(f"not a PostgreSQL connection string: {exc}") from exc
    host = params.get("host") or "localhost"
    port = params.get("port") or 5432
    return f"postgresql://{host}:{port}/{params.get('dbname') or ''} schema {schema}"


def _run_info(row: Sequence[Any]) -> RunInfo:
    return RunInfo(
        run_id=row[0],
        workflow=row[1],
        status=RunStatus(row[2]),
        last_seq=row[3],
        created_at=row[4],
        updated_at=row[5],
        owner=row[6],
        epoch=row[7],
        lease_expires_at=row[8],
        queue=row[9],
        wake_at=row[10],
    )
