"""Worker processes killed at random and restarted while they work through queued runs.

:class:`Pool` runs ``tether worker`` processes (one per slot) on one store; :func:`run_chaos`
enqueues the runs, SIGKILLs a random worker every few hundred milliseconds with a seeded
``random.Random`` and restarts it (under its old name or a new one), until every run has
finished; :func:`tests.chaos.checks.verify` then checks the journals and the external
system's logs.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tether import Runtime, SystemClock
from tether.store.base import Store

from .worker_app import WF, order_ids

ROOT = Path(__file__).resolve().parents[2]
#: The ``tether`` command users run (its console script; the same module without one).
_SCRIPT = Path(sys.executable).with_name("tether")
TETHER = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "tether.cli"]
#: Runs are spread over two queues, so the workers' per-queue limits and fairness take part.
QUEUES = ("default", "bulk")
#: The killer's seed: ``TETHER_CHAOS_SEED`` (printed by every test). Its choices — the pause
#: before each stop, which of the workers that are up, SIGKILL or SIGTERM, the same name or a
#: new one — come from it; when workers come up still varies with the machine's load.
DEFAULT_SEED = 14


def chaos_seed() -> int:
    """The killer's seed, from ``TETHER_CHAOS_SEED`` when set."""
    return int(os.environ.get("TETHER_CHAOS_SEED", DEFAULT_SEED))


@dataclass
class Settings:
    """How a chaos test is sized and timed (real seconds)."""

    workers: int
    runs: int
    concurrency: int
    lease_ttl_s: float
    kill_every_s: tuple[float, float]
    #: How long the killer may go on; then the workers are left alone to finish (the
    #: faults-off phase), which must converge within ``settle_s``.
    chaos_s: float
    settle_s: float
    timer_s: float = 1.5
    #: The share of restarts that are graceful (SIGTERM) rather than SIGKILL.
    term_share: float = 0.25
    latency_s: float = 0.01
    poll_s: float = 0.2
    grace_s: float = 5.0


@dataclass
class Summary:
    """What happened, for the printed summary and the non-vacuity checks."""

    seed: int
    runs: int = 0
    kills: int = 0
    terms: int = 0
    bad_exits: list[str] = field(default_factory=list)
    same_name_restarts: int = 0
    new_name_restarts: int = 0
    orphaned: set[str] = field(default_factory=set)
    #: Runs a SIGTERMed worker held (it handed them back).
    handed: set[str] = field(default_factory=set)
    #: Runs a SIGKILLed worker held, and when it was killed (time.time()).
    killed_at: dict[str, float] = field(default_factory=dict)
    #: Seconds from a kill to the next event of each run the killed worker held.
    takeover_s: list[float] = field(default_factory=list)
    #: Seconds from each parked timer's due time to its timer_fired.
    timer_late_s: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    reinvoked: int = 0
    #: Runs that escalated or re-invoked a handler without ever being owned by a killed
    #: worker (their lease was lost some other way: a stalled worker, a slow heartbeat).
    unexplained: set[str] = field(default_factory=set)
    max_idempotent_invocations: int = 0
    lookups: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    #: For each worker that was up when `tether workers list` ran: whether it showed alive.
    listed_alive: list[bool] = field(default_factory=list)
    converged_under_chaos: bool = False
    wall_s: float = 0.0

    def line(self) -> str:
        facts = {
            "seed (TETHER_CHAOS_SEED)": self.seed,
            "runs": self.runs,
            "SIGKILLs": self.kills,
            "SIGTERM restarts": self.terms,
            "restarts under the same name / a new name":
                f"{self.same_name_restarts} / {self.new_name_restarts}",
            "runs a stopped worker held (taken over)": len(self.orphaned),
            "intent keys whose handler ran in 2+ processes": self.reinvoked,
            "runs escalated or re-invoked but never held by a stopped worker":
                sorted(self.unexplained),
            "statuses": dict(sorted(self.statuses.items())),
            "most invocations of one idempotent key": self.max_idempotent_invocations,
            "label lookups": dict(sorted(self.lookups.items())),
            "kill to the run's next event, p50 / max": _p50_max(self.takeover_s),
            "parked timer due to fired, p50 / max": _p50_max(self.timer_late_s),
            "workers' outcomes": dict(sorted(self.outcomes.items())),
            "up workers listed alive by `tether workers list`":
                f"{sum(self.listed_alive)} of {len(self.listed_alive)}",
            "every run finished while workers were being killed": self.converged_under_chaos,
            "wall time": f"{self.wall_s:.1f} s",
        }
        return "chaos summary: " + "; ".join(f"{k}: {v}" for k, v in facts.items())


def _p50_max(values: Sequence[float]) -> str:
    if not values:
        return "n/a"
    ordered = sorted(values)
    return f"{ordered[len(ordered) // 2]:.2f} s / {ordered[-1]:.2f} s"


