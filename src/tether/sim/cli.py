"""``tether sim run`` and ``tether sim replay``: one episode, printed deterministically.

Everything printed comes from the episode's virtual time and seeded draws, so two runs of one
seed print the same text (``diff`` them); wall-clock figures appear only with ``--timing``.
The headline is ``PASS`` when every invariant holds, the run completed and every task check (the
scenario's ``success``, else the agent's reading of the task) holds, ``NOT DONE`` when the
invariants hold but the task was not done as asked (or the run escalated or stopped),
``UNCHECKED`` when nothing checks that the task was done (no success checks, or only checks that
forbid, which hold when nothing happened), ``INCONCLUSIVE`` when the episode cannot judge the
agent, and ``FAIL`` when an invariant is violated; each invariant and task check is printed
below it.

Exit status (``run`` and ``replay``): 0 when every invariant holds — whether the task was done is
in the output (the headline, the ``task`` lines, ``task_checks`` in ``--json``), not in the
status, so a safe run that gave up exits 0 with ``NOT DONE`` — 1 when an invariant is violated,
2 on bad input (the file, key path, expected and found) or a check that could not judge, 3 when
the episode itself cannot judge the agent (``INCONCLUSIVE``: a replayed user or recorded tool
was asked beyond its recording).
"""

from __future__ import annotations

import contextlib
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from tether.cli_options import JsonOpt
from tether.errors import TetherError
from tether.evals.compare import compare, gate_failures, load_results, render_comparison, unmatched
from tether.sim.agent_ref import agent_spec_of, load_agent_factory
from tether.sim.episode import EpisodeResult, run_episode
from tether.sim.harness_spec import resolve_harness
from tether.sim.scenario import load_scenario
from tether.terminal import fail, plain, stderr, stdout
from tether.tracing import build_trace
from tether.tracing.render import render_trace

__all__ = ["sim_app"]

sim_app = typer.Typer(no_args_is_help=True, help="Run simulated episodes.")

#: Seeds are 0 <= seed < 2**63 (what every seeded draw and record takes); others exit 2.
MAX_SEED = 2**63 - 1
SeedOpt = Annotated[int, typer.Option("--seed", min=0, max=MAX_SEED,
                                      help="The episode's seed, 0 <= seed < 2**63.")]
HarnessOpt = Annotated[str, typer.Option(
    "--harness", help="naive, default, or a variant defined in a --harnesses file.")]
AgentOpt = Annotated[str | None, typer.Option(
    "--agent", help="The agent to test instead of the scenario's: a short name, "
                    "package.module:function, or path/to/file.py:function.")]
HarnessFilesOpt = Annotated[list[Path] | None, typer.Option(
    "--harnesses", help="A YAML file of harness variants (repeatable).")]
TimingOpt = Annotated[bool, typer.Option("--timing", help="Also print wall-clock time.")]


def _run(scenario_path: Path, seed: int, harness: str, agent: str | None = None,
         harness_files: tuple[str, ...] = ()) -> tuple[EpisodeResult, float]:
    try:
        scenario = load_scenario(scenario_path)
        resolve_harness(harness, harness_files)
        if agent is not None:
            load_agent_factory(agent, Path.cwd())
    except TetherError as exc:
        raise fail(exc) from exc
    started = time.perf_counter()  # allow-wallclock: --timing only, never in the output
    try:
        result = run_episode(scenario, seed, harness,
                             agent=agent_spec_of(agent, Path.cwd()) if agent else None,
                             harness_files=harness_files)
    except TetherError as exc:
        # Found while running (a python invariant that failed, say): still name the file.
        where = str(scenario_path)
        message = str(exc) if str(exc).startswith(where) else f"{where}: {exc}"
        raise fail(message, kind=type(exc).__name__) from exc
    return result, time.perf_counter() - started  # allow-wallclock: --timing only


def replay_command(scenario: Path, seed: int, harness: str, agent: str | None = None,
                   harness_files: tuple[str, ...] = ()) -> str:
    """The command that replays one episode (naming the agent when it was overridden)."""
    command = f"tether sim replay {shlex.quote(str(scenario))} --seed {seed} " \
        f"--harness {shlex.quote(harness)}"
    if agent:
        command += f" --agent {shlex.quote(agent)}"
    return command + "".join(f" --harnesses {shlex.quote(f)}" for f in harness_files)


