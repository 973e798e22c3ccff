"""The worker pool: runs per second with 1, 2 and 4 ``tether worker`` processes, takeover
latency after a worker is SIGKILLed, and enqueue-to-start latency.

    python benchmarks/workers.py            # 400 runs per cell, 2 repetitions (~4 min)
    python benchmarks/workers.py --quick    # 200 runs, 1 repetition, fewer takeovers
    python benchmarks/workers.py --runs 800 --reps 5

Everything runs in real processes: ``tether worker`` subprocesses on a throwaway PostgreSQL
server (``tether.testing.postgres.TemporaryPostgres``, one fresh database per cell) and, for
comparison, on one SQLite file per cell.

1. **Throughput.** N runs of a small workflow (three durable steps and one idempotent write) are
   enqueued before any worker starts; then 1, 2 or 4 workers (concurrency 4 each) start and
   drain the queue. Reported: the rate over the wall time from the first worker's spawn to the
   last ``run_finished`` (from the store); the steady rate, over the runs finished once every
   worker was serving (so neither interpreter start-up nor its contention with workers already
   at work counts); and the CPU time per run: the workers'
   user+sys CPU from ``os.wait4`` (so exactly theirs) less what each had spent when it said it
   was serving (read from ``/proc/PID/stat``: imports and opening the store, reported apart),
   and the PostgreSQL server's CPU (the postmaster's own and reaped children's time plus its
   live children's). CPU time survives a busy machine; wall time does not. The baseline,
   measured in the same run on the same kind of store: the same runs executed by one
   in-process ``Runtime.recover()`` (one run after another, no worker loop, no claims, no
   interpreter start-up).
2. **Takeover.** Two idle workers; a run is enqueued whose first step blocks forever the first
   time it executes; the worker holding it is SIGKILLed; the survivor takes the run over once
   the lease expires. Reported: from the dead worker's ``lease_expires_at`` (in the index) to
   the next event the survivor appends to the run, and from the SIGKILL to that event.
3. **Enqueue to start.** One idle worker; ``Runtime.enqueue`` returns; the time until the run's
   ``run_dequeued`` event. PostgreSQL wakes the worker by LISTEN/NOTIFY, SQLite by polling.

Progress goes to stderr, the Markdown results to stdout. ``tether worker`` loads the two
workflows below from this file by path, so its top level stays cheap and free of side effects.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from tether import RunContext, ToolContext, tool, workflow

SCRIPT = Path(__file__).resolve()
ROOT = SCRIPT.parents[1]
TETHER = Path(sys.executable).with_name("tether")
WORKER_CONCURRENCY = 4


# -- the workflows the workers execute --------------------------------------------------------


class RecordArgs(BaseModel):
    order: str


@tool(effect="idempotent", name="bench_workers_record")
def record_order(ctx: ToolContext, args: RecordArgs) -> str:
    """A provider that deduplicates by key and does nothing else: what is timed is tether."""
    return f"{args.order}:{ctx.idempotency_key[:8]}"


def _add(a: int, b: int) -> int:
    return a + b


@workflow(name="bench.workers.small_run")
async def small_run(ctx: RunContext, order: str) -> int:
    """A realistic small run: three durable steps and one idempotent write."""
    total = 0
    for i in range(3):
        total = await ctx.step(f"step-{i}", _add, total, i)
    await ctx.call_tool(record_order, {"order": order})
    return total


async def _block_the_first_time(marker: str) -> str:
    # The first executor creates the marker and blocks until it is killed; whoever executes
    # the step again (the worker that takes the run over) finds the marker and goes on.
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return "taken over"
    os.close(fd)
    await asyncio.Event().wait()
    return "unreachable"


@workflow(name="bench.workers.blocks_once")
async def blocks_once(ctx: RunContext, marker: str) -> str:
    """A run whose first step blocks, the first time it runs, until its worker is killed."""
    return str(await ctx.step("block", _block_the_first_time, marker))


# -- stores -----------------------------------------------------------------------------------


@dataclass
class Backend:
    """A kind of store: hands out fresh, empty stores by URL."""

    name: str
    fresh_url: Callable[[str], str]
    server_cpu_s: Callable[[], float | None] = lambda: None


def sqlite_backend(folder: Path) -> Backend:
    return Backend("SQLite", lambda label: str(folder / f"{label}.db"))


@contextlib.contextmanager
def postgres_backend() -> Iterator[tuple[Backend | None, str]]:
    """A throwaway PostgreSQL server, or ``(None, why)`` when it cannot run here."""
    try:
        import psycopg

        from tether.store.postgres import PostgresStore  # noqa: F401  (needs the extra)
        from tether.testing.postgres import TemporaryPostgres, postgres_available
    except ImportError as exc:
        yield None, f"PostgresStore not importable ({exc})"
        return
    if not postgres_available():
        yield None, "no PostgreSQL server binaries (or no postgres user when root)"
        return
    server = TemporaryPostgres()
    try:
        server.start()
    except (RuntimeError, OSError) as exc:
        yield None, f"the PostgreSQL server did not start: {exc}"
        return
    try:
        base = server.dsn.rsplit("/", 1)[0]

        def fresh(label: str) -> str:
            with psycopg.connect(server.dsn, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{label}"')
            return f"{base}/{label}"

        with psycopg.connect(server.dsn) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        version = f"PostgreSQL {row[0] if row else '?'}"
        postmaster = _postmaster_pid(server.data_dir)
        yield Backend("PostgreSQL", fresh, lambda: _tree_cpu_s(postmaster)), version
    finally:
        server.stop()


def _postmaster_pid(data_dir: Path) -> int | None:
    try:
        return int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    """/proc/PID/stat's fields after the command name (state first), or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2:].split()


