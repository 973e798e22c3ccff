"""The anchor experiment: SIGKILL a worker right after a write's effect, recover, count effects.

    python benchmarks/crash_recovery.py            # 7 repetitions
    python benchmarks/crash_recovery.py --reps 15
    python benchmarks/crash_recovery.py --quick    # 5 repetitions
    python benchmarks/crash_recovery.py --imports-only --baseline-src /tmp/old/src
                                                   # the import-time table, against an older tree
    python benchmarks/crash_recovery.py --restarts --baseline-src /tmp/old/src
                                                   # whole processes, against an older tree
    python benchmarks/crash_recovery.py --snapshot /tmp/crashed   # a killed worker's files
    python benchmarks/crash_recovery.py --recover-copy /tmp/crashed
                                                   # one restart → recovered run, whole process

A 10-step workflow; every step is an idempotent tool call whose effect is appending one line to
a file. The provider deduplicates by idempotency key, as Stripe-like APIs do: the handler
appends only if the key is not in the file yet. Every handler call is also logged, so the
report can tell "called twice" (a re-issue after the crash) from "happened twice" (a
duplicate effect).

Each repetition, in real processes:

1. a worker runs the workflow with tether's ``probe=`` hook set to SIGKILL itself at position 4,
   point ``after_call``: step 5's effect has happened, its result is not journaled;
2. a fresh process runs ``Runtime(...).recover()`` and reports, measured inside it with
   ``time.perf_counter``: interpreter start-up (from the parent's spawn to the child's first
   line), importing tether, opening the store, and ``recover()`` (which re-issues step 5 with
   the same key and runs steps 6-10);
3. the parent counts effect lines and handler calls per step: every step must have exactly one
   effect.

Before the experiment, an import-time table: ``python -X importtime`` of what the recovery
process imports, in fresh interpreters, self time summed by package (tether by module), median
of the repetitions. ``--baseline-src DIR`` runs the same imports with ``DIR`` (an older tether's
``src``, e.g. from ``git archive``) first on ``PYTHONPATH``, interleaved with the current tree,
so "before" and "after" come from one run on one machine.

If DBOS is installed (the ``bench`` extra) the same experiment runs on DBOS: a
``@DBOS.workflow`` of ten ``@DBOS.step``s, killed inside step 5 right after its effect,
recovered by ``DBOS.launch()`` in a fresh process. DBOS steps get no idempotency key, so its
provider deduplicates by ``workflow_id:step_id``, the key a DBOS user would build.
"""

# The recovery child times its own start-up, so this module imports only what the interpreter
# has loaded anyway (os, sys, time) plus json and typing, which count as "interpreter start-up";
# everything else is imported where it is used.
# No `from __future__ import annotations`: the tool below is defined inside a function, and
# tether reads its annotations with get_type_hints, which cannot see function locals in strings.
import json
import os
import sys
import time
from typing import Any

RUN_ID = "crash-bench"
STEPS = 10
KILL_POSITION = 4  # 0-based: step 5
KILL_POINT = "after_call"
DBOS_WORKFLOW_ID = "crash-bench-dbos"
# The worker's name, the same before and after its restart: a worker takes a run whose lease is
# still live back at once only under the name that holds it (a differently named one waits for
# the lease to expire, 30 s by default), so a deployment gives its workers stable names.
WORKER = "crash-bench-worker"


# -- the provider: an append-only effects file that deduplicates by key ----------------------


def provider_write(directory: str, step: int, key: str) -> None:
    """Log the call, then append the effect unless ``key`` already has one."""
    with open(os.path.join(directory, "calls.log"), "a") as calls:
        calls.write(f"{step} {key} {os.getpid()}\n")
    effects_path = os.path.join(directory, "effects.log")
    try:
        with open(effects_path) as f:
            seen = {line.split(" ", 1)[1].rstrip("\n") for line in f}
    except FileNotFoundError:
        seen = set()
    if key not in seen:
        with open(effects_path, "a") as effects:
            effects.write(f"{step} {key}\n")


def count_lines(directory: str, name: str) -> list[int]:
    """How many lines of ``name`` belong to each step 1..STEPS."""
    counts = [0] * STEPS
    try:
        with open(os.path.join(directory, name)) as f:
            for line in f:
                counts[int(line.split(" ", 1)[0]) - 1] += 1
    except FileNotFoundError:
        pass
    return counts


