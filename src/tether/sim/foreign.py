"""Agents of other frameworks in an episode: a one-method adapter, and tether's tools for them.

An agent built with Pydantic AI, LangGraph, the OpenAI Agents SDK or served behind an HTTP
endpoint takes part in an episode through one method — given the conversation so far, return
the agent's next reply::

    class Replier(Protocol):
        async def reply(self, conversation: Sequence[tether.Message]) -> str: ...

A scenario's ``agent:`` factory may return a :class:`Replier` instead of a
:class:`tether.Agent`. The episode then drives the conversation: the task is the user's first
message, the agent replies, the simulated user (:mod:`tether.sim.users`) answers, and so on
until one of them ends it:

* the agent: a reply that is a :class:`FinalReply` (adapters take ``done=``, a predicate on
  the framework's output, to return one);
* the user: a replayed user whose recording is used up, or a persona (scripted or played by a
  model) past its patience — it answers ``persona.patience`` questions and one last "please
  just do it", then leaves;
* the turn limit: ``budgets.max_steps`` of the scenario counts the agent's replies here
  (default 20); reaching it ends the episode as ``failed``. The episode's ``model_calls``
  count the replies too: the framework's own model calls are not seen.

The agent's tools reach the world as they would reach production, through what the factory
takes from the :class:`~tether.sim.environment.Environment`: ``env.http_transport()`` /
``env.base_url(service)`` for ``httpx``, ``env.stripe_http_client()`` for the ``stripe`` SDK,
MCP, or ``env.client(service)``. The ledger, the invariants and the success checks judge the
episode exactly as they judge a tether agent's.

**Harnesses.** tether cannot reach inside another framework's loop, so the framework's agent
*is* the naive baseline. What tether can put in its hands are its tools:
:func:`tether_tools` turns :class:`tether.Tool` s into plain async functions any framework
registers. Under the ``default`` harness each call of one is a durable tether run on the
episode's runtime: journaled, keyed (the tool's business key, else one per call), retried by
the retry policy, an ambiguous write re-issued under its key, reconciled, or escalated by its
effect class, a crashed worker's call recovered. Under ``naive`` the same functions call the
handlers directly, with no key and no journal, and the framework's own retries are all there
is. What does not transfer: policy, approvals and budgets are applied by tether's agent loop
to the calls a model asks for; a foreign loop decides its calls itself, so a scenario's
``policy:`` makes such an episode inconclusive. A tool without a business key gets a new key
per call, so a framework that calls it again after a crash makes a new request.

Adapters: :func:`replier` (a plain function), :func:`openai_chat_replier` (an HTTP endpoint
that speaks OpenAI chat completions), :func:`pydantic_ai_replier` (keeps the agent's message
history across turns) and :func:`langgraph_replier` (a compiled graph over a ``messages``
state). Any other framework is a function away; the OpenAI Agents SDK, for one::

    async def reply(conversation):
        items = [{"role": m.role, "content": m.content} for m in conversation]
        return (await agents.Runner.run(desk, items)).final_output

    def agent(env):  # the scenario's factory
        return replier(reply)

Scenario settings only tether's own agent loop can honour — ``model:`` other than ``own``,
``recorded:``, a harness variant's overrides — are refused for a foreign agent; faults aimed at
its model or at the user (``model``, ``user.ask``) cannot reach it, and when they do not fire
the episode is inconclusive.
"""

from __future__ import annotations

import fnmatch
import inspect
import json
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol, runtime_checkable

from pydantic import Field
from pydantic_core import to_jsonable_python

from tether.agent.agent import Agent
from tether.errors import Crash, ModelError, ToolFailed, UsageError
from tether.events import Event, RunStatus, encode
from tether.models.base import Message
from tether.runtime.codec import to_json
from tether.runtime.runtime import Runtime, Workflow
from tether.runtime.tools import Tool, ToolContext
from tether.sim.agent_ref import AgentFactory, build_agent
from tether.sim.environment import Environment, instrument
from tether.sim.harness import MAX_RESTARTS, HarnessOutcome
from tether.sim.harness_spec import HarnessSpec
from tether.sim.users import ReplayUser, SimulatedUser
from tether.store.memory import MemoryStore

