"""Campaigns: scenarios × seeds × suites × harnesses, in parallel, streamed, resumable.

Each episode is an independent job ``(scenario file, suite, harness, seed)``. Jobs run in a
pool of worker processes (all cores by default) or as tasks on a Ray cluster; each finished
episode's graded record is appended to a JSONL file at once, so an interrupted campaign
resumes where it stopped (jobs already in the file are skipped) and memory stays flat however
many episodes run: the aggregate is built by reading the file back, one line at a time, in
the jobs' order whatever order they finished in.
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
from typing import Any, TextIO

from tether._version import __version__
from tether.errors import TetherError, UsageError
from tether.evals.grading import grade
from tether.evals.ray_backend import ray_unordered
from tether.evals.suites import SUITES, variant
from tether.sim.agent_ref import agent_spec_of, short_names
from tether.sim.episode import run_episode
from tether.sim.scenario import Scenario, load_scenario

__all__ = ["BACKENDS", "Job", "plan", "plan_records", "read_records", "run_campaign", "run_job"]


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
            f"{self.seed}|{self.agent}|{_agent_fingerprint(self.agent, self.scenario)}" \
            f"|{_referenced_fingerprint(self.scenario)}{extra}"


def _fingerprint(path: str) -> str:
    """Hash of the file's bytes and tether's version (cached while the file is unchanged)."""
    try:
        stat = os.stat(path)
    except OSError:
        return _digest(path, 0, -1)
    return _digest(path, stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=256)
def _digest(path: str, mtime_ns: int, size: int) -> str:
    try:
        body = Path(path).read_bytes()
    except OSError:
        body = b""
    return hashlib.sha256(body + __version__.encode()).hexdigest()[:12]


#: The most source files an agent's fingerprint hashes. A folder holding more is not an agent's
#: project but something larger (a home folder, a monorepo): walking it for every campaign would
#: cost more than it tells, so the fingerprint falls back to the factory's own file.
MAX_AGENT_SOURCES = 2_000
#: The most folder entries (of any kind) the walk looks at, for the same reason: a folder of
#: data files with few sources is not walked to the end either.
MAX_AGENT_ENTRIES = 50_000
#: Folders whose code is not the agent's own: installed packages, caches.
_SKIPPED = frozenset({"__pycache__", "site-packages", "dist-packages", "node_modules"})
#: Agent fingerprints as of the last :func:`plan` that named the agent: a campaign's keys
#: stay those of the code it was planned with, and one walk serves all of its jobs.
_AGENT_PRINTS: dict[tuple[str, str], str] = {}


def _agent_fingerprint(agent: str, scenario: str) -> str:
    """Hash of every source of the agent factory the job runs (the scenario's own when
    ``agent`` is empty): each ``.py`` file under the factory file's folder (a file spec) or
    under the folder of the top-level package of a module spec (``pkg.module:fn`` → ``pkg``),
    so a campaign resumed after any module of the agent changed — a helper the factory
    imports, not only the factory's file — runs it again."""
    found = _AGENT_PRINTS.get((agent, scenario))
    if found is None:
        found = _AGENT_PRINTS[(agent, scenario)] = _agent_sources_print(agent, scenario)
    return found


def _referenced_fingerprint(scenario: str) -> str:
    """Hash of what the scenario file refers to besides the agent — its policy file, the
    source of a scripted model or a model-played user — so that editing one of them makes a
    resumed campaign run the scenario again."""
    try:
        base = _base(scenario)
    except TetherError:
        return "-"
    folder = Path(scenario).resolve().parent
    parts: list[str] = []
    if isinstance(base.policy, str):
        policy = Path(base.policy).expanduser()
        parts.append(_fingerprint(str(policy if policy.is_absolute() else folder / policy)))
    specs = [base.model.get("script")] if isinstance(base.model, dict) else []
    specs.append(base.user.get("model") if isinstance(base.user, dict) else None)
    parts += [_agent_fingerprint(spec, scenario) for spec in specs if isinstance(spec, str)]
    return ",".join(parts) or "-"


