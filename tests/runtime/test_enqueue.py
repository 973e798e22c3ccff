"""The runtime side of the work queue: enqueued runs, resuming under a claimed lease, parked
timers, and handing a run back at its next durable call. Run against every store."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.conftest import StoreFactory
from tether import RunContext, RunStatus, Runtime, UsageError, VirtualClock, workflow
from tether.events import RunDequeued, RunStarted, TimerFired, TimerStarted, encode
from tether.store.base import Store
from tether.store.memory import MemoryStore


def mark(calls: list[str], name: str, value: Any) -> Any:
    """Note a handler invocation; return the handler's value."""
    calls.append(name)
    return value


def counting_flow(calls: list[str]) -> Any:
    """A workflow of two steps that records every handler invocation in ``calls``."""

    @workflow(name="counting")
    async def flow(ctx: RunContext, name: str) -> str:
        first = await ctx.step("one", lambda: mark(calls, "one", f"hi {name}"))
        await ctx.step("two", lambda: mark(calls, "two", 2))
        return str(first)

    return flow


def sleeper(calls: list[str], seconds: float) -> Any:
    @workflow(name="sleeper")
    async def flow(ctx: RunContext) -> str:
        await ctx.step("before", lambda: mark(calls, "before", 1))
        await ctx.sleep(seconds)
        await ctx.step("after", lambda: mark(calls, "after", 2))
        return "woke"

    return flow


def kinds(store: Store, run_id: str) -> list[str]:
    return [e.kind for e in store.read(run_id)]


def test_an_enqueued_run_is_queued_unowned_and_executed_once(
        store_factory: StoreFactory) -> None:
    """enqueue() stores a queued run nobody owns; a worker's resume appends run_dequeued
    first, then executes it once; resuming it again returns the result without executing."""
    calls: list[str] = []
    store, clock = store_factory(), VirtualClock(start=100.0)
    flow = counting_flow(calls)
    producer = Runtime(store, clock=clock, seed=1, owner="producer")
    run_id = producer.enqueue(flow, "ada", queue="emails")
    info = store.get_run(run_id)
    assert info is not None and info.status is RunStatus.QUEUED
    assert (info.owner, info.lease_expires_at) == (None, None)
    started = store.read(run_id)[0]
    assert isinstance(started, RunStarted) and started.queue == "emails"
    worker = Runtime(store, clock=clock, owner="worker", workflows=[flow])
    result = asyncio.run(worker.resume(run_id))
    assert result.status is RunStatus.COMPLETED and result.result == "hi ada"
    assert kinds(store, run_id)[:3] == ["run_started", "run_dequeued", "step"]
    assert asyncio.run(worker.resume(run_id)).result == "hi ada"
    assert calls == ["one", "two"]
    info = store.get_run(run_id)
    assert info is not None and info.owner is None


def test_enqueueing_an_existing_run_id_is_a_usage_error(store_factory: StoreFactory) -> None:
    """A second enqueue (or an enqueue over a started run) under one id is refused."""
    store = store_factory()
    rt = Runtime(store, clock=VirtualClock(), seed=2)
    flow = counting_flow([])
    rt.enqueue(flow, "a", run_id="dup")
    with pytest.raises(UsageError, match="'dup' already exists"):
        rt.enqueue(flow, "b", run_id="dup")
    with pytest.raises(UsageError, match="queue name"):
        rt.enqueue(flow, "c", queue="")


def test_resume_with_a_claimed_lease_executes_under_it(store_factory: StoreFactory) -> None:
    """resume(run_id, lease=...) does not acquire again: the run keeps the claim's epoch,
    and the lease is released when the run finishes."""
    calls: list[str] = []
    store, clock = store_factory(), VirtualClock(start=10.0)
    flow = counting_flow(calls)
    rt = Runtime(store, clock=clock, owner="w", workflows=[flow], seed=3)
    run_id = rt.enqueue(flow, "bo")
    lease = store.acquire(run_id, "w", now=clock.now(), ttl_s=30)
    assert asyncio.run(rt.resume(run_id, lease=lease)).status is RunStatus.COMPLETED
    info = store.get_run(run_id)
    assert info is not None and (info.owner, info.epoch) == (None, lease.epoch)
    assert kinds(store, run_id).count("run_dequeued") == 1
    with pytest.raises(UsageError, match="given the lease of run"):
        asyncio.run(rt.resume(run_id, lease=lease.__class__("other", "w", 1, 50.0)))


