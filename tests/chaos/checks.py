"""The checks a chaos test runs once every run has finished: each journal's shape, each run's
effects in the world against what its order requires, and the external system's per-key logs
of handler invocations and provider requests. Each returns the problems it found (an empty list:
everything held)."""

from __future__ import annotations

import subprocess
from collections import Counter
from collections.abc import Sequence

from tether.events import (
    Event,
    RunDequeued,
    RunFinished,
    RunStarted,
    RunStatus,
    TimerFired,
    TimerStarted,
    ToolIntent,
    ToolResult,
)
from tether.store.base import Store

from .harness import QUEUES, ROOT, TETHER, Summary
from .worker_app import External, risky


def _unanswered(events: Sequence[Event], tool: str) -> bool:
    """Whether ``tool`` has an intent in ``events`` with no result after it."""
    intents = {e.pos for e in events if isinstance(e, ToolIntent) and e.tool == tool}
    results = {e.pos for e in events if isinstance(e, ToolResult) and e.tool == tool}
    return bool(intents - results)


def check_journal(run_id: str, events: Sequence[Event]) -> list[str]:
    """Structural checks of one finished journal."""
    problems = []
    kinds = [e.kind for e in events]
    if not events or not isinstance(events[0], RunStarted) or events[0].queue not in QUEUES:
        problems.append(f"{run_id}: does not start with a queued run_started: {kinds[:2]}")
    if kinds.count("run_started") != 1:
        problems.append(f"{run_id}: {kinds.count('run_started')} run_started events")
    if sum(isinstance(e, RunDequeued) for e in events) != 1 or kinds[1:2] != ["run_dequeued"]:
        problems.append(f"{run_id}: run_dequeued must come once, right after run_started: "
                        f"{kinds[:3]}")
    if kinds.count("run_finished") != 1 or not isinstance(events[-1], RunFinished):
        problems.append(f"{run_id}: not finished exactly once, last: {kinds[-3:]}")
    timers = [e for e in events if isinstance(e, TimerStarted)]
    if len(timers) != 1 or not timers[0].parked:
        problems.append(f"{run_id}: expected one parked timer, found {timers}")
    fired = [e for e in events if isinstance(e, TimerFired)]
    if len(fired) != 1:
        problems.append(f"{run_id}: {len(fired)} timer_fired events")
    elif timers and fired[0].at < timers[0].wake_at:
        problems.append(f"{run_id}: the timer fired at {fired[0].at:.3f}, before it was due "
                        f"({timers[0].wake_at:.3f})")
    results = Counter((e.pos, e.tool) for e in events if isinstance(e, ToolResult))
    problems.extend(f"{run_id}: {n} results for the call at {pos} ({tool})"
                    for (pos, tool), n in results.items() if n > 1)
    return problems


def check_run(run_id: str, order_id: str, events: Sequence[Event],
              effects: dict[str, dict[str, int]]) -> list[str]:
    """The run's end state against its order: what it must have done in the world."""
    finished = events[-1] if events and isinstance(events[-1], RunFinished) else None
    if finished is None:
        return [f"{run_id}: not finished"]
    got = {table: effects[table].get(f"{prefix}:{order_id}", 0) for table, prefix in
           (("holds", "hold"), ("charges", "charge"), ("labels", "label"), ("emails", "email"))}
    got["releases"] = effects["releases"].get(f"hold:{order_id}:undo", 0)
    status = finished.status
    if risky(order_id):
        want = {"holds": 1, "releases": 1, "charges": 0, "labels": 0, "emails": 0}
        if status is not RunStatus.FAILED or "Declined" not in finished.reason:
            return [f"{run_id}: a risky order must fail declined and compensated, got "
                    f"{status.value}: {finished.reason}"]
    elif status is RunStatus.COMPLETED:
        want = {"holds": 1, "releases": 0, "charges": 1, "labels": 1, "emails": 1}
    elif status is RunStatus.ESCALATED:
        if not _unanswered(events, "notify_customer"):
            return [f"{run_id}: escalated although no unsafe write's outcome was unknown: "
                    f"{finished.reason}"]
        want = {"holds": 1, "releases": 0, "charges": 1, "labels": 1,
                "emails": min(got["emails"], 1)}
    else:
        return [f"{run_id}: ended {status.value}: {finished.reason}"]
    if got != want:
        return [f"{run_id} ({status.value}): effects {got}, expected {want}"]
    return []