__all__ = [
    "DEFAULT_MAX_TURNS",
    "FinalReply",
    "Replier",
    "build_participant",
    "converse",
    "langgraph_replier",
    "openai_chat_replier",
    "pydantic_ai_replier",
    "replier",
    "run_replier",
    "tether_tools",
]

#: The turn limit when the scenario sets no ``budgets.max_steps``.
DEFAULT_MAX_TURNS = 20

#: Fault targets a foreign agent's episode cannot reach: its model is its own, and the user
#: talks with it through the conversation the episode drives, not through a service call.
_BEYOND_REACH = ("model.complete", "user.ask")

Done = Callable[[Any], bool]


@runtime_checkable
class Replier(Protocol):
    """An agent of any framework, as an episode drives it: the conversation so far (the
    user's and the agent's messages, oldest first, the last one the user's) in, the agent's
    next reply out. Return a :class:`FinalReply` to end the conversation."""

    async def reply(self, conversation: Sequence[Message]) -> str: ...


class FinalReply(str):
    """A reply after which the agent is done: the conversation ends with it.

    >>> FinalReply("Refunded. Goodbye!") == "Refunded. Goodbye!"
    True
    """

    __slots__ = ()


def _ending(text: str, output: Any, done: Done | None) -> str:
    return FinalReply(text) if done is not None and done(output) else text


# -- adapters -------------------------------------------------------------------------------


@dataclass
class _FunctionReplier:
    fn: Callable[[Sequence[Message]], str | Awaitable[str]]
    done: Done | None = None

    async def reply(self, conversation: Sequence[Message]) -> str:
        said = self.fn(conversation)
        if inspect.isawaitable(said):
            said = await said
        if isinstance(said, FinalReply):
            return said
        return _ending(_text(said, "the function"), said, self.done)


def replier(fn: Callable[[Sequence[Message]], str | Awaitable[str]], *,
            done: Done | None = None) -> Replier:
    """A :class:`Replier` from a plain function (sync or async) of the conversation;
    ``done(reply)`` says whether a reply ends the conversation.

    >>> echo = replier(lambda conversation: "you said " + conversation[-1].content)
    """
    return _FunctionReplier(fn, done)


@dataclass
class _OpenAIChatReplier:
    base_url: str
    model: str
    api_key: str | None
    instructions: str | None
    transport: Any
    headers: dict[str, str]
    timeout_s: float
    extra: dict[str, Any]
    done: Done | None

    async def reply(self, conversation: Sequence[Message]) -> str:
        httpx = _needs("httpx", "httpx")
        messages = [{"role": "system", "content": self.instructions}] if self.instructions \
            else []
        messages += [{"role": m.role, "content": m.content} for m in conversation]
        headers = dict(self.headers)
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        url = self.base_url.rstrip("/") + "/chat/completions"
        body = {**self.extra, "model": self.model, "messages": messages}
        async with httpx.AsyncClient(transport=self.transport, timeout=self.timeout_s) as http:
            answer = await http.post(url, json=body, headers=headers)
        if answer.status_code >= 400:
            raise ModelError(f"{url} answered {answer.status_code}: {answer.text[:300]}",
                             model=self.model, status=answer.status_code)
        try:
            content = answer.json()["choices"][0]["message"].get("content")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise ModelError(f"{url} answered what is not a chat completion "
                             f"({type(exc).__name__}: {exc}): {answer.text[:300]}",
                             model=self.model, status=answer.status_code) from None
        if not isinstance(content, str):
            raise ModelError(f"{url}: the completion carries no text reply (content "
                             f"{content!r}); an agent behind an endpoint runs its own tools "
                             "and answers in text", model=self.model)
        return _ending(content, content, self.done)


