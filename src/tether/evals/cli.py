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

import json
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import typer
from rich.markup import escape

from tether.cli_options import MAX_SEEDS, MAX_WORKERS
from tether.errors import TetherError
from tether.evals.suites import BUILTIN_SCENARIOS, SUITES
from tether.terminal import fail, stdout

__all__ = ["BACKEND_CHOICES", "MAX_SEEDS", "MAX_WORKERS", "Backend", "eval_app"]


#: Where episodes run (tether.evals.campaign.BACKENDS, as a type so --help lists them).
Backend = Literal["process", "ray"]
BACKEND_CHOICES: tuple[str, ...] = get_args(Backend)

eval_app = typer.Typer(no_args_is_help=True, help="Reliability campaigns.")


@eval_app.command("run")
def eval_run(
    scenarios: Annotated[list[Path] | None, typer.Argument(
        help="Base scenario files (default: the built-in refund and calendar).")] = None,
    suite: Annotated[list[str] | None, typer.Option(
        help=f"Suites to run (repeatable; default: all): {', '.join(SUITES)}.")] = None,
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
    backend: Annotated[Backend, typer.Option(
        help="Where episodes run: process (a pool on this machine) or ray (Ray tasks; "
             "pip install 'tether\\[ray]'). The same records and results either way.")]
    = "process",
    address: Annotated[str | None, typer.Option(
        help="With --backend ray: the Ray cluster to connect to (host:port, ray://..., or "
             "auto); without it a local Ray is started.")] = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print the campaign's results and the gate's verdict as JSON; the "
                       "exit status is the same.")] = False,
) -> None:
    """Run a campaign; exit 1 if tether broke an invariant or regressed against a baseline.

    Exits 0 when tether's harnesses broke no invariant and nothing regressed, 1 when one did or a
    requested suite could not be applied to the agent, 2 on bad input (a scenario, agent,
    harness file or baseline that does not load; nothing is written to --out then).

    --json prints {"passed", "failures", "files", "results", "comparisons", "baseline"} on
    stdout and nothing else there ("results": the campaign's results as results.json holds
    them; "failures": why the gate failed, one line each).
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
        raise fail(exc) from exc
    try:
        _check_backend(backend, address)  # before anything is written: bad input
    except TetherError as exc:
        raise fail(exc) from exc
    unknown = sorted(set(suites) - set(SUITES))
    if unknown:
        raise fail(f"unknown suite(s) {', '.join(unknown)}; expected {', '.join(SUITES)}")
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
        raise fail(exc) from exc
    # The gate is on tether's harnesses; naive is the baseline that is expected to break.
    gated = {s.name for s in specs if s.base != "naive"}
    failures = [f"the {c.harness} harness broke invariants in {c.violations} {c.suite} "
                "episode(s)" for c in results.cells if c.harness in gated and c.violations]
    # A suite that could not be applied to this agent tested nothing: the gate must not pass.
    failures += [f"suite {name} could not be applied: {reason}"
                 for name, reason in sorted(results.not_applied.items())]
    pairs = [(chosen[0], other, compare_harnesses(results, chosen[0], other))
             for other in chosen[1:]]
    rows = compare(before, results) if before is not None else []
    regressions = []
    for row in gate_failures(rows):
        where = f"{row.harness}/{row.suite}"
        regressions.append(f"{where} regressed significantly against the baseline"
                        if row.verdict == "worse" else
                        f"{where}: the baseline judged {row.episodes_a} episode(s), this "
                        f"campaign none ({row.inconclusive_b} inconclusive: the suite's faults "
                        "never reached the agent)")
    if as_json:
        print(json.dumps(_as_data(results, out, failures + regressions, pairs, rows, baseline),
                         indent=2))
        raise typer.Exit(1 if failures or regressions else 0)
    console = stdout()
    print_report(results, console)
    for failure in failures:
        console.print(f"[red]FAIL[/red] {escape(failure)}")
    for first, other, compared in pairs:
        console.print(f"\n{escape(other)} against {escape(first)} (same seeds and faults):")
        render_comparison(compared, console)
    if before is not None:
        render_comparison(rows, console)
    for regression in regressions:
        console.print(f"[red]FAIL[/red] {escape(regression)}")
    raise typer.Exit(1 if failures or regressions else 0)


def _as_data(results: Any, out: Path, failures: list[str], pairs: list[Any], rows: list[Any],
             baseline: Path | None) -> dict[str, Any]:
    """What ``eval run --json`` prints: the gate's verdict and the campaign's results."""
    files = {"results": str(out / "results.json"), "report": str(out / "report.html"),
             "episodes": str(out / "episodes.jsonl")}
    return {"passed": not failures, "failures": failures, "files": files,
            "results": results.model_dump(mode="json"),
            "comparisons": [{"a": a, "b": b, "rows": [row.as_data() for row in compared]}
                            for a, b, compared in pairs],
            "baseline": None if baseline is None else {
                "file": str(baseline), "rows": [row.as_data() for row in rows]}}


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
