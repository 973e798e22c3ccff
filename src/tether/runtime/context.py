"""The run context: every durable call a workflow makes goes through it.

Each call takes the next position in the run. If the journal already holds an outcome at that
position, the call returns it (or raises the recorded error) without executing; otherwise it
executes live and journals the outcome. A recorded call of another kind or name at that
position means the workflow code changed or is not deterministic: :class:`NonDeterminismError`.

:class:`RunContext` is the workflow author's surface and nothing else: ``run_id`` and the
durable calls (``step``, ``call_tool``, ``call_model``, ``sleep``, ``wait_for``, ``now``,
``random``, ``uuid``). What those calls stand on — the journal, the position, the run's retry
policy, deadline, breakers … — belongs to the runtime, in a
:class:`~tether.runtime.run_internals.RunInternals` that the runtime's own modules reach with
:func:`internals`. The names a context used to expose for them (``ctx.journal``,
``ctx.decide`` …) raise an ``AttributeError`` saying so.
"""

from __future__ import annotations

import asyncio
import inspect
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

from tether.errors import (
    ConcurrencyConflict,
    RunSuspended,
    UsageError,
    WaitTimedOut,
    error_record,
    rebuild_error,
)
from tether.events import (
    StepFailed,
    StepRecorded,
    TimerFired,
    TimerStarted,
    WaitExpired,
    WaitResolved,
    WaitStarted,
)
from tether.runtime.ambiguity import cancel_requested
from tether.runtime.codec import from_json, to_json
from tether.runtime.run_internals import RunInternals
from tether.runtime.tools import Tool
from tether.runtime.writes import execute_tool

if TYPE_CHECKING:
    from tether.models.base import Model, ModelRequest, ModelResponse
    from tether.models.pricing import PriceTable

__all__ = ["RunContext", "internals"]

#: The public members a context had before its plumbing moved to :class:`RunInternals`:
#: reading or setting one on a context raises an AttributeError saying where it went.
MOVED_TO_INTERNALS = frozenset({
    "breakers", "call_timeout_s", "claim", "clock", "completed_writes", "deadline", "decide",
    "deltas", "journal", "max_retries", "maybe_decide", "park_timers_after_s", "past_deadline",
    "position", "probe", "remember_write", "retry", "seed",
})


def _moved(name: str) -> str:
    return (f"RunContext.{name} is internal to the runtime since tether 0.1.0: a workflow "
            "makes its durable calls through ctx.step, ctx.call_tool, ctx.call_model, "
            "ctx.sleep, ctx.wait_for, ctx.now, ctx.random and ctx.uuid (ctx.run_id names the "
            f"run); the runtime's own modules use tether.runtime.context.internals(ctx).{name}")