# -- tether ----------------------------------------------------------------------------------


def build_tether(directory: str) -> Any:
    """The workflow, defined after ``import tether`` so the child can time that import."""
    from pydantic import BaseModel

    from tether import RunContext, ToolContext, tool, workflow

    class AppendArgs(BaseModel):
        step: int

    @tool(effect="idempotent", name="append_effect")
    def append_effect(ctx: ToolContext, args: AppendArgs) -> int:
        """Append one effect line, deduplicated by the call's idempotency key."""
        provider_write(directory, args.step, ctx.idempotency_key)
        return args.step

    @workflow(name="bench.crash_recovery.ten_writes")
    async def ten_writes(ctx: RunContext) -> int:
        for step in range(1, STEPS + 1):
            await ctx.call_tool(append_effect, {"step": step})
        return STEPS

    return ten_writes


def tether_crash_child(directory: str) -> None:
    import asyncio
    import signal

    from tether import ProbePoint, Runtime, SQLiteStore

    def kill_after_effect(point: ProbePoint) -> None:
        if point.position == KILL_POSITION and point.point == KILL_POINT:
            os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no flush: a real crash

    store = SQLiteStore(os.path.join(directory, "runs.db"))
    runtime = Runtime(store, probe=kill_after_effect, owner=WORKER)
    asyncio.run(runtime.start(build_tether(directory), run_id=RUN_ID))
    raise SystemExit("the worker was supposed to be killed at step 5")


def tether_recover_child(directory: str, spawned_at: float, entered_at: float) -> None:
    start = time.perf_counter()
    import asyncio

    from tether import Runtime, SQLiteStore

    imported = time.perf_counter()
    wf = build_tether(directory)
    store = SQLiteStore(os.path.join(directory, "runs.db"))
    runtime = Runtime(store, workflows=[wf], owner=WORKER)
    opened = time.perf_counter()

    async def timed_recover() -> tuple[float, Any]:
        begin = time.perf_counter()
        results = await runtime.recover()
        return time.perf_counter() - begin, results

    recover_s, results = asyncio.run(timed_recover())
    done = time.perf_counter()
    store.close()
    print(
        json.dumps(
            {
                "phases": [
                    ["interpreter start-up (spawn → first line)", entered_at - spawned_at],
                    ["import tether", imported - start],
                    ["open store, build Runtime", opened - imported],
                    ["recover() → run completed", recover_s],
                    ["total: spawn → run completed", done - spawned_at],
                ],
                "status": [r.status.value for r in results],
                "events": store_event_count(directory),
                "commits": [store.stats.commits, store.stats.synced_commits],
            }
        )
    )


def store_event_count(directory: str) -> int:
    import sqlite3

    with sqlite3.connect(os.path.join(directory, "runs.db")) as db:
        return int(db.execute("SELECT count(*) FROM events").fetchone()[0])


# -- import time -----------------------------------------------------------------------------

# What the recovery child imports before it builds the workflow (see build_tether).
RECOVERY_IMPORTS = ("import asyncio; from pydantic import BaseModel; "
                    "from tether import ProbePoint, RunContext, Runtime, SQLiteStore, ToolContext, "
                    "tool, workflow")


def importtime(code: str, env: dict[str, str]) -> dict[str, float]:
    """Self time in ms of every module ``code`` imports in a fresh interpreter
    (``-X importtime``), keyed by module name."""
    import subprocess

    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True,
                          text=True, check=True, timeout=120, env=env)
    costs: dict[str, float] = {}
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        own, _cumulative, name = line[len("import time:"):].split("|")
        if own.strip().isdigit():  # not the header line
            costs[name.strip()] = costs.get(name.strip(), 0.0) + int(own) / 1e3
    return costs


def group_of(module: str) -> str:
    """The row a module's self time is billed to: tether by module, the rest by package."""
    parts = module.split(".")
    if parts[0] == "tether":
        return ".".join(parts[:3]) if parts[1:2] in (["runtime"], ["store"], ["models"],
                                                     ["policy"], ["agent"]) else ".".join(parts[:2])
    return parts[0].lstrip("_") if parts[0] in ("_asyncio", "_ssl", "_sqlite3") else parts[0]