def test_recover_takes_queued_runs(store_factory: StoreFactory) -> None:
    """recover() executes queued runs too (each dequeued once)."""
    calls: list[str] = []
    store, clock = store_factory(), VirtualClock()
    flow = counting_flow(calls)
    rt = Runtime(store, clock=clock, workflows=[flow], seed=4)
    ids = [rt.enqueue(flow, str(n)) for n in range(3)]
    results = asyncio.run(rt.recover())
    assert sorted(r.run_id for r in results) == sorted(ids)
    assert all(r.status is RunStatus.COMPLETED for r in results)
    assert calls == ["one", "two"] * 3
    assert all(kinds(store, i).count("run_dequeued") == 1 for i in ids)


def test_a_parked_sleep_suspends_is_not_resumed_early_and_completes_after(
        store_factory: StoreFactory) -> None:
    """A sleep longer than park_timers_after_s journals a parked timer (durably) and
    suspends the run; a resume before wake_at suspends again without appending anything; a
    resume at wake_at fires the timer and finishes, every handler called once."""
    calls: list[str] = []
    store, clock = store_factory(), VirtualClock(start=1000.0, autojump=False)
    flow = sleeper(calls, 60)
    rt = Runtime(store, clock=clock, workflows=[flow], seed=5, park_timers_after_s=5)
    first = asyncio.run(rt.start(flow, run_id="nap"))
    assert (first.status, first.waiting_for) == (RunStatus.WAITING, "timer:1")
    timer = store.read("nap")[-1]
    assert isinstance(timer, TimerStarted) and timer.parked and timer.wake_at == 1060.0
    info = store.get_run("nap")
    assert info is not None and info.status is RunStatus.WAITING and info.owner is None
    last_seq = info.last_seq
    clock.advance(59.5)
    again = asyncio.run(rt.resume("nap"))
    assert (again.status, again.waiting_for) == (RunStatus.WAITING, "timer:1")
    info = store.get_run("nap")
    assert info is not None and info.last_seq == last_seq and info.owner is None
    clock.advance(0.5)
    done = asyncio.run(rt.resume("nap"))
    assert done.status is RunStatus.COMPLETED and done.result == "woke"
    assert calls == ["before", "after"]
    assert [e.kind for e in store.read("nap")].count("timer_fired") == 1


def test_a_parked_timer_stays_parked_for_a_runtime_that_does_not_park(
        store_factory: StoreFactory) -> None:
    """The journal decides: a runtime without park_timers_after_s resuming a parked timer
    early suspends again instead of sleeping in process."""
    calls: list[str] = []
    store, clock = store_factory(), VirtualClock(start=0.0, autojump=False)
    flow = sleeper(calls, 30)
    parking = Runtime(store, clock=clock, workflows=[flow], seed=6, park_timers_after_s=1)
    asyncio.run(parking.start(flow, run_id="p"))
    plain = Runtime(store, clock=clock, workflows=[flow])
    assert asyncio.run(plain.resume("p")).status is RunStatus.WAITING
    clock.advance(30)
    assert asyncio.run(plain.resume("p")).status is RunStatus.COMPLETED


