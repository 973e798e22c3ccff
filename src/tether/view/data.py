"""What ``tether view`` shows, read from a store and a campaign folder into plain JSON-ready dicts.

Nothing here writes: the viewer only reads the store (approvals are decided with the CLI, whose
exact command each pending approval carries) and the campaign folder. A run's timeline is
:func:`~tether.tracing.timeline.build_trace`, the same data ``tether trace --json`` prints, so
the page and the terminal never disagree about what a run did.

Strings are returned as they are stored: escaping is the page's job (it only ever sets text,
never markup), except for the campaign's charts, which :mod:`tether.evals.html` renders as
escaped SVG on the server.

>>> from tether import MemoryStore
>>> runs_page(MemoryStore())["total"]
0
"""

from __future__ import annotations

import json
import shlex
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tether.errors import UnknownExecution, UsageError
from tether.evals.results import CampaignResults, Cell
from tether.events import Event, RunStatus
from tether.memory import MEMORY_WORKFLOW
from tether.policy.approvals import Approvals, PendingApproval
from tether.sessions.state import SESSION_WORKFLOW
from tether.store.base import RunInfo, Store
from tether.tracing.render import totals_line, trace_to_json
from tether.tracing.timeline import build_trace

__all__ = ["PAGE_SIZE", "Campaign", "approvals_data", "campaign_data", "changed_runs",
           "decide_command", "index_marks", "load_campaign", "run_detail", "runs_page"]

#: Runs per page of the runs list (the page may ask for fewer, up to :data:`_MAX_PAGE`).
PAGE_SIZE = 50
_MAX_PAGE = 500
#: ``Store.list_runs`` is oldest first with a limit and no offset: the viewer reads the whole
#: index (a row per run, no journal) and sorts and pages it itself.
_ALL = 10_000_000
#: Journals of tether.memory and tether.session are stores' plumbing, not runs people started.
_HIDDEN = (MEMORY_WORKFLOW, SESSION_WORKFLOW)
#: How much of one journal event's data the page's journal list shows.
_SUMMARY_CHARS = 600


# -- runs ------------------------------------------------------------------------------------


def runs_page(store: Store, *, status: str | None = None, workflow: str | None = None,
              queue: str | None = None, offset: int = 0, limit: int = PAGE_SIZE) -> dict[str, Any]:
    """One page of runs, newest first, filtered by status, workflow and queue.

    Also returns what the filters can choose from: the count of runs per status, and the
    workflows and queues present (all over the unfiltered index)."""
    wanted = _status(status)
    if offset < 0 or not 1 <= limit <= _MAX_PAGE:
        raise UsageError(f"offset must be ≥ 0 and limit 1–{_MAX_PAGE}; found offset={offset}, "
                         f"limit={limit}")
    every = [r for r in store.list_runs(limit=_ALL) if r.workflow not in _HIDDEN]
    chosen = [r for r in every
              if (wanted is None or r.status is wanted)
              and (not workflow or r.workflow == workflow) and (not queue or r.queue == queue)]
    chosen.sort(key=lambda r: (r.created_at, r.run_id), reverse=True)
    counts = Counter(r.status.value for r in every)
    return {
        "runs": [run_row(r) for r in chosen[offset:offset + limit]],
        "total": len(chosen), "offset": offset, "limit": limit,
        "counts": {s.value: counts.get(s.value, 0) for s in RunStatus},
        "workflows": sorted({r.workflow for r in every}),
        "queues": sorted({r.queue for r in every}),
    }


def run_row(info: RunInfo) -> dict[str, Any]:
    """A run's index row as the runs list shows it."""
    return {"run_id": info.run_id, "workflow": info.workflow, "status": info.status.value,
            "queue": info.queue, "events": info.last_seq, "created_at": info.created_at,
            "updated_at": info.updated_at,
            "duration_s": round(info.updated_at - info.created_at, 6), "owner": info.owner,
            "lease_expires_at": info.lease_expires_at, "wake_at": info.wake_at}


def run_detail(store: Store, run_id: str, store_url: str) -> dict[str, Any]:
    """A run: its index row, its trace (``tether trace --json``'s shape), its input and result,
    its journal event by event, and the approvals it waits for."""
    info = store.get_run(run_id)
    events = store.read(run_id) if info is not None else []
    if info is None or not events:
        raise UnknownExecution(f"no run {run_id!r} in the store")
    trace = build_trace(run_id, events)
    started = trace.started.model_dump(mode="json") if trace.started is not None else {}
    finished = trace.finished.model_dump(mode="json") if trace.finished is not None else {}
    origin = events[0].at
    return {
        "run": run_row(info),
        "trace": trace_to_json(trace),
        "totals_line": totals_line(trace.totals),
        "input": started.get("input"),
        "result": finished.get("result"),
        "journal": [_journal_entry(e, origin) for e in events],
        "approvals": [_approval(p, store_url) for p in Approvals(store).pending(run_id)],
    }


