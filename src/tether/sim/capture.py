"""Production back into simulation: a recorded run (an incident) made into a scenario.

``tether sim capture RUN --store URL`` reads a run's journal from a store (SQLite or
PostgreSQL; opened read-only, nothing is created) and writes a scenario that re-runs it under
``naive``, ``default`` or a harness variant::

    agent: mypackage.agents:support       # --agent, else the one the run recorded
    task: "Order A-1001 arrived broken; refund it."
    principal: {id: ada, roles: [customer]}
    model:
      replay: [{text: "", tool_calls: [...]}, ...]    # the model's recorded answers, in order
    recorded:                                        # what each tool call met (tether.sim.recorded)
      run: run-agent-A1001
      tools: {lookup_order: {effect: read, calls: [...]}, refund: {...}}
    faults:                                          # the failures the run met, where it met them
      - {kind: timeout_after, target: recorded.refund, on_call: [1]}
    invariants:                                      # no write applied more often than the run did
      - exactly_once: {effect: recorded.refund}
    success:                                         # done: every write the run applied, once
      - exactly_once: {effect: recorded.refund, keys: ["refund:A-1001"]}

The invariants forbid only what would be harm — a write applied more often than the recorded
run applied it (the provider deduplicated re-issues, so once per business key). Whether each
recorded write was made again is the task's success, not an invariant: a harness that stops
short on purpose (a budget, a policy that forbids a tool, an escalation) is *not done* or
*stopped*, never a violation.

**What is reconstructed.** The task and the principal (the run's input); the model's answers
(every ``model_called`` response, and every ``model_failed`` error, in order); each tool call's
arguments, idempotency key and answer (or the error it raised); the failures the run met, as
faults at the same call numbers of ``recorded.<tool>``: a write whose outcome was ambiguous →
``timeout_after``; a throttled call (429, or a ``retry_after_s``) → ``error`` with status 429
and the hint; another transient failure → ``error`` with its 5xx status (503 when the journal
does not say); a read that timed out → ``timeout_before``; expired credentials →
``auth_expiry``; a write in flight when the worker died (an intent the resumed run found without
a result, or a run that never resumed) → ``crash`` at point ``after``.

**What is not.** The services' state beyond what the run read: the scenario has no ``world:``
— its tools answer from the recording (see :mod:`tether.sim.recorded`; a read repeated with
the same arguments gets the state as the run last read it), so a replay that takes another
path (arguments the run never sent, a tool it never called, a compensation) meets "not
recorded" and is inconclusive, never a pass. Whether an ambiguous write or a write interrupted
by a crash reached the provider: the journal cannot tell, so it is assumed applied (the case
that risks a duplicate). Crashes that interrupted no write leave no trace in a journal and are
not reproduced; nor are latencies, a lookup's own failures, the run's budgets and policy (the
agent's own apply, and the scenario's approver decides held calls, not the humans who did).
The model is not asked again: its recorded answers are replayed (see :func:`replay_model`).
Each answer carries what the recorded model had read of its previous tool calls that returned;
a replay whose model reads otherwise there (a policy denied the call, a harness gave up where
the run got an answer), or asks past the recorded answers, is a divergence
(:func:`replay_divergence`) and the episode is inconclusive. The limit: only those observations
are compared, not whole requests — the naive loop never asks the recorded requests (its
messages differ from the journaled loop's), so request digests cannot tell a diverging variant
from a faithful naive replay. A variant that changes what the model is asked elsewhere — other
instructions, a smaller context window, a tool hidden from the list, a failed call's error text
— still gets the recorded answers, in order, without a word.
"""

from __future__ import annotations

import json
import os
import re
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from tether.errors import UsageError
from tether.events import (
    Event,
    ModelCalled,
    ModelFailed,
    RunFinished,
    RunStarted,
    ToolAmbiguous,
    ToolError,
    ToolIntent,
    ToolResult,
    ToolRetry,
)
from tether.models.base import ModelResponse, ToolCall
from tether.sim.recorded import APPLIED, RECORDED_SERVICE
from tether.sim.replayed import EXHAUSTED, RecordedAnswers, replay_divergence, replay_model
from tether.store.base import Store
from tether.store.open import open_store

# The replayed model lives in tether.sim.replayed; its names stay importable from here.
__all__ = ["EXHAUSTED", "RecordedAnswers", "capture", "capture_run", "replay_divergence",
           "replay_model", "scenario_yaml"]

#: Tool failures after which the handler had run (the rest — policy, budgets, invalid
#: arguments — stopped the call before it was sent).
_SENT_FAILURES = ("permanent_tool_error", "transient_tool_error", "auth_expired")
_TIMEOUTS = ("TimeoutError", "ConnectionError", "AmbiguousOutcome")
_CRASH_REASON = "the worker stopped"
_STILL_UNKNOWN = "outcome still unknown"