class RunContext:
    """Durable calls for one run. Workflows receive it as their first argument.

    >>> async def greet(ctx: RunContext, name: str) -> str:
    ...     stamp = ctx.now()                       # journaled: the same on every replay
    ...     await ctx.sleep(30)                     # a durable timer
    ...     return await ctx.step("format", lambda: f"hello {name} at {stamp:.0f}")

    The runtime makes one per execution of a run, around that execution's
    :class:`RunInternals`; workflows never make one.
    """

    # No instance dict: a context has no attribute to set (the old ``ctx.retry = ...`` would
    # otherwise be a silent no-op), and nothing of the runtime rides along on it.
    __slots__ = ("_run",)
    _run: RunInternals

    def __init__(self, run: RunInternals) -> None:
        object.__setattr__(self, "_run", run)

    @property
    def run_id(self) -> str:
        """The run's id: the same on every execution and replay of the run."""
        return self._run.run_id

    if not TYPE_CHECKING:
        # At run time only: to a type checker a context has exactly its declared members, so
        # ``ctx.journal`` (or a typo) stays a type error instead of turning into NoReturn.
        def __getattr__(self, name: str) -> NoReturn:
            if name in MOVED_TO_INTERNALS:
                raise AttributeError(_moved(name), name=name, obj=self)
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}",
                                 name=name, obj=self)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in MOVED_TO_INTERNALS:
            raise AttributeError(_moved(name), name=name, obj=self)
        raise AttributeError(f"a RunContext has no attribute to set ({name!r}): it only makes "
                             "durable calls", name=name, obj=self)

    # -- durable calls --------------------------------------------------------------------

    async def step(
        self,
        name: str,
        fn: Callable[..., Any],
        *args: Any,
        result_type: Any = None,
    ) -> Any:
        """Run ``fn(*args)`` once; afterwards return its journaled result.

        The value is journaled as JSON and returned in that form (validated into
        ``result_type`` if given), so a live call and a replay see the same value.

        >>> async def plan(ctx: RunContext, order_id: str) -> dict:
        ...     return await ctx.step("load order", lambda: {"id": order_id})
        """
        run = self._run
        pos, recorded = run.claim("step", name)
        if recorded:
            return _replay_step(recorded[0], result_type)
        try:
            value = fn(*args)
            if inspect.isawaitable(value):
                value = await value
        except (Exception, asyncio.CancelledError) as exc:
            if isinstance(exc, asyncio.CancelledError) and cancel_requested():
                raise  # the run itself is being cancelled: not an outcome of this step
            # Otherwise the step's code raised it of its own accord (a library's cancel scope):
            # an error of the step like any other, journaled, so it cannot escape the run.
            rebuilt = await self._step_failed(pos, name, exc)
            if rebuilt is not exc:
                # What a replay will raise, raised now: live and replay must see the same
                # exception (type, args, attributes), so take the same ``except`` branches.
                raise rebuilt from exc
            raise
        try:
            data = to_json(value, what=f"step {name!r}")
        except UsageError as exc:
            # Rejected at the call and journaled as its outcome: a replay raises this same
            # error instead of running the step again (and perhaps getting another value).
            await run.journal.arecord(StepFailed, pos=pos, call="step", name=name,
                                      error=error_record(exc))
            raise
        await run.journal.arecord(StepRecorded, pos=pos, call="step", name=name, result=data)
        run.probe(pos, name, "after_step")
        return from_json(data, result_type)

    async def _step_failed(self, pos: int, name: str, exc: BaseException) -> BaseException:
        """Journal a step's error; return ``exc`` if a replay will raise its equal, else the
        exception a replay will raise (rebuilt from the journal)."""
        record = error_record(
            exc, encode=lambda value: to_json(value, what=f"the error of step {name!r}"))
        await self._run.journal.arecord(StepFailed, pos=pos, call="step", name=name,
                                        error=record)
        rebuilt = rebuild_error(record)
        return exc if _same_error(exc, rebuilt) else rebuilt

    def _value(self, call: str, produce: Callable[[], Any]) -> Any:
        pos, recorded = self._run.claim(call, call)
        # Produce even on replay: the run's generator must advance exactly as it did live, or
        # the first live draw after a resume would repeat an earlier value.
        value = produce()
        if recorded:
            return _replay_step(recorded[0], None)
        self._run.journal.record(StepRecorded, pos=pos, call=call, name=call, result=value)
        return value

    def now(self) -> float:
        """The run clock's time, journaled: a replay returns the first reading."""
        return float(self._value("now", self._run.clock.now))

    def random(self) -> float:
        """A float in [0, 1) from the run's seeded generator, journaled."""
        return float(self._value("random", self._run.rng.random))

    def uuid(self) -> str:
        """A random UUID-shaped id from the run's seeded generator, journaled."""
        rng = self._run.rng
        return str(self._value("uuid", lambda: _uuid_from(rng)))

    async def sleep(self, seconds: float) -> None:
        """A durable timer: after a crash, the run sleeps only what remains.

        A sleep longer than the runtime's ``park_timers_after_s`` is *parked*: the timer is
        journaled durably and the run suspends (status ``waiting``, until ``wake_at``), so its
        worker is free meanwhile and any worker continues the run once the timer is due. A
        parked timer resumed early suspends again without journaling anything."""
        run = self._run
        pos, recorded = run.claim("sleep", "")
        if any(isinstance(e, TimerFired) for e in recorded):
            return
        if recorded:
            wake_at, parked = recorded[0].wake_at, recorded[0].parked
        else:
            wake_at = run.clock.now() + max(0.0, seconds)
            parked = run.park_timers_after_s is not None and seconds > run.park_timers_after_s
            if parked:
                # Durable before the run lets go: whoever continues it must find the timer.
                await run.journal.arecord(TimerStarted, sync=True, pos=pos, wake_at=wake_at,
                                          parked=True)
            else:
                await run.journal.arecord(TimerStarted, pos=pos, wake_at=wake_at)
        remaining = wake_at - run.clock.now()
        if remaining > 0:
            if parked:
                raise RunSuspended(f"timer:{pos}")
            await run.clock.sleep(remaining)
        await run.journal.arecord(TimerFired, pos=pos)

    async def wait_for(self, key: str, *, timeout_s: float | None = None,
                       data: dict[str, Any] | None = None) -> Any:
        """Wait durably until :meth:`Runtime.resolve` delivers a value for ``key``.

        If no value has arrived yet, the run is suspended (status ``waiting``) and its process
        may exit; a later :meth:`Runtime.resume` or :meth:`Runtime.recover` continues from
        here. A value that arrived before the wait began is returned at once. After
        ``timeout_s`` of the run's clock without a value, :class:`WaitTimedOut` is raised.
        ``data`` is journaled with the wait, for whoever resolves it (what is being approved).
        """
        if not key:
            raise UsageError("wait_for needs a non-empty key")
        run = self._run
        journal = run.journal
        pos, recorded = run.claim("wait_for", key)
        if journal.resolution(key) is None:
            journal.refresh()
        resolution = journal.resolution(key)
        expired = journal.expired(pos)
        if resolution is not None and not (
            expired and _seq_of_expiry(recorded) < resolution.seq
        ):
            if not recorded:
                await journal.arecord(StepRecorded, pos=pos, call="wait_for", name=key,
                                      result=resolution.value)
            return resolution.value
        if recorded and isinstance(recorded[0], StepRecorded):
            return recorded[0].result
        if expired:
            raise WaitTimedOut(f"wait for {key!r} timed out", key=key)
        if not recorded:
            deadline = None if timeout_s is None else run.clock.now() + timeout_s
            early = await self._start_wait(pos, key, deadline, data)
            if early is not None:
                return early.value
        else:
            deadline = recorded[0].deadline
        if deadline is not None and run.clock.now() >= deadline:
            expiry = await journal.arecord(WaitExpired, pos=pos, key=key)
            # A resolution that raced in just before the expiry was appended (and was taken
            # in by the append's retry) came first: a replay reads it that way, so live must.
            late = journal.resolution(key)
            if late is not None and late.seq < expiry.seq:
                return late.value
            raise WaitTimedOut(f"wait for {key!r} timed out", key=key)
        raise RunSuspended(key)

    async def _start_wait(self, pos: int, key: str, deadline: float | None,
                          data: dict[str, Any] | None) -> WaitResolved | None:
        """Journal the start of the wait for ``key`` (durable before anyone outside can see
        the request: the output-commit rule). If its value is delivered meanwhile (an early
        resolution racing the append), that value is recorded as having arrived before the
        wait, and returned: a wait started after it would suspend the run with its answer
        already in the journal and nothing left to wake it."""
        journal = self._run.journal
        while True:
            before = journal.last_seq
            try:
                await journal.arecord_once(WaitStarted, sync=True, pos=pos, key=key,
                                           deadline=deadline, data=dict(data or {}))
                return None
            except ConcurrencyConflict:
                if journal.last_seq == before:  # else a sibling call of this run's took it
                    journal.refresh()  # resolutions delivered meanwhile, nothing else
                    if journal.last_seq == before:
                        raise  # another writer appended more than resolutions
                early = journal.resolution(key)
                if early is not None:
                    await journal.arecord(StepRecorded, pos=pos, call="wait_for", name=key,
                                          result=early.value)
                    return early

    async def call_model(self, model: Model, request: ModelRequest,
                         prices: PriceTable | None = None) -> ModelResponse:
        """Ask ``model`` once; afterwards return the journaled response (or raise the
        journaled failure). Cost is priced from ``prices`` (the default table if omitted)."""
        # Imported here: a workflow without a model (a restarted worker recovering one) never
        # builds the model types.
        from tether.runtime.model_calls import call_model

        return await call_model(self._run, model, request, prices)

    async def call_tool(self, tool: Tool[Any, Any], args: Any) -> Any:
        """Call a tool exactly once per position, following the write protocol.

        See :mod:`tether.runtime.writes` for what happens on timeouts, crashes and errors.
        """
        validated = tool.validate_args(args)
        pos, recorded = self._run.claim("call_tool", tool.name)
        return await execute_tool(self._run, tool, validated, pos, recorded)


