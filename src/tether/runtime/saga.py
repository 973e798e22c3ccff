"""Saga compensation: undoing a failed run's completed writes, newest first.

When a run fails definitively, every write that returned and declares ``compensate`` is undone
in reverse order. Each undo is itself a durable call (intent journaled durably, then result) at
the next position of the run, keyed ``{write key}:undo``, so a crash during compensation
resumes it without undoing anything twice — provided the undo is idempotent under that key,
which is the contract a ``compensate`` function must meet.
"""

from __future__ import annotations

import asyncio
import inspect

from tether.errors import NonDeterminismError, error_record
from tether.events import ToolError, ToolIntent, ToolResult
from tether.runtime.ambiguity import ErrorOutcome, cancel_requested
from tether.runtime.codec import to_json
from tether.runtime.run_internals import CompletedWrite, RunInternals
from tether.runtime.tools import ToolContext

__all__ = ["compensate"]


async def compensate(run: RunInternals) -> list[str]:
    """Undo the completed writes of ``run``; returns the problems met (empty when all undone)."""
    problems: list[str] = []
    # By position, not by completion: parallel writes complete in any order live, but replay
    # rebuilds them in position order, and both must undo in the same order.
    for write in sorted(run.completed_writes, key=lambda w: w.position, reverse=True):
        if write.tool.compensate is None:
            continue
        problem = await _undo(run, write)
        if problem:
            problems.append(problem)
    return problems


async def _undo(run: RunInternals, write: CompletedWrite) -> str:
    tool = write.tool
    pos, recorded = run.claim("compensate", tool.name)
    intents = [e for e in recorded if isinstance(e, ToolIntent)]
    if intents and intents[0].compensates != write.position:
        raise NonDeterminismError(
            f"run {run.run_id}: position {pos} undid the write at position "
            f"{intents[0].compensates} but compensation now undoes position {write.position}")
    if any(isinstance(e, ToolResult) for e in recorded):
        return ""
    failed = next((e for e in recorded if isinstance(e, ToolError)), None)
    if failed is not None:
        return f"undo of {tool.name!r} at position {write.position} failed: {failed.error}"
    key = f"{write.key}:undo"
    attempt = sum(1 for e in recorded if isinstance(e, ToolIntent))
    assert tool.compensate is not None
    while True:
        attempt += 1
        await run.journal.arecord(ToolIntent, sync=True, pos=pos, tool=tool.name,
                                  effect="idempotent", key=key,
                                  args=write.args.model_dump(mode="json"), attempt=attempt,
                                  compensates=write.position)
        run.probe(pos, tool.name, "after_intent")
        tool_ctx = ToolContext(run_id=run.run_id, tool=tool.name, position=pos,
                               idempotency_key=key, attempt=attempt, now=run.clock.now())
        try:
            value = tool.compensate(tool_ctx, write.args, write.result)
            if inspect.isawaitable(value):
                value = await value
        except (Exception, asyncio.CancelledError) as exc:
            if isinstance(exc, asyncio.CancelledError) and cancel_requested():
                raise  # the run itself is being cancelled: not an outcome of this undo
            # Any client library's timeout or refused connection is re-sent under the undo's
            # key, as for the write itself (tether.runtime.ambiguity); so is a CancelledError
            # the undo raised of its own accord (a library's cancel scope, after the send).
            if tool.outcome_of(exc) is not ErrorOutcome.PERMANENT and attempt < tool.attempts:
                continue
            return _record_failure(run, pos, tool.name, write.position, exc)
        run.probe(pos, tool.name, "after_call")
        await run.journal.arecord(ToolResult, pos=pos, tool=tool.name,
                                  result=to_json(value, what=f"compensation of {tool.name!r}"))
        run.probe(pos, tool.name, "after_result")
        return ""


def _record_failure(run: RunInternals, pos: int, tool: str, original: int,
                    exc: BaseException) -> str:
    run.journal.record(ToolError, pos=pos, tool=tool, failure="compensation_failed",
                       error=error_record(exc))
    return f"undo of {tool!r} at position {original} failed: {type(exc).__name__}: {exc}"
