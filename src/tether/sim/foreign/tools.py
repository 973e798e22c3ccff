"""tether's tools in a foreign framework's hands: :func:`tether_tools` turns
:class:`tether.Tool` s into plain async functions; each call is a durable tether run (under the
``default`` harness of an episode, or outside one), or a plain call (``naive``). See
:mod:`tether.sim.foreign` for what transfers and what does not.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Coroutine, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import Field

from tether.errors import ToolArgsInvalid, ToolFailed
from tether.events import Event, RunFinished, RunStarted, RunStatus
from tether.runtime.codec import to_json
from tether.runtime.context import RunContext, internals
from tether.runtime.runtime import Runtime, Workflow
from tether.runtime.tools import Tool, ToolContext
from tether.sim.environment import Environment, instrument
from tether.sim.harness import HarnessOutcome

__all__ = ["tether_tools"]


@dataclass
class _ToolRunner:
    """Runs each call of a tool as a durable tether run of its own: one workflow per tool
    name, calling it once through :meth:`RunContext.call_tool` (the write protocol)."""

    runtime: Runtime | None
    #: The run ids' prefix inside an episode, whose runs the runner keeps (``run_ids``,
    #: ``keys``) for the episode's journal and its recovery; ``None`` outside one.
    prefix: str | None = None
    run_ids: list[str] = field(default_factory=list)
    #: A call's identity (its business key, else the tool and its arguments) → why a call
    #: under it escalated: a later call of it is refused, not re-sent.
    escalated: dict[str, str] = field(default_factory=dict)
    #: A call's identity → the result :meth:`recover` settled for a call a crash cut off:
    #: the rebuilt agent's first call of it gets that result, as a resumed run replays its
    #: journal, instead of making the write again.
    recovered: dict[str, Any] = field(default_factory=dict)
    tools: dict[str, Tool[Any, Any]] = field(default_factory=dict)
    workflows: dict[str, Workflow] = field(default_factory=dict)
    #: Run id → the identity of the call it runs.
    keys: dict[str, str] = field(default_factory=dict)
    calls: int = 0
    #: When the episode's time is up (``budgets.max_duration_s``), on the runtime's clock: no
    #: call starts after it, and a write cut off by it is settled by its effect class.
    deadline: float | None = None

    def _runtime(self) -> Runtime:
        if self.runtime is None:
            self.runtime = Runtime()
        return self.runtime

    def _workflow(self, tool: Tool[Any, Any]) -> Workflow:
        self.tools[tool.name] = tool  # the latest: a tool rebuilt after a crash replaces it
        found = self.workflows.get(tool.name)
        if found is None:
            name = tool.name

            async def run(ctx: RunContext, args: Any) -> Any:
                internals(ctx).deadline = self.deadline  # the foreign harness's time budget
                return await ctx.call_tool(self.tools[name], args)

            found = self.workflows[name] = Workflow(f"tether_tools.{name}", run)
            self._escalated_before(tool, found.name)
        return found

    def _escalated_before(self, tool: Tool[Any, Any], workflow: str) -> None:
        """Learn the calls of ``tool`` the store already holds as escalated (by an earlier
        process on it): they are refused as this runner's own escalations are."""
        if self.runtime is None:
            return  # a fresh in-memory runtime: nothing before
        store = self.runtime.store
        for info in store.list_runs(status=RunStatus.ESCALATED):
            events = store.read(info.run_id)
            started, finished = events[0], events[-1]
            if not (isinstance(started, RunStarted) and started.workflow == workflow
                    and isinstance(finished, RunFinished)):
                continue
            try:
                args = tool.validate_args(started.input)
            except ToolArgsInvalid:  # the tool's arguments changed since: not this call
                continue
            identity = _identity(tool, tool.idempotency_key(args, ""), args)
            self.escalated.setdefault(identity, finished.reason)

    async def call(self, tool: Tool[Any, Any], kwargs: dict[str, Any]) -> Any:
        args = tool.validate_args(kwargs)
        key = tool.idempotency_key(args, "")
        identity = _identity(tool, key, args)
        if identity in self.escalated:
            raise _escalated(tool, key, self.escalated[identity])
        if identity in self.recovered:
            return self.recovered.pop(identity)
        workflow = self._workflow(tool)
        run_id = None
        if self.prefix is not None:
            # Taken before the run starts: a run a crash interrupts keeps its id, and the
            # next call gets a new one.
            self.calls += 1
            run_id = f"{self.prefix}{tool.name}-{self.calls}"
            self.run_ids.append(run_id)
            self.keys[run_id] = identity
        result = await self._runtime().start(workflow, args.model_dump(mode="json"),
                                             run_id=run_id)
        # (Outside an episode the runs are not kept here: the runtime's store has them, and
        # a runner shared by every call on a long-lived runtime must not grow with them.)
        return self._settled(tool.name, key, identity, result.status, result.result,
                             result.reason, result.raise_for_status)

    def _settled(self, name: str, key: str, identity: str, status: RunStatus, value: Any,
                 reason: str, raising: Callable[[], Any]) -> Any:
        if status is RunStatus.COMPLETED:
            return value
        if status is RunStatus.ESCALATED:
            # Whether or not the tool has a business key: the framework's retry of this very
            # call (same tool, same arguments) must not make a write tether could not settle.
            self.escalated[identity] = reason
            raise _escalated(self.tools[name], key, reason)
        return raising()  # failed: the journaled error, rebuilt (ToolFailed …)

    async def recover(self, clock: Any, seed: int) -> None:
        """A fresh worker on the same store settles the calls a crash left unfinished (an
        ambiguous write re-issued under its key, reconciled, or escalated)."""
        old = self._runtime()
        self.runtime = Runtime(old.store, clock=clock, seed=seed,
                               workflows=list(self.workflows.values()))
        for result in await self.runtime.recover():
            identity = self.keys.get(result.run_id)
            if identity is None:
                continue
            if result.status is RunStatus.ESCALATED:
                self.escalated[identity] = result.reason
            elif result.status is RunStatus.COMPLETED:
                # The agent rebuilt after the crash does not know the call was settled and
                # makes it again: it gets this result (a reconcilable or unsafe write made
                # again would apply twice; an idempotent one without a business key would go
                # out under a new key).
                self.recovered[identity] = result.result

    def events(self) -> list[Event]:
        """Every call's journal, one position range per call, in the order they started: what
        counts retries and digests the episode."""
        found: list[Event] = []
        offset = 0
        if self.runtime is None:
            return found
        for run_id in self.run_ids:
            events = self.runtime.store.read(run_id)
            positions = [p for e in events if (p := getattr(e, "pos", None)) is not None]
            for event in events:
                update: dict[str, Any] = {"seq": len(found) + 1}
                pos = getattr(event, "pos", None)
                if pos is not None:
                    update["pos"] = offset + pos
                found.append(event.model_copy(update=update))
            offset += max(positions, default=-1) + 1
        return found


