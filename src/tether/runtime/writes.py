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

Re-issues are bounded by the tool's ``attempts``; a write still ambiguous after them escalates.
A handler raising :class:`TransientError` says the call certainly did not take effect: it is
retried (a write with a new intent under the same key), each retry journaled as ``tool_retry``
with its delay, which comes from the run's retry policy (or the tool's ``retry_delay_s``). A
read that times out or loses its connection is retried the same way. A handler that raises any
other exception failed definitively: the error is journaled and raised to the workflow as
:class:`ToolFailed`. A tool's ``timeout_s`` bounds each attempt on the run's clock; for a write,
running out of time is an ambiguous outcome. A result that does not match the declared result
type is :class:`ToolResultInvalid` (the provider's schema drifted), not a crash.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from tether.errors import (
    AmbiguousOutcome,
    AuthExpired,
    RunEscalated,
    ToolFailed,
    ToolResultInvalid,
    TransientError,
    UsageError,
    error_record,
    rebuild_error,
)
from tether.events import ToolAmbiguous, ToolError, ToolIntent, ToolResult, ToolRetry
from tether.runtime.ambiguity import ErrorOutcome, retry_after_s, type_name
from tether.runtime.codec import to_json
from tether.runtime.failures import FailureType
from tether.runtime.provenance import Sourced, Trust
from tether.runtime.retry import jitter_rng
from tether.runtime.timeouts import within
from tether.runtime.tools import Effect, Tool, ToolContext

if TYPE_CHECKING:
    from tether.runtime.context import RunContext

__all__ = ["AMBIGUOUS_ERRORS", "execute_tool"]

#: Exceptions from a handler that mean "the request may or may not have taken effect".
AMBIGUOUS_ERRORS: tuple[type[BaseException], ...] = (AmbiguousOutcome, TimeoutError,
                                                     ConnectionError)
_RETRYABLE: tuple[type[BaseException], ...] = (*AMBIGUOUS_ERRORS, TransientError)


async def execute_tool(
    ctx: RunContext, tool: Tool[Any, Any], args: Any, pos: int, recorded: list[Any]
) -> Any:
    """Run (or replay) the tool call at ``pos``."""
    args_json = args.model_dump(mode="json")
    key = tool.idempotency_key(args, f"{ctx.run_id}:{pos}")
    last = recorded[-1] if recorded else None
    if isinstance(last, ToolResult):
        return _finish(ctx, tool, args, pos, key, last.result)
    if isinstance(last, ToolError):
        raise rebuild_error(last.error)
    call = _Call(ctx, tool, args, args_json, pos, key)
    retried = last.attempt + 1 if isinstance(last, ToolRetry) else 1
    if not tool.effect.writes:
        return await call.read(attempt=retried)
    if isinstance(last, ToolRetry):
        return await call.write(attempt=retried)
    if isinstance(last, ToolIntent | ToolAmbiguous):
        attempt = last.attempt
        if isinstance(last, ToolIntent):
            ctx.journal.record(
                ToolAmbiguous, pos=pos, tool=tool.name, key=key, attempt=attempt,
                reason="the worker stopped after journaling the intent and before the result",
            )
        return await call.resolve(attempt)
    return await call.write(attempt=1)


def _finish(ctx: RunContext, tool: Tool[Any, Any], args: Any, pos: int, key: str,
            data: Any) -> Any:
    value = tool.validate_result(data)
    ctx.remember_write(pos, tool, args, value, key)
    return value