def _journal_entry(event: Event, origin: float) -> dict[str, Any]:
    data = event.model_dump(mode="json", exclude={"seq", "at", "v", "kind", "pos"})
    summary = json.dumps(data, ensure_ascii=False, separators=(", ", ": "))
    if len(summary) > _SUMMARY_CHARS:
        summary = summary[:_SUMMARY_CHARS - 1] + "…"
    return {"seq": event.seq, "offset_s": round(event.at - origin, 6), "kind": event.kind,
            "pos": getattr(event, "pos", None), "summary": summary}


def _status(status: str | None) -> RunStatus | None:
    if not status:
        return None
    try:
        return RunStatus(status)
    except ValueError:
        choices = ", ".join(s.value for s in RunStatus)
        raise UsageError(f"status must be one of {choices}; found {status!r}") from None


# -- approvals -------------------------------------------------------------------------------


def approvals_data(store: Store, store_url: str) -> list[dict[str, Any]]:
    """Every call waiting for a decision, oldest first, with the commands that decide it."""
    return [_approval(p, store_url) for p in Approvals(store).pending()]


def _approval(pending: PendingApproval, store_url: str) -> dict[str, Any]:
    # Decided with the CLI rather than from the page: the page has no login to say who
    # decides, and a loopback page that writes decisions could be driven by any other page
    # the same browser opens. `tether approve` journals --by (default $USER) as the decider.
    return {**pending.as_data(), "approve": decide_command("approve", pending, store_url),
            "deny": decide_command("deny", pending, store_url)}


def decide_command(verb: str, pending: PendingApproval, store_url: str) -> str:
    """The shell command that approves or denies ``pending`` (quoted for a POSIX shell)."""
    words = ["tether", verb, pending.run_id, "--store", store_url, "--step", str(pending.step)]
    if verb == "approve" and pending.role:
        words += ["--role", pending.role]
    return shlex.join(words)


# -- live updates ----------------------------------------------------------------------------


def index_marks(store: Store) -> dict[str, tuple[int, str]]:
    """Each run's last seq and status: what changed between two reads is what to refresh."""
    return {r.run_id: (r.last_seq, r.status.value) for r in store.list_runs(limit=_ALL)
            if r.workflow not in _HIDDEN}


def changed_runs(before: dict[str, tuple[int, str]],
                 after: dict[str, tuple[int, str]]) -> list[str]:
    """The runs that are new, gone or moved on between two :func:`index_marks`."""
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


# -- campaigns -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Campaign:
    """A campaign folder: its results and, when present, the report written beside them."""

    folder: Path
    results: CampaignResults
    report: Path | None


def load_campaign(folder: Path) -> Campaign:
    """Read the campaign ``tether eval run --out`` or ``tether demo --out`` wrote to ``folder``.

    :class:`UsageError` names the folder and what was expected when it is not one."""
    if not folder.is_dir():
        what = "a file" if folder.exists() else "missing"
        raise UsageError(f"campaign folder {folder}: expected a folder written by tether eval "
                         f"run --out or tether demo --out; found {what}")
    path = folder / "results.json"
    if not path.is_file():
        raise UsageError(f"{folder} is not a campaign folder: expected results.json in it "
                         "(written by tether eval run --out or tether demo --out); found none")
    try:
        results = CampaignResults.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise UsageError(f"{path}: not a campaign's results (at {where}: {first['msg']}; "
                         f"{exc.error_count()} problem(s))") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot be read ({exc.strerror})") from None
    report = folder / "report.html"
    return Campaign(folder=folder, results=results, report=report if report.is_file() else None)


def campaign_data(campaign: Campaign) -> dict[str, Any]:
    """The campaign's summary table as data, and its headline and charts as the report draws
    them (escaped HTML from :mod:`tether.evals.html`)."""
    from tether.evals.html import domain_charts, headline, pass_rate_charts

    results = campaign.results
    info = results.campaign
    return {
        "name": info.name, "folder": str(campaign.folder),
        "scenarios": list(info.scenarios), "suites": list(info.suites),
        "harnesses": list(info.harnesses), "seeds": info.seeds, "episodes": info.episodes,
        "cells": [_cell(c) for c in results.cells],
        "failures": len(results.failures),
        "not_applied": dict(results.not_applied),
        "has_report": campaign.report is not None,
        "headline_html": headline(results),
        "charts_html": pass_rate_charts(results) + domain_charts(results),
    }


def _cell(cell: Cell) -> dict[str, Any]:
    return {"harness": cell.harness, "suite": cell.suite, "episodes": cell.episodes,
            "conclusive": cell.conclusive, "passed": cell.passed, "pass_rate": cell.pass_rate,
            "interval": list(cell.interval) if cell.interval is not None else None,
            "violations": cell.violations, "duplicate_effects": cell.duplicate_effects,
            "recovery_rate": cell.recovery_rate, "mean_cost_usd": cell.mean_cost_usd}
