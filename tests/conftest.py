"""Shared fixtures."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tether.store.base import Store
from tether.store.memory import MemoryStore
from tether.store.sqlite import SQLiteStore

# -- stores: a throwaway PostgreSQL server and a factory over every store kind --------------


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """A DSN for a real PostgreSQL server started for this test session.

    Skipped only when TETHER_SKIP_POSTGRES=1; missing binaries otherwise fail the tests, since
    CI installs them.
    """
    if os.environ.get("TETHER_SKIP_POSTGRES") == "1":
        pytest.skip("TETHER_SKIP_POSTGRES=1: PostgreSQL tests are turned off")
    from tether.testing.postgres import TemporaryPostgres

    with TemporaryPostgres() as server:
        yield server.dsn


_schemas = itertools.count(1)


class StoreFactory:
    """Makes fresh, empty stores of one kind (``memory``, ``sqlite``, ``postgres``) and closes
    every store it opened when the test ends; ``peer`` opens another handle on a store's
    storage (another connection or file handle; the same object for memory)."""

    def __init__(self, kind: str, tmp_path: Path, dsn: str | None) -> None:
        self.kind = kind
        self._tmp_path = tmp_path
        self._dsn = dsn
        self._opened: list[Store] = []
        self._files = itertools.count(1)

    def __call__(self) -> Store:
        if self.kind == "memory":
            return MemoryStore()
        if self.kind == "sqlite":
            return self._keep(SQLiteStore(self._tmp_path / f"store-{next(self._files)}.db"))
        return self._postgres(f"t_{next(_schemas)}")

    def peer(self, store: Store) -> Store:
        if isinstance(store, SQLiteStore):
            return self._keep(SQLiteStore(store.path))
        if self.kind == "postgres":
            return self._postgres(store.schema)  # type: ignore[attr-defined]
        return store

    def close_all(self) -> None:
        for store in self._opened:
            store.close()

    def _postgres(self, schema: str) -> Store:
        from tether.store.postgres import PostgresStore

        assert self._dsn is not None
        return self._keep(PostgresStore(self._dsn, schema=schema))

    def _keep(self, store: Store) -> Store:
        self._opened.append(store)
        return store


@pytest.fixture(
    params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """A :class:`StoreFactory` for each store kind; PostgreSQL stores each get a fresh schema."""
    dsn = request.getfixturevalue("postgres_dsn") if request.param == "postgres" else None
    factory = StoreFactory(request.param, tmp_path, dsn)
    yield factory
    factory.close_all()
