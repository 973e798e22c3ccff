"""Two campaigns side by side: which (harness, suite) cells got better, worse, or stayed put.

A change is called only when it is both *significant* (a pooled two-proportion z-test,
p < 0.05) and *large enough to matter* (|Δ pass rate| ≥ 2 points). Either test alone misleads:
with thousands of episodes a 0.3-point wobble is "significant", and with ten episodes a
20-point swing can be noise. A cell where either side has no conclusive episode (its suite's
faults never reached the agent) is ``inconclusive``: there is no rate to compare, so it is
neither ``same`` nor a change. :func:`gate_failures` is what a CI gate fails on: a ``worse``
cell, or a cell the baseline could judge and the candidate no longer can (a candidate that
stopped meeting the faults must not pass the gate as "no regression").

>>> verdict(-0.10, 0.001), verdict(-0.10, 0.2), verdict(0.01, 0.0001)
('worse', 'same', 'same')
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError
from rich import box
from rich.console import Console, JustifyMethod
from rich.markup import escape
from rich.table import Table

from tether.errors import UsageError
from tether.evals.results import CampaignResults, Cell
from tether.evals.stats import two_proportion_test

__all__ = ["MIN_EFFECT", "SIGNIFICANCE", "Comparison", "ComparisonVerdict", "compare",
           "compare_harnesses", "gate_failures", "load_results", "render_comparison", "unmatched",
           "verdict"]

SIGNIFICANCE = 0.05  # two-sided p-value below which a difference counts as real
MIN_EFFECT = 0.02  # smallest pass-rate change (absolute) worth calling better or worse

ComparisonVerdict = Literal["better", "worse", "same", "inconclusive"]
_STYLES = {"better": "green", "worse": "bold red", "same": "dim", "inconclusive": "yellow"}


@dataclass(frozen=True)
class Comparison:
    """One (harness, suite) cell in campaign A (the baseline) and campaign B (the candidate).

    ``difference`` and ``duplicate_change`` are B minus A, so negative pass-rate differences
    and positive duplicate changes are the bad directions. ``episodes_*`` count the conclusive
    episodes (the rates are over them), ``inconclusive_*`` the others. A side with no
    conclusive episode has no pass rate (``None``), and the row has no difference, z or
    p-value: its verdict is ``inconclusive``.
    """

    harness: str
    suite: str
    passed_a: int
    episodes_a: int
    passed_b: int
    episodes_b: int
    pass_rate_a: float | None
    pass_rate_b: float | None
    difference: float | None
    z: float | None
    p_value: float | None
    duplicate_rate_a: float
    duplicate_rate_b: float
    duplicate_change: float
    verdict: ComparisonVerdict
    inconclusive_a: int = 0
    inconclusive_b: int = 0

    def as_data(self) -> dict[str, Any]:
        """The row as plain JSON-ready data."""
        return asdict(self)


def compare(a: CampaignResults, b: CampaignResults) -> list[Comparison]:
    """Compare every cell present in both campaigns, in A's order.

    >>> from tether.evals.results import CampaignInfo
    >>> info = CampaignInfo(scenarios=[], suites=[], harnesses=[], seeds=0, episodes=0)
    >>> compare(CampaignResults(campaign=info, cells=[]), CampaignResults(campaign=info, cells=[]))
    []
    """
    later = {(c.harness, c.suite): c for c in b.cells}
    return [_compare_cell(cell, later[(cell.harness, cell.suite)])
            for cell in a.cells if (cell.harness, cell.suite) in later]


def compare_harnesses(results: CampaignResults, a: str, b: str) -> list[Comparison]:
    """Harness ``b`` against harness ``a`` within one campaign (the same scenarios, seeds and
    faults), per suite in A's cell order: B − A with its significance, as :func:`compare` rows
    whose ``harness`` reads ``a → b`` (for :func:`render_comparison`). A suite only one of
    them ran is left out; a harness with no cells at all is a :class:`UsageError`.

    >>> from tether.evals.results import CampaignInfo
    >>> info = CampaignInfo(scenarios=[], suites=[], harnesses=[], seeds=0, episodes=0)
    >>> compare_harnesses(CampaignResults(campaign=info, cells=[]), "naive", "naive")
    Traceback (most recent call last):
    ...
    tether.errors.UsageError: compare two different harnesses, not naive with itself
    """
    if a == b:
        raise UsageError(f"compare two different harnesses, not {a} with itself")
    present = list(dict.fromkeys(c.harness for c in results.cells))
    for name in (a, b):
        if name not in present:
            raise UsageError(f"harness {name} has no cells in these results; they hold "
                             f"{', '.join(present) or 'no cells at all'}")
    later = {c.suite: c for c in results.cells if c.harness == b}
    return [replace(_compare_cell(cell, later[cell.suite]), harness=f"{a} → {b}")
            for cell in results.cells if cell.harness == a and cell.suite in later]


def verdict(difference: float, p_value: float) -> ComparisonVerdict:
    """``better``/``worse`` when the change is significant and at least :data:`MIN_EFFECT`."""
    # The tolerance keeps a change of exactly two points (0.52 - 0.50 in floats is
    # 0.020000000000000018, 0.30 - 0.28 is 0.019999999999999962) on the same side.
    if p_value >= SIGNIFICANCE or abs(difference) < MIN_EFFECT - 1e-9:
        return "same"
    return "better" if difference > 0 else "worse"


def gate_failures(rows: list[Comparison]) -> list[Comparison]:
    """The rows a regression gate fails on: ``worse``, or ``inconclusive`` because the candidate
    (B) has no conclusive episode where the baseline (A) had some. (A row inconclusive only
    because A had none is new evidence, not a regression.)"""
    return [r for r in rows if r.verdict == "worse" or
            (r.verdict == "inconclusive" and r.episodes_a > 0 and r.episodes_b == 0)]


def unmatched(a: CampaignResults, b: CampaignResults) -> tuple[list[str], list[str]]:
    """The cells, as ``harness/suite``, found only in A and only in B (not compared)."""
    keys_a = [f"{c.harness}/{c.suite}" for c in a.cells]
    keys_b = [f"{c.harness}/{c.suite}" for c in b.cells]
    return ([k for k in keys_a if k not in keys_b], [k for k in keys_b if k not in keys_a])


def load_results(path: Path) -> CampaignResults:
    """Read a campaign's ``results.json``; a :class:`UsageError` naming the file if it can't."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise UsageError(f"cannot read {path}: {reason}") from exc
    try:
        return CampaignResults.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] == "json_invalid":
            raise UsageError(f"{path} is not valid JSON: {first['msg']}") from exc
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        more = f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
        raise UsageError(f"{path} is not a campaign results file: {where}: "
                         f"{first['msg']}{more}") from exc