def _tree_cpu_s(pid: int | None) -> float | None:
    """CPU seconds of a server process and all its children, living and reaped."""
    if pid is None:
        return None
    own = _stat(pid)
    if own is None:
        return None
    ticks = sum(int(v) for v in own[11:15])  # utime, stime, cutime, cstime
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            child = _stat(int(entry))
            if child is not None and child[1] == str(pid):
                ticks += sum(int(v) for v in child[11:15])
    return ticks / _TICK


# -- worker processes -------------------------------------------------------------------------


@dataclass
class WorkerProc:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    cpu_s: float = 0.0
    startup_cpu_s: float = 0.0
    ready_at: float = 0.0


def spawn(url: str, name: str, log_dir: Path, *, ttl_s: float = 30.0,
          poll_s: float = 1.0) -> WorkerProc:
    """Start ``tether worker`` serving every queue with both workflows."""
    command = [str(TETHER), "worker", "--store", url,
               "--workflow", f"{SCRIPT}:small_run", "--workflow", f"{SCRIPT}:blocks_once",
               "--concurrency", str(WORKER_CONCURRENCY), "--name", name,
               "--lease-ttl-s", str(ttl_s), "--poll-s", str(poll_s), "--grace-s", "2",
               "--json"]
    log = log_dir / f"{name}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    return WorkerProc(name, proc, log)


def sample_startup(workers: Sequence[WorkerProc], timeout_s: float = 60.0) -> None:
    """Record each worker's CPU time when it has started up: ``tether worker`` says "serving"
    once its imports are done and its store is open, before it claims anything."""
    pending = list(workers)
    deadline = time.monotonic() + timeout_s
    while pending:
        for w in list(pending):
            if b"serving" in w.log.read_bytes():
                fields = _stat(w.proc.pid)
                if fields is None:
                    raise SystemExit(f"worker {w.name} is gone")
                w.startup_cpu_s = (int(fields[11]) + int(fields[12])) / _TICK
                w.ready_at = time.time()
                pending.remove(w)
            elif w.proc.poll() is not None:
                raise SystemExit(f"worker {w.name} exited {w.proc.returncode} at start:\n"
                                 + w.log.read_text(errors="replace")[-3000:])
        if time.monotonic() > deadline:
            raise SystemExit(f"workers {[w.name for w in pending]} never started")
        time.sleep(0.005)