def openai_chat_replier(base_url: str, model: str, *, api_key: str | None = None,
                        instructions: str | None = None, transport: Any = None,
                        headers: dict[str, str] | None = None, timeout_s: float = 60.0,
                        extra: dict[str, Any] | None = None,
                        done: Done | None = None) -> Replier:
    """A :class:`Replier` for an agent behind an HTTP endpoint that speaks OpenAI chat
    completions: each turn POSTs the conversation to ``{base_url}/chat/completions`` (with
    ``instructions`` as a system message, ``extra`` merged into the body) and returns the
    first choice's text. ``transport`` is an ``httpx`` transport (default: the network).
    A status >= 400 or an answer that is not a completion raises
    :class:`~tether.errors.ModelError`."""
    return _OpenAIChatReplier(base_url, model, api_key, instructions, transport,
                              dict(headers or {}), timeout_s, dict(extra or {}), done)


@dataclass
class _PydanticAIReplier:
    agent: Any
    deps: Any
    done: Done | None
    history: list[Any] = field(default_factory=list)
    seen: int = 0

    async def reply(self, conversation: Sequence[Message]) -> str:
        messages = _needs("pydantic_ai.messages", "pydantic-ai-slim")
        if self.seen == 0 and len(conversation) > 1:
            # Built anew mid-conversation (a worker replaced after a crash): the conversation
            # so far becomes the history the agent would have had.
            self.history = [
                messages.ModelRequest(parts=[messages.UserPromptPart(m.content)])
                if m.role == "user" else
                messages.ModelResponse(parts=[messages.TextPart(m.content)])
                for m in conversation[:-1]]
            self.seen = len(conversation) - 1
        prompt = "\n\n".join(m.content for m in conversation[self.seen:] if m.role == "user")
        result = await self.agent.run(prompt, message_history=self.history or None,
                                      deps=self.deps)
        self.history = list(result.all_messages())
        self.seen = len(conversation) + 1  # and the reply, which the conversation gets next
        output = result.output
        text = output if isinstance(output, str) else \
            json.dumps(to_jsonable_python(output), sort_keys=True)
        return _ending(text, output, self.done)


def pydantic_ai_replier(agent: Any, *, deps: Any = None, done: Done | None = None) -> Replier:
    """A :class:`Replier` for a Pydantic AI ``Agent``: each turn runs it on the user's new
    message with the agent's message history so far (``result.all_messages()`` of the last
    turn), so it remembers the conversation as in a chat app. ``done(output)`` says whether
    the run's output ends the conversation; a non-text output is replied as JSON."""
    return _PydanticAIReplier(agent, deps, done)


@dataclass
class _LangGraphReplier:
    graph: Any
    config: dict[str, Any] | None
    done: Done | None
    seen: int = 0

    async def reply(self, conversation: Sequence[Message]) -> str:
        # A graph with a checkpointer (a thread in ``config``) keeps the history itself: send
        # it only what is new. Without one, it is sent the whole conversation every turn.
        new = conversation[self.seen:] if self.config is not None else conversation
        state = {"messages": [{"role": m.role, "content": m.content} for m in new]}
        result = await self.graph.ainvoke(state, config=self.config)
        self.seen = len(conversation) + 1
        try:
            last = result["messages"][-1]
        except (KeyError, IndexError, TypeError) as exc:
            raise UsageError(f"the graph's final state has no messages ({type(exc).__name__}: "
                             f"{exc}); langgraph_replier drives graphs whose state has a "
                             "'messages' list (MessagesState)") from None
        content = getattr(last, "content", None)
        if content is None and isinstance(last, dict):
            content = last.get("content")
        if isinstance(content, list):  # content blocks: keep the text ones
            content = "".join(b if isinstance(b, str) else str(b.get("text", ""))
                              for b in content if isinstance(b, str | dict))
        return _ending(_text(content, "the graph's last message"), result, self.done)