def _identity(tool: Tool[Any, Any], key: str, args: Any) -> str:
    """What makes two calls one: the tool's business key, else the tool and its arguments
    (a framework's retry, or the agent rebuilt after a crash, repeats both)."""
    if key:
        return key
    return f"{tool.name}({json.dumps(args.model_dump(mode='json'), sort_keys=True)})"


def _escalated(tool: Tool[Any, Any], key: str, reason: str) -> ToolFailed:
    return ToolFailed(f"tool {tool.name!r}: escalated to a human, the outcome of the call"
                      f"{f' under key {key!r}' if key else ''} is unknown ({reason}); do not "
                      "call it again for this", tool=tool.name, failure="ambiguous_write",
                      error_type="RunEscalated")


@dataclass
class _Session:
    """The episode a foreign agent's tools run in (set while the agent replies)."""

    env: Environment
    base: str
    runner: _ToolRunner
    outcome: HarnessOutcome
    ran: list[str] = field(default_factory=list)
    _instrumented: dict[int, Tool[Any, Any]] = field(default_factory=dict)

    def _tool(self, tool: Tool[Any, Any]) -> Tool[Any, Any]:
        found = self._instrumented.get(id(tool))
        if found is None:
            found = self._instrumented[id(tool)] = instrument([tool], self.ran)[0]
        return found

    async def call(self, tool: Tool[Any, Any], kwargs: dict[str, Any]) -> Any:
        self.outcome.tool_calls += 1
        if self.base == "default":
            return await self.runner.call(self._tool(tool), kwargs)
        # naive: the handler as the framework would call it, no key, no journal, no retry.
        args = tool.validate_args(kwargs)
        ctx = ToolContext(run_id="naive", tool=tool.name, position=0, idempotency_key="",
                          attempt=1, now=self.env.world.now())
        entry: dict[str, Any] = {"tool": tool.name, "effect": tool.effect.value}
        try:
            value = self._tool(tool).handler(ctx, args)
            if inspect.isawaitable(value):
                value = await value
        except Exception as exc:
            entry["error"] = f"{type(exc).__name__}: {exc}"
            self.outcome.transcript.append(entry)
            raise
        self.outcome.transcript.append(entry)
        return to_json(value, what=f"the result of tool {tool.name!r}")