def _agent_sources_print(agent: str, scenario: str) -> str:
    """The fingerprint itself (see :func:`_agent_fingerprint`); ``-`` when the agent cannot
    be found (the job then fails on its own, naming why)."""
    spec = agent or _base(scenario).agent
    try:
        resolved = agent_spec_of(spec, Path(scenario).resolve().parent)
        if ":" not in resolved:
            resolved = short_names().get(resolved, resolved)
        where = resolved.rpartition(":")[0]
        root: Path | None
        if where.endswith(".py") or "/" in where or "\\" in where:
            path, root = where, Path(where).parent
        else:
            path, root = _module_sources(where)
    except (TetherError, ImportError, ValueError):
        return "-"
    if not path:
        return "-"
    files = _sources(root) if root is not None else None
    if root is None or files is None:
        return _fingerprint(path)
    body = "".join(f"{f.relative_to(root).as_posix()}={_fingerprint(str(f))}\n" for f in files)
    return hashlib.sha256(body.encode()).hexdigest()[:12]


def _module_sources(module: str) -> tuple[str, Path | None]:
    """The file of ``module`` and the folder of its top-level package (``None`` when the top
    level is a single module among installed ones)."""
    loaded = sys.modules.get(module)
    path = getattr(loaded, "__file__", None) if loaded else None
    if path is None:
        found = importlib.util.find_spec(module)
        path = found.origin if found is not None else None
    top = importlib.util.find_spec(module.partition(".")[0])
    if top is not None and top.submodule_search_locations:
        return path or "", Path(next(iter(top.submodule_search_locations)))
    # A top-level module: the folder it sits in is its project, unless that is where
    # packages are installed.
    folder = Path(path).parent if path else None
    return path or "", None if folder is None or folder.name in _SKIPPED else folder


def _sources(root: Path) -> list[Path] | None:
    """Every ``.py`` file under ``root``, sorted, skipping hidden folders, caches, installed
    packages and virtualenvs; ``None`` beyond :data:`MAX_AGENT_SOURCES` files or
    :data:`MAX_AGENT_ENTRIES` entries."""
    found: list[Path] = []
    stack = [root]
    looked = 0
    while stack:
        folder = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            continue
        looked += len(entries)
        if looked > MAX_AGENT_ENTRIES:
            return None
        if folder != root and any(e.name == "pyvenv.cfg" for e in entries):
            continue  # a virtualenv: installed code, not the agent's
        for entry in entries:
            if entry.name.startswith(".") or entry.name in _SKIPPED:
                continue
            if entry.is_dir(follow_symlinks=False):
                stack.append(Path(entry.path))
            elif entry.name.endswith(".py") and entry.is_file():
                found.append(Path(entry.path))
                if len(found) > MAX_AGENT_SOURCES:
                    return None
    return sorted(found)


def plan(scenarios: Iterable[str | Path], suites: Iterable[str], harnesses: Iterable[str],
         seeds: int, first_seed: int = 0, *, agent: str = "",
         harness_files: Iterable[str | Path] = ()) -> list[Job]:
    """Every job of a campaign, in a fixed order: scenario, then seed, then suite, then
    harness. The jobs of one (scenario, seed) are consecutive, so a worker given a chunk of
    them runs that seed's fault-free twin (the suites' probe) once for all of them."""
    files = tuple(str(Path(f).resolve()) for f in harness_files)
    paths, suites, harnesses = [str(s) for s in scenarios], list(suites), list(harnesses)
    for path in paths:
        # The agent's code as it is now: a campaign planned after an edit re-runs its jobs.
        _AGENT_PRINTS.pop((agent, path), None)
    return [Job(path, suite, h, seed, agent, files) for path in paths
            for seed in range(first_seed, first_seed + seeds) for suite in suites
            for h in harnesses]


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


def plan_records(jobs: Iterable[Job], path: Path) -> Iterator[dict[str, Any]]:
    """The record of each job that has one in the campaign file, in the jobs' order, once
    per job (the first written), however the file is ordered: what the campaign's results
    are built from, so they do not depend on which backend ran it, in what order episodes
    finished, or where it was interrupted and resumed.

    The file is read twice, the first time for where each record starts, so memory holds
    an offset per job, not the records.
    """
    index: dict[str, int] = {}
    for job in jobs:
        index.setdefault(job.key, len(index))
    if not index or not path.exists():
        return
    starts: dict[int, int] = {}
    with path.open("rb") as lines:
        offset = 0
        for line in lines:
            found = _key_of(line)
            if found is not None and found in index:
                starts.setdefault(index[found], offset)
            offset += len(line)
        for _, start in sorted(starts.items()):
            lines.seek(start)
            yield json.loads(lines.readline())


