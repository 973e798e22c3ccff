"""The agent: a model, its tools, instructions and harness settings, run as a durable workflow.

>>> from tether.models.scripted import ScriptedModel, reply
>>> agent = Agent(name="greeter", model=ScriptedModel(lambda request: reply("hello")))
>>> agent.run_sync("say hello").result["answer"]
'hello'
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, SerializerFunctionWrapHandler, model_serializer

from tether.agent.loop import AgentOutput, run_agent
from tether.errors import UsageError
from tether.models.base import Message, Model, ModelSettings, ToolSpec
from tether.models.pricing import PriceTable
from tether.policy.policy import Policy
from tether.runtime.budgets import Budgets
from tether.runtime.context import RunContext
from tether.runtime.retry import RetryPolicy
from tether.runtime.runtime import Workflow, workflow
from tether.runtime.tools import Tool

if TYPE_CHECKING:
    from tether.agent.memory_recall import MemoryRecall
    from tether.agent.window import ContextWindow
    from tether.runtime.runtime import RunResult, Runtime

__all__ = ["FORMAT_REMINDER", "Agent", "AgentOutput", "Instructions", "TemplateInstructions"]

FORMAT_REMINDER = (
    "Your previous answer could not be used: {problem}. Answer again. To call a tool, use the "
    "tool-calling format with arguments as one valid JSON object matching the tool's schema; "
    "otherwise answer in plain text."
)

#: Called with the dependency (a model or tool name) whose credentials expired.
AuthRefresher = Callable[[str], Awaitable[None] | None]

#: An agent's instructions: fixed text, or a function of the run's variables returning it.
Instructions = str | Callable[[Mapping[str, Any]], str]


class TemplateInstructions(str):
    """Instructions that are both text and a template: the text is the rendering for the
    values the agent was built with (what ``tether agent show`` prints and code that reads
    ``agent.instructions`` as a string gets), and calling it renders them again for a run's
    variables (a session's, as of the turn's start).

    >>> hello = TemplateInstructions("Hello Ada.", lambda v: f"Hello {v.get('name', 'Ada')}.")
    >>> (hello, hello({"name": "Grace"}))
    ('Hello Ada.', 'Hello Grace.')
    """

    _render: Callable[[Mapping[str, Any]], str]

    def __new__(cls, text: str, render: Callable[[Mapping[str, Any]], str]
                ) -> TemplateInstructions:
        made = super().__new__(cls, text)
        made._render = render
        return made

    def __call__(self, variables: Mapping[str, Any]) -> str:
        return self._render(variables)

    def __getnewargs__(self) -> tuple[str, Callable[[Mapping[str, Any]], str]]:  # type: ignore[override]
        # copy.copy and dataclasses.replace keep the template, not only the text.
        return str(self), self._render


class Task(BaseModel):
    """A run's input: the request, and on whose behalf it is made.

    A plain string is read as ``Task(text=...)``. ``principal`` and ``roles`` feed the policy;
    ``environment`` overrides the agent's (``sim``, ``staging``, ``prod``). ``history`` is the
    conversation before this request (a session's earlier turns, see :mod:`tether.sessions`):
    the loop starts from it, after the instructions, with each message's source and trust.
    ``variables`` are the values the instructions and memory subjects are rendered with (a
    session's variables as of the turn's start); being part of the journaled input, a resumed
    run renders the same instructions as the first execution.
    """

    text: str
    principal: str = "anonymous"
    roles: tuple[str, ...] = ()
    task_type: str = ""
    environment: str | None = None
    history: tuple[Message, ...] = ()
    variables: dict[str, Any] = {}

    @model_serializer(mode="wrap")
    def _without_empty_history(self, handler: SerializerFunctionWrapHandler) -> Any:
        # A task with no history or variables serializes as it did before sessions existed,
        # so journals (and the golden ones replayed in tests) keep their exact bytes.
        data = handler(self)
        if isinstance(data, dict):
            if not self.history:
                data.pop("history", None)
            if not self.variables:
                data.pop("variables", None)
        return data


def as_task(value: Any) -> Task:
    """A run input as a :class:`Task`: a string, a Task, or its JSON form."""
    if isinstance(value, Task):
        return value
    if isinstance(value, str):
        return Task(text=value)
    return Task.model_validate(value)


def _default_window() -> ContextWindow:
    from tether.agent.window import ContextWindow

    return ContextWindow()


@dataclass(frozen=True)
class Agent:
    """A model-driven loop: observe → ask the model → validate its tool calls → execute them
    → feed the results back, until the model answers or a limit stops it.

    Every model call, tool call, wait and harness decision is a durable call of the run, so a
    resumed run repeats none of them. ``retry`` says what each failure type triggers,
    ``budgets`` what stops the loop, ``window`` how the context is kept within bounds,
    ``refresh_auth`` how expired credentials are renewed.

    ``instructions`` is text or a function of the run's variables (``Task.variables``),
    rendered at the start of every run (see :meth:`instructions_for`). ``memory`` recalls
    remembered facts into the context at the start of every run, each with the source and
    trust it was written with (see :class:`~tether.agent.memory_recall.MemoryRecall`).

    ``settings.tool_choice`` set to ``"required"`` or a tool's name forces a tool call only
    until the model has made one in the run (retries of a forced call stay forced); after
    that the calls are sent ``"auto"``, so the model can still finish with a text answer.
    ``"auto"``, ``"none"`` and unset are sent unchanged on every call. A budget of N model
    or tool calls makes at most N; token and cost budgets, known only after a call, stop
    the next call once reached (see :mod:`tether.runtime.budgets`).
    """

    name: str
    model: Model
    tools: Sequence[Tool[Any, Any]] = ()
    instructions: Instructions = ""
    budgets: Budgets = field(default_factory=Budgets)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    window: ContextWindow = field(default_factory=_default_window)
    prices: PriceTable = field(default_factory=PriceTable)
    settings: ModelSettings = field(default_factory=ModelSettings)
    parallel_tool_calls: bool = True
    refresh_auth: AuthRefresher | None = None
    format_reminder: str = FORMAT_REMINDER
    policy: Policy | None = None
    environment: str = "prod"
    memory: MemoryRecall | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.instructions, str) and not callable(self.instructions):
            raise UsageError(f"agent {self.name!r}: instructions must be text or a function of "
                             f"the run's variables returning it, not "
                             f"{type(self.instructions).__name__}")
        names = [t.name for t in self.tools]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise UsageError(f"agent {self.name!r}: two tools are named {duplicates[0]!r}")

    def instructions_for(self, variables: Mapping[str, Any] | None = None) -> str:
        """The instructions for a run with ``variables``: the text, or the function's
        rendering of them."""
        if isinstance(self.instructions, TemplateInstructions) or \
                not isinstance(self.instructions, str):
            text = self.instructions(dict(variables or {}))
            if not isinstance(text, str):
                raise UsageError(f"agent {self.name!r}: the instructions function returned "
                                 f"{type(text).__name__}, not the instructions' text (str)")
            return text
        return self.instructions

    def tool_specs(self, hidden: Sequence[str] = ()) -> tuple[ToolSpec, ...]:
        """The tools as the model sees them, minus ``hidden`` ones."""
        return tuple(t.spec() for t in self.tools if t.name not in hidden)

    def as_workflow(self) -> Workflow:
        """This agent as a workflow named after it: input the task text, result
        :class:`AgentOutput` as JSON. The same object every time, so a runtime can register
        it once and resume its runs."""
        return self._workflow

    @cached_property
    def _workflow(self) -> Workflow:
        agent = self

        async def run(ctx: RunContext, task: Any) -> dict[str, Any]:
            output = await run_agent(agent, ctx, as_task(task))
            return output.model_dump(mode="json")

        run.__name__ = self.name
        return workflow(run, name=self.name)

    async def run(self, task: str | Task, *, runtime: Runtime | None = None,
                  run_id: str | None = None, session_id: str | None = None) -> RunResult:
        """Start a run of this agent on ``runtime`` (a fresh in-memory one by default)."""
        from tether.runtime.runtime import Runtime

        rt = runtime if runtime is not None else Runtime()
        data = task.model_dump(mode="json") if isinstance(task, Task) else task
        return await rt.start(self.as_workflow(), data, run_id=run_id, session_id=session_id)

    def run_sync(self, task: str | Task, *, runtime: Runtime | None = None,
                 run_id: str | None = None, session_id: str | None = None) -> RunResult:
        """:meth:`run` for code that is not async."""
        return asyncio.run(self.run(task, runtime=runtime, run_id=run_id, session_id=session_id))
