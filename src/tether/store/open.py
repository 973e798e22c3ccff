"""Opening a store from a URL, as the CLI and configuration files name them.

``open_store(url)`` opens or creates. ``open_store(url, create=False)`` opens only a store that
already exists, and changes nothing when there is none — what a command that only reads needs,
so that a mistyped path is an error instead of a new, empty, "healthy" store:

* a SQLite path that does not exist, or a PostgreSQL database without tether's schema, raises
  :class:`~tether.errors.UsageError` ("no store at …");
* checking reads the file as immutable when it has no ``-wal`` file, so a damaged or foreign
  file gains no ``-wal``/``-shm`` files (a store being created by another process at that very
  moment may then be seen without its tables: check it again);
* a file that exists but is not a tether store — empty (a store truncated to zero bytes has
  lost its journal), not SQLite, or SQLite without tether's tables — raises
  :class:`~tether.errors.CorruptJournal`; the file is not touched.
"""

from __future__ import annotations

import os
import sqlite3
from urllib.parse import quote

from tether.errors import CorruptJournal, StoreError, UsageError
from tether.store.base import Durability, Store
from tether.store.memory import MemoryStore
from tether.store.sqlite import SQLiteStore

__all__ = ["open_store"]

_SQLITE_HEADER = b"SQLite format 3\x00"
_TABLES = {"runs", "events"}


def open_store(url: str, *, durability: Durability | str = Durability.OUTPUT_COMMIT,
               create: bool = True) -> Store:
    """Open ``memory:``, ``sqlite:///path/runs.db`` (or a bare file path) or
    ``postgresql://user@host:port/db``; with ``create=False`` only an existing store (see the
    module docstring; ``memory:`` is always new and empty).

    >>> open_store("memory:")  # doctest: +ELLIPSIS
    <tether.store.memory.MemoryStore object at ...>
    """
    if url in ("memory:", "memory://"):
        return MemoryStore()
    if url.startswith(("postgresql://", "postgres://")):
        from tether.store.postgres import PostgresStore

        if not create:
            _require_postgres(url)
        return PostgresStore(url, durability=durability)
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
    elif url.startswith("sqlite://"):
        raise UsageError(f"{url!r}: write sqlite:///relative/path.db or sqlite:////abs/path.db")
    elif "://" in url:
        raise UsageError(f"{url!r}: unknown store URL; use memory:, sqlite:///FILE or "
                         "postgresql://…")
    else:
        path = url
    if not create:
        _require_sqlite(path)
    return SQLiteStore(path, durability=durability)


def _require_sqlite(path: str) -> None:
    """Raise unless ``path`` holds a tether store; read-only, so nothing is created."""
    if not os.path.lexists(path):
        raise UsageError(f"no store at {path}: the file does not exist (nothing was created)")
    if os.path.isdir(path):
        raise UsageError(f"no store at {path}: it is a directory, not a store file")
    wal = f"{path}-wal"
    size = os.path.getsize(path)
    if size == 0 and not (os.path.exists(wal) and os.path.getsize(wal) > 0):
        raise CorruptJournal(f"{path} is not a tether store: the file is empty (0 bytes); a "
                             "store truncated to zero bytes has lost its journal, so restore "
                             "it from a backup")
    if size > 0:
        try:
            with open(path, "rb") as handle:
                header = handle.read(len(_SQLITE_HEADER))
        except OSError as exc:
            raise StoreError(f"{path}: cannot read the store file ({exc.strerror})") from exc
        if header != _SQLITE_HEADER:
            raise CorruptJournal(f"{path} is not a tether store: not a SQLite database (it "
                                 f"starts with {header!r})")
    # Even a read-only connection creates -wal and -shm files beside a WAL-mode database. With
    # no -wal file, the database file holds everything committed, so it is read as immutable
    # (no locks, no side files); a -wal file that exists holds commits the file lacks, and is
    # read normally (its -shm belongs with it).
    wal_exists = os.path.exists(wal)
    mode = "mode=ro" if wal_exists else "mode=ro&immutable=1"
    try:
        db = sqlite3.connect(f"file:{quote(os.path.abspath(path))}?{mode}", uri=True)
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            tables = {row[0] for row in db.execute(
                "SELECT name FROM sqlite_master WHERE type='table'")}
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        raise CorruptJournal(f"{path} is not a readable tether store: SQLite reports "
                             f"{exc!s:.200}; nothing was changed") from exc
    if version == 0 or not _TABLES.issubset(tables):
        found = ", ".join(sorted(tables)) or "none"
        raise CorruptJournal(f"{path} is a SQLite database but not a tether store (tables: "
                             f"{found}; schema version {version})")


def _require_postgres(url: str, schema: str = "tether") -> None:
    """Raise unless the database at ``url`` holds tether's schema; reads only."""
    from tether.store.postgres import _describe

    try:
        import psycopg
    except ImportError as exc:
        raise UsageError("PostgresStore needs psycopg 3; install it with "
                         "`pip install 'tether[postgres]'`") from exc
    where = _describe(url, schema)
    try:
        with psycopg.connect(url, autocommit=True) as db:
            row = db.execute("SELECT to_regclass(%s) IS NOT NULL", (f'"{schema}".meta',)).fetchone()
    except psycopg.Error as exc:
        raise StoreError(f"{where}: cannot connect: {' '.join(str(exc).split())}") from exc
    if row is None or not row[0]:
        raise UsageError(f"no store at {where}: the database has no tether schema (nothing "
                         "was created)")
