"""The worker loop: claiming due runs within its limits, executing each once, waking for
resolutions, parked timers and expired leases, losing a run to a takeover, and stopping
gracefully (hand back, grace, release, leave the registry). Real clocks, short times."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.conftest import StoreFactory
from tether import RunContext, RunStatus, Runtime, UsageError, workflow
from tether.clock import SystemClock
from tether.errors import StoreError
from tether.runtime.worker import Worker, WorkerOutcome
from tether.store.base import Lease, Store, WorkQueue
from tether.store.memory import MemoryStore

#: The longest any test here waits for its condition (a hang guard, not a timing assert).
PATIENCE_S = 20.0


def mark(calls: list[Any], name: Any, value: Any) -> Any:
    """Note a handler invocation; return the handler's value."""
    calls.append(name)
    return value


@pytest.fixture(params=["memory", "sqlite",
                        pytest.param("postgres", marks=pytest.mark.postgres)])
def queue_store(request: pytest.FixtureRequest, tmp_path: Any) -> Any:
    """A fresh store of each kind that is a work queue."""
    dsn = request.getfixturevalue("postgres_dsn") if request.param == "postgres" else None
    factory = StoreFactory(request.param, tmp_path, dsn)
    store = factory()
    if not isinstance(store, WorkQueue):
        pytest.fail(f"{type(store).__name__} is not a WorkQueue")
    yield store
    factory.close_all()


def runtime(store: Store, *flows: Any, owner: str = "w1", ttl_s: float = 5.0) -> Runtime:
    return Runtime(store, clock=SystemClock(), workflows=flows, owner=owner, lease_ttl_s=ttl_s)


async def serve(worker: Worker, until: Callable[[], bool],
                then: Callable[[], Awaitable[None]] | None = None) -> None:
    """Run ``worker`` until ``until()`` holds (checked every few ms), then stop it."""
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))

    async def watch() -> None:
        while not until():
            if task.done():
                task.result()
                raise AssertionError("the worker stopped by itself")
            await asyncio.sleep(0.005)
        if then is not None:
            await then()

    try:
        await asyncio.wait_for(watch(), PATIENCE_S)
    finally:
        stop.set()
        await asyncio.wait_for(task, PATIENCE_S)


def status(store: Store, run_id: str) -> RunStatus | None:
    info = store.get_run(run_id)
    return None if info is None else info.status


def test_a_worker_executes_every_queued_run_once_and_leaves_the_registry(
        queue_store: Any) -> None:
    """Ten queued runs, three at a time: each completes, each handler ran once, and the
    worker is registered while it serves and gone after."""
    calls: list[int] = []
    seen_registered: list[bool] = []

    @workflow(name="greet")
    async def greet(ctx: RunContext, n: int) -> str:
        seen_registered.append(any(w.name == "w1" for w in queue_store.workers()))
        return str(await ctx.step("hi", lambda: mark(calls, n, f"hi {n}")))

    rt = runtime(queue_store, greet)
    ids = [rt.enqueue(greet, n) for n in range(10)]
    worker = Worker(rt, concurrency=3, poll_s=0.05)
    asyncio.run(serve(worker, lambda: all(
        status(queue_store, i) is RunStatus.COMPLETED for i in ids)))
    assert sorted(calls) == list(range(10))
    assert worker.counts["completed"] == 10 and worker.counts["claimed"] == 10
    assert all(seen_registered) and queue_store.workers() == []


