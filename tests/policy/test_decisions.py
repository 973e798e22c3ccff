"""Resolutions and approvals are compare-and-set: the first decision wins, a later one is told
who made the first; wrong-role approvals and resolutions of keys nobody waits on are refused."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tether import MemoryStore, RunContext, Runtime, SQLiteStore, VirtualClock
from tether.agent.agent import Task
from tether.errors import AlreadyDecided, UsageError, WaitTimedOut
from tether.events import RunStatus, WaitResolved

from .approval_app import RUN_ID, build_agent


async def two_waits(ctx: RunContext) -> Any:
    first = await ctx.wait_for("first")
    return [first, await ctx.wait_for("second")]


def waiting_run(store: Any) -> Runtime:
    runtime = Runtime(store, clock=VirtualClock(), seed=1, workflows=[two_waits])
    assert asyncio.run(runtime.start(two_waits, run_id="w")).status is RunStatus.WAITING
    return runtime


def resolutions(store: Any, run_id: str) -> list[tuple[str, Any, str]]:
    return [(e.key, e.value, e.by) for e in store.read(run_id) if isinstance(e, WaitResolved)]


def test_a_second_resolution_is_refused_naming_the_first() -> None:
    """The first resolve wins; the second raises AlreadyDecided with who, what and when."""
    store = MemoryStore()
    runtime = waiting_run(store)
    runtime.resolve("w", "first", "yes", by="ada", note="looked")
    with pytest.raises(AlreadyDecided, match=r"'first' was already resolved with 'yes' by ada "
                       r"\(looked\) at 2026-01-01 00:00:00 UTC") as caught:
        runtime.resolve("w", "first", "no", by="bob")
    assert (caught.value.by, caught.value.value, caught.value.key) == ("ada", "yes", "first")
    assert resolutions(store, "w") == [("first", "yes", "ada")]


def test_resolving_a_key_nobody_waits_on_is_refused_with_the_keys_waited_on() -> None:
    """A key the run does not wait on is an error listing the keys it does wait on."""
    store = MemoryStore()
    runtime = waiting_run(store)
    with pytest.raises(UsageError, match=r"does not wait on 'second'; it waits on 'first'"):
        runtime.resolve("w", "second", 2)
    assert resolutions(store, "w") == []


def test_an_early_resolution_is_explicit_and_used_when_the_wait_begins() -> None:
    """early=True delivers a value before the wait; the run then takes it without waiting."""
    store = MemoryStore()
    runtime = waiting_run(store)
    runtime.resolve("w", "second", 2, early=True)
    runtime.resolve("w", "first", 1)
    assert asyncio.run(runtime.resume("w")).result == [1, 2]


def test_an_expired_wait_cannot_be_resolved() -> None:
    """After a wait's deadline passed, resolving it says so instead of being ignored later."""

    async def flow(ctx: RunContext) -> Any:
        with contextlib.suppress(WaitTimedOut):  # the run goes on without it
            await ctx.wait_for("late", timeout_s=10)
        return await ctx.wait_for("next")

    store, clock = MemoryStore(), VirtualClock()
    runtime = Runtime(store, clock=clock, seed=1, workflows=[flow])
    asyncio.run(runtime.start(flow, run_id="x"))
    clock.advance(11)
    assert asyncio.run(runtime.resume("x")).waiting_for == "next"
    with pytest.raises(UsageError, match="the wait for 'late' expired at"):
        runtime.resolve("x", "late", 1)
    assert resolutions(store, "x") == []


def test_an_approval_lacking_the_role_is_refused_and_stays_pending(tmp_path: Path) -> None:
    """Approving without the required role raises at once, records nothing, and a later
    approval in the right role runs the call."""
    store = SQLiteStore(tmp_path / "runs.db")
    agent = build_agent(str(tmp_path / "ledger.db"))
    runtime = Runtime(store, clock=VirtualClock(), seed=1, workflows=[agent])
    asyncio.run(runtime.start(agent, Task(text="refund A-7", principal="agent-1"),
                              run_id=RUN_ID))
    for role in (None, "agent"):
        with pytest.raises(UsageError, match=r"needs an approval in role 'supervisor'.*still "
                           r"pending"):
            runtime.approve(RUN_ID, by="intern", role=role)
    assert [p.role for p in runtime.pending_approvals()] == ["supervisor"]
    assert resolutions(store, RUN_ID) == []
    runtime.approve(RUN_ID, by="grace", role="supervisor")
    assert asyncio.run(runtime.resume(RUN_ID)).status is RunStatus.COMPLETED
    with pytest.raises(UsageError, match="already completed"):
        runtime.deny(RUN_ID, by="bob")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tether.cli", *args], capture_output=True,
                          text=True, timeout=60, check=False)


def test_the_cli_refuses_a_second_decision_and_a_wrong_role_with_exit_2(tmp_path: Path) -> None:
    """`tether approve` without the role and `tether deny` after an approval exit 2 with the
    facts; the approval that was recorded is the one that stands."""
    store = SQLiteStore(tmp_path / "runs.db")
    agent = build_agent(str(tmp_path / "ledger.db"))
    asyncio.run(Runtime(store, clock=VirtualClock(), seed=1).start(
        agent, Task(text="refund A-7", principal="agent-1"), run_id=RUN_ID))
    path = str(tmp_path / "runs.db")
    wrong = cli("approve", RUN_ID, "--store", path, "--by", "intern")
    assert wrong.returncode == 2
    assert "needs an approval in role 'supervisor'" in " ".join(wrong.stderr.split())
    approved = cli("approve", RUN_ID, "--store", path, "--by", "grace", "--role", "supervisor")
    assert approved.returncode == 0, approved.stdout + approved.stderr
    late = cli("deny", RUN_ID, "--store", path, "--by", "bob")
    said = " ".join(late.stderr.split())
    assert late.returncode == 2
    assert "was already approved by grace as 'supervisor'" in said, said
    value = resolutions(store, RUN_ID)[0][1]
    assert (value["approved"], value["role"]) == (True, "supervisor")