_SESSION: ContextVar[_Session | None] = ContextVar("tether_sim_foreign_session", default=None)


def tether_tools(tools: Sequence[Tool[Any, Any]],
                 runtime: Runtime | None = None) -> list[Callable[..., Coroutine[Any, Any, Any]]]:
    """tether tools as plain async functions a foreign framework registers (their keyword
    arguments are the fields of the tool's argument model; they return its result as JSON).

    Each call is a durable run of ``runtime`` (default: a fresh in-memory one) — journaled,
    keyed by the tool's business key, retried and settled by the write protocol — and a call
    whose outcome tether had to escalate raises :class:`~tether.errors.ToolFailed`, as does
    any later call under the same key (without a business key: of the same tool with the same
    arguments), also from tools made again on the runtime's store in a later process. Inside
    an episode the episode's runtime (on the world's clock) is used instead, and under the
    ``naive`` harness the handlers are called directly (see the module docstring).

    >>> import pydantic_ai                                              # doctest: +SKIP
    >>> agent = pydantic_ai.Agent(model, tools=tether_tools([issue_refund]))  # doctest: +SKIP
    """
    runner = _ToolRunner(runtime) if runtime is None else _runner_of(runtime)
    for tool in tools:
        # Registered now, not at the first call: a process that starts by recovering what a
        # crashed one left (``runtime.recover()``) must know the workflows of its calls.
        workflow = runner._workflow(tool)
        if runtime is not None:
            runtime.register(workflow)
    return [_plain(t, runner) for t in tools]


#: The attribute of a runtime holding the runner its tether_tools calls share.
_RUNNER_ATTRIBUTE = "_tether_tools_runner"


def _runner_of(runtime: Runtime) -> _ToolRunner:
    """The one runner of ``runtime``'s tether_tools calls: each tool has one workflow on a
    runtime, so tools made again on it (an agent built per request) must share it. It hangs
    off the runtime itself, like everything else the runtime's runs need."""
    found = getattr(runtime, _RUNNER_ATTRIBUTE, None)
    if not isinstance(found, _ToolRunner):
        found = _ToolRunner(runtime)
        setattr(runtime, _RUNNER_ATTRIBUTE, found)
    return found


def _plain(tool: Tool[Any, Any],
           runner: _ToolRunner) -> Callable[..., Coroutine[Any, Any, Any]]:
    async def call(**kwargs: Any) -> Any:
        session = _SESSION.get()
        if session is not None:
            return await session.call(tool, kwargs)
        return await runner.call(tool, kwargs)

    params, annotations = [], {}
    for name, info in tool.args_type.model_fields.items():
        hint: Any = info.annotation
        if info.description:
            hint = Annotated[hint, Field(description=info.description)]
        default = inspect.Parameter.empty if info.is_required() else \
            info.get_default(call_default_factory=True)
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                        annotation=hint))
        annotations[name] = hint
    annotations["return"] = Any
    call.__name__ = call.__qualname__ = tool.name
    call.__doc__ = tool.description
    call.__signature__ = inspect.Signature(params, return_annotation=Any)  # type: ignore[attr-defined]
    call.__annotations__ = annotations
    return call