def capture_run(url: str, run_id: str, *, agent: str | None = None,
                out_dir: Path | None = None) -> dict[str, Any]:
    """:func:`capture` of ``run_id`` in the store at ``url`` (opened only if it exists).

    An ``agent`` naming a file (``path/to/agent.py:function``, relative to the current folder)
    is written relative to ``out_dir``, the folder the scenario is written to, since a
    scenario's file specs are read relative to its own folder."""
    if agent is not None and out_dir is not None:
        agent = _relative_spec(agent, out_dir)
    store = open_store(url, create=False)
    try:
        return capture(store, run_id, agent=agent, where=url)
    finally:
        store.close()


def capture(store: Store, run_id: str, *, agent: str | None = None,
            where: str = "the store") -> dict[str, Any]:
    """The scenario (as plain data) that re-runs ``run_id``; see the module docstring.

    ``agent`` is the agent's spec; without it, the one the run recorded (an ``agent`` in its
    input, or a workflow named as a spec). Raises :class:`UsageError` for a run that is not
    there, that is not an agent run (no model calls), or whose agent is unknown.
    """
    events = store.read(run_id)
    if not events:
        raise UsageError(f"no run {run_id!r} in {where}; list the runs with `tether runs list "
                         f"--store {where}`")
    started = next((e for e in events if isinstance(e, RunStarted)), None)
    if started is None:
        raise UsageError(f"run {run_id!r} in {where} has no run_started event; its journal "
                         "is incomplete and cannot be captured")
    answers = _answers(events)
    if not any(isinstance(e, ModelCalled) for e in events):
        raise UsageError(f"run {run_id!r} ({started.workflow}) made no model calls: it is not "
                         "an agent run, and capture replays an agent's model answers; capture a "
                         "run of a tether Agent")
    spec = agent or _recorded_agent(started)
    if not spec:
        raise UsageError(
            f"run {run_id!r} does not record which agent ran it (its input has no 'agent' and "
            f"its workflow name {started.workflow!r} is not a package.module:function spec); "
            "pass --agent package.module:function (or path/to/file.py:function)")
    text, principal = _task(started.input, run_id)
    tools, faults, notes = _tools(events)
    finished = next((e for e in reversed(events) if isinstance(e, RunFinished)), None)
    ended = (f"ended {finished.status.value}" + (f" ({finished.reason})" if finished.reason
                                                  else "")) if finished else \
        "never finished (its worker stopped and it was not resumed)"
    invariants, success = [], []
    for name, tool in tools.items():
        keys = list(dict.fromkeys(c["key"] for c in tool["calls"]
                                  if tool["effect"] != "read" and c["outcome"] in APPLIED))
        if keys:
            effect = f"{RECORDED_SERVICE}.{name}"
            # The run applied each business key once (its provider deduplicated re-issues):
            # no key twice is "never more often than the run"; each key once is "done".
            invariants.append({"exactly_once": {"effect": effect}})
            success.append({"exactly_once": {"effect": effect, "keys": keys}})
    description = (
        f"Captured from run {run_id} ({started.workflow}), which {ended}. Reconstructed: the "
        f"task and principal, {len(answers)} model answer(s) replayed in order, "
        f"{sum(len(t['calls']) for t in tools.values())} tool call(s) answered from the "
        f"recording, {len(faults)} fault(s) the run met. Not reconstructed: the services' "
        "state beyond what the run read (a replay that leaves the recorded path meets 'not "
        "recorded' and is inconclusive), whether an ambiguous or interrupted write reached "
        "the provider (assumed it did), crashes that interrupted no write, latencies."
        + "".join(f" {n}" for n in notes))
    return {
        "name": _name(run_id),
        "description": description,
        "agent": spec,
        "task": text,
        "principal": principal,
        "model": {"replay": answers},
        "recorded": {"run": run_id, "tools": tools},
        "faults": faults,
        "invariants": invariants,
        "success": success,
    }


def _relative_spec(spec: str, out_dir: Path) -> str:
    where, sep, attribute = spec.strip().rpartition(":")
    if not sep or not (where.endswith(".py") or "/" in where or "\\" in where):
        return spec  # package.module:function
    path = Path(where).expanduser().resolve()
    return f"{Path(os.path.relpath(path, out_dir.resolve())).as_posix()}:{attribute}"