def test_short_sleeps_and_runtimes_without_parking_sleep_in_process() -> None:
    """A sleep at or under the threshold (and any sleep with parking off) sleeps in process:
    one execution, and the journaled timer has no parked field (journals unchanged)."""
    for park in (None, 30.0):
        store, calls = Runtime(clock=VirtualClock(), seed=7).store, list[str]()
        flow = sleeper(calls, 30)
        rt = Runtime(store, clock=VirtualClock(), workflows=[flow], seed=7,
                     park_timers_after_s=park)
        assert asyncio.run(rt.start(flow, run_id="s")).status is RunStatus.COMPLETED
        timer = next(e for e in store.read("s") if isinstance(e, TimerStarted))
        assert "parked" not in json.loads(encode(timer))
        assert any(isinstance(e, TimerFired) for e in store.read("s"))


def test_a_run_started_in_place_has_no_queue_and_no_dequeue() -> None:
    """start() keeps today's journal: run_started without a queue field, no run_dequeued."""
    rt = Runtime(clock=VirtualClock(), seed=8)
    flow = counting_flow([])
    result = asyncio.run(rt.start(flow, "x", run_id="inplace"))
    events = rt.store.read("inplace")
    assert result.status is RunStatus.COMPLETED
    assert "queue" not in json.loads(encode(events[0]))
    assert not any(isinstance(e, RunDequeued) for e in events)


def test_a_negative_park_threshold_is_refused() -> None:
    """park_timers_after_s must be None or >= 0."""
    with pytest.raises(UsageError, match="park_timers_after_s"):
        Runtime(park_timers_after_s=-1)


def test_hand_back_stops_the_run_after_its_current_call_and_frees_it(
        store_factory: StoreFactory) -> None:
    """hand_back() lets the durable call in progress finish and be journaled, stops the run
    before its next call, releases the lease; another worker finishes it and no handler ran
    twice."""
    calls: list[str] = []
    store, clock = store_factory(), VirtualClock(start=0.0)

    async def main() -> None:
        gate = asyncio.Event()

        async def slow() -> str:
            calls.append("slow")
            await gate.wait()
            return "slept"

        @workflow(name="handed")
        async def flow(ctx: RunContext) -> str:
            first = await ctx.step("slow", slow)
            await ctx.step("next", lambda: mark(calls, "next", 1))
            return str(first)

        w1 = Runtime(store, clock=clock, owner="w1", workflows=[flow], seed=9)
        run_id = w1.enqueue(flow, run_id="h")
        task = asyncio.create_task(w1.resume(run_id))
        while calls != ["slow"]:
            await asyncio.sleep(0)
        assert w1.hand_back(run_id) and not w1.hand_back("nobody")
        gate.set()
        handed = await task
        assert handed.status is RunStatus.RUNNING and "handed back" in handed.reason
        info = store.get_run(run_id)
        assert info is not None and info.owner is None and info.status is RunStatus.RUNNING
        assert kinds(store, run_id) == ["run_started", "run_dequeued", "step"]
        w2 = Runtime(store, clock=clock, owner="w2", workflows=[flow])
        assert (await w2.resume(run_id)).result == "slept"

    asyncio.run(main())
    assert calls == ["slow", "next"]


def test_a_run_woken_with_nothing_to_do_records_that_it_waits_again(
        store_factory: StoreFactory) -> None:
    """Resumed after a resolution for a later wait (and again under a parked timer), a run
    still waiting appends run_waiting: status waiting, due at its open wait's deadline or its
    timer; a run whose own wait made it waiting appends nothing more."""
    store, clock = store_factory(), VirtualClock(start=0.0, autojump=False)

    @workflow(name="later")
    async def later(ctx: RunContext) -> str:
        first = await ctx.wait_for("a", timeout_s=100)
        await ctx.sleep(50)
        second = await ctx.wait_for("b")
        return f"{first}{second}"

    rt = Runtime(store, clock=clock, workflows=[later], seed=10, park_timers_after_s=1)
    asyncio.run(rt.start(later, run_id="l"))
    rt.resolve("l", "b", "B", early=True)
    info = store.get_run("l")
    assert info is not None and info.status is RunStatus.RUNNING
    assert asyncio.run(rt.resume("l")).status is RunStatus.WAITING
    info = store.get_run("l")
    assert info is not None and (info.status, info.wake_at) == (RunStatus.WAITING, 100.0)
    assert kinds(store, "l")[-1] == "run_waiting"
    seq = info.last_seq
    assert asyncio.run(rt.resume("l")).status is RunStatus.WAITING
    info = store.get_run("l")
    assert info is not None and info.last_seq == seq
    rt.resolve("l", "a", "A")
    assert asyncio.run(rt.resume("l")).waiting_for == "timer:1"
    info = store.get_run("l")
    assert info is not None and (info.status, info.wake_at) == (RunStatus.WAITING, 50.0)
    clock.advance(50)
    assert asyncio.run(rt.resume("l")).result == "AB"