def _key_of(line: bytes) -> str | None:
    """The key of a record line; ``None`` for a blank, torn or foreign line."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    key = record.get("key") if isinstance(record, dict) else None
    return key if isinstance(key, str) else None


def _torn(path: Path) -> bool:
    """Does the file end in the middle of a line (an interrupted write)?"""
    if not path.stat().st_size:
        return False
    with path.open("rb") as raw:
        raw.seek(-1, os.SEEK_END)
        return raw.read(1) != b"\n"


#: Where a campaign's episodes run: a pool of processes on this machine, or Ray tasks.
BACKENDS = ("process", "ray")


def run_campaign(jobs: list[Job], out: Path, *, workers: int | None = None,
                 progress: Callable[[int, int], None] | None = None,
                 backend: str = "process", address: str | None = None) -> int:
    """Run the jobs not yet in ``out`` (appending their records); returns how many ran.

    ``backend`` is ``"process"`` (``workers`` processes, all cores by default) or ``"ray"``
    (Ray tasks on the cluster at ``address``, or on a local Ray of ``workers`` CPUs; see
    :mod:`tether.evals.ray_backend`). Either way this process alone writes ``out``, one
    record per job key however often a job ran, and only under the key the job was planned
    under: a record that ran with other inputs than planned (a file edited meanwhile, a node
    holding other copies) stops the campaign instead of being counted. ``out`` is created
    with the first record, so a backend that cannot start leaves nothing behind.
    """
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    if address is not None and backend != "ray":
        raise UsageError("an address is for --backend ray (a Ray cluster to connect to)")
    done = {r["key"] for r in read_records(out)}
    planned = {job.key: job for job in jobs}  # one job per key, in plan order
    todo = [(key, job) for key, job in planned.items() if key not in done]
    total, finished = len(planned), len(planned) - len(todo)
    if progress is not None:
        progress(finished, total)
    if not todo:
        return 0
    sink: TextIO | None = None
    try:
        # One task per job key, one result per task however often it ran (a task retried
        # after its node was lost): each job's record is written once.
        for key, job, record in _results(todo, workers, backend, address):
            if record.get("key") != key:
                raise UsageError(
                    f"episode {job.scenario} seed {job.seed} ({job.suite}, {job.harness}) "
                    "ran with other inputs than the campaign planned: the scenario, the "
                    "agent's sources, a harness file or tether changed while it ran, or a "
                    "node (or a worker process kept from an earlier campaign on the same "
                    "Ray connection) holds other copies of them than this process. Make the "
                    "same files available at the same paths everywhere and run it again "
                    "(the episodes finished so far are kept).")
            sink = sink or _append_to(out)
            sink.write(json.dumps(record, sort_keys=True) + "\n")
            sink.flush()
            finished += 1
            if progress is not None:
                progress(finished, total)
    finally:
        if sink is not None:
            sink.close()
    return len(todo)


def _append_to(out: Path) -> TextIO:
    """``out`` opened to append records, a torn last line (an interrupted write) isolated."""
    out.parent.mkdir(parents=True, exist_ok=True)
    sink = out.open("a", encoding="utf-8")
    if _torn(out):
        sink.write("\n")  # the torn line is kept, and skipped when read
    return sink


def _results(todo: list[tuple[str, Job]], workers: int | None, backend: str,
             address: str | None) -> Iterator[tuple[str, Job, dict[str, Any]]]:
    """Each job's record with the job, as the backend finishes them."""
    if backend == "ray":
        jobs = [job for _, job in todo]
        for index, record in ray_unordered(run_job, jobs, workers=workers, address=address):
            yield todo[index][0], todo[index][1], record
        return
    workers = workers or os.cpu_count() or 1
    if workers == 1:
        for key, job in todo:
            yield key, job, run_job(job)
        return
    chunk = max(1, min(64, len(todo) // (workers * 8) or 1))
    with ProcessPoolExecutor(max_workers=workers) as pool:
        records = pool.map(run_job, [job for _, job in todo], chunksize=chunk)
        for (key, job), record in zip(todo, records, strict=True):
            yield key, job, record