def internals(ctx: RunContext) -> RunInternals:
    """The runtime's side of the run ``ctx`` belongs to: its journal, position, retry policy,
    deadline, breakers … (see :mod:`tether.runtime.run_internals`).

    For the runtime's own modules (the agent loop, the governor, memory, the simulator), which
    build on a workflow's context; a workflow itself needs only the context's durable calls.
    """
    return ctx._run


def _replay_step(event: Any, result_type: Any) -> Any:
    if isinstance(event, StepFailed):
        raise rebuild_error(event.error)
    return from_json(event.result, result_type)


def _same_error(live: BaseException, rebuilt: BaseException) -> bool:
    """Whether ``rebuilt`` is the same exception as ``live``: type, args and attributes."""
    if type(live) is not type(rebuilt):
        return False
    try:
        return bool(live.args == rebuilt.args
                    and getattr(live, "__dict__", {}) == getattr(rebuilt, "__dict__", {}))
    except Exception:  # an __eq__ that refuses to compare: treat as different
        return False


def _seq_of_expiry(recorded: list[Any]) -> int:
    return min((e.seq for e in recorded if isinstance(e, WaitExpired)), default=1 << 62)


def _uuid_from(rng: random.Random) -> str:
    value = rng.getrandbits(128)
    # RFC 4122 version 4 layout, drawn from the run's generator instead of the OS.
    value = (value & ~(0xF000 << 64)) | (4 << 76)
    value = (value & ~(0xC000 << 48)) | (0x8000 << 48)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
