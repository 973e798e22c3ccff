"""Awaited journal appends on a real PostgreSQL: the event loop runs on while one travels."""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import psycopg
import pytest
from pydantic import BaseModel

from tether import RunContext, Runtime, ToolContext, VirtualClock, tool
from tether.events import RunStarted, ToolIntent, ToolResult
from tether.models.base import Message, ModelRequest
from tether.models.scripted import ScriptedModel, reply
from tether.runtime.context import internals
from tether.store.postgres import PostgresStore

pytestmark = pytest.mark.postgres

_schemas = itertools.count(1)
#: How long a held row lock is kept at most when the loop cannot release it (the code under
#: test blocked it): the test then fails on what it saw, instead of hanging.
_SAFETY_S = 2.0


@pytest.fixture
def store(postgres_dsn: str) -> Iterator[PostgresStore]:
    opened = PostgresStore(postgres_dsn, schema=f"aj_{next(_schemas)}")
    yield opened
    opened.close()


class RowLock:
    """Holds the run's index row locked from another connection, so the run's next append
    waits inside the database until :meth:`release` (or the safety timer) lets it go."""

    def __init__(self, dsn: str, schema: str, *, hold_s: float = _SAFETY_S) -> None:
        self.conn = psycopg.connect(dsn)  # a transaction stays open while the lock is held
        self.watch = psycopg.connect(dsn, autocommit=True)
        self.schema = schema
        self._released = threading.Lock()
        self._done = False
        self._timer = threading.Timer(hold_s, self.release)

    def take(self, run_id: str) -> None:
        self.conn.execute(f'SELECT 1 FROM "{self.schema}".runs WHERE run_id = %s FOR UPDATE',
                          (run_id,))
        self._timer.start()

    def take_events(self) -> None:
        """Lock the whole events table: even reads of it wait."""
        self.conn.execute(f'LOCK TABLE "{self.schema}".events IN ACCESS EXCLUSIVE MODE')
        self._timer.start()

    def waiter(self) -> bool:
        """Whether another backend waits for a lock right now (the held append)."""
        row = self.watch.execute("SELECT count(*) FROM pg_locks WHERE NOT granted").fetchone()
        return row is not None and row[0] > 0

    def release(self) -> None:
        with self._released:
            if not self._done:
                self._done = True
                self.conn.rollback()

    def close(self) -> None:
        self._timer.cancel()
        self.release()
        self.conn.close()
        self.watch.close()


async def _held_append_leaves_loop_free(lock: RowLock, running: asyncio.Task[Any]) -> bool:
    """While the run's append waits on ``lock``, whether a ticker on the same loop ticks on
    (the run still unfinished); then the lock is released and the run awaited."""
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    beat = asyncio.create_task(ticker())
    seen_free = False
    try:
        while not running.done():
            if await asyncio.to_thread(lock.waiter):
                before = ticks
                await asyncio.sleep(0.05)
                seen_free = ticks > before + 10 and not running.done()
                break
            await asyncio.sleep(0.005)
    finally:
        lock.release()
        await running
        beat.cancel()
    return seen_free


class Args(BaseModel):
    order_id: str


def _workflows(lock: RowLock) -> dict[str, Callable[[RunContext], Awaitable[Any]]]:
    """One workflow per durable call whose append the row lock holds."""

    @tool(effect="idempotent", key=lambda a: f"refund:{a.order_id}")
    def refund(ctx: ToolContext, args: Args) -> dict[str, str]:
        lock.take(ctx.run_id)  # the tool_result append waits
        return {"id": "re_1"}

    def locking_model() -> ScriptedModel:
        def script(request: ModelRequest) -> Any:
            lock.take(current[0])
            return reply("ok")
        return ScriptedModel(script)

    current = [""]

    async def step(ctx: RunContext) -> Any:
        return await ctx.step("s", lambda: lock.take(ctx.run_id))

    async def call_tool(ctx: RunContext) -> Any:
        return await ctx.call_tool(refund, {"order_id": "o-1"})

    async def call_model(ctx: RunContext) -> Any:
        current[0] = ctx.run_id
        response = await ctx.call_model(locking_model(),
                                        ModelRequest(messages=(Message.user("hi"),)))
        return response.text

    async def sleep(ctx: RunContext) -> None:
        lock.take(ctx.run_id)
        await ctx.sleep(1.0)

    async def wait_for(ctx: RunContext) -> None:
        lock.take(ctx.run_id)
        await ctx.wait_for("approval")

    async def finish(ctx: RunContext) -> int:
        lock.take(ctx.run_id)  # the run_finished append waits
        return 1

    return {"step": step, "call_tool": call_tool, "call_model": call_model, "sleep": sleep,
            "wait_for": wait_for, "finish": finish}


@pytest.mark.parametrize("call", ["step", "call_tool", "call_model", "sleep", "wait_for",
                                  "finish"])
def test_loop_runs_on_while_an_append_waits_in_the_database(
        postgres_dsn: str, store: PostgresStore, call: str) -> None:
    """Each durable call's append, held inside PostgreSQL by another connection's row lock,
    leaves the event loop free: a ticker task keeps running until the lock is released."""
    lock = RowLock(postgres_dsn, store.schema)
    try:
        runtime = Runtime(store, clock=VirtualClock(), seed=1)

        async def main() -> bool:
            running = asyncio.create_task(runtime.start(_workflows(lock)[call], run_id="r"))
            return await _held_append_leaves_loop_free(lock, running)

        assert asyncio.run(main()), f"the loop stopped while {call}'s append waited"
    finally:
        lock.close()
    assert store.read("r")[-1].kind in ("run_finished", "wait_started")