def test_concurrency_and_queue_limits_hold_and_no_queue_starves(queue_store: Any) -> None:
    """Queue a (limit 2) holds six runs queued before b's one (limit 1); with concurrency 3
    at most two of a and one of b run at once, and b's run starts while a still has a
    backlog."""
    gate = asyncio.Event()
    active: Counter[str] = Counter()
    peak: Counter[str] = Counter()
    started: list[str] = []

    @workflow(name="hold")
    async def hold(ctx: RunContext, queue: str) -> str:
        active[queue] += 1
        peak[queue] = max(peak[queue], active[queue])
        started.append(queue)
        await gate.wait()
        active[queue] -= 1
        return str(await ctx.step("done", lambda: queue))

    rt = runtime(queue_store, hold)
    ids = [rt.enqueue(hold, "a", queue="a") for _ in range(6)]
    ids.append(rt.enqueue(hold, "b", queue="b"))
    worker = Worker(rt, queues={"a": 2, "b": 1}, concurrency=3, poll_s=0.02)

    async def release() -> None:
        gate.set()

    asyncio.run(serve(worker, lambda: len(started) == 3, then=release))
    assert sorted(started) == ["a", "a", "b"]
    rest = Worker(rt, queues={"a": 2, "b": 1}, concurrency=3, poll_s=0.02)
    asyncio.run(serve(rest, lambda: all(status(queue_store, i) is RunStatus.COMPLETED
                                        for i in ids)))
    assert peak == Counter({"a": 2, "b": 1})


def test_a_resolution_and_a_parked_timer_wake_the_worker(queue_store: Any) -> None:
    """A run that waits is given back; once resolved from outside the worker continues it;
    its parked timer suspends it again and the worker finishes it when the timer is due."""
    calls: list[str] = []

    @workflow(name="patient")
    async def patient(ctx: RunContext) -> str:
        answer = await ctx.wait_for("go")
        await ctx.sleep(0.3)
        await ctx.step("after", lambda: mark(calls, "after", 1))
        return str(answer)

    rt = runtime(queue_store, patient)
    run_id = rt.enqueue(patient)
    outcomes: list[WorkerOutcome] = []
    worker = Worker(rt, poll_s=5.0, park_timers_after_s=0.1, on_outcome=outcomes.append)

    async def resolve_when_waiting() -> None:
        rt.resolve(run_id, "go", "yes")

    asyncio.run(serve(worker, lambda: status(queue_store, run_id) is RunStatus.WAITING,
                      then=resolve_when_waiting))
    worker = Worker(rt, poll_s=5.0, park_timers_after_s=0.1, on_outcome=outcomes.append)
    asyncio.run(serve(worker, lambda: status(queue_store, run_id) is RunStatus.COMPLETED))
    assert [o.outcome for o in outcomes] == ["waiting", "waiting", "completed"]
    assert outcomes[1].detail == "for timer:1" and calls == ["after"]


def test_a_run_whose_owner_died_is_taken_over_after_its_lease_expires(
        queue_store: Any) -> None:
    """A run held by a dead worker (its lease never renewed) is claimed once the lease
    expires, and finished."""
    @workflow(name="orphan")
    async def orphan(ctx: RunContext) -> int:
        return int(await ctx.step("one", lambda: 1))

    rt = runtime(queue_store, orphan, owner="survivor")
    run_id = rt.enqueue(orphan)
    dead = queue_store.acquire(run_id, "dead", now=SystemClock().now(), ttl_s=0.3)
    worker = Worker(rt, poll_s=0.05)
    asyncio.run(serve(worker, lambda: status(queue_store, run_id) is RunStatus.COMPLETED))
    info = queue_store.get_run(run_id)
    assert info is not None and info.epoch == dead.epoch + 1


def test_a_run_taken_over_mid_execution_is_dropped_as_lost(queue_store: Any) -> None:
    """When another worker takes a run over while this one executes it, this worker stops
    before its next durable call, reports the run lost and carries on."""
    gate = asyncio.Event()

    @workflow(name="contested")
    async def contested(ctx: RunContext) -> int:
        await ctx.step("one", lambda: 1)
        await gate.wait()
        return int(await ctx.step("two", lambda: 2))

    rt = runtime(queue_store, contested)
    run_id = rt.enqueue(contested)
    outcomes: list[WorkerOutcome] = []
    worker = Worker(rt, poll_s=0.05, on_outcome=outcomes.append)

    def stepped() -> bool:
        return any(e.kind == "step" for e in queue_store.read(run_id))

    async def steal() -> None:
        # A thief whose clock says the lease ran out takes the run over.
        queue_store.acquire(run_id, "thief", now=SystemClock().now() + 3600, ttl_s=10)
        gate.set()
        while not outcomes:
            await asyncio.sleep(0.005)

    asyncio.run(serve(worker, stepped, then=steal))
    assert [o.outcome for o in outcomes] == ["lost"]
    assert [e.kind for e in queue_store.read(run_id)][-1] == "step"


