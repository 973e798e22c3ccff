"""The runtime: starts workflow runs, resumes them, and recovers every unfinished one.

A :class:`Runtime` is an explicit object — no globals — so any number can live in one process
(thousands of simulated runs, two tests side by side). It takes time from its :class:`Clock`
and randomness from a generator seeded once per runtime; each run gets its own seed, journaled
in ``run_started``, from which ``ctx.random()`` and ``ctx.uuid()`` draw.

Ownership: a runtime is a worker named ``owner``. It executes a run only while holding the run's
lease in the store (acquired by :meth:`Runtime.start` / :meth:`Runtime.resume`, kept while it
works, released when the run finishes or waits), and every append is fenced by that lease, so a
worker whose lease was taken over stops before its next durable call and writes nothing more.
:meth:`Runtime.recover` takes only runs no live worker holds. Resolutions are a
compare-and-set: the first wins, later ones get :class:`~tether.errors.AlreadyDecided`.
"""

from __future__ import annotations

import asyncio
import inspect
import random
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, get_type_hints, overload, runtime_checkable

from tether.clock import Clock, SystemClock, system_seed
from tether.errors import (
    ConcurrencyConflict,
    Crash,
    LeaseLost,
    NonDeterminismError,
    OwnershipLost,
    RecoveryIncomplete,
    RunEscalated,
    RunOwned,
    RunSuspended,
    TetherError,
    UnknownWorkflow,
    UsageError,
    error_record,
    rebuild_error,
)
from tether.events import (
    Event,
    RunDequeued,
    RunFinished,
    RunStarted,
    RunStatus,
    RunWaiting,
    TimerFired,
    TimerStarted,
    WaitResolved,
    WaitStarted,
)
from tether.imports import FILE_MODULE_PREFIX
from tether.runtime.approvals import APPROVAL_PREFIX, PendingApproval, decide, pending_approvals
from tether.runtime.breaker import Breakers
from tether.runtime.client_tools import (
    ClientCall,
    open_client_calls,
    pending_client_calls,
    record_client_results,
)
from tether.runtime.codec import from_json, to_json
from tether.runtime.context import RunContext
from tether.runtime.journal import (
    Listener,
    Probe,
    RunJournal,
    already_resolved,
    instant,
    read_events,
)
from tether.runtime.ownership import Heartbeat, default_owner
from tether.runtime.retry import RetryPolicy
from tether.runtime.run_internals import RunInternals
from tether.runtime.saga import compensate
from tether.store.base import Lease, Store

if TYPE_CHECKING:
    from tether.models.base import DeltaSink
from tether.store.memory import MemoryStore

__all__ = ["RunResult", "Runtime", "Workflow", "workflow"]

WorkflowFn = Callable[..., Awaitable[Any]]

#: How often a resolution is retried after losing an append race to the run's own worker.
_RESOLVE_ATTEMPTS = 1000


@runtime_checkable
class Runnable(Protocol):
    """Anything that can present itself as a workflow (an ``Agent`` does)."""

    def as_workflow(self) -> Workflow: ...


@dataclass(frozen=True)
class Workflow:
    """An async function ``(ctx, input) -> result`` with the name its journals record."""

    name: str
    fn: WorkflowFn

    def _input_type(self) -> Any:
        params = list(inspect.signature(self.fn).parameters)
        if len(params) < 2:
            return None
        return get_type_hints(self.fn).get(params[1])

    def takes_input(self) -> bool:
        return len(inspect.signature(self.fn).parameters) >= 2


@overload
def workflow(fn: WorkflowFn, /, *, name: str | None = None) -> Workflow: ...


@overload
def workflow(*, name: str | None = None) -> Callable[[WorkflowFn], Workflow]: ...


def workflow(
    fn: WorkflowFn | None = None, /, *, name: str | None = None
) -> Workflow | Callable[[WorkflowFn], Workflow]:
    """Name an async workflow function so its journals can find it again after a restart.

    >>> @workflow(name="refund")
    ... async def refund(ctx, order_id: str) -> None: ...
    >>> refund.name
    'refund'
    """

    def wrap(f: WorkflowFn) -> Workflow:
        if not inspect.iscoroutinefunction(f):
            raise UsageError(f"workflow {f.__qualname__} must be an async function")
        return Workflow(name or _default_name(f), f)

    return wrap(fn) if fn is not None else wrap


