"""The agent loop, as a durable workflow.

One turn: check the budgets → assemble the context → ask the model (durably) → validate the
tool calls → execute them (concurrently when allowed; each at a position fixed by its order in
the response) → feed the results back. Failures are classified where they happen and handled
by the agent's retry policy; every classification and the action taken is journaled as a
``decision``, so a replay takes the same path and a trace can show why.

Budgets are asked before what they bound (see :mod:`tether.runtime.budgets`): before every
model call, retries included, and before each of a response's tool calls is let through; a
breach of the tool-call count stops the run before any call of that response runs.

A forcing ``tool_choice`` (``"required"`` or a tool's name) holds for a run's model calls until
the model has answered with a tool call; the calls after that are sent ``"auto"``, so the model
can finish with a text answer. Which calls were forced follows from the responses alone, which
come from the journal on a replay: the requests, and their digests, are the same.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from tether.agent.governance import Governor
from tether.errors import (
    BudgetExceeded,
    Crash,
    MalformedOutput,
    NonDeterminismError,
    RunEscalated,
    RunSuspended,
    StoreError,
    ToolArgsInvalid,
    ToolFailed,
)
from tether.models.base import (
    Message,
    ModelRequest,
    ModelResponse,
    ModelSettings,
    ToolCall,
    ToolSpec,
)
from tether.retries import RETRY_ACTIONS
from tether.runtime.budgets import Breach, Meter
from tether.runtime.client_tools import ClientTool, settle_client_calls
from tether.runtime.context import internals
from tether.runtime.failures import Failure, FailureType, classify
from tether.runtime.model_calls import classify_model_error
from tether.runtime.retry import Action, jitter_rng
from tether.runtime.tools import Tool

if TYPE_CHECKING:
    # Only for the checker: agent.py imports this module (Agent.run runs the loop), and the
    # loop needs nothing of agent.py at run time, so the two do not import each other.
    from tether.agent.agent import Agent, Task
    from tether.runtime.context import RunContext

__all__ = ["AgentOutput", "run_agent"]

_REFRESHED = "[credentials refreshed]"


class AgentOutput(BaseModel):
    """What an agent run returns (the run's result, as JSON)."""

    answer: str
    steps: int
    model_calls: int
    tool_calls: int
    retries: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    disabled_tools: dict[str, str] = {}


async def run_agent(agent: Agent, ctx: RunContext, task: Task) -> AgentOutput:
    """Run ``agent`` on ``task`` inside the durable run ``ctx``."""
    run = internals(ctx)
    run.retry = agent.retry
    run.max_retries = agent.budgets.max_retries
    return await _Loop(agent, ctx, task).run_to_end()


@dataclass
class _Outcome:
    """What one executed tool call produced, before the loop judges it."""

    call: ToolCall
    result: Any = None
    error: BaseException | None = None
    source: str | None = None
    trust: str | None = None
    #: The call is a write that took effect though ``error`` says its response is unusable.
    applied: bool = False


class _Loop:
    def __init__(self, agent: Agent, ctx: RunContext, task: Task) -> None:
        self.agent, self.ctx, self.task = agent, ctx, task
        #: The runtime's side of the run: decisions, the deadline, breakers, the journal's
        #: answers (the loop is part of the harness, not a workflow of the author's).
        self.run = internals(ctx)
        self.governor = None if agent.policy is None else Governor(
            agent.policy, ctx, task, agent.environment, on_breach=agent.budgets.on_breach)
        self.tools: dict[str, Tool[Any, Any]] = {t.name: t for t in agent.tools}
        self.messages: list[Message] = []
        self.disabled: dict[str, str] = {}
        self.tool_failures: dict[str, int] = {}
        #: Credential failures of each tool since its last success: a refresh that let the
        #: call through worked, and the next expiry is a new one, not a third try of it.
        self.auth_streak: dict[str, int] = {}
        self.model_streak: dict[FailureType, int] = {}
        self.meter = Meter(agent.budgets)
        self._specs: dict[frozenset[str], tuple[ToolSpec, ...]] = {}
        #: The model has answered this run with a tool call: a forcing tool_choice is spent.
        self.tool_called = False
        self._unforced = agent.settings.model_copy(update={"tool_choice": "auto"})

    def _settings(self) -> ModelSettings:
        """The settings of the next model call: the agent's, except that a forcing
        ``tool_choice`` reverts to ``"auto"`` once the model has called a tool this run (a
        model forced on every call could never answer in text, and would stop at a budget)."""
        settings = self.agent.settings
        if self.tool_called and settings.tool_choice not in (None, "auto", "none"):
            return self._unforced
        return settings

    def _tool_specs(self) -> tuple[ToolSpec, ...]:
        hidden = frozenset(self.disabled)
        if self.governor is not None:
            hidden |= self.governor.hidden(self.agent.tools, self.messages)
        specs = self._specs.get(hidden)
        if specs is None:
            specs = self._specs[hidden] = self.agent.tool_specs(hidden=tuple(sorted(hidden)))
        return specs

    # -- the loop -------------------------------------------------------------------------

    async def run_to_end(self) -> AgentOutput:
        """Turn after turn until the model answers in text or a limit stops the run."""
        self.meter.started_at = self.ctx.now()
        # Every model and tool call of the run is bounded by this, not only the steps.
        self.run.deadline = self.meter.deadline
        # Rendered from the journaled input's variables: a resumed run sees the same text.
        instructions = self.agent.instructions_for(self.task.variables)
        if instructions:
            self.messages.append(Message.system(instructions))
        if self.agent.memory is not None:
            # One durable step: a replay shows the model the facts the first execution saw.
            recalled = await self.agent.memory.recall(self.ctx, self.task.variables)
            self.messages.extend(recalled.messages())
        # A session's earlier turns: through the window like any other context.
        self.messages.extend(self.task.history)
        self.messages.append(Message.user(self.task.text))
        while True:
            self.meter.steps += 1
            self._check_budgets()
            response = await self._ask()
            if response.tool_calls:
                self.tool_called = True
                self.messages.append(Message.assistant(response.text, response.tool_calls))
                await self._run_tools(response.tool_calls)
                continue
            self.messages.append(Message.assistant(response.text))
            m = self.meter
            # Counted from the journal by the one definition, so a replay, the trace and the
            # grader read the same number.
            retries = self.run.retries_so_far()
            return AgentOutput(
                answer=response.text, steps=m.steps, model_calls=m.model_calls,
                tool_calls=m.tool_calls, retries=retries, input_tokens=m.usage.input_tokens,
                output_tokens=m.usage.output_tokens, cost_usd=round(m.cost_usd, 10),
                disabled_tools=dict(self.disabled),
            )

    def _check_budgets(self) -> None:
        """Stop (or escalate) if a limit is reached, before the model call about to start."""
        if self.agent.budgets.max_retries is not None:
            # Counting reads every position journaled so far: only when a limit needs it.
            self.meter.retries = self.run.retries_so_far()
        self._stop_if(self.run.maybe_decide("budget", lambda: self._breach_data(
            self.meter.breach(self.run.clock.now(), model_calls=1))))

    def _check_tool_budget(self, more: int) -> None:
        """Stop (or escalate) if ``more`` tool calls would pass the tool-call budget."""
        self._stop_if(self.run.maybe_decide("budget", lambda: self._breach_data(
            self.meter.before_tool_calls(more))))

    def _breach_data(self, breach: Breach | None) -> dict[str, Any] | None:
        """The budget decision a breach is journaled as, or ``None``."""
        if breach is None:
            return None
        failure = FailureType.NO_PROGRESS if breach.no_progress else FailureType.BUDGET_EXCEEDED
        return {"failure": failure.value, "domain": failure.domain.value,
                "limit": breach.limit, "reason": breach.reason,
                "action": self.agent.budgets.on_breach}

    def _check_deadline(self, wait_s: float = 0.0) -> None:
        """Stop the run (journaled as a budget decision) if its deadline has come, or would
        have before a wait of ``wait_s`` ends: no call starts, and no wait ends, after it."""
        def live() -> dict[str, Any] | None:
            deadline = self.run.deadline
            if deadline is None or not self.run.past_deadline(wait_s):
                return None
            failure = FailureType.BUDGET_EXCEEDED
            waiting = f", and a {wait_s:g} s wait would end after it" if wait_s else ""
            budget_s = float(self.agent.budgets.max_duration_s or 0.0)
            used_s = self.run.clock.now() - (deadline - budget_s)
            return {"failure": failure.value, "domain": failure.domain.value,
                    "limit": "max_duration_s",
                    "reason": f"max_duration_s: {used_s:.3f} s of the run's {budget_s:g} s "
                              f"used on the run's clock{waiting}",
                    "action": self.agent.budgets.on_breach}

        self._stop_if(self.run.maybe_decide("budget", live))

    def _stop_at_retry_cap(self, what: str) -> None:
        """Stop (or escalate, per ``on_breach``) before a retry past ``Budgets.max_retries``:
        a retry past the hard cap is not made. ``what`` names what would be retried."""
        cap = self.agent.budgets.max_retries
        spent = self.run.retries_so_far()
        if cap is None or spent < cap:
            return

        def capped() -> dict[str, Any] | None:
            failure = FailureType.BUDGET_EXCEEDED
            return {"failure": failure.value, "domain": failure.domain.value,
                    "limit": "max_retries",
                    "reason": f"max_retries: used {spent:,} retries, limit {cap:,}; {what} is "
                              "not retried",
                    "action": self.agent.budgets.on_breach}

        self._stop_if(self.run.maybe_decide("budget", capped))

    def _stop_if(self, decision: dict[str, Any] | None) -> None:
        if decision is None:
            return
        if decision.get("action") == "escalate":
            raise RunEscalated(str(decision["reason"]))
        raise BudgetExceeded(str(decision["reason"]), limit=str(decision["limit"]))

    # -- asking the model -----------------------------------------------------------------

    async def _ask(self) -> ModelResponse:
        agent, ctx = self.agent, self.ctx
        retrying = False
        while True:
            if not agent.window.fits(self.messages):
                await self._compress(agent.window.max_tokens or 1, "over the window")
            request = ModelRequest(messages=tuple(self.messages),
                                   tools=self._tool_specs(),
                                   settings=self._settings())
            if retrying:
                # A retry is a model call too: the budgets are asked again before it (the
                # first call of a turn was asked at the top of the turn).
                self._check_budgets()
            retrying = True
            self._check_deadline()
            try:
                response = await ctx.call_model(agent.model, request, agent.prices)
            except (NonDeterminismError, StoreError):
                raise
            except Exception as exc:
                await self._recover_model(classify_model_error(exc), exc)
                continue
            self.meter.model_call(response.usage, agent.prices.cost_usd(
                response.model or agent.model.name, response.usage))
            problem = _malformed(response)
            if problem is not None:
                error = MalformedOutput(f"model {agent.model.name!r}: {problem}",
                                        model=agent.model.name)
                await self._recover_model(Failure(FailureType.MALFORMED_OUTPUT, problem), error)
                continue
            self.model_streak.clear()
            return response

    async def _recover_model(self, failure: Failure, error: BaseException) -> None:
        """Apply the policy to a failed model call: wait, compress, remind, refresh — or stop
        the run by raising."""
        agent, ctx, run = self.agent, self.ctx, self.run
        rule = agent.retry.rule(failure.type)
        attempt = self.model_streak.get(failure.type, 0) + 1
        self.model_streak[failure.type] = attempt
        action = rule.action if attempt < rule.max_attempts else rule.then
        reason = ""
        spent = run.retries_so_far()
        if action.value in RETRY_ACTIONS:
            self._stop_at_retry_cap(f"the failed model call ({failure.type.value})")
        if action.value in RETRY_ACTIONS and spent >= agent.retry.retry_budget:
            action, reason = Action.FAIL, "the run's retry budget is spent"
        delay = 0.0
        if action is Action.BACKOFF:
            delay = rule.delay_s(attempt, jitter_rng(run.seed, run.position, attempt),
                                 failure.retry_after_s)
            self._check_deadline(delay)
        elif action.value in RETRY_ACTIONS:
            self._check_deadline()
        decision = run.decide("recover", {**failure.as_data(), "action": action.value,
                                          "attempt": attempt, "delay_s": delay,
                                          "reason": reason})
        action = Action(decision["action"])
        if action is Action.BACKOFF:
            await ctx.sleep(float(decision["delay_s"]))
        elif action is Action.COMPRESS:
            await self._compress(agent.window.target_after_overflow(self.messages),
                                 "context overflow")
        elif action is Action.REFORMAT:
            self.messages.append(Message(role="user", source="harness",
                                         content=agent.format_reminder.format(
                                             problem=failure.message)))
        elif action is Action.REFRESH_AUTH:
            await self._refresh(agent.model.name, error)
        elif action is Action.ESCALATE:
            raise RunEscalated(f"{failure.type.value}: {failure.message}")
        else:
            raise error

    async def _compress(self, target_tokens: int, why: str) -> None:
        from tether.runtime.timeouts import within

        window = self.agent.window
        before = len(self.messages)
        self._check_deadline()
        # Compressing may call a model (summarize_with_model): bounded by the run's time left.
        timeout_s = self.run.call_timeout_s(None)

        async def shrink() -> list[dict[str, Any]]:
            smaller = await within(self.run.clock,
                                   window.compress(list(self.messages), target_tokens), timeout_s)
            return [m.model_dump(mode="json") for m in smaller]

        try:
            data = await self.ctx.step("compress_context", shrink)
        except TimeoutError:
            self._check_deadline()  # the run's time ran out during it: the budgets' course
            raise
        self.messages = [Message.model_validate(m) for m in data]
        if len(self.messages) >= before and not window.fits(self.messages):
            raise BudgetExceeded(f"the context cannot be compressed below {target_tokens} "
                                 f"tokens ({why})", limit="context_window")

    async def _refresh(self, dependency: str, error: BaseException) -> None:
        import inspect

        from tether.runtime.timeouts import within

        hook = self.agent.refresh_auth
        if hook is None:
            raise error
        self._check_deadline()
        # An async hook is bounded by the run's time left; a blocking one cannot be
        # interrupted from asyncio (see tether.runtime.timeouts).
        timeout_s = self.run.call_timeout_s(None)

        async def refresh() -> Any:
            value = hook(dependency)
            if inspect.isawaitable(value):
                value = await within(self.run.clock, value, timeout_s)
            return value

        try:
            await self.ctx.step("refresh_auth", refresh)
        except TimeoutError:
            self._check_deadline()  # the run's time ran out during it: the budgets' course
            raise

    # -- tools ----------------------------------------------------------------------------

    async def _run_tools(self, calls: tuple[ToolCall, ...]) -> None:
        ready: list[tuple[ToolCall, Tool[Any, Any], Any]] = []
        observations: dict[str, str] = {}
        for call in calls:
            tool = self.tools.get(call.name)
            if tool is None or call.name in self.disabled:
                why = (f"tool {call.name!r} is disabled for this run: {self.disabled[call.name]}"
                       if tool is not None else f"there is no tool {call.name!r}; available: "
                       f"{', '.join(sorted(set(self.tools) - set(self.disabled))) or 'none'}")
                observations[call.id] = self._judge(
                    call, Failure(FailureType.INVALID_TOOL_CALL, why))
                continue
            try:
                args = tool.validate_args(call.parsed())
            except (ToolArgsInvalid, ValueError) as exc:
                observations[call.id] = self._judge(
                    call, Failure(FailureType.INVALID_TOOL_CALL, str(exc)))
                continue
            # Before anything is decided about the call: a call that would pass the tool-call
            # budget is neither asked about nor made, and none of the response's calls run.
            self._check_tool_budget(len(ready) + 1)
            if self.governor is not None:
                ruling = await self.governor.rule(call.id, tool, args.model_dump(mode="json"),
                                                  self.messages)
                if not ruling.run:
                    observations[call.id] = ruling.observation
                    continue
            refused = self._breaker_refuses(tool)
            if refused is not None:
                observations[call.id] = refused
                continue
            ready.append((call, tool, args))
        by_call = {c.id: (t, a) for c, t, a in ready}
        # Client tools wait for the caller: requested after the server tools ran, together.
        client = [r for r in ready if isinstance(r[1], ClientTool)]
        ready = [r for r in ready if not isinstance(r[1], ClientTool)]
        if self.agent.parallel_tool_calls:
            # Every call settles before anything is raised: a run must not finish (or
            # compensate) while a sibling write is still in flight.
            settled = await asyncio.gather(*(self._execute(c, t, a) for c, t, a in ready),
                                           return_exceptions=True)
            raised = [r for r in settled if isinstance(r, BaseException)]
            if raised:
                raise min(raised, key=_gravity)
            outcomes = [r for r in settled if isinstance(r, _Outcome)]
        else:
            outcomes = [await self._execute(c, t, a) for c, t, a in ready]
        if client:
            outcomes += await self._ask_client(client)
        provenance: dict[str, tuple[str | None, str | None]] = {}
        for outcome in outcomes:  # judged in call order, so decisions take fixed positions
            observations[outcome.call.id] = await self._observe(outcome, by_call[outcome.call.id])
            provenance[outcome.call.id] = (outcome.source, outcome.trust)
        for call in calls:
            source, trust = provenance.get(call.id, (None, None))
            self.messages.append(Message.tool(call, observations[call.id], source=source,
                                              trust=trust))

    async def _ask_client(self, calls: list[tuple[ToolCall, Tool[Any, Any], Any]]
                          ) -> list[_Outcome]:
        """Request the client calls from the caller and wait durably until all are answered
        (see :mod:`tether.runtime.client_tools`); their results are the client's content."""
        settled = await settle_client_calls(self.ctx, [(c.id, t, a) for c, t, a in calls
                                                       if isinstance(t, ClientTool)])
        outcomes = []
        for call, tool, _args in calls:
            value = settled[call.id]
            outcomes.append(_Outcome(call, error=value) if isinstance(value, BaseException)
                            else _Outcome(call, result=value, source=f"client:{tool.name}",
                                          trust=tool.trust.value))
        return outcomes

    async def _execute(self, call: ToolCall, tool: Tool[Any, Any], args: Any) -> _Outcome:
        pos = self.run.position
        live = self.run.fresh_at(pos)
        try:
            result = await self.ctx.call_tool(tool, args)
        except ToolFailed as exc:
            settled = self.run.tool_result(pos)
            if settled is not None and settled.unreadable is not None:
                # The write took effect; only its response is unusable. Not a failure.
                if live:
                    self._breaker_record(tool, None)
                return _Outcome(call, error=exc, applied=True)
            if live:
                self._breaker_record(tool, classify(exc))
            return _Outcome(call, error=exc)
        except BudgetExceeded as exc:
            # The run's time ran out inside the call (journaled there); the budgets say
            # whether that stops or escalates the run.
            if self.agent.budgets.on_breach == "escalate":
                raise RunEscalated(exc.message) from exc
            raise
        if live:
            self._breaker_record(tool, None)
        recorded = self.run.tool_result(pos)
        source = recorded.source if recorded is not None and recorded.source else tool.name
        trust = recorded.trust if recorded is not None and recorded.trust else tool.trust.value
        return _Outcome(call, result=result, source=source, trust=trust)

    async def _observe(self, outcome: _Outcome, prepared: tuple[Tool[Any, Any], Any]) -> str:
        """What the model reads about one of its tool calls. The call is counted once, with
        its final outcome, however often the harness made it (after a credential refresh it
        is made again, at a new position): progress is the model's, not the harness's."""
        call = outcome.call
        if outcome.applied:
            # Told as applied, never as an error: the model must not repeat the write, and the
            # tool is not disabled for a response it could not read.
            self.meter.tool_call(call.name, call.arguments, ok=True)
            return (f"applied (tool_result_invalid): the call took effect, but its response "
                    f"could not be used: {outcome.error}")
        while outcome.error is not None:
            failure = classify(outcome.error)
            text = self._judge(call, failure)
            if failure.type is not FailureType.AUTH_EXPIRED or not text.startswith(_REFRESHED):
                self.meter.tool_call(call.name, call.arguments, ok=False)
                return text
            await self._refresh(call.name, outcome.error)
            tool, args = prepared
            outcome = await self._execute(call, tool, args)
        self.meter.tool_call(call.name, call.arguments, ok=True)
        self.auth_streak.pop(call.name, None)
        return _render(outcome.result)

    def _judge(self, call: ToolCall, failure: Failure) -> str:
        """Journal what a failed tool call means and what the loop does about it; return the
        observation the model will read."""
        rule = self.agent.retry.rule(failure.type)
        counts = self.auth_streak if failure.type is FailureType.AUTH_EXPIRED else \
            self.tool_failures
        count = counts.get(call.name, 0) + 1
        counts[call.name] = count
        if failure.type is FailureType.INVALID_TOOL_CALL and call.name not in self.tools:
            count = 1  # a made-up tool name cannot be disabled; the budgets bound the loop
        # Transient failures were already retried by the tool layer: only the fallback is left.
        exhausted = failure.type is FailureType.TRANSIENT_TOOL_ERROR or count >= rule.max_attempts
        action = rule.then if exhausted and call.name in self.tools else rule.action
        if action is Action.RETRY_TOOL:
            action = Action.OBSERVE
        if action.value in RETRY_ACTIONS:
            self._stop_at_retry_cap(f"tool {call.name!r} ({failure.type.value})")
        decision = self.run.decide("recover", {**failure.as_data(), "tool": call.name,
                                               "call_id": call.id, "action": action.value,
                                               "attempt": count})
        action = Action(decision["action"])
        if action is Action.ESCALATE:
            raise RunEscalated(f"tool {call.name!r}: {failure.type.value}: {failure.message}")
        if action is Action.FAIL:
            raise ToolFailed(f"tool {call.name!r}: {failure.message}", tool=call.name,
                             failure=failure.type.value)
        if action is Action.REFRESH_AUTH and self.agent.refresh_auth is not None:
            return _REFRESHED
        text = f"error ({failure.type.value}): {failure.message}"
        if action is Action.DISABLE_TOOL:
            self.disabled[call.name] = f"{failure.type.value} {count} time(s)"
            text += (f"\nThe tool {call.name!r} is now disabled for this run; continue without "
                     "it or tell the user what could not be done.")
        return text

    # -- circuit breakers -----------------------------------------------------------------

    def _breaker_refuses(self, tool: Tool[Any, Any]) -> str | None:
        breaker = self.run.breakers[tool.name]

        def live() -> dict[str, Any] | None:
            if breaker.allow():
                return None
            return {"failure": FailureType.TRANSIENT_TOOL_ERROR.value,
                    "domain": FailureType.TRANSIENT_TOOL_ERROR.domain.value,
                    "tool": tool.name, "action": "refuse",
                    "retry_in_s": round(breaker.retry_in_s(), 3)}

        decision = self.run.maybe_decide("breaker_open", live)
        if decision is None:
            return None
        return (f"error (circuit open): {tool.name!r} is failing repeatedly and is not being "
                f"called for now; it may be tried again in {decision['retry_in_s']} s")

    def _breaker_record(self, tool: Tool[Any, Any], failure: Failure | None) -> None:
        breaker = self.run.breakers[tool.name]
        # Opening is not journaled here: a refusal is, when the next call is refused. Any
        # answer other than "unavailable" (a result, a rejection, bad data) shows the
        # dependency is reachable, and closes a half-open breaker.
        unavailable = failure is not None and failure.type in (
            FailureType.TRANSIENT_TOOL_ERROR, FailureType.RATE_LIMITED)
        breaker.record(ok=not unavailable)


def _gravity(exc: BaseException) -> int:
    """Which of several raised signals wins: a crash, then an escalation, then a wait."""
    for rank, kind in enumerate((Crash, NonDeterminismError, RunEscalated, RunSuspended)):
        if isinstance(exc, kind):
            return rank
    return 10


def _malformed(response: ModelResponse) -> str | None:
    """Why a response cannot be used, or ``None``."""
    for call in response.tool_calls:
        try:
            parsed = call.parsed()
        except ValueError as exc:
            return f"the arguments of tool call {call.name!r} are not valid JSON ({exc})"
        if not isinstance(parsed, dict):
            return f"the arguments of tool call {call.name!r} are not a JSON object"
    if not response.tool_calls and not response.text.strip():
        return "the response has neither text nor a tool call"
    return None


def _render(result: Any) -> str:
    if isinstance(result, str):
        return result
    if hasattr(result, "model_dump_json"):
        return str(result.model_dump_json())
    return json.dumps(result, sort_keys=True, default=str)