def test_a_stop_hands_runs_back_after_their_current_call(queue_store: Any) -> None:
    """On stop, a run inside a slow step finishes that step (journaled), is handed back with
    its lease released, and a second worker finishes it: no handler ran twice."""
    gate = asyncio.Event()
    calls: list[str] = []

    async def slow() -> str:
        calls.append("slow")
        await gate.wait()
        return "slow done"

    @workflow(name="drained")
    async def drained(ctx: RunContext) -> str:
        first = await ctx.step("slow", slow)
        await ctx.step("next", lambda: mark(calls, "next", 1))
        return str(first)

    rt = runtime(queue_store, drained)
    run_id = rt.enqueue(drained)
    outcomes: list[WorkerOutcome] = []
    worker = Worker(rt, poll_s=0.05, grace_s=30, on_outcome=outcomes.append)

    async def open_gate_soon() -> None:
        asyncio.get_running_loop().call_later(0.05, gate.set)

    asyncio.run(serve(worker, lambda: calls == ["slow"], then=open_gate_soon))
    assert [o.outcome for o in outcomes] == ["handed back"]
    info = queue_store.get_run(run_id)
    assert info is not None and info.owner is None and info.status is RunStatus.RUNNING
    assert queue_store.workers() == []
    second = Worker(runtime(queue_store, drained, owner="w2"), poll_s=0.05)
    asyncio.run(serve(second, lambda: status(queue_store, run_id) is RunStatus.COMPLETED))
    assert calls == ["slow", "next"]


def test_a_run_still_busy_after_the_grace_is_cancelled_and_released(queue_store: Any) -> None:
    """A run whose call outlasts grace_s is cancelled and its lease released at once."""
    started = asyncio.Event()

    @workflow(name="stuck")
    async def stuck(ctx: RunContext) -> None:
        async def forever() -> None:
            started.set()
            await asyncio.Event().wait()

        await ctx.step("forever", forever)

    rt = runtime(queue_store, stuck)
    run_id = rt.enqueue(stuck)
    outcomes: list[WorkerOutcome] = []
    worker = Worker(rt, poll_s=0.05, grace_s=0.05, on_outcome=outcomes.append)
    asyncio.run(serve(worker, started.is_set))
    assert [o.outcome for o in outcomes] == ["handed back"]
    assert "cancelled" in outcomes[0].detail
    info = queue_store.get_run(run_id)
    assert info is not None and info.owner is None


def test_a_run_of_an_unknown_workflow_is_left_for_a_worker_that_knows_it(
        queue_store: Any) -> None:
    """A worker not given a run's workflow does not execute it nor claim it over and over:
    it keeps the claim's lease (unrenewed) and reports it once per claim."""
    @workflow(name="elsewhere")
    async def elsewhere(ctx: RunContext) -> int:
        return 1

    producer = runtime(queue_store, elsewhere, owner="producer")
    run_id = producer.enqueue(elsewhere)
    outcomes: list[WorkerOutcome] = []
    worker = Worker(runtime(queue_store, owner="ignorant", ttl_s=30), poll_s=0.01,
                    on_outcome=outcomes.append)

    async def idle_a_while() -> None:
        await asyncio.sleep(0.2)

    asyncio.run(serve(worker, lambda: bool(outcomes), then=idle_a_while))
    assert [o.outcome for o in outcomes] == ["unknown workflow"]
    info = queue_store.get_run(run_id)
    assert info is not None and info.status is RunStatus.QUEUED and info.owner == "ignorant"