class Pool:
    """``tether worker`` processes, one per slot, on one store; logs under ``folder``."""

    def __init__(self, folder: Path, store_url: str, external_url: str,
                 settings: Settings) -> None:
        self.folder = folder
        self.store_url = store_url
        self.settings = settings
        self.env = {**os.environ, "TETHER_CHAOS_EXTERNAL": external_url,
                    "TETHER_CHAOS_TIMER_S": str(settings.timer_s),
                    "TETHER_CHAOS_LATENCY_S": str(settings.latency_s),
                    "PYTHONPATH": os.pathsep.join(
                        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * settings.workers
        self.names = [f"w{slot}" for slot in range(settings.workers)]
        self._generation = Counter[int]()

    def command(self, name: str) -> list[str]:
        s = self.settings
        queues = [arg for queue in QUEUES
                  for arg in ("--queue", f"{queue}={max(1, s.concurrency // len(QUEUES))}")]
        return [*TETHER, "worker", "--store", self.store_url,
                "--workflow", "tests.chaos.worker_app:WF", *queues,
                "--concurrency", str(s.concurrency), "--name", name,
                "--lease-ttl-s", str(s.lease_ttl_s), "--poll-s", str(s.poll_s),
                "--grace-s", str(s.grace_s), "--park-timers-after-s", "0.5", "--json"]

    def spawn(self, slot: int, name: str) -> None:
        self._generation[slot] += 1
        log = self.folder / f"{name}.{slot}.{self._generation[slot]}.log"
        with open(log, "wb") as out:
            self.procs[slot] = subprocess.Popen(self.command(name), cwd=ROOT, env=self.env,
                                                stdout=out, stderr=subprocess.STDOUT)
        self.names[slot] = name

    def start(self) -> None:
        for slot in range(self.settings.workers):
            self.spawn(slot, self.names[slot])

    def kill(self, slot: int) -> None:
        proc = self.procs[slot]
        if proc is not None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()

    def died(self) -> list[str]:
        """Workers that exited on their own (a crash, not a kill): their log tails."""
        return [f"{self.names[slot]} exited {proc.returncode}:\n{self.tail(slot)}"
                for slot, proc in enumerate(self.procs)
                if proc is not None and proc.poll() is not None]

    def tail(self, slot: int, lines: int = 30) -> str:
        log = self.folder / f"{self.names[slot]}.{slot}.{self._generation[slot]}.log"
        try:
            return "".join(log.read_text(errors="replace").splitlines(True)[-lines:])
        except OSError:
            return "(no log)"

    def reports(self) -> tuple[Counter[str], list[str]]:
        """What every worker process printed: its runs' outcomes (``--json`` lines) counted,
        and the lines that are neither an outcome nor the worker's start and stop notes (store
        errors, tracebacks)."""
        outcomes: Counter[str] = Counter()
        other: list[str] = []
        for log in sorted(self.folder.glob("*.log")):
            for line in log.read_text(errors="replace").splitlines():
                if line.startswith("{"):
                    report = json.loads(line)
                    outcomes[report["outcome"]] += 1
                    if report["outcome"] in ("error", "unknown workflow"):
                        other.append(f"{log.name}: {line}")
                elif line.strip() and not line.startswith("worker "):
                    other.append(f"{log.name}: {line}")
        return outcomes, other

    def wait_registered(self, store: Store, timeout_s: float = 30.0) -> None:
        """Wait until every worker process has beaten the registry: a worker signalled before
        it installs its handlers (still importing) dies of the signal, with nothing to hand
        back, which is not the graceful stop the test checks."""
        deadline = time.monotonic() + timeout_s
        pids = {proc.pid for proc in self.procs if proc is not None}
        while not pids <= {w.pid for w in store.workers()}:  # type: ignore[attr-defined]
            assert time.monotonic() < deadline, f"workers {pids} never registered"
            time.sleep(0.05)

    def registered(self, store: Store) -> list[int]:
        """The slots whose worker has beaten the registry (it is up, and handles SIGTERM)."""
        pids = {w.pid for w in store.workers()}  # type: ignore[attr-defined]
        return [slot for slot, proc in enumerate(self.procs)
                if proc is not None and proc.poll() is None and proc.pid in pids]

    def terminate(self, slot: int, timeout_s: float = 30.0) -> int | None:
        """SIGTERM the worker in ``slot`` and wait for it; its exit code (None: it was still
        alive after ``timeout_s`` and was SIGKILLed)."""
        proc = self.procs[slot]
        assert proc is not None
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return None

    def stop(self, timeout_s: float = 30.0) -> list[int | None]:
        """SIGTERM every worker (a graceful stop) and wait; returns the exit codes (a worker
        still alive after ``timeout_s`` is SIGKILLed and reported as None)."""
        for proc in self.procs:
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes: list[int | None] = []
        for proc in self.procs:
            if proc is None:
                continue
            try:
                codes.append(proc.wait(timeout=timeout_s))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                codes.append(None)
        return codes

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()


def enqueue_all(pool: Pool, store: Store, count: int, *, from_cli: int = 2) -> list[str]:
    """Enqueue ``count`` runs of the chaos workflow, alternating queues; the first
    ``from_cli`` with ``tether runs start``, the others with ``Runtime.enqueue``. Returns the
    run ids."""
    runtime = Runtime(store, clock=SystemClock(), owner="chaos-client", workflows=[WF])
    run_ids = []
    for n, order_id in enumerate(order_ids(count)):
        run_id, queue = f"chaos-{order_id}", QUEUES[n % len(QUEUES)]
        if n < from_cli:
            started = subprocess.run(
                [*TETHER, "runs", "start", "tests.chaos.worker_app:WF", "--store",
                 pool.store_url, "--input", f'"{order_id}"', "--queue", queue, "--run-id",
                 run_id], cwd=ROOT, env=pool.env, capture_output=True, text=True,
                timeout=60, check=False)
            assert started.returncode == 0, started.stdout + started.stderr
            assert started.stdout.split() == [run_id], started.stdout
            run_ids.append(run_id)
        else:
            run_ids.append(runtime.enqueue(WF, order_id, run_id=run_id, queue=queue))
    return run_ids


def unfinished(store: Store) -> int:
    return sum(1 for info in store.list_runs() if not info.status.finished)


def owned_by(store: Store, name: str) -> set[str]:
    """The unfinished runs ``name`` holds a lease on now."""
    return {info.run_id for info in store.list_runs()
            if info.owner == name and not info.status.finished}


def listing_of_workers(pool: Pool, store: Store, up: Sequence[int], summary: Summary) -> None:
    """``tether workers list --json`` while the workers run: every worker that is up is
    listed under its name and pid (whether it is counted alive depends on its last beat, which
    a busy machine may delay: that is noted, not asserted)."""
    listed = subprocess.run(
        [*TETHER, "workers", "list", "--store", pool.store_url, "--json",
         "--lease-ttl-s", str(pool.settings.lease_ttl_s)],
        cwd=ROOT, env=pool.env, capture_output=True, text=True, timeout=60, check=False)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    for slot in up:
        proc = pool.procs[slot]
        row = rows.get(pool.names[slot])
        assert proc is not None and row is not None and row["pid"] == proc.pid, (
            f"worker {pool.names[slot]} (pid {proc and proc.pid}) is up but `tether workers "
            f"list` shows {row}")
        summary.listed_alive.append(bool(row["alive"]))


def run_chaos(pool: Pool, store: Store, settings: Settings, summary: Summary,
              enqueue: Callable[[], Sequence[str]]) -> None:
    """Start the workers, enqueue, kill and restart workers at random until every run has
    finished (or ``chaos_s`` passed: then let them finish within ``settle_s``)."""
    rng = random.Random(summary.seed)
    began = time.monotonic()
    pool.start()
    summary.runs = len(enqueue())
    chaos_until = time.monotonic() + settings.chaos_s
    used_names = set(pool.names)
    while unfinished(store) and time.monotonic() < chaos_until:
        time.sleep(rng.uniform(*settings.kill_every_s))
        crashed = pool.died()
        assert not crashed, "a worker died on its own:\n" + "\n".join(crashed)
        # Only workers that are up (registered) are stopped: one killed while it still
        # imports has done nothing, and restarts that come faster than start-ups leave no
        # worker working at all.
        up = pool.registered(store)
        if not up:
            continue
        if summary.kills + summary.terms == 3:
            listing_of_workers(pool, store, up, summary)
        slot = rng.choice(up)
        name = pool.names[slot]
        held = owned_by(store, name)
        if rng.random() < settings.term_share:
            # A deploy's restart: SIGTERM, in-flight runs get grace_s and are handed back.
            code = pool.terminate(slot)
            summary.terms += 1
            if code != 0:
                summary.bad_exits.append(f"{name} exited {code} after SIGTERM:\n"
                                         f"{pool.tail(slot)}")
            summary.handed |= held
        else:
            pool.kill(slot)
            killed_at = time.time()  # the workers' SystemClock: events carry this time
            summary.kills += 1
            held |= owned_by(store, name)
            summary.killed_at.update(dict.fromkeys(held, killed_at))
        summary.orphaned |= held
        if rng.random() < 0.5:
            summary.same_name_restarts += 1
        else:
            summary.new_name_restarts += 1
            name = f"w{slot}-{len(used_names)}"
            used_names.add(name)
        pool.spawn(slot, name)
    summary.converged_under_chaos = unfinished(store) == 0
    settle_until = time.monotonic() + settings.settle_s
    while unfinished(store) and time.monotonic() < settle_until:
        crashed = pool.died()
        assert not crashed, "a worker died on its own:\n" + "\n".join(crashed)
        time.sleep(0.2)
    summary.wall_s = time.monotonic() - began