def import_table(reps: int, env: dict[str, str], baseline_src: str | None) -> None:
    """Print the median self time per group of the recovery imports (and of ``import tether``
    alone), for this tree and, with ``baseline_src``, for that one in the same run."""
    import statistics

    trees = {"now": env}
    if baseline_src is not None:
        trees = {"baseline": {**env, "PYTHONPATH": os.path.abspath(baseline_src)}, "now": env}
    codes = {"import tether": "import tether", "recovery imports": RECOVERY_IMPORTS}
    runs: dict[tuple[str, str], list[dict[str, float]]] = {(t, c): [] for t in trees for c in codes}
    for rep in range(reps + 1):  # the first round warms the bytecode cache and is dropped
        for tree, tree_env in trees.items():
            for label, code in codes.items():
                costs = importtime(code, tree_env)
                if rep:
                    runs[tree, label].append(costs)

    def grouped(costs: dict[str, float]) -> dict[str, float]:
        groups: dict[str, float] = {}
        for module, ms in costs.items():
            groups[group_of(module)] = groups.get(group_of(module), 0.0) + ms
        return groups

    def median_of(tree: str, label: str, group: str | None) -> float:
        return statistics.median(
            sum(grouped(c).values()) if group is None else grouped(c).get(group, 0.0)
            for c in runs[tree, label])

    names = list(trees)
    print(f"### Import time: `python -X importtime`, median of {reps} fresh interpreters "
          "(after 1 warm-up)\n")
    print("| what | " + " | ".join(f"{t} ms" for t in names) + " | modules (now) |")
    print("|---|" + "---:|" * len(names) + "---:|")
    for label in codes:
        modules = statistics.median(len(c) for c in runs["now", label])
        print(f"| {label}: total self time | "
              + " | ".join(f"{median_of(t, label, None):.1f}" for t in names)
              + f" | {modules:.0f} |")
    print()
    label = "recovery imports"
    totals = {g for t in names for c in runs[t, label] for g in grouped(c)}
    ranked = sorted(totals, key=lambda g: -max(median_of(t, label, g) for t in names))
    print(f"Top costs of the {label} (`{RECOVERY_IMPORTS}`), self time by package:\n")
    print("| package or tether module | " + " | ".join(f"{t} ms" for t in names) + " |")
    print("|---|" + "---:|" * len(names))
    for group in ranked[:15]:
        print(f"| {group} | " + " | ".join(f"{median_of(t, label, group):.1f}" for t in names)
              + " |")
    rest = ranked[15:]
    print("| (everything else) | " + " | ".join(
        f"{sum(median_of(t, label, g) for g in rest):.1f}" for t in names) + " |")
    print("\n(-X importtime adds its own overhead: the totals are larger than the phase timed "
          "inside the recovery process below; compare rows, not these with those.)\n")


