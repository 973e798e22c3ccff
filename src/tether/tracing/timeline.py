"""A run's trace as plain data: what it did, when, for how long, at what cost.

:func:`build_trace`, a pure function of the events, groups a journal into :class:`Item` s
(model calls, tool calls, steps, sleeps, waits, the harness's decisions) timed by the events'
own clock times, never the reader's, so a simulated run's trace is as exact as the simulation.
The OTel sink and ``tether trace`` (text and ``--json``) are built on it.

>>> from tether.events import RunFinished, RunStarted, RunStatus
>>> trace = build_trace("run_1", [
...     RunStarted(seq=1, at=100.0, workflow="hello", seed=1),
...     RunFinished(seq=2, at=102.5, status=RunStatus.COMPLETED),
... ])
>>> trace.status.value, trace.totals.duration_s
('completed', 2.5)

How times are derived: a model call ends at its event's ``at`` and began ``latency_s`` earlier;
a tool call spans its first event (the intent, for writes) to its last, or ``latency_s`` back
from its result for reads, which journal no intent; a sleep or a wait spans its start event to
its end event. A ``step`` journals only its result, so its start is taken as the previous
event's time: an upper bound that includes the workflow's own code since then.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import pairwise
from typing import Any

from tether.events import (
    Decision,
    Event,
    ModelCalled,
    ModelFailed,
    RunFinished,
    RunStarted,
    RunStatus,
    StepFailed,
    StepRecorded,
    TimerFired,
    TimerStarted,
    ToolAmbiguous,
    ToolError,
    ToolIntent,
    ToolResult,
    ToolRetry,
    WaitExpired,
    WaitResolved,
    WaitStarted,
    status_after,
)
from tether.retries import is_retry_decision, retries_at

__all__ = ["Item", "Totals", "Trace", "build_trace"]

_MODEL = (ModelCalled, ModelFailed)
_TOOL = (ToolIntent, ToolResult, ToolError, ToolAmbiguous, ToolRetry)
_SLEEP = (TimerStarted, TimerFired)
_WAIT = (WaitStarted, WaitExpired)


@dataclass(frozen=True)
class Item:
    """One thing a run did.

    ``kind`` is ``model``, ``tool``, ``step``, ``sleep``, ``wait`` or ``decision``; ``status``
    is ``ok``, ``failed``, ``unknown`` (a write whose outcome is not known), ``expired`` (a
    wait) or ``pending`` (not over when the journal was read). ``start_at`` is on the run's
    clock; ``failures`` are the failure classes met along the way, including retried ones;
    ``events`` are the journal events the item was made from; ``children`` are the decisions
    the harness took about it.
    """

    kind: str
    name: str
    pos: int | None
    seq: int
    start_at: float
    duration_s: float
    status: str
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cost_usd: float = 0.0
    retries: int = 0
    failures: tuple[str, ...] = ()
    error_type: str | None = None
    detail: str = ""
    events: tuple[Event, ...] = ()
    children: tuple[Item, ...] = ()

    @property
    def end_at(self) -> float:
        """When the item ended, on the run's clock."""
        return self.start_at + self.duration_s