def reap(worker: WorkerProc, sig: signal.Signals, timeout_s: float = 30.0, *,
         check: bool = True) -> None:
    """Send ``sig``, wait for the exit and record the process's user+sys CPU time; with
    ``check``, a worker that does not exit 0 on SIGTERM ends the benchmark."""
    if worker.proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        worker.proc.send_signal(sig)
    deadline = time.monotonic() + timeout_s
    while True:
        pid, status, usage = os.wait4(worker.proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            worker.proc.kill()
            pid, status, usage = os.wait4(worker.proc.pid, 0)
            break
        time.sleep(0.02)
    worker.proc.returncode = os.waitstatus_to_exitcode(status)
    worker.cpu_s = usage.ru_utime + usage.ru_stime
    if check and sig == signal.SIGTERM and worker.proc.returncode != 0:
        raise SystemExit(f"worker {worker.name} exited {worker.proc.returncode} on SIGTERM:\n"
                         + worker.log.read_text(errors="replace")[-3000:])


def stop_all(workers: Sequence[WorkerProc], *, check: bool = True) -> None:
    """SIGTERM every worker and wait for it (``check``: each must exit 0)."""
    for w in workers:
        reap(w, signal.SIGTERM, check=check)


def wait_registered(store: Any, workers: Sequence[WorkerProc], timeout_s: float = 60.0) -> None:
    pids = {w.proc.pid for w in workers}
    deadline = time.monotonic() + timeout_s
    while not pids <= {info.pid for info in store.workers()}:
        for w in workers:
            if w.proc.poll() is not None:
                raise SystemExit(f"worker {w.name} exited {w.proc.returncode} at start:\n"
                                 + w.log.read_text(errors="replace")[-3000:])
        if time.monotonic() > deadline:
            raise SystemExit(f"workers {sorted(pids)} never registered")
        time.sleep(0.05)


def open_store(url: str) -> Any:
    from tether.store.open import open_store as open_url

    return open_url(url)


def enqueue(store: Any, count: int, prefix: str) -> list[str]:
    from tether import Runtime, SystemClock

    runtime = Runtime(store, clock=SystemClock(), owner="bench-client")
    return [runtime.enqueue(small_run, f"o-{i}", run_id=f"{prefix}-{i:05d}")
            for i in range(count)]


def wait_finished(store: Any, count: int, timeout_s: float) -> None:
    from tether.events import RunStatus

    pending = [RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.WAITING]
    deadline = time.monotonic() + timeout_s
    while store.list_runs(status=pending, limit=count + 1):
        if time.monotonic() > deadline:
            raise SystemExit(f"runs still unfinished after {timeout_s:.0f} s")
        time.sleep(0.2)


def check_and_span(store: Any, run_ids: Sequence[str]) -> tuple[float, list[float]]:
    """Every run completed, dequeued at most once; the first dequeue, and the finish times."""
    from tether.events import RunDequeued, RunFinished, RunStatus

    first, finishes = float("inf"), []
    for run_id in run_ids:
        events = store.read(run_id)
        dequeues = [e.at for e in events if isinstance(e, RunDequeued)]
        finished = [e for e in events if isinstance(e, RunFinished)]
        if len(finished) != 1 or finished[0].status is not RunStatus.COMPLETED:
            raise SystemExit(f"run {run_id} did not complete: {events[-1]!r}")
        if len(dequeues) > 1:
            raise SystemExit(f"run {run_id} was dequeued {len(dequeues)} times")
        first = min([first, *dequeues])
        finishes.append(finished[0].at)
    return first, finishes


def steady_rate(ready_at: float, finishes: Sequence[float]) -> float:
    """Runs per second once every executor was ready: the runs finished after ``ready_at``
    over the time from it to the last finish (start-up, and its contention, left out)."""
    later = [f for f in finishes if f >= ready_at]
    if len(later) < max(2, len(finishes) // 10):
        raise SystemExit(f"only {len(later)} of {len(finishes)} runs finished once every "
                         "worker was ready: too few runs to measure a steady rate (--runs)")
    return len(later) / (max(later) - ready_at)


# -- 1. throughput ----------------------------------------------------------------------------


@dataclass
class Throughput:
    backend: str
    system: str  # "1 worker", …, or "baseline"
    wall_s: list[float] = field(default_factory=list)
    steady_rate: list[float] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)
    startup_cpu_s: list[float] = field(default_factory=list)
    server_cpu_s: list[float] = field(default_factory=list)


def measure_workers(backend: Backend, workers: int, runs: int, label: str, log_dir: Path,
                    cell: Throughput) -> None:
    url = backend.fresh_url(label)
    store = open_store(url)
    try:
        run_ids = enqueue(store, runs, label)
        server_before = backend.server_cpu_s()
        spawned_at = time.time()
        pool = [spawn(url, f"{label}-w{n}", log_dir) for n in range(workers)]
        try:
            sample_startup(pool)
            wait_finished(store, runs, timeout_s=300)
        except BaseException:
            stop_all(pool, check=False)
            raise
        stop_all(pool)
        server_after = backend.server_cpu_s()
        first, finishes = check_and_span(store, run_ids)
    finally:
        store.close()
    cell.wall_s.append(max(finishes) - spawned_at)
    cell.steady_rate.append(steady_rate(max(first, *(w.ready_at for w in pool)), finishes))
    cell.cpu_s.append(sum(w.cpu_s - w.startup_cpu_s for w in pool))
    cell.startup_cpu_s.extend(w.startup_cpu_s for w in pool)
    if server_before is not None and server_after is not None:
        cell.server_cpu_s.append(server_after - server_before)


def measure_baseline(backend: Backend, runs: int, label: str, cell: Throughput) -> None:
    from tether import Runtime, SystemClock
    from tether.events import RunStatus

    url = backend.fresh_url(label)
    store = open_store(url)
    try:
        run_ids = enqueue(store, runs, label)
        runtime = Runtime(store, clock=SystemClock(), workflows=[small_run],
                          owner="bench-recover")

        async def timed() -> tuple[float, float, list[Any]]:
            wall, cpu = time.perf_counter(), time.process_time()
            results = await runtime.recover()
            return time.perf_counter() - wall, time.process_time() - cpu, results

        server_before = backend.server_cpu_s()
        wall, cpu, results = asyncio.run(timed())
        server_after = backend.server_cpu_s()
        if len(results) != runs or any(r.status is not RunStatus.COMPLETED for r in results):
            raise SystemExit(f"recover() completed {len(results)} of {runs} runs")
        first, finishes = check_and_span(store, run_ids)
    finally:
        store.close()
    cell.wall_s.append(wall)
    cell.steady_rate.append(steady_rate(first, finishes))
    cell.cpu_s.append(cpu)
    if server_before is not None and server_after is not None:
        cell.server_cpu_s.append(server_after - server_before)


def print_throughput(cells: list[Throughput], runs: int) -> None:
    print("| store | executed by | runs/s (wall) | runs/s (steady) | vs 1 worker (steady) "
          "| vs baseline (steady) | tether CPU ms/run | server CPU ms/run "
          "| start-up CPU ms/worker |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    by_key = {(c.backend, c.system): c for c in cells}

    def rate(cell: Throughput) -> float:
        return statistics.median(cell.steady_rate)

    for c in cells:
        one = by_key.get((c.backend, "1 worker"))
        base = by_key.get((c.backend, "baseline"))
        vs_one = "" if one is None or c.system == "baseline" else f"{rate(c) / rate(one):.2f}×"
        vs_base = "" if base is None else f"{rate(c) / rate(base):.2f}×"
        server = "n/a" if not c.server_cpu_s else \
            f"{statistics.median(c.server_cpu_s) / runs * 1e3:.1f}"
        startup = "–" if not c.startup_cpu_s else \
            f"{statistics.median(c.startup_cpu_s) * 1e3:.0f}"
        print(f"| {c.backend} | {c.system} | {runs / statistics.median(c.wall_s):.0f} "
              f"| {rate(c):.0f} | {vs_one} | {vs_base} "
              f"| {statistics.median(c.cpu_s) / runs * 1e3:.2f} | {server} | {startup} |")


# -- 2. takeover ------------------------------------------------------------------------------


@dataclass
class Takeover:
    ttl_s: float
    poll_s: float
    kill_to_expiry: list[float] = field(default_factory=list)
    expiry_to_event: list[float] = field(default_factory=list)
    kill_to_event: list[float] = field(default_factory=list)
    first_kinds: set[str] = field(default_factory=set)


def measure_takeover(backend: Backend, ttl_s: float, poll_s: float, reps: int, log_dir: Path,
                     rng: random.Random) -> Takeover:
    from tether import Runtime, SystemClock
    from tether.events import RunStatus

    label = f"bench_takeover_{int(ttl_s * 10)}_{int(poll_s * 10)}"
    url = backend.fresh_url(label)
    store = open_store(url)
    cell = Takeover(ttl_s, poll_s)
    generation = 0

    def start() -> WorkerProc:
        nonlocal generation
        generation += 1
        return spawn(url, f"{label}-g{generation}", log_dir, ttl_s=ttl_s, poll_s=poll_s)

    pool = [start(), start()]
    try:
        wait_registered(store, pool)
        runtime = Runtime(store, clock=SystemClock(), owner="bench-client")
        for rep in range(reps):
            run_id = f"{label}-{rep}"
            marker = log_dir / f"{run_id}.started"
            runtime.enqueue(blocks_once, str(marker), run_id=run_id)
            deadline = time.monotonic() + 30
            while not marker.exists() or store.get_run(run_id).owner is None:
                if time.monotonic() > deadline:
                    raise SystemExit(f"{run_id} never started")
                time.sleep(0.01)
            # Let the holder renew its lease at a random phase, as a real crash would find it.
            time.sleep(rng.uniform(0.0, ttl_s / 3))
            owner = store.get_run(run_id).owner
            victim = next(w for w in pool if w.name == owner)
            killed_at = time.time()
            reap(victim, signal.SIGKILL)
            info = store.get_run(run_id)
            deadline = time.monotonic() + ttl_s + 30
            while not store.get_run(run_id).status.finished:
                if time.monotonic() > deadline:
                    raise SystemExit(f"{run_id} was never taken over")
                time.sleep(0.02)
            after = store.read(run_id, after_seq=info.last_seq)
            final = store.get_run(run_id)
            if final.status is not RunStatus.COMPLETED or final.owner == owner:
                raise SystemExit(f"{run_id} ended {final.status.value} under {final.owner}")
            cell.kill_to_expiry.append(info.lease_expires_at - killed_at)
            cell.expiry_to_event.append(after[0].at - info.lease_expires_at)
            cell.kill_to_event.append(after[0].at - killed_at)
            cell.first_kinds.add(after[0].kind)
            pool.remove(victim)
            pool.append(start())
            wait_registered(store, pool)
            print(f"  takeover ttl={ttl_s} poll={poll_s} #{rep}: "
                  f"{cell.expiry_to_event[-1] * 1e3:.0f} ms after expiry", file=sys.stderr)
    except BaseException:
        stop_all(pool, check=False)
        raise
    else:
        stop_all(pool)
    finally:
        store.close()
    return cell


def print_takeover(cells: list[Takeover]) -> None:
    print("| lease TTL s | --poll-s | SIGKILL → lease expiry s | lease expiry → survivor's "
          "next event ms (median, min–max) | SIGKILL → run continues s |")
    print("|---:|---:|---:|---:|---:|")
    for c in cells:
        lat = [v * 1e3 for v in c.expiry_to_event]
        print(f"| {c.ttl_s:g} | {c.poll_s:g} | {statistics.median(c.kill_to_expiry):.2f} "
              f"| {statistics.median(lat):.0f} ({min(lat):.0f}–{max(lat):.0f}) "
              f"| {statistics.median(c.kill_to_event):.2f} |")
    kinds = sorted({kind for c in cells for kind in c.first_kinds})
    print(f"\nThe survivor's first event after the takeover: {', '.join(kinds)}. "
          "SIGKILL → lease expiry is under the TTL because the dead worker last renewed its "
          "lease up to TTL/3 before it died.")


# -- 3. enqueue to start ----------------------------------------------------------------------


def measure_enqueue_to_start(backend: Backend, reps: int, log_dir: Path,
                             rng: random.Random) -> list[float]:
    from tether import Runtime, SystemClock
    from tether.events import RunDequeued, RunStatus

    label = f"bench_start_{backend.name.lower()}"
    url = backend.fresh_url(label)
    store = open_store(url)
    w = spawn(url, label, log_dir)  # --poll-s at its default, 1 s
    latencies = []
    try:
        wait_registered(store, [w])
        time.sleep(0.5)
        runtime = Runtime(store, clock=SystemClock(), owner="bench-client")
        for rep in range(reps):
            run_id = f"{label}-{rep}"
            runtime.enqueue(small_run, f"o-{rep}", run_id=run_id)
            enqueued = time.time()
            deadline = time.monotonic() + 30
            while store.get_run(run_id).status in (RunStatus.QUEUED, RunStatus.RUNNING):
                if time.monotonic() > deadline:
                    raise SystemExit(f"{run_id} was not executed")
                time.sleep(0.01)
            dequeued = next(e.at for e in store.read(run_id) if isinstance(e, RunDequeued))
            latencies.append(dequeued - enqueued)
            # Enqueue at a random phase of the worker's poll cycle.
            time.sleep(rng.uniform(0.05, 1.0))
    except BaseException:
        stop_all([w], check=False)
        raise
    else:
        stop_all([w])
    finally:
        store.close()
    print(f"  enqueue → start on {backend.name}: "
          f"{statistics.median(latencies) * 1e3:.1f} ms", file=sys.stderr)
    return latencies


def print_enqueue(results: dict[str, list[float]]) -> None:
    print("| store | how an idle worker hears of work | enqueue → run_dequeued ms (median) "
          "| p90 | min–max |")
    print("|---|---|---:|---:|---:|")
    how = {"PostgreSQL": "LISTEN/NOTIFY", "SQLite": "polling (--poll-s 1)"}
    for name, values in results.items():
        ms = sorted(v * 1e3 for v in values)
        p90 = ms[min(len(ms) - 1, round(0.9 * (len(ms) - 1)))]
        print(f"| {name} | {how.get(name, '?')} | {statistics.median(ms):.1f} | {p90:.1f} "
              f"| {ms[0]:.1f}–{ms[-1]:.1f} |")


# -- main -------------------------------------------------------------------------------------


def _load_average() -> str:
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "unknown"


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true",
                        help="200 runs per cell, 1 repetition, 2 takeovers per setting")
    parser.add_argument("--runs", type=int, default=None, help="runs per throughput cell")
    parser.add_argument("--reps", type=int, default=None,
                        help="repetitions of each throughput cell (median reported)")
    parser.add_argument("--takeovers", type=int, default=None,
                        help="takeovers per (TTL, poll) setting")
    args = parser.parse_args(argv)
    runs = args.runs or (200 if args.quick else 400)
    reps = args.reps or (1 if args.quick else 2)
    takeovers = args.takeovers or (2 if args.quick else 3)
    rng = random.Random(14)
    started = time.perf_counter()
    load_at_start = _load_average()
    notes = [f"worker concurrency {WORKER_CONCURRENCY}; {runs} runs per cell; median of {reps} "
             f"repetitions; {takeovers} takeovers per setting"]

    with tempfile.TemporaryDirectory(prefix="tether-bench-workers-") as tmp, \
            postgres_backend() as (pg, pg_note):
        folder = Path(tmp)
        backends = [sqlite_backend(folder)]
        if pg is None:
            notes.append(f"PostgreSQL: skipped: {pg_note}")
            print(f"  PostgreSQL: skipped: {pg_note}", file=sys.stderr)
        else:
            notes.append(pg_note)
            backends.insert(0, pg)

        cells: dict[tuple[str, str], Throughput] = {}
        systems = [("baseline", 0), ("1 worker", 1), ("2 workers", 2), ("4 workers", 4)]
        # Systems take turns repetition by repetition, so load from elsewhere hits them alike.
        for rep in range(reps):
            for backend in backends:
                for system, count in systems:
                    cell = cells.setdefault((backend.name, system),
                                            Throughput(backend.name, system))
                    label = f"bench_{backend.name.lower()}_{count}w_{rep}"
                    if count == 0:
                        measure_baseline(backend, runs, label, cell)
                    else:
                        measure_workers(backend, count, runs, label, folder, cell)
                    print(f"  {backend.name} {system} rep {rep}: "
                          f"{cell.steady_rate[-1]:.0f} runs/s steady, "
                          f"{cell.cpu_s[-1] / runs * 1e3:.1f} ms CPU/run", file=sys.stderr)

        takeover_cells = []
        enqueue_results: dict[str, list[float]] = {}
        if pg is not None:
            for ttl_s, poll_s in ((2.0, 0.2), (2.0, 1.0), (5.0, 0.2), (5.0, 1.0)):
                takeover_cells.append(measure_takeover(pg, ttl_s, poll_s, takeovers, folder,
                                                       rng))
        for backend in backends:
            enqueue_results[backend.name] = measure_enqueue_to_start(
                backend, 7 if args.quick else 15, folder, rng)

    notes.append(f"load average (1 min) at start {load_at_start}, at end {_load_average()}")
    print("## Machine\n")
    print(f"- {platform.machine()}, {os.cpu_count()} cores; {platform.platform()}")
    print(f"- Python {platform.python_version()}, tether {_version('tether')}, "
          f"psycopg {_version('psycopg')}")
    for note in notes:
        print(f"- {note}")
    print("\n## 1. Runs per second (queue drained by N worker processes)\n")
    print_throughput(list(cells.values()), runs)
    if takeover_cells:
        print("\n## 2. Takeover after a worker is SIGKILLed (PostgreSQL, 2 workers)\n")
        print_takeover(takeover_cells)
    print("\n## 3. Enqueue to start, one idle worker\n")
    print_enqueue(enqueue_results)
    print(f"\n(benchmark took {time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