def test_loop_runs_on_while_a_resume_reads_the_journal(postgres_dsn: str,
                                                       store: PostgresStore) -> None:
    """Resuming a waiting run reads its journal off the loop: with the events table locked by
    another connection, a ticker on the same loop keeps running until it is released."""

    async def wf(ctx: RunContext) -> Any:
        return await ctx.wait_for("go")

    runtime = Runtime(store, clock=VirtualClock(), seed=1)
    assert runtime.run_sync(wf, run_id="w").status.value == "waiting"
    runtime.resolve("w", "go", 7)
    lock = RowLock(postgres_dsn, store.schema)
    try:
        lock.take_events()

        async def main() -> bool:
            running = asyncio.create_task(runtime.resume("w"))
            return await _held_append_leaves_loop_free(lock, running)

        assert asyncio.run(main()), "the loop stopped while the resume read the journal"
    finally:
        lock.close()
    assert store.read("w")[-1].kind == "run_finished"


def test_blocking_decide_beside_an_awaited_append_held_in_the_database(
        postgres_dsn: str, store: PostgresStore) -> None:
    """A blocking append (decide) made while the run's awaited append waits on a row lock
    finds that append in PostgreSQL once the lock goes, takes it as the journal's own, and
    goes after it: every seq once, both calls journaled, listeners told in seq order."""
    lock = RowLock(postgres_dsn, store.schema, hold_s=0.3)
    told: list[int] = []

    async def wf(ctx: RunContext) -> Any:
        async def held() -> Any:
            return await ctx.step("held", lambda: lock.take(ctx.run_id))

        async def beside() -> Any:
            while not await asyncio.to_thread(lock.waiter):
                await asyncio.sleep(0.005)
            # Blocks until the timer lets the lock go.
            return internals(ctx).decide("beside", {"x": 1})

        return await asyncio.gather(held(), beside())

    runtime = Runtime(store, clock=VirtualClock(), seed=1,
                      listeners=[lambda _run, event: told.append(event.seq)])
    try:
        result = runtime.run_sync(wf, run_id="mix")
    finally:
        lock.close()
    assert result.status.value == "completed", result
    events = store.read("mix")
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert told == [e.seq for e in events]
    # The held append queued first on the row lock, so it lands first; the decide then met it
    # in the store (read back from PostgreSQL) and took it in as the journal's own.
    assert [e.kind for e in events] == ["run_started", "step", "decision", "run_finished"]
    again = asyncio.run(Runtime(store, clock=VirtualClock(), seed=2).resume("mix"))
    assert again.result == result.result


def test_parallel_tool_calls_of_one_run_take_consecutive_seqs_and_replay(
        store: PostgresStore) -> None:
    """Eight parallel writes of one run on PostgreSQL: every seq from 1 on, no conflict, each
    handler called once, and a resume of the finished run replays its result without calls."""
    calls: list[str] = []

    @tool(effect="idempotent", key=lambda a: f"charge:{a.order_id}")
    async def charge(ctx: ToolContext, args: Args) -> dict[str, str]:
        calls.append(args.order_id)
        await asyncio.sleep(0)
        return {"id": f"ch_{args.order_id}"}

    async def wf(ctx: RunContext) -> list[Any]:
        return list(await asyncio.gather(*(ctx.call_tool(charge, {"order_id": f"o{i}"})
                                           for i in range(8))))

    runtime = Runtime(store, clock=VirtualClock(), seed=1)
    result = asyncio.run(runtime.start(wf, run_id="par"))
    assert result.status.value == "completed"
    events = store.read("par")
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert sum(isinstance(e, ToolIntent) for e in events) == 8
    assert sum(isinstance(e, ToolResult) for e in events) == 8
    assert sorted(calls) == sorted(f"o{i}" for i in range(8))
    again = asyncio.run(Runtime(store, clock=VirtualClock(), seed=2).resume("par"))
    assert again.result == result.result
    assert len(calls) == 8


def test_run_sync_twice_with_one_postgres_store(postgres_dsn: str,
                                                store: PostgresStore) -> None:
    """One store used by two event loops in turn (run_sync twice) serves both, and closing
    it leaves no connection of its own open on the server."""

    async def wf(ctx: RunContext) -> int:
        await ctx.step("a", lambda: 1)
        return 2

    runtime = Runtime(store, clock=VirtualClock(), seed=1)
    assert runtime.run_sync(wf, run_id="one").status.value == "completed"
    assert runtime.run_sync(wf, run_id="two").status.value == "completed"
    assert isinstance(store.read("two")[0], RunStarted)
    with psycopg.connect(postgres_dsn, autocommit=True) as watch:
        def backends() -> int:
            row = watch.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = "
                                "'client backend' AND pid <> pg_backend_pid()").fetchone()
            return 0 if row is None else int(row[0])

        assert backends() >= 2  # the store's own connection and an I/O thread's
        store.close()
        # Every connection the store opened (its own and its I/O threads') goes away; a
        # backend's exit shows in pg_stat_activity shortly after the client hangs up.
        for _ in range(200):
            if backends() == 0:
                break
            threading.Event().wait(0.01)
        assert backends() == 0
