"""The work queue on the command line: ``tether worker``, ``tether workers list`` and
``tether runs start``.

``tether worker --store URL --workflow SPEC … [--queue NAME=LIMIT …] [--concurrency N]``
claims and executes due runs until SIGTERM or SIGINT, then stops gracefully (see
:mod:`tether.runtime.worker`) and exits 0. It prints one line per run it is done with (``--json``:
one JSON object per line). ``SPEC`` names a workflow as ``package.module:attr`` or
``path/to/file.py:attr`` (a :func:`~tether.runtime.runtime.workflow`, an async function, or an
agent), or an agent file (``agent.yaml``). Runs record the workflow's name, so the process that
enqueues and the workers must name it alike: give plain functions a stable
``@workflow(name=...)`` (a function loaded from a file by path is otherwise named after that
path).

``tether runs start SPEC [--input JSON] [--queue NAME] [--run-id ID] --store URL`` enqueues a
run and prints its id. ``tether workers list --store URL`` shows the registered workers, when
each was last seen, whether it is alive (seen within its lease time) and the runs it holds.

Bad input (a workflow that does not import, a malformed ``--queue``, a store that does not
open) is one line on stderr and exit code 2.
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from tether.cli_options import JsonOpt, SharedStoreOpt
from tether.clock import SystemClock
from tether.errors import TetherError, UsageError
from tether.events import RunStatus
from tether.imports import import_object
from tether.runtime.runtime import Runnable, Runtime, Workflow
from tether.runtime.worker import Worker, WorkerOutcome
from tether.store.base import DEFAULT_QUEUE, Store, WorkerInfo, WorkQueue
from tether.store.open import open_store
from tether.terminal import fail, plain, stderr, stdout, warn

__all__ = ["load_workflow", "parse_queues", "runs_start", "worker", "workers_app"]

workers_app = typer.Typer(no_args_is_help=True, help="The workers serving a store's queue.")


_AGENT_SUFFIXES = (".yaml", ".yml", ".json")


def _positive(value: float) -> float:
    """A duration that must be more than zero (a lease, a poll interval)."""
    if not value > 0:
        raise typer.BadParameter(f"expected a number of seconds more than 0, found {value:g}")
    return value


def _exit(exc: BaseException) -> typer.Exit:
    return fail(exc)


def load_workflow(spec: str) -> Workflow | Runnable:
    """The workflow ``spec`` names: an agent file, or an import path to a workflow, an async
    function or an agent. A :class:`UsageError` says what was found otherwise."""
    what = f"--workflow {spec!r}"
    if spec.endswith(_AGENT_SUFFIXES):
        from tether.sessions.loader import load_definition

        if not Path(spec).is_file():
            raise UsageError(f"{what}: no agent file {spec} (an agent file ends in .yaml; an "
                             "import path is package.module:attr or path/to/file.py:attr)")
        return load_definition(spec).build()
    found = import_object(spec, None, what=what, hint="a workflow, an async function or an "
                          "agent")
    if isinstance(found, Workflow | Runnable):
        return found
    if asyncio.iscoroutinefunction(found):
        return Workflow(f"{found.__module__}.{found.__qualname__}", found)
    raise UsageError(f"{what}: expected a workflow (@tether.workflow), an async function "
                     f"(ctx, input) or an agent, found {type(found).__name__}")


def parse_queues(values: list[str], concurrency: int) -> dict[str, int] | None:
    """``--queue NAME=LIMIT`` (or ``NAME``: up to ``concurrency``) options as a mapping;
    None when none was given (every queue)."""
    if not values:
        return None
    queues: dict[str, int] = {}
    for value in values:
        name, sep, limit = value.partition("=")
        name = name.strip()
        if not name or (sep and not limit.strip().isdigit()) or (sep and int(limit) < 1):
            raise UsageError(f"--queue {value!r}: expected NAME=LIMIT (a queue name and how "
                             "many of its runs at once, 1 or more), e.g. --queue emails=2")
        if name in queues:
            raise UsageError(f"--queue {value!r}: queue {name!r} is named twice")
        queues[name] = int(limit) if sep else concurrency
    return queues


def _open(url: str) -> Store:
    try:
        return open_store(url)
    except TetherError:
        raise
    except Exception as exc:  # a driver's own error (unreachable server, unwritable path)
        raise UsageError(f"--store {url!r} does not open: {type(exc).__name__}: {exc}") \
            from exc


def worker(
    store: SharedStoreOpt,
    workflows: Annotated[list[str], typer.Option(
        "--workflow", help="A workflow to execute: package.module:attr, path/to/file.py:attr "
        "or an agent file; repeat for several.")],
    queue: Annotated[list[str] | None, typer.Option(
        "--queue", help="A queue to serve as NAME=LIMIT (runs at once); repeat. Default: "
        "every queue.")] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Runs at once, over all queues.")]
    = 4,
    name: Annotated[str | None, typer.Option(
        "--name", help="The worker's name in leases (default host:pid:n), unique among live "
        "workers; restarted under the same name, it takes its runs back at once.")] = None,
    lease_ttl_s: Annotated[float, typer.Option(
        "--lease-ttl-s", callback=_positive, help="How long a run's lease holds without "
        "renewal: how soon another worker takes over the runs of a worker that died.")] = 30.0,
    poll_s: Annotated[float, typer.Option(
        "--poll-s", callback=_positive,
        help="The longest the worker stays idle without looking for work.")] = 1.0,
    grace_s: Annotated[float, typer.Option(
        "--grace-s", min=0, help="On SIGTERM, how long runs get to end their current call "
        "before they are cancelled; each is handed back.")] = 10.0,
    park_after_s: Annotated[float, typer.Option(
        "--park-timers-after-s", min=0, help="Sleeps longer than this suspend the run until due "
        "instead of holding a slot.")] = 5.0,
    as_json: JsonOpt = False,
) -> None:
    """Execute the runs a store's queues hand out, until SIGTERM or SIGINT.

    Due runs are queued ones, waiting ones whose resolution arrived or whose deadline or
    parked timer is due, and running ones whose worker died. On the first signal the worker
    stops claiming, hands back what is in flight after its current call (a second signal:
    without waiting out the grace) and exits 0."""
    # A stop asked for while the workflows load (their imports can take seconds) is honoured
    # once the worker is up, instead of killing the process mid-import.
    early: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda number, _frame: early.append(number))
    try:
        queues = parse_queues(queue or [], concurrency)  # before the (slow) imports
        found = [load_workflow(spec) for spec in workflows]
        opened = _open(store)
        runtime = Runtime(opened, clock=SystemClock(), workflows=found, owner=name,
                          lease_ttl_s=lease_ttl_s)
        served = Worker(runtime, queues=queues, concurrency=concurrency, poll_s=poll_s,
                        grace_s=grace_s, park_timers_after_s=park_after_s,
                        on_outcome=_printer(as_json), on_error=_warn)
    except TetherError as exc:
        raise _exit(exc) from None
    where = ", ".join(served.queues) or "every queue"
    plain(stderr(), f"worker {served.name} serving {where} ({concurrency} at once) on {store}")
    try:
        asyncio.run(_serve(served, stopped=bool(early)))
    finally:
        opened.close()
    plain(stderr(), f"worker {served.name} stopped: "
          + (", ".join(f"{k} {v}" for k, v in sorted(served.counts.items())) or "no runs"))


async def _serve(served: Worker, *, stopped: bool = False) -> None:
    stop = asyncio.Event()
    if stopped:
        stop.set()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        # The first signal stops gracefully; a second cuts the grace short.
        if stop.is_set():
            served.hurry()
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    await served.run(stop)


def _warn(exc: Exception) -> None:
    warn(f"{type(exc).__name__}: {exc} (trying again)", label="store error")


def _printer(as_json: bool) -> Any:
    def show(outcome: WorkerOutcome) -> None:
        if as_json:
            print(json.dumps({"run_id": outcome.run_id, "workflow": outcome.workflow,
                              "queue": outcome.queue, "outcome": outcome.outcome,
                              "detail": outcome.detail}), flush=True)
            return
        detail = f"  {outcome.detail}" if outcome.detail else ""
        console = stdout()
        plain(console, f"{outcome.outcome:<16} {outcome.run_id}  {outcome.workflow} "
                       f"[{outcome.queue}]{detail}")
        console.file.flush()

    return show


def runs_start(
    workflow_spec: Annotated[str, typer.Argument(
        metavar="WORKFLOW", help="package.module:attr, path/to/file.py:attr or an agent "
        "file.")],
    store: SharedStoreOpt,
    input_json: Annotated[str | None, typer.Option(
        "--input", help="The run's input, as JSON (an agent's: its task text).")] = None,
    queue: Annotated[str, typer.Option("--queue", help="The queue to put it on.")] =
        DEFAULT_QUEUE,
    run_id: Annotated[str | None, typer.Option("--run-id", help="The run's id (default: a "
                                                                "new one).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Put a run on a queue for a worker; prints the run id once the run is durable.

    --json prints {"run_id", "queue"}."""
    try:
        found = load_workflow(workflow_spec)
        try:
            value = None if input_json is None else json.loads(input_json)
        except json.JSONDecodeError as exc:
            raise UsageError(f"--input is not JSON ({exc.msg} at column {exc.colno}); a "
                             "string needs its quotes, e.g. --input '\"hello\"'") from None
        opened = _open(store)
        try:
            started = Runtime(opened, clock=SystemClock()).enqueue(
                found, value, run_id=run_id, queue=queue)
        finally:
            opened.close()
    except TetherError as exc:
        raise _exit(exc) from None
    print(json.dumps({"run_id": started, "queue": queue}) if as_json else started)


