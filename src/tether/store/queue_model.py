"""A reference model of the work queue, written apart from the stores' rules, that a store is
played against operation by operation (see :mod:`tether.store.queue_conformance`).

The model keeps, per run, what the contract says the index must hold — status, ``wake_at``,
owner, epoch, lease expiry, queue — by hand for each operation a worker or a resolver makes, and
answers "what is due now, in what order" itself. After every operation the store's row, every
claim's result and ``next_wake`` must equal the model's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

try:
    from hypothesis import strategies as st
except ImportError as exc:  # pragma: no cover - only without the test extra
    raise ImportError("tether.store.queue_model needs hypothesis: "
                      "pip install 'tether[test]'") from exc

from tether.events import (
    Event,
    RunDequeued,
    RunFinished,
    RunStarted,
    RunStatus,
    RunWaiting,
    StepRecorded,
    TimerFired,
    TimerStarted,
    WaitExpired,
    WaitResolved,
    WaitStarted,
)
from tether.store.base import Lease

if TYPE_CHECKING:
    from tether.store.queue_conformance import QueueStore

__all__ = ["QueueModel", "queue_ops"]

_RUNS = 3
_TTL_S = 10.0
_QUEUES = ["default", "a", "b"]
_SELECTIONS: list[list[str] | None] = [None, ["a"], ["default", "b"], []]
_WORK = ["dequeue", "wait", "wait_deadline", "park", "wait_again", "wake", "step", "finish"]
_DELAYS_S = [0.0, 5.0, 20.0]
_TICKS_S = [0.0, 1.0, 5.0, 10.0, 25.0]


def queue_ops() -> st.SearchStrategy[list[tuple[str, Any]]]:
    """Random operation sequences for :class:`QueueModel`: a name and three small integers
    each operation reads against the model's state (which run, which choice, how long)."""
    # Work and claims are drawn most often: the interesting states (waiting on a parked timer,
    # resolved, taken over after expiry) need several of them in a row.
    names = (["enqueue", "start", "resolve", "release", "renew", "tick", "next_wake"]
             + ["claim"] * 3 + ["work"] * 6)
    op = st.tuples(st.sampled_from(names),
                   st.tuples(st.integers(0, 9), st.integers(0, 9), st.integers(0, 9)))
    return st.lists(op, min_size=5, max_size=40)


@dataclass
class _Run:
    run_id: str
    queue: str
    created_at: float
    status: RunStatus
    updated_at: float
    last_seq: int = 1
    wake_at: float | None = None
    owner: str | None = None
    epoch: int = 0
    expires_at: float | None = None
    suspended_by: str | None = None  # "wait" or "timer" while waiting

    def held(self, now: float) -> bool:
        return self.owner is not None and self.expires_at is not None and now < self.expires_at

    def due(self, now: float) -> bool:
        if self.held(now):
            return False
        if self.status is RunStatus.RUNNING:
            return True
        waits = self.status in (RunStatus.QUEUED, RunStatus.WAITING)
        return waits and self.wake_at is not None and self.wake_at <= now

    def order(self) -> tuple[bool, float, float, str]:
        if self.status is RunStatus.RUNNING:
            first = next(t for t in (self.wake_at, self.expires_at, self.updated_at)
                         if t is not None)
        else:
            assert self.wake_at is not None
            first = self.wake_at
        # Runs under way before queued ones that have not started.
        return (self.status is RunStatus.QUEUED, first, self.created_at, self.run_id)

    def pending(self) -> float | None:
        """When this run becomes due if nobody can claim it now (next_wake's rule)."""
        expiry = self.expires_at if self.owner is not None else None
        if self.status in (RunStatus.QUEUED, RunStatus.WAITING) and self.wake_at is not None:
            return self.wake_at if expiry is None else max(self.wake_at, expiry)
        if self.status is RunStatus.RUNNING:
            return self.updated_at if expiry is None else expiry
        return None


