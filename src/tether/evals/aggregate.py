"""From a campaign's records to its results: counts, rates, intervals, pass^k, domains.

An ``inconclusive`` episode (its suite's faults never reached the agent, or the suite could
not be applied) is counted apart and left out of every rate — pass, duplicate-effect, recovery,
and the per-fault table: a fault that never fired is not a pass, and not a failure either.
A cell with no conclusive episode has no pass rate at all. (Mean metrics — steps, calls, cost —
are over every episode that ran: they describe the work done, not a judgement.)
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tether.evals.results import CampaignInfo, CampaignResults, Cell, FaultStats
from tether.evals.stats import pass_hat_k, wilson_interval

__all__ = ["K_VALUES", "aggregate"]

K_VALUES = (1, 2, 4, 8)


@dataclass
class _Tally:
    episodes: int = 0
    #: Episodes that ran (a suite that could not be applied runs nothing).
    ran: int = 0
    inconclusive: int = 0
    not_applied: int = 0
    passed: int = 0
    violations: int = 0
    task_success: int = 0
    unacceptable: int = 0
    stopped: int = 0
    duplicates: int = 0
    duplicate_episodes: int = 0
    faulted: int = 0
    recovered: int = 0
    domains: Counter[str] = field(default_factory=Counter)
    verdicts: Counter[str] = field(default_factory=Counter)
    sums: Counter[str] = field(default_factory=Counter)
    per_task: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))

    def add(self, r: dict[str, Any]) -> None:
        self.episodes += 1
        self.verdicts[r["verdict"]] += 1
        if r.get("not_applicable"):
            self.not_applied += 1
        else:
            self.ran += 1
            for name, value in r["metrics"].items():
                self.sums[name] += value
        if r["verdict"] == "inconclusive":
            self.inconclusive += 1
            return
        self.duplicates += int(r["duplicates"])
        self.duplicate_episodes += int(r["duplicates"]) > 0
        good = r["verdict"] == "pass"
        self.passed += good
        self.violations += r["verdict"] == "violation"
        self.task_success += bool(r["task_success"])
        self.unacceptable += r["verdict"] == "unacceptable_process"
        self.stopped += r["verdict"] == "stopped"
        if r["faulted"]:
            self.faulted += 1
            self.recovered += bool(r["ok"] and r["task_success"])
        if r["domain"]:
            self.domains[r["domain"]] += 1
        task = self.per_task[r["scenario"]]
        task[0] += 1
        task[1] += good

    def cell(self, harness: str, suite: str) -> Cell:
        n, ran = self.episodes - self.inconclusive, self.ran
        tasks = {name: (t[0], t[1]) for name, t in sorted(self.per_task.items())}
        pass_k = {str(k): v for k in K_VALUES if (v := pass_hat_k(tasks, k)) is not None}
        mean = {name: round(self.sums[name] / ran, 6) if ran else 0.0
                for name in ("steps", "model_calls", "tool_calls", "retries", "virtual_s",
                             "cost_usd")}
        low, high = wilson_interval(self.passed, n)
        return Cell(
            harness=harness, suite=suite, episodes=self.episodes,
            inconclusive=self.inconclusive, not_applied=self.not_applied, passed=self.passed,
            violations=self.violations, task_success=self.task_success,
            unacceptable_process=self.unacceptable, stopped=self.stopped,
            pass_rate=self.passed / n if n else None,
            interval=(round(low, 6), round(high, 6)) if n else None, pass_k=pass_k,
            duplicate_effects=self.duplicates,
            duplicate_rate=self.duplicate_episodes / n if n else 0.0,
            recovery_rate=self.recovered / self.faulted if self.faulted else None,
            domains=dict(sorted(self.domains.items())),
            verdicts=dict(sorted(self.verdicts.items())), mean_steps=mean["steps"],
            mean_model_calls=mean["model_calls"], mean_tool_calls=mean["tool_calls"],
            mean_retries=mean["retries"], mean_virtual_s=mean["virtual_s"],
            mean_cost_usd=mean["cost_usd"])


def aggregate(records: Iterable[dict[str, Any]], info: CampaignInfo) -> CampaignResults:
    """Fold records (streamed) into the campaign's cells; failures are added separately."""
    tallies: dict[tuple[str, str], _Tally] = defaultdict(_Tally)
    faults: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    # A suite is applicable per seed (the agent may write at some seeds only): it was not
    # applied to a scenario only when none of that scenario's episodes of it could run.
    reasons: dict[tuple[str, str], list[str]] = defaultdict(list)
    applied: set[tuple[str, str]] = set()
    for record in records:
        tallies[(record["harness"], record["suite"])].add(record)
        where = (record["suite"], record["scenario"])
        reason = record.get("not_applicable")
        if not reason:
            applied.add(where)
        elif reason not in reasons[where]:
            reasons[where].append(reason)
        # The per-fault table judges how a harness fared: conclusive episodes only.
        fired = () if record["verdict"] == "inconclusive" else record.get("fired", ())
        for kind in fired:
            tally = faults[(record["harness"], kind)]
            tally[0] += 1
            tally[1] += int(record["duplicates"]) > 0
            tally[2] += record["verdict"] == "violation"
            tally[3] += bool(record["ok"] and record["task_success"])
    order = {h: i for i, h in enumerate(info.harnesses)}
    suites = {s: i for i, s in enumerate(info.suites)}
    cells = [t.cell(h, s) for (h, s), t in sorted(
        tallies.items(), key=lambda item: (suites.get(item[0][1], 99), order.get(item[0][0], 99)))]
    by_fault = [FaultStats(harness=h, fault=kind, episodes=n, duplicate_rate=d / n,
                           violation_rate=v / n, recovery_rate=r / n)
                for (h, kind), (n, d, v, r) in sorted(
                    faults.items(), key=lambda item: (item[0][1], order.get(item[0][0], 99)))]
    not_applied: dict[str, list[str]] = defaultdict(list)
    for (suite, scenario), found in sorted(reasons.items()):
        if (suite, scenario) not in applied:
            not_applied[suite] += [r for r in found if r not in not_applied[suite]]
    return CampaignResults(campaign=info, cells=cells, by_fault=by_fault,
                           not_applied={suite: "; ".join(reasons)
                                        for suite, reasons in sorted(not_applied.items())})
