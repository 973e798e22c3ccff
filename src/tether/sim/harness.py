"""The two harnesses an episode can run under, over the same agent, tools and world.

* ``naive`` — what typical agent code does today: a plain loop, blind retries of every failure
  (the same call again, at once, up to three times), no idempotency keys, no journal (a crashed
  worker restarts the task from scratch), no policy.
* ``default`` — tether as designed: the agent runs as a durable workflow on a journal, writes
  carry idempotency keys, ambiguous outcomes are resolved by effect class, failures follow the
  retry policy, consequential calls pass the policy (held calls go to the scenario's approver),
  and a crashed worker is replaced by a fresh runtime that recovers the run.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from tether.agent.agent import Agent, Task
from tether.errors import Crash
from tether.events import Event
from tether.models.base import Message, Model, ModelRequest, ToolSpec
from tether.runtime.approvals import PendingApproval
from tether.runtime.runtime import RunResult, Runtime
from tether.runtime.tools import Tool, ToolContext
from tether.sim.world import World
from tether.store.memory import MemoryStore

__all__ = ["HARNESSES", "Approver", "HarnessOutcome", "run_default", "run_naive"]

HARNESSES = ("naive", "default")
Harness = Literal["naive", "default"]

#: Decides a held call: ``True`` approves, ``False`` denies.
Approver = Callable[[PendingApproval], bool]

MAX_RESTARTS = 5


@dataclass
class HarnessOutcome:
    """How the episode ended, for the report and the invariants."""

    status: str
    answer: str = ""
    reason: str = ""
    crashes: int = 0
    events: list[Event] = field(default_factory=list)
    transcript: list[dict[str, Any]] = field(default_factory=list)
    #: The naive loop's conversation: each model answer and each tool result it read (what
    #: its journal digest is taken over, so two runs that behaved differently differ).
    conversation: list[dict[str, Any]] = field(default_factory=list)
    approvals: list[tuple[str, float]] = field(default_factory=list)
    model_calls: int = 0
    tool_calls: int = 0


async def run_default(world: World, agent: Agent, task: Task, *, approver: Approver,
                      run_id: str) -> HarnessOutcome:
    """``agent`` as a durable tether run; crashes are recovered by a fresh runtime."""
    store = MemoryStore()
    outcome = HarnessOutcome(status="running")
    result: RunResult | None = None
    runtime = Runtime(store, clock=world.clock, seed=world.seed, workflows=[agent])
    start = True
    while result is None or result.status.value == "waiting":
        try:
            if start:
                start = False
                result = await runtime.start(agent, task, run_id=run_id)
            else:
                result = await runtime.resume(run_id)
        except Crash:
            outcome.crashes += 1
            if outcome.crashes > MAX_RESTARTS:
                outcome.status, outcome.reason = "crashed", "the worker kept crashing"
                break
            runtime = Runtime(store, clock=world.clock, seed=world.seed, workflows=[agent])
            continue
        if result.status.value == "waiting":
            pending = runtime.pending_approvals(run_id)
            if not pending:
                outcome.status, outcome.reason = "waiting", f"waiting for {result.waiting_for}"
                break
            for held in pending:
                granted = approver(held)
                if granted:
                    outcome.approvals.append((held.tool, world.now()))
                    runtime.approve(run_id, by="approver", role=held.role, note="simulated")
                else:
                    runtime.deny(run_id, by="approver", role=held.role, note="simulated")
    events = store.read(run_id)
    outcome.events = events
    outcome.model_calls = sum(1 for e in events if e.kind == "model_called")
    outcome.tool_calls = sum(1 for e in events if e.kind in ("tool_result", "tool_error"))
    if result is not None and outcome.status == "running":
        outcome.status = result.status.value
        outcome.reason = result.reason
        if isinstance(result.result, dict):
            outcome.answer = str(result.result.get("answer", ""))
    return outcome


async def run_naive(world: World, agent: Agent, task: Task, *,
                    max_steps: int = 20) -> HarnessOutcome:
    """``agent``'s model and tools in a typical hand-written loop: blind retries, no keys, no
    journal, no policy."""
    outcome = HarnessOutcome(status="running")
    while True:
        try:
            outcome.answer = await _naive_loop(world, agent.model, agent.tools, task,
                                               agent.instructions_for(task.variables),
                                               max_steps, outcome)
            outcome.status = "completed"
            return outcome
        except Crash:
            outcome.crashes += 1
            outcome.transcript.append({"crash": outcome.crashes, "at": world.now()})
            if outcome.crashes > MAX_RESTARTS:
                outcome.status, outcome.reason = "crashed", "the worker kept crashing"
                return outcome
        except _GaveUp as stop:
            outcome.status, outcome.reason = "failed", str(stop)
            return outcome


class _GaveUp(Exception):
    pass


async def _naive_loop(world: World, model: Model, tools: Sequence[Tool[Any, Any]], task: Task,
                      instructions: str, max_steps: int, outcome: HarnessOutcome) -> str:
    by_name = {t.name: t for t in tools}
    specs = tuple(ToolSpec(name=t.name, description=t.description, parameters=t.args_schema())
                  for t in tools)
    messages = [Message.system(instructions), Message.user(task.text)]
    for _ in range(max_steps):
        response = await _blindly(lambda: model.complete(
            ModelRequest(messages=tuple(messages), tools=specs)), outcome, "model")
        outcome.model_calls += 1
        outcome.conversation.append({"model": response.model_dump(mode="json")})
        if not response.tool_calls:
            return str(response.text)
        messages.append(Message.assistant(response.text, response.tool_calls))
        for call in response.tool_calls:
            tool = by_name.get(call.name)

            # Parsing and validating the call is not retried (it cannot change); typical
            # code shows the model the error. Only the call to the service is retried blindly.
            try:
                if tool is None:
                    raise LookupError(f"no tool {call.name}")
                parsed = tool.validate_args(json.loads(call.arguments))
            except Exception as exc:
                outcome.tool_calls += 1
                messages.append(Message.tool(call, f"error: {type(exc).__name__}: {exc}"))
                outcome.conversation.append({"tool": call.name, "read": messages[-1].content})
                continue

            async def invoke(tool: Tool[Any, Any] = tool, args: Any = parsed,
                             name: str = call.name) -> Any:
                ctx = ToolContext(run_id="naive", tool=name, position=0, idempotency_key="",
                                  attempt=1, now=world.now())
                value = tool.handler(ctx, args)
                if isinstance(value, Awaitable):
                    value = await value
                return value

            try:
                value = await _blindly(invoke, outcome, call.name, effect=tool.effect.value)
                content = value if isinstance(value, str) else json.dumps(
                    getattr(value, "value", value), default=str, sort_keys=True)
            except _GaveUp as exc:
                content = f"error: {exc}"
            outcome.tool_calls += 1
            messages.append(Message.tool(call, content))
            outcome.conversation.append({"tool": call.name, "read": content})
    raise _GaveUp(f"no answer after {max_steps} steps")


async def _blindly(fn: Callable[[], Awaitable[Any]], outcome: HarnessOutcome,
                   what: str, attempts: int = 3, effect: str | None = None) -> Any:
    """Retry anything, at once, the same way: what most agent code does.

    Each failed attempt is logged: ``{"retry": what, "attempt": n, ...}`` when another attempt
    follows, ``{"gave_up": what, "attempts": n, ...}`` for the last one (a failure that is not
    retried is not a retry). Tool entries carry the tool's effect class."""
    for attempt in range(1, attempts + 1):
        try:
            return await fn()
        except Exception as exc:  # blind: every failure looks transient
            error = f"{type(exc).__name__}: {exc}"
            final = attempt == attempts
            entry: dict[str, Any] = {"gave_up": what, "attempts": attempt} if final else \
                {"retry": what, "attempt": attempt}
            entry["error"] = error
            if effect is not None:
                entry["effect"] = effect  # the tool's effect class (read, or a write)
            outcome.transcript.append(entry)
            if final:
                raise _GaveUp(f"{what} failed {attempts} times: {error}") from exc
    raise AssertionError("unreachable: attempts must be at least 1")
