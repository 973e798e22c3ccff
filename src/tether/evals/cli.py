"""``tether eval run``: a campaign as a CI gate.

Exit status: 0 when the tether harness broke no invariant (and, with ``--baseline``, no cell
regressed significantly against the baseline's ``results.json``), 1 on a violation or a
regression, 2 on bad input (including ``--seeds`` or ``--workers`` out of range). Every scenario
file and the baseline are read before the campaign starts, so bad input creates nothing in
``--out``.
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
        help="Harnesses (default: naive and default).")] = None,
    seeds: Annotated[int, typer.Option(min=1, max=MAX_SEEDS,
                                       help="Seeds per scenario, suite and harness.")] = 20,
    out: Annotated[Path, typer.Option(help="Where results go.")] = Path("tether-eval"),
    baseline: Annotated[Path | None, typer.Option(
        help="A previous results.json: fail on a significant regression.")] = None,
    workers: Annotated[int | None, typer.Option(min=1, max=MAX_WORKERS,
                                                help="Processes (default: all cores).")] = None,
) -> None:
    """Run a campaign; exit 1 if tether broke an invariant or regressed against a baseline.

    Exits 0 when tether's harness broke no invariant and nothing regressed, 1 when it did, 2 on
    bad input (a scenario or baseline that does not load; nothing is written to --out then).
    """
    from tether.evals.compare import compare, load_results, render_comparison
    from tether.evals.report import print_report
    from tether.evals.run import run_full_campaign
    from tether.sim.scenario import load_scenario

    suites = suite or list(SUITES)
    harnesses = harness or ["naive", "default"]
    bad_harness = sorted(set(harnesses) - {"naive", "default"})
    if bad_harness:
        console.print(f"[red]error:[/red] unknown harness(es) {escape(', '.join(bad_harness))}; "
                      "expected naive, default", soft_wrap=True)
        raise typer.Exit(2)
    unknown = sorted(set(suites) - set(SUITES))
    if unknown:
        console.print(f"[red]error:[/red] unknown suite(s) {escape(', '.join(unknown))}; "
                      f"expected {', '.join(SUITES)}", soft_wrap=True)
        raise typer.Exit(2)
    bases = scenarios or list(BUILTIN_SCENARIOS)
    try:
        # Every input is read before anything is written: bad input leaves --out untouched.
        for path in bases:
            load_scenario(path)
        before = load_results(baseline) if baseline is not None else None
        results = run_full_campaign(out, scenarios=bases, suites=suites, harnesses=harnesses,
                                    seeds=seeds, workers=workers, name="tether eval")
    except TetherError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2) from exc
    print_report(results, console)
    broken = [c for c in results.cells if c.harness == "default" and c.violations]
    failed = bool(broken)
    for cell in broken:
        console.print(f"[red]FAIL[/red] tether broke invariants in {cell.violations} "
                      f"{cell.suite} episode(s)")
    if before is not None:
        rows = compare(before, results)
        render_comparison(rows, console)
        if any(r.verdict == "worse" for r in rows):
            console.print("[red]FAIL[/red] a significant regression against the baseline")
            failed = True
    raise typer.Exit(1 if failed else 0)
