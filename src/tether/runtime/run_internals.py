"""The runtime's side of one executing run: the journal, the position, and the run's settings.

A workflow sees a :class:`~tether.runtime.context.RunContext`: the durable calls an author
makes (``step``, ``call_tool``, ``sleep`` …). Everything those calls stand on — the journal and
the next position in it, the run's clock and seeded generator, its retry policy and hard caps,
its deadline, the circuit breakers, the writes to compensate, the crash probe — is held here,
in one :class:`RunInternals` per execution, which only the runtime's own modules use (the
write protocol, model calls, compensation, the agent loop). They reach it from a context with
:func:`tether.runtime.context.internals`; workflow code has no reason to.

What the agent loop and the governor need to know from the journal is asked here as a named
question (:meth:`RunInternals.retries_so_far`, :meth:`~RunInternals.tool_result` …), so they
say what they want rather than how the journal stores it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tether.clock import Clock
from tether.errors import LeaseLost, NonDeterminismError, OwnershipLost
from tether.events import Decision, ToolResult, WaitResolved, WaitStarted
from tether.runtime.breaker import Breakers
from tether.runtime.codec import to_json
from tether.runtime.journal import Probe, ProbePoint, RunJournal, call_identity
from tether.runtime.retry import RetryPolicy
from tether.runtime.tools import Tool
from tether.store.base import Store

if TYPE_CHECKING:
    from tether.models.base import DeltaSink

__all__ = ["CompletedWrite", "RunInternals"]


@dataclass(frozen=True, slots=True)
class CompletedWrite:
    """A write that returned, remembered for saga compensation."""

    position: int
    tool: Tool[Any, Any]
    args: Any
    result: Any
    key: str


class RunInternals:
    """The state and plumbing of one run's execution (see the module docstring).

    Made by the runtime for each execution, with the settings the runtime gives every run;
    the agent loop then sets the agent's own (``retry``, ``max_retries``, ``deadline``).
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
        self.clock = clock
        self.run_id = journal.run_id
        #: The run's seed (journaled in ``run_started``): the generator below and the retry
        #: jitter draw from it, so a replay draws the same values.
        self.seed = seed
        #: The generator ``ctx.random()`` and ``ctx.uuid()`` draw from.
        self.rng = random.Random(seed)
        #: Sleeps longer than this (seconds) are parked: the run suspends until the timer is
        #: due and any worker continues it then (``None``: every sleep waits in process).
        self.park_timers_after_s = park_timers_after_s
        #: Where a streaming model call sends its text deltas (the runtime's delta listeners);
        #: ``None``: nobody listens. Never journaled, never replayed.
        self.deltas = deltas
        #: How failures inside durable calls are retried; an agent sets its own.
        self.retry = retry if retry is not None else RetryPolicy()
        #: A hard cap on the run's retries (an agent's ``Budgets.max_retries``): a retry past
        #: it is not made, and the call fails the budget (``BudgetExceeded``).
        self.max_retries: int | None = None
        #: The runtime's circuit breakers, shared by its runs.
        self.breakers = breakers if breakers is not None else Breakers(clock)
        #: Writes that returned, in completion order, for compensation if the run fails.
        self.completed_writes: list[CompletedWrite] = []
        #: When the run's time is up, on the run's clock (``None``: no limit). The agent loop
        #: sets it from ``Budgets.max_duration_s`` and the run's journaled start.
        self.deadline: float | None = None
        #: Set by the runtime when its worker hands the run back (a graceful stop): the run
        #: stops before its next durable call, so the call in progress ends and is journaled.
        self.handed_back: LeaseLost | None = None
        self._next_pos = 0
        self._probe = probe

    # -- positions and replay -------------------------------------------------------------

    @property
    def position(self) -> int:
        """The position the next durable call will take."""
        return self._next_pos

    def claim(self, call: str, name: str) -> tuple[int, list[Any]]:
        """Take the next position for the durable call ``call`` named ``name``; return it and
        what the journal holds there. A recorded call of another kind or name there means the
        workflow changed or is not deterministic: :class:`NonDeterminismError`."""
        if self.handed_back is not None:
            raise OwnershipLost(self.handed_back)
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

    def probe(self, position: int, name: str, point: str) -> None:
        """Tell the runtime's probe (crash tests, the simulator) the run reached ``point``."""
        if self._probe is not None:
            self._probe(ProbePoint(self.run_id, position, name, point))

    def remember_write(self, position: int, tool: Tool[Any, Any], args: Any, result: Any,
                       key: str) -> None:
        """Note a write that returned, so a failed run can compensate it."""
        if tool.effect.writes:
            self.completed_writes.append(CompletedWrite(position, tool, args, result, key))

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

    # -- harness decisions ----------------------------------------------------------------

    def decide(self, name: str, data: dict[str, Any]) -> dict[str, Any]:
        """Journal a harness decision at the next position; on replay return the recorded one.

        Live, the journaled form of ``data`` is returned (tuples as lists, enums as their
        values …), the same a replay returns.
        """
        pos, recorded = self.claim("decide", name)
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

    # -- what the harness asks of the journal ---------------------------------------------

    @property
    def store(self) -> Store:
        """The store the run is journaled in."""
        return self.journal.store

    def retries_so_far(self) -> int:
        """The retries the run has spent before its next position, as :mod:`tether.retries`
        defines them; counted from the journal, so a replay counts what the first execution
        did."""
        return self.journal.retries_before(self._next_pos)

    def fresh_at(self, position: int) -> bool:
        """Whether nothing is journaled at ``position`` yet: the call there runs live from its
        start (it neither replays an outcome nor finishes an attempt a crash cut short)."""
        return not self.journal.at(position)

    def tool_result(self, position: int) -> ToolResult | None:
        """The ``tool_result`` that settled the tool call at ``position``, or ``None``."""
        return next((e for e in reversed(self.journal.at(position))
                     if isinstance(e, ToolResult)), None)

    def wait_started(self, position: int) -> WaitStarted | None:
        """The wait journaled at ``position`` (its key, deadline and data), or ``None``."""
        return next((e for e in self.journal.at(position) if isinstance(e, WaitStarted)), None)

    def resolution(self, key: str) -> WaitResolved | None:
        """The value delivered for the wait ``key`` (who, when, with what note), or ``None``."""
        return self.journal.resolution(key)