def render_comparison(rows: list[Comparison], console: Console) -> None:
    """Print the comparison as a table, then a one-line count of verdicts."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    columns: list[tuple[str, JustifyMethod]] = [
        ("harness", "left"), ("suite", "left"), ("A pass", "right"), ("B pass", "right"),
        ("Δ", "right"), ("z", "right"), ("p", "right"), ("dup Δ", "right"), ("verdict", "left")]
    for name, justify in columns:
        table.add_column(name, justify=justify)
    for r in rows:
        style = _STYLES[r.verdict]
        table.add_row(escape(r.harness), escape(r.suite),
                      _side(r.pass_rate_a, r.passed_a, r.episodes_a, r.inconclusive_a),
                      _side(r.pass_rate_b, r.passed_b, r.episodes_b, r.inconclusive_b),
                      "—" if r.difference is None else _points(r.difference),
                      "—" if r.z is None else f"{r.z:+.2f}",
                      "—" if r.p_value is None else _p(r.p_value),
                      _points(r.duplicate_change), f"[{style}]{r.verdict}[/{style}]")
    console.print(table)
    counts = {v: sum(r.verdict == v for r in rows)
              for v in ("worse", "better", "same", "inconclusive")}
    if not counts["inconclusive"]:
        del counts["inconclusive"]  # the usual line, unchanged when every row could be judged
    console.print(", ".join(f"{n} {v}" for v, n in counts.items()) +
                  f" (p < {SIGNIFICANCE:g} and |Δ| ≥ {MIN_EFFECT * 100:g} points)")


def _compare_cell(a: Cell, b: Cell) -> Comparison:
    # Rates come from the counts, not the stored pass_rate, so the test and the displayed
    # rates can never disagree in a hand-edited file. Both are over conclusive episodes: an
    # episode whose suite faults never fired is neither a pass nor a failure.
    row = Comparison(
        harness=a.harness, suite=a.suite, passed_a=a.passed, episodes_a=a.conclusive,
        passed_b=b.passed, episodes_b=b.conclusive, pass_rate_a=_rate(a), pass_rate_b=_rate(b),
        difference=None, z=None, p_value=None, duplicate_rate_a=a.duplicate_rate,
        duplicate_rate_b=b.duplicate_rate,
        duplicate_change=b.duplicate_rate - a.duplicate_rate, verdict="inconclusive",
        inconclusive_a=a.inconclusive, inconclusive_b=b.inconclusive)
    if not a.conclusive or not b.conclusive:
        # No rate on one side: the z-test of a rate against nothing would read p = 1 ("same").
        return row
    difference, z, p_value = two_proportion_test(a.passed, a.conclusive, b.passed, b.conclusive)
    return replace(row, difference=difference, z=z, p_value=p_value,
                   verdict=verdict(difference, p_value))


def _rate(cell: Cell) -> float | None:
    return cell.passed / cell.conclusive if cell.conclusive else None


def _side(rate: float | None, passed: int, conclusive: int, inconclusive: int) -> str:
    """One side's pass rate with its counts, or a dash and its inconclusive count."""
    if rate is None:
        return f"— ({inconclusive} inconclusive)"
    return f"{rate:.1%} ({passed}/{conclusive})"


def _points(change: float) -> str:
    """A rate change in percentage points, signed: ``+5.0 pp``."""
    return f"{change * 100:+.1f} pp"


def _p(p_value: float) -> str:
    return "<0.001" if p_value < 0.001 else f"{p_value:.3f}"
