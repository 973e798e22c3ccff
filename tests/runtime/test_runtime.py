"""The Runtime object: starting, resuming, recovering, naming workflows, racing workers."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from tether import (
    ConcurrencyConflict,
    Crash,
    MemoryStore,
    ProbePoint,
    RunContext,
    RunStatus,
    Runtime,
    SQLiteStore,
    UnknownWorkflow,
    UsageError,
    VirtualClock,
    workflow,
)


class Order(BaseModel):
    order_id: str
    amount_cents: int


@workflow(name="total")
async def total(ctx: RunContext, order: Order) -> int:
    doubled = await ctx.step("double", lambda: order.amount_cents * 2)
    return int(doubled)


def test_typed_input_is_validated_into_the_annotation() -> None:
    """A pydantic-annotated input arrives as the model, from the journaled JSON."""
    rt = Runtime(clock=VirtualClock(), seed=1)
    result = asyncio.run(rt.start(total, Order(order_id="o", amount_cents=21)))
    assert result.status is RunStatus.COMPLETED and result.raise_for_status() == 42


def test_seeded_runtimes_produce_identical_journals() -> None:
    """Same seed and virtual clock: same run ids, seeds and events."""

    def journal() -> list[Any]:
        store = MemoryStore()
        rt = Runtime(store, clock=VirtualClock(), seed=99)
        run = asyncio.run(rt.start(total, {"order_id": "o", "amount_cents": 1}))
        return [e.model_dump() for e in store.read(run.run_id)]

    assert journal() == journal()


def test_recover_resumes_every_unfinished_run_and_skips_finished(tmp_path: Path) -> None:
    """After a crash, recover() finishes crashed runs; finished ones are left alone."""
    path = tmp_path / "runs.db"

    def crash(point: ProbePoint) -> None:
        if point.name == "double":
            raise Crash()

    crashing = Runtime(SQLiteStore(path), clock=VirtualClock(), seed=1, probe=crash)
    for i in range(3):
        with pytest.raises(Crash):
            asyncio.run(crashing.start(total, {"order_id": f"o{i}", "amount_cents": i}))
    asyncio.run(Runtime(SQLiteStore(path), clock=VirtualClock(), seed=2).start(
        total, {"order_id": "done", "amount_cents": 5}))
    fresh = Runtime(SQLiteStore(path), clock=VirtualClock(), workflows=[total])
    results = asyncio.run(fresh.recover())
    assert sorted(r.result for r in results) == [0, 2, 4]
    assert asyncio.run(fresh.recover()) == []
    assert {r.status for r in fresh.store.list_runs()} == {RunStatus.COMPLETED}


def test_resuming_an_unregistered_workflow_says_how_to_fix_it() -> None:
    """UnknownWorkflow names the journal's workflow and the registered ones."""
    store = MemoryStore()
    run = asyncio.run(Runtime(store, clock=VirtualClock(), seed=1).start(
        total, {"order_id": "o", "amount_cents": 1}))
    events = store.read(run.run_id)[:-1]
    partial = MemoryStore()
    partial.append(run.run_id, events, expected_last_seq=0)
    with pytest.raises(UnknownWorkflow, match=r"workflow 'total'.*registered: none"):
        asyncio.run(Runtime(partial).resume(run.run_id))


def test_two_workers_on_one_run_cannot_both_write() -> None:
    """A worker whose run was taken over is fenced off: LeaseLost, a ConcurrencyConflict."""
    store = MemoryStore()
    gate: asyncio.Event

    async def wf(ctx: RunContext) -> None:
        await ctx.step("first", lambda: 1)
        await gate.wait()
        await ctx.step("second", lambda: 2)

    async def main() -> None:
        nonlocal gate
        gate = asyncio.Event()
        a = Runtime(store, clock=VirtualClock(start=0.0), seed=1)
        task = asyncio.create_task(a.start(wf, run_id="r"))
        await asyncio.sleep(0)
        # Another worker, once a's lease (30 s) has run out on its clock: it may take over.
        b = Runtime(store, clock=VirtualClock(start=100.0), workflows=[wf])
        gate.set()
        await b.resume("r")  # b completes the run first
        with pytest.raises(ConcurrencyConflict, match="lost its lease"):
            await task

    asyncio.run(main())
    assert [e.kind for e in store.read("r")].count("run_finished") == 1


def test_resolve_refuses_unknown_and_finished_runs() -> None:
    """resolve() on a missing or finished run is a usage error, not a silent no-op."""
    store = MemoryStore()
    rt = Runtime(store, clock=VirtualClock(), seed=1)
    with pytest.raises(UsageError, match="no run"):
        rt.resolve("nope", "k")
    run = asyncio.run(rt.start(total, {"order_id": "o", "amount_cents": 1}))
    with pytest.raises(UsageError, match="already completed"):
        rt.resolve(run.run_id, "k")


def test_failed_run_reports_its_error() -> None:
    """An exception escaping the workflow fails the run with the error journaled."""

    async def wf(ctx: RunContext) -> None:
        raise ValueError("bad order")

    result = asyncio.run(Runtime(clock=VirtualClock(), seed=1).start(wf))
    assert result.status is RunStatus.FAILED and "bad order" in result.reason
    with pytest.raises(ValueError, match="bad order"):
        result.raise_for_status()


def test_workflow_must_be_async_and_names_must_be_unique() -> None:
    """Registration errors are caught when the workflow is declared."""
    with pytest.raises(UsageError, match="async"):
        workflow(lambda ctx: None)

    async def other(ctx: RunContext) -> None: ...

    rt = Runtime()
    rt.register(total)
    with pytest.raises(UsageError, match="both named 'total'"):
        rt.register(workflow(other, name="total"))


def test_starting_a_run_id_twice_is_a_usage_error_and_keeps_the_first_run() -> None:
    store = MemoryStore()
    runtime = Runtime(store=store, clock=VirtualClock(), seed=1)

    async def hello(ctx: RunContext, name: str) -> str:
        return f"hello {name}"

    first = asyncio.run(runtime.start(hello, "ada", run_id="greet-1"))
    journal = store.read("greet-1")
    with pytest.raises(UsageError, match=r"already exists.*resume"):
        asyncio.run(runtime.start(hello, "bob", run_id="greet-1"))
    assert first.result == "hello ada"
    assert asyncio.run(runtime.resume("greet-1")).result == "hello ada"
    assert store.read("greet-1") == journal
