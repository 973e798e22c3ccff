"""The anchor experiment: SIGKILL a worker right after a write's effect, recover, count effects.

    python benchmarks/crash_recovery.py            # 7 repetitions
    python benchmarks/crash_recovery.py --reps 15
    python benchmarks/crash_recovery.py --quick    # 5 repetitions

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
    runtime = Runtime(store, probe=kill_after_effect)
    asyncio.run(runtime.start(build_tether(directory), run_id=RUN_ID))
    raise SystemExit("the worker was supposed to be killed at step 5")


def tether_recover_child(directory: str, spawned_at: float, entered_at: float) -> None:
    start = time.perf_counter()
    import asyncio

    from tether import Runtime, SQLiteStore

    imported = time.perf_counter()
    wf = build_tether(directory)
    store = SQLiteStore(os.path.join(directory, "runs.db"))
    runtime = Runtime(store, workflows=[wf])
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

    import argparse
    import platform
    import sqlite3
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 7)")
    parser.add_argument("--quick", action="store_true", help="5 repetitions")
    args = parser.parse_args()
    reps = args.reps if args.reps is not None else (5 if args.quick else 7)
    if reps < 1:
        parser.error("--reps must be at least 1")

    started = time.perf_counter()
    print(
        f"- Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"{os.cpu_count()} cores; kill at position {KILL_POSITION} ({KILL_POINT}) = right "
        f"after step 5's effect, before its result is journaled\n"
    )
    with tempfile.TemporaryDirectory(prefix="crash-bench-pycache-") as pycache:
        env = child_env(pycache)
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
