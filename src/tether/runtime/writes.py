"""The write protocol: intent → call → result, and what to do when the outcome is unknown.

For a write, the intent (tool, validated arguments, idempotency key) is journaled **durably**
before the handler is called, and the result after. An intent without a result — because the
worker died, or the handler timed out or lost its connection — is an *ambiguous outcome*,
resolved by the tool's effect class:

========================  ====================================================================
``idempotent``            re-issue with the same key; the provider deduplicates
``reconcilable``          ``reconcile(key)``: if the write happened, record its result; if not,
                          re-issue with the same key
``unsafe``                never re-issue blindly: the run escalates (status ``escalated``)
``read``                  no intent is journaled; the call simply runs again
========================  ====================================================================

Re-issues are bounded by the tool's ``attempts``; a write still ambiguous after them is looked
up when the tool can (``reconcile``: a lookup is not a re-issue), and otherwise escalates. An
attempt cut off by its worker stopping (``tool_ambiguous`` with ``interrupted``) is not the
provider's doing and does not count there: those are bounded by the retry policy's ``crash``
rule (10 by default), past which the run escalates, as the call may be what stops the worker.
Every retry — a transient failure's next attempt, a re-issue after an unknown outcome, a lookup
made again (journaled as ``tool_retry`` with ``lookup``) — draws from the run's retry budget
(``RetryPolicy.retry_budget``), counted from the journal by :mod:`tether.retries` at every
position, so parallel calls share it; and none is made past the agent's hard cap
(``Budgets.max_retries``: the call then fails the budget, ``BudgetExceeded``). A write whose
outcome is unknown when a budget is spent is settled by lookup or escalated, never failed.
A handler raising :class:`TransientError` says the call certainly did not take effect: it is
retried (a write with a new intent under the same key), each retry journaled as ``tool_retry``
with its delay, which comes from the run's retry policy (or the tool's ``retry_delay_s``). A
read that times out or loses its connection is retried the same way. A handler that raises any
other exception failed definitively: the error is journaled and raised to the workflow as
:class:`ToolFailed`. A tool's ``timeout_s`` bounds each attempt on the run's clock; for a write,
running out of time is an ambiguous outcome. A result that does not match the declared result
type is :class:`ToolResultInvalid` (the provider's schema drifted), not a crash. A *write* that
returned took effect whatever its response: if the response cannot be journaled or breaks the
declared type, a ``tool_result`` flagged ``unreadable`` (holding what could be kept) settles the
position — the key is answered, the write is never re-issued nor reported as failed — and the
call raises :class:`ToolResultInvalid` saying it was applied.

**Unknown stays unknown.** Once a request under a key may have taken effect (an ambiguous
attempt, a crash after the intent, an earlier call under the same business key), its outcome
is never reported as a failure: if settling it meets throttling, transient errors, a spent retry
budget or the run's deadline, the write is reconciled when the tool can look it up
(``reconcile``), and otherwise the run escalates — a ``tool_ambiguous`` event is the last word
at the position, and the run's reason names the tool, the key and why the outcome is unknown.

**Keys have a lifetime.** A provider remembers a key for ``Tool.key_lifetime_s`` (Stripe: 24 h).
A re-issue relies on that memory, so it is sent only while the first request under the key that
may have taken effect (:func:`tether.runtime.keys.first_send`) is younger than the lifetime minus
a safety margin (:func:`~tether.runtime.keys.key_margin_s`: a tenth of the lifetime, at most 5
minutes — room for the request's own transit and for the provider's clock running ahead of
ours), measured on the run's clock. Past
it, the write is reconciled if the tool can look it up, else the run escalates with the key's
age and the retention. A backoff that would end past that point is shortened to end inside it;
a provider's ``retry-after`` that ends past it cannot be honoured in time, so the write is
settled at once instead.

**Budgets are deadlines.** With a run deadline (:attr:`RunInternals.deadline`), each attempt's
timeout is the smaller of the tool's ``timeout_s`` and the time left; no attempt starts at or
after the deadline, and no retry waits past it. A read cut off fails the run's duration budget
(``budget_exceeded`` journaled, :class:`BudgetExceeded` raised). A write cut off is ambiguous:
it is not re-issued after the deadline — a re-issue is a new request the budget no longer
allows — but reconciled when the tool can look it up (a lookup settles the truth and is worth
the seconds past the deadline), else the run escalates.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from tether.errors import (
    AmbiguousOutcome,
    AuthExpired,
    BudgetExceeded,
    RunEscalated,
    ToolFailed,
    ToolResultInvalid,
    TransientError,
    UsageError,
    error_record,
    rebuild_error,
)
from tether.events import ToolAmbiguous, ToolError, ToolIntent, ToolResult, ToolRetry
from tether.retries import retries_at
from tether.runtime.ambiguity import ErrorOutcome, cancel_requested, retry_after_s, type_name
from tether.runtime.codec import to_json
from tether.runtime.failures import FailureType
from tether.runtime.keys import first_send, key_margin_s, unsettled
from tether.runtime.provenance import Sourced, Trust
from tether.runtime.retry import jitter_rng
from tether.runtime.timeouts import within
from tether.runtime.tools import Effect, Tool, ToolContext

if TYPE_CHECKING:
    from tether.runtime.run_internals import RunInternals

__all__ = ["AMBIGUOUS_ERRORS", "execute_tool"]

#: Exceptions from a handler that mean "the request may or may not have taken effect".
AMBIGUOUS_ERRORS: tuple[type[BaseException], ...] = (AmbiguousOutcome, TimeoutError,
                                                     ConnectionError)
_RETRYABLE: tuple[type[BaseException], ...] = (*AMBIGUOUS_ERRORS, TransientError)
#: "Send this attempt" / "the lookup found nothing", as opposed to a settled value.
_SEND, _NOT_FOUND = object(), object()
#: Clock rounding allowed when a wait was shortened to end exactly at a key's limit.
_EPSILON_S = 1e-6


async def execute_tool(
    run: RunInternals, tool: Tool[Any, Any], args: Any, pos: int, recorded: list[Any]
) -> Any:
    """Run (or replay) the tool call at ``pos``."""
    args_json = args.model_dump(mode="json")
    key = tool.idempotency_key(args, f"{run.run_id}:{pos}")
    last = recorded[-1] if recorded else None
    if isinstance(last, ToolResult):
        if last.unreadable is not None:
            run.remember_write(pos, tool, args, last.result, key)
            raise _unreadable(tool, last.unreadable)
        return _finish(run, tool, args, pos, key, last.result)
    if isinstance(last, ToolError) and not (
            last.failure == "ambiguous_write" and tool.effect.writes):
        raise rebuild_error(last.error)
    call = _Call(run, tool, args, args_json, pos, key)
    if isinstance(last, ToolRetry) and last.lookup:  # the worker stopped between lookups
        return await call.resolve(_last_attempt(recorded))
    retried = last.attempt + 1 if isinstance(last, ToolRetry) else 1
    if not tool.effect.writes:
        return await call.read(attempt=retried)
    if isinstance(last, ToolRetry):
        return await call.write(attempt=retried)
    if isinstance(last, ToolError):  # a failed lookup of an unknown outcome: look again
        return await call.resolve(_last_attempt(recorded))
    if isinstance(last, ToolIntent | ToolAmbiguous):
        attempt = last.attempt
        if isinstance(last, ToolIntent):
            await run.journal.arecord(
                ToolAmbiguous, pos=pos, tool=tool.name, key=key, attempt=attempt,
                reason="the worker stopped after journaling the intent and before the result",
                interrupted=True,
            )
        return await call.resolve(attempt)
    return await call.write(attempt=1)


def _finish(run: RunInternals, tool: Tool[Any, Any], args: Any, pos: int, key: str,
            data: Any) -> Any:
    value = tool.validate_result(data)
    run.remember_write(pos, tool, args, value, key)
    return value


def _last_attempt(recorded: list[Any]) -> int:
    return max((e.attempt for e in recorded if isinstance(e, ToolIntent)), default=1)


def _unreadable(tool: Tool[Any, Any], why: str) -> ToolResultInvalid:
    """The error a write raises when it applied but its response is unusable (``why``)."""
    return ToolResultInvalid(
        f"tool {tool.name!r} was applied, but {why}; the write took effect and must not be "
        "repeated: check its outcome with the provider if it is needed",
        tool=tool.name, failure="tool_result_invalid", error_type="ValidationError")


class _Call:
    """One tool call's live execution, attempt by attempt."""

    def __init__(self, run: RunInternals, tool: Tool[Any, Any], args: Any,
                 args_json: dict[str, Any], pos: int, key: str) -> None:
        self.run, self.tool, self.args, self.args_json = run, tool, args, args_json
        self.pos, self.key = pos, key
        self.started_at = run.clock.now()

    async def read(self, attempt: int) -> Any:
        while True:
            if self.run.past_deadline():
                self._out_of_time("was not called")
            try:
                data = await self._invoke(attempt)
            except _RETRYABLE as exc:
                await self._retry_or_fail(attempt, exc)
                attempt += 1
                continue
            self.run.probe(self.pos, self.tool.name, "after_call")
            result = await self._record_result(data)
            self.run.probe(self.pos, self.tool.name, "after_result")
            return result

    async def write(self, attempt: int, *, looked_up: bool = False) -> Any:
        """Send attempt ``attempt`` of the write (``looked_up``: a reconcile just found that no
        earlier request under the key took effect)."""
        run, tool = self.run, self.tool
        if not looked_up:
            settled = await self._check_before_send(attempt)
            if settled is not _SEND:
                return settled
        run.probe(self.pos, tool.name, "before_intent")
        # Durable before the request leaves the process: the output-commit rule.
        await run.journal.arecord(ToolIntent, sync=True, pos=self.pos, tool=tool.name,
                                  effect=tool.effect.value, key=self.key, args=self.args_json,
                                  attempt=attempt)
        run.probe(self.pos, tool.name, "after_intent")
        try:
            data = await self._invoke(attempt)
        except TransientError as exc:
            settled = await self._retry_or_fail(attempt, exc)
            if settled is not _SEND:
                return settled
            return await self.write(attempt + 1)
        except AMBIGUOUS_ERRORS as exc:
            await run.journal.arecord(ToolAmbiguous, pos=self.pos, tool=tool.name,
                                      key=self.key, attempt=attempt,
                                      reason=f"{type(exc).__name__}: {exc}")
            return await self.resolve(attempt, live=True)
        except ToolFailed as exc:
            # A re-issue refused outright (expired credentials, a rejection) says nothing of
            # the earlier request under the key: its outcome is still unknown. The refusal is
            # journaled only once that is settled, so a journal cut short anywhere replays to
            # the same decision (a tool_error is always the last word).
            if unsettled(run.journal, self.key, skip=(self.pos, attempt)):
                found = await self._settle_unknown(attempt, f"a re-issue was refused ({exc})")
                if found is not _NOT_FOUND:
                    return found
            self._journal_failure(exc)
            raise
        run.probe(self.pos, tool.name, "after_call")
        result = await self._record_result(data)
        run.probe(self.pos, tool.name, "after_result")
        return result

    async def _check_before_send(self, attempt: int) -> Any:
        """Before a write's attempt: ``_SEND``, or the settled value (a reconcile found the
        write), or a raised failure / escalation. An attempt that would rely on a key the
        provider may have forgotten, or that would start at or after the run's deadline, is
        not sent."""
        first = first_send(self.run.journal, self.key, skip=(self.pos, attempt))
        if first is not None:
            age_s = self.run.clock.now() - first[0]
            lifetime = self.tool.key_lifetime_s
            if age_s > lifetime - key_margin_s(lifetime) + _EPSILON_S:
                why = (f"the first request under the key was sent at position {first[1]} "
                       f"{age_s:,.0f} s ago and the provider keeps keys {lifetime:,.0f} s "
                       f"(less a {key_margin_s(lifetime):,.0f} s margin), so a re-issue could "
                       "apply it again")
                found = await self._settle_unknown(attempt, why)
                if found is not _NOT_FOUND:
                    return found
                first = None  # the lookup says no earlier request took effect
        if self.run.past_deadline():
            if first is not None and unsettled(self.run.journal, self.key,
                                               skip=(self.pos, attempt)):
                found = await self._settle_unknown(
                    attempt, "the run's duration budget ended before it could be re-issued")
                if found is not _NOT_FOUND:
                    return found
            self._out_of_time("was not called")
        return _SEND

    async def resolve(self, attempt: int, *, live: bool = False) -> Any:
        """Settle an ambiguous write that was attempted ``attempt`` times. After a live
        timeout the re-issue waits a backoff; after a crash it does not (the crash took time
        enough)."""
        tool = self.tool
        if tool.effect is Effect.UNSAFE:
            raise RunEscalated(
                f"tool {tool.name!r} (key {self.key}) is unsafe and the outcome of its call at "
                f"position {self.pos} is unknown; it is not re-issued blindly. Check whether it "
                "happened, then resolve the run by hand"
            )
        looked_up = False
        if tool.effect is Effect.RECONCILABLE:
            found = await self._reconcile(attempt)
            if found is not None:
                return found
            looked_up = True  # certainly not applied: a re-issue is a first request
        # Attempts the worker's own stop cut off say nothing against the provider: they are
        # bounded by the ``crash`` rule (a call that keeps stopping its worker), the others
        # by the tool's ``attempts``.
        stops = sum(1 for e in self.run.journal.at(self.pos)
                    if isinstance(e, ToolAmbiguous) and e.interrupted)
        stop_limit = self.run.retry.rule(FailureType.CRASH).max_attempts
        why = None
        if stops >= stop_limit:
            why = (f"its worker stopped {stops} time(s) while it was being sent (the crash "
                   f"rule allows {stop_limit}); the call itself may be what stops the worker")
        elif attempt - stops >= tool.attempts:
            why = f"it still has an unknown outcome after {attempt - stops} attempt(s)"
        if why is not None:
            if not looked_up and tool.reconcile is not None:
                # No more re-issues, but a lookup is not one: it may still tell the outcome.
                found = await self._reconcile(attempt)
                if found is not None:
                    return found
            raise RunEscalated(self._unknown_reason(f"{why}; escalating rather than guessing"))
        stop = "the run's duration budget ended" if self.run.past_deadline() else None
        capped = self._capped() if stop is None else None
        stop = stop or capped
        spent = stop is None and self._budget_spent()
        if spent:
            # A re-issue is a retry: it draws from the run's budget like any other.
            stop = f"the run's retry budget ({self.run.retry.retry_budget}) is spent"
        if stop is None and live:
            stop = await self._wait(attempt, FailureType.AMBIGUOUS_WRITE)
        if stop is not None:
            # No re-issue after the deadline: it would be a new request the budget no
            # longer allows. A lookup may still settle what happened.
            if not looked_up:
                found = await self._settle_unknown(attempt, f"{stop}; it is not re-issued")
                if found is not _NOT_FOUND:
                    return found
            if capped is not None:
                self._over_budget("max_retries", f"{capped}; tool {tool.name!r} at position "
                                  f"{self.pos} had not happened when looked up and was not "
                                  "re-issued")
            if spent:
                self._fail("transient_tool_error", AmbiguousOutcome(
                    f"{stop}; a lookup found the write had not happened, and it was not "
                    "re-issued"))
            self._out_of_time("had not happened when looked up; it was not re-issued")
        return await self.write(attempt + 1, looked_up=looked_up)

    async def _settle_unknown(self, attempt: int, why: str) -> Any:
        """The outcome of a request under this key is unknown and cannot be settled by a
        re-issue (``why``): look it up if the tool can — returning the result found, or
        ``_NOT_FOUND`` when it certainly did not happen — else escalate. The outcome is never
        reported as a failure: the journal's last word at the position is ``tool_ambiguous``."""
        if self.tool.reconcile is not None:
            found = await self._reconcile(attempt)
            return _NOT_FOUND if found is None else found
        self._journal_unknown(attempt, why)
        raise RunEscalated(self._unknown_reason(why))

    def _journal_unknown(self, attempt: int, why: str) -> None:
        """Make ``tool_ambiguous`` the last word at the position (unless it already is)."""
        events = self.run.journal.at(self.pos)
        if events and not isinstance(events[-1], ToolAmbiguous):
            self.run.journal.record(ToolAmbiguous, pos=self.pos, tool=self.tool.name,
                                    key=self.key, attempt=attempt,
                                    reason=f"outcome still unknown: {why}")

    def _unknown_reason(self, why: str) -> str:
        return (f"the outcome of tool {self.tool.name!r} (key {self.key}) at position "
                f"{self.pos} is unknown: {why}. It was not reported as failed; check with the "
                "provider whether it happened, then resolve the run by hand")

    def _out_of_time(self, what: str) -> None:
        """Fail the call for the run's duration budget (journaled, then raised)."""
        self._over_budget(
            "max_duration_s",
            f"max_duration_s: the run's duration budget ended at {self.run.deadline} on the "
            f"run's clock; tool {self.tool.name!r} at position {self.pos} {what}")

    def _over_budget(self, limit: str, message: str) -> None:
        """Fail the call for one of the run's budgets (journaled, then raised)."""
        error = BudgetExceeded(message, limit=limit)
        self.run.journal.record(ToolError, pos=self.pos, tool=self.tool.name,
                                failure=FailureType.BUDGET_EXCEEDED.value,
                                error=error.to_record(), latency_s=self._elapsed_s())
        raise error

    async def _reconcile(self, attempt: int) -> Any:
        """Look the write up by key. ``None`` means it certainly did not happen.

        A lookup that itself times out is retried (bounded by ``attempts``); if the outcome
        still cannot be told the run escalates — re-issuing a write that does not deduplicate
        on a guess could apply it twice. Any other lookup error is journaled and raised.
        """
        tool = self.tool
        if tool.reconcile is None:
            raise UsageError(f"tool {tool.name!r} is reconcilable but has no reconcile function")
        recorded = self.run.journal.at(self.pos)
        intent = max((e.seq for e in recorded if isinstance(e, ToolIntent)), default=0)
        done = sum(1 for e in recorded if isinstance(e, ToolRetry) and e.lookup and e.seq > intent)
        for lookup in range(min(done + 1, tool.attempts), tool.attempts + 1):
            try:
                found = tool.reconcile(self._tool_context(attempt), self.key)
                if inspect.isawaitable(found):
                    # Bounded by the tool's own timeout, not the run's deadline: a lookup is
                    # what settles a write the deadline cut off, so it may run past it.
                    found = await within(self.run.clock, found, tool.timeout_s)
            except (Exception, asyncio.CancelledError) as exc:
                if isinstance(exc, asyncio.CancelledError) and cancel_requested():
                    raise  # the run itself is being cancelled
                # Otherwise a CancelledError is the lookup's own failure (a client cancelled
                # its request): the lookup failed, and the write's outcome is still unknown.
                if tool.outcome_of(exc) is ErrorOutcome.PERMANENT:
                    # The lookup failed, not the write: its outcome is still unknown, and
                    # recording the write as failed would invite a second one under a new key
                    # (and would replay as a failure): the last word is tool_ambiguous.
                    self._journal_unknown(
                        attempt, f"looking it up failed ({type(exc).__name__}: {exc})")
                    raise RunEscalated(
                        f"tool {tool.name!r} (key {self.key}): the write's outcome is unknown "
                        f"and looking it up failed ({type(exc).__name__}: {exc}); check it by "
                        "hand"
                    ) from exc
                # A lookup is a read: a timeout or a refused connection is retried — a retry
                # like any other, journaled and drawn from the run's budget.
                capped = self._capped()
                spent = capped is not None or self._budget_spent()
                if lookup >= tool.attempts or spent:
                    why = f"{lookup} lookup(s) failed"
                    if spent and lookup < tool.attempts:
                        why = capped or (f"the run's retry budget "
                                         f"({self.run.retry.retry_budget}) is spent")
                    self._journal_unknown(attempt, f"{why} ({type(exc).__name__}: {exc})")
                    raise RunEscalated(
                        f"tool {tool.name!r} (key {self.key}): the write's outcome is unknown and "
                        f"{why} ({type(exc).__name__}: {exc}); not re-issuing a write that "
                        "cannot be deduplicated"
                    ) from exc
                delay = self._delay_s(lookup, FailureType.AMBIGUOUS_WRITE)
                await self.run.journal.arecord(ToolRetry, pos=self.pos, tool=tool.name,
                                               failure=FailureType.AMBIGUOUS_WRITE.value,
                                               attempt=lookup, delay_s=delay,
                                               error=error_record(exc), lookup=True)
                if delay > 0:
                    await self.run.clock.sleep(delay)
                continue
            if found is None:
                return None
            return await self._record_result(found, reconciled=True)
        return None  # pragma: no cover - the loop returns or raises

    async def _invoke(self, attempt: int) -> Any:
        self.started_at = self.run.clock.now()
        try:
            value = self.tool.handler(self._tool_context(attempt), self.args)
            if inspect.isawaitable(value):
                value = await within(self.run.clock, value,
                                     self.run.call_timeout_s(self.tool.timeout_s))
        except AuthExpired as exc:
            self._fail("auth_expired", exc, journal=not self.tool.effect.writes)
        except (Exception, asyncio.CancelledError) as exc:
            if isinstance(exc, asyncio.CancelledError) and cancel_requested():
                raise  # the run itself is being cancelled
            # Translated at the boundary (the tool's declarations first, then the defaults for
            # the common client libraries): past here "may have been applied" is only ever one
            # of AMBIGUOUS_ERRORS and "certainly not applied" only a TransientError.
            outcome = self.tool.outcome_of(exc)
            if outcome is ErrorOutcome.PERMANENT:
                # A write's refusal is journaled by write(), after any unknown outcome under
                # its key is settled.
                self._fail("permanent_tool_error", exc, journal=not self.tool.effect.writes)
            ambiguous = outcome is ErrorOutcome.AMBIGUOUS
            if isinstance(exc, AMBIGUOUS_ERRORS if ambiguous else TransientError):
                raise  # already says what it means (and its type is journaled as it is)
            what = f"tool {self.tool.name!r}: {type_name(exc)}: {exc}"
            if ambiguous:
                raise AmbiguousOutcome(what) from exc
            raise TransientError(what, retry_after_s=retry_after_s(exc)) from exc
        return value

    async def _record_result(self, value: Any, *, reconciled: bool = False) -> Any:
        tool = self.tool
        source, trust = None, tool.trust
        if isinstance(value, Sourced):
            value, source, trust = value.value, value.source, Trust(value.trust)
        try:
            data = to_json(value, what=f"tool {tool.name!r}")
        except UsageError as exc:
            if not tool.effect.writes:
                raise
            return self._applied_unreadable(
                None, f"its response cannot be journaled ({exc})", reconciled, source, trust)
        try:
            typed = tool.validate_result(data)
        except ValidationError as exc:
            if tool.effect.writes:
                return self._applied_unreadable(
                    data, f"its response does not match the declared result type ({exc})",
                    reconciled, source, trust)
            error = ToolResultInvalid(
                f"tool {tool.name!r} returned a result that does not match its declared "
                f"result type: {exc}",
                tool=tool.name, failure="tool_result_invalid", error_type="ValidationError",
            )
            self.run.journal.record(ToolError, pos=self.pos, tool=tool.name,
                                    failure="tool_result_invalid", error=error.to_record(),
                                    latency_s=self._elapsed_s())
            raise error from exc
        await self.run.journal.arecord(ToolResult, pos=self.pos, tool=tool.name, result=data,
                                       reconciled=reconciled, latency_s=self._elapsed_s(),
                                       source=source, trust=trust.value)
        self.run.remember_write(self.pos, tool, self.args, typed, self.key)
        return typed

    def _applied_unreadable(self, data: Any, why: str, reconciled: bool, source: str | None,
                            trust: Trust) -> Any:
        """A write returned (it took effect) but its response is unusable: journal the result
        as far as it can be kept, flagged ``unreadable`` — so the write is settled and never
        reported as failed or re-issued — and raise :class:`ToolResultInvalid` saying so."""
        self.run.journal.record(ToolResult, pos=self.pos, tool=self.tool.name, result=data,
                                reconciled=reconciled, latency_s=self._elapsed_s(),
                                source=source, trust=trust.value, unreadable=why)
        self.run.remember_write(self.pos, self.tool, self.args, data, self.key)
        raise _unreadable(self.tool, why)

    def _fail(self, failure: str, exc: BaseException, *, during: str = "",
              journal: bool = True) -> Any:
        """Raise the call's failure as :class:`ToolFailed`, journaled unless ``journal`` is
        false (the caller journals it with :meth:`_journal_failure` once it stands)."""
        what = f"the reconciliation of tool {self.tool.name!r}" if during == "reconcile" else \
            f"tool {self.tool.name!r}"
        error = ToolFailed(
            f"{what} failed: {type(exc).__name__}: {exc}",
            tool=self.tool.name, failure=failure, error_type=error_record(exc)["type"],
        )
        if journal:
            self._journal_failure(error)
        raise error from exc

    def _journal_failure(self, error: ToolFailed) -> None:
        self.run.journal.record(ToolError, pos=self.pos, tool=self.tool.name,
                                failure=error.failure, error=error.to_record(),
                                latency_s=self._elapsed_s())

    def _elapsed_s(self) -> float:
        return max(0.0, self.run.clock.now() - self.started_at)

    async def _retry_or_fail(self, attempt: int, exc: BaseException) -> Any:
        """Journal a retry and wait its delay (``_SEND``: go on), or stop once attempts — or
        the run's retry budget, or its time — are spent: a call that certainly did not take
        effect fails; a write that may have taken effect earlier is settled as unknown."""
        unknown = self.tool.effect.writes and unsettled(
            self.run.journal, self.key, skip=(self.pos, attempt))
        delay, stop, out_of_time = 0.0, None, False
        capped = self._capped()
        if attempt >= self.tool.attempts:
            stop = f"{attempt} attempt(s) failed, the last with {type(exc).__name__}: {exc}"
        elif capped is not None:
            stop = capped
        elif self._budget_spent():
            stop = (f"the run's retry budget ({self.run.retry.retry_budget}) is spent; the "
                    f"last attempt failed with {type(exc).__name__}: {exc}")
        else:
            hint = exc.retry_after_s if isinstance(exc, TransientError) else None
            delay = self._delay_s(attempt, FailureType.TRANSIENT_TOOL_ERROR, hint)
            delay, stop, out_of_time = self._bounded(delay, hint, unknown)
        if stop is not None:
            if unknown:
                found = await self._settle_unknown(attempt, stop)
                if found is not _NOT_FOUND:
                    return found
            if out_of_time:
                self._out_of_time(f"failed ({type(exc).__name__}: {exc}) and {stop}")
            if stop is capped:
                self._over_budget("max_retries", f"{capped}; tool {self.tool.name!r} at "
                                  f"position {self.pos} failed ({type(exc).__name__}: {exc}) "
                                  "and was not retried")
            self._fail("transient_tool_error", exc)
        await self.run.journal.arecord(ToolRetry, pos=self.pos, tool=self.tool.name,
                                       failure=FailureType.TRANSIENT_TOOL_ERROR.value,
                                       attempt=attempt, delay_s=delay, error=error_record(exc))
        if delay > 0:
            await self.run.clock.sleep(delay)
        return _SEND

    def _retries_spent(self) -> int:
        """The run's retries so far, counted from the journal by :mod:`tether.retries` at
        every position (parallel calls draw from one total)."""
        journal = self.run.journal
        return journal.retries_elsewhere(self.pos) + retries_at(journal.at(self.pos))

    def _budget_spent(self) -> bool:
        """Whether the run's retry budget allows no further retry."""
        return self._retries_spent() >= self.run.retry.retry_budget

    def _capped(self) -> str | None:
        """Why no retry may be made under the run's hard cap (``max_retries``), or ``None``."""
        cap = self.run.max_retries
        if cap is None:
            return None
        used = self._retries_spent()
        if used < cap:
            return None
        return f"max_retries: used {used:,} retries, limit {cap:,}"

    def _bounded(self, delay: float, hint: float | None,
                 unsettled: bool) -> tuple[float, str | None, bool]:
        """The wait before the next attempt, kept within the key's lifetime and the run's
        deadline; or why no wait can be taken (then no next attempt is made), and whether
        that is the deadline."""
        now = self.run.clock.now()
        if unsettled:
            first = first_send(self.run.journal, self.key, skip=(-1, -1))
            if first is not None:
                lifetime = self.tool.key_lifetime_s
                limit = first[0] + lifetime - key_margin_s(lifetime)
                if hint is not None and now + hint > limit:
                    # The provider will refuse until then: a shortened wait would only meet
                    # another refusal, and a longer one would outlive the key.
                    return 0.0, (f"the provider asked to wait {hint:g} s, past the end of its "
                                 f"{lifetime:,.0f} s memory of the key (first sent at "
                                 f"position {first[1]})"), False
                delay = max(0.0, min(delay, limit - now))
        if self.run.deadline is not None and now + delay >= self.run.deadline:
            return delay, (f"a {delay:g} s wait would end at or after the run's deadline "
                           f"({self.run.deadline:g} on the run's clock)"), True
        return delay, None, False

    def _delay_s(self, attempt: int, failure: FailureType,
                 retry_after_s: float | None = None) -> float:
        if self.tool.retry_delay_s is not None:
            delay = self.tool.retry_delay_s * 2.0 ** (attempt - 1)
            return float(max(delay, retry_after_s or 0.0))
        rule = self.run.retry.rule(failure)
        return rule.delay_s(attempt, jitter_rng(self.run.seed, self.pos, attempt), retry_after_s)

    async def _wait(self, attempt: int, failure: FailureType) -> str | None:
        """Back off before re-issuing an ambiguous write, within the key's lifetime and the
        run's deadline; or say why the re-issue cannot wait (and so must not be made)."""
        delay, stop, _ = self._bounded(self._delay_s(attempt, failure), None, unsettled=True)
        if stop is None and delay > 0:
            await self.run.clock.sleep(delay)
        return stop

    def _tool_context(self, attempt: int) -> ToolContext:
        return ToolContext(
            run_id=self.run.run_id, tool=self.tool.name, position=self.pos,
            idempotency_key=self.key, attempt=attempt, now=self.run.clock.now(),
        )
