"""Campaigns: scenarios × seeds × suites × harnesses, in parallel, streamed, resumable.

Each episode is an independent job ``(scenario file, suite, harness, seed)``. Jobs run in a
pool of worker processes (all cores by default); each finished episode's graded record is
appended to a JSONL file at once, so an interrupted campaign resumes where it stopped (jobs
already in the file are skipped) and memory stays flat however many episodes run: the
aggregate is built by reading the file back, one line at a time.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from tether.evals.grading import grade
from tether.evals.suites import SUITES, variant
from tether.sim.episode import run_episode
from tether.sim.scenario import Scenario, load_scenario

__all__ = ["Job", "plan", "read_records", "run_campaign", "run_job"]


@dataclass(frozen=True, slots=True)
class Job:
    scenario: str
    suite: str
    harness: str
    seed: int

    @property
    def key(self) -> str:
        """Identifies the episode *and what it was run with*: editing the scenario file or
        upgrading tether makes a resumed campaign run it again instead of reusing it."""
        return f"{self.scenario}|{_fingerprint(self.scenario)}|{self.suite}|{self.harness}|" \
            f"{self.seed}"


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


def plan(scenarios: Iterable[str | Path], suites: Iterable[str], harnesses: Iterable[str],
         seeds: int, first_seed: int = 0) -> list[Job]:
    """Every job of a campaign, in a fixed order."""
    return [Job(str(s), suite, h, seed) for s in scenarios for suite in suites
            for h in harnesses for seed in range(first_seed, first_seed + seeds)]


def _base(path: str) -> Scenario:
    return _load(path, _fingerprint(path))


@lru_cache(maxsize=64)
def _load(path: str, fingerprint: str) -> Scenario:
    return load_scenario(path)


def scenario_of(job: Job) -> Scenario:
    """The scenario a job runs (the base under its suite)."""
    return variant(_base(job.scenario), job.suite, job.seed) if job.suite in SUITES \
        else _base(job.scenario)


def run_job(job: Job) -> dict[str, Any]:
    """Run and grade one episode; the JSON record written to the campaign's file."""
    scenario = scenario_of(job)
    result = run_episode(scenario, job.seed, job.harness)
    graded = grade(scenario, result)
    return {
        "key": job.key, "scenario": _base(job.scenario).name, "scenario_file": job.scenario,
        "suite": job.suite, "harness": job.harness, "seed": job.seed,
        "status": result.status, "ok": result.ok, **graded.as_data(),
        "faulted": bool(result.firings),
        "fired": sorted({f.kind for f in result.firings}),
        "faults": [f"{f.kind}@{f.target}" for f in scenario.fault_plan().faults],
        "violations": [v.as_data() for v in result.verdicts if not v.holds],
        "journal_digest": result.journal_digest, "ledger_digest": result.ledger_digest,
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
