"""The ``tether`` command: parse arguments, call the library, render with rich.

The command groups and commands that live beside what they drive (``sim``, ``eval``,
``agent``, ``serve``, ``workers``, ``worker``, ``view``, ``runs start``) are registered here by
name and help line and imported only when one of them runs, so ``tether worker`` loads the
worker and the runtime, not the simulator, the evaluation layer or the HTTP server, and
``tether --help`` lists every group without importing any.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import tempfile
import time
from collections.abc import Iterator, Mapping, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich import box
from rich.markup import escape
from rich.table import Table
from typer import _click as click  # typer's own click, which its classes are built on
from typer.core import TyperGroup

from tether import __version__
from tether.cli_options import MAX_SEEDS, MAX_WORKERS, JsonOpt, StoreOpt
from tether.errors import CorruptJournal, TetherError, UsageError
from tether.events import RunStatus
from tether.terminal import NO_COLOR_KEY, RootGroup, fail, stderr, stdout

if TYPE_CHECKING:
    from tether.events import Event
    from tether.store.base import Store

# What lives elsewhere, per group: name -> "module:attribute" (a typer.Typer is a command group,
# a function a command). Each is registered below with its help line, under its name and in its
# place, and imported when it runs; tests/test_cli_lazy.py checks each help line against the
# one its module declares.
_ROOT_ELSEWHERE = {
    "worker": "tether.worker_cli:worker",
    "view": "tether.view.cli:view",
    "sim": "tether.sim.cli:sim_app",
    "eval": "tether.evals.cli:eval_app",
    "agent": "tether.sessions.cli:agent_app",
    "serve": "tether.serve.cli:serve_app",
    "workers": "tether.worker_cli:workers_app",
}
_RUNS_ELSEWHERE = {"start": "tether.worker_cli:runs_start"}


class _Commands(MutableMapping[str, click.Command]):
    """A group's commands, where each one named in ``elsewhere`` is a stand-in (its name and
    help line, for the listing) until it is looked up: then its module is imported and the
    real command takes the stand-in's place."""

    def __init__(self, commands: MutableMapping[str, click.Command],
                 elsewhere: Mapping[str, str]) -> None:
        self._commands = commands
        self._elsewhere = {name: where for name, where in elsewhere.items() if name in commands}

    def stand_in(self, name: str) -> click.Command | None:
        """The command as the listing shows it, imported or not."""
        return self._commands.get(name)

    def __getitem__(self, name: str) -> click.Command:
        where = self._elsewhere.pop(name, None)
        if where is not None:
            self._commands[name] = _imported(name, where)
        return self._commands[name]

    def __setitem__(self, name: str, command: click.Command) -> None:
        self._elsewhere.pop(name, None)
        self._commands[name] = command

    def __delitem__(self, name: str) -> None:
        self._elsewhere.pop(name, None)
        del self._commands[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._commands)

    def __len__(self) -> int:
        return len(self._commands)


def _imported(name: str, where: str) -> click.Command:
    """The click command typer builds for ``where`` registered as ``name``, as add_typer or
    command() on the parent would have built it."""
    module, _, attribute = where.partition(":")
    found = getattr(importlib.import_module(module), attribute)
    holder = typer.Typer()
    if isinstance(found, typer.Typer):
        holder.add_typer(found, name=name)
    else:
        holder.command(name)(found)
    return typer.main.get_group(holder).commands[name]


class _Deferring(TyperGroup):
    """A group whose commands of :attr:`elsewhere` are imported when looked up; its help
    listing shows their stand-ins, so ``--help`` imports none of them."""

    elsewhere: Mapping[str, str] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands = _Commands(self.commands, self.elsewhere)
        self._listing = False

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False

    def list_commands(self, ctx: click.Context) -> list[str]:
        # the names in the order they were registered, as typer lists them, without reading
        # the commands themselves (typer's own list_commands walks items())
        return list(self.commands)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        commands = self.commands
        if self._listing and isinstance(commands, _Commands):
            return commands.stand_in(cmd_name)
        return super().get_command(ctx, cmd_name)


class _Root(_Deferring, RootGroup):
    elsewhere = _ROOT_ELSEWHERE


class _Runs(_Deferring):
    elsewhere = _RUNS_ELSEWHERE


def _stand_in() -> None:
    """Replaced by the command it stands for before it can run (see _Commands)."""
    raise AssertionError("a stand-in command ran")  # pragma: no cover