class _Dumper(yaml.SafeDumper):
    """Plain YAML: a value written twice is written out twice, never as an anchor."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def scenario_yaml(data: dict[str, Any]) -> str:
    """A captured scenario as YAML, with a header saying where it came from and what it is."""
    run = data.get("recorded", {}).get("run", "")
    header = (f"# Captured by `tether sim capture` from run {run}.\n"
              "# Re-run it: tether sim run THIS.yaml --harness naive | default | <variant>\n"
              "# The model's answers and the tools' answers are replayed from the run; the\n"
              "# services' state beyond what the run read is not reconstructed (see\n"
              "# description). A replay that leaves the recorded path is inconclusive.\n")
    body = yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
    return header + body


def _answers(events: Sequence[Event]) -> list[dict[str, Any]]:
    """The model's recorded answers, each with what it had ``seen`` of the previous answer's
    tool calls that returned (see :class:`RecordedAnswers`).

    A tool result is tied to its call by tool name, as the loop runs an answer's calls in
    order; a tool called twice in one answer, and a result the model read as unusable, are
    left out (their observation cannot be told apart)."""
    answers: list[dict[str, Any]] = []
    calls: list[ToolCall] = []
    seen: dict[str, str] = {}
    undoing: set[int] = set()  # positions of compensations: not calls the model made
    for event in events:
        if isinstance(event, ToolIntent) and event.compensates is not None:
            undoing.add(event.pos)
        elif isinstance(event, ModelFailed):
            answers.append({"failed": dict(event.error)})
        elif isinstance(event, ModelCalled):
            answer = dict(event.response)
            if seen:
                answer["seen"] = seen
            answers.append(answer)
            calls = list(ModelResponse.model_validate(event.response).tool_calls)
            seen = {}
        elif isinstance(event, ToolResult) and event.pos not in undoing:
            same = [c for c in calls if c.name == event.tool]
            if len(same) == 1 and event.unreadable is None:
                seen[same[0].id] = _render(event.result)
    return answers


def _render(result: Any) -> str:
    """A tool's answer as both harnesses show it to the model."""
    if isinstance(result, str):
        return result
    return json.dumps(result, sort_keys=True, default=str)


def _recorded_agent(started: RunStarted) -> str:
    given = started.input.get("agent") if isinstance(started.input, dict) else None
    if isinstance(given, str) and given:
        return given
    return started.workflow if ":" in started.workflow else ""


def _task(given: Any, run_id: str) -> tuple[str, dict[str, Any]]:
    if isinstance(given, str):
        return given, {"id": "anonymous", "roles": []}
    if isinstance(given, dict) and isinstance(given.get("text"), str):
        roles = given.get("roles") or []
        return given["text"], {"id": str(given.get("principal") or "anonymous"),
                               "roles": [str(r) for r in roles]}
    raise UsageError(f"run {run_id!r}: its input is not an agent task (a text, or "
                     f"{{text, principal, roles}}): found {_short(given)}")


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else f"{text[:60]}…"


