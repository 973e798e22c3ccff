"""What one durable step costs: tether on each store, against a plain loop, DBOS and LangGraph.

    python benchmarks/durable_step.py            # 9 repetitions per cell
    python benchmarks/durable_step.py --quick    # 5 repetitions, for a quick look
    python benchmarks/durable_step.py --reps 15
    python benchmarks/durable_step.py --profile  # cProfile of the SQLite 100-step no-op case
    python benchmarks/durable_step.py --baseline-src /tmp/old/src --reps 7
                                                 # CPU per step, this tree against an older one

Two workloads, each as a 10-step and a 100-step workflow:

* ``noop``: ``await ctx.step("s", noop)``, a step whose function does nothing;
* ``write``: ``await ctx.call_tool(tool, {"i": i})`` with an ``effect="idempotent"`` tool whose
  handler does nothing, so what is timed is tether's write protocol (a durable intent, the
  call, the journaled result).

Each cell is the median over the repetitions of (wall time of one whole run) / steps, so the
run's own start and finish are spread over its steps; the "marginal" table removes them by
differencing the 100-step and 10-step runs. Every repetition is a fresh run; the SQLite and
LangGraph files are fresh per repetition, the DBOS system database and the PostgreSQL server
are one per benchmark. One untimed warm-up run precedes each cell, and the systems take
turns repetition by repetition, so load from elsewhere on the machine hits them alike.

For tether's runs the timed part's CPU time (``time.process_time``) and the bytes the process
handed to ``write()`` (``wchar`` in ``/proc/self/io``, Linux only: deterministic, unlike wall
time) are reported per step too, in their own table.

DBOS and LangGraph have no write protocol: their "write" is the same kind of step calling the
same do-nothing provider function. They are measured only when the ``bench`` extra is
installed (``pip install -e '.[bench]'``); PostgreSQL only when tether's PostgresStore and the
server binaries are there.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

# Run as a script, this folder is on sys.path.
from rivals import STEPS, WORKLOADS, Runner, dbos_runner, langgraph_runner, noop, provider_write
from tether import MemoryStore, RunContext, RunStatus, Runtime, SQLiteStore, Store, ToolContext
from tether import tool as tether_tool

TARGET_US = {"noop": 50.0, "write": 400.0}
#: Issue 16's aim for a durable no-op step on SQLite: CPU µs and bytes written per step.
TARGET_NOOP_CPU_US = 20.0
TARGET_NOOP_WCHAR = 400
REFERENCE = "tether SQLite"


# -- the work itself, shared by every system -----------------------------------------------


class WriteArgs(BaseModel):
    i: int


@tether_tool(effect="idempotent", name="bench_write")
def bench_write(ctx: ToolContext, args: WriteArgs) -> None:
    """An idempotent write to a provider that does nothing."""
    provider_write(ctx.idempotency_key)


async def noop_workflow(ctx: RunContext, steps: int) -> int:
    for _ in range(steps):
        await ctx.step("s", noop)
    return steps


async def write_workflow(ctx: RunContext, steps: int) -> int:
    for i in range(steps):
        await ctx.call_tool(bench_write, {"i": i})
    return steps


TETHER_WORKFLOWS = {"noop": noop_workflow, "write": write_workflow}


# -- runners ---------------------------------------------------------------------------------


def baseline_runner(workload: str, steps: int) -> float:
    """The same work as plain function calls: what the durability costs on top of."""
    start = time.perf_counter()
    if workload == "noop":
        for _ in range(steps):
            noop()
    else:
        for i in range(steps):
            provider_write(f"k:{i}")
    return time.perf_counter() - start


def wchar() -> int | None:
    """Bytes this process has handed to ``write()`` so far (None where /proc has no io file)."""
    try:
        with open("/proc/self/io") as f:
            for line in f:
                if line.startswith("wchar:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


class TetherRunner:
    """Times ``Runtime.start`` of a fresh run on a store opened (untimed) in a fresh temp dir;
    after each call ``last_cost`` holds the timed part's (CPU seconds, bytes written or None).

    With a ``cProfile.Profile``, only the timed part is profiled.
    """

    def __init__(self, open_store: Callable[[str], Store], profiler: Any = None) -> None:
        self.open_store = open_store
        self.profiler = profiler
        self.last_cost: tuple[float, int | None] | None = None

    def __call__(self, workload: str, steps: int) -> float:
        open_store, profiler = self.open_store, self.profiler
        cost: list[tuple[float, int | None]] = []
        with tempfile.TemporaryDirectory(prefix="tether-bench-") as tmp:
            store = open_store(tmp)
            try:
                runtime = Runtime(store)
                wf = TETHER_WORKFLOWS[workload]
                run_id = f"bench-{uuid.uuid4().hex}"

                async def timed() -> tuple[float, Any]:
                    # Timed inside the loop: asyncio.run's loop setup is not tether's cost.
                    if profiler is not None:
                        profiler.enable()
                    written = wchar()
                    cpu = time.process_time()
                    start = time.perf_counter()
                    result = await runtime.start(wf, steps, run_id=run_id)
                    elapsed = time.perf_counter() - start
                    cpu = time.process_time() - cpu
                    after = wchar()
                    if profiler is not None:
                        profiler.disable()
                    cost.append(
                        (cpu, None if written is None or after is None else after - written)
                    )
                    return elapsed, result

                elapsed, result = asyncio.run(timed())
            finally:
                store.close()
        if result.status is not RunStatus.COMPLETED:
            raise SystemExit(f"benchmark run {run_id} ended {result.status.value}: {result}")
        self.last_cost = cost[0]
        return elapsed


def tether_runner(open_store: Callable[[str], Store], profiler: Any = None) -> TetherRunner:
    """A :class:`TetherRunner` on the stores ``open_store`` opens."""
    return TetherRunner(open_store, profiler)


def commit_per_event(store: SQLiteStore) -> SQLiteStore:
    """``store`` without its segment files: every lazy append its own SQLite transaction, as
    before issue 16 (the in-run "before" of the segment path; a private switch, for this
    comparison only)."""
    store._segments = None
    return store


@contextlib.contextmanager
def postgres_runner() -> Iterator[tuple[Runner | None, str]]:
    """tether on a throwaway PostgreSQL server, or ``(None, why)`` when that is not possible."""
    try:
        from tether.store.postgres import PostgresStore
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
        version = _postgres_version(server.dsn)
        yield tether_runner(lambda _tmp: PostgresStore(server.dsn)), version
    finally:
        server.stop()


def _postgres_version(dsn: str) -> str:
    try:
        import psycopg

        with psycopg.connect(dsn) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        return (
            f"PostgreSQL {row[0] if row else '?'} on loopback (fsync=on); PostgresStore commits "
            "ordinary appends with synchronous_commit=off, intents and completion with on"
        )
    except Exception as exc:  # the version is only a label; never fail the benchmark on it
        return f"PostgreSQL (version unknown: {exc})"


# -- measuring and reporting -----------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    system: str
    workload: str
    steps: int
    runs_s: tuple[float, ...]
    #: CPU seconds and bytes written of each timed run (tether only; empty for the others).
    cpu_s: tuple[float, ...] = ()
    wchar: tuple[int, ...] = ()

    @property
    def cpu_us_per_step(self) -> float | None:
        return statistics.median(self.cpu_s) / self.steps * 1e6 if self.cpu_s else None

    @property
    def wchar_per_step(self) -> float | None:
        return statistics.median(self.wchar) / self.steps if self.wchar else None

    @property
    def us_per_step(self) -> float:
        return statistics.median(self.runs_s) / self.steps * 1e6

    @property
    def spread_us(self) -> tuple[float, float]:
        return min(self.runs_s) / self.steps * 1e6, max(self.runs_s) / self.steps * 1e6


def measure(runners: dict[str, Runner], reps: int) -> list[Cell]:
    """Time every system on every cell, interleaved: repetition k of each system runs before
    repetition k + 1 of any, so a burst of load from elsewhere on the machine lands on all
    systems alike instead of on whichever happened to be running."""
    cells = []
    for workload in WORKLOADS:
        for steps in STEPS:
            runs: dict[str, list[float]] = {system: [] for system in runners}
            cpu: dict[str, list[float]] = {system: [] for system in runners}
            written: dict[str, list[int]] = {system: [] for system in runners}
            for runner in runners.values():
                runner(workload, steps)  # warm-up: imports, caches, first-call paths
            for _ in range(reps):
                for system, runner in runners.items():
                    runs[system].append(runner(workload, steps))
                    cost = getattr(runner, "last_cost", None)
                    if cost is not None:
                        cpu[system].append(cost[0])
                        if cost[1] is not None:
                            written[system].append(cost[1])
            for system, times in runs.items():
                cells.append(
                    Cell(
                        system,
                        workload,
                        steps,
                        tuple(times),
                        tuple(cpu[system]),
                        tuple(written[system]),
                    )
                )
                print(
                    f"  {system:<17} {workload:<5} {steps:>3} steps: "
                    f"{cells[-1].us_per_step:10.1f} µs/step",
                    file=sys.stderr,
                )
    return cells


def _ratio(value: float, reference: float | None) -> str:
    if not reference:
        return "–"
    r = value / reference
    if r < 0.01:
        return "<0.01×"
    return f"{r:,.0f}×" if r >= 100 else f"{r:.2f}×"


def print_table(cells: list[Cell]) -> None:
    by_key = {(c.system, c.workload, c.steps): c for c in cells}
    print(
        "| system | workload | steps | µs/step (median) | min–max | vs tether SQLite "
        "| vs baseline |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    for workload in WORKLOADS:
        for steps in STEPS:
            ref = by_key.get((REFERENCE, workload, steps))
            base = by_key.get(("baseline", workload, steps))
            for cell in (c for c in cells if (c.workload, c.steps) == (workload, steps)):
                low, high = cell.spread_us
                print(
                    f"| {cell.system} | {workload} | {steps} | {_fmt(cell.us_per_step)} "
                    f"| {_fmt(low)}–{_fmt(high)} "
                    f"| {_ratio(cell.us_per_step, ref.us_per_step if ref else None)} "
                    f"| {_ratio(cell.us_per_step, base.us_per_step if base else None)} |"
                )


def print_marginal(cells: list[Cell]) -> None:
    """(T(100) - T(10)) / 90 per system: the per-step cost without the run's start/finish."""
    by_key = {(c.system, c.workload, c.steps): c for c in cells}
    systems = list(dict.fromkeys(c.system for c in cells))
    low, high = STEPS
    print(
        "| system | marginal µs/step, noop | marginal µs/step, write "
        "| fixed ms/run, noop | fixed ms/run, write |"
    )
    print("|---|---:|---:|---:|---:|")
    for system in systems:
        marginal, fixed = [], []
        for workload in WORKLOADS:
            t_low = statistics.median(by_key[system, workload, low].runs_s)
            t_high = statistics.median(by_key[system, workload, high].runs_s)
            per_step = (t_high - t_low) / (high - low)
            marginal.append(_fmt(per_step * 1e6))
            fixed.append(f"{(t_low - per_step * low) * 1e3:.2f}")
        print(f"| {system} | {' | '.join(marginal)} | {' | '.join(fixed)} |")


