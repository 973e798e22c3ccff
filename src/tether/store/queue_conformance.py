"""A conformance kit for the work queue (:class:`~tether.store.base.WorkQueue`): which runs a
claim hands out, in what order, to whom, and never to two claimers; ``next_wake``; the worker
registry. Run against memory, SQLite and PostgreSQL alike, like :mod:`tether.store.conformance`.

>>> from tether.store.memory import MemoryStore
>>> QueueConformance(MemoryStore, max_examples=5).run("enqueued_run_is_due")

Times are the callers' clock, as everywhere in the store contract: the checks pass ``now``
explicitly and never sleep. Requires ``hypothesis``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Protocol, cast

try:
    from hypothesis import given, settings
except ImportError as exc:  # pragma: no cover - only without the test extra
    raise ImportError("tether.store.queue_conformance needs hypothesis: "
                      "pip install 'tether[test]'") from exc

from tether.errors import LeaseLost, UsageError
from tether.events import (
    Event,
    RunDequeued,
    RunFinished,
    RunStarted,
    RunStatus,
    StepRecorded,
    TimerFired,
    TimerStarted,
    WaitExpired,
    WaitResolved,
    WaitStarted,
)
from tether.store.base import Lease, Store, WorkerInfo, WorkQueue
from tether.store.conformance import ConformanceKit, _check, _raises
from tether.store.queue_model import QueueModel, queue_ops

__all__ = ["QueueConformance"]

_TTL_S = 30.0


class QueueStore(Store, WorkQueue, Protocol):
    """A store that is also a work queue: what this kit tests."""


def _enqueued(at: float, queue: str = "default") -> RunStarted:
    return RunStarted(seq=1, at=at, workflow="wf", seed=7, queue=queue)


class QueueConformance(ConformanceKit):
    """The work-queue contract as checks; :meth:`run` runs some or all of them."""

    CHECKS: ClassVar[tuple[str, ...]] = (
        "enqueued_run_is_due", "live_lease_is_never_claimed", "released_running_run_is_due",
        "resolution_makes_a_waiting_run_due", "deadlines_and_parked_timers",
        "infinite_times", "queues_order_and_limit", "started_runs_come_first", "next_wake",
        "worker_registry",
        "claim_arguments", "concurrent_claimers", "claims_follow_the_model",
    )
    SUBJECT = "work queue conformance"

    def __init__(self, make_store: Callable[[], Store], *,
                 open_peer: Callable[[Store], Store] | None = None,
                 max_examples: int = 30) -> None:
        super().__init__(make_store, open_peer=open_peer, max_examples=max_examples)

    def _queue(self, store: Store) -> QueueStore:
        _check(isinstance(store, WorkQueue), f"{type(store).__name__} is not a WorkQueue")
        return cast(QueueStore, store)

    def _append(self, store: Store, run_id: str, events: Sequence[Event], *,
                lease: Lease | None = None) -> None:
        store.append(run_id, list(events), expected_last_seq=events[0].seq - 1, lease=lease)

    # -- checks ---------------------------------------------------------------------------

    def check_enqueued_run_is_due(self) -> None:
        """An enqueued run is queued, due from its start time, claimed once with a fresh lease
        (epoch 1, until now + ttl), and run_dequeued under that lease makes it running."""
        with self._store() as (raw,):
            store, run_id = self._queue(raw), self._fresh_id()
            self._append(store, run_id, [_enqueued(at=10.0, queue="mail")])
            info = store.get_run(run_id)
            _check(info is not None and info.status is RunStatus.QUEUED
                   and info.queue == "mail" and info.wake_at == 10.0 and info.owner is None,
                   f"an enqueued run's index row is {info}")
            _check(store.claim("w1", now=9.0, ttl_s=_TTL_S) == [],
                   "a run enqueued at 10 was claimed at 9")
            got = store.claim("w1", now=10.0, ttl_s=_TTL_S)
            _check(got == [Lease(run_id, "w1", 1, 10.0 + _TTL_S)], f"claim gave {got}")
            info = store.get_run(run_id)
            _check(info is not None and info.lease == got[0], f"claimed run's row is {info}")
            _check(store.claim("w2", now=11.0, ttl_s=_TTL_S) == [],
                   "a claimed run was claimed again while its lease was live")
            self._append(store, run_id, [RunDequeued(seq=2, at=11.0)], lease=got[0])
            info = store.get_run(run_id)
            _check(info is not None and info.status is RunStatus.RUNNING and info.wake_at is None,
                   f"after run_dequeued the row is {info}")

    def check_live_lease_is_never_claimed(self) -> None:
        """A run started in place under a live lease is never claimed; once the lease expired
        it is (its owner died), with the epoch bumped so the old owner is fenced off."""
        with self._store() as (raw,):
            store, run_id = self._queue(raw), self._fresh_id()
            held = Lease(run_id, "w1", 1, 40.0)
            self._append(store, run_id, [RunStarted(seq=1, at=10.0, workflow="wf", seed=1)],
                         lease=held)
            info = store.get_run(run_id)
            _check(info is not None and info.queue == "default" and info.wake_at is None,
                   f"a run started in place has the row {info}")
            for now in (10.0, 25.0, 39.999):
                _check(store.claim("w2", now=now, ttl_s=_TTL_S, limit=5) == [],
                       f"a run leased until 40 was claimed at {now}")
                _check(store.claim("w1", now=now, ttl_s=_TTL_S, limit=5) == [],
                       f"a run leased until 40 was claimed by its own owner at {now}")
            got = store.claim("w2", now=40.0, ttl_s=_TTL_S)
            _check(got == [Lease(run_id, "w2", 2, 40.0 + _TTL_S)],
                   f"an expired lease's run was claimed as {got}")
            _raises(LeaseLost, "an append by the dead owner", store.append, run_id,
                    [StepRecorded(seq=2, at=41.0, pos=0, call="step", name="s")],
                    expected_last_seq=1, lease=held)

    def check_released_running_run_is_due(self) -> None:
        """A running run released without finishing or waiting is claimable at once; a run
        released while waiting without a deadline is not, nor is a finished one."""
        with self._store() as (raw,):
            store = self._queue(raw)
            ids = {name: self._fresh_id(f"-{name}") for name in ("running", "waiting", "done")}
            later: dict[str, list[Event]] = {
                "running": [StepRecorded(seq=2, at=11.0, pos=0, call="step", name="s")],
                "waiting": [WaitStarted(seq=2, at=11.0, pos=0, key="k")],
                "done": [RunFinished(seq=2, at=11.0, status=RunStatus.COMPLETED)],
            }
            for name, run_id in ids.items():
                lease = Lease(run_id, "w1", 1, 100.0)
                self._append(store, run_id, [RunStarted(seq=1, at=10.0, workflow="wf",
                                                        seed=1)], lease=lease)
                self._append(store, run_id, later[name], lease=lease)
                _check(store.release(lease), f"release of {run_id!r} failed")
            got = store.claim("w2", now=12.0, ttl_s=_TTL_S, limit=10)
            _check([g.run_id for g in got] == [ids["running"]],
                   f"claim after releases gave {got}, want only the running run")
            _check(got[0].epoch == 2, f"the released run's claim has epoch {got[0].epoch}")

    def check_resolution_makes_a_waiting_run_due(self) -> None:
        """A waiting run is not due until a resolution arrives; then it is due from the
        resolution's time, and a resolution that arrives while a worker holds it waits for
        that worker to let go."""
        with self._store() as (raw,):
            store, run_id = self._queue(raw), self._fresh_id()
            lease = Lease(run_id, "w1", 1, 100.0)
            self._append(store, run_id, [RunStarted(seq=1, at=10.0, workflow="wf", seed=1),
                                         WaitStarted(seq=2, at=10.0, pos=0, key="k")],
                         lease=lease)
            _check(store.claim("w2", now=200.0, ttl_s=_TTL_S) == [],
                   "a run waiting without a deadline was claimed (its lease expired)")
            store.release(Lease(run_id, "w1", 1, 100.0))
            _check(store.claim("w2", now=200.0, ttl_s=_TTL_S) == [],
                   "a run waiting without a deadline was claimed")
            _check(store.next_wake() is None, f"next_wake {store.next_wake()} with nothing due")
            self._append(store, run_id, [WaitResolved(seq=3, at=50.0, key="k", value=1)])
            info = store.get_run(run_id)
            _check(info is not None and info.status is RunStatus.RUNNING
                   and info.wake_at == 50.0, f"after the resolution the row is {info}")
            got = store.claim("w2", now=200.0, ttl_s=_TTL_S)
            _check([g.run_id for g in got] == [run_id], f"a resolved run was not due: {got}")

    def check_deadlines_and_parked_timers(self) -> None:
        """A wait's deadline and a parked timer make a waiting run due then, not before; the
        timer firing (or the wait expiring) clears wake_at; a timer that is not parked changes
        nothing."""
        with self._store() as (raw,):
            store = self._queue(raw)
            cases: list[tuple[Event, Event]] = [
                (WaitStarted(seq=2, at=10.0, pos=0, key="k", deadline=60.0),
                 WaitExpired(seq=3, at=61.0, pos=0, key="k")),
                (TimerStarted(seq=2, at=10.0, pos=0, wake_at=60.0, parked=True),
                 TimerFired(seq=3, at=61.0, pos=0)),
            ]
            for suspend, wake in cases:
                run_id = self._fresh_id()
                lease = Lease(run_id, "w1", 1, 20.0)
                self._append(store, run_id, [RunStarted(seq=1, at=10.0, workflow="wf", seed=1),
                                             suspend], lease=lease)
                store.release(lease)
                info = store.get_run(run_id)
                _check(info is not None and info.status is RunStatus.WAITING
                       and info.wake_at == 60.0, f"after {suspend.kind} the row is {info}")
                _check(store.next_wake() == 60.0, f"next_wake is {store.next_wake()}, not 60")
                _check(store.claim("w2", now=59.9, ttl_s=_TTL_S) == [],
                       f"{suspend.kind} due at 60 was claimed at 59.9")
                got = store.claim("w2", now=60.0, ttl_s=_TTL_S)
                _check([g.run_id for g in got] == [run_id], f"{suspend.kind} at 60: {got}")
                self._append(store, run_id, [wake], lease=got[0])
                info = store.get_run(run_id)
                _check(info is not None and info.status is RunStatus.RUNNING
                       and info.wake_at is None, f"after {wake.kind} the row is {info}")
                store.append(run_id, [RunFinished(seq=4, at=62.0, status=RunStatus.COMPLETED)],
                             expected_last_seq=3, lease=got[0])
            run_id = self._fresh_id()
            self._append(store, run_id, [RunStarted(seq=1, at=10.0, workflow="wf", seed=1),
                                         TimerStarted(seq=2, at=10.0, pos=0, wake_at=60.0)],
                         lease=Lease(run_id, "w1", 1, 20.0))
            info = store.get_run(run_id)
            _check(info is not None and info.status is RunStatus.RUNNING
                   and info.wake_at is None, f"after an in-process timer the row is {info}")

    def check_infinite_times(self) -> None:
        """A wait with an infinite deadline is stored and never due (next_wake says infinity);
        one with a deadline of minus infinity is due at once."""
        with self._store() as (raw,):
            store = self._queue(raw)
            for deadline, due_at in ((float("inf"), None), (float("-inf"), -1e300)):
                run_id = self._fresh_id()
                lease = Lease(run_id, "w1", 1, 20.0)
                self._append(store, run_id, [RunStarted(seq=1, at=10.0, workflow="wf", seed=1)],
                             lease=lease)
                self._append(store, run_id, [WaitStarted(seq=2, at=10.0, pos=0, key="k",
                                                         deadline=deadline)], lease=lease)
                store.release(lease)
                info = store.get_run(run_id)
                _check(info is not None and info.wake_at == deadline,
                       f"a wait with deadline {deadline} has the row {info}")
                got = store.claim("w2", now=1e300 if due_at is None else due_at, ttl_s=_TTL_S)
                want = [] if due_at is None else [run_id]
                _check([g.run_id for g in got] == want,
                       f"deadline {deadline}: claim gave {got}, want {want}")
                if due_at is None:
                    _check(store.next_wake() == deadline,
                           f"next_wake with only an infinite deadline is {store.next_wake()}")
                else:
                    self._append(store, run_id, [RunFinished(seq=3, at=11.0,
                                                             status=RunStatus.CANCELLED)],
                                 lease=got[0])

    def check_queues_order_and_limit(self) -> None:
        """claim serves only the named queues (None: all, []: none), oldest due first across
        queues, at most ``limit`` runs."""
        with self._store() as (raw,):
            store = self._queue(raw)
            plan = [("a", 5.0), ("b", 1.0), ("a", 3.0), ("c", 2.0), ("b", 4.0)]
            ids = []
            for queue, at in plan:
                ids.append(run_id := self._fresh_id(f"-{queue}"))
                self._append(store, run_id, [_enqueued(at=at, queue=queue)])
            by_time = [ids[i] for i in sorted(range(len(plan)), key=lambda i: plan[i][1])]
            _check(store.claim("w", now=10.0, ttl_s=_TTL_S, queues=[]) == [],
                   "claim(queues=[]) took a run")
            _check(store.claim("w", now=10.0, ttl_s=_TTL_S, limit=0) == [],
                   "claim(limit=0) took a run")
            got = [g.run_id for g in store.claim("w", now=10.0, ttl_s=_TTL_S, queues=["a", "c"],
                                                 limit=2)]
            _check(got == [ids[3], ids[2]], f"claim(queues=[a, c], limit=2) gave {got}")
            got = [g.run_id for g in store.claim("w", now=10.0, ttl_s=_TTL_S, limit=10)]
            want = [r for r in by_time if r not in (ids[3], ids[2])]
            _check(got == want, f"claim(limit=10) gave {got}, want {want} (oldest due first)")

    def check_started_runs_come_first(self) -> None:
        """Runs already under way (a dead owner's running run, a waiting run that became due)
        are claimed before queued runs that have not started, whatever their due times: a
        backlog of new work must not hold up a takeover or a timer that fired."""
        with self._store() as (raw,):
            store = self._queue(raw)
            started, waiting = self._fresh_id("-started"), self._fresh_id("-waiting")
            self._append(store, started, [_enqueued(at=0.0)])
            (dead,) = store.claim("dead", now=0.0, ttl_s=2.0)
            self._append(store, started, [RunDequeued(seq=2, at=0.1)], lease=dead)
            self._append(store, waiting, [_enqueued(at=0.0)])
            (held,) = store.claim("w1", now=0.0, ttl_s=_TTL_S)
            self._append(store, waiting, [RunDequeued(seq=2, at=0.2),
                                          TimerStarted(seq=3, at=0.2, pos=0, wake_at=5.0,
                                                       parked=True)], lease=held)
            _check(store.release(held), "the waiting run's lease was not released")
            fresh = []
            for at in (0.5, 1.0, 1.5):
                fresh.append(run_id := self._fresh_id("-queued"))
                self._append(store, run_id, [_enqueued(at=at)])
            got = [g.run_id for g in store.claim("w2", now=10.0, ttl_s=_TTL_S, limit=5)]
            want = [started, waiting, *fresh]
            _check(got == want, f"claim gave {got}, want {want} (started runs first, then "
                                "queued ones, each oldest due first)")

    def check_next_wake(self) -> None:
        """next_wake is the earliest time a pending run of the queues becomes due: wake_at, or
        the later lease expiry while a worker holds it; None when nothing is pending."""
        with self._store() as (raw,):
            store = self._queue(raw)
            _check(store.next_wake() is None, "next_wake of an empty store is not None")
            a, b = self._fresh_id("-a"), self._fresh_id("-b")
            self._append(store, a, [_enqueued(at=50.0, queue="a")])
            self._append(store, b, [_enqueued(at=20.0, queue="b")])
            _check(store.next_wake() == 20.0, f"next_wake() is {store.next_wake()}")
            _check(store.next_wake(queues=["a"]) == 50.0,
                   f"next_wake(a) is {store.next_wake(queues=['a'])}")
            _check(store.next_wake(queues=["z"]) is None, "next_wake of an unknown queue")
            _check(store.next_wake(queues=[]) is None, "next_wake(queues=[])")
            [lease] = store.claim("w", now=20.0, ttl_s=_TTL_S, queues=["b"])
            _check(store.next_wake(queues=["b"]) == 20.0 + _TTL_S,
                   f"next_wake(b) while claimed is {store.next_wake(queues=['b'])}")
            # Waiting for a resolution only, still held by its worker: nothing will make it
            # due by itself, however its lease ends.
            self._append(store, b, [RunDequeued(seq=2, at=21.0),
                                    WaitStarted(seq=3, at=21.0, pos=0, key="k")], lease=lease)
            _check(store.next_wake(queues=["b"]) is None,
                   f"next_wake(b) waiting without a deadline is {store.next_wake(queues=['b'])}")
            self._append(store, b, [RunFinished(seq=4, at=22.0, status=RunStatus.COMPLETED)],
                         lease=lease)
            _check(store.next_wake(queues=["b"]) is None, "next_wake(b) after b finished")

    def check_worker_registry(self) -> None:
        """beat inserts or replaces a worker's row by name; workers lists them by name; forget
        deletes one (forgetting an unknown name is no error)."""
        with self._store() as (raw,):
            store = self._queue(raw)
            one = WorkerInfo("w-b", "host1", 42, ("default", "mail"), 4, 1.0, 1.0)
            two = WorkerInfo("w-a", "host2", 7, (), 1, 2.0, 2.5)
            store.beat(one)
            store.beat(two)
            _check(store.workers() == [two, one], f"workers() gave {store.workers()}")
            later = WorkerInfo("w-b", "host1", 42, ("default", "mail"), 4, 1.0, 9.0,
                               stopping=True)
            store.beat(later)
            _check(store.workers() == [two, later], f"after a beat: {store.workers()}")
            store.forget("w-a")
            store.forget("nobody")
            _check(store.workers() == [later], f"after forget: {store.workers()}")

    def check_claim_arguments(self) -> None:
        """claim refuses an empty owner, a non-positive ttl, a negative limit and a bare
        string for queues with UsageError, taking nothing; an append enqueueing a run on an
        empty queue name (or one holding NUL) is refused too, storing nothing."""
        with self._store() as (raw,):
            store, run_id = self._queue(raw), self._fresh_id()
            self._append(store, run_id, [_enqueued(at=1.0)])
            bad: list[dict[str, Any]] = [
                {"owner": ""}, {"ttl_s": 0.0}, {"ttl_s": float("nan")}, {"limit": -1},
                {"queues": "default"},
            ]
            for override in bad:
                kwargs: dict[str, Any] = {"owner": "w", "now": 5.0, "ttl_s": _TTL_S, **override}
                _raises(UsageError, f"claim({override})", store.claim, **kwargs)
            info = store.get_run(run_id)
            _check(info is not None and info.owner is None, f"a refused claim took {info}")
            for queue in ("", "a\x00b"):
                bad_id = self._fresh_id()
                _raises(UsageError, f"enqueueing on queue {queue!r}", store.append, bad_id,
                        [_enqueued(at=1.0, queue=queue)], expected_last_seq=0)
                _check(store.get_run(bad_id) is None, f"a run on queue {queue!r} was stored")

    def check_concurrent_claimers(self) -> None:
        """Claimers racing on separate handles over the same due runs never both get one:
        every run is claimed exactly once."""
        with self._store(peers=3) as handles:
            store = self._queue(handles[0])
            ids = [self._fresh_id() for _ in range(40)]
            for n, run_id in enumerate(ids):
                self._append(store, run_id, [_enqueued(at=float(n % 7))])
            claims: list[list[Lease]] = [[] for _ in handles]
            errors: list[BaseException] = []

            def claimer(n: int, handle: QueueStore) -> None:
                try:
                    while got := handle.claim(f"w{n}", now=10.0, ttl_s=_TTL_S, limit=3):
                        claims[n].extend(got)
                except BaseException as exc:  # pragma: no cover - reported below
                    errors.append(exc)

            threads = [threading.Thread(target=claimer, args=(n, self._queue(h)))
                       for n, h in enumerate(handles)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            _check(not errors, f"a claimer raised {errors!r}")
            taken = [lease.run_id for got in claims for lease in got]
            _check(sorted(taken) == sorted(ids),
                   f"{len(taken)} claims of {len(ids)} runs; twice: "
                   f"{sorted({r for r in taken if taken.count(r) > 1})}")

    def check_claims_follow_the_model(self) -> None:
        """For random sequences of enqueues, starts, appends, claims, renewals, releases and
        clock ticks, every claim returns exactly what a reference model says is due, in its
        order, and next_wake agrees with the model."""
        with self._store() as (raw,):
            store = self._queue(raw)

            # Twice the examples of the other checks: the states that matter (a resolution of
            # a run waiting on a timer, a takeover after expiry) need long sequences.
            @settings(parent=self._settings(), max_examples=2 * self.max_examples)
            @given(ops=queue_ops())
            def follow(ops: list[tuple[str, Any]]) -> None:
                QueueModel(store, self._fresh_id()).play(ops)

            follow()