app = typer.Typer(cls=_Root, add_completion=False, no_args_is_help=True,
                  help="Durable, exactly-once runs for AI agents.")


def _print_version(asked: bool) -> None:
    if asked:
        print(f"tether {__version__}")
        raise typer.Exit()


def _turn_colour_off(ctx: typer.Context, off: bool) -> None:
    # Eager, so it holds from the start of parsing: click's own errors print without colour.
    if off:
        ctx.meta[NO_COLOR_KEY] = True


@app.callback()
def _root(
    version: Annotated[bool, typer.Option(
        "--version", is_eager=True, callback=_print_version,
        help="Print tether's version and exit.")] = False,
    colour_off: Annotated[bool, typer.Option(
        "--no-color", is_eager=True, callback=_turn_colour_off,
        help="No colour or other ANSI styling (also: NO_COLOR set in the environment).")]
    = False,
) -> None:
    """Durable, exactly-once runs for AI agents."""


runs_app = typer.Typer(cls=_Runs, no_args_is_help=True, help="Inspect runs in a store.")
store_app = typer.Typer(no_args_is_help=True, help="Check a store.")
app.add_typer(runs_app, name="runs")
app.add_typer(store_app, name="store")
# Stand-ins, in the places the real groups and commands were registered (the listing's order);
# each help line is its module's own (checked by tests/test_cli_lazy.py).
app.add_typer(typer.Typer(), name="sim", help="Run simulated episodes.")
app.add_typer(typer.Typer(), name="eval", help="Reliability campaigns.")
app.add_typer(typer.Typer(), name="agent", help="Check and show declarative (YAML) agents.")
app.add_typer(typer.Typer(), name="serve",
              help="Serve agent files' sessions over HTTP (tether serve AGENT.yaml …).")
approvals_app = typer.Typer(no_args_is_help=True, help="Calls held by policy for a human.")
app.add_typer(approvals_app, name="approvals")
app.add_typer(typer.Typer(), name="workers", help="The workers serving a store's queue.")
app.command("worker", help="Execute the runs a store's queues hand out, until SIGTERM or "
            "SIGINT.")(_stand_in)
runs_app.command("start", help="Put a run on a queue for a worker; prints the run id once the "
                 "run is durable.")(_stand_in)
app.command("view", help="Browse runs, their timelines, waiting approvals and a campaign's "
            "results in a browser.")(_stand_in)


def _fail(exc: TetherError) -> NoReturn:
    raise fail(exc)


def _open_existing(store: str) -> Store:
    """The store a command that reads (or decides on a run) names: never a new one, so a
    mistyped path is an error rather than an empty store created in its place."""
    from tether.store.open import open_store

    try:
        return open_store(store, create=False)
    except UsageError as exc:
        raise UsageError(f"{exc}; name an existing store with --store PATH or "
                         "TETHER_STORE") from exc