_COLOURS = {"FAIL": "red", "PASS": "green"}


def _print(result: EpisodeResult, scenario: Path | None, agent: str | None = None,
           harness_files: tuple[str, ...] = ()) -> None:
    """Print the judged episode; ``scenario=None`` (a served world) prints no replay line."""
    console = stdout()
    word = result.headline
    colour = _COLOURS.get(word, "yellow")
    mark = f"[{colour}]{word}[/{colour}]"
    console.print(f"{mark}  {escape(result.scenario)}  seed={result.seed}  "
                  f"harness={escape(result.harness)}  status={result.status}")
    console.print(f"  agent: {escape(_shown(result.agent))}")
    for why in result.inconclusive:
        console.print(f"  inconclusive: {escape(why)}")
    if result.answer:
        console.print(f"  answer: {escape(result.answer)}")
    if result.reason:
        console.print(f"  reason: {escape(result.reason)}")
    for verdict in result.verdicts:
        sign = "[green]ok  [/green]" if verdict.holds else "[red]FAIL[/red]"
        detail = f"   {escape(verdict.detail)}" if verdict.detail else ""
        console.print(f"  {sign} {escape(verdict.invariant)}{detail}")
    if not result.task_checks:
        console.print("  task: not checked (no success checks)")
    elif not result.checked:
        console.print("  task: not checked (every success check only forbids; none requires the "
                      "task's effect or state)")
    for check in result.task_checks:
        sign = "[green]ok  [/green]" if check.holds else "[yellow]NOT [/yellow]"
        detail = f"   {escape(check.detail)}" if check.detail else ""
        console.print(f"  task {sign} {escape(check.invariant)}{detail}")
    for firing in result.firings:
        console.print(escape(f"  fault: {firing.kind} on {firing.target} (call {firing.call})"))
    console.print(f"  {result.model_calls} model calls, {result.tool_calls} tool calls, "
                  f"{result.crashes} crash(es), {result.virtual_duration_s:.1f} s virtual, "
                  f"{len(result.ledger)} effects")
    for effect in result.ledger:
        plain(console, f"  effect {effect['seq']}: {effect['service']}.{effect['operation']} "
                       f"{effect['key']}")
    if result.outcome is not None and result.outcome.events:
        render_trace(build_trace(f"{result.scenario}-{result.seed}", result.outcome.events),
                     console)
    elif result.outcome is not None:
        for entry in result.outcome.transcript:
            console.print(f"  naive: {escape(json.dumps(entry, sort_keys=True))}")
    console.print(f"  journal {result.journal_digest[:16]}  ledger {result.ledger_digest[:16]}")
    if scenario is not None and (not result.ok or not result.done or result.inconclusive):
        command = replay_command(scenario, result.seed, result.harness,
                                 result.agent if agent else None, harness_files)
        console.print(f"replay: {escape(command)}")


def _shown(spec: str) -> str:
    """An agent spec as printed: a file under the working directory relative to it."""
    where, sep, name = spec.rpartition(":")
    if sep and where.endswith(".py"):
        try:
            return f"{Path(where).relative_to(Path.cwd())}:{name}"
        except ValueError:
            return spec
    return spec


def _status(result: EpisodeResult) -> int:
    """1: an invariant broke; 3: the episode could not judge the agent; 0: otherwise."""
    if not result.ok:
        return 1
    return 3 if result.inconclusive else 0


def _files(given: list[Path] | None) -> tuple[str, ...]:
    return tuple(str(p.resolve()) for p in given or ())


@sim_app.command("run")
def sim_run(scenario: Path, seed: SeedOpt = 0, harness: HarnessOpt = "default",
            agent: AgentOpt = None, harnesses: HarnessFilesOpt = None,
            as_json: JsonOpt = False, timing: TimingOpt = False) -> None:
    """Run one episode and judge it.

    Prints PASS (invariants hold, task done), NOT DONE (invariants hold, task not done as asked),
    FAIL (an invariant violated) or INCONCLUSIVE (the episode left its recording). Exits 0 when
    every invariant holds (PASS or NOT DONE), 1 when one is violated, 2 on bad input, 3 when
    inconclusive.
    """
    files = _files(harnesses)
    result, wall_s = _run(scenario, seed, harness, agent, files)
    if as_json:
        print(json.dumps(result.as_data(), indent=2, sort_keys=True))
    else:
        _print(result, scenario, agent, files)
        if timing:
            stdout().print(f"  wall time {wall_s * 1000:.1f} ms")
    raise typer.Exit(_status(result))