@dataclass(frozen=True)
class Totals:
    """What a run cost in all: time, tokens, money, calls, retries, failures by class."""

    duration_s: float
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cost_usd: float = 0.0
    model_calls: int = 0
    tool_calls: int = 0
    retries: int = 0
    failures: Mapping[str, int] = field(default_factory=dict)

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens (cached input tokens are part of the input)."""
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True)
class Trace:
    """A run (or the part of it one process saw) as items and totals.

    ``started``/``finished`` are the run's first and last events when present; ``loose`` holds
    the events no item took (the run's start and end, a resolution whose wait is not among the
    events, journaled ``now``/``random``/``uuid`` values).
    """

    run_id: str
    status: RunStatus
    started_at: float
    ended_at: float
    items: tuple[Item, ...]
    totals: Totals
    started: RunStarted | None = None
    finished: RunFinished | None = None
    loose: tuple[Event, ...] = ()

    @property
    def workflow(self) -> str | None:
        """The workflow's name, when the run's start is known."""
        return self.started.workflow if self.started is not None else None

    @property
    def conversation_id(self) -> str:
        """The session the run belongs to, else the run itself."""
        session = self.started.session_id if self.started is not None else None
        return session or self.run_id


def build_trace(run_id: str, events: Iterable[Event], *,
                started: RunStarted | None = None) -> Trace:
    """Group ``events`` (a whole journal, or the part of it one process appended) into a trace.

    ``started`` supplies the run's ``run_started`` event when ``events`` do not include it.
    """
    ordered = sorted(events, key=lambda e: e.seq)
    if not ordered:
        raise ValueError(f"run {run_id!r}: no events to build a trace from")
    started = next((e for e in ordered if isinstance(e, RunStarted)), started)
    finished = next((e for e in reversed(ordered) if isinstance(e, RunFinished)), None)
    previous_at = {e.seq: prev.at for prev, e in pairwise(ordered)}
    resolutions: dict[str, WaitResolved] = {}
    groups: dict[int, list[Event]] = {}
    loose: list[Event] = []
    for e in ordered:
        pos = getattr(e, "pos", None)
        if pos is not None:
            groups.setdefault(pos, []).append(e)
        elif isinstance(e, WaitResolved):
            resolutions.setdefault(e.key, e)
        else:
            loose.append(e)

    items: list[Item] = []
    decisions: list[Decision] = []
    used: set[str] = set()
    for pos, group in groups.items():
        decisions += [e for e in group if isinstance(e, Decision)]
        calls: list[Event] = [e for e in group if not isinstance(e, Decision)]
        if not calls:
            continue
        made = _items_at(pos, calls, resolutions, previous_at, ordered[0].at)
        if made is None:
            loose += calls
            continue
        items += made
        used |= {e.key for e in calls if isinstance(e, WaitStarted | WaitExpired)}
        used |= {e.name for e in calls if isinstance(e, StepRecorded) and e.call == "wait_for"}
    loose += [r for key, r in resolutions.items() if key not in used]
    items.sort(key=lambda i: i.seq)
    items, root_decisions = _attach(items, decisions)

    status: RunStatus = RunStatus.RUNNING
    for e in ordered:
        status = status_after(status, e) or status
    return Trace(
        run_id=run_id, status=status, started_at=ordered[0].at, ended_at=ordered[-1].at,
        items=tuple(sorted(items + root_decisions, key=lambda i: i.seq)),
        totals=_totals(items, root_decisions, ordered[-1].at - ordered[0].at),
        started=started, finished=finished, loose=tuple(sorted(loose, key=lambda e: e.seq)),
    )


# -- items ---------------------------------------------------------------------------------------


def _items_at(pos: int, calls: list[Event], resolutions: Mapping[str, WaitResolved],
              previous_at: Mapping[int, float], origin: float) -> list[Item] | None:
    """The items made of the events at one position, or ``None`` when none is worth showing."""
    first = calls[0]
    if any(isinstance(e, _MODEL) for e in calls):
        return [_model_item(e) for e in calls if isinstance(e, _MODEL)]
    if any(isinstance(e, _TOOL) for e in calls):
        return [_tool_item(pos, calls)]
    if any(isinstance(e, _SLEEP) for e in calls):
        return [_sleep_item(pos, calls)]
    if any(isinstance(e, _WAIT) for e in calls) or (
        isinstance(first, StepRecorded) and first.call == "wait_for"
    ):
        return [_wait_item(pos, calls, resolutions)]
    if isinstance(first, StepRecorded | StepFailed) and first.call == "step":
        return [_step_item(pos, first, previous_at.get(first.seq, origin))]
    return None  # now / random / uuid: journaled values, not work


def _model_item(e: ModelCalled | ModelFailed) -> Item:
    base: dict[str, Any] = dict(kind="model", name=e.model, pos=e.pos, seq=e.seq,
                                start_at=e.at - e.latency_s, duration_s=e.latency_s, events=(e,))
    if isinstance(e, ModelFailed):
        return Item(status="failed", failures=(e.failure,), error_type=_error_type(e.error),
                    detail=str(e.error.get("message", "")), **base)
    usage = e.response.get("usage") or {}
    calls = [str(c.get("name", "")) for c in e.response.get("tool_calls") or ()]
    reason = e.response.get("finish_reason")
    detail = ("→ " + ", ".join(calls)) if calls else (str(reason) if reason else "")
    return Item(status="ok", input_tokens=int(usage.get("input_tokens", 0)),
                output_tokens=int(usage.get("output_tokens", 0)),
                cached_input_tokens=int(usage.get("cached_input_tokens", 0)),
                cost_usd=e.cost_usd, detail=detail, **base)


def _tool_item(pos: int, calls: list[Event]) -> Item:
    tool = next(e.tool for e in calls if isinstance(e, _TOOL))
    last = calls[-1]
    failures, notes = [], []
    error_type = None
    for e in calls:
        if isinstance(e, ToolIntent):
            notes.append(e.effect)
            if e.compensates is not None:
                notes.append(f"undoes pos {e.compensates}")
        elif isinstance(e, ToolAmbiguous):
            failures.append("ambiguous_write")
        elif isinstance(e, ToolRetry):
            failures.append(e.failure)
        elif isinstance(e, ToolError):
            failures.append(e.failure)
            error_type = _error_type(e.error)
        elif isinstance(e, ToolResult) and e.reconciled:
            notes.append("reconciled")
    start = calls[0].at
    if isinstance(last, ToolResult | ToolError):
        start = min(start, last.at - last.latency_s)
    return Item(kind="tool", name=tool, pos=pos, seq=calls[0].seq, start_at=start,
                duration_s=max(0.0, last.at - start), status=_tool_status(last),
                retries=retries_at(calls), failures=tuple(failures), error_type=error_type,
                detail=" ".join(dict.fromkeys(notes)), events=tuple(calls))


def _tool_status(last: Event) -> str:
    """A tool call's status from its last event. A write whose outcome is not known is
    ``unknown`` — never ``failed`` — however its settlement ended (an ambiguous outcome, or a
    lookup that could not tell, journaled as an ``ambiguous_write`` error)."""
    if isinstance(last, ToolResult):
        return "ok"
    if isinstance(last, ToolAmbiguous) or (
            isinstance(last, ToolError) and last.failure == "ambiguous_write"):
        return "unknown"
    return "failed" if isinstance(last, ToolError) else "pending"


def _sleep_item(pos: int, calls: list[Event]) -> Item:
    begun = next((e for e in calls if isinstance(e, TimerStarted)), None)
    fired = next((e for e in calls if isinstance(e, TimerFired)), None)
    start = begun.at if begun is not None else calls[0].at
    end = fired.at if fired is not None else start
    detail = f"until +{begun.wake_at - begun.at:.3f} s" if begun is not None and not fired else ""
    return Item(kind="sleep", name="sleep", pos=pos, seq=calls[0].seq, start_at=start,
                duration_s=max(0.0, end - start), status="ok" if fired else "pending",
                detail=detail, events=tuple(calls))


def _wait_item(pos: int, calls: list[Event], resolutions: Mapping[str, WaitResolved]) -> Item:
    first = calls[0]
    key = first.name if isinstance(first, StepRecorded) else str(getattr(first, "key", ""))
    expired = next((e for e in calls if isinstance(e, WaitExpired)), None)
    resolution = resolutions.get(key)
    start, end, status, detail = first.at, first.at, "pending", "waiting"
    if expired is not None and (resolution is None or resolution.seq > expired.seq):
        end, status, detail = expired.at, "expired", "timed out"
    elif resolution is not None:
        end, status = max(first.at, resolution.at), "ok"
        detail = "resolved" + (f" by {resolution.by}" if resolution.by else "")
    events = tuple(calls) + ((resolution,) if resolution is not None else ())
    return Item(kind="wait", name=key, pos=pos, seq=first.seq, start_at=start,
                duration_s=max(0.0, end - start), status=status, detail=detail,
                events=tuple(sorted(events, key=lambda e: e.seq)))


def _step_item(pos: int, e: StepRecorded | StepFailed, begun_at: float) -> Item:
    base: dict[str, Any] = dict(kind="step", name=e.name, pos=pos, seq=e.seq, start_at=begun_at,
                                duration_s=max(0.0, e.at - begun_at), events=(e,))
    if isinstance(e, StepFailed):
        failure = str((e.error.get("data") or {}).get("failure") or "step_error")
        return Item(status="failed", failures=(failure,), error_type=_error_type(e.error),
                    detail=str(e.error.get("message", "")), **base)
    return Item(status="ok", **base)


def _decision_item(d: Decision) -> Item:
    data = d.data
    facts = [str(data["failure"])] if "failure" in data else []
    if "domain" in data:
        facts.append(f"({data['domain']})")
    if "action" in data:
        facts.append(f"→ {data['action']}")
    if "delay_s" in data:
        facts.append(f"in {float(data['delay_s']):.3f} s")
    facts += [f"{k}={data[k]}" for k in ("limit", "attempt", "reason")
              if data.get(k) not in (None, "")]
    return Item(kind="decision", name=d.name, pos=d.pos, seq=d.seq, start_at=d.at,
                duration_s=0.0, status="ok", detail=" ".join(facts), events=(d,))


def _is_retry(decision: Item) -> bool:
    """Whether a decision item says a call will be tried again (:mod:`tether.retries`)."""
    return is_retry_decision(decision.events[0])


def _attach(items: list[Item], decisions: Sequence[Decision]) -> tuple[list[Item], list[Item]]:
    """Hang each decision on the call it is about; the rest stay at the run's level.

    A decision is about, in this order of preference: the call at its own position (for model
    calls, the latest one before it); the latest earlier call of the tool its data names
    (``tool``); the latest earlier call that met the failure class it names (``failure``).
    An item's retries are its own extra attempts plus the retry decisions hanging on it, so
    the items' retries and the root decisions' add up to :func:`tether.retries.count_retries`.
    """
    children: dict[int, list[Item]] = {}
    root: list[Item] = []
    for d in sorted(decisions, key=lambda e: e.seq):
        before = [i for i, item in enumerate(items) if item.seq < d.seq]
        tool, failure = d.data.get("tool"), d.data.get("failure")
        candidates = (
            [i for i in before if items[i].pos == d.pos],
            [i for i in before if tool is not None and items[i].kind == "tool"
             and items[i].name == tool],
            [i for i in before if failure is not None and failure in items[i].failures],
        )
        target = next((found[-1] for found in candidates if found), None)
        if target is None:
            root.append(_decision_item(d))
        else:
            children.setdefault(target, []).append(_decision_item(d))
    out = []
    for i, item in enumerate(items):
        kids = tuple(children.get(i, ()))
        retries = item.retries + sum(_is_retry(k) for k in kids)
        out.append(replace(item, children=kids, retries=retries))
    return out, root


def _totals(items: Sequence[Item], root_decisions: Sequence[Item], duration_s: float) -> Totals:
    models = [i for i in items if i.kind == "model"]
    failures = Counter(f for i in items for f in i.failures)
    return Totals(
        duration_s=duration_s,
        input_tokens=sum(i.input_tokens for i in models),
        output_tokens=sum(i.output_tokens for i in models),
        cached_input_tokens=sum(i.cached_input_tokens for i in models),
        cost_usd=sum(i.cost_usd for i in models),
        model_calls=len(models),
        tool_calls=sum(1 for i in items if i.kind == "tool"),
        retries=sum(i.retries for i in items) + sum(_is_retry(d) for d in root_decisions),
        failures=dict(sorted(failures.items())),
    )


def _error_type(error: Mapping[str, Any]) -> str | None:
    """The exception a journaled error record names (the handler's own, for tool failures)."""
    data = error.get("data") or {}
    named = data.get("error_type") if isinstance(data, dict) else None
    value = named or error.get("type")
    return str(value) if value else None

