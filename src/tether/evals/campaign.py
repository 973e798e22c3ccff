"""Campaigns: scenarios × seeds × suites × harnesses, in parallel, streamed, resumable.

Each episode is an independent job ``(scenario file, suite, harness, seed)``. Jobs run in a
pool of worker processes (all cores by default); each finished episode's graded record is
appended to a JSONL file at once, so an interrupted campaign resumes where it stopped (jobs
already in the file are skipped) and memory stays flat however many episodes run: the
aggregate is built by reading the file back, one line at a time.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from tether.errors import TetherError
from tether.evals.grading import grade
from tether.evals.suites import SUITES, variant
from tether.sim.agent_ref import agent_spec_of
from tether.sim.episode import run_episode
from tether.sim.scenario import Scenario, load_scenario

__all__ = ["Job", "plan", "read_records", "run_campaign", "run_job"]


@dataclass(frozen=True, slots=True)
class Job:
    scenario: str
    suite: str
    harness: str
    seed: int
    #: The agent under test as a spec (``""``: the scenario's own ``agent:``).
    agent: str = ""
    #: Files defining harness variants (``harness`` may name one of theirs).
    harness_files: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """Identifies the episode *and what it was run with*: editing the scenario file, the
        agent's source or a harness file, or upgrading tether, makes a resumed campaign run it
        again instead of reusing it."""
        extra = "".join(f"|{_fingerprint(f)}" for f in self.harness_files)
        return f"{self.scenario}|{_fingerprint(self.scenario)}|{self.suite}|{self.harness}|" \
            f"{self.seed}|{self.agent}|{_agent_fingerprint(self.agent, self.scenario)}{extra}"


def _fingerprint(path: str) -> str:
    """Hash of the file's bytes and tether's version (cached while the file is unchanged)."""
    try:
        stat = os.stat(path)
    except OSError:
        return _digest(path, 0, -1)
    return _digest(path, stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=256)
def _digest(path: str, mtime_ns: int, size: int) -> str:
    from tether import __version__

    try:
        body = Path(path).read_bytes()
    except OSError:
        body = b""
    return hashlib.sha256(body + __version__.encode()).hexdigest()[:12]


def _agent_fingerprint(agent: str, scenario: str) -> str:
    """Hash of the source file of the agent factory the job runs (the scenario's own when
    ``agent`` is empty), so a campaign resumed after the agent changed runs it again."""
    spec = agent or _base(scenario).agent
    try:
        resolved = agent_spec_of(spec, Path(scenario).resolve().parent)
        where = resolved.rpartition(":")[0]
        if where.endswith(".py") or "/" in where:
            path = where
        else:
            module = sys.modules.get(where)
            found = getattr(module, "__file__", None) if module else None
            if found is None:
                origin = importlib.util.find_spec(where)
                found = origin.origin if origin is not None else None
            path = found or ""
    except (TetherError, ImportError, ValueError):
        return "-"
    return _fingerprint(path) if path else "-"


def plan(scenarios: Iterable[str | Path], suites: Iterable[str], harnesses: Iterable[str],
         seeds: int, first_seed: int = 0, *, agent: str = "",
         harness_files: Iterable[str | Path] = ()) -> list[Job]:
    """Every job of a campaign, in a fixed order."""
    files = tuple(str(Path(f).resolve()) for f in harness_files)
    return [Job(str(s), suite, h, seed, agent, files) for s in scenarios for suite in suites
            for h in harnesses for seed in range(first_seed, first_seed + seeds)]


def _base(path: str) -> Scenario:
    return _load(path, _fingerprint(path))


@lru_cache(maxsize=64)
def _load(path: str, fingerprint: str) -> Scenario:
    return load_scenario(path)


def scenario_of(job: Job) -> Scenario:
    """The scenario a job runs (the base under its suite, for the job's agent)."""
    return variant(_base(job.scenario), job.suite, job.seed, agent=job.agent or None) \
        if job.suite in SUITES else _base(job.scenario)


def run_job(job: Job) -> dict[str, Any]:
    """Run and grade one episode; the JSON record written to the campaign's file.

    Besides the grade, the record says which of the *suite's* faults fired (``suite_faults``,
    ``suite_fired``, ``reached``): an episode none of whose suite faults reached the agent is
    graded ``inconclusive`` (a violation stays a violation). A suite that cannot be applied to
    the scenario and agent at all gives an ``inconclusive`` record with its reason in
    ``not_applicable`` instead of stopping the campaign.
    """
    try:
        scenario = scenario_of(job)
    except TetherError as exc:
        if not _not_applicable(exc):
            raise
        return _not_applied_record(job, str(exc))
    result = run_episode(scenario, job.seed, job.harness, agent=job.agent or None,
                         harness_files=job.harness_files)
    base = _base(job.scenario)
    suite_faults, shared = _suite_faults(base, scenario) if job.suite in SUITES else ([], set())
    fired = {f.fault for f in result.firings}
    # A label a base fault also carries cannot tell which of the two fired: it proves nothing.
    suite_fired = [label for label in dict.fromkeys(suite_faults)
                   if label in fired and label not in shared]
    # An episode that left its recording (a replayed user or tool asked beyond it) says
    # nothing about the agent, whatever fired.
    reached = (job.suite not in SUITES or bool(suite_fired)) and not result.inconclusive
    graded = grade(scenario, result, reached=reached)
    return {
        "key": job.key, "scenario": base.name, "scenario_file": job.scenario,
        "suite": job.suite, "harness": job.harness, "seed": job.seed,
        "agent": result.agent, "harness_files": list(job.harness_files),
        "status": result.status, "ok": result.ok, **graded.as_data(),
        "faulted": bool(result.firings),
        "fired": sorted({f.kind for f in result.firings}),
        "faults": [f"{f.kind}@{f.target}" for f in scenario.fault_plan().faults],
        "suite_faults": suite_faults, "suite_fired": suite_fired, "reached": reached,
        "not_applicable": "", "inconclusive_reasons": list(result.inconclusive),
        "violations": [v.as_data() for v in result.verdicts if not v.holds],
        "journal_digest": result.journal_digest, "ledger_digest": result.ledger_digest,
    }


def _suite_faults(base: Scenario, variant: Scenario) -> tuple[list[str], set[str]]:
    """The labels of the faults the suite added to ``base`` (the variant's faults less the
    base's, matched by their whole spec), and the labels of the base's faults."""
    left = list(base.faults)
    added = []
    for fault in variant.faults:
        if fault in left:
            left.remove(fault)
        else:
            added.append(fault.build().label)
    return added, {f.build().label for f in base.faults}


def _not_applicable(exc: TetherError) -> bool:
    """Is ``exc`` a suite saying it has nothing to inject for this scenario and agent?"""
    return any(cls.__name__ == "SuiteNotApplicable" for cls in type(exc).__mro__)


def _not_applied_record(job: Job, reason: str) -> dict[str, Any]:
    """The record of a job whose suite could not be applied: nothing ran, nothing is known."""
    base = _base(job.scenario)
    return {
        "key": job.key, "scenario": base.name, "scenario_file": job.scenario,
        "suite": job.suite, "harness": job.harness, "seed": job.seed,
        "agent": job.agent or base.agent, "harness_files": list(job.harness_files),
        "status": "not_run", "ok": None, "verdict": "inconclusive", "task_success": False,
        "problems": [], "domain": "", "duplicates": 0, "metrics": {},
        "faulted": False, "fired": [], "faults": [],
        "suite_faults": [], "suite_fired": [], "reached": False, "not_applicable": reason,
        "violations": [], "journal_digest": "", "ledger_digest": "",
    }


def read_records(path: Path) -> Iterator[dict[str, Any]]:
    """The records of a campaign file; a torn last line (an interrupted write) is skipped."""
    if not path.exists():
        return
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except ValueError:
                continue


def _torn(path: Path) -> bool:
    """Does the file end in the middle of a line (an interrupted write)?"""
    if not path.stat().st_size:
        return False
    with path.open("rb") as raw:
        raw.seek(-1, os.SEEK_END)
        return raw.read(1) != b"\n"


def run_campaign(jobs: list[Job], out: Path, *, workers: int | None = None,
                 progress: Callable[[int, int], None] | None = None) -> int:
    """Run the jobs not yet in ``out`` (appending their records); returns how many ran."""
    done = {r["key"] for r in read_records(out)}
    todo = [j for j in jobs if j.key not in done]
    total, finished = len(jobs), len(jobs) - len(todo)
    if progress is not None:
        progress(finished, total)
    if not todo:
        return 0
    out.parent.mkdir(parents=True, exist_ok=True)
    workers = workers or os.cpu_count() or 1
    with out.open("a", encoding="utf-8") as sink:
        if _torn(out):
            sink.write("\n")  # isolate a torn last line (kept, skipped when read)
        if workers == 1:
            records: Iterable[dict[str, Any]] = map(run_job, todo)
            for record in records:
                sink.write(json.dumps(record, sort_keys=True) + "\n")
                sink.flush()
                finished += 1
                if progress is not None:
                    progress(finished, total)
        else:
            chunk = max(1, min(64, len(todo) // (workers * 8) or 1))
            with ProcessPoolExecutor(max_workers=workers) as pool:
                for record in pool.map(run_job, todo, chunksize=chunk):
                    sink.write(json.dumps(record, sort_keys=True) + "\n")
                    sink.flush()
                    finished += 1
                    if progress is not None:
                        progress(finished, total)
    return len(todo)
