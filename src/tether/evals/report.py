"""The terminal report of a campaign: the harness × suite comparison and the worst failures.

Rates are over a cell's conclusive episodes, with the inconclusive ones counted beside them; a
cell none of whose episodes met its suite's faults reads ``inconclusive``, never a rate.
"""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tether.evals.results import CampaignResults, Cell

__all__ = ["print_report"]


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.0f}%"


def _rates(cell: Cell) -> tuple[str, str, str]:
    """The pass rate, its interval and the done rate, or ``inconclusive`` and dashes."""
    if cell.pass_rate is None or cell.interval is None or not cell.conclusive:
        return "[yellow]inconclusive[/yellow]", "—", "—"
    low, high = cell.interval
    return (_pct(cell.pass_rate), f"{low * 100:.0f}–{high * 100:.0f}%",
            _pct(cell.task_success / cell.conclusive))


def print_report(results: CampaignResults, console: Console, *, failures: int = 5) -> None:
    """The comparison table, the headline differences, and the worst failures."""
    info = results.campaign
    console.print(f"[bold]{escape(info.name)}[/bold]: {info.episodes:,} episodes — "
                  f"{len(info.scenarios)} scenarios × {len(info.suites)} suites × "
                  f"{len(info.harnesses)} harnesses × {info.seeds} seeds")
    # One space between columns: the table keeps its twelve columns within 110 characters.
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for column, justify in (("suite", "left"), ("harness", "left"), ("pass", "right"),
                            ("95% CI", "right"), ("inconcl.", "right"), ("viol.", "right"),
                            ("dup.", "right"), ("done", "right"), ("stopped", "right"),
                            ("bad", "right"), ("recov.", "right"), ("pass^4", "right")):
        table.add_column(column, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for cell in results.cells:
        rate, interval, done = _rates(cell)
        table.add_row(escape(cell.suite), escape(cell.harness), rate, interval,
                      f"{cell.inconclusive}/{cell.episodes}" if cell.inconclusive else "0",
                      str(cell.violations), str(cell.duplicate_effects), done, str(cell.stopped),
                      str(cell.unacceptable_process), _pct(cell.recovery_rate),
                      _pct(cell.pass_k.get("4")))
    console.print(table)
    console.print("  viol.: invariant violated · dup.: duplicate effects · done: task done as asked"
                  "\n  bad: done by a rejected process · stopped: escalated or stopped at a "
                  "budget on purpose, with the reason\n  recov.: faulted episodes done safely "
                  "· inconcl.: episodes whose suite faults never reached the agent\n  (or whose "
                  "suite could not be applied), left out of every rate")
    for suite, reason in results.not_applied.items():
        console.print(f"[yellow]not applied[/yellow] {escape(suite)}: {escape(reason)}",
                      soft_wrap=True)
    by = {(c.harness, c.suite): c for c in results.cells}
    for suite in info.suites:
        naive, default = by.get(("naive", suite)), by.get(("default", suite))
        if naive is None or default is None:
            continue
        console.print(f"  {suite}: invariant violations {naive.violations} (naive) → "
                      f"{default.violations} (tether); duplicate effects "
                      f"{naive.duplicate_effects} → {default.duplicate_effects}")
    if results.by_fault:
        kinds = sorted({f.fault for f in results.by_fault})
        rows = {(f.harness, f.fault): f for f in results.by_fault}
        console.print("\n[bold]By fault[/bold] (duplicate-effect rate → recovery rate):")
        for kind in kinds:
            parts = [f"{h} {rows[(h, kind)].duplicate_rate * 100:.0f}% → "
                     f"{rows[(h, kind)].recovery_rate * 100:.0f}%"
                     for h in info.harnesses if (h, kind) in rows]
            console.print(f"  {kind:<20} " + "   ".join(parts))
    if results.failures:
        console.print("\n[bold]Worst failures[/bold] (shrunk to their essential faults):")
    for case in results.failures[:failures]:
        base = case.scenario.split("/")[0]
        console.print(f"  {escape(base)} / {case.suite} / {case.harness} seed "
                      f"{case.seed}: {escape('; '.join(case.problems)[:160] or case.verdict)}")
        console.print(f"    faults {', '.join(case.shrunk_faults) or 'none'} "
                      f"(from {len(case.faults)}); domain {case.domain}")
        console.print(f"    replay: {escape(case.replay)}", soft_wrap=True)
