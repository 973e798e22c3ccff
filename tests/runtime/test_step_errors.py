"""A step's error is the same live and on replay; CancelledError from a step or an undo is an
error of that call, not an escape from the run."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from tether import RunStatus, Runtime, SQLiteStore, ToolContext, VirtualClock, tool, workflow
from tether.errors import RecordedError, ToolFailed, error_record, rebuild_error
from tether.events import StepFailed, ToolError


class ApiError(Exception):
    """An application error with an attribute its constructor defaults."""

    def __init__(self, message: str, status: int = 500) -> None:
        super().__init__(message)
        self.status = status


def _seen(exc: BaseException) -> tuple[Any, ...]:
    return (type(exc).__name__, exc.args, dict(vars(exc)))


RAISED: list[BaseException] = [
    ApiError("not found", status=404),
    KeyError(("order", 7)),
    ValueError("bad", {"field": "amount"}),
    ValueError("unjournalable", {1, 2}),
    asyncio.CancelledError("a client's own cancel scope"),
]


def _live_then_replay(tmp_path: Path) -> tuple[list[Any], list[Any]]:
    phase: dict[str, list[Any]] = {"live": [], "replay": []}
    current = ["live"]

    @workflow(name="steps")
    async def steps(ctx: Any) -> str:
        for index, raised in enumerate(RAISED):
            def fail(raised: BaseException = raised) -> None:
                raise raised
            try:
                await ctx.step(f"s{index}", fail)
            except Exception as exc:
                phase[current[0]].append(_seen(exc))
        await ctx.wait_for("go")
        return "done"

    path = tmp_path / "runs.db"
    first = Runtime(SQLiteStore(path), clock=VirtualClock(), seed=1, workflows=[steps])
    assert asyncio.run(first.start(steps, run_id="r")).status is RunStatus.WAITING
    current[0] = "replay"
    second = Runtime(SQLiteStore(path), clock=VirtualClock(), seed=1, workflows=[steps],
                     owner="second")
    asyncio.run(second.resume("r"))
    return phase["live"], phase["replay"]


def test_a_step_error_is_the_same_exception_live_and_on_replay(tmp_path: Path) -> None:
    """Type, args and attributes of a step's error are equal live and after a resume."""
    live, replay = _live_then_replay(tmp_path)
    assert live == replay and len(live) == len(RAISED)
    assert live[0] == ("ApiError", ("not found",), {"status": 404})
    assert live[2] == ("ValueError", ("bad", {"field": "amount"}), {})


def test_an_error_that_cannot_be_journaled_whole_is_a_recorded_error_live_too(
        tmp_path: Path) -> None:
    """An arg the journal cannot hold (a set) makes the step raise RecordedError live and on
    replay, naming the original type, instead of a lookalike missing that arg."""
    live, replay = _live_then_replay(tmp_path)
    assert live[3][0] == replay[3][0] == "RecordedError"
    assert live[3][2]["error_type"] == "ValueError"


def test_a_step_raising_cancelled_error_fails_the_step_not_the_run(tmp_path: Path) -> None:
    """CancelledError from a step while the run is not cancelled is journaled as the step's
    error: the workflow can catch it, and the run ends with a status."""

    @workflow(name="cancels")
    async def cancels(ctx: Any) -> str:
        def fail() -> None:
            raise asyncio.CancelledError()
        await ctx.step("s", fail)
        return "unreachable"

    store = SQLiteStore(tmp_path / "runs.db")
    result = asyncio.run(Runtime(store, clock=VirtualClock(), seed=1).start(cancels))
    assert result.status is RunStatus.FAILED, result.reason
    assert any(isinstance(e, StepFailed) for e in store.read(result.run_id))
    assert store.get_run(result.run_id).status is RunStatus.FAILED  # type: ignore[union-attr]


def test_cancelling_the_run_during_a_step_still_cancels_it(tmp_path: Path) -> None:
    """A real cancellation of the run while a step awaits propagates and journals nothing."""
    store = SQLiteStore(tmp_path / "runs.db")
    entered = asyncio.Event()

    async def hang() -> None:
        entered.set()
        await asyncio.Event().wait()

    @workflow(name="hangs")
    async def hangs(ctx: Any) -> str:
        await ctx.step("s", hang)
        return "unreachable"

    async def main() -> None:
        runtime = Runtime(store, clock=VirtualClock(autojump=False), seed=1)
        task = asyncio.create_task(runtime.start(hangs, run_id="c"))
        await entered.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert not any(isinstance(e, StepFailed) for e in store.read("c"))


class Args(BaseModel):
    n: int


def test_an_undo_raising_cancelled_error_is_a_failed_compensation(tmp_path: Path) -> None:
    """CancelledError from a compensation (the run not cancelled) is retried as ambiguous under
    the undo key, then journaled as a failed undo: the run escalates, it does not escape."""
    undos: list[str] = []

    async def undo(ctx: ToolContext, args: Args, result: Any) -> None:
        undos.append(ctx.idempotency_key)
        raise asyncio.CancelledError()

    @tool(effect="idempotent", key=lambda a: f"c{a.n}", compensate=undo, attempts=2)
    async def book(ctx: ToolContext, args: Args) -> dict[str, int]:
        """Book."""
        return {"ok": 1}

    @workflow(name="compensates")
    async def compensates(ctx: Any) -> str:
        await ctx.call_tool(book, {"n": 1})
        raise ValueError("a later step failed")

    store = SQLiteStore(tmp_path / "runs.db")
    result = asyncio.run(Runtime(store, clock=VirtualClock(), seed=1).start(compensates))
    assert result.status is RunStatus.ESCALATED, result.reason
    assert undos == ["c1:undo", "c1:undo"]
    failed = [e for e in store.read(result.run_id) if isinstance(e, ToolError)]
    assert failed and failed[-1].failure == "compensation_failed"


def test_tether_errors_and_unprintable_errors_round_trip() -> None:
    """to_record round-trips tether's errors; an exception whose str() fails is recorded."""

    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no str")

    failed = ToolFailed("boom", tool="t", failure="auth_expired", error_type="X")
    again = rebuild_error(error_record(failed))
    assert isinstance(again, ToolFailed) and vars(again) == vars(failed)
    record = error_record(Unprintable())
    assert "cannot be printed" in record["message"]
    assert isinstance(rebuild_error({"type": "no.such.Type", "message": "m"}), RecordedError)