def process_cost(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(CPU s, wall s) of one whole process: user + sys from the kernel's accounting of the
    finished child (os.wait4), wall from spawn to exit."""
    import subprocess

    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}:\n{err[-2000:]}")
    if proc.stderr:
        proc.stderr.close()
    return usage.ru_utime + usage.ru_stime, wall


def restart_table(reps: int, env: dict[str, str], baseline_src: str) -> None:
    """Whole processes, this tree against ``baseline_src`` in turn (pair by pair, after one
    warm-up pair): ``import tether``, a restart that recovers a crashed run (``--recover-copy``
    of one snapshot made here), and the ``tether`` command's start-up (``--help``). Medians,
    and the now/baseline CPU ratio's median and range over the pairs."""
    import statistics
    import tempfile

    trees = {"now": env, "baseline": {**env, "PYTHONPATH": os.path.abspath(baseline_src)}}
    me = os.path.abspath(__file__)
    with tempfile.TemporaryDirectory(prefix="crash-bench-restart-") as root:
        snapshot = os.path.join(root, "crashed")
        make_snapshot(snapshot)
        commands = {"`python -c \"import tether\"`": [sys.executable, "-c", "import tether"],
                    "the recovery imports alone": [sys.executable, "-c", RECOVERY_IMPORTS],
                    "restart → recovered run (`--recover-copy`)":
                        [sys.executable, me, "--recover-copy", snapshot],
                    "`tether --help`": [sys.executable, "-m", "tether.cli", "--help"],
                    "`tether worker --help`":
                        [sys.executable, "-m", "tether.cli", "worker", "--help"]}
        costs: dict[tuple[str, str], list[tuple[float, float]]] = {
            (t, c): [] for t in trees for c in commands}
        for rep in range(reps + 1):
            order = list(trees) if rep % 2 else list(reversed(trees))
            for label, argv in commands.items():
                for tree in order:
                    cost = process_cost(argv, trees[tree])
                    if rep:
                        costs[tree, label].append(cost)
    print(f"### Whole processes, now against {baseline_src} in turn ({reps} pairs after a "
          "warm-up; CPU = user + sys of the finished process)\n")
    print("| command | now: CPU s | now: wall s | baseline: CPU s | baseline: wall s "
          "| now/baseline CPU (min–max) |")
    print("|---|---:|---:|---:|---:|---:|")
    for label in commands:
        now, base = costs["now", label], costs["baseline", label]
        ratios = [n[0] / b[0] for n, b in zip(now, base, strict=True)]
        print(f"| {label} | {statistics.median(c for c, _ in now):.3f} | "
              f"{statistics.median(w for _, w in now):.3f} | "
              f"{statistics.median(c for c, _ in base):.3f} | "
              f"{statistics.median(w for _, w in base):.3f} | "
              f"{statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f}) |")
    print()


# -- DBOS ------------------------------------------------------------------------------------


def build_dbos(directory: str, *, crash: bool) -> Any:
    import signal

    from dbos import DBOS

    DBOS(
        config={
            "name": "tether-crash-bench",
            "system_database_url": f"sqlite:///{os.path.join(directory, 'dbos.sqlite')}",
            "log_level": "WARNING",
        }
    )

    # The step's code must be the same in both processes (DBOS derives the application version
    # that recovery matches on from the workflow's source), so the crash is switched by data.
    crash_at = 5 if crash else 0

    @DBOS.step()
    def append_step(step: int) -> int:
        provider_write(directory, step, f"{DBOS.workflow_id}:{DBOS.step_id}")
        if step == crash_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return step

    @DBOS.workflow()
    def ten_writes() -> int:
        for step in range(1, STEPS + 1):
            append_step(step)
        return STEPS

    return ten_writes


def dbos_crash_child(directory: str) -> None:
    from dbos import DBOS, SetWorkflowID

    wf = build_dbos(directory, crash=True)
    DBOS.launch()
    with SetWorkflowID(DBOS_WORKFLOW_ID):
        wf()
    raise SystemExit("the DBOS worker was supposed to be killed at step 5")


def dbos_recover_child(directory: str, spawned_at: float, entered_at: float) -> None:
    start = time.perf_counter()
    from dbos import DBOS

    imported = time.perf_counter()
    build_dbos(directory, crash=False)
    opened = time.perf_counter()
    # launch() hands this executor's pending workflows to DBOS's internal queue, whose
    # background thread picks them up; the result is polled every millisecond.
    DBOS.launch()
    launched = time.perf_counter()
    result = DBOS.retrieve_workflow(DBOS_WORKFLOW_ID).get_result(polling_interval_sec=0.001)
    done = time.perf_counter()
    DBOS.destroy()
    print(
        json.dumps(
            {
                "phases": [
                    ["interpreter start-up (spawn → first line)", entered_at - spawned_at],
                    ["import dbos", imported - start],
                    ["configure DBOS, register workflow", opened - imported],
                    ["DBOS.launch()", launched - opened],
                    ["launch → workflow result (recovery runs)", done - launched],
                    ["total: spawn → run completed", done - spawned_at],
                ],
                "status": [f"completed, result={result}"],
            }
        )
    )


# -- a restart, as a whole process ----------------------------------------------------------


def make_snapshot(directory: str) -> None:
    """A crashed worker's files in ``directory``: the SQLite journal (with its WAL) and the
    effects so far, for ``--recover-copy``."""
    import signal

    os.makedirs(directory, exist_ok=False)
    code, _, err = run_child("tether-crash", directory, dict(os.environ))
    if code != -signal.SIGKILL:
        raise SystemExit(f"tether worker exited {code}, not by SIGKILL:\n{err}")
    print(f"crashed worker's files in {directory}: {sorted(os.listdir(directory))}")


def recover_copy(snapshot: str, entered_at: float) -> None:
    """One restart as a whole process: copy ``snapshot`` (made by ``--snapshot``) to a fresh
    directory, recover the run there, remove the copy. Timed from outside (``/usr/bin/time``,
    or any tool that runs the command several times): what an operator waits for between a
    worker's restart and its crashed run completing. Only os is used for the copy, so the
    process imports what a recovering worker imports."""
    copy = f"{snapshot.rstrip('/')}.{os.getpid()}"
    try:
        for where, _dirs, files in os.walk(snapshot):  # the store may keep a folder of its own
            target = os.path.normpath(os.path.join(copy, os.path.relpath(where, snapshot)))
            os.mkdir(target)
            for name in files:
                with open(os.path.join(where, name), "rb") as src, \
                        open(os.path.join(target, name), "wb") as dst:
                    dst.write(src.read())
        tether_recover_child(copy, entered_at, entered_at)
        if count_lines(copy, "effects.log") != [1] * STEPS:
            raise SystemExit(f"not exactly one effect per step: {count_lines(copy, 'effects.log')}")
    finally:
        for where, dirs, files in os.walk(copy, topdown=False):
            for name in files:
                os.unlink(os.path.join(where, name))
            for name in dirs:
                os.rmdir(os.path.join(where, name))
        os.rmdir(copy)


# -- the parent ------------------------------------------------------------------------------


CHILDREN = {
    "tether-crash": tether_crash_child,
    "dbos-crash": dbos_crash_child,
}
RECOVERERS = {
    "tether-recover": tether_recover_child,
    "dbos-recover": dbos_recover_child,
}


def run_child(role: str, directory: str, env: dict[str, str]) -> tuple[int, Any, str]:
    import subprocess

    # perf_counter is CLOCK_MONOTONIC on Linux, one clock for every process, so the child can
    # subtract the parent's spawn instant from its own first reading.
    spawned_at = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child", role, directory, repr(spawned_at)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env=env,
    )
    report = None
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            report = json.loads(line)
    return proc.returncode, report, proc.stderr


