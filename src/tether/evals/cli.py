"""``tether eval run``: a campaign as a CI gate.

Exit status: 0 when the tether harnesses broke no invariant (and, with ``--baseline``, no cell
regressed significantly against the baseline's ``results.json``), 1 on a violation, a
regression, a cell conclusive in the baseline and inconclusive now, or a requested suite that
could not be applied to the agent (its cells are ``inconclusive``; a suite that tested nothing
is not a pass), 2 on bad input (including
``--seeds`` or ``--workers`` out of range, and ``--backend ray`` without Ray installed). Every
scenario file, the agent, the harness files and the baseline are read before the campaign
starts, so bad input creates nothing in ``--out``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from tether.errors import TetherError
from tether.evals.suites import BUILTIN_SCENARIOS, SUITES

__all__ = ["MAX_SEEDS", "MAX_WORKERS", "eval_app"]

#: The most seeds per cell a campaign takes (a larger number is a typo, not a campaign: the
#: jobs would not fit in memory).
MAX_SEEDS = 100_000
#: The most worker processes.
MAX_WORKERS = 1024

eval_app = typer.Typer(no_args_is_help=True, help="Reliability campaigns.")
console = Console(width=110, highlight=False, emoji=False)


@eval_app.command("run")
def eval_run(
    scenarios: Annotated[list[Path] | None, typer.Argument(
        help="Base scenario files (default: the built-in refund and calendar).")] = None,
    suite: Annotated[list[str] | None, typer.Option(help="Suites to run (default: all).")] = None,
    harness: Annotated[list[str] | None, typer.Option(
        help="Harnesses: naive, default, or variants from --harnesses (default: naive and "
             "default). Two or more are compared cell by cell.")] = None,
    agent: Annotated[str | None, typer.Option(
        help="The agent to test instead of each scenario's: a short name, "
             "package.module:function, or path/to/file.py:function.")] = None,
    harnesses: Annotated[list[Path] | None, typer.Option(
        help="A YAML file of harness variants (repeatable).")] = None,
    seeds: Annotated[int, typer.Option(min=1, max=MAX_SEEDS,
                                       help="Seeds per scenario, suite and harness.")] = 20,
    out: Annotated[Path, typer.Option(help="Where results go.")] = Path("tether-eval"),
    baseline: Annotated[Path | None, typer.Option(
        help="A previous results.json: fail on a significant regression.")] = None,
    workers: Annotated[int | None, typer.Option(min=1, max=MAX_WORKERS,
                                                help="Processes (default: all cores); with "
                                                     "--backend ray and no --address, the "
                                                     "local Ray's CPUs.")] = None,
    backend: Annotated[str, typer.Option(
        help="Where episodes run: process (a pool on this machine) or ray (Ray tasks; "
             "pip install 'tether[ray]'). The same records and results either way.")] = "process",
    address: Annotated[str | None, typer.Option(
        help="With --backend ray: the Ray cluster to connect to (host:port, ray://..., or "
             "auto); without it a local Ray is started.")] = None,
) -> None:
    """Run a campaign; exit 1 if tether broke an invariant or regressed against a baseline.

    Exits 0 when tether's harnesses broke no invariant and nothing regressed, 1 when one did or a
    requested suite could not be applied to the agent, 2 on bad input (a scenario, agent,
    harness file or baseline that does not load; nothing is written to --out then).
    """
    from tether.evals.compare import (
        compare,
        compare_harnesses,
        gate_failures,
        load_results,
        render_comparison,
    )
    from tether.evals.report import print_report
    from tether.evals.run import run_full_campaign
    from tether.sim.agent_ref import agent_spec_of, load_agent_factory
    from tether.sim.harness_spec import resolve_harness
    from tether.sim.scenario import load_scenario

    suites = suite or list(SUITES)
    chosen = list(dict.fromkeys(harness or ["naive", "default"]))
    files = tuple(str(p.resolve()) for p in harnesses or ())
    try:
        specs = [resolve_harness(name, files) for name in chosen]
        agent_spec = agent_spec_of(agent, Path.cwd()) if agent else ""
        if agent:
            load_agent_factory(agent_spec)
    except TetherError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2) from exc
    try:
        _check_backend(backend, address)  # before anything is written: bad input
    except TetherError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2) from exc
    unknown = sorted(set(suites) - set(SUITES))
    if unknown:
        console.print(f"[red]error:[/red] unknown suite(s) {escape(', '.join(unknown))}; "
                      f"expected {', '.join(SUITES)}", soft_wrap=True)
        raise typer.Exit(2)
    bases = scenarios or list(BUILTIN_SCENARIOS)
    try:
        # Every input is read before anything is written: bad input leaves --out untouched.
        for path in bases:
            loaded = load_scenario(path)
            if not agent:  # each scenario's own agent must load too
                load_agent_factory(loaded.agent, Path(path).resolve().parent,
                                   variables=loaded.variables)
        before = load_results(baseline) if baseline is not None else None
        results = run_full_campaign(out, scenarios=bases, suites=suites, harnesses=chosen,
                                    seeds=seeds, workers=workers, name="tether eval",
                                    agent=agent_spec, harness_files=files, backend=backend,
                                    address=address)
    except TetherError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2) from exc
    print_report(results, console)
    # The gate is on tether's harnesses; naive is the baseline that is expected to break.
    gated = {s.name for s in specs if s.base != "naive"}
    broken = [c for c in results.cells if c.harness in gated and c.violations]
    failed = bool(broken)
    for cell in broken:
        console.print(f"[red]FAIL[/red] the {cell.harness} harness broke invariants in "
                      f"{cell.violations} {cell.suite} episode(s)")
    # A suite that could not be applied to this agent tested nothing: the gate must not pass.
    for suite_name, reason in sorted(results.not_applied.items()):
        console.print(f"[red]FAIL[/red] suite {escape(suite_name)} could not be applied: "
                      f"{escape(reason)}", soft_wrap=True)
        failed = True
    for other in chosen[1:] if len(chosen) > 1 else ():
        console.print(f"\n{escape(other)} against {escape(chosen[0])} (same seeds and faults):")
        render_comparison(compare_harnesses(results, chosen[0], other), console)
    if before is not None:
        rows = compare(before, results)
        render_comparison(rows, console)
        for row in gate_failures(rows):
            where = f"{escape(row.harness)}/{escape(row.suite)}"
            if row.verdict == "worse":
                console.print(f"[red]FAIL[/red] {where} regressed significantly against the "
                              "baseline")
            else:
                console.print(f"[red]FAIL[/red] {where}: the baseline judged {row.episodes_a} "
                              f"episode(s), this campaign none ({row.inconclusive_b} "
                              "inconclusive: the suite's faults never reached the agent)")
            failed = True
    raise typer.Exit(1 if failed else 0)


def _check_backend(backend: str, address: str | None) -> None:
    """A :class:`UsageError` for a backend that is unknown or not installed, or an address
    without Ray or where nothing answers."""
    from tether.errors import UsageError
    from tether.evals.campaign import BACKENDS
    from tether.evals.ray_backend import check_address, import_ray

    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend}; expected {' or '.join(BACKENDS)}")
    if address is not None and backend != "ray":
        raise UsageError("--address is the Ray cluster to connect to: it needs --backend ray")
    if backend == "ray":
        import_ray()
    if address is not None:
        check_address(address)
