"""The report's charts: pass rate by suite, failures by domain (inline SVG, no script).

Each section function takes a campaign's results and returns an HTML fragment that needs only
:data:`~tether.evals.html_svg.CHART_CSS`, so another page (``tether view``) can show the same
charts as ``report.html``:

>>> from tether.evals.results import CampaignInfo, CampaignResults
>>> info = CampaignInfo(scenarios=["s"], suites=["base"], harnesses=["naive"], seeds=1,
...                     episodes=0)
>>> pass_rate_charts(CampaignResults(campaign=info, cells=[])).count("<svg")
1

Axis ticks are fixed at 0, 25, 50, 75 and 100 % (40 px apart: they cannot collide), and a
harness name under a bar is clipped to its slot, the full name in its hover title, so labels
never overlap however long the names are.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from tether.evals.html_svg import PALETTE, clip, esc, line, pct, rect, svg, text
from tether.evals.results import CampaignResults, Cell

__all__ = ["domain_charts", "harness_colours", "harness_order", "pass_rate_charts"]

_TICKS = (0.0, 0.25, 0.5, 0.75, 1.0)
_CHAR_W = 7.2  # a 12 px system-ui character is at most about this wide on average


def harness_order(results: CampaignResults) -> list[str]:
    """The campaign's harnesses in declared order, then any found only in its cells."""
    return _ordered(results.campaign.harnesses, (c.harness for c in results.cells))


def harness_colours(results: CampaignResults) -> dict[str, str]:
    """Harness → its colour class (``h0`` …), the same in every chart of one report."""
    return {h: f"h{i % PALETTE}" for i, h in enumerate(harness_order(results))}


def pass_rate_charts(results: CampaignResults) -> str:
    """One bar chart per suite: each harness's pass rate with its Wilson 95 % interval."""
    colour = harness_colours(results)
    order = list(colour)
    figures = []
    for suite in _ordered(results.campaign.suites, (c.suite for c in results.cells)):
        cells = sorted((c for c in results.cells if c.suite == suite),
                       key=lambda c: order.index(c.harness))
        chart, width = _pass_rate_chart(suite, cells, colour)
        figures.append(_figure(suite, chart, width))
    return ('<section class="pass-rates"><h2>Pass rate by suite</h2><p class="meta">Bars are '
            "pass rates over conclusive episodes; whiskers are Wilson 95% intervals.</p>"
            f'<div class="charts">{"".join(figures)}</div></section>')


def domain_charts(results: CampaignResults) -> str:
    """One bar chart per harness: its failing episodes by failure domain, on one shared scale."""
    colour = harness_colours(results)
    per_harness: dict[str, Counter[str]] = {h: Counter() for h in colour}
    for cell in results.cells:
        per_harness[cell.harness].update(cell.domains)
    # One scale for every harness, so equal bar lengths mean equal counts across charts.
    largest = max((n for counts in per_harness.values() for n in counts.values()), default=0)
    figures = []
    for harness, counts in per_harness.items():
        chart, width = _domain_chart(harness, counts, largest, colour[harness])
        figures.append(_figure(harness, chart, width))
    return ('<section class="domains"><h2>Failures by domain</h2><p class="meta">Failing '
            "episodes by where their corrective control belongs.</p>"
            f'<div class="charts">{"".join(figures)}</div></section>')


def _figure(caption: str, chart: str, width: float) -> str:
    # Natural width as the cap, shrinking below it on a narrow screen.
    return (f'<figure style="flex:0 1 {width:g}px;max-width:{width:g}px">'
            f"<figcaption>{esc(caption)}</figcaption>{chart}</figure>")


def _pass_rate_chart(suite: str, cells: list[Cell],
                     colour: dict[str, str]) -> tuple[str, float]:
    left, top, plot_h, slot, bar_w = 46, 12, 160, 84, 40
    width, height = left + slot * max(1, len(cells)) + 8, top + plot_h + 40
    bottom = top + plot_h

    def y(rate: float) -> float:
        return top + (1 - rate) * plot_h

    body = []
    for tick in _TICKS:
        body.append(line(left, y(tick), width - 4, y(tick), "grid"))
        body.append(text(left - 6, y(tick) + 4, pct(tick, 0), "muted tick", "end"))
    body.append(line(left, top, left, bottom, "axis"))
    fits = int((slot - 6) / _CHAR_W)
    for i, c in enumerate(cells):
        x = left + slot * i + (slot - bar_w) / 2
        centre = x + bar_w / 2
        shown = clip(c.harness, fits)
        body.append(text(centre, bottom + 16, shown, "label", "middle",
                         c.harness if shown != c.harness else None))
        if c.pass_rate is None or c.interval is None:
            # No bar: a height of zero would read as a 0 % pass rate.
            body.append(text(centre, bottom + 31, "inconclusive", "inconclusive", "middle"))
            continue
        low, high = c.interval
        tip = (f"{c.harness} on {suite}: {pct(c.pass_rate)} "
               f"({pct(low)} – {pct(high)}), {c.passed}/{c.conclusive}"
               + (f" ({c.inconclusive} inconclusive)" if c.inconclusive else ""))
        body.append(rect(x, y(c.pass_rate), bar_w, c.pass_rate * plot_h, colour[c.harness], tip))
        body.append(line(centre, y(high), centre, y(low), "whisker"))
        body.extend(line(centre - 7, y(v), centre + 7, y(v), "whisker") for v in (low, high))
        body.append(text(centre, bottom + 31, pct(c.pass_rate), "muted", "middle"))
    return svg(width, height, f"pass rate by harness on suite {suite}", body), width


def _domain_chart(harness: str, counts: Counter[str], largest: int,
                  fill: str) -> tuple[str, float]:
    label_w, bar_max, row_h = 120, 220, 22
    label = f"failures by domain for {harness}"
    if not counts:
        return svg(label_w + bar_max, row_h + 6, label,
                   [text(0, 16, "no failures", "muted")]), label_w + bar_max
    rows = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    body = []
    for i, (domain, n) in enumerate(rows):
        y = 4 + i * row_h
        length = bar_max * n / largest
        shown = clip(domain, int((label_w - 10) / _CHAR_W))
        body.append(text(label_w - 8, y + 14, shown, "", "end",
                         domain if shown != domain else None))
        body.append(rect(label_w, y + 2, length, row_h - 6, fill, f"{domain}: {n}"))
        body.append(text(label_w + length + 6, y + 14, str(n), "muted"))
    width = label_w + bar_max + 40
    return svg(width, 8 + row_h * len(rows), label, body), width


def _ordered(declared: list[str], seen: Iterable[str]) -> list[str]:
    """The declared order, then anything found only in the cells, in first-seen order — so a
    hand-edited results file still shows every cell."""
    order = list(dict.fromkeys(declared))
    order.extend(s for s in dict.fromkeys(seen) if s not in order)
    return order