def langgraph_replier(graph: Any, *, config: dict[str, Any] | None = None,
                      done: Done | None = None) -> Replier:
    """A :class:`Replier` for a compiled LangGraph graph whose state has a ``messages`` list:
    each turn ``await graph.ainvoke({"messages": [...]}, config=config)`` and the last
    message's text is the reply. With ``config`` (a checkpointed thread) only the new
    messages are sent; without it, the whole conversation. ``done(state)`` says whether the
    final state ends the conversation."""
    return _LangGraphReplier(graph, config, done)


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise UsageError(f"{what} replied {type(value).__name__} {value!r}; a reply is text")
    return value


def _needs(module: str, package: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise UsageError(f"this adapter needs {package}: pip install {package}") from exc


# -- tether's tools in a foreign framework's hands ------------------------------------------


@dataclass
class _ToolRunner:
    """Runs each call of a tool as a durable tether run of its own: one workflow per tool
    name, calling it once through :meth:`RunContext.call_tool` (the write protocol)."""

    runtime: Runtime | None
    prefix: str | None = None
    run_ids: list[str] = field(default_factory=list)
    #: Business key → why a call under it escalated: a later call is refused, not re-sent.
    escalated: dict[str, str] = field(default_factory=dict)
    tools: dict[str, Tool[Any, Any]] = field(default_factory=dict)
    workflows: dict[str, Workflow] = field(default_factory=dict)
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

            async def run(ctx: Any, args: Any) -> Any:
                ctx.deadline = self.deadline
                return await ctx.call_tool(self.tools[name], args)

            found = self.workflows[name] = Workflow(f"tether_tools.{name}", run)
        return found

    async def call(self, tool: Tool[Any, Any], kwargs: dict[str, Any]) -> Any:
        args = tool.validate_args(kwargs)
        key = tool.idempotency_key(args, "")
        if key and key in self.escalated:
            raise _escalated(tool, key, self.escalated[key])
        workflow = self._workflow(tool)
        run_id = None
        if self.prefix is not None:
            # Taken before the run starts: a run a crash interrupts keeps its id, and the
            # next call gets a new one.
            self.calls += 1
            run_id = f"{self.prefix}{tool.name}-{self.calls}"
            self.run_ids.append(run_id)
            self.keys[run_id] = key
        result = await self._runtime().start(workflow, args.model_dump(mode="json"),
                                             run_id=run_id)
        if run_id is None:
            self.run_ids.append(result.run_id)
            self.keys[result.run_id] = key
        return self._settled(tool.name, key, result.status, result.result, result.reason,
                             result.raise_for_status)

    def _settled(self, name: str, key: str, status: RunStatus, value: Any, reason: str,
                 raising: Callable[[], Any]) -> Any:
        if status is RunStatus.COMPLETED:
            return value
        if status is RunStatus.ESCALATED:
            if key:
                self.escalated[key] = reason
            raise _escalated(self.tools[name], key, reason)
        return raising()  # failed: the journaled error, rebuilt (ToolFailed …)

    async def recover(self, clock: Any, seed: int) -> None:
        """A fresh worker on the same store settles the calls a crash left unfinished (an
        ambiguous write re-issued under its key, reconciled, or escalated)."""
        old = self._runtime()
        self.runtime = Runtime(old.store, clock=clock, seed=seed,
                               workflows=list(self.workflows.values()))
        for result in await self.runtime.recover():
            if result.status is RunStatus.ESCALATED and self.keys.get(result.run_id):
                self.escalated[self.keys[result.run_id]] = result.reason

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
    any later call under the same key. Inside an episode the episode's runtime (on the
    world's clock) is used instead, and under the ``naive`` harness the handlers are called
    directly (see the module docstring).

    >>> import pydantic_ai                                              # doctest: +SKIP
    >>> agent = pydantic_ai.Agent(model, tools=tether_tools([issue_refund]))  # doctest: +SKIP
    """
    runner = _ToolRunner(runtime)
    return [_plain(t, runner) for t in tools]


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


# -- the episode's side -----------------------------------------------------------------------


def build_participant(factory: AgentFactory, env: Environment, spec: str) -> Agent | Replier:
    """Call the agent factory: a :class:`tether.Agent` (checked as
    :func:`~tether.sim.agent_ref.build_agent` checks it) or a :class:`Replier`."""
    try:
        built: Any = factory(env)
    except UsageError:
        raise
    except Exception as exc:
        raise UsageError(f"agent {spec}: the factory raised {type(exc).__name__}: {exc}") \
            from exc
    if isinstance(built, Replier) and not isinstance(built, Agent):
        if not inspect.iscoroutinefunction(built.reply):
            raise UsageError(f"agent {spec}: {type(built).__name__}.reply must be async "
                             "(async def reply(self, conversation) -> str)")
        return built
    if not isinstance(built, Agent) and not inspect.isawaitable(built):
        raise UsageError(f"agent {spec}: the factory returned {type(built).__name__}; expected "
                         "a tether.Agent built from the environment it was given, or an agent "
                         "of another framework as a tether.sim.foreign.Replier (an object with "
                         "async reply(conversation) -> str)")
    made: Any = built  # an Agent, or a coroutine build_agent refuses with its own message
    return build_agent(lambda _env: made, env, spec)


def _user_left(user: SimulatedUser) -> bool:
    """Whether the simulated user has ended the conversation (see the module docstring)."""
    if isinstance(user, ReplayUser):
        return user.turn >= len(user.answers)
    return user.turn > user.persona.patience


def _crash_in(exc: BaseException, depth: int = 0) -> bool:
    """Whether ``exc`` is, or carries, a simulated worker crash (a framework may wrap it in an
    exception group or its own error)."""
    if isinstance(exc, Crash):
        return True
    if depth > 16:
        return False
    inner = list(getattr(exc, "exceptions", ()))
    inner += [e for e in (exc.__cause__, exc.__context__) if e is not None]
    return any(_crash_in(e, depth + 1) for e in inner)


async def converse(env: Environment, make: Callable[[], Replier], base: str, *,
                   max_turns: int, run_id: str) -> tuple[HarnessOutcome, str]:
    """Drive the conversation between the agent ``make`` builds and the simulated user to
    its end; returns how it ended and the journal its digest is taken over. ``base`` is the
    harness (``naive`` or ``default``); a crashed worker is replaced by building the agent
    again, which continues from the conversation so far."""
    world = env.world
    runner = _ToolRunner(Runtime(MemoryStore(), clock=world.clock, seed=world.seed,
                                 owner=run_id) if base == "default" else None,
                         prefix=f"{run_id}-")
    limit_s = env.scenario.budgets.get("max_duration_s")
    if base == "default" and limit_s is not None:
        runner.deadline = world.now() + float(limit_s)
    outcome = HarnessOutcome(status="running")
    session = _Session(env, base, runner, outcome)
    conversation = [Message.user(env.task)]
    agent = make()
    token = _SESSION.set(session)
    try:
        while outcome.status == "running":
            if outcome.model_calls >= max_turns:
                outcome.status = "failed"
                outcome.reason = f"the conversation did not end within {max_turns} replies " \
                    "(budgets.max_steps)"
                break
            if runner.deadline is not None and world.now() >= runner.deadline:
                outcome.status = "failed"
                outcome.reason = f"budget exceeded: max_duration_s ({limit_s} s) was up " \
                    "before the conversation ended"
                break
            try:
                said = await agent.reply(tuple(conversation))
            except BaseException as exc:
                if not _crash_in(exc):
                    if not isinstance(exc, Exception):
                        raise
                    outcome.status = "failed"
                    outcome.reason = f"the agent raised {type(exc).__name__}: {exc}"
                    break
                outcome.crashes += 1
                outcome.transcript.append({"crash": outcome.crashes, "at": world.now()})
                if outcome.crashes > MAX_RESTARTS:
                    outcome.status, outcome.reason = "crashed", "the worker kept crashing"
                    break
                if base == "default":
                    await runner.recover(world.clock, world.seed)
                agent = make()
                continue
            outcome.model_calls += 1
            text = _text(said, "the agent")
            conversation.append(Message.assistant(str(text)))
            outcome.answer = str(text)
            if isinstance(said, FinalReply):
                outcome.status, outcome.reason = "completed", "the agent ended the conversation"
            elif _user_left(env.user):
                outcome.status, outcome.reason = "completed", "the user ended the conversation"
            else:
                try:
                    conversation.append(Message.user(await env.user.ask(str(text))))
                except Exception as exc:  # a replay left its script, the user's model failed
                    outcome.status = "failed"
                    outcome.reason = f"the simulated user could not answer: {exc}"
    finally:
        _SESSION.reset(token)
    if runner.escalated and outcome.status in ("completed", "failed"):
        # tether stopped a call for a human: the run waits on one, whatever the agent did next.
        outcome.status = "escalated"
        outcome.reason = "; ".join(f"{k}: {r}" for k, r in sorted(runner.escalated.items()))
    outcome.events = runner.events()
    outcome.conversation = [{"role": m.role, "content": m.content} for m in conversation]
    journal = json.dumps({"conversation": outcome.conversation,
                          "transcript": outcome.transcript,
                          "events": [encode(e) for e in outcome.events],
                          "status": outcome.status, "reason": outcome.reason},
                         sort_keys=True, default=str)
    return outcome, journal


async def run_replier(env: Environment, built: Replier, factory: AgentFactory, spec: str,
                      harness: HarnessSpec, *,
                      run_id: str) -> tuple[HarnessOutcome, str, list[str]]:
    """An episode's run of a foreign agent: the conversation under ``harness``, and why the
    episode cannot judge the agent, if it cannot (see the module docstring). Settings that
    could only be honoured by tether's agent loop are refused before anything runs."""
    scenario = env.scenario
    where = scenario.source or "<scenario>"
    if scenario.model != "own":
        raise UsageError(f"{where}: model: agent {spec} is an agent of another framework, "
                         "which calls its own model; a scenario can choose the model only of "
                         "a tether.Agent (use model: own)")
    if scenario.recorded:
        raise UsageError(f"{where}: recorded: recorded tool answers stand in for a "
                         f"tether.Agent's tools; agent {spec} is an agent of another framework")
    overrides = [name for name in ("retry", "budgets", "window", "model", "policy")
                 if getattr(harness, name) is not None]
    if overrides:
        raise UsageError(f"harness {harness.name}: it sets {', '.join(overrides)} of tether's "
                         f"agent loop, which agent {spec} (another framework's) does not run; "
                         "run it under naive or default")
    pending = [built]

    def make() -> Replier:
        if pending:
            return pending.pop()
        again = build_participant(factory, env, spec)
        if not isinstance(again, Replier):
            raise UsageError(f"agent {spec}: the factory returned a Replier, then, rebuilt "
                             "after a crash, a tether.Agent")
        return again

    max_turns = int(scenario.budgets.get("max_steps") or DEFAULT_MAX_TURNS)
    outcome, journal = await converse(env, make, harness.base, max_turns=max_turns,
                                      run_id=run_id)
    unsettled = []
    if scenario.policy is not None:
        unsettled.append(f"the scenario's policy cannot govern agent {spec}: an agent of "
                         "another framework chooses and makes its calls in its own loop, "
                         "where tether's policy does not reach")
    fired = {firing.fault for firing in env.layer.firings}
    for fault in scenario.fault_plan().faults:
        if fault.label not in fired and any(
                fnmatch.fnmatchcase(target, fault.target) for target in _BEYOND_REACH):
            unsettled.append(
                f"fault {fault.label} never fired: agent {spec} is an agent of another "
                "framework, which calls its own model and talks with the user through the "
                "conversation, where a scenario's faults do not reach")
    if not env.clients_made:
        unsettled.append(f"agent {spec} took nothing from the environment (no client, "
                         "transport, base URL or gateway), so whatever its tools reached, it "
                         "was not the simulated world")
    return outcome, journal, unsettled