class ResolvingStore(MemoryStore):
    """A memory store that, once armed, lets ``resolve`` deliver a value at the moment the
    runtime reads the run's row for the ``nth`` time: a resolution racing in."""

    def __init__(self) -> None:
        super().__init__()
        self.armed: Any = None
        self.reads = 0

    def get_run(self, run_id: str) -> Any:
        if self.armed is not None:
            self.reads += 1
            if self.reads == self.armed[0]:
                fire, self.armed = self.armed[1], None
                fire()
        return super().get_run(run_id)


def test_a_resolution_racing_a_run_back_to_waiting_stays_a_wake_up() -> None:
    """If the value the run waits for arrives just as the run records that it waits again,
    nothing is recorded: the run stays due (running) and its next execution takes the value,
    instead of waiting forever with its answer in the journal."""
    store = ResolvingStore()

    @workflow(name="raced")
    async def raced(ctx: RunContext) -> str:
        first = await ctx.wait_for("a")
        second = await ctx.wait_for("b")
        return f"{first}{second}"

    rt = Runtime(store, clock=VirtualClock(), workflows=[raced], seed=11)
    asyncio.run(rt.start(raced, run_id="race"))
    rt.resolve("race", "b", "B", early=True)
    store.armed = (2, lambda: rt.resolve("race", "a", "A"))
    assert asyncio.run(rt.resume("race")).status is RunStatus.WAITING
    info = store.get_run("race")
    assert info is not None and info.status is RunStatus.RUNNING
    assert "run_waiting" not in kinds(store, "race")
    assert asyncio.run(rt.resume("race")).result == "AB"


class RacingStore(MemoryStore):
    """A memory store that runs ``fire`` just before storing the first ``wait_started`` for
    ``key``: a resolution landing between a run's last look and its wait."""

    def __init__(self) -> None:
        super().__init__()
        self.armed: Any = None

    def append(self, run_id: str, events: Any, **kwargs: Any) -> None:
        if self.armed is not None and getattr(events[0], "key", None) == self.armed[0] and \
                events[0].kind == "wait_started":
            fire, self.armed = self.armed[1], None
            fire()
        super().append(run_id, events, **kwargs)


def test_a_value_delivered_just_as_the_wait_begins_is_taken_not_slept_on() -> None:
    """An early resolution that lands between the run's look for it and its wait_started is
    the value the wait returns (recorded as arrived before the wait), instead of a run that
    suspends with its answer already in the journal and nobody to wake it."""
    store = RacingStore()

    @workflow(name="just_in_time")
    async def just_in_time(ctx: RunContext) -> str:
        return str(await ctx.wait_for("a"))

    rt = Runtime(store, clock=VirtualClock(), workflows=[just_in_time], seed=12)
    store.armed = ("a", lambda: rt.resolve("jit", "a", "A", early=True))
    result = asyncio.run(rt.start(just_in_time, run_id="jit"))
    assert (result.status, result.result) == (RunStatus.COMPLETED, "A")
    assert "wait_started" not in kinds(store, "jit")
    replayed = Runtime(store, clock=VirtualClock(), workflows=[just_in_time])
    assert asyncio.run(replayed.resume("jit")).result == "A"