class _Call:
    """One tool call's live execution, attempt by attempt."""

    def __init__(self, ctx: RunContext, tool: Tool[Any, Any], args: Any,
                 args_json: dict[str, Any], pos: int, key: str) -> None:
        self.ctx, self.tool, self.args, self.args_json = ctx, tool, args, args_json
        self.pos, self.key = pos, key
        self.started_at = ctx.clock.now()

    async def read(self, attempt: int) -> Any:
        while True:
            try:
                data = await self._invoke(attempt)
            except _RETRYABLE as exc:
                await self._retry_or_fail(attempt, exc)
                attempt += 1
                continue
            self.ctx.probe(self.pos, self.tool.name, "after_call")
            result = self._record_result(data)
            self.ctx.probe(self.pos, self.tool.name, "after_result")
            return result

    async def write(self, attempt: int) -> Any:
        ctx, tool = self.ctx, self.tool
        ctx.probe(self.pos, tool.name, "before_intent")
        # Durable before the request leaves the process: the output-commit rule.
        ctx.journal.record(ToolIntent, sync=True, pos=self.pos, tool=tool.name,
                           effect=tool.effect.value, key=self.key, args=self.args_json,
                           attempt=attempt)
        ctx.probe(self.pos, tool.name, "after_intent")
        try:
            data = await self._invoke(attempt)
        except TransientError as exc:
            await self._retry_or_fail(attempt, exc)
            return await self.write(attempt + 1)
        except AMBIGUOUS_ERRORS as exc:
            ctx.journal.record(ToolAmbiguous, pos=self.pos, tool=tool.name, key=self.key,
                               attempt=attempt, reason=f"{type(exc).__name__}: {exc}")
            return await self.resolve(attempt, live=True)
        ctx.probe(self.pos, tool.name, "after_call")
        result = self._record_result(data)
        ctx.probe(self.pos, tool.name, "after_result")
        return result

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
        if tool.effect is Effect.RECONCILABLE:
            found = await self._reconcile(attempt)
            if found is not None:
                return found
        if attempt >= tool.attempts:
            raise RunEscalated(
                f"tool {tool.name!r} (key {self.key}) still has an unknown outcome after "
                f"{attempt} attempt(s); escalating rather than guessing"
            )
        if live:
            await self._backoff(attempt, FailureType.AMBIGUOUS_WRITE)
        return await self.write(attempt + 1)

    async def _reconcile(self, attempt: int) -> Any:
        """Look the write up by key. ``None`` means it certainly did not happen.

        A lookup that itself times out is retried (bounded by ``attempts``); if the outcome
        still cannot be told the run escalates — re-issuing a write that does not deduplicate
        on a guess could apply it twice. Any other lookup error is journaled and raised.
        """
        tool = self.tool
        if tool.reconcile is None:
            raise UsageError(f"tool {tool.name!r} is reconcilable but has no reconcile function")
        for lookup in range(1, tool.attempts + 1):
            try:
                found = tool.reconcile(self._tool_context(attempt), self.key)
                if inspect.isawaitable(found):
                    found = await found
            except Exception as exc:
                if tool.outcome_of(exc) is ErrorOutcome.PERMANENT:
                    # The lookup failed, not the write: its outcome is still unknown, and
                    # recording the write as failed would invite a second one under a new key.
                    self.ctx.journal.record(
                        ToolError, pos=self.pos, tool=tool.name, failure="ambiguous_write",
                        error=error_record(exc), latency_s=self._elapsed_s())
                    raise RunEscalated(
                        f"tool {tool.name!r} (key {self.key}): the write's outcome is unknown "
                        f"and looking it up failed ({type(exc).__name__}: {exc}); check it by "
                        "hand"
                    ) from exc
                # A lookup is a read: a timeout or a refused connection is retried.
                if lookup == tool.attempts:
                    raise RunEscalated(
                        f"tool {tool.name!r} (key {self.key}): the write's outcome is unknown and "
                        f"{lookup} lookup(s) failed ({type(exc).__name__}: {exc}); not "
                        "re-issuing a write that cannot be deduplicated"
                    ) from exc
                await self._backoff(lookup, FailureType.AMBIGUOUS_WRITE)
                continue
            if found is None:
                return None
            return self._record_result(found, reconciled=True)
        return None  # pragma: no cover - the loop returns or raises

    async def _invoke(self, attempt: int) -> Any:
        self.started_at = self.ctx.clock.now()
        try:
            value = self.tool.handler(self._tool_context(attempt), self.args)
            if inspect.isawaitable(value):
                value = await within(self.ctx.clock, value, self.tool.timeout_s)
        except AuthExpired as exc:
            self._fail("auth_expired", exc)
        except Exception as exc:
            # Translated at the boundary (the tool's declarations first, then the defaults for
            # the common client libraries): past here "may have been applied" is only ever one
            # of AMBIGUOUS_ERRORS and "certainly not applied" only a TransientError.
            outcome = self.tool.outcome_of(exc)
            if outcome is ErrorOutcome.PERMANENT:
                self._fail("permanent_tool_error", exc)
            ambiguous = outcome is ErrorOutcome.AMBIGUOUS
            if isinstance(exc, AMBIGUOUS_ERRORS if ambiguous else TransientError):
                raise  # already says what it means (and its type is journaled as it is)
            what = f"tool {self.tool.name!r}: {type_name(exc)}: {exc}"
            if ambiguous:
                raise AmbiguousOutcome(what) from exc
            raise TransientError(what, retry_after_s=retry_after_s(exc)) from exc
        return value

    def _record_result(self, value: Any, *, reconciled: bool = False) -> Any:
        tool = self.tool
        source, trust = None, tool.trust
        if isinstance(value, Sourced):
            value, source, trust = value.value, value.source, Trust(value.trust)
        data = to_json(value, what=f"tool {tool.name!r}")
        try:
            typed = tool.validate_result(data)
        except ValidationError as exc:
            error = ToolResultInvalid(
                f"tool {tool.name!r} returned a result that does not match its declared "
                f"result type: {exc}",
                tool=tool.name, failure="tool_result_invalid", error_type="ValidationError",
            )
            self.ctx.journal.record(ToolError, pos=self.pos, tool=tool.name,
                                    failure="tool_result_invalid", error=error.to_record(),
                                    latency_s=self._elapsed_s())
            raise error from exc
        self.ctx.journal.record(ToolResult, pos=self.pos, tool=tool.name, result=data,
                                reconciled=reconciled, latency_s=self._elapsed_s(),
                                source=source, trust=trust.value)
        self.ctx.remember_write(self.pos, tool, self.args, typed, self.key)
        return typed

    def _fail(self, failure: str, exc: BaseException, *, during: str = "") -> Any:
        what = f"the reconciliation of tool {self.tool.name!r}" if during == "reconcile" else \
            f"tool {self.tool.name!r}"
        error = ToolFailed(
            f"{what} failed: {type(exc).__name__}: {exc}",
            tool=self.tool.name, failure=failure, error_type=error_record(exc)["type"],
        )
        self.ctx.journal.record(ToolError, pos=self.pos, tool=self.tool.name, failure=failure,
                                error=error.to_record(), latency_s=self._elapsed_s())
        raise error from exc

    def _elapsed_s(self) -> float:
        return max(0.0, self.ctx.clock.now() - self.started_at)

    async def _retry_or_fail(self, attempt: int, exc: BaseException) -> None:
        """Journal a retry and wait its delay, or fail the call once attempts — or the run's
        retry budget — are spent."""
        spent = self.ctx.journal.retries_before(self.pos) + attempt - 1
        if attempt >= self.tool.attempts or spent >= self.ctx.retry.retry_budget:
            self._fail("transient_tool_error", exc)
        hint = exc.retry_after_s if isinstance(exc, TransientError) else None
        delay = self._delay_s(attempt, FailureType.TRANSIENT_TOOL_ERROR, hint)
        self.ctx.journal.record(ToolRetry, pos=self.pos, tool=self.tool.name,
                                failure=FailureType.TRANSIENT_TOOL_ERROR.value, attempt=attempt,
                                delay_s=delay, error=error_record(exc))
        if delay > 0:
            await self.ctx.clock.sleep(delay)

    def _delay_s(self, attempt: int, failure: FailureType,
                 retry_after_s: float | None = None) -> float:
        if self.tool.retry_delay_s is not None:
            delay = self.tool.retry_delay_s * 2.0 ** (attempt - 1)
            return float(max(delay, retry_after_s or 0.0))
        rule = self.ctx.retry.rule(failure)
        return rule.delay_s(attempt, jitter_rng(self.ctx.seed, self.pos, attempt), retry_after_s)

    async def _backoff(self, attempt: int, failure: FailureType) -> None:
        delay = self._delay_s(attempt, failure)
        if delay > 0:
            await self.ctx.clock.sleep(delay)

    def _tool_context(self, attempt: int) -> ToolContext:
        return ToolContext(
            run_id=self.ctx.run_id, tool=self.tool.name, position=self.pos,
            idempotency_key=self.key, attempt=attempt, now=self.ctx.clock.now(),
        )