def print_costs(cells: list[Cell]) -> None:
    """CPU time and bytes written per step, per run and marginal (100-step minus 10-step)."""
    by_key = {(c.system, c.workload, c.steps): c for c in cells}
    low, high = STEPS
    print(
        f"| system | workload | CPU µs/step, {low} steps | CPU µs/step, {high} steps "
        f"| marginal CPU µs/step | bytes written/step, {low} steps "
        f"| bytes written/step, {high} steps | marginal bytes/step |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for workload in WORKLOADS:
        for system in dict.fromkeys(c.system for c in cells):
            a, b = by_key.get((system, workload, low)), by_key.get((system, workload, high))
            if a is None or b is None or not a.cpu_s or not b.cpu_s:
                continue
            cpu_a, cpu_b = a.cpu_us_per_step or 0.0, b.cpu_us_per_step or 0.0
            cpu_m = (cpu_b * high - cpu_a * low) / (high - low)
            cols = [_fmt(cpu_a), _fmt(cpu_b), _fmt(cpu_m)]
            if a.wchar and b.wchar:
                w_a, w_b = a.wchar_per_step or 0.0, b.wchar_per_step or 0.0
                cols += [
                    f"{w_a:,.0f}",
                    f"{w_b:,.0f}",
                    f"{(w_b * high - w_a * low) / (high - low):,.0f}",
                ]
            else:
                cols += ["–", "–", "–"]
            print(f"| {system} | {workload} | {' | '.join(cols)} |")


def _fmt(us: float) -> str:
    return f"{us:,.2f}" if us < 10 else f"{us:,.1f}"


def print_targets(cells: list[Cell]) -> None:
    for cell in cells:
        if cell.system == REFERENCE and cell.steps == max(STEPS):
            target = TARGET_US[cell.workload]
            verdict = "met" if cell.us_per_step <= target else "MISSED"
            print(
                f"- target ≤ {target:.0f} µs per {cell.workload} step on SQLite (default "
                f"durability, {cell.steps}-step run): {cell.us_per_step:.1f} µs → {verdict}"
            )
            cpu, written = cell.cpu_us_per_step, cell.wchar_per_step
            if cell.workload == "noop" and cpu is not None:
                verdict = "met" if cpu <= TARGET_NOOP_CPU_US else "MISSED"
                print(
                    f"- aim ≤ {TARGET_NOOP_CPU_US:.0f} µs of CPU per noop step on SQLite "
                    f"({cell.steps}-step run): {cpu:.1f} µs → {verdict}"
                )
            if cell.workload == "noop" and written is not None:
                verdict = "met" if written <= TARGET_NOOP_WCHAR else "MISSED"
                print(
                    f"- aim ≤ {TARGET_NOOP_WCHAR} bytes written per noop step on SQLite "
                    f"({cell.steps}-step run): {written:,.0f} B → {verdict}"
                )


def fsync_latency_us(directory: str, count: int = 50) -> float:
    """Median cost of writing 4 KiB and fsyncing it, in the temp dir the stores use."""
    path = os.path.join(directory, "fsync-probe")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        times = []
        for _ in range(count):
            start = time.perf_counter()
            os.write(fd, b"x" * 4096)
            os.fsync(fd)
            times.append(time.perf_counter() - start)
    finally:
        os.close(fd)
        os.unlink(path)
    return statistics.median(times) * 1e6


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def print_machine() -> None:
    packages = (
        "tether",
        "pydantic",
        "pydantic-core",
        "psycopg",
        "dbos",
        "langgraph",
        "langgraph-checkpoint-sqlite",
    )
    with tempfile.TemporaryDirectory(prefix="tether-bench-") as tmp:
        fsync_us = fsync_latency_us(tmp)
    print(f"- CPU: {cpu_model()}, {os.cpu_count()} cores; {platform.system()} {platform.release()}")
    print(
        f"- Python {platform.python_version()} ({platform.python_implementation()}), "
        f"SQLite {sqlite3.sqlite_version}"
    )
    print(f"- fsync of 4 KiB in {tempfile.gettempdir()}: median {fsync_us:.0f} µs")
    print("- " + ", ".join(f"{p} {_version(p)}" for p in packages))


def profile_sqlite_noop(runs: int = 30, top: int = 15) -> None:
    """cProfile of ``runs`` 100-step no-op runs on SQLite: where a durable step's time goes."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    tether_runner(lambda tmp: SQLiteStore(os.path.join(tmp, "runs.db")))("noop", 100)  # warm-up
    runner = tether_runner(lambda tmp: SQLiteStore(os.path.join(tmp, "runs.db")), profiler)
    for _ in range(runs):
        runner("noop", 100)
    print(f"## cProfile: {runs} runs of 100 no-op steps on tether SQLite (top {top} by own time)")
    pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(top)


def cpu_child(runs: int) -> None:
    """In a child process (``--cpu-child``): CPU µs per step of ``runs`` 100-step runs of each
    workload on SQLite, after a warm-up, printed as one JSON line."""
    import json

    runner = tether_runner(lambda tmp: SQLiteStore(os.path.join(tmp, "runs.db")))
    costs: dict[str, list[float]] = {}
    for workload in ("noop", "write"):
        runner(workload, 100)  # warm-up: first-use costs (model building) are not per step
        costs[workload] = []
        for _ in range(runs):
            runner(workload, 100)
            assert runner.last_cost is not None
            costs[workload].append(runner.last_cost[0] / 100 * 1e6)
    print(json.dumps(costs))


def compare_trees(baseline_src: str, pairs: int, runs: int = 5) -> None:
    """CPU per step of this tree against ``baseline_src`` (an older tether's ``src``), child
    processes of each in turn, ``pairs`` times: medians and the per-pair ratio's range."""
    import json
    import subprocess

    trees = {"now": dict(os.environ),
             "baseline": {**os.environ, "PYTHONPATH": os.path.abspath(baseline_src)}}
    found: dict[str, dict[str, list[float]]] = {t: {"noop": [], "write": []} for t in trees}
    ratios: dict[str, list[float]] = {"noop": [], "write": []}
    for pair in range(pairs):
        order = list(trees) if pair % 2 else list(reversed(trees))
        medians: dict[str, dict[str, float]] = {}
        for tree in order:
            out = subprocess.run([sys.executable, os.path.abspath(__file__), "--cpu-child",
                                  str(runs)], env=trees[tree], capture_output=True, text=True,
                                 check=True, timeout=600).stdout
            costs = json.loads(out.splitlines()[-1])
            medians[tree] = {w: statistics.median(c) for w, c in costs.items()}
            for workload, values in costs.items():
                found[tree][workload].extend(values)
        for workload in ratios:
            ratios[workload].append(medians["now"][workload] / medians["baseline"][workload])
    print(f"## CPU µs per step on SQLite (100-step runs), now against {baseline_src}\n")
    print(f"{pairs} pairs of child processes in turn, {runs} runs each after a warm-up; "
          "medians of all runs, the ratio per pair of medians\n")
    print("| workload | now: CPU µs/step | baseline: CPU µs/step | now/baseline (min–max) |")
    print("|---|---:|---:|---:|")
    for workload, values in ratios.items():
        print(f"| {workload} | {statistics.median(found['now'][workload]):.1f} | "
              f"{statistics.median(found['baseline'][workload]):.1f} | "
              f"{statistics.median(values):.2f} ({min(values):.2f}–{max(values):.2f}) |")


def _load_average() -> str:
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "unknown"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--reps",
        type=int,
        default=None,
        help="timed runs per cell (default 9; at least 5 for a median worth reporting)",
    )
    parser.add_argument("--quick", action="store_true", help="5 repetitions per cell")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="instead of the table, cProfile the SQLite 100-step no-op case",
    )
    parser.add_argument("--baseline-src", metavar="DIR", default=None,
                        help="instead of the table, CPU per step on SQLite of this tree "
                             "against DIR (an older tether's src), in child processes")
    parser.add_argument("--cpu-child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.cpu_child is not None:
        cpu_child(args.cpu_child)
        return
    if args.baseline_src is not None:
        compare_trees(args.baseline_src, args.reps if args.reps is not None else 7)
        return
    if args.profile:
        profile_sqlite_noop()
        return
    reps = args.reps if args.reps is not None else (5 if args.quick else 9)
    if reps < 1:
        parser.error("--reps must be at least 1")

    print("## Machine\n")
    print_machine()
    print(f"- {reps} timed repetitions per cell (+1 warm-up); median reported\n")

    started = time.perf_counter()
    load_at_start = _load_average()
    notes: list[str] = [
        "tether SQLite: WAL, synchronous=NORMAL; intents and run completion commit with "
        "synchronous=FULL (fsync); a leased run's lazy appends are lines in its segment file, "
        "taken into SQLite by the next transaction",
        "tether SQLite, 1 commit/event: the same store with its segments switched off (every "
        "append a SQLite transaction, as before issue 16)",
    ]
    runners: dict[str, Runner] = {
        "baseline": baseline_runner,
        "tether memory": tether_runner(lambda _tmp: MemoryStore()),
        REFERENCE: tether_runner(lambda tmp: SQLiteStore(os.path.join(tmp, "runs.db"))),
        "tether SQLite, 1 commit/event": tether_runner(
            lambda tmp: commit_per_event(SQLiteStore(os.path.join(tmp, "runs.db")))
        ),
    }
    with contextlib.ExitStack() as stack:
        for system, factory in (
            ("tether PostgreSQL", postgres_runner),
            ("LangGraph", langgraph_runner),
            ("DBOS", dbos_runner),
        ):
            runner, note = stack.enter_context(factory())
            if runner is None:
                notes.append(f"{system}: skipped: {note}")
                print(f"  {system}: skipped: {note}", file=sys.stderr)
                continue
            notes.append(f"{system}: {note}")
            runners[system] = runner
        cells = measure(runners, reps)
    notes.append(f"load average (1 min) at start {load_at_start}, at end {_load_average()}")

    print("## µs per durable step (whole run / steps)\n")
    print_table(cells)
    print(
        "\n## Marginal cost per step and fixed cost per run (from the 10- and 100-step medians)\n"
    )
    print_marginal(cells)
    print("\n## CPU time and bytes written per step (tether; timed part only)\n")
    print_costs(cells)
    print("\n## Targets\n")
    print_targets(cells)
    print("\n## Notes\n")
    for note in notes:
        print(f"- {note}")
    print(f"\n(benchmark took {time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