def child_env(pycache: str) -> dict[str, str]:
    """The children's environment, with a bytecode cache like any installed deployment's.

    A sandbox may set PYTHONDONTWRITEBYTECODE, which makes every process compile tether (and
    whatever else lacks a .pyc) from source and would bill that to "import". The cache goes
    to a temp dir (PYTHONPYCACHEPREFIX) so nothing is written into the source tree.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = pycache
    return env


def experiment(system: str, reps: int, env: dict[str, str]) -> list[dict[str, Any]]:
    """Crash and recover ``reps`` + 1 times; the first (cold caches) is returned first."""
    import signal
    import tempfile

    rows = []
    for rep in range(reps + 1):
        with tempfile.TemporaryDirectory(prefix=f"{system}-crash-") as directory:
            code, _, err = run_child(f"{system}-crash", directory, env)
            if code != -signal.SIGKILL:
                raise SystemExit(f"{system} worker exited {code}, not by SIGKILL:\n{err}")
            before = count_lines(directory, "effects.log")
            code, report, err = run_child(f"{system}-recover", directory, env)
            if code != 0 or report is None:
                raise SystemExit(f"{system} recovery exited {code}:\n{err}")
            report["effects_before"] = before
            report["effects"] = count_lines(directory, "effects.log")
            report["calls"] = count_lines(directory, "calls.log")
            rows.append(report)
            phases = ", ".join(f"{sec * 1e3:.1f}" for _label, sec in report["phases"])
            print(
                f"  {system} {'warm-up' if rep == 0 else f'rep {rep}'}: phases ms "
                f"[{phases}]; effects {report['effects']}",
                file=sys.stderr,
            )
    return rows


def summarize(system: str, warmup: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    import statistics

    every = [warmup, *rows]
    exact = all(r["effects"] == [1] * STEPS for r in every)
    print(f"### {system}: {len(rows)} crash-and-recover repetitions (after 1 warm-up)\n")
    print("| phase of the recovery process | median ms | min–max ms |")
    print("|---|---:|---:|")
    for i, (label, _) in enumerate(rows[0]["phases"]):
        values = [r["phases"][i][1] * 1e3 for r in rows]
        print(
            f"| {label} | {statistics.median(values):.1f} | {min(values):.1f}–{max(values):.1f} |"
        )
    cold = {label: sec for label, sec in warmup["phases"]}
    import_label = next(label for label in cold if label.startswith("import"))
    calls = rows[0]["calls"]
    same = all(r["calls"] == calls for r in every)
    print(
        f"\n- effects per step (steps 1-10), every repetition: {rows[0]['effects']}"
        f"{'' if exact else ' — NOT EXACTLY ONCE in some repetition: ' + repr(every)}"
    )
    print(f"- effects already there when the worker was killed: {rows[0]['effects_before']}")
    print(
        f"- provider calls per step: {calls}{'' if same else ' (varied: ' + repr(every) + ')'}"
        " — step 5 is called again after the crash and deduplicated by its key"
    )
    print(f"- final status: {sorted({s for r in every for s in r['status']})}")
    if "events" in rows[0]:
        commits, synced = rows[0]["commits"]
        print(
            f"- journal events after recovery: {rows[0]['events']}; recover() committed "
            f"{commits} appends, {synced} of them with fsync (the re-issued intent of step 5, "
            "the intents of steps 6-10, the run's completion)"
        )
    print(
        f"- warm-up (cold bytecode and page caches): {import_label} "
        f"{cold[import_label] * 1e3:.0f} ms, total "
        f"{cold['total: spawn → run completed'] * 1e3:.0f} ms"
    )
    print(f"- exactly one effect per step in all {len(every)} runs: {'yes' if exact else 'NO'}\n")


def dbos_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("dbos") is not None


def main() -> None:
    entered_at = time.perf_counter()
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        role, directory = sys.argv[2], sys.argv[3]
        if role in RECOVERERS:
            RECOVERERS[role](directory, float(sys.argv[4]), entered_at)
        else:
            CHILDREN[role](directory)
        return
    if len(sys.argv) == 3 and sys.argv[1] == "--recover-copy":
        recover_copy(sys.argv[2], entered_at)
        return

    import argparse
    import platform
    import sqlite3
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 7)")
    parser.add_argument("--quick", action="store_true", help="5 repetitions")
    parser.add_argument("--baseline-src", metavar="DIR", default=None,
                        help="an older tether's src directory for the import-time table")
    parser.add_argument("--imports-only", action="store_true",
                        help="print the import-time table and stop")
    parser.add_argument("--snapshot", metavar="DIR", default=None,
                        help="crash a worker into the empty DIR and stop (for --recover-copy)")
    parser.add_argument("--restarts", action="store_true",
                        help="with --baseline-src: whole processes (import tether, restart → "
                             "recovered run, tether --help) of this tree against that one, "
                             "then stop")
    args = parser.parse_args()
    reps = args.reps if args.reps is not None else (5 if args.quick else 7)
    if reps < 1:
        parser.error("--reps must be at least 1")

    if args.snapshot is not None:
        make_snapshot(args.snapshot)
        return
    started = time.perf_counter()
    print(
        f"- Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"{os.cpu_count()} cores; kill at position {KILL_POSITION} ({KILL_POINT}) = right "
        f"after step 5's effect, before its result is journaled\n"
    )
    with tempfile.TemporaryDirectory(prefix="crash-bench-pycache-") as pycache:
        env = child_env(pycache)
        if args.restarts:
            if args.baseline_src is None:
                parser.error("--restarts compares against --baseline-src DIR")
            restart_table(reps, env, args.baseline_src)
            print(f"(benchmark took {time.perf_counter() - started:.1f} s)")
            return
        import_table(reps, env, args.baseline_src)
        if args.imports_only:
            print(f"(benchmark took {time.perf_counter() - started:.1f} s)")
            return
        warmup, *rows = experiment("tether", reps, env)
        summarize("tether", warmup, rows)
        if dbos_available():
            warmup, *rows = experiment("dbos", reps, env)
            summarize("DBOS", warmup, rows)
    if not dbos_available():
        print("### DBOS: skipped (not installed; pip install -e '.[bench]')\n")
    print(f"(benchmark took {time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
