"""RunContext is the workflow author's surface only; the runtime's plumbing lives apart."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from tether import RunContext, RunStatus, Runtime, SQLiteStore, ToolContext, VirtualClock, tool
from tether.events import RunFinished, encode
from tether.models.base import Message, ModelRequest
from tether.models.scripted import ScriptedModel, reply
from tether.runtime.context import MOVED_TO_INTERNALS, internals
from tether.runtime.run_internals import RunInternals

SRC = Path(__file__).resolve().parents[2] / "src" / "tether"

# What a workflow author calls, and nothing else (README "A short tour", examples/, docs).
AUTHOR_SURFACE = {"call_model", "call_tool", "now", "random", "run_id", "sleep", "step",
                  "uuid", "wait_for"}


def test_public_members_are_exactly_the_author_surface() -> None:
    """No plumbing is public on RunContext: a new public member must be added here on purpose."""
    public = {name for name in dir(RunContext) if not name.startswith("_")}
    assert public == AUTHOR_SURFACE


@pytest.mark.parametrize("name", sorted(AUTHOR_SURFACE))
def test_each_author_member_is_documented(name: str) -> None:
    """Every member an author may call says what it does."""
    doc = getattr(RunContext, name).__doc__
    assert doc is not None and len(doc.strip()) > 20, name


def _ctx_of_a_run() -> RunContext:
    """A context as a workflow receives it, taken out of a real (finished) run."""
    seen: list[RunContext] = []

    async def keep(ctx: RunContext) -> None:
        seen.append(ctx)

    Runtime(clock=VirtualClock(), seed=1).run_sync(keep, run_id="kept")
    return seen[0]


@pytest.mark.parametrize("name", sorted(MOVED_TO_INTERNALS))
def test_an_old_plumbing_name_says_where_it_went(name: str) -> None:
    """Reading or setting ``ctx.journal`` (and the like) is an AttributeError naming the
    runtime's internals, never a silent alias or a silent no-op."""
    ctx = _ctx_of_a_run()
    with pytest.raises(AttributeError, match=re.escape(
            f"RunContext.{name} is internal to the runtime")) as read:
        getattr(ctx, name)
    assert f"internals(ctx).{name}" in str(read.value)
    with pytest.raises(AttributeError, match="is internal to the runtime"):
        setattr(ctx, name, None)
    assert not hasattr(ctx, name)


def test_unknown_names_fail_as_usual_and_nothing_can_be_set() -> None:
    """A typo is the ordinary AttributeError; a context takes no new attributes."""
    ctx = _ctx_of_a_run()
    with pytest.raises(AttributeError, match="'RunContext' object has no attribute 'stepp'"):
        ctx.stepp  # type: ignore[attr-defined]  # noqa: B018 - the access is the test
    with pytest.raises(AttributeError, match="no attribute to set"):
        ctx.anything = 1  # type: ignore[attr-defined]
    assert not hasattr(ctx, "__dict__")


def test_internals_is_the_runs_own_side() -> None:
    """``internals(ctx)`` is the run's RunInternals: its id, journal and position."""
    seen: list[tuple[str, int, int]] = []

    async def wf(ctx: RunContext) -> None:
        run = internals(ctx)
        assert isinstance(run, RunInternals)
        before = run.position
        await ctx.step("one", lambda: 1)
        seen.append((run.run_id, before, run.position))

    Runtime(clock=VirtualClock(), seed=1).run_sync(wf, run_id="r-1")
    assert seen == [("r-1", 0, 1)]


def test_the_agent_package_does_not_reach_into_the_journal() -> None:
    """The agent loop, its governor and memory recall ask the run's internals named
    questions; none of them touches a ``.journal`` (importing from the module is fine)."""
    reach = re.compile(r"(?<!tether\.runtime)\.journal\b")
    offenders = [f"{path.relative_to(SRC)}:{n}" for path in sorted((SRC / "agent").glob("*.py"))
                 for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                 if reach.search(line)]
    assert offenders == []


# -- every author call, live and replayed ---------------------------------------------------


class OrderArgs(BaseModel):
    order_id: str


def test_a_workflow_using_every_author_call_replays_identically(tmp_path: Path) -> None:
    """A run that uses each member of the author surface finishes; replayed on another
    runtime from its journal, it returns the same result, calls no handler, model or step
    again, and journals nothing but its finish (byte for byte the same events before it)."""
    calls: dict[str, int] = {"step": 0, "read": 0, "write": 0, "model": 0}

    @tool(effect="read")
    def look_up(ctx: ToolContext, args: OrderArgs) -> dict[str, Any]:
        calls["read"] += 1
        return {"order_id": args.order_id, "amount_cents": 4999}

    @tool(effect="idempotent", key=lambda a: f"refund:{a.order_id}")
    def refund(ctx: ToolContext, args: OrderArgs) -> dict[str, Any]:
        calls["write"] += 1
        return {"refund_id": "re_1", "key": ctx.idempotency_key}

    def answer(request: ModelRequest) -> Any:
        calls["model"] += 1
        return reply(f"approve {request.messages[-1].content}")

    model = ScriptedModel(answer)

    def plan(order: dict[str, Any]) -> dict[str, Any]:
        calls["step"] += 1
        return {"refund": order["amount_cents"]}

    async def every_call(ctx: RunContext, order_id: str) -> dict[str, Any]:
        stamp, draw, ident = ctx.now(), ctx.random(), ctx.uuid()
        order = await ctx.call_tool(look_up, {"order_id": order_id})
        planned = await ctx.step("plan", plan, order)
        done = await ctx.call_tool(refund, {"order_id": order_id})
        said = await ctx.call_model(model, ModelRequest(messages=(Message.user(order_id),)))
        await ctx.sleep(60)
        review = await ctx.wait_for("review", timeout_s=3600)
        return {"run_id": ctx.run_id, "stamp": stamp, "draw": draw, "uuid": ident,
                "planned": planned, "refund": done, "said": said.text, "review": review}

    store = SQLiteStore(tmp_path / "runs.db")
    runtime = Runtime(store, workflows=[every_call], clock=VirtualClock(start=100.0), seed=5)
    first = asyncio.run(runtime.start(every_call, "A-1", run_id="every"))
    assert first.status is RunStatus.WAITING and first.waiting_for == "review"
    runtime.resolve("every", "review", {"ok": True}, by="ada")
    done = asyncio.run(runtime.resume("every"))
    assert done.status is RunStatus.COMPLETED, done
    assert done.result["run_id"] == "every" and done.result["stamp"] == 100.0
    assert done.result["said"] == "approve A-1" and done.result["review"] == {"ok": True}
    assert calls == {"step": 1, "read": 1, "write": 1, "model": 1}

    journaled = store.read("every")
    replay_store = SQLiteStore(tmp_path / "replay.db")
    replay_store.append("every", journaled[:-1], expected_last_seq=0)
    again = asyncio.run(Runtime(replay_store, workflows=[every_call],
                                clock=VirtualClock(start=0.0), seed=9).resume("every"))
    assert again.status is RunStatus.COMPLETED and again.result == done.result
    assert calls == {"step": 1, "read": 1, "write": 1, "model": 1}
    replayed = replay_store.read("every")
    assert [encode(e) for e in replayed[:-1]] == [encode(e) for e in journaled[:-1]]
    assert isinstance(replayed[-1], RunFinished) and replayed[-1].result == done.result