@dataclass(frozen=True)
class RunResult:
    """Where a run stands after the runtime stopped executing it."""

    run_id: str
    status: RunStatus
    result: Any = None
    error: dict[str, Any] | None = None
    reason: str = ""
    waiting_for: str | None = None

    def raise_for_status(self) -> Any:
        """Return the result of a completed run; raise the recorded error of a failed one."""
        if self.status is RunStatus.COMPLETED:
            return self.result
        if self.status is RunStatus.FAILED and self.error is not None:
            raise rebuild_error(self.error)
        raise UsageError(f"run {self.run_id} is {self.status.value}: {self.reason}")


class Runtime:
    """Executes durable workflow runs against a store.

    >>> import asyncio
    >>> from tether.clock import VirtualClock
    >>> async def hello(ctx: RunContext, name: str) -> str:
    ...     return await ctx.step("greet", lambda: f"hello {name}")
    >>> rt = Runtime(clock=VirtualClock(), seed=1)
    >>> asyncio.run(rt.start(hello, "ada")).result
    'hello ada'
    """

    def __init__(
        self,
        store: Store | None = None,
        *,
        clock: Clock | None = None,
        workflows: Iterable[Workflow | WorkflowFn | Runnable] = (),
        seed: int | None = None,
        probe: Probe | None = None,
        listeners: Sequence[Listener] = (),
        retry: RetryPolicy | None = None,
        breakers: Breakers | None = None,
        owner: str | None = None,
        lease_ttl_s: float = 30.0,
        heartbeat_s: float | None = None,
        park_timers_after_s: float | None = None,
    ) -> None:
        """``owner`` names this worker in run leases (default ``host:pid:n``, one name per
        runtime; pass the same name to a runtime that replaces a crashed one and must take its
        runs back before their leases expire); ``lease_ttl_s`` is how long a lease holds
        without renewal, on this runtime's clock; ``heartbeat_s`` how often a thread renews it
        while a run executes (default: a third of the TTL with a real-time clock, never with a
        virtual one — see :mod:`tether.runtime.ownership`). ``park_timers_after_s``: a
        ``ctx.sleep`` longer than this suspends the run until the timer is due (a *parked*
        timer, continued then by whichever worker claims it) instead of sleeping in this
        process; ``None`` (the default) sleeps every timer in process."""
        if not lease_ttl_s > 0:
            raise UsageError(f"lease_ttl_s must be positive, got {lease_ttl_s!r}")
        if park_timers_after_s is not None and not park_timers_after_s >= 0:
            raise UsageError("park_timers_after_s must be None or a number >= 0, got "
                             f"{park_timers_after_s!r}")
        self.park_timers_after_s = park_timers_after_s
        self.store: Store = store if store is not None else MemoryStore()
        self.clock: Clock = clock if clock is not None else SystemClock()
        #: The retry policy of durable calls in plain workflows (agents bring their own).
        self.retry = retry if retry is not None else RetryPolicy()
        #: Circuit breakers per dependency, shared by every run of this runtime.
        self.breakers = breakers if breakers is not None else Breakers(self.clock)
        self.owner = owner if owner is not None else default_owner()
        self.lease_ttl_s = lease_ttl_s
        if heartbeat_s is None and isinstance(self.clock, SystemClock):
            heartbeat_s = lease_ttl_s / 3
        self.heartbeat_s = heartbeat_s
        # Runs this runtime is executing now, so recover() never takes one from itself, and
        # their internals, so a worker can hand one back (see hand_back).
        self._active: set[str] = set()
        self._executing: dict[str, RunInternals] = {}
        self._handing_back: set[str] = set()
        self._rng = random.Random(system_seed() if seed is None else seed)
        self._probe = probe
        self._listeners = tuple(listeners)
        self._delta_listeners: tuple[DeltaSink, ...] = ()
        self._workflows: dict[str, Workflow] = {}
        for wf in workflows:
            self.register(wf)

    def register(self, wf: Workflow | WorkflowFn | Runnable) -> Workflow:
        """Make a workflow (or an agent) resumable by this runtime; returns it as a
        :class:`Workflow`."""
        if isinstance(wf, Workflow):
            named = wf
        elif isinstance(wf, Runnable):
            named = wf.as_workflow()
        else:
            named = workflow(wf)
        existing = self._workflows.get(named.name)
        if existing is not None and existing.fn is not named.fn:
            raise UsageError(f"two different workflows are both named {named.name!r}")
        self._workflows[named.name] = named
        return named

    def knows(self, name: str) -> bool:
        """Whether a workflow named ``name`` is registered (its runs can be executed here)."""
        return name in self._workflows

    def add_listener(self, listener: Listener) -> None:
        """Tell ``listener`` of every event this runtime appends from now on."""
        self._listeners = (*self._listeners, listener)

    def add_delta_listener(self, listener: DeltaSink) -> None:
        """Tell ``listener`` of every text delta a streaming model call of this runtime's runs
        receives from now on, as ``(run_id, position, text)`` (see
        :data:`tether.models.base.DeltaSink`). Deltas are not events: they are not journaled,
        a replay or a resumed run never produces them again, and a listener that raises is
        ignored (the run goes on)."""
        self._delta_listeners = (*self._delta_listeners, listener)

    def _emit_delta(self, run_id: str, position: int, text: str) -> None:
        for listener in self._delta_listeners:
            try:
                listener(run_id, position, text)
            except Exception:  # a hint for watchers; a broken watcher must not fail the run
                continue

    # -- starting and resuming ------------------------------------------------------------

    def run_sync(
        self,
        wf: Workflow | WorkflowFn | Runnable,
        input: Any = None,
        *,
        run_id: str | None = None,
        session_id: str | None = None,
    ) -> RunResult:
        """:meth:`start` for code that is not async (it runs its own event loop)."""
        return asyncio.run(self.start(wf, input, run_id=run_id, session_id=session_id))

    async def start(
        self,
        wf: Workflow | WorkflowFn | Runnable,
        input: Any = None,
        *,
        run_id: str | None = None,
        session_id: str | None = None,
    ) -> RunResult:
        """Start a run and execute it until it finishes or waits."""
        named = self.register(wf)
        run_id = run_id or f"run_{self._rng.getrandbits(64):016x}"
        # The append that creates the run makes this worker its owner, under epoch 1.
        lease = Lease(run_id, self.owner, 1, self.clock.now() + self.lease_ttl_s)
        journal = self._journal(run_id, (), lease)
        try:
            await journal.arecord(
                RunStarted,
                workflow=named.name,
                input=to_json(input, what="workflow input"),
                seed=self._rng.getrandbits(63),
                session_id=session_id,
            )
        except ConcurrencyConflict as exc:
            raise UsageError(
                f"run {run_id!r} already exists in the store; continue it with "
                "runtime.resume(run_id) or choose another run id"
            ) from exc
        return await self._execute(named, journal)

    def enqueue(
        self,
        wf: Workflow | WorkflowFn | Runnable,
        input: Any = None,
        *,
        run_id: str | None = None,
        session_id: str | None = None,
        queue: str = "default",
    ) -> str:
        """Put a run on ``queue`` for a worker (:class:`tether.runtime.worker.Worker`) to
        execute, and return its id. The run is created with status ``queued`` and no owner;
        this returns once that is durable, so a run the caller was told of is never lost. The
        workflow is registered here too; the workers that serve ``queue`` must know it by the
        same name. A run id already in the store is a :class:`~tether.errors.UsageError`."""
        if not isinstance(queue, str) or not queue or "\x00" in queue:
            raise UsageError(f"a queue name must be a non-empty string without NUL, got "
                             f"{queue!r}")
        named = self.register(wf)
        run_id = run_id or f"run_{self._rng.getrandbits(64):016x}"
        journal = self._journal(run_id, ())
        try:
            journal.record(
                RunStarted,
                sync=True,
                workflow=named.name,
                input=to_json(input, what="workflow input"),
                seed=self._rng.getrandbits(63),
                session_id=session_id,
                queue=queue,
            )
        except ConcurrencyConflict as exc:
            raise UsageError(
                f"run {run_id!r} already exists in the store; choose another run id"
            ) from exc
        return run_id

    async def resume(self, run_id: str, *, lease: Lease | None = None) -> RunResult:
        """Continue an unfinished run from its journal; a finished run's result is returned.

        With ``lease`` (taken by a work queue's ``claim``), the run is executed under it;
        otherwise the run's lease is taken first: a run a live other worker holds raises
        :class:`~tether.errors.RunOwned` (naming it and when its lease expires). If this worker
        loses the run while executing it, :class:`~tether.errors.LeaseLost` is raised. A run
        this runtime is executing right now raises :class:`~tether.errors.RunOwned` too: two
        executions of one run by one worker would call its handlers twice (a ``lease`` given
        then is released). A queued run gets ``run_dequeued`` before anything else."""
        if lease is not None and lease.run_id != run_id:
            raise UsageError(f"resume({run_id!r}) was given the lease of run {lease.run_id!r}")
        info = self.store.get_run(run_id)
        if info is None:
            raise UsageError(f"no run {run_id!r} in the store")
        if run_id in self._active:
            if lease is not None:
                # The claim fenced off the execution in progress (its epoch is stale now):
                # free the run so that whoever claims it next continues it once that stops.
                self.store.release(lease)
            # The store lets a worker re-acquire its own lease (a worker restarting after a
            # crash takes its runs back at once), so only this runtime can tell that the
            # holder is alive and executing the run now.
            raise RunOwned(
                f"run {run_id!r} is being executed by this runtime (worker {self.owner!r}) right "
                "now; await the call that is executing it (start, resume or recover) instead "
                "of resuming it again", run_id=run_id, owner=self.owner)
        if info.status.finished:
            finished = self._journal(run_id, self.store.read(run_id)).finished
            if finished is not None:
                if lease is not None:
                    self.store.release(lease)
                return _result_of(finished, run_id)
        if lease is None:
            lease = self.store.acquire(run_id, self.owner, now=self.clock.now(),
                                       ttl_s=self.lease_ttl_s)
        try:
            # Read under the lease: the previous owner may have gone further than `info`.
            events = await read_events(self.store, run_id)
            journal = self._journal(run_id, events, lease)
            named = self._workflow_of(journal)
        except BaseException:
            self.store.release(lease)
            raise
        if named is None:
            self.store.release(lease)
            assert journal.finished is not None
            return _result_of(journal.finished, run_id)
        return await self._execute(named, journal, dequeue=_awaits_dequeue(events))

    def _workflow_of(self, journal: RunJournal) -> Workflow | None:
        """The workflow to continue ``journal`` with (None: the run is finished)."""
        run_id = journal.run_id
        if journal.started is None:
            raise UsageError(f"run {run_id!r} has no run_started event")
        if journal.finished is not None:
            return None
        named = self._workflows.get(journal.started.workflow)
        if named is None:
            known = ", ".join(sorted(self._workflows)) or "none"
            raise UnknownWorkflow(
                f"run {run_id!r} is workflow {journal.started.workflow!r}, which this runtime "
                f"was not given (registered: {known}); pass it in Runtime(workflows=[...])"
            )
        return named

    async def recover(self) -> list[RunResult]:
        """Resume every unfinished run in the store (queued and running ones, and waiting
        ones whose wait may have been resolved or timed out). Only runs no live worker holds
        are taken: runs whose lease is live (or that this runtime is executing) are skipped,
        and so are runs another worker takes first."""
        results = []
        problems: list[tuple[str, TetherError]] = []
        now = self.clock.now()
        for info in self.store.list_runs(
                status=[RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.WAITING]):
            if info.run_id in self._active or (
                    info.leased(at=now) and info.owner != self.owner):
                continue
            try:
                results.append(await self.resume(info.run_id))
            except (ConcurrencyConflict, RunOwned, LeaseLost):
                continue
            except TetherError as exc:  # one broken run must not keep the others down
                problems.append((info.run_id, exc))
        if problems:
            first = problems[0][1]
            raise RecoveryIncomplete(
                f"{len(problems)} run(s) could not be resumed (the others were): "
                + "; ".join(f"{r}: {type(e).__name__}: {e}" for r, e in problems),
                results=results, failures=problems) from first
        return results

    def result(self, run_id: str) -> RunResult | None:
        """Where a run stands, read from its journal: nothing is executed, no lease is taken.

        A finished run gives its stored result or error (what :meth:`resume` would return);
        a waiting run its status and the key it waits for (``None`` for a parked timer); a
        queued or running one its status. ``None`` when the store has no run ``run_id``, so
        "start it unless it exists" reads ``runtime.result(id) or await runtime.start(...)``
        (two processes doing that at once: one start wins, the other raises
        :class:`~tether.errors.UsageError`)."""
        info = self.store.get_run(run_id)
        if info is None:
            return None
        events = self.store.read(run_id)
        finished = next((e for e in reversed(events) if isinstance(e, RunFinished)), None)
        if finished is not None:
            return _result_of(finished, run_id)
        waiting_for = None
        if info.status is RunStatus.WAITING:
            resolved = {e.key for e in events if isinstance(e, WaitResolved)}
            waiting_for = next((e.key for e in reversed(events)
                                if isinstance(e, WaitStarted) and e.key not in resolved), None)
        return RunResult(run_id, info.status, waiting_for=waiting_for)

    def resolve(self, run_id: str, key: str, value: Any = None, *, by: str = "",
                note: str = "", early: bool = False) -> WaitResolved:
        """Deliver a value for ``wait_for(key)``; a later resume continues the run with it.

        Works from any process, while a worker owns the run too. A compare-and-set: the
        first resolution of a key wins, and a later one (even racing from another process)
        raises :class:`~tether.errors.AlreadyDecided` naming the first. Resolving a key the
        run does not wait on is a :class:`~tether.errors.UsageError` listing the keys it does
        wait on, unless ``early=True``: then a value may be delivered before the run reaches
        its ``wait_for(key)``, which returns it at once (never for an approval: there is no
        request to decide yet). Every decision goes through here, so the checks hold for all
        callers: a wait whose ``deadline`` has passed on this runtime's clock is refused
        (whether or not a worker journaled its expiry yet), and so is an approval lacking the
        ``role`` the wait's data requires (a denial needs none). Returns the journaled
        resolution.
        """
        data = to_json(value, what="resolution")
        for _attempt in range(_RESOLVE_ATTEMPTS):
            journal = self._journal(run_id, self.store.read(run_id))
            _check_resolvable(journal, key, data, by=by, now=self.clock.now(), early=early)
            try:
                return journal.record_once(WaitResolved, sync=True, key=key, value=data,  # type: ignore[no-any-return]
                                           by=by, note=note)
            except ConcurrencyConflict:
                continue  # the run moved on meanwhile: read it again and re-check
        raise ConcurrencyConflict(
            f"run {run_id!r}: resolving {key!r} lost {_RESOLVE_ATTEMPTS} append races in a row "
            "to the run's own worker; try again", run_id=run_id)

    # -- approvals ------------------------------------------------------------------------

    def pending_approvals(self, run_id: str | None = None) -> list[PendingApproval]:
        """Calls held by policy and waiting for a human decision (see
        :mod:`tether.runtime.approvals`)."""
        return pending_approvals(self.store, run_id)

    def approve(self, run_id: str, *, by: str, role: str | None = None, note: str = "",
                step: int | None = None) -> PendingApproval:
        """Approve a held call; the run continues when it is next resumed."""
        return decide(self.store, self.resolve, run_id, True, by=by, role=role, note=note,
                      step=step, now=self.clock.now())

    def deny(self, run_id: str, *, by: str, role: str | None = None, note: str = "",
             step: int | None = None) -> PendingApproval:
        """Refuse a held call; the model is told, and the run goes on without it."""
        return decide(self.store, self.resolve, run_id, False, by=by, role=role, note=note,
                      step=step, now=self.clock.now())

    # -- client tools ---------------------------------------------------------------------

    def pending_client_calls(self, execution_id: str | None = None) -> list[ClientCall]:
        """What waiting executions ask their caller to do (see
        :mod:`tether.runtime.client_tools`)."""
        return pending_client_calls(self, execution_id)

    async def continue_execution(self, execution_id: str, results: Mapping[str, Any], *,
                                 by: str = "client", resume: bool = True) -> RunResult:
        """Answer client calls of ``execution_id`` with ``results`` (``{call_id: value}``) and
        resume it once all are answered (see :mod:`tether.runtime.client_tools`).

        All or nothing: every result is checked (requested, still open, fits its schema)
        before any is recorded, and all are appended in one batch. Returns where the run
        stands."""
        record_client_results(self.store, self.clock, execution_id, results, by=by)
        still_open = open_client_calls(self.store, execution_id)
        info = self.store.get_run(execution_id)
        assert info is not None
        if resume and not still_open and not info.status.finished:
            try:
                return await self.resume(execution_id)
            except RunOwned:
                pass  # a live worker has it and reads the results when it reaches the wait
        if info.status.finished:
            return await self.resume(execution_id)  # the recorded result, run nothing
        if still_open:
            # The store may say "running" once one of several calls is answered; the run
            # waits for the rest all the same.
            return RunResult(execution_id, RunStatus.WAITING, waiting_for=still_open[0].key)
        return RunResult(execution_id, info.status)

    # -- execution ------------------------------------------------------------------------

    def _journal(self, run_id: str, events: Sequence[Any],
                 lease: Lease | None = None) -> RunJournal:
        return RunJournal(self.store, run_id, self.clock, events, self._listeners,
                          lease=lease, lease_ttl_s=self.lease_ttl_s)

    def hand_back(self, run_id: str) -> bool:
        """Ask the run this runtime is executing to stop before its next durable call and
        give its lease back, so another worker continues it (a worker's graceful stop). The
        call in progress ends and is journaled first, so no handler is cut short; the
        execution then returns the run as it stands (status ``running``, reason ``handed
        back``). False if this runtime is not executing ``run_id``."""
        run = self._executing.get(run_id)
        if run is None:
            return False
        self._handing_back.add(run_id)
        run.handed_back = LeaseLost(
            f"run {run_id!r}: worker {self.owner!r} handed the run back (it is stopping); "
            "another worker continues it", run_id=run_id, owner=self.owner)
        return True

    async def _execute(self, named: Workflow, journal: RunJournal, *,
                       dequeue: bool = False) -> RunResult:
        """Execute under the journal's lease: renewed while working, released when the run
        finishes or waits or raises an error; kept when the run is cancelled (the process is
        going down), so no other worker takes the run before its lease expires.

        A simulated :class:`~tether.errors.Crash` releases the lease (the journal gets nothing
        more): it stands for a worker whose death has been noticed, so a replacement — in a
        test or a simulation, another runtime in this process — takes the run over at once, as
        it would once a dead worker's lease ran out. A real death (SIGKILL) releases nothing."""
        run_id = journal.run_id
        heartbeat = None
        if self.heartbeat_s is not None and journal.lease is not None:
            heartbeat = Heartbeat(journal, interval_s=self.heartbeat_s)
            heartbeat.start()
        self._active.add(run_id)
        try:
            if dequeue:
                await journal.arecord(RunDequeued)
            result = await self._drive(named, journal)
        except OwnershipLost as lost:
            if run_id not in self._handing_back:
                raise lost.error from None
            result = RunResult(run_id, RunStatus.RUNNING,
                               reason=f"handed back by worker {self.owner!r}")
        except (Exception, Crash):
            self._release(journal)
            raise
        finally:
            self._active.discard(run_id)
            self._executing.pop(run_id, None)
            self._handing_back.discard(run_id)
            if heartbeat is not None:
                heartbeat.stop()
        self._release(journal)
        return result

    def _release(self, journal: RunJournal) -> None:
        if journal.lease is not None and journal.lost is None:
            self.store.release(journal.lease)

    async def _drive(self, named: Workflow, journal: RunJournal) -> RunResult:
        started = journal.started
        assert started is not None
        run = RunInternals(journal, self.clock, seed=started.seed, probe=self._probe,
                           retry=self.retry, breakers=self.breakers, deltas=self._emit_delta,
                           park_timers_after_s=self.park_timers_after_s)
        ctx = RunContext(run)
        run_id = journal.run_id
        self._executing[run_id] = run
        try:
            if named.takes_input():
                value = await named.fn(ctx, from_json(started.input, named._input_type()))
            else:
                value = await named.fn(ctx)
        except RunSuspended as signal:
            self._wait_again(journal, signal.key)
            return RunResult(run_id, RunStatus.WAITING, waiting_for=signal.key)
        except RunEscalated as signal:
            return await self._finish(journal, RunStatus.ESCALATED, reason=signal.reason)
        except (NonDeterminismError, ConcurrencyConflict):
            raise
        except Exception as exc:
            return await self._fail(run, exc)
        data = to_json(value, what=f"workflow {named.name!r}")
        return await self._finish(journal, RunStatus.COMPLETED, result=data)

    def _wait_again(self, journal: RunJournal, key: str) -> None:
        """Make a suspended run's index say it waits, when nothing this execution appended
        did: a run woken by a resolution it does not wait on yet (or by one of several waits
        answered) suspends again without a new wait, and would otherwise stay ``running`` —
        due for every worker, which would resume it over and over. ``run_waiting`` moves it
        back to ``waiting``, due again at its earliest pending deadline or parked timer.

        A resolution of an open wait that races in first is a real wake-up: then nothing is
        appended, and the run stays due."""
        waiting_on = {k for k, expired in journal.waits().items() if expired is None}
        for _attempt in range(_RESOLVE_ATTEMPTS):
            info = self.store.get_run(journal.run_id)
            if info is None or info.status is not RunStatus.RUNNING:
                return
            try:
                journal.record_once(RunWaiting, key=key, wake_at=_next_due(journal))
                return
            except ConcurrencyConflict:
                seen = journal.last_seq
                journal.refresh()  # takes in resolutions delivered meanwhile, nothing else
                if journal.last_seq == seen:
                    raise  # another writer appended more than resolutions: it owns the run
                if any(journal.resolution(k) is not None for k in waiting_on):
                    return
        raise ConcurrencyConflict(
            f"run {journal.run_id!r}: recording that it waits again lost "
            f"{_RESOLVE_ATTEMPTS} append races in a row; another writer owns the run",
            run_id=journal.run_id)

    async def _fail(self, run: RunInternals, exc: Exception) -> RunResult:
        error = error_record(exc)
        try:
            problems = await compensate(run)
        except RunSuspended as signal:  # pragma: no cover - compensations do not wait
            return RunResult(run.run_id, RunStatus.WAITING, waiting_for=signal.key)
        if problems:
            return await self._finish(run.journal, RunStatus.ESCALATED, error=error,
                                      reason="; ".join(problems))
        return await self._finish(run.journal, RunStatus.FAILED, error=error,
                                  reason=f"{error['type']}: {error['message']}")

    async def _finish(self, journal: RunJournal, status: RunStatus, *, result: Any = None,
                      error: dict[str, Any] | None = None, reason: str = "") -> RunResult:
        # Durable before the caller hears of it: the output-commit rule.
        event = await journal.arecord(RunFinished, sync=True, status=status, result=result,
                                      error=error, reason=reason)
        return _result_of(event, journal.run_id)