@pytest.mark.parametrize(("kwargs", "said"), [
    ({"concurrency": 0}, "concurrency must be a whole number"),
    ({"queues": {}}, "at least one queue"),
    ({"queues": {"a": 0}}, "limit of queue 'a'"),
    ({"queues": {"": 1}}, "queue name"),
    ({"poll_s": 0}, "poll_s"),
    ({"grace_s": -1}, "grace_s"),
])
def test_bad_worker_settings_are_usage_errors(kwargs: dict[str, Any], said: str) -> None:
    """Settings that cannot work are refused when the worker is made."""
    with pytest.raises(UsageError, match=said):
        Worker(Runtime(), **kwargs)


def test_a_store_that_is_not_a_work_queue_is_refused() -> None:
    """A third-party store without claim/next_wake/… is named in the error."""
    class Plain:
        pass

    with pytest.raises(UsageError, match="Plain is not a work queue"):
        Worker(Runtime(store=Plain()))  # type: ignore[arg-type]


@pytest.mark.postgres
def test_a_postgres_worker_is_woken_by_notify_not_by_its_poll(postgres_dsn: str,
                                                              tmp_path: Any) -> None:
    """With poll_s far beyond the test's patience and nothing pending, a run enqueued from
    another connection is still executed: the store's NOTIFY woke the idle worker."""
    factory = StoreFactory("postgres", tmp_path, postgres_dsn)
    try:
        store = factory()
        producer_store = factory.peer(store)

        @workflow(name="woken")
        async def woken(ctx: RunContext) -> str:
            return "awake"

        worker = Worker(runtime(store, woken), poll_s=3600)
        ids: list[str] = []

        async def enqueue_while_idle() -> None:
            await asyncio.sleep(0.3)  # the worker found nothing and waits now
            ids.append(runtime(producer_store, woken, owner="producer").enqueue(woken))
            while status(store, ids[0]) is not RunStatus.COMPLETED:
                await asyncio.sleep(0.01)

        asyncio.run(serve(worker, lambda: True, then=enqueue_while_idle))
        assert worker.counts["completed"] == 1
    finally:
        factory.close_all()


