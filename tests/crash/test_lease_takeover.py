"""Ownership inside one process: a run is held while executed and released after, a live
owner's run is refused to others, and a worker whose run was taken over stops before its next
durable call, even through user code's ``except Exception``."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tether import MemoryStore, RunContext, Runtime, VirtualClock
from tether.errors import LeaseLost, RunOwned
from tether.events import RunFinished, RunStatus, StepRecorded
from tether.runtime.context import internals


def test_a_run_is_held_while_it_executes_and_released_when_it_finishes_or_waits() -> None:
    """During execution get_run names the owner; completion and suspension release it."""
    store, clock = MemoryStore(), VirtualClock(start=1000.0)
    seen: list[Any] = []

    async def flow(ctx: RunContext) -> str:
        info = store.get_run(ctx.run_id)
        seen.append((info.owner, info.epoch, info.lease_expires_at) if info else None)
        return str(await ctx.wait_for("go"))

    runtime = Runtime(store, clock=clock, owner="w1", lease_ttl_s=20, workflows=[flow])
    assert asyncio.run(runtime.start(flow, run_id="r")).status is RunStatus.WAITING
    assert seen == [("w1", 1, 1020.0)]
    info = store.get_run("r")
    assert info is not None and (info.owner, info.lease_expires_at) == (None, None)
    runtime.resolve("r", "go", "yes")
    assert asyncio.run(runtime.resume("r")).result == "yes"
    assert seen[-1] == ("w1", 2, 1020.0)
    info = store.get_run("r")
    assert info is not None and (info.owner, info.epoch) == (None, 2)


def test_a_live_owner_keeps_its_run_from_other_workers() -> None:
    """While w1 executes a run, w2's resume raises RunOwned naming w1 and the expiry, and
    w2's recover() and w1's own recover() leave it alone."""
    store, clock = MemoryStore(), VirtualClock(start=0.0)

    async def main() -> None:
        gate = asyncio.Event()

        async def flow(ctx: RunContext) -> str:
            await ctx.step("one", lambda: 1)
            await gate.wait()
            return str(await ctx.step("two", lambda: 2))

        w1 = Runtime(store, clock=clock, owner="w1", lease_ttl_s=30, workflows=[flow])
        w2 = Runtime(store, clock=clock, owner="w2", workflows=[flow])
        task = asyncio.create_task(w1.start(flow, run_id="r"))
        for _ in range(5):
            await asyncio.sleep(0)
        with pytest.raises(RunOwned, match=r"owned by worker 'w1'.*until 30\.000") as caught:
            await w2.resume("r")
        assert (caught.value.owner, caught.value.expires_at) == ("w1", 30.0)
        assert await w2.recover() == []
        assert await w1.recover() == []  # not even its own runtime takes it twice
        gate.set()
        assert (await task).result == "2"

    asyncio.run(main())
    assert [e.kind for e in store.read("r")].count("step") == 2


def test_a_worker_whose_run_was_taken_over_stops_before_its_next_durable_call() -> None:
    """w1 stalls past its lease; w2 takes the run over and finishes it; w1's next durable
    call raises LeaseLost out of start() although the workflow catches Exception, and w1
    appends nothing after the takeover."""
    store, clock = MemoryStore(), VirtualClock(start=0.0, autojump=False)
    stalled, ran = asyncio.Event(), []

    async def main() -> None:
        gate = asyncio.Event()

        async def flow(ctx: RunContext) -> str:
            await ctx.step("one", lambda: 1)
            if not stalled.is_set():  # the first worker stalls here; the second goes on
                stalled.set()
                await gate.wait()
            try:
                await ctx.step("two", lambda: ran.append(ctx.run_id) or 2)
            except Exception:  # user code must not be able to swallow the lost lease
                return "swallowed"
            return "done"

        w1 = Runtime(store, clock=clock, owner="w1", lease_ttl_s=10, workflows=[flow])
        w2 = Runtime(store, clock=clock, owner="w2", lease_ttl_s=10, workflows=[flow])
        task = asyncio.create_task(w1.start(flow, run_id="r"))
        await stalled.wait()
        clock.advance(11)
        (taken,) = await w2.recover()
        assert taken.result == "done"
        gate.set()
        with pytest.raises(LeaseLost, match="'w1' lost its lease"):
            await task

    asyncio.run(main())
    events = store.read("r")
    assert [e.status for e in events if isinstance(e, RunFinished)] == [RunStatus.COMPLETED]
    assert [e.name for e in events if isinstance(e, StepRecorded)] == ["one", "two"]
    assert ran == ["r"]  # the step function ran once: under w2
    info = store.get_run("r")
    assert info is not None and (info.owner, info.epoch) == (None, 2)


def test_appends_renew_the_lease_once_past_half_its_time() -> None:
    """A run whose durable calls span many lease TTLs of virtual time keeps its lease alive
    by renewing it as it appends (no heartbeat with a virtual clock)."""
    store = MemoryStore()
    left: list[float] = []

    async def flow(ctx: RunContext) -> None:
        for n in range(6):
            await ctx.sleep(4)
            await ctx.step(f"s{n}", lambda: None)
            info = store.get_run(ctx.run_id)
            assert info is not None and info.lease_expires_at is not None
            left.append(info.lease_expires_at - internals(ctx).clock.now())

    runtime = Runtime(store, clock=VirtualClock(start=0.0), owner="w1", lease_ttl_s=10)
    assert runtime.heartbeat_s is None
    asyncio.run(runtime.start(flow, run_id="r"))
    assert len(left) == 6 and min(left) > 0, left  # never expired though 24 s passed
