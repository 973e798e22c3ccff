"""Real runs for the viewer's tests, made by the Runtime on a virtual clock in a SQLite store.

* ``run-done`` — the support agent: a model call asking for ``lookup_order`` (a read that times
  out once and is retried), one asking for ``issue_refund`` (an idempotent write), and a final
  answer whose text is :data:`HOSTILE` markup. Completed.
* ``run-wait`` — the same agent asked for a refund over the policy's limit: the write is held for
  a supervisor's approval and the run waits (the order id is :data:`HOSTILE` too).
* ``run-fail`` — a workflow whose write raises ``ValueError`` (message :data:`HOSTILE`). Failed.

:func:`approve_and_resume` then moves ``run-wait`` on, as a person and a worker would.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from tether import (
    Agent,
    ModelRequest,
    ModelResponse,
    RunContext,
    Runtime,
    ScriptedModel,
    SQLiteStore,
    ToolContext,
    VirtualClock,
    tool,
    workflow,
)
from tether.agent.agent import Task
from tether.events import RunStatus
from tether.models.pricing import Price, PriceTable
from tether.models.scripted import call, reply
from tether.policy import Policy, argument_limit
from tether.policy.approvals import Approvals
from tether.store.base import Store

HOSTILE = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>'
T0 = 1_767_225_600.0


class OrderArgs(BaseModel):
    order_id: str


class RefundArgs(BaseModel):
    order_id: str
    amount_cents: int


def support_agent(clock: VirtualClock) -> Agent:
    """The support agent: look the order up, refund it, answer."""
    attempts = {"lookup": 0}

    @tool(name="lookup_order", args=OrderArgs, result=dict[str, Any])
    async def lookup(ctx: ToolContext, args: OrderArgs) -> dict[str, Any]:
        await clock.sleep(0.2)
        attempts["lookup"] += 1
        if attempts["lookup"] == 1:
            raise TimeoutError("orders service did not answer")
        return {"order_id": args.order_id, "status": "delivered"}

    @tool(name="issue_refund", effect="idempotent", key=lambda a: f"refund:{a.order_id}",
          args=RefundArgs, result=dict[str, Any])
    async def refund(ctx: ToolContext, args: RefundArgs) -> dict[str, Any]:
        await clock.sleep(0.5)
        return {"refund_id": f"re_{args.order_id}", "amount_cents": args.amount_cents}

    def script(request: ModelRequest) -> ModelResponse:
        task = next(m.content for m in request.messages if m.role == "user")
        order, amount = task.split()[1], int(task.split()[2])
        results = [m for m in request.messages if m.role == "tool"]
        if not results:
            return call("lookup_order", {"order_id": order}, call_id="c1")
        if len(results) == 1:
            return call("issue_refund", {"order_id": order, "amount_cents": amount},
                        call_id="c2")
        return reply("Refunded. " + HOSTILE)

    policy = Policy.of(argument_limit("issue_refund", "amount_cents", 50_000, role="supervisor"))
    prices = PriceTable().with_prices({"scripted": Price(2.0, 8.0)})
    return Agent(name="support", model=ScriptedModel(script), tools=[lookup, refund],
                 policy=policy, prices=prices)


def make_runs(path: Path) -> dict[str, str]:
    """The three runs in a new SQLite store at ``path``; their ids by role."""
    store = SQLiteStore(path)
    try:
        return fill(store)
    finally:
        store.close()


def fill(store: Store) -> dict[str, str]:
    """The three runs, made in ``store`` (of any kind); their ids by role."""
    clock = VirtualClock(start=T0)
    agent = support_agent(clock)
    runtime = Runtime(store, clock=clock, seed=1, workflows=[agent])
    done = asyncio.run(runtime.start(agent, Task(text="refund A-1 1250", principal="ana"),
                                     run_id="run-done"))
    assert done.status is RunStatus.COMPLETED, done
    clock.advance(60)
    waiting = asyncio.run(runtime.start(
        agent, Task(text=f"refund {HOSTILE.replace(' ', '_')} 72000", principal="bo"),
        run_id="run-wait"))
    assert waiting.status is RunStatus.WAITING, waiting

    @tool(name="close_order", effect="idempotent", args=OrderArgs, result=dict[str, Any])
    def close(ctx: ToolContext, args: OrderArgs) -> dict[str, Any]:
        raise ValueError(HOSTILE)

    @workflow(name="close")
    async def flow(ctx: RunContext) -> None:
        await ctx.call_tool(close, {"order_id": "o-2"})

    clock.advance(60)
    failed = asyncio.run(runtime.start(flow, run_id="run-fail"))
    assert failed.status is RunStatus.FAILED, failed
    return {"done": "run-done", "wait": "run-wait", "fail": "run-fail"}


def approve(path: Path, run_id: str = "run-wait", by: str = "sam") -> None:
    """A supervisor approves the held refund (appends the decision to the journal)."""
    store = SQLiteStore(path)
    try:
        Approvals(store).approve(run_id, by=by, role="supervisor", note="ok")
    finally:
        store.close()


def resume(path: Path, run_id: str = "run-wait") -> RunStatus:
    """A worker resumes the run: the refund is made and the agent answers."""
    store = SQLiteStore(path)
    try:
        clock = VirtualClock(start=T0 + 600)
        runtime = Runtime(store, clock=clock, workflows=[support_agent(clock)])
        return asyncio.run(runtime.resume(run_id)).status
    finally:
        store.close()


def start_another(path: Path, run_id: str = "run-new") -> None:
    """Another process runs a small workflow to the end in the same store."""
    store = SQLiteStore(path)
    try:
        clock = VirtualClock(start=T0 + 3600)

        @workflow(name="hello")
        async def hello(ctx: RunContext, name: str) -> str:
            return str(await ctx.step("greet", lambda: f"hello {name}"))

        asyncio.run(Runtime(store, clock=clock).start(hello, "ada", run_id=run_id))
    finally:
        store.close()
