"""Opening a store from a URL, as the CLI and configuration files name them."""

from __future__ import annotations

from tether.errors import UsageError
from tether.store.base import Durability, Store
from tether.store.memory import MemoryStore
from tether.store.sqlite import SQLiteStore

__all__ = ["open_store"]


def open_store(url: str, *, durability: Durability | str = Durability.OUTPUT_COMMIT) -> Store:
    """Open ``memory:``, ``sqlite:///path/runs.db`` (or a bare file path) or
    ``postgresql://user@host:port/db``.

    >>> open_store("memory:")  # doctest: +ELLIPSIS
    <tether.store.memory.MemoryStore object at ...>
    """
    if url in ("memory:", "memory://"):
        return MemoryStore()
    if url.startswith(("postgresql://", "postgres://")):
        from tether.store.postgres import PostgresStore

        return PostgresStore(url, durability=durability)
    if url.startswith("sqlite:///"):
        return SQLiteStore(url.removeprefix("sqlite:///"), durability=durability)
    if url.startswith("sqlite://"):
        raise UsageError(f"{url!r}: write sqlite:///relative/path.db or sqlite:////abs/path.db")
    if "://" in url:
        raise UsageError(f"{url!r}: unknown store URL; use memory:, sqlite:///FILE or "
                         "postgresql://…")
    return SQLiteStore(url, durability=durability)
