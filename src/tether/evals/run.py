"""Running a whole campaign: plan → parallel episodes → aggregate → shrink → reports.

This is what ``tether demo`` and ``tether eval run`` do: the campaign's records stream to
``episodes.jsonl`` (resumable), the aggregate goes to ``results.json`` (see
:mod:`tether.evals.results`), the worst failures are shrunk and written as replayable scenario
files under ``repro/``, and ``report.html`` is a self-contained report.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from tether._version import __version__
from tether.clock import SystemClock
from tether.evals.aggregate import aggregate
from tether.evals.campaign import plan, plan_records, run_campaign, scenario_of
from tether.evals.html import ReportMeta, write_html
from tether.evals.results import BrokenInvariant, CampaignInfo, CampaignResults, FailureCase
from tether.evals.shrink import shrink, trace_of, write_reproduction
from tether.evals.suites import BUILTIN_SCENARIOS, SUITES
from tether.sim.episode import run_episode

__all__ = ["BUILTIN_SCENARIOS", "run_full_campaign"]

HARNESSES = ("naive", "default")

# How the grader writes an invariant it checked: kind(setting=value, ...), see
# tether.sim.invariants.check_invariants.
_KIND = re.compile(r"^(\w+)\(")
_EFFECT = re.compile(r"[(,] ?effect=([\w.\-]+)")


class WallClock(Protocol):
    """Where the report's date and duration come from (the real clock by default)."""

    def now(self) -> float:
        """Seconds since the Unix epoch."""
        ...


def _broken(violations: Sequence[dict[str, Any]]) -> list[BrokenInvariant]:
    """An episode record's violated invariants, each with its kind and the effect it is about."""
    broken = []
    for v in violations:
        label = str(v["invariant"])
        kind, effect = _KIND.match(label), _EFFECT.search(label)
        broken.append(BrokenInvariant(invariant=label, kind=kind.group(1) if kind else label,
                                      effect=effect.group(1) if effect else "",
                                      detail=str(v.get("detail", ""))))
    return broken


def _worst(records: Sequence[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """One failing episode per (suite, harness), violations first, then the rest."""
    rank = {"violation": 0, "unacceptable_process": 1, "task_failed": 2, "stopped": 3}
    picked: dict[tuple[str, str], dict[str, Any]] = {}
    for r in sorted((r for r in records if r["verdict"] in rank),
                    key=lambda r: (rank[r["verdict"]], r["suite"], r["harness"], r["seed"])):
        picked.setdefault((r["suite"], r["harness"]), r)
    return sorted(picked.values(), key=lambda r: (rank[r["verdict"]], r["suite"],
                                                  r["harness"]))[:limit]


def run_full_campaign(out: Path, *, scenarios: Sequence[Path] = BUILTIN_SCENARIOS,
                      suites: Sequence[str] = tuple(SUITES), harnesses: Sequence[str] = HARNESSES,
                      seeds: int = 40, workers: int | None = None, name: str = "campaign",
                      shrink_failures: int = 6, agent: str = "",
                      harness_files: Sequence[str | Path] = (),
                      progress: Callable[[int, int], None] | None = None,
                      backend: str = "process", address: str | None = None,
                      clock: WallClock | None = None) -> CampaignResults:
    """Run (or resume) a campaign into ``out`` and return its results. ``agent`` (a spec)
    replaces every scenario's own; ``harnesses`` may name variants defined in
    ``harness_files``; ``backend`` and ``address`` say where episodes run (see
    :func:`~tether.evals.campaign.run_campaign`). ``clock`` dates the report and times the
    campaign (the real clock unless given); the results themselves never depend on it."""
    wall = clock if clock is not None else SystemClock()
    started = wall.now()
    out.mkdir(parents=True, exist_ok=True)
    jobs = plan(scenarios, suites, harnesses, seeds, agent=agent, harness_files=harness_files)
    episodes = out / "episodes.jsonl"
    run_campaign(jobs, episodes, workers=workers, progress=progress, backend=backend,
                 address=address)
    info = CampaignInfo(name=name, scenarios=[p.stem for p in scenarios], suites=list(suites),
                        harnesses=list(harnesses), seeds=seeds, episodes=len(jobs))
    # In plan order, once per job: the results do not depend on the order episodes finished.
    results = aggregate(plan_records(jobs, episodes), info)
    failing = _worst([{k: r[k] for k in ("key", "verdict", "suite", "harness", "seed",
                                         "scenario_file", "problems", "domain", "faults",
                                         "violations")}
                      for r in plan_records(jobs, episodes) if r["verdict"] != "pass"],
                     shrink_failures)
    cases = []
    for record in failing:
        job = next(j for j in jobs if j.key == record["key"])
        scenario = scenario_of(job)
        shrunk = shrink(scenario, job.seed, job.harness, agent=job.agent or None,
                        harness_files=job.harness_files)
        _, command = write_reproduction(shrunk, out / "repro")
        trace = trace_of(run_episode(shrunk.scenario, job.seed, job.harness,
                                     agent=shrunk.agent or None,
                                     harness_files=job.harness_files))
        cases.append(FailureCase(
            scenario=scenario.name, suite=job.suite, harness=job.harness, seed=job.seed,
            verdict=record["verdict"], problems=list(record["problems"]),
            domain=record["domain"] or "harness", faults=list(record["faults"]),
            shrunk_faults=shrunk.faults, replay=command, trace=trace,
            broken=_broken(record.get("violations", ()))))
    results = results.model_copy(update={"failures": cases})
    (out / "results.json").write_text(json.dumps(results.model_dump(mode="json"), indent=2,
                                                 sort_keys=True) + "\n", encoding="utf-8")
    finished = wall.now()
    date = datetime.fromtimestamp(finished, UTC).isoformat(timespec="seconds")
    write_html(results, out / "report.html",
               ReportMeta(date=date.replace("+00:00", "Z"), version=__version__,
                          duration_s=max(0.0, finished - started)))
    return results