@sim_app.command("replay")
def sim_replay(scenario: Path, seed: SeedOpt = 0, harness: HarnessOpt = "default",
               agent: AgentOpt = None, harnesses: HarnessFilesOpt = None,
               as_json: JsonOpt = False) -> None:
    """Run a seed twice and check both runs wrote the same journal and ledger.

    --json prints {"identical", "episode"} (the episode as sim run --json prints it)."""
    files = _files(harnesses)
    first, _ = _run(scenario, seed, harness, agent, files)
    second, _ = _run(scenario, seed, harness, agent, files)
    same = (first.journal_digest, first.ledger_digest) == \
        (second.journal_digest, second.ledger_digest)
    if as_json:
        print(json.dumps({"identical": same, "episode": second.as_data()}, indent=2,
                         sort_keys=True))
        raise typer.Exit(2 if not same else _status(second))
    _print(second, scenario, agent, files)
    stdout().print("replay: identical journal and ledger" if same else
                  "[red]replay: the runs differ[/red] (the simulation is not deterministic)")
    raise typer.Exit(2 if not same else _status(second))


@sim_app.command("compare")
def sim_compare(
        a: Annotated[Path, typer.Argument(metavar="A.json", help="The baseline results.")],
        b: Annotated[Path, typer.Argument(metavar="B.json", help="The candidate results.")],
        as_json: JsonOpt = False) -> None:
    """Compare two campaigns cell by cell; exit 1 if any cell got significantly worse.

    Exits 0 when no cell is worse, 1 when one is, 2 on bad input or no cell in common.
    """
    try:
        baseline, candidate = load_results(a), load_results(b)
    except TetherError as exc:
        raise fail(exc) from exc
    rows = compare(baseline, candidate)
    only_a, only_b = unmatched(baseline, candidate)
    if not rows:
        raise fail(f"{a} and {b} have no (harness, suite) cell in common; compare results of "
                   "the same campaign")
    regression = bool(gate_failures(rows))  # worse, or no longer conclusive
    if as_json:
        print(json.dumps({"a": str(a), "b": str(b), "regression": regression,
                          "comparisons": [row.as_data() for row in rows],
                          "only_in_a": only_a, "only_in_b": only_b}, indent=2, sort_keys=True))
    else:
        console = stdout()
        render_comparison(rows, console)
        for side, cells in (("A", only_a), ("B", only_b)):
            if cells:
                console.print(f"only in {side} (not compared): {escape(', '.join(cells))}")
    raise typer.Exit(1 if regression else 0)


@sim_app.command("capture")
def sim_capture(
        run: Annotated[str, typer.Argument(metavar="RUN", help="The recorded run's id.")],
        store: Annotated[str, typer.Option(
            "--store", help="The store holding the run: sqlite:///FILE, a file path, or "
                            "postgresql://…")],
        agent: Annotated[str | None, typer.Option(
            "--agent", help="The agent that ran it: package.module:function or "
                            "path/to/file.py:function (needed unless the run recorded it).")
        ] = None,
        out: Annotated[Path | None, typer.Option(
            "--out", help="Write the scenario to this file (default: print it).")] = None,
        as_json: Annotated[bool, typer.Option(
            "--json", help='Print {"run_id", "out", "scenario"} (the scenario as YAML text).')]
        = False,
) -> None:
    """Turn a recorded run (a production incident) into a scenario that re-runs it.

    The scenario replays the model's recorded answers and the tools' recorded answers, and
    reproduces the faults the run met; run it with ``tether sim run FILE --harness naive`` or
    ``default``. Exits 0 when written, 2 on bad input (no such store or run, no model calls,
    unknown agent).
    """
    from tether.sim.capture import capture_run, scenario_yaml

    try:
        text = scenario_yaml(capture_run(store, run, agent=agent,
                                           out_dir=out.parent if out else None))
    except TetherError as exc:
        raise fail(exc) from exc
    if out is not None:
        try:
            out.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise fail(f"cannot write {out}: {exc.strerror or exc}", kind="OSError") from exc
    if as_json:
        print(json.dumps({"run_id": run, "out": None if out is None else str(out),
                          "scenario": text}, indent=2))
    elif out is None:
        print(text, end="")
    else:
        plain(stdout(), f"wrote {out}: run it with tether sim run {shlex.quote(str(out))} "
                        "--harness naive (or default)")


