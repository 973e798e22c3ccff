"""Durable calls replay their journaled outcome instead of executing again."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tether import (
    Crash,
    MemoryStore,
    NonDeterminismError,
    ProbePoint,
    RunContext,
    RunStatus,
    Runtime,
    VirtualClock,
    WaitTimedOut,
)


def fresh(store: MemoryStore | None = None, **kw: Any) -> Runtime:
    return Runtime(store or MemoryStore(), clock=VirtualClock(start=0.0), seed=3, **kw)


def test_step_runs_once_and_replays_its_result() -> None:
    """A resumed run gets the recorded step result; the function is not called again."""
    calls: list[int] = []

    async def wf(ctx: RunContext) -> list[Any]:
        a = await ctx.step("a", lambda: calls.append(1) or len(calls))
        b = await ctx.step("b", lambda: (1, 2))
        return [a, b]

    store = MemoryStore()
    rt = fresh(store)
    first = asyncio.run(rt.start(wf))
    assert first.result == [1, [1, 2]]  # live values come back in journaled (JSON) form
    # Resume the same journal minus its run_finished: steps must replay, not re-run.
    events = store.read(first.run_id)[:-1]
    replay_store = MemoryStore()
    replay_store.append(first.run_id, events, expected_last_seq=0)
    again = asyncio.run(fresh(replay_store, workflows=[wf]).resume(first.run_id))
    assert again.result == first.result and calls == [1]


def test_failed_step_re_raises_the_recorded_error() -> None:
    """A step that raised raises the same error type on replay without executing."""
    attempts: list[int] = []

    def boom() -> None:
        attempts.append(1)
        raise KeyError("missing order")

    async def wf(ctx: RunContext) -> str:
        try:
            await ctx.step("lookup", boom)
        except KeyError as exc:
            return f"handled {exc.args[0]}"
        return "unreachable"

    store = MemoryStore()
    done = asyncio.run(fresh(store).start(wf))
    assert done.result == "handled missing order"
    replay = MemoryStore()
    replay.append(done.run_id, store.read(done.run_id)[:-1], expected_last_seq=0)
    again = asyncio.run(fresh(replay, workflows=[wf]).resume(done.run_id))
    assert again.result == "handled missing order" and attempts == [1]


def test_now_random_uuid_are_stable_across_a_crash() -> None:
    """Values drawn before a crash replay; draws after it continue the same seeded stream."""

    async def wf(ctx: RunContext) -> list[Any]:
        values = [ctx.now(), ctx.random(), ctx.uuid()]
        await ctx.step("cut", lambda: None)
        values += [ctx.random(), ctx.uuid()]
        return values

    uninterrupted = asyncio.run(fresh().start(wf, run_id="r1"))

    def crash_after_cut(point: ProbePoint) -> None:
        if point.name == "cut":
            raise Crash()

    store = MemoryStore()
    with pytest.raises(Crash):
        asyncio.run(fresh(store, probe=crash_after_cut).start(wf, run_id="r1"))
    resumed = asyncio.run(fresh(store, workflows=[wf]).resume("r1"))
    assert resumed.result == uninterrupted.result
    uuid = resumed.result[2]
    assert len(uuid) == 36 and uuid[14] == "4"


def test_durable_sleep_sleeps_only_the_remainder_after_a_crash() -> None:
    """A timer journaled before a crash wakes at its original deadline, not a new one."""
    clock = VirtualClock(start=0.0)
    store = MemoryStore()

    async def wf(ctx: RunContext) -> float:
        await ctx.sleep(60)
        return ctx.now()

    async def crash_mid_sleep() -> None:
        rt = Runtime(store, clock=clock, seed=1)
        task = asyncio.create_task(rt.start(wf, run_id="s"))
        await asyncio.sleep(0)
        task.cancel()  # the worker dies while sleeping
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(crash_mid_sleep())
    clock.advance(45)
    done = asyncio.run(Runtime(store, clock=clock, workflows=[wf]).resume("s"))
    assert done.result == 60.0
    kinds = [e.kind for e in store.read("s")]
    assert kinds == ["run_started", "timer_started", "timer_fired", "step", "run_finished"]


def test_wait_suspends_then_resumes_with_the_resolution() -> None:
    """wait_for suspends the run (status waiting) until resolve() delivers a value."""

    async def wf(ctx: RunContext) -> Any:
        decision = await ctx.wait_for("approval")
        return {"approved": decision}

    store = MemoryStore()
    rt = fresh(store, workflows=[wf])
    waiting = asyncio.run(rt.start(wf, run_id="w"))
    assert (waiting.status, waiting.waiting_for) == (RunStatus.WAITING, "approval")
    assert store.get_run("w").status is RunStatus.WAITING  # type: ignore[union-attr]
    # Resuming before the decision arrives suspends again and writes nothing.
    before = len(store.read("w"))
    assert asyncio.run(rt.resume("w")).status is RunStatus.WAITING
    assert len(store.read("w")) == before
    fresh(store).resolve("w", "approval", True, by="alice", note="ok")
    assert store.get_run("w").status is RunStatus.RUNNING  # type: ignore[union-attr]
    done = asyncio.run(rt.resume("w"))
    assert (done.status, done.result) == (RunStatus.COMPLETED, {"approved": True})
    resolved = [e for e in store.read("w") if e.kind == "wait_resolved"]
    assert [(e.by, e.note) for e in resolved] == [("alice", "ok")]  # type: ignore[attr-defined]


def test_a_resolution_that_arrives_first_is_used_without_waiting() -> None:
    """resolve(early=True) before the run reaches wait_for: the wait returns at once."""

    async def wf(ctx: RunContext) -> Any:
        await ctx.sleep(10)
        return await ctx.wait_for("signal")

    store = MemoryStore()
    clock = VirtualClock(start=0.0, autojump=False)
    rt = Runtime(store, clock=clock, seed=1, workflows=[wf])

    async def main() -> Any:
        task = asyncio.create_task(rt.start(wf, run_id="e"))
        await asyncio.sleep(0)
        rt.resolve("e", "signal", "early", early=True)
        clock.advance(10)
        return await task

    assert asyncio.run(main()).result == "early"


def test_wait_times_out_on_the_run_clock() -> None:
    """Past its deadline a resumed wait raises WaitTimedOut into the workflow, journaled."""
    clock = VirtualClock(start=0.0)

    async def wf(ctx: RunContext) -> str:
        try:
            await ctx.wait_for("approval", timeout_s=3600)
        except WaitTimedOut:
            return "escalate to on-call"
        return "approved"

    store = MemoryStore()
    rt = Runtime(store, clock=clock, seed=1, workflows=[wf])
    assert asyncio.run(rt.start(wf, run_id="t")).status is RunStatus.WAITING
    clock.advance(3599)
    assert asyncio.run(rt.resume("t")).status is RunStatus.WAITING
    clock.advance(1)
    assert asyncio.run(rt.resume("t")).result == "escalate to on-call"
    assert "wait_expired" in [e.kind for e in store.read("t")]


def test_changed_workflow_code_raises_non_determinism_naming_both_calls() -> None:
    """Replaying a journal against different calls names the recorded and the new call."""

    async def v1(ctx: RunContext) -> None:
        await ctx.step("charge", lambda: 1)
        await ctx.wait_for("go")

    async def v2(ctx: RunContext) -> None:
        await ctx.step("email", lambda: 1)

    v2.__qualname__ = v1.__qualname__  # same registered name, new code
    store = MemoryStore()
    asyncio.run(fresh(store).start(v1, run_id="n"))
    expected = r"position 0 was step\('charge'\).*step\('email'\)"
    with pytest.raises(NonDeterminismError, match=expected):
        asyncio.run(fresh(store, workflows=[v2]).resume("n"))


def test_a_resolution_racing_the_expiry_wins_live_and_on_replay() -> None:
    """A value delivered while the wait's expiry is being journaled lands first; live and
    replay both return it (before: live timed out, replay resolved — non-determinism)."""
    from tether.events import RunStatus as Status
    from tether.events import WaitResolved

    class RacingStore(MemoryStore):
        injected = False

        def append(self, run_id: str, events: Any, *, expected_last_seq: int,
                   sync: bool = False, **fenced: Any) -> None:
            if events[0].kind == "wait_expired" and not self.injected:
                self.injected = True
                super().append(run_id, [WaitResolved(seq=expected_last_seq + 1, at=0.0,
                                                     key="approval", value="yes", by="bo")],
                               expected_last_seq=expected_last_seq)
            super().append(run_id, events, expected_last_seq=expected_last_seq, sync=sync,
                           **fenced)

    async def flow(ctx: RunContext) -> str:
        try:
            return str(await ctx.wait_for("approval", timeout_s=10))
        except WaitTimedOut:
            return "timed out"

    store, clock = RacingStore(), VirtualClock()
    first = asyncio.run(Runtime(store, clock=clock, seed=1).start(flow))
    assert first.status is Status.WAITING
    clock.advance(11)
    done = asyncio.run(Runtime(store, clock=clock, workflows=[flow]).resume(first.run_id))
    assert done.result == "yes"
    prefix = [e for e in store.read(first.run_id) if e.kind != "run_finished"]
    again = MemoryStore()
    again.append(first.run_id, prefix, expected_last_seq=0)
    replayed = asyncio.run(Runtime(again, clock=clock, workflows=[flow]).resume(first.run_id))
    assert replayed.result == "yes"


def test_a_step_error_that_cannot_be_rebuilt_is_raised_as_replay_will_raise_it() -> None:
    """An exception whose constructor cannot take its recorded message replays as
    RecordedError; the live run sees the same type, so both take the same branch."""

    class Picky(Exception):
        def __init__(self, code: int, *, detail: str) -> None:
            super().__init__(f"{code}: {detail}")

    def fails() -> None:
        raise Picky(7, detail="no")

    seen: list[str] = []

    async def flow(ctx: RunContext) -> str:
        try:
            await ctx.step("picky", fails)
        except Exception as exc:
            seen.append(type(exc).__name__)
        return seen[-1]

    store = MemoryStore()
    first = asyncio.run(Runtime(store, clock=VirtualClock(), seed=1).start(flow))
    prefix = [e for e in store.read(first.run_id) if e.kind != "run_finished"]
    again = MemoryStore()
    again.append(first.run_id, prefix, expected_last_seq=0)
    replayed = asyncio.run(Runtime(again, clock=VirtualClock(), workflows=[flow]).resume(
        first.run_id))
    assert first.result == replayed.result == "RecordedError"
