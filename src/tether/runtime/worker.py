"""A worker: a long-running loop that executes the runs a store's work queue hands it.

Any number of workers, in any number of processes and machines, share one store. Each claims
runs that need a worker (see :class:`~tether.store.base.WorkQueue`): queued runs
(:meth:`Runtime.enqueue`), waiting runs whose resolution arrived or whose deadline or parked
timer is due, and running runs whose owner died (its lease expired) or let go. A claim takes
the run's lease, so two workers never execute one run; the worker then executes it as a task
(:meth:`Runtime.resume` under that lease) while its runtime's heartbeat keeps the lease.

>>> import asyncio
>>> from tether.clock import SystemClock
>>> from tether.runtime.runtime import Runtime
>>> from tether.store.memory import MemoryStore
>>> async def hello(ctx, name: str) -> str:
...     return f"hello {name}"
>>> runtime = Runtime(MemoryStore(), clock=SystemClock(), workflows=[hello])
>>> run_id = runtime.enqueue(hello, "ada")
>>> async def serve_until_done() -> None:
...     stop = asyncio.Event()
...     worker = Worker(runtime, poll_s=0.01, on_outcome=lambda outcome: stop.set())
...     await worker.run(stop)
>>> asyncio.run(serve_until_done())
>>> runtime.store.get_run(run_id).status.value
'completed'

Fairness: with ``queues`` (name → how many of its runs at once), each round claims one run
per queue in turn — the queues with the fewest runs executing here first, ties broken by a
start that rotates every round — so a busy queue cannot starve another, and slots freed while
several queues have backlogs are shared evenly; ``concurrency`` caps all of them together.

Idle: when nothing is due the worker waits for the store's signal that work may be due
(:meth:`WorkQueue.wait_for_work`, in a thread: PostgreSQL's LISTEN/NOTIFY), for the earliest
time a pending run becomes due (:meth:`WorkQueue.next_wake`: a parked timer, a deadline, an
expiring lease), for one of its runs to end, or ``poll_s`` — whichever comes first. Time comes
only from the runtime's clock.

Stopping (the ``stop`` event, set on SIGTERM by ``tether worker``): the worker stops claiming
and hands every run it executes back: each ends the durable call in progress (journaled, so no
handler is cut short or called again), stops before its next one and releases its lease, so
another worker continues it at once. A run still inside one call after ``grace_s`` is
cancelled and its lease released: the next worker treats a write cut short as an ambiguous
outcome, as after a crash. Then the worker leaves the registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from tether.errors import LeaseLost, RunOwned, UsageError
from tether.events import RunStatus
from tether.runtime.runtime import RunResult, Runtime
from tether.store.base import Lease, WorkerInfo, WorkQueue

__all__ = ["LISTEN_SLICE_S", "Worker", "WorkerOutcome"]

#: The longest one wait for the store's work signal blocks its thread (seconds).
LISTEN_SLICE_S = 1.0


@dataclass(frozen=True, slots=True)
class WorkerOutcome:
    """What became of one run a worker claimed.

    ``outcome`` is the run's status when it finished or suspended (``completed``, ``failed``,
    ``escalated``, ``cancelled``, ``waiting``), ``handed back`` (the worker stopped first),
    ``lost`` (another worker took the run over), ``unknown workflow`` (this worker was not
    given the run's workflow: it leaves the run to one that was, after the claim's lease
    expires) or ``error`` (the run could not be executed; ``detail`` says why, and the run is
    left alone for one lease time before it is claimed again)."""

    run_id: str
    workflow: str
    queue: str
    outcome: str
    detail: str = ""


class Worker:
    """Claims due runs from ``runtime``'s store and executes them, until ``stop`` is set.

    ``queues`` maps each queue to serve to how many of its runs may execute at once (``None``:
    every queue, up to ``concurrency``); ``concurrency`` caps runs at once overall. ``poll_s``
    is the longest the worker stays idle without looking again; ``grace_s`` how long a stop
    waits for runs to reach their next durable call before cancelling them. The worker's name
    is its runtime's ``owner`` (the name in its leases; ``name`` renames both).
    ``park_timers_after_s`` is applied to the runtime: sleeps longer than it suspend the run
    instead of holding a slot (``None``: sleep in process). ``on_outcome`` hears of every run
    the worker is done with; ``on_error`` of every failure to reach the store (the worker
    carries on, and tries again after ``poll_s`` at most).
    """

    def __init__(
        self,
        runtime: Runtime,
        *,
        queues: Mapping[str, int] | None = None,
        concurrency: int = 4,
        poll_s: float = 1.0,
        grace_s: float = 10.0,
        park_timers_after_s: float | None = 5.0,
        on_outcome: Callable[[WorkerOutcome], None] | None = None,
        on_error: Callable[[Exception], None] | None = None,
        name: str | None = None,
    ) -> None:
        store = runtime.store
        if not isinstance(store, WorkQueue):
            raise UsageError(f"{type(store).__name__} is not a work queue (it lacks claim, "
                             "next_wake, beat, forget, workers or wait_for_work); a worker needs "
                             "MemoryStore, SQLiteStore or PostgresStore")
        _check_positive_int(concurrency, "concurrency")
        if not poll_s > 0:
            raise UsageError(f"poll_s must be a positive number of seconds, got {poll_s!r}")
        if not grace_s >= 0:
            raise UsageError(f"grace_s must be 0 or more seconds, got {grace_s!r}")
        if park_timers_after_s is not None and not park_timers_after_s >= 0:
            raise UsageError("park_timers_after_s must be None or 0 or more seconds, got "
                             f"{park_timers_after_s!r}")
        if queues is not None:
            if not queues:
                raise UsageError("queues must name at least one queue (or be None: every "
                                 "queue)")
            for queue, limit in queues.items():
                if not isinstance(queue, str) or not queue or "\x00" in queue:
                    raise UsageError(f"a queue name must be a non-empty string, got {queue!r}")
                _check_positive_int(limit, f"the limit of queue {queue!r}")
        self.runtime = runtime
        self.store: WorkQueue = store
        if name is not None:
            runtime.owner = name  # the name in the leases this worker's runtime takes
        self.name = runtime.owner
        self.concurrency = concurrency
        self.poll_s = poll_s
        self.grace_s = grace_s
        self.on_outcome = on_outcome
        self.on_error = on_error
        runtime.park_timers_after_s = park_timers_after_s
        # None stands for "every queue" (a single slot pool of `concurrency`).
        self._limits: dict[str | None, int] = {None: concurrency} if queues is None else {
            q: limit for q, limit in queues.items()}
        self._turn = 0
        #: How many runs ended in each outcome (see :class:`WorkerOutcome`), and ``claimed``.
        self.counts: Counter[str] = Counter()
        self._running: dict[str, tuple[asyncio.Task[None], Lease, str | None]] = {}
        self._stopping = False
        self._hurried = False
        self._claimed_at = float("-inf")
        self._grace: asyncio.Future[None] | None = None
        self._changed = asyncio.Event()
        self._signal: asyncio.Future[bool] | None = None
        self._signal_began = 0.0
        self._started_at = runtime.clock.now()

    @property
    def queues(self) -> tuple[str, ...]:
        """The queues served (empty: every queue)."""
        return tuple(q for q in self._limits if q is not None)

    @property
    def running(self) -> list[str]:
        """The run ids being executed now."""
        return sorted(self._running)

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set, then hand back what is in flight and leave the
        registry (see the module docstring)."""
        self._changed = asyncio.Event()
        self._beat()
        beats = asyncio.create_task(self._beat_loop())
        # Listen before the first claim, so work enqueued between that claim and the first
        # idle spell still signals (PostgreSQL keeps what arrives for a listener between waits).
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self.store.wait_for_work, 0.001)
        try:
            self._take_back()
            while not stop.is_set():
                self._changed.clear()
                try:
                    claimed = self._claim_round()
                except Exception as exc:  # the store is down: say so, and try again later
                    self._trouble(exc)
                    claimed = 0
                if claimed == 0:
                    await self._idle(stop)
        finally:
            self._stopping = True
            try:
                await self._drain()
            finally:
                beats.cancel()
                await asyncio.gather(beats, return_exceptions=True)
                # A store that is down leaves the row behind, stale: readers see it as dead.
                with contextlib.suppress(Exception):
                    self.store.forget(self.name)

    def hurry(self) -> None:
        """Cut a stop's grace short: runs still inside a call are cancelled (and handed back)
        now. ``tether worker`` does this on a second SIGTERM or SIGINT."""
        self._hurried = True
        if self._grace is not None:
            self._grace.cancel()

    # -- claiming --------------------------------------------------------------------------

    def _free(self, queue: str | None = None) -> int:
        """Slots free overall, or (with ``queue``) for that queue's limit too."""
        free = self.concurrency - len(self._running)
        if queue is None and None not in self._limits:
            return free
        taken = sum(1 for _, _, q in self._running.values() if q == queue)
        return min(free, self._limits[queue] - taken)

    def _claim_round(self) -> int:
        """Claim what fits, one run per queue in turn (rotating the first), until the slots
        are full or no queue has anything due; returns how many runs were claimed."""
        self._claimed_at = self.runtime.clock.now()
        keys = list(self._limits)
        start = self._turn % len(keys)
        self._turn += 1
        # The queues with the fewest runs executing here go first (a freed slot goes where it
        # evens the share); a rotating start breaks ties, so no queue is always first.
        running = Counter(q for _, _, q in self._running.values())
        order = sorted(keys[start:] + keys[:start], key=lambda q: running[q])
        claimed, progress = 0, True
        while progress and self._free() > 0:
            progress = False
            for queue in order:
                free = self._free(queue)
                if free <= 0:
                    continue
                # One per queue per pass keeps queues fair; a single pool takes all it can.
                limit = free if len(order) == 1 else 1
                leases = self.store.claim(
                    self.name, now=self.runtime.clock.now(), ttl_s=self.runtime.lease_ttl_s,
                    queues=None if queue is None else [queue], limit=limit)
                for lease in leases:
                    self._launch(lease, queue)
                    claimed += 1
                    progress = True
        return claimed

    def _take_back(self) -> None:
        """Take back at once the runs a previous process under this worker's name still
        holds (a restart after a crash): their leases name this worker, so no other can claim
        them before they expire, and this one need not wait. Worker names must therefore be
        unique among live workers."""
        now = self.runtime.clock.now()
        unfinished = [RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.WAITING]
        try:
            held = [info for info in self.runtime.store.list_runs(status=unfinished,
                                                                  limit=1_000_000)
                    if info.owner == self.name and info.leased(at=now)]
        except Exception as exc:
            self._trouble(exc)
            return
        for info in held:
            queue = None if None in self._limits else info.queue
            if queue not in self._limits or self._free(queue) <= 0:
                continue  # not served here, or no room: it waits for its lease to expire
            try:
                lease = self.runtime.store.acquire(info.run_id, self.name, now=now,
                                                   ttl_s=self.runtime.lease_ttl_s)
            except RunOwned:
                continue  # taken over meanwhile
            except Exception as exc:
                self._trouble(exc)
                continue
            self._launch(lease, queue)

    def _launch(self, lease: Lease, queue: str | None) -> None:
        self.counts["claimed"] += 1
        task = asyncio.create_task(self._execute(lease, queue))
        self._running[lease.run_id] = (task, lease, queue)

    async def _execute(self, lease: Lease, queue: str | None) -> None:
        run_id = lease.run_id
        try:
            info = self.runtime.store.get_run(run_id)
        except Exception:  # only for the report; resume reads the run again anyway
            info = None
        workflow = info.workflow if info is not None else "?"
        queue_name = info.queue if info is not None else (queue or "?")

        def done(outcome: str, detail: str = "") -> None:
            self.counts[outcome] += 1
            if self.on_outcome is not None:
                self.on_outcome(WorkerOutcome(run_id, workflow, queue_name, outcome, detail))

        try:
            if self._stopping:
                with contextlib.suppress(Exception):
                    self.runtime.store.release(lease)
                done("handed back", "the worker stopped before the run began")
                return
            if info is not None and not self.runtime.knows(workflow):
                # Keep the claim's lease (not renewed): the run stays out of every claim for
                # one lease time, then a worker that knows the workflow can take it.
                done("unknown workflow", f"this worker was not given workflow {workflow!r}; "
                     "the run is left for a worker that was")
                return
            result = await self.runtime.resume(run_id, lease=lease)
        except (LeaseLost, RunOwned) as exc:
            done("lost", str(exc))
        except asyncio.CancelledError:
            # Cancelled by a stop past its grace: the run kept its lease (a dying process
            # keeps it); this worker is alive and hands it back instead (if the store is
            # down, the lease lapses as a dead worker's would).
            with contextlib.suppress(Exception):
                self.runtime.store.release(lease)
            done("handed back", f"cancelled after the {self.grace_s:g} s grace")
        except Exception as exc:
            self._hold(run_id)
            done("error", f"{type(exc).__name__}: {exc}")
        else:
            done(*_outcome_of(result))
        finally:
            self._running.pop(run_id, None)
            self._changed.set()

    def _hold(self, run_id: str) -> None:
        """Take the run's lease and let it lapse, so a run that cannot be executed now is not
        claimed again at once (it would be, first of all: it is the oldest due)."""
        # Refused: another worker has it, or the store is down; either way, not ours now.
        with contextlib.suppress(Exception):
            self.runtime.store.acquire(run_id, self.name, now=self.runtime.clock.now(),
                                       ttl_s=self.runtime.lease_ttl_s)

    # -- idling ----------------------------------------------------------------------------

    def _trouble(self, exc: Exception) -> None:
        self.counts["store errors"] += 1
        if self.on_error is not None:
            self.on_error(exc)

    async def _idle(self, stop: asyncio.Event) -> None:
        """Wait until something may be due (see the module docstring)."""
        open_queues = [q for q in self._limits if self._free(q) > 0]
        timeout = self.poll_s
        waiters: list[asyncio.Future[object]] = [
            asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._changed.wait())]
        if open_queues:
            try:
                wake = self.store.next_wake(
                    queues=None if None in open_queues else [q for q in open_queues if q])
            except Exception as exc:
                self._trouble(exc)
                wake = None
            now = self.runtime.clock.now()
            # A time due before the last claim was claimed for and found nothing: no reason
            # to hurry (another clock's notion of now). One due since then is claimed at once.
            if wake is not None and wake > self._claimed_at:
                timeout = max(0.0, min(timeout, wake - now))
            waiters.append(asyncio.ensure_future(self._signalled()))
        waiters.append(asyncio.ensure_future(self.runtime.clock.sleep(timeout)))
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)

    async def _signalled(self) -> None:
        """Return when the store signals work; never for a store that does not signal.

        The wait runs in a thread, in slices of at most :data:`LISTEN_SLICE_S` (a thread
        cannot be cancelled: a stopping worker waits for the current slice at most). A store
        whose wait returns at once without a signal (SQLite, memory) does not signal at all:
        the worker polls then."""
        slice_s = min(self.poll_s, LISTEN_SLICE_S)
        while True:
            if self._signal is None or self._signal.done():
                self._signal_began = self.runtime.clock.now()
                self._signal = asyncio.ensure_future(
                    asyncio.to_thread(self.store.wait_for_work, slice_s))
            # Shielded: one thread waits at a time, and is reused by the next idle spell.
            try:
                signalled = await asyncio.shield(self._signal)
            except Exception:  # the listening connection failed: poll this idle spell
                signalled, slice_s = False, float("inf")
            if signalled:
                self._signal = None
                return
            if self.runtime.clock.now() - self._signal_began < slice_s / 2:
                await asyncio.Event().wait()  # no signals from this store: poll only

    # -- the registry ----------------------------------------------------------------------

    def _beat(self) -> None:
        info = WorkerInfo(
            name=self.name, host=socket.gethostname(), pid=os.getpid(), queues=self.queues,
            concurrency=self.concurrency, started_at=self._started_at,
            seen_at=self.runtime.clock.now(), stopping=self._stopping)
        # A failed beat is tried again at the next; runs keep their own leases meanwhile.
        with contextlib.suppress(Exception):
            self.store.beat(info)

    async def _beat_loop(self) -> None:
        while True:
            await self.runtime.clock.sleep(self.runtime.lease_ttl_s / 3)
            self._beat()

    # -- stopping --------------------------------------------------------------------------

    async def _drain(self) -> None:
        """Hand back every run in flight; cancel (and release) those past the grace."""
        self._beat()  # registered as stopping
        tasks = [task for task, _, _ in self._running.values()]
        if not tasks:
            return
        for run_id in list(self._running):
            self.runtime.hand_back(run_id)
        grace = self._grace = asyncio.ensure_future(self.runtime.clock.sleep(self.grace_s))
        if self._hurried:
            grace.cancel()
        pending = set(tasks)
        while pending and not grace.done():
            _, pending = await asyncio.wait({*pending, grace},
                                            return_when=asyncio.FIRST_COMPLETED)
            pending.discard(grace)
        grace.cancel()
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, grace, return_exceptions=True)


def _outcome_of(result: RunResult) -> tuple[str, str]:
    if result.status is RunStatus.WAITING:
        return "waiting", f"for {result.waiting_for}"
    if result.status is RunStatus.RUNNING:
        return "handed back", "stopped after its current call; another worker continues it"
    return result.status.value, result.reason


def _check_positive_int(value: object, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"{what} must be a whole number of runs, 1 or more, got {value!r}")

