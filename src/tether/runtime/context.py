"""The run context: every durable call a workflow makes goes through it.

Each call takes the next position in the run. If the journal already holds an outcome at that
position, the call returns it (or raises the recorded error) without executing; otherwise it
executes live and journals the outcome. A recorded call of another kind or name at that
position means the workflow code changed or is not deterministic: :class:`NonDeterminismError`.
"""

from __future__ import annotations

import asyncio
import inspect
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from tether.clock import Clock
from tether.errors import (
    ConcurrencyConflict,
    LeaseLost,
    NonDeterminismError,
    OwnershipLost,
    RunSuspended,
    UsageError,
    WaitTimedOut,
    error_record,
    rebuild_error,
)
from tether.events import (
    Decision,
    StepFailed,
    StepRecorded,
    TimerFired,
    TimerStarted,
    WaitExpired,
    WaitResolved,
    WaitStarted,
)
from tether.runtime.ambiguity import cancel_requested
from tether.runtime.breaker import Breakers
from tether.runtime.codec import from_json, to_json
from tether.runtime.journal import Probe, ProbePoint, RunJournal, call_identity
from tether.runtime.retry import RetryPolicy
from tether.runtime.tools import Tool

if TYPE_CHECKING:
    from tether.models.base import DeltaSink, Model, ModelRequest, ModelResponse
    from tether.models.pricing import PriceTable