def check_invocations(history: dict[str, list[tuple[str, str]]], summary: Summary) -> list[str]:
    """Per intent key: unsafe handlers ran at most once; a reconcilable write ran again only
    after a lookup found nothing, never after one found it; idempotent writes may be re-issued
    but the provider applied each key once."""
    problems = []
    for key, log in history.items():
        kind = key.split(":")[0]
        invoked = [endpoint for what, endpoint in log if what == "invoked"]
        applied = [endpoint for what, endpoint in log if what == "applied"]
        if kind == "email" and len(invoked) > 1:
            problems.append(f"{key}: the unsafe email handler ran {len(invoked)} times")
        if kind in ("hold", "charge"):
            summary.max_idempotent_invocations = max(summary.max_idempotent_invocations,
                                                     len(invoked))
        if len(applied) > 1:
            problems.append(f"{key}: applied {len(applied)} times: {log}")
        if kind == "label":
            problems.extend(_check_label_log(key, log, summary))
    return problems


def _check_label_log(key: str, log: list[tuple[str, str]],
                     summary: Summary) -> list[str]:
    """The invocations and requests of one reconcilable key are two logs; replay them in
    order of the requests: every create invocation after the first must follow a lookup that
    found nothing, and none may follow a lookup that found the label."""
    creates = sum(1 for what, endpoint in log if what == "invoked"
                  and endpoint == "labels.create")
    lookups = [what for what, endpoint in log if endpoint == "labels.find" and what != "invoked"]
    summary.lookups.update(lookups)
    problems = []
    if creates > 1 + lookups.count("not_found"):
        problems.append(f"{key}: the reconcilable write ran {creates} times after "
                        f"{lookups.count('not_found')} lookups that found nothing: {log}")
    if "found" in lookups and creates > 1 + lookups[:lookups.index("found")].count("not_found"):
        problems.append(f"{key}: the reconcilable write ran again after a lookup found the "
                        f"label: {log}")
    return problems


def verify(store: Store, ext: External, run_ids: Sequence[str], summary: Summary) -> list[str]:
    """Every check; returns the problems (empty: the chaos test passed)."""
    problems = [f"store check: {p}" for p in store.check()]  # type: ignore[attr-defined]
    effects = {table: ext.effects(table)
               for table in ("holds", "releases", "charges", "labels", "emails")}
    for run_id in run_ids:
        events = store.read(run_id)
        order_id = run_id.removeprefix("chaos-")
        problems.extend(check_journal(run_id, events))
        problems.extend(check_run(run_id, order_id, events, effects))
        if events and isinstance(events[-1], RunFinished):
            summary.statuses[events[-1].status.value] += 1
        timers = [e for e in events if isinstance(e, TimerStarted)]
        fired = [e for e in events if isinstance(e, TimerFired)]
        if timers and fired:
            summary.timer_late_s.append(fired[0].at - timers[0].wake_at)
        if run_id in summary.killed_at:
            after = [e.at for e in events if e.at > summary.killed_at[run_id]]
            if after:
                summary.takeover_s.append(min(after) - summary.killed_at[run_id])
    problems.extend(check_invocations(ext.history(), summary))
    pids: dict[tuple[str, str], set[int]] = {}
    for _endpoint, key, run_id, pid in ext.invocations():
        pids.setdefault((run_id, key), set()).add(pid)
    reinvoked = {run_id for (run_id, _key), found in pids.items() if len(found) > 1}
    summary.reinvoked = sum(1 for found in pids.values() if len(found) > 1)
    escalated = {run_id for run_id in run_ids if summary_status(store, run_id) == "escalated"}
    summary.unexplained = (reinvoked | escalated) - summary.orphaned
    # A graceful stop lets the call in progress end (grace_s is far longer than a call), so a
    # run only ever handed back, never held by a killed worker, has no outcome left unknown.
    problems.extend(
        f"{run_id}: only ever handed back by a SIGTERMed worker, yet "
        + ("escalated" if run_id in escalated else "a handler ran in two processes")
        for run_id in sorted((reinvoked | escalated) & summary.handed - set(summary.killed_at)))
    return problems


def summary_status(store: Store, run_id: str) -> str | None:
    info = store.get_run(run_id)
    return None if info is None else info.status.value


def store_check_cli(store_url: str) -> subprocess.CompletedProcess[str]:
    """``tether store check`` on the store, as a user would run it."""
    return subprocess.run([*TETHER, "store", "check", "--store", store_url], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)


def describe(problems: Sequence[str], limit: int = 25) -> str:
    shown = "\n".join(problems[:limit])
    more = f"\n… and {len(problems) - limit} more" if len(problems) > limit else ""
    return f"{len(problems)} problem(s):\n{shown}{more}"

