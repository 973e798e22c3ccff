"""The agent's side of policy: build requests, journal verdicts, wait for approvals.

Verdicts are journaled as ``decision`` events named ``policy`` (one per call) and
``tools_visible`` (when the set of tools hidden from the model changes). A call held for
approval waits durably on the key ``approval:{position}`` with the request as the wait's data;
``tether approve``/``deny`` (or :mod:`tether.policy.approvals`) resolve it from any process.

The wait lasts the policy's ``approval_timeout_s`` but never past the run's deadline
(``Budgets.max_duration_s``): a run held for approval ends when its time does. An approval
wait cut off by the deadline is a budget breach (journaled as a ``budget`` decision, then the
budgets' ``on_breach``: the run stops, or escalates), not the policy's ``on_timeout``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tether.agent.memory_recall import is_recalled_fact
from tether.errors import BudgetExceeded, RunEscalated, WaitTimedOut
from tether.models.base import Message
from tether.policy.policy import Policy
from tether.policy.request import (
    Observation,
    PolicyDecision,
    PolicyRequest,
    Principal,
    PriorCall,
)
from tether.runtime.approvals import APPROVAL_PREFIX
from tether.runtime.context import internals
from tether.runtime.failures import FailureType
from tether.runtime.journal import instant
from tether.runtime.provenance import Trust
from tether.runtime.tools import Tool

if TYPE_CHECKING:
    from tether.agent.agent import Task
    from tether.runtime.context import RunContext

__all__ = ["Governor", "Ruling", "observations_of"]


@dataclass(frozen=True, slots=True)
class Ruling:
    """What the loop does with a call: run it, or show ``observation`` to the model."""

    run: bool
    observation: str = ""


def observations_of(messages: Sequence[Message]) -> tuple[Observation, ...]:
    """The context's content with provenance.

    Only content that entered from a source counts: the instructions, the user's request, tool
    results, summaries (which carry the lowest trust of what they replaced). The model's own
    messages and the harness's own words (denials, errors, format reminders) are not sources —
    they may repeat untrusted values, and must not launder them into trusted ones. Content
    whose trust is unknown is treated as untrusted (``external``)."""
    return tuple(o for o in map(_observation, messages) if o is not None)


def _observation(m: Message) -> Observation | None:
    """The observation one message adds to the context, or ``None`` (see
    :func:`observations_of`)."""
    if m.role == "assistant" or not m.content:
        return None
    if m.trust is None and (m.role == "tool" or m.source == "harness"):
        return None
    trust = Trust(m.trust) if m.trust else Trust.EXTERNAL
    # A remembered fact rides a user-role message but is data, like a tool's answer.
    role = "memory" if is_recalled_fact(m) else m.role
    return Observation(m.source or m.role, trust, m.content, role=role)


class Governor:
    """Applies ``policy`` for one run."""

    def __init__(self, policy: Policy, ctx: RunContext, task: Task, environment: str, *,
                 on_breach: str = "stop") -> None:
        """``on_breach`` is the budgets' course when the run's deadline ends an approval wait:
        ``stop`` (:class:`BudgetExceeded`) or ``escalate``."""
        self.policy, self.ctx = policy, ctx
        self.run = internals(ctx)  # decisions, the position, the deadline: the runtime's side
        self.on_breach = on_breach
        self.principal = Principal(task.principal, tuple(task.roles))
        self.task_type = task.task_type
        self.environment = task.environment or environment
        self._hidden: frozenset[str] = frozenset()
        # Calls this run let through, in order: (call id, tool, arguments). Rebuilt on replay,
        # since every call is ruled again (from its journaled verdict) in the same order.
        self._allowed: list[tuple[str, str, dict[str, Any]]] = []
        # What the context held when last asked, kept up to date as messages are added, so a
        # request costs what the turn added, not the whole conversation: the messages read so
        # far, their observations, and whether each answered call took effect.
        self._read: list[Message] = []
        self._observations: tuple[Observation, ...] = ()
        self._took_effect: dict[str, bool] = {}

    def _request(self, stage: str, tool: Tool[Any, Any], args: dict[str, Any] | None,
                 observations: tuple[Observation, ...],
                 prior: tuple[PriorCall, ...] = ()) -> PolicyRequest:
        return PolicyRequest(
            stage="list" if stage == "list" else "call", tool=tool.name,
            effect=tool.effect.value, tier=tool.consequence_tier, tool_trust=tool.trust,
            principal=self.principal, task_type=self.task_type, environment=self.environment,
            args=args, observations=observations, prior_calls=prior)

    def _read_context(self, messages: Sequence[Message]) -> tuple[Observation, ...]:
        """The context's observations (:func:`observations_of`), reading only the messages
        added since the last call; a context that changed otherwise (compressed) is read
        again from its start."""
        known = len(self._read)
        if len(messages) < known or list(messages[:known]) != self._read:
            self._read, self._observations, self._took_effect = [], (), {}
            known = 0
        added = messages[known:]
        if added:
            found = tuple(o for o in map(_observation, added) if o is not None)
            self._read.extend(added)
            self._observations += found
            for m in added:
                if m.role == "tool" and m.tool_call_id is not None:
                    self._took_effect[m.tool_call_id] = m.trust is not None
        return self._observations

    def _prior(self) -> tuple[PriorCall, ...]:
        """The calls let through so far that did not fail: a call whose answer the harness
        wrote (an error, a refusal: no trust) had no effect to count; one not answered yet is
        earlier in this turn and counts. Read from the context as :meth:`_read_context` last
        saw it."""
        took_effect = self._took_effect
        return tuple(PriorCall(tool, args) for call_id, tool, args in self._allowed
                     if took_effect.get(call_id, True))

    def hidden(self, tools: Sequence[Tool[Any, Any]],
               messages: Sequence[Message]) -> frozenset[str]:
        """Tools the model must not see this turn; a change is journaled."""
        if not self.policy.acts_when_listing:
            return self._hidden
        observations = self._read_context(messages)

        def live() -> dict[str, Any] | None:
            denied = {}
            for tool in tools:
                verdict = self.policy.evaluate(self._request("list", tool, None, observations))
                if verdict.decision is PolicyDecision.DENY:
                    denied[tool.name] = verdict.reason
            if frozenset(denied) == self._hidden:
                return None
            return {"hidden": dict(sorted(denied.items()))}

        decision = self.run.maybe_decide("tools_visible", live)
        if decision is not None:
            self._hidden = frozenset(decision["hidden"])
        return self._hidden

    async def rule(self, call_id: str, tool: Tool[Any, Any], args: dict[str, Any],
                   messages: Sequence[Message]) -> Ruling:
        """Evaluate a call; journal the verdict; wait for an approval if one is needed."""
        observations = self._read_context(messages)
        live_verdict = self.policy.evaluate(self._request("call", tool, args, observations,
                                                          self._prior()))
        data = self.run.decide("policy", {"tool": tool.name, "call_id": call_id,
                                          "args": args, **live_verdict.as_data()})
        verdict = data["verdict"]
        if verdict == PolicyDecision.ALLOW.value:
            ruling = Ruling(run=True)
        elif verdict == PolicyDecision.DENY.value:
            ruling = Ruling(run=False, observation=f"denied by policy: {data['reason']}")
        else:
            ruling = await self._approval(tool, args, data)
        if ruling.run:
            self._allowed.append((call_id, tool.name, args))
        return ruling

    async def _approval(self, tool: Tool[Any, Any], args: dict[str, Any],
                        verdict: dict[str, Any]) -> Ruling:
        key = f"{APPROVAL_PREFIX}{self.run.position}"
        request = {"tool": tool.name, "args": args, "reason": verdict["reason"],
                   "role": verdict["role"], "rule": verdict["rule"],
                   "sources": verdict["sources"], "principal": self.principal.id}
        pos = self.run.position
        try:
            # Capped at the time the run has left, so a held run cannot outlive its budget.
            answer = await self.ctx.wait_for(
                key, timeout_s=self.run.call_timeout_s(self.policy.approval_timeout_s),
                data=request)
        except WaitTimedOut as exc:
            self._out_of_time(pos, tool, exc)
            if self.policy.on_timeout == "escalate":
                raise RunEscalated(f"approval of {tool.name!r} was not given in time "
                                   f"({verdict['reason']})") from exc
            return Ruling(run=False, observation=f"not executed: approval of {tool.name!r} "
                          "was not given in time")
        answer = answer if isinstance(answer, dict) else {"approved": bool(answer)}
        resolution = self.run.resolution(key)
        who = resolution.by if resolution is not None and resolution.by else "someone"
        note = f" ({answer.get('note') or resolution.note})" if resolution is not None and (
            answer.get("note") or resolution.note) else ""
        required = verdict["role"]
        if answer.get("approved") and required and answer.get("role") != required:
            return Ruling(run=False, observation=f"not executed: approval needs role "
                          f"{required!r}; {who} approved as {answer.get('role')!r}")
        if answer.get("approved"):
            return Ruling(run=True)
        return Ruling(run=False, observation=f"denied by {who}{note}: {tool.name!r} was not "
                      "executed")

    def _out_of_time(self, pos: int, tool: Tool[Any, Any], timed_out: WaitTimedOut) -> None:
        """End the run per the budgets if the run's deadline, not the policy's timeout, ended
        the approval wait at ``pos``. Told from the journaled wait deadline, so a replay (at
        any later time) decides the same."""
        run_deadline = self.run.deadline
        started = self.run.wait_started(pos)
        if run_deadline is None or started is None or started.deadline is None:
            return
        if started.deadline < run_deadline:
            return  # the policy's own timeout came first: its on_timeout applies
        failure = FailureType.BUDGET_EXCEEDED
        reason = (f"max_duration_s: the run's time ended at {instant(run_deadline)} while it "
                  f"waited for approval of {tool.name!r}; no decision came before it")
        decision = self.run.decide("budget", {
            "failure": failure.value, "domain": failure.domain.value,
            "limit": "max_duration_s", "reason": reason, "action": self.on_breach})
        if decision.get("action") == "escalate":
            raise RunEscalated(str(decision["reason"])) from timed_out
        raise BudgetExceeded(str(decision["reason"]), limit=str(decision["limit"])) from timed_out
