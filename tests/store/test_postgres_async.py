"""PostgresStore's awaited form: append and read off the event loop, with append's meaning."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from tether.errors import ConcurrencyConflict, LeaseLost, UsageError
from tether.events import Event, RunStarted, StepRecorded, WaitResolved
from tether.store.base import AsyncStore
from tether.store.postgres import PostgresStore

pytestmark = pytest.mark.postgres

_schemas = itertools.count(1)


@pytest.fixture
def store(postgres_dsn: str) -> Iterator[PostgresStore]:
    opened = PostgresStore(postgres_dsn, schema=f"pa_{next(_schemas)}", io_threads=2)
    yield opened
    opened.close()


def _step(seq: int) -> list[Event]:
    return [StepRecorded(seq=seq, at=float(seq), pos=seq, call="step", name="s", result=seq)]


def _start() -> list[Event]:
    return [RunStarted(seq=1, at=1.0, workflow="wf", seed=1)]


Append = Callable[..., Any]


def _forms(store: PostgresStore) -> dict[str, Append]:
    """append, blocking and awaited, as one call shape."""

    def awaited(*args: Any, **kwargs: Any) -> Any:
        result: Awaitable[Any] = store.append_async(*args, **kwargs)
        return asyncio.run(result)  # type: ignore[arg-type]

    return {"blocking": store.append, "awaited": awaited}


def test_postgres_store_has_the_awaited_form(store: PostgresStore) -> None:
    """The runtime finds the capability on PostgresStore."""
    assert isinstance(store, AsyncStore)


@pytest.mark.parametrize("form", ["blocking", "awaited"])
def test_conflict_lease_and_usage_errors_match(store: PostgresStore, form: str) -> None:
    """A lost race raises ConcurrencyConflict, a stale lease LeaseLost, a malformed batch
    UsageError, and an unfenced resolution to an owned run is accepted — in both forms, each
    storing nothing when it refuses."""
    append = _forms(store)[form]
    append("r", _start(), expected_last_seq=0)
    lease = store.acquire("r", "me", now=0.0, ttl_s=10.0)
    append("r", _step(2), expected_last_seq=1, lease=lease)
    with pytest.raises(ConcurrencyConflict):
        append("r", _step(2), expected_last_seq=1, lease=lease)
    with pytest.raises(UsageError):
        append("r", _step(5), expected_last_seq=2, lease=lease)
    append("r", [WaitResolved(seq=3, at=3.0, key="k", value=1)], expected_last_seq=2)
    store.acquire("r", "other", now=20.0, ttl_s=10.0)
    with pytest.raises(LeaseLost):
        append("r", _step(4), expected_last_seq=3, lease=lease)
    assert [e.seq for e in store.read("r")] == [1, 2, 3]


def test_read_async_equals_read(store: PostgresStore) -> None:
    """read_async returns what read does, after any seq, and [] for an unknown run."""
    store.append("r", _start() + _step(2) + _step(3), expected_last_seq=0)

    async def both() -> tuple[list[Event], list[Event], list[Event]]:
        return (await store.read_async("r"), await store.read_async("r", after_seq=2),
                await store.read_async("nobody"))

    everything, tail, unknown = asyncio.run(both())
    assert everything == store.read("r")
    assert tail == store.read("r", after_seq=2)
    assert unknown == []


def test_awaited_appends_of_many_runs_travel_side_by_side(store: PostgresStore) -> None:
    """Appends of 20 runs awaited at once all land, and the commits count them."""
    before = store.stats.commits

    async def run(i: int) -> None:
        await store.append_async(f"r{i}", _start(), expected_last_seq=0)
        for seq in range(2, 5):
            await store.append_async(f"r{i}", _step(seq), expected_last_seq=seq - 1)

    async def main() -> None:
        await asyncio.gather(*(run(i) for i in range(20)))

    asyncio.run(main())
    assert all(len(store.read(f"r{i}")) == 4 for i in range(20))
    assert store.stats.commits - before == 80


def test_awaited_form_refuses_after_close(postgres_dsn: str) -> None:
    """A closed store's awaited form says it is closed (UsageError), like the blocking one."""
    store = PostgresStore(postgres_dsn, schema=f"pa_{next(_schemas)}")
    asyncio.run(store.append_async("r", _start(), expected_last_seq=0))
    store.close()
    with pytest.raises(UsageError, match="closed"):
        asyncio.run(store.append_async("r", _step(2), expected_last_seq=1))


def test_io_threads_must_be_positive(postgres_dsn: str) -> None:
    """io_threads below 1 is refused when the awaited form is first used."""
    store = PostgresStore(postgres_dsn, schema=f"pa_{next(_schemas)}", io_threads=0)
    try:
        with pytest.raises(UsageError, match="io_threads"):
            asyncio.run(store.read_async("r"))
    finally:
        store.close()