def _default_name(f: WorkflowFn) -> str:
    """``module.function``. A file loaded by path (:mod:`tether.imports`) has a module name
    made of a digest of where it lies on this machine; the journal and every worker must agree
    on the name wherever the file is checked out, so such a module is named after its file."""
    module = f.__module__
    if module.startswith(FILE_MODULE_PREFIX):
        file = getattr(sys.modules.get(module), "__file__", None)
        if file:
            module = Path(file).stem
    return f"{module}.{f.__qualname__}"


def _check_resolvable(journal: RunJournal, key: str, value: Any, *, by: str, now: float,
                      early: bool) -> None:
    """Refuse a resolution the run cannot take: unknown or finished run, a key already
    resolved (naming the first decision), a wait that expired (journaled, or past its deadline
    on the resolver's clock), a key nobody waits on, an approval resolved before it was asked
    for, or an approval lacking the role its request requires."""
    run_id = journal.run_id
    if journal.started is None:
        raise UsageError(f"no run {run_id!r} in the store")
    if journal.finished is not None:
        raise UsageError(f"run {run_id!r} is already {journal.finished.status.value}")
    first = journal.resolution(key)
    if first is not None:
        raise already_resolved(run_id, first)
    waits = journal.waits()
    if key in waits and waits[key] is not None:
        raise UsageError(f"run {run_id!r}: the wait for {key!r} expired at "
                         f"{instant(waits[key] or 0.0)}; it can no longer be resolved")
    if key not in waits:
        if not early:
            open_keys = sorted(k for k, expired in waits.items() if expired is None)
            raise UsageError(
                f"run {run_id!r} does not wait on {key!r}; it waits on "
                f"{', '.join(repr(k) for k in open_keys) or 'nothing'}. To deliver a value "
                "before the run reaches its wait, pass early=True")
        if key.startswith(APPROVAL_PREFIX):
            # An approval decides a request someone has seen (tool, arguments, the role it
            # needs); before the run asks there is no request to decide, nor a role to check.
            raise UsageError(
                f"run {run_id!r}: {key!r} is an approval the run has not requested yet; an "
                "approval cannot be given in advance (early=True). Decide it once the run "
                "waits for it (pending_approvals lists the requests)")
        return
    started = _wait_started(journal, key)
    if started is None:  # pragma: no cover - waits() lists only keys a WaitStarted named
        return
    # The wait's own deadline, on the resolver's clock: a decision after it is too late even
    # if no worker has resumed the run to journal the expiry yet (replay would disagree
    # otherwise about which came first, depending on who happened to look).
    if started.deadline is not None and now >= started.deadline:
        raise UsageError(
            f"run {run_id!r}: the wait for {key!r} expired at {instant(started.deadline)} "
            f"(it is now {instant(now)}); it can no longer be resolved. The run takes its "
            "timeout course when it is next resumed")
    required = started.data.get("role") if isinstance(started.data, dict) else None
    decision = value if isinstance(value, dict) else {"approved": bool(value)}
    if required and decision.get("approved") and decision.get("role") != required:
        # Refused here, the one path every decision takes, so the request stays pending for
        # someone who holds the role: a run refuses such an approval anyway, and once it is
        # recorded nobody could approve the request again. A denial needs no role.
        given = decision.get("role")
        what = f"{started.data.get('tool')!r} at step {started.pos}" if started.data.get(
            "tool") else repr(key)
        raise UsageError(
            f"run {run_id!r}: {what} needs an approval in role {required!r}, but "
            f"{by or 'the caller'!r} approves as {repr(given) if given else 'no role'}; "
            f"nothing was recorded and the request is still pending. Approve with role "
            f"{required!r} (--role {required})")


