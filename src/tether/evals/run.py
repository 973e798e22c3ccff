"""Running a whole campaign: plan → parallel episodes → aggregate → shrink → reports.

This is what ``tether demo`` and ``tether eval run`` do: the campaign's records stream to
``episodes.jsonl`` (resumable), the aggregate goes to ``results.json`` (see
:mod:`tether.evals.results`), the worst failures are shrunk and written as replayable scenario
files under ``repro/``, and ``report.html`` is a self-contained report.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tether.evals.aggregate import aggregate
from tether.evals.campaign import plan, plan_records, run_campaign, scenario_of
from tether.evals.html import write_html
from tether.evals.results import CampaignInfo, CampaignResults, FailureCase
from tether.evals.shrink import shrink, trace_of, write_reproduction
from tether.evals.suites import BUILTIN_SCENARIOS, SUITES
from tether.sim.episode import run_episode

__all__ = ["BUILTIN_SCENARIOS", "run_full_campaign"]

HARNESSES = ("naive", "default")


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
                      backend: str = "process", address: str | None = None) -> CampaignResults:
    """Run (or resume) a campaign into ``out`` and return its results. ``agent`` (a spec)
    replaces every scenario's own; ``harnesses`` may name variants defined in
    ``harness_files``; ``backend`` and ``address`` say where episodes run (see
    :func:`~tether.evals.campaign.run_campaign`)."""
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
                                         "scenario_file", "problems", "domain", "faults")}
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
            shrunk_faults=shrunk.faults, replay=command, trace=trace))
    results = results.model_copy(update={"failures": cases})
    (out / "results.json").write_text(json.dumps(results.model_dump(mode="json"), indent=2,
                                                 sort_keys=True) + "\n", encoding="utf-8")
    write_html(results, out / "report.html")
    return results
