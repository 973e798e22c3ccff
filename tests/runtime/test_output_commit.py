"""The output-commit rule: the journal is durable before anything leaves the process."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from pydantic import BaseModel

from tether import RunContext, Runtime, SQLiteStore, ToolContext, VirtualClock, tool


class Args(BaseModel):
    order_id: str


def test_intent_is_committed_and_fsynced_before_the_handler_runs(tmp_path: Path) -> None:
    """A second connection sees the intent from inside the handler, flushed with FULL sync."""
    path = tmp_path / "runs.db"
    store = SQLiteStore(path)
    seen: list[tuple[str, str]] = []
    synced_at_call: list[int] = []

    @tool(effect="idempotent", key=lambda a: f"refund:{a.order_id}")
    def refund(ctx: ToolContext, args: Args) -> dict[str, str]:
        # Another process would see exactly this: what is committed to the file.
        other = sqlite3.connect(path)
        seen.extend(other.execute(
            "SELECT kind, json_extract(body, '$.key') FROM events WHERE run_id=? ORDER BY seq",
            (ctx.run_id,)).fetchall())
        other.close()
        synced_at_call.append(store.stats.synced_commits)
        return {"id": "re_1"}

    async def wf(ctx: RunContext) -> None:
        await ctx.call_tool(refund, {"order_id": "o-1"})

    before = store.stats.synced_commits
    asyncio.run(Runtime(store, clock=VirtualClock(), seed=1).start(wf))
    assert seen[-1] == ("tool_intent", "refund:o-1")
    assert synced_at_call == [before + 1]  # the intent's commit was the flushed one


def test_steps_commit_lazily_and_completion_is_flushed(tmp_path: Path) -> None:
    """Non-effect steps cost no fsync; the run_finished commit is flushed."""
    store = SQLiteStore(tmp_path / "runs.db")

    async def wf(ctx: RunContext) -> int:
        for i in range(10):
            await ctx.step(f"s{i}", lambda i=i: i)
        return 1

    asyncio.run(Runtime(store, clock=VirtualClock(), seed=1).start(wf))
    # 1 run_started + 10 steps + 1 run_finished, of which only the finish is flushed.
    assert store.stats.commits == 12
    assert store.stats.synced_commits == 1


def test_every_event_durability_flushes_each_append(tmp_path: Path) -> None:
    """Durability.EVERY_EVENT flushes every commit."""
    store = SQLiteStore(tmp_path / "runs.db", durability="every_event")

    async def wf(ctx: RunContext) -> None:
        await ctx.step("a", lambda: 1)

    asyncio.run(Runtime(store, clock=VirtualClock(), seed=1).start(wf))
    assert store.stats.commits == store.stats.synced_commits == 3