class QueueModel:
    """Plays operations on ``store`` and on the model side by side, checking they agree."""

    def __init__(self, store: QueueStore, prefix: str) -> None:
        self.store = store
        self.ids = [f"{prefix}-{n}" for n in range(_RUNS)]
        self.runs: dict[int, _Run] = {}
        self.now = 100.0

    def play(self, ops: list[tuple[str, Any]]) -> None:
        try:
            for name, arg in ops:
                getattr(self, f"_{name}")(arg)
                self._compare(f"after {name}{arg!r}")
        finally:
            self._clean_up()

    # -- operations -----------------------------------------------------------------------

    def _enqueue(self, arg: tuple[int, int, int]) -> None:
        n, queue = arg[0] % _RUNS, _QUEUES[arg[1] % len(_QUEUES)]
        if n in self.runs:
            return
        run_id = self.ids[n]
        self.store.append(run_id, [RunStarted(seq=1, at=self.now, workflow="wf", seed=1,
                                              queue=queue)], expected_last_seq=0)
        self.runs[n] = _Run(run_id, queue, self.now, RunStatus.QUEUED, self.now,
                            wake_at=self.now)

    def _start(self, arg: tuple[int, int, int]) -> None:
        n = arg[0] % _RUNS
        if n in self.runs:
            return
        run_id = self.ids[n]
        lease = Lease(run_id, "w0", 1, self.now + _TTL_S)
        self.store.append(run_id, [RunStarted(seq=1, at=self.now, workflow="wf", seed=1)],
                          expected_last_seq=0, lease=lease)
        self.runs[n] = _Run(run_id, "default", self.now, RunStatus.RUNNING, self.now,
                            owner="w0", epoch=1, expires_at=lease.expires_at)

    def _claim(self, arg: tuple[int, int, int]) -> None:
        owner, limit = f"w{1 + arg[0] % 2}", 1 + arg[1] % 3
        # Mostly every queue: a selection that matches nothing proves little.
        queues = _SELECTIONS[0 if arg[2] < 5 else arg[2] % len(_SELECTIONS)]
        due = sorted((r for r in self.runs.values()
                      if r.due(self.now) and (queues is None or r.queue in queues)),
                     key=_Run.order)[:limit]
        got = self.store.claim(owner, now=self.now, ttl_s=_TTL_S, queues=queues, limit=limit)
        want = [Lease(r.run_id, owner, r.epoch + 1, self.now + _TTL_S) for r in due]
        # Runs of other examples are finished (see _clean_up), so only the model's are due.
        if got != want:
            raise AssertionError(f"at {self.now}: claim({owner}, limit={limit}, "
                                 f"queues={queues}) gave {got}, the model says {want}")
        for run in due:
            run.owner, run.epoch, run.expires_at = owner, run.epoch + 1, self.now + _TTL_S

    def _work(self, arg: tuple[int, int, int]) -> None:
        n, m, delay_s = arg[0], arg[1], _DELAYS_S[arg[2] % len(_DELAYS_S)]
        run = self._held(n)
        if run is None or run.status.finished:
            return
        options = [w for w in _WORK if self._event(run, w, delay_s, dry=True) is not None]
        event = self._event(run, options[m % len(options)], delay_s)
        assert event is not None and run.owner is not None
        lease = Lease(run.run_id, run.owner, run.epoch, run.expires_at or 0.0)
        self.store.append(run.run_id, [event], expected_last_seq=run.last_seq, lease=lease)
        run.last_seq += 1

    def _event(self, run: _Run, what: str, delay_s: float, *, dry: bool = False) -> Event | None:
        """The event ``what`` appends to ``run`` and its effect on the model (none when
        ``dry``), or None when it would not happen in that state."""
        if dry:
            run = _Run(**vars(run))
        seq, at = run.last_seq + 1, self.now
        queued, running = run.status is RunStatus.QUEUED, run.status is RunStatus.RUNNING
        if what == "dequeue" and queued:
            run.status, run.updated_at, run.wake_at = RunStatus.RUNNING, at, None
            return RunDequeued(seq=seq, at=at)
        if what in ("wait", "wait_deadline", "park") and running:
            wake = None if what == "wait" else at + delay_s
            run.status, run.updated_at, run.wake_at = RunStatus.WAITING, at, wake
            run.suspended_by = "timer" if what == "park" else "wait"
            if what == "park":
                assert wake is not None
                return TimerStarted(seq=seq, at=at, pos=seq, wake_at=wake, parked=True)
            return WaitStarted(seq=seq, at=at, pos=seq, key="k", deadline=wake)
        if what == "wait_again" and running:
            # A run woken with nothing to do suspends again, naming when it is next due.
            wake = None if delay_s == 0.0 else at + delay_s
            run.status, run.updated_at, run.wake_at = RunStatus.WAITING, at, wake
            run.suspended_by = "wait"
            return RunWaiting(seq=seq, at=at, key="k", wake_at=wake)
        if what == "wake" and run.status is RunStatus.WAITING:
            timer = run.suspended_by == "timer"
            run.status, run.updated_at, run.wake_at = RunStatus.RUNNING, at, None
            return (TimerFired(seq=seq, at=at, pos=seq) if timer
                    else WaitExpired(seq=seq, at=at, pos=seq, key="k"))
        if what == "step" and not queued:
            return StepRecorded(seq=seq, at=at, pos=seq, call="step", name="s")
        if what == "finish" and not queued:
            run.status, run.updated_at, run.wake_at = RunStatus.COMPLETED, at, None
            return RunFinished(seq=seq, at=at, status=RunStatus.COMPLETED)
        return None

    def _resolve(self, arg: tuple[int, int, int]) -> None:
        n = arg[0]
        if not self.runs:
            return
        # Mostly a waiting run, when there is one: that is where a resolution matters.
        waiting = [r for _, r in sorted(self.runs.items()) if r.status is RunStatus.WAITING]
        pool = waiting if waiting and n else [r for _, r in sorted(self.runs.items())]
        run = pool[n % len(pool)]
        self.store.append(run.run_id, [WaitResolved(seq=run.last_seq + 1, at=self.now,
                                                    key="k")], expected_last_seq=run.last_seq)
        run.last_seq += 1
        if run.status is RunStatus.WAITING:
            run.status, run.updated_at, run.wake_at = RunStatus.RUNNING, self.now, self.now

    def _release(self, arg: tuple[int, int, int]) -> None:
        run = self._held(arg[0])
        if run is None or run.owner is None:
            return
        lease = Lease(run.run_id, run.owner, run.epoch, run.expires_at or 0.0)
        if not self.store.release(lease):
            raise AssertionError(f"release of the current lease {lease} failed")
        run.owner = run.expires_at = None

    def _renew(self, arg: tuple[int, int, int]) -> None:
        run = self._held(arg[0])
        if run is None or run.owner is None:
            return
        lease = Lease(run.run_id, run.owner, run.epoch, run.expires_at or 0.0)
        self.store.renew(lease, now=self.now, ttl_s=_TTL_S)
        run.expires_at = self.now + _TTL_S

    def _tick(self, arg: tuple[int, int, int]) -> None:
        self.now += _TICKS_S[arg[0] % len(_TICKS_S)]

    def _next_wake(self, arg: tuple[int, int, int]) -> None:
        self._check_next_wake(_SELECTIONS[arg[0] % len(_SELECTIONS)])

    def _check_next_wake(self, queues: list[str] | None) -> None:
        times = [t for r in self.runs.values()
                 if (queues is None or r.queue in queues) and (t := r.pending()) is not None]
        want = min(times, default=None)
        got = self.store.next_wake(queues=queues)
        if got != want:
            raise AssertionError(f"at {self.now}: next_wake(queues={queues}) is {got}, the "
                                 f"model says {want}")

    def _held(self, n: int) -> _Run | None:
        """The n-th (modulo) run someone holds a lease on, live or expired."""
        held = [r for _, r in sorted(self.runs.items()) if r.owner is not None]
        return held[n % len(held)] if held else None

    # -- checking -------------------------------------------------------------------------

    def _compare(self, when: str) -> None:
        self._check_next_wake(None)
        for run in self.runs.values():
            info = self.store.get_run(run.run_id)
            want = (run.status, run.wake_at, run.owner, run.epoch, run.expires_at, run.queue,
                    run.last_seq, run.updated_at)
            got = None if info is None else (info.status, info.wake_at, info.owner, info.epoch,
                                              info.lease_expires_at, info.queue, info.last_seq,
                                              info.updated_at)
            if got != want:
                raise AssertionError(f"{when}: run {run.run_id!r} index (status, wake_at, "
                                     f"owner, epoch, expiry, queue, last_seq, updated_at) is "
                                     f"{got}, the model says {want}")

    def _clean_up(self) -> None:
        """Finish every run the example left unfinished, so none is due in the next one."""
        for run in self.runs.values():
            info = self.store.get_run(run.run_id)
            if info is None or info.status.finished:
                continue
            lease = self.store.acquire(run.run_id, "cleaner", now=1e18, ttl_s=1.0)
            self.store.append(run.run_id, [RunFinished(seq=info.last_seq + 1, at=self.now,
                                                       status=RunStatus.CANCELLED)],
                              expected_last_seq=info.last_seq, lease=lease)
            self.store.release(lease)
