"""A campaign's results as one self-contained HTML page, its charts drawn as inline SVG.

The page makes no network request — no external stylesheet, script, font or image — so it can
be attached to a CI run, mailed, or opened offline years later and look the same. The charts are
SVG written here rather than a charting library's JavaScript: the page is then a pure function
of the results and the report's metadata (:class:`ReportMeta`: date, version, duration — the
only lines that differ between two runs of one campaign), so reports diff cleanly and tests can
read them. Every string taken from the results is escaped, since scenario names and trace
details are data.

The page reads top to bottom as a reader asks: the headline (invariant violations and duplicate
effects, the naive loop → each tether harness, named as ``--harness`` names them), what the
rates mean, the table, the charts, then each failure with what it broke and how to replay it.
It fits a 390 px phone: tables scroll sideways in their own boxes, charts shrink to the width.

Rates are over each cell's conclusive episodes, the inconclusive ones (their suite's faults
never reached the agent) counted beside them; a cell with none conclusive shows
*inconclusive* in place of a rate and draws no bar.

The sections are public so that another page (``tether view``) can show the same ones:
:func:`headline`, :func:`definitions`, :func:`~tether.evals.html_charts.pass_rate_charts`,
:func:`~tether.evals.html_charts.domain_charts`, with ``REPORT_CSS`` or ``CHART_CSS``.

>>> from tether.evals.results import CampaignInfo, CampaignResults
>>> info = CampaignInfo(scenarios=["s"], suites=["base"], harnesses=["default"], seeds=1,
...                     episodes=0)
>>> page = render_html(CampaignResults(campaign=info, cells=[]))
>>> page.startswith("<!DOCTYPE html>") and "http" not in page
True
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tether.evals.html_charts import domain_charts, harness_order, pass_rate_charts
from tether.evals.html_failures import failure_cases
from tether.evals.html_svg import CHART_CSS, REPORT_CSS, esc, pct
from tether.evals.results import CampaignInfo, CampaignResults, Cell

__all__ = ["CHART_CSS", "REPORT_CSS", "ReportMeta", "definitions", "domain_charts", "headline",
           "pass_rate_charts", "render_html", "write_html"]

#: The harness without tether: a plain loop that retries at once (``--harness naive``).
BASELINE = "naive"


@dataclass(frozen=True)
class ReportMeta:
    """What the report says about its own making; not part of the results (``results.json``
    stays the same bytes whenever and wherever the campaign runs).

    ``date`` is when the report was written (ISO 8601, UTC), ``duration_s`` how long this
    invocation took (a resumed campaign: the resumed part only).
    """

    date: str
    version: str
    duration_s: float | None = None


def render_html(results: CampaignResults, meta: ReportMeta | None = None) -> str:
    """The whole report as one HTML document. Without ``meta`` the page says nothing of when
    or by which version it was made, and is then a pure function of ``results``."""
    name = esc(results.campaign.name)
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{name} — tether campaign</title>", f"<style>\n{REPORT_CSS}\n</style>",
        "</head>", "<body>", _header(results, meta), _not_applied(results),
        _cell_table(results.cells), definitions(), _fault_table(results),
        pass_rate_charts(results), domain_charts(results), failure_cases(results.failures),
        "</body>", "</html>", ""]
    return "\n".join(parts)


def write_html(results: CampaignResults, path: Path | str, meta: ReportMeta | None = None) -> None:
    """Write :func:`render_html`'s page to ``path`` as UTF-8."""
    Path(path).write_text(render_html(results, meta), encoding="utf-8")


# -- the top of the page ------------------------------------------------------------------------


def headline(results: CampaignResults) -> str:
    """Invariant violations and duplicate effects per harness, naive first: ``naive 12 →
    default 0``. Counts are over conclusive episodes, summed over every suite."""
    order = harness_order(results)
    order.sort(key=lambda h: h != BASELINE)  # stable: the rest keep their declared order
    if not order:
        return '<section class="headline"><p class="big">No episodes were run.</p></section>'
    totals = {h: [0, 0, 0] for h in order}
    for cell in results.cells:
        total = totals[cell.harness]
        total[0] += cell.violations
        total[1] += cell.duplicate_effects
        total[2] += cell.conclusive

    def line(title: str, index: int) -> str:
        shown = [f'<span class="{"from" if h == BASELINE else "to"}">{totals[h][index]:,}</span>'
                 f" with <b>{esc(h)}</b>" for h in order]
        rest = f" → {', '.join(shown[1:])}" if len(shown) > 1 else ""
        return f'<p class="big">{title}: {shown[0]}{rest}</p>'

    episodes = sorted({totals[h][2] for h in order})
    over = (f"{episodes[0]:,} conclusive episodes per harness" if len(episodes) == 1
            else "conclusive episodes (" + ", ".join(f"{esc(h)} {totals[h][2]:,}"
                                                     for h in order) + ")")
    who = (f"<b>{BASELINE}</b> is the plain retry loop without tether; "
           if BASELINE in order else "")
    return ('<section class="headline">'
            + line("Invariant violations", 0) + line("Duplicate effects", 1)
            + f'<p class="note">Over {over}, every suite together. A violation is an episode '
            "that broke at least one invariant; a duplicate effect is one effect too many for "
            f"its business key. {who}harnesses are named as <code>tether eval run --harness"
            "</code> names them.</p></section>")