PortOpt = Annotated[int, typer.Option("--port", min=0, max=65535,
                                      help="The port to serve on (0: a free one, printed).")]
HostOpt = Annotated[str, typer.Option(
    "--host", help="The address to bind (default 127.0.0.1; anything else is reachable "
                   "from other machines, without authentication).")]
StdioOpt = Annotated[bool, typer.Option(
    "--stdio", help="Serve the world's MCP tools on stdin/stdout instead of HTTP (the "
                    "verdict goes to stderr).")]


@sim_app.command("serve")
def sim_serve(scenario: Path, seed: SeedOpt = 0, port: PortOpt = 0,
              host: HostOpt = "127.0.0.1", stdio: StdioOpt = False,
              as_json: JsonOpt = False) -> None:
    """Serve the scenario's world over HTTP until SIGINT or SIGTERM, then print its verdict.

    Prints one line per address, NAME URL (each service's base URL, mcp, openapi,
    verdict), for an agent in any process or language; the scenario's own agent is not
    run. The scenario's faults apply at the wire, decided by the seed's draws on each
    operation's call numbers; the agent's requests, their order and timing are its own, so a
    session repeats only if the agent does. The virtual clock moves with latency faults and
    POST /_tether/clock/advance {"seconds": N}, never with wall time. On shutdown the
    verdict is printed as tether sim run prints it, and the exit status is its: 0 when
    every invariant holds, 1 when one is violated, 3 when inconclusive (no request reached
    the world, none of its faults fired, or it asks what the wire cannot test), 2 on bad
    input. --json prints JSON Lines: {"addresses": {NAME: URL}} once listening, then the
    verdict on one line.
    """
    from tether.sim.episode import environment_for
    from tether.sim.wire import serve as served

    try:
        env = environment_for(load_scenario(scenario), seed)
        sock = None if stdio else served.listen(host, port)
    except TetherError as exc:
        raise fail(exc) from exc
    try:
        if sock is None:
            from tether.sim.wire.mcp_face import run_stdio

            run_stdio(env)
        else:
            if not served.is_loopback(host):
                stderr().print(
                    f"[red]WARNING: the simulated world is served on {escape(host)}, beyond "
                    "this machine: anyone who can reach it can read and change it, with no "
                    "authentication. Use --host 127.0.0.1 unless you mean it.[/red]")
            with served.StopSignals() as stops:
                addresses = served.addresses(env, served.root_of(sock))
                if as_json:
                    print(json.dumps({"addresses": dict(addresses)}), flush=True)
                for name, url in () if as_json else addresses:
                    print(f"{name:<9} {url}", flush=True)
                stderr().print("serving; SIGINT (Ctrl+C) or SIGTERM stops and prints the "
                                  "verdict")
                served.run(env, sock, stops)
    except TetherError as exc:
        raise fail(exc) from exc
    try:
        result = served.judge(env)
    except TetherError as exc:  # a check that cannot judge: bad input, as for sim run
        raise fail(exc) from exc
    # Under --stdio, stdout was the MCP channel: the verdict goes to stderr.
    with contextlib.redirect_stdout(sys.stderr if stdio else sys.stdout):
        if as_json:  # one line, after the addresses' line: JSON Lines
            print(json.dumps(served.verdict_data(result), sort_keys=True))
        else:
            _print(result, None)
    raise typer.Exit(_status(result))


@sim_app.command("verdict")
def sim_verdict(
        url: Annotated[str, typer.Option(
            "--url", help="The served world's address (as tether sim serve printed it) or "
                          "its verdict URL.")],
        as_json: JsonOpt = False) -> None:
    """Ask a running tether sim serve for its verdict now, and exit with its status.

    Judged as tether sim run judges: 0 when every invariant holds (PASS, NOT DONE,
    UNCHECKED), 1 when one is violated (FAIL), 3 when inconclusive, 2 when the server cannot
    be reached or did not answer a verdict.
    """
    from tether.sim.wire.serve import fetch_verdict, result_of

    try:
        data = fetch_verdict(url)
        result = result_of(data)
    except TetherError as exc:
        raise fail(exc) from exc
    if as_json:
        print(json.dumps(data, indent=2, sort_keys=True))
    else:
        _print(result, None)
    raise typer.Exit(_status(result))