@app.command()
def version(as_json: JsonOpt = False) -> None:
    """Print tether's version."""
    if as_json:
        print(json.dumps({"version": __version__}))
        return
    print(f"tether {__version__}")


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Where the results and report.html go.")] = Path(
        "tether-demo"),
    seeds: Annotated[int, typer.Option(min=1, max=MAX_SEEDS,
                                       help="Seeds per scenario, suite and harness.")] = 40,
    workers: Annotated[int | None, typer.Option(min=1, max=MAX_WORKERS,
                                                help="Processes (default: all cores).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """The five reliability suites on the refund and calendar agents, naive vs tether.

    --json prints {"files": {"results", "report", "episodes"}, "results": ...} (the files
    written, and the campaign's results as results.json holds them) on stdout, and nothing
    else there; the progress bar is on stderr."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from tether.evals.report import print_report
    from tether.evals.run import run_full_campaign

    console = stdout()
    if not as_json:
        console.print("[bold]tether demo[/bold] — the refund and calendar agents through the "
                      "five reliability suites, under a naive harness and under tether.")
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=stderr(), transient=True) as bar:
        task = bar.add_task("episodes", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        try:
            results = run_full_campaign(out, seeds=seeds, workers=workers, name="tether demo",
                                        progress=progress)
        except TetherError as exc:
            raise fail(exc) from exc
    files = {"results": str(out / "results.json"), "report": str(out / "report.html"),
             "episodes": str(out / "episodes.jsonl")}
    if as_json:
        print(json.dumps({"files": files, "results": results.model_dump(mode="json")},
                         indent=2))
        return
    print_report(results, console)
    console.print(escape(f"\nresults: {files['results']}   report: {files['report']}   "
                         f"episodes: {files['episodes']}"))


@app.command("crash-demo")
def crash_demo(
    folder: Annotated[Path | None, typer.Option(help="Where to keep the demo's files.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Kill a refund run with SIGKILL mid-write, recover it in a new process, count the money.

    --json prints {"folder", "outcomes" (one per harness), "store"} instead of the tables."""
    from tether.demo.crash import ORDER, run_demo
    from tether.store.open import open_store

    where = folder or Path(tempfile.mkdtemp(prefix="tether-demo-"))
    console = stdout()
    if as_json:
        found = run_demo(where)
        durable_id = found[-1].run_id
        print(json.dumps({
            "folder": str(where),
            "outcomes": [dataclasses.asdict(o) for o in found],
            "store": str(where / "tether" / "tether.db") if durable_id else None,
        }, indent=2))
        return
    console.print(f"[bold]tether crash-demo[/bold] — refund {ORDER.order_id} "
                  f"(${ORDER.amount_cents / 100:.2f}); the worker is SIGKILLed right after "
                  "the bank commits the refund, before it hears back; a fresh process finishes.")
    outcomes = run_demo(where)
    table = Table(box=box.SIMPLE_HEAD)
    for column in ("harness", "worker 1", "refunds", "notes", "emails", "status", "recovery"):
        table.add_column(column)
    for o in outcomes:
        refunds = o.counts["refunds"]
        style = "green" if refunds == 1 else "red"
        table.add_row(
            o.harness,
            "SIGKILL" if o.first_exit == -9 else f"exit {o.first_exit}",
            f"[{style}]{refunds}[/{style}]",
            str(o.counts["notes"]),
            str(o.counts["emails"]),
            o.status,
            "rerun from scratch" if o.recover_ms is None else f"recover() {o.recover_ms:.1f} ms",
        )
    console.print(table)
    naive, durable = outcomes
    console.print(f"naive: {naive.counts['refunds']} refunds for one order: the customer was "
                  "paid twice.")
    console.print(f"tether: {durable.counts['refunds']} refund: the intent was journaled before "
                  "the bank call; the new worker re-issued it with the same idempotency key and "
                  "the bank replayed it.")
    if durable.run_id:
        store = where / "tether" / "tether.db"
        _print_journal(open_store(str(store)).read(durable.run_id), durable.run_id)
        console.print(escape(f"tether runs show {durable.run_id} --store {store}"))


@runs_app.command("list")
def runs_list(
    store: StoreOpt = "tether.db",
    status: Annotated[RunStatus | None, typer.Option(help="Only runs in this status.")] = None,
    as_json: JsonOpt = False,
    show_all: Annotated[bool, typer.Option(
        "--all", help="Also list memory namespaces and session streams (journals of "
        "tether.memory and tether.session).")] = False,
) -> None:
    """List runs, oldest first, with their queue, the worker holding each and its lease (live:
    how long it has left; expired: since when; none); memory namespaces and session streams
    only with --all."""
    from tether.memory import MEMORY_WORKFLOW
    from tether.sessions.state import SESSION_WORKFLOW

    try:
        runs = _open_existing(store).list_runs(status=status)
    except TetherError as exc:
        _fail(exc)
        return
    if not show_all:
        runs = [r for r in runs if r.workflow not in (MEMORY_WORKFLOW, SESSION_WORKFLOW)]
    now = time.time()  # allow-wallclock: leases are stamped with the workers' real clocks
    if as_json:
        print(json.dumps([{"run_id": r.run_id, "workflow": r.workflow, "status": r.status.value,
                           "events": r.last_seq, "created_at": r.created_at,
                           "updated_at": r.updated_at, "owner": r.owner, "epoch": r.epoch,
                           "lease_expires_at": r.lease_expires_at, "queue": r.queue,
                           "wake_at": r.wake_at, "lease": _lease_state(r.owner,
                                                                       r.lease_expires_at, now)}
                          for r in runs], indent=2))
        return
    table = Table()
    for column in ("run", "workflow", "queue", "status", "events", "duration", "owner (lease)"):
        table.add_column(column)
    for r in runs:
        table.add_row(escape(r.run_id), escape(r.workflow), escape(r.queue), r.status.value,
                      str(r.last_seq), f"{r.updated_at - r.created_at:.3f} s",
                      _owner_cell(r.owner, r.lease_expires_at, now))
    stdout().print(table)


def _lease_state(owner: str | None, expires_at: float | None, now: float) -> str:
    """``live``, ``expired`` or ``none``: whether a worker holds the run now."""
    if owner is None or expires_at is None:
        return "none"
    return "live" if now < expires_at else "expired"


def _owner_cell(owner: str | None, expires_at: float | None, now: float) -> str:
    """Who holds a run and for how long: ``host:42 (live, 8s left)``, ``host:42 (expired 3m
    ago)``, ``-`` (none)."""
    if owner is None or expires_at is None:
        return "-"
    left = expires_at - now
    lease = f"live, {_span(left)} left" if left > 0 else f"expired {_span(-left)} ago"
    return f"{escape(owner)} ({lease})"


def _span(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= 2 * size:
            return f"{seconds // size:.0f}{unit}"
    return f"{seconds:.0f}s"


@runs_app.command("show")
def runs_show(run_id: str, store: StoreOpt = "tether.db", as_json: JsonOpt = False) -> None:
    """Show a run's journal, event by event."""
    events = _read_run(store, run_id)
    if as_json:
        print(json.dumps([e.model_dump(mode="json") for e in events], indent=2))
        return
    _print_journal(events, run_id)


def _read_run(store: str, run_id: str) -> list[Event]:
    """A run's events, or a one-line error and exit 2 (unknown run, unreadable store)."""
    try:
        events = _open_existing(store).read(run_id)
    except TetherError as exc:
        _fail(exc)
    if not events:
        raise fail(f"no run {run_id!r} in {store}", kind="NoSuchRun")
    return events


def _print_journal(events: list[Event], run_id: str) -> None:
    table = Table(title=f"journal of {escape(run_id)}", box=box.SIMPLE_HEAD,
                  title_justify="left")
    for column in ("seq", "t+ s", "pos", "event", "detail"):
        table.add_column(column, overflow="fold")
    origin = events[0].at
    for e in events:
        table.add_row(str(e.seq), f"{e.at - origin:.3f}", str(getattr(e, "pos", "")), e.kind,
                      escape(describe(e)))
    stdout().print(table)


@store_app.command("check")
def store_check(store: StoreOpt = "tether.db", as_json: JsonOpt = False) -> None:
    """Verify every event's checksum and sequence (and SQLite's own integrity).

    Exits 0 when the store is sound; 1 when it is damaged, or the file named is not a tether
    store (empty — a store truncated to zero bytes —, not SQLite, or foreign tables); 2 when
    there is no store at that path (nothing is created). --json prints {"store", "ok",
    "problems"}.
    """
    try:
        opened = _open_existing(store)
        check = getattr(opened, "check", None)
        problems: list[str] = check() if check is not None else []
    except CorruptJournal as exc:
        problems = [str(exc).split("\n")[0]]
    except TetherError as exc:
        _fail(exc)
        return
    if as_json:
        print(json.dumps({"store": store, "ok": not problems, "problems": problems}, indent=2))
        raise typer.Exit(1 if problems else 0)
    console = stdout()
    for problem in problems:
        console.print(f"[red]corrupt:[/red] {escape(problem)}")
    if problems:
        raise typer.Exit(1)
    console.print(f"{escape(store)}: ok")


@app.command()
def trace(run_id: str, store: StoreOpt = "tether.db", as_json: JsonOpt = False) -> None:
    """Show a run as a trace: its model calls, tool calls, steps, sleeps, waits and decisions,
    each with start, duration, tokens, cost, retries and failures, then the run's totals.

    --json prints the shape documented in tether.tracing.render.trace_to_json.
    """
    from tether.tracing.render import render_trace, trace_to_json
    from tether.tracing.timeline import build_trace

    events = _read_run(store, run_id)
    view = build_trace(run_id, events)
    if as_json:
        print(json.dumps(trace_to_json(view), indent=2))
        return
    render_trace(view, stdout())


def describe(event: Event) -> str:
    """One line of what an event says."""
    data: dict[str, Any] = event.model_dump(mode="json", exclude={"seq", "at", "v", "kind", "pos"})
    if event.kind == "tool_intent":
        undo = f" undoes pos {data['compensates']}" if data.get("compensates") is not None else ""
        return (f"{data['tool']} [{data['effect']}] key={data['key']} "
                f"attempt={data['attempt']}{undo}")
    if event.kind in ("tool_result", "step"):
        name = data.get("tool") or data.get("name")
        suffix = " (reconciled)" if data.get("reconciled") else ""
        result = json.dumps(data.get("result"), separators=(",", ":"))
        return f"{name} → {result[:90]}{suffix}"
    if event.kind == "run_started":
        return f"{data['workflow']}({json.dumps(data['input'])}) seed={data['seed']}"
    if event.kind == "run_finished":
        return f"{data['status']} {data['reason']}".strip()
    if event.kind == "tool_ambiguous":
        return f"{data['tool']} attempt {data['attempt']}: {data['reason']}"
    if event.kind == "tool_retry":
        return (f"{data['tool']} attempt {data['attempt']} {data['failure']}: "
                f"{data['error'].get('message', '')[:60]}; retry in {data['delay_s']:g} s")
    if event.kind == "model_called":
        response = data["response"]
        usage = response.get("usage", {})
        said = ", ".join(c["name"] for c in response.get("tool_calls", ())) or \
            json.dumps(response.get("text", ""))[:60]
        return (f"{data['model']} → {said}  {usage.get('input_tokens', 0)}+"
                f"{usage.get('output_tokens', 0)} tokens ${data['cost_usd']:.4f}")
    if event.kind == "model_failed":
        return f"{data['model']} {data['failure']}: {data['error'].get('message', '')[:60]}"
    if event.kind == "decision":
        facts = data["data"]
        action = f" → {facts['action']}" if "action" in facts else ""
        cause = facts.get("failure") or facts.get("limit") or ""
        return f"{data['name']} {cause}{action}".strip()
    return json.dumps(data)[:90]


ByOpt = Annotated[str, typer.Option("--by", help="Who decides (default: $USER).")]
RoleOpt = Annotated[str | None, typer.Option(
    "--role", help="The role you decide in (checked against the role the policy asks for).")]
StepOpt = Annotated[int | None, typer.Option(
    "--step", help="Which held call, when a run holds several.")]
NoteOpt = Annotated[str, typer.Option("--note", help="Why; shown to the agent and journaled.")]


@approvals_app.command("list")
def approvals_list(store: StoreOpt = "tether.db", as_json: JsonOpt = False) -> None:
    """Calls waiting for a decision: run, step, tool, arguments, why, which role."""
    from tether.policy.approvals import Approvals

    try:
        pending = Approvals(_open_existing(store)).pending()
    except TetherError as exc:
        _fail(exc)
    if as_json:
        print(json.dumps([p.as_data() for p in pending], indent=2))
        return
    console = stdout()
    if not pending:
        console.print("no approvals waiting")
        return
    for p in pending:
        console.print(f"[bold]{escape(p.run_id)}[/bold] step {p.step}: {escape(p.tool)} needs "
                      f"[bold]{escape(p.role or 'any role')}[/bold] (for {escape(p.principal)})")
        console.print(f"  args: {escape(json.dumps(p.args))}")
        console.print(f"  why:  {escape(p.reason)}")


def _decide(approve: bool, run_id: str, store: str, by: str, role: str | None,
            step: int | None, note: str, as_json: bool) -> None:
    from tether.policy.approvals import Approvals

    who = by or os.environ.get("USER") or "cli"
    try:
        approvals = Approvals(_open_existing(store))
        decided = (approvals.approve if approve else approvals.deny)(
            run_id, by=who, role=role, note=note, step=step)
    except TetherError as exc:
        _fail(exc)
    verb = "approved" if approve else "denied"
    if as_json:
        print(json.dumps({"decision": verb, "by": who, "as_role": role, "note": note,
                          **decided.as_data()}, indent=2))
        return
    stdout().print(escape(f"{verb}: {decided.tool} at step {decided.step} of {run_id} by {who}"
                          f"{f' as {role}' if role else ''}; the run continues when a worker "
                          "resumes it"))


@app.command()
def approve(run_id: str, store: StoreOpt = "tether.db", by: ByOpt = "", role: RoleOpt = None,
            step: StepOpt = None, note: NoteOpt = "", as_json: JsonOpt = False) -> None:
    """Approve a call held by policy; a worker's resume/recover then runs it."""
    _decide(True, run_id, store, by, role, step, note, as_json)


@app.command()
def deny(run_id: str, store: StoreOpt = "tether.db", by: ByOpt = "", role: RoleOpt = None,
         step: StepOpt = None, note: NoteOpt = "", as_json: JsonOpt = False) -> None:
    """Refuse a call held by policy; the agent is told who refused and why."""
    _decide(False, run_id, store, by, role, step, note, as_json)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