def _wait_started(journal: RunJournal, key: str) -> WaitStarted | None:
    """The latest journaled start of the wait for ``key``."""
    found = None
    for pos in journal.positions():
        for event in journal.at(pos):
            if isinstance(event, WaitStarted) and event.key == key:
                found = event
    return found


def _next_due(journal: RunJournal) -> float | None:
    """When a suspended run is next due without a resolution: the earliest deadline of its
    open waits and wake time of its unfired parked timers (None: none pending)."""
    open_waits = {k for k, expired in journal.waits().items() if expired is None}
    times: list[float] = []
    for pos in journal.positions():
        events = journal.at(pos)
        for event in events:
            if isinstance(event, WaitStarted) and event.key in open_waits and \
                    event.deadline is not None:
                times.append(event.deadline)
            elif isinstance(event, TimerStarted) and event.parked and not any(
                    isinstance(e, TimerFired) for e in events):
                times.append(event.wake_at)
    return min(times, default=None)


def _awaits_dequeue(events: Sequence[Event]) -> bool:
    """Whether a run was enqueued and no worker has taken it up yet (no ``run_dequeued``)."""
    started = next((e for e in events if isinstance(e, RunStarted)), None)
    return started is not None and started.queue is not None and not any(
        isinstance(e, RunDequeued) for e in events)


def _result_of(event: RunFinished, run_id: str) -> RunResult:
    return RunResult(run_id, event.status, result=event.result, error=event.error,
                     reason=event.reason)