@workers_app.command("list")
def workers_list(
    store: SharedStoreOpt,
    as_json: JsonOpt = False,
    lease_ttl_s: Annotated[float, typer.Option(
        "--lease-ttl-s", callback=_positive, help="The workers' lease time: a worker beats "
        "three times in it, and counts as alive when seen within it.")] = 30.0,
) -> None:
    """The workers registered on a store: who, where, what they serve, when last seen,
    whether alive, and the runs each holds a live lease on now."""
    try:
        opened = open_store(store, create=False)
        if not isinstance(opened, WorkQueue):
            raise UsageError(f"{store}: this store keeps no worker registry")
        registered = opened.workers()
        unfinished = opened.list_runs(
            status=[RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.WAITING], limit=1_000_000)
    except TetherError as exc:
        raise _exit(exc) from None
    now = SystemClock().now()
    rows = [_worker_row(w, unfinished, now, lease_ttl_s) for w in registered]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    console = stdout()
    if not rows:
        console.print("no workers registered")
        return
    table = Table()
    for column in ("worker", "host", "pid", "queues", "concurrency", "seen", "alive", "runs"):
        table.add_column(column)
    for row in rows:
        alive = "yes" if row["alive"] else "[red]no[/red]"
        if row["stopping"]:
            alive += " (stopping)"
        table.add_row(escape(row["name"]), escape(row["host"]), str(row["pid"]),
                      escape(", ".join(row["queues"]) or "*"), str(row["concurrency"]),
                      f"{row['seen_s_ago']:.0f}s ago", alive,
                      escape(", ".join(row["runs"])) or "-")
    console.print(table)


def _worker_row(w: WorkerInfo, unfinished: list[Any], now: float,
                lease_ttl_s: float) -> dict[str, Any]:
    return {"name": w.name, "host": w.host, "pid": w.pid, "queues": list(w.queues),
            "concurrency": w.concurrency, "started_at": w.started_at, "seen_at": w.seen_at,
            "seen_s_ago": max(0.0, now - w.seen_at), "alive": now - w.seen_at <= lease_ttl_s,
            "stopping": w.stopping,
            "runs": [r.run_id for r in unfinished if r.owner == w.name and r.leased(at=now)]}