__all__ = ["CompletedWrite", "RunContext"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class CompletedWrite:
    """A write that returned, remembered for saga compensation."""

    position: int
    tool: Tool[Any, Any]
    args: Any
    result: Any
    key: str


class RunContext:
    """Durable calls for one run. Workflows receive it as their first argument.

    >>> async def greet(ctx: RunContext, name: str) -> str:
    ...     stamp = ctx.now()                       # journaled: the same on every replay
    ...     await ctx.sleep(30)                     # a durable timer
    ...     return await ctx.step("format", lambda: f"hello {name} at {stamp:.0f}")
    """

    def __init__(
        self,
        journal: RunJournal,
        clock: Clock,
        *,
        seed: int,
        probe: Probe | None = None,
        retry: RetryPolicy | None = None,
        breakers: Breakers | None = None,
        deltas: DeltaSink | None = None,
        park_timers_after_s: float | None = None,
    ) -> None:
        self.journal = journal
        #: Sleeps longer than this (seconds) are parked: the run suspends until the timer is
        #: due and any worker continues it then (``None``: every sleep waits in process).
        self.park_timers_after_s = park_timers_after_s
        # Set by the runtime when its worker hands the run back (a graceful stop): the run
        # stops before its next durable call, so the call in progress ends and is journaled.
        self._handed_back: LeaseLost | None = None
        #: Where a streaming model call sends its text deltas (the runtime's delta listeners);
        #: ``None``: nobody listens. Never journaled, never replayed.
        self.deltas = deltas
        self.clock = clock
        self.run_id = journal.run_id
        self.seed = seed
        #: How failures inside durable calls are retried; an agent sets its own.
        self.retry = retry if retry is not None else RetryPolicy()
        #: A hard cap on the run's retries (an agent's ``Budgets.max_retries``): a retry past
        #: it is not made, and the call fails the budget (``BudgetExceeded``).
        self.max_retries: int | None = None
        #: The runtime's circuit breakers, shared by its runs.
        self.breakers = breakers if breakers is not None else Breakers(clock)
        self._rng = random.Random(seed)
        self._next_pos = 0
        self._probe = probe
        self.completed_writes: list[CompletedWrite] = []
        #: When the run's time is up, on the run's clock (``None``: no limit). The agent loop
        #: sets it from ``Budgets.max_duration_s`` and the run's journaled start.
        self.deadline: float | None = None

    # -- the deadline ---------------------------------------------------------------------

    def past_deadline(self, wait_s: float = 0.0) -> bool:
        """Whether the run's deadline has come, or would have after ``wait_s`` more seconds:
        a call may not start then, nor a wait end then."""
        return self.deadline is not None and self.clock.now() + wait_s >= self.deadline

    def call_timeout_s(self, own_s: float | None) -> float | None:
        """A call's timeout: the smaller of its own (``None``: none) and the time left before
        the run's deadline."""
        if self.deadline is None:
            return own_s
        left = max(0.0, self.deadline - self.clock.now())
        return left if own_s is None else min(own_s, left)

    # -- positions and replay -------------------------------------------------------------

    def _claim(self, call: str, name: str) -> tuple[int, list[Any]]:
        """Take the next position and check it against the journal."""
        if self._handed_back is not None:
            raise OwnershipLost(self._handed_back)
        pos = self._next_pos
        self._next_pos += 1
        recorded = self.journal.at(pos)
        if recorded:
            identity = call_identity(recorded[0])
            if identity is not None and identity != (call, name):
                raise NonDeterminismError(
                    f"run {self.run_id}: position {pos} was {identity[0]}({identity[1]!r}) in "
                    f"the journal but the workflow now calls {call}({name!r}); workflows must "
                    "make the same durable calls in the same order on every replay"
                )
        return pos, recorded

    @property
    def position(self) -> int:
        """The position the next durable call will take."""
        return self._next_pos

    def remember_write(self, position: int, tool: Tool[Any, Any], args: Any, result: Any,
                       key: str) -> None:
        """Note a write that returned, so a failed run can compensate it."""
        if tool.effect.writes:
            self.completed_writes.append(CompletedWrite(position, tool, args, result, key))

    def claim(self, call: str, name: str) -> tuple[int, list[Any]]:
        """Take the next position for a durable call made by the runtime itself."""
        return self._claim(call, name)

    def probe(self, position: int, name: str, point: str) -> None:
        if self._probe is not None:
            self._probe(ProbePoint(self.run_id, position, name, point))

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
        """
        pos, recorded = self._claim("step", name)
        if recorded:
            return self._replay_step(recorded[0], result_type)
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
            await self.journal.arecord(StepFailed, pos=pos, call="step", name=name,
                                       error=error_record(exc))
            raise
        await self.journal.arecord(StepRecorded, pos=pos, call="step", name=name, result=data)
        self.probe(pos, name, "after_step")
        return from_json(data, result_type)

    async def _step_failed(self, pos: int, name: str, exc: BaseException) -> BaseException:
        """Journal a step's error; return ``exc`` if a replay will raise its equal, else the
        exception a replay will raise (rebuilt from the journal)."""
        record = error_record(
            exc, encode=lambda value: to_json(value, what=f"the error of step {name!r}"))
        await self.journal.arecord(StepFailed, pos=pos, call="step", name=name, error=record)
        rebuilt = rebuild_error(record)
        return exc if _same_error(exc, rebuilt) else rebuilt

    def _replay_step(self, event: Any, result_type: Any) -> Any:
        if isinstance(event, StepFailed):
            raise rebuild_error(event.error)
        return from_json(event.result, result_type)

    def _value(self, call: str, produce: Callable[[], Any]) -> Any:
        pos, recorded = self._claim(call, call)
        # Produce even on replay: the run's generator must advance exactly as it did live, or
        # the first live draw after a resume would repeat an earlier value.
        value = produce()
        if recorded:
            return self._replay_step(recorded[0], None)
        self.journal.record(StepRecorded, pos=pos, call=call, name=call, result=value)
        return value

    def now(self) -> float:
        """The run clock's time, journaled: a replay returns the first reading."""
        return float(self._value("now", self.clock.now))

    def random(self) -> float:
        """A float in [0, 1) from the run's seeded generator, journaled."""
        return float(self._value("random", self._rng.random))

    def uuid(self) -> str:
        """A random UUID-shaped id from the run's seeded generator, journaled."""
        return str(self._value("uuid", lambda: _uuid_from(self._rng)))

    async def sleep(self, seconds: float) -> None:
        """A durable timer: after a crash, the run sleeps only what remains.

        A sleep longer than the runtime's ``park_timers_after_s`` is *parked*: the timer is
        journaled durably and the run suspends (status ``waiting``, until ``wake_at``), so its
        worker is free meanwhile and any worker continues the run once the timer is due. A
        parked timer resumed early suspends again without journaling anything."""
        pos, recorded = self._claim("sleep", "")
        if any(isinstance(e, TimerFired) for e in recorded):
            return
        if recorded:
            wake_at, parked = recorded[0].wake_at, recorded[0].parked
        else:
            wake_at = self.clock.now() + max(0.0, seconds)
            parked = self.park_timers_after_s is not None and seconds > self.park_timers_after_s
            if parked:
                # Durable before the run lets go: whoever continues it must find the timer.
                await self.journal.arecord(TimerStarted, sync=True, pos=pos, wake_at=wake_at,
                                           parked=True)
            else:
                await self.journal.arecord(TimerStarted, pos=pos, wake_at=wake_at)
        remaining = wake_at - self.clock.now()
        if remaining > 0:
            if parked:
                raise RunSuspended(f"timer:{pos}")
            await self.clock.sleep(remaining)
        await self.journal.arecord(TimerFired, pos=pos)

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
        pos, recorded = self._claim("wait_for", key)
        if self.journal.resolution(key) is None:
            self.journal.refresh()
        resolution = self.journal.resolution(key)
        expired = self.journal.expired(pos)
        if resolution is not None and not (
            expired and _seq_of_expiry(recorded) < resolution.seq
        ):
            if not recorded:
                await self.journal.arecord(StepRecorded, pos=pos, call="wait_for", name=key,
                                           result=resolution.value)
            return resolution.value
        if recorded and isinstance(recorded[0], StepRecorded):
            return recorded[0].result
        if expired:
            raise WaitTimedOut(f"wait for {key!r} timed out", key=key)
        if not recorded:
            deadline = None if timeout_s is None else self.clock.now() + timeout_s
            early = await self._start_wait(pos, key, deadline, data)
            if early is not None:
                return early.value
        else:
            deadline = recorded[0].deadline
        if deadline is not None and self.clock.now() >= deadline:
            expiry = await self.journal.arecord(WaitExpired, pos=pos, key=key)
            # A resolution that raced in just before the expiry was appended (and was taken
            # in by the append's retry) came first: a replay reads it that way, so live must.
            late = self.journal.resolution(key)
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
        while True:
            before = self.journal.last_seq
            try:
                await self.journal.arecord_once(WaitStarted, sync=True, pos=pos, key=key,
                                                deadline=deadline, data=dict(data or {}))
                return None
            except ConcurrencyConflict:
                if self.journal.last_seq == before:  # else a sibling call of this run's took it
                    self.journal.refresh()  # resolutions delivered meanwhile, nothing else
                    if self.journal.last_seq == before:
                        raise  # another writer appended more than resolutions
                early = self.journal.resolution(key)
                if early is not None:
                    await self.journal.arecord(StepRecorded, pos=pos, call="wait_for",
                                               name=key, result=early.value)
                    return early

    async def call_model(self, model: Model, request: ModelRequest,
                         prices: PriceTable | None = None) -> ModelResponse:
        """Ask ``model`` once; afterwards return the journaled response (or raise the
        journaled failure). Cost is priced from ``prices`` (the default table if omitted)."""
        from tether.runtime.model_calls import call_model

        return await call_model(self, model, request, prices)

    def decide(self, name: str, data: dict[str, Any]) -> dict[str, Any]:
        """Journal a harness decision at the next position; on replay return the recorded one.

        Live, the journaled form of ``data`` is returned (tuples as lists, enums as their
        values …), the same a replay returns.
        """
        pos, recorded = self._claim("decide", name)
        if recorded and isinstance(recorded[0], Decision):
            return dict(recorded[0].data)
        journaled = to_json(data, what=f"decision {name!r}")
        self.journal.record(Decision, pos=pos, name=name, data=journaled)
        return dict(journaled)

    def maybe_decide(
        self, name: str, live: Callable[[], dict[str, Any] | None]
    ) -> dict[str, Any] | None:
        """A decision that may or may not be taken (a budget breach, a breaker refusing).

        Replaying, the journal says whether it was: a recorded ``name`` decision at the next
        position is returned; any other recorded call there means it was not taken (``None``,
        and ``live`` is not consulted, since the present may differ from then). Live,
        ``live()`` decides, and a decision it returns is journaled.
        """
        recorded = self.journal.at(self._next_pos)
        if recorded:
            first = recorded[0]
            if isinstance(first, Decision) and first.name == name:
                self._next_pos += 1
                return dict(first.data)
            return None
        data = live()
        if data is not None:
            return self.decide(name, data)
        return None

    async def call_tool(self, tool: Tool[Any, Any], args: Any) -> Any:
        """Call a tool exactly once per position, following the write protocol.

        See :mod:`tether.runtime.writes` for what happens on timeouts, crashes and errors.
        """
        from tether.runtime.writes import execute_tool

        validated = tool.validate_args(args)
        pos, recorded = self._claim("call_tool", tool.name)
        return await execute_tool(self, tool, validated, pos, recorded)


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