def definitions() -> str:
    """What the report's rates mean, as :mod:`tether.evals.aggregate` computes them."""
    terms = [
        ("conclusive", "An episode whose suite's faults reached the agent. The others are "
         "<i>inconclusive</i> and left out of every rate: they say nothing about how the "
         "harness copes with those faults."),
        ("pass rate", "Conclusive episodes that passed ÷ conclusive episodes; an episode "
         "passes when every invariant held and the task was done as asked, by a process the "
         "grader accepts. The interval is Wilson's 95% score interval."),
        ("pass^k", "The chance that k fresh tries of one scenario all pass (τ-bench): per "
         "scenario with n conclusive episodes of which c passed, C(c, k) ÷ C(n, k), averaged "
         "over the scenarios with at least k episodes; — when none has."),
        ("duplicate-effect rate", "Conclusive episodes with at least one duplicate effect ÷ "
         "conclusive episodes. A duplicate effect is an effect on the ledger beyond what its "
         "business key may repeat: past the first, or past the count the scenario's "
         "<code>at_most_each</code> allows that key."),
        ("recovery rate", "Of the conclusive episodes in which at least one fault fired, the "
         "share that ended with every invariant holding and the task done; — when no fault "
         "fired."),
    ]
    rows = "".join(f"<dt>{esc(term)}</dt><dd>{meaning}</dd>" for term, meaning in terms)
    return f'<section class="definitions"><h2>What the numbers mean</h2><dl class="defs">{rows}' \
        "</dl></section>"


def _header(results: CampaignResults, meta: ReportMeta | None) -> str:
    info: CampaignInfo = results.campaign
    facts = []
    if meta is not None:
        facts += [("date", meta.date), ("tether version", meta.version)]
        if meta.duration_s is not None:
            facts.append(("campaign duration", _duration(meta.duration_s)))
    facts += [("scenarios", ", ".join(info.scenarios)), ("suites", ", ".join(info.suites)),
              ("harnesses", ", ".join(info.harnesses)),
              ("seeds per cell", str(info.seeds)), ("episodes", f"{info.episodes:,}"),
              ("failures shown", str(len(results.failures)))]
    rows = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in facts)
    # The headline straight under the title: on a phone it is the first screen.
    return (f"<header><h1>Campaign {esc(info.name)}</h1>{headline(results)}"
            f'<dl class="facts">{rows}</dl></header>')


def _duration(seconds: float) -> str:
    """``3.4 s``, ``2 min 5 s``, ``1 h 2 min``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


# -- tables -------------------------------------------------------------------------------------


def _cell_table(cells: list[Cell]) -> str:
    ks = sorted({k for c in cells for k in c.pass_k}, key=_k_order)
    head = ["harness", "suite", "episodes", "inconclusive", "pass rate", "95% interval",
            *(f"pass^{k}" for k in ks), "duplicate-effect rate", "recovery rate"]
    rows = []
    for c in cells:
        if c.pass_rate is None or c.interval is None:
            rate, interval = '<b class="inconclusive">inconclusive</b>', "—"
        else:
            rate = esc(pct(c.pass_rate))
            interval = esc(f"{pct(c.interval[0])} – {pct(c.interval[1])}")
        values = [*(f"{c.pass_k[k]:.3f}" if k in c.pass_k else "—" for k in ks),
                  pct(c.duplicate_rate),
                  "—" if c.recovery_rate is None else pct(c.recovery_rate)]
        rows.append(f'<tr class="{_cell_state(c)}"><td>{esc(c.harness)}</td>'
                    f'<td>{esc(c.suite)}</td><td class="num">{c.episodes}</td>'
                    f'<td class="num">{c.inconclusive}</td><td class="num">{rate}</td>'
                    f'<td class="num">{interval}</td>'
                    + "".join(f'<td class="num">{esc(v)}</td>' for v in values) + "</tr>")
    header = "".join(f"<th>{esc(h)}</th>" for h in head)
    body = "\n".join(rows) or f'<tr><td colspan="{len(head)}">no cells</td></tr>'
    return (f'<section><h2>Results by harness and suite</h2><p class="meta">Rates are over '
            "conclusive episodes; an inconclusive episode's suite faults never reached the "
            "agent (or its suite could not be applied).</p>"
            f'<div class="scroll"><table class="cells"><thead><tr>{header}</tr></thead>'
            f"<tbody>\n{body}\n</tbody></table></div></section>")


def _cell_state(cell: Cell) -> str:
    """``inconclusive`` (no conclusive episode), ``partial`` (some) or ``conclusive``."""
    if not cell.conclusive:
        return "inconclusive"
    return "partial" if cell.inconclusive else "conclusive"


def _not_applied(results: CampaignResults) -> str:
    if not results.not_applied:
        return ""
    items = "".join(f"<li><b>{esc(suite)}</b>: {esc(reason)}</li>"
                    for suite, reason in results.not_applied.items())
    return ('<section class="not-applied"><h2>Suites not applied</h2><p>These suites could '
            f"not be applied, so they tested nothing:</p><ul>{items}</ul></section>")


def _fault_table(results: CampaignResults) -> str:
    if not results.by_fault:
        return ""
    head = ["fault", "harness", "episodes", "duplicate-effect rate", "violation rate",
            "recovery rate"]
    rows = [f"<tr><td>{esc(f.fault)}</td><td>{esc(f.harness)}</td>"
            f'<td class="num">{f.episodes}</td><td class="num">{pct(f.duplicate_rate)}</td>'
            f'<td class="num">{pct(f.violation_rate)}</td>'
            f'<td class="num">{pct(f.recovery_rate)}</td></tr>' for f in results.by_fault]
    header = "".join(f"<th>{esc(h)}</th>" for h in head)
    return (f'<section><h2>By fault type</h2><div class="scroll"><table class="cells"><thead>'
            f"<tr>{header}</tr></thead><tbody>\n{chr(10).join(rows)}\n</tbody></table></div>"
            "</section>")


def _k_order(k: str) -> tuple[int, str]:
    return (int(k), k) if k.isdigit() else (1 << 30, k)