def _name(run_id: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", run_id).strip("-") or "run"
    return f"captured-{slug}"[:200]


def _tools(events: Sequence[Event]) -> tuple[dict[str, Any], list[dict[str, Any]], list[str]]:
    """Each tool's recorded calls in order, the faults they met, and notes for the
    description."""
    tools: dict[str, dict[str, Any]] = {}
    faults: list[dict[str, Any]] = []
    pending: deque[ToolCall] = deque()
    args_at: dict[int, dict[str, Any] | None] = {}
    open_at: dict[int, dict[str, Any]] = {}   # a write's attempt awaiting its outcome
    key_at: dict[int, str] = {}
    answers: dict[tuple[str, str], Any] = {}  # (tool, key) → the response under that key

    def entry(tool: str, effect: str, call: dict[str, Any]) -> dict[str, Any]:
        record = tools.setdefault(tool, {"effect": effect, "calls": []})
        if effect != "read":
            record["effect"] = effect
        record["calls"].append(call)
        return call

    def args_for(event: Any) -> dict[str, Any] | None:
        if event.pos not in args_at:
            # The n-th call of a tool after a model answer is that answer's n-th call of it.
            found = next((c for c in pending if c.name == event.tool), None)
            if found is not None:
                pending.remove(found)
            args_at[event.pos] = _parsed(found)
        return args_at[event.pos]

    for event in events:
        if isinstance(event, ModelCalled):
            pending = deque(ModelResponse.model_validate(event.response).tool_calls)
        elif isinstance(event, ToolIntent):
            if event.compensates is not None:
                continue
            args_at.setdefault(event.pos, dict(event.args))
            key_at[event.pos] = event.key
            open_at[event.pos] = entry(event.tool, event.effect,
                                       {"outcome": "ok", "args": dict(event.args),
                                        "key": event.key})
        elif isinstance(event, ToolResult):
            call = open_at.pop(event.pos, None)
            if event.pos in key_at:
                answers.setdefault((event.tool, key_at[event.pos]), event.result)
            provenance = {} if event.source is None else \
                {"source": event.source, "trust": event.trust or "external"}
            if call is not None:
                call.update({"result": event.result, **provenance})
            elif not event.reconciled and event.pos not in key_at:
                entry(event.tool, "read", {"outcome": "ok", "args": args_for(event),
                                           "result": event.result, **provenance})
        elif isinstance(event, ToolRetry):
            if event.lookup:
                continue
            call = open_at.pop(event.pos, None)
            if call is None:
                if event.pos in key_at:
                    continue
                call = entry(event.tool, "read", {"args": args_for(event)})
            call.update(_transient(event.error))
        elif isinstance(event, ToolAmbiguous):
            call = open_at.pop(event.pos, None)
            if call is not None:
                call.update(_ambiguous(event.reason))
        elif isinstance(event, ToolError):
            if event.failure not in _SENT_FAILURES:
                continue
            call = open_at.pop(event.pos, None)
            if call is None:
                if event.pos in key_at:
                    continue
                call = entry(event.tool, "read", {"args": args_for(event)})
            if event.failure == "transient_tool_error":
                call.update(_transient(event.error))
            elif event.failure == "auth_expired":
                call["outcome"] = "auth_expired"
            else:
                call.update({"outcome": "error", "error": dict(event.error)})
    notes = []
    for call in open_at.values():
        call["outcome"] = "crash_after"
    if open_at:
        notes.append("The run stopped with a write in flight; it is replayed as a crash after "
                     "the write.")
    for name, tool in tools.items():
        for number, call in enumerate(tool["calls"], start=1):
            if tool["effect"] != "read":
                known = answers.get((name, call["key"]))
                if known is not None and call["outcome"] in APPLIED:
                    call["result"] = known
            fault = _fault(call, f"{RECORDED_SERVICE}.{name}", number)
            if fault is not None:
                faults.append(fault)
    return tools, faults, notes


def _parsed(call: ToolCall | None) -> dict[str, Any] | None:
    if call is None:
        return None
    try:
        value = call.parsed()
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _ambiguous(reason: str) -> dict[str, Any]:
    """What a write's attempt met when the journal's next word on it is ``tool_ambiguous``."""
    if reason.startswith(_CRASH_REASON):
        return {"outcome": "crash_after"}
    if not reason.startswith(_STILL_UNKNOWN):
        return {"outcome": "timeout_after"}  # the attempt's own timeout or lost connection
    # The attempt failed in a way that applied nothing, but an earlier attempt's outcome was
    # still unknown and could not be settled: the reason names the attempt's own failure.
    failed = re.search(r"(?:the last with|failed with) ([A-Za-z_][\w.]*): (.*)", reason)
    if failed is not None:
        return _transient({"type": failed.group(1), "message": failed.group(2)})
    refused = re.search(r"a re-issue was refused \((.*)\)", reason)
    if refused is not None:
        return {"outcome": "error", "error": {"type": "tether.errors.RecordedError",
                                              "message": refused.group(1), "data": {}}}
    return {"outcome": "unavailable", "status": 503}


def _transient(error: dict[str, Any]) -> dict[str, Any]:
    """A transient failure's outcome: a timeout, throttling (429) or unavailability (5xx)."""
    data = error.get("data") or {}
    # A failure journaled as ToolFailed names the handler's own exception in error_type.
    kind = str(data.get("error_type") or error.get("type", "")).rpartition(".")[2]
    message = str(error.get("message", ""))
    attrs = data.get("attrs") or {}
    if kind in _TIMEOUTS:
        return {"outcome": "timeout"}
    status = next((attrs[a] for a in ("status", "status_code", "http_status")
                   if isinstance(attrs.get(a), int)), None)
    if status is None:
        found = re.search(r"\b([45]\d\d)\b", message)
        status = int(found.group(1)) if found else None
    hint = attrs.get("retry_after_s")
    hint = float(hint) if isinstance(hint, int | float) and not isinstance(hint, bool) else None
    if status == 429 or hint is not None:
        throttled: dict[str, Any] = {"outcome": "throttled", "status": 429}
        if hint is not None:
            throttled["retry_after_s"] = hint
        return throttled
    return {"outcome": "unavailable",
            "status": status if status is not None and status >= 500 else 503}


def _fault(call: dict[str, Any], target: str, number: int) -> dict[str, Any] | None:
    outcome = call["outcome"]
    base = {"name": f"recorded-{outcome}-{target.partition('.')[2]}-{number}",
            "target": target, "on_call": [number]}
    if outcome == "timeout_after":
        return {"kind": "timeout_after", **base}
    if outcome == "crash_after":
        return {"kind": "crash", **base, "point": "after"}
    if outcome == "timeout":
        return {"kind": "timeout_before", **base}
    if outcome == "auth_expired":
        return {"kind": "auth_expiry", **base}
    if outcome == "throttled":
        fault = {"kind": "error", **base, "status": 429}
        if call.get("retry_after_s") is not None:
            fault["retry_after_s"] = call["retry_after_s"]
        return fault
    if outcome == "unavailable":
        return {"kind": "error", **base, "status": call["status"]}
    return None