class FlakyStore(MemoryStore):
    """A memory store whose first ``failures`` claims fail, as a store that is down does."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def claim(self, owner: str, **kwargs: Any) -> list[Lease]:
        if self.failures > 0:
            self.failures -= 1
            raise StoreError("the store is down")
        return super().claim(owner, **kwargs)


def test_a_worker_outlives_a_store_that_fails_for_a_while() -> None:
    """Claims that fail are reported to on_error and tried again; queued runs still run."""
    store = FlakyStore(failures=3)

    @workflow(name="eventually")
    async def eventually(ctx: RunContext) -> int:
        return 1

    rt = runtime(store, eventually)
    run_id = rt.enqueue(eventually)
    errors: list[Exception] = []
    worker = Worker(rt, poll_s=0.01, on_error=errors.append, name="renamed")
    asyncio.run(serve(worker, lambda: status(store, run_id) is RunStatus.COMPLETED))
    assert len(errors) == 3 and worker.counts["store errors"] == 3
    assert rt.owner == "renamed" and worker.name == "renamed"


def test_a_run_woken_with_nothing_to_do_waits_again_instead_of_being_claimed_over_and_over(
        queue_store: Any) -> None:
    """A resolution delivered early for a later wait makes the run due; the worker resumes
    it, finds it still waiting on the first key, and the run is waiting again (not running
    and claimable, which had workers re-claim it in a loop); the real resolution then
    finishes it."""
    @workflow(name="two_waits")
    async def two_waits(ctx: RunContext) -> str:
        first = await ctx.wait_for("a")
        second = await ctx.wait_for("b")
        return f"{first}{second}"

    rt = runtime(queue_store, two_waits)
    run_id = rt.enqueue(two_waits)
    worker = Worker(rt, poll_s=0.01)

    async def resolve_early_then_idle() -> None:
        rt.resolve(run_id, "b", "B", early=True)
        while worker.counts["waiting"] < 2:
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.2)  # long enough for a loop to show (it made hundreds)

    asyncio.run(serve(worker, lambda: worker.counts["waiting"] == 1,
                      then=resolve_early_then_idle))
    assert worker.counts["claimed"] == 2
    assert status(queue_store, run_id) is RunStatus.WAITING
    rt.resolve(run_id, "a", "A")
    again = Worker(rt, poll_s=0.01)
    asyncio.run(serve(again, lambda: status(queue_store, run_id) is RunStatus.COMPLETED))
    assert asyncio.run(rt.resume(run_id)).result == "AB"


def test_hurry_cuts_the_grace_short(queue_store: Any) -> None:
    """With an hour of grace, a run stuck in a call is still cancelled and handed back as
    soon as hurry() is called (tether worker's second signal)."""
    started = asyncio.Event()

    @workflow(name="stuck_long")
    async def stuck_long(ctx: RunContext) -> None:
        async def forever() -> None:
            started.set()
            await asyncio.Event().wait()

        await ctx.step("forever", forever)

    rt = runtime(queue_store, stuck_long)
    run_id = rt.enqueue(stuck_long)
    worker = Worker(rt, poll_s=0.05, grace_s=3600)

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        await asyncio.wait_for(started.wait(), PATIENCE_S)
        stop.set()
        await asyncio.sleep(0.05)
        worker.hurry()
        await asyncio.wait_for(task, PATIENCE_S)

    asyncio.run(main())
    assert worker.counts["handed back"] == 1
    info = queue_store.get_run(run_id)
    assert info is not None and info.owner is None


def test_a_restarted_worker_takes_back_its_own_runs_at_once(queue_store: Any) -> None:
    """Runs still leased to a worker's name (its previous process crashed) are taken back by
    the worker restarted under that name without waiting for the lease; a worker under
    another name leaves them alone."""
    @workflow(name="mine")
    async def mine(ctx: RunContext) -> int:
        return int(await ctx.step("one", lambda: 1))

    rt = runtime(queue_store, mine, owner="steady")
    run_id = rt.enqueue(mine)
    queue_store.acquire(run_id, "steady", now=SystemClock().now(), ttl_s=3600)
    stranger = Worker(runtime(queue_store, mine, owner="stranger"), poll_s=0.01)

    async def idle_a_while() -> None:
        await asyncio.sleep(0.2)

    asyncio.run(serve(stranger, lambda: True, then=idle_a_while))
    assert stranger.counts["claimed"] == 0 and status(queue_store, run_id) is RunStatus.QUEUED
    restarted = Worker(rt, poll_s=0.01)
    asyncio.run(serve(restarted, lambda: status(queue_store, run_id) is RunStatus.COMPLETED))
    assert restarted.counts["completed"] == 1


def test_queues_with_backlogs_share_the_slots_evenly(queue_store: Any) -> None:
    """Two queues with backlogs and room for two runs at once: each always has one running.
    As runs end one at a time, oldest first, the freed slot goes to the queue with fewer runs
    executing, so starts alternate a, b, a, b … (a plain rotation gave one queue two slots)."""
    gates: dict[str, asyncio.Event] = {}
    started: list[tuple[str, str]] = []

    @workflow(name="turn")
    async def turn(ctx: RunContext, queue: str) -> str:
        gates[ctx.run_id] = asyncio.Event()
        started.append((queue, ctx.run_id))
        await gates[ctx.run_id].wait()
        return queue

    rt = runtime(queue_store, turn)
    for _ in range(4):
        rt.enqueue(turn, "a", queue="a")
        rt.enqueue(turn, "b", queue="b")
    worker = Worker(rt, queues={"a": 2, "b": 2}, concurrency=2, poll_s=0.01)

    async def release_oldest_one_by_one() -> None:
        for released in range(6):
            while len(started) < released + 2:
                await asyncio.sleep(0.005)
            gates[started[released][1]].set()
        while len(started) < 8:
            await asyncio.sleep(0.005)
        for gate in gates.values():
            gate.set()

    asyncio.run(serve(worker, lambda: len(started) >= 2, then=release_oldest_one_by_one))
    order = [queue for queue, _ in started]
    assert order[:2] in (["a", "b"], ["b", "a"])
    assert all(order[i] != order[i + 1] for i in range(len(order) - 1)), order
