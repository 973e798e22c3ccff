"""A campaign's results as one self-contained HTML page, its charts drawn as inline SVG.

The page makes no network request — no external stylesheet, script, font or image — so it can
be attached to a CI run, mailed, or opened offline years later and look the same. The charts are
SVG written here rather than a charting library's JavaScript: the page is then a pure function
of the results (same input, same bytes), so reports diff cleanly and tests can read them. Every
string taken from the results is escaped, since scenario names and trace details are data.

Rates are over each cell's conclusive episodes, the inconclusive ones (their suite's faults
never reached the agent) counted beside them; a cell with none conclusive shows
*inconclusive* in place of a rate and draws no bar.

>>> from tether.evals.results import CampaignInfo, CampaignResults
>>> info = CampaignInfo(scenarios=["s"], suites=["base"], harnesses=["default"], seeds=1,
...                     episodes=0)
>>> page = render_html(CampaignResults(campaign=info, cells=[]))
>>> page.startswith("<!DOCTYPE html>") and "http" not in page
True
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from html import escape
from pathlib import Path

from tether.evals.results import CampaignInfo, CampaignResults, Cell, FailureCase, TraceItem

__all__ = ["render_html", "write_html"]

_PALETTE = 6  # harness colours .h0 … .h5 in _CSS, reused in order when there are more harnesses
_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1d2329;margin:24px auto;
max-width:1100px;padding:0 16px}
h1{font-size:22px;margin:0 0 8px}h2{font-size:18px;margin:32px 0 8px;border-bottom:1px solid #ddd}
h3{font-size:15px;margin:0 0 6px}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;margin:0}
dl.facts dt{color:#5b6570}dl.facts dd{margin:0}
table{border-collapse:collapse;margin:8px 0}th,td{padding:4px 9px;border-bottom:1px solid #e4e7ea;
text-align:left;vertical-align:top}th{background:#f4f6f8;font-weight:600}td.num{text-align:right;
white-space:nowrap;font-variant-numeric:tabular-nums}
.charts{display:flex;flex-wrap:wrap;gap:18px}svg.chart{max-width:100%;height:auto}figure{margin:0}figcaption{font-weight:600}
svg text{font:12px system-ui,sans-serif;fill:#1d2329}svg .muted{fill:#6b7580}
svg .axis{stroke:#9aa3ab;stroke-width:1}svg .grid{stroke:#e4e7ea;stroke-width:1}
svg .whisker{stroke:#1d2329;stroke-width:1.5}svg .row{fill:#f7f8f9}
svg .ok{fill:#2f7d4a}svg .failed{fill:#c62828}svg text.failed{font-weight:600}
.inconclusive{color:#8a5a00;fill:#8a5a00}tr.inconclusive td{background:#fff8e6}
.h0{fill:#4c78a8}.h1{fill:#f58518}.h2{fill:#54a24b}.h3{fill:#b279a2}.h4{fill:#9d755d}
.h5{fill:#72b7b2}
section.failure{border:1px solid #e4e7ea;border-left:4px solid #c62828;border-radius:4px;
padding:10px 14px;margin:14px 0}
.meta{color:#5b6570;margin:0 0 6px}ul{margin:4px 0;padding-left:20px}
pre{background:#f4f6f8;padding:8px 10px;border-radius:4px;overflow-x:auto;margin:6px 0}
code{font:13px ui-monospace,SFMono-Regular,Menlo,monospace}
""".strip()


def render_html(results: CampaignResults) -> str:
    """The whole report as one HTML document: facts, the cell table, charts and failures."""
    harnesses = _ordered(results.campaign.harnesses, (c.harness for c in results.cells))
    colour = {h: f"h{i % _PALETTE}" for i, h in enumerate(harnesses)}
    name = _e(results.campaign.name)
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        f"<title>{name} — tether campaign</title>", f"<style>\n{_CSS}\n</style>", "</head>",
        "<body>", _header(results), _not_applied(results), _cell_table(results.cells),
        _fault_table(results),
        _suite_charts(results, colour), _domain_charts(results, harnesses, colour),
        _failures(results.failures), "</body>", "</html>", ""]
    return "\n".join(parts)


def write_html(results: CampaignResults, path: Path | str) -> None:
    """Write :func:`render_html`'s page to ``path`` as UTF-8."""
    Path(path).write_text(render_html(results), encoding="utf-8")


# -- sections -----------------------------------------------------------------------------------


def _header(results: CampaignResults) -> str:
    info: CampaignInfo = results.campaign
    facts = [("scenarios", ", ".join(info.scenarios)), ("suites", ", ".join(info.suites)),
             ("harnesses", ", ".join(info.harnesses)),
             ("seeds per cell", str(info.seeds)), ("episodes", str(info.episodes)),
             ("failures shown", str(len(results.failures)))]
    rows = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in facts)
    return (f'<header><h1>Campaign {_e(info.name)}</h1><dl class="facts">{rows}</dl>'
            "</header>")


def _cell_table(cells: list[Cell]) -> str:
    ks = sorted({k for c in cells for k in c.pass_k}, key=_k_order)
    head = ["harness", "suite", "episodes", "inconclusive", "pass rate", "95% interval",
            *(f"pass^{k}" for k in ks), "duplicate-effect rate", "recovery rate"]
    rows = []
    for c in cells:
        if c.pass_rate is None or c.interval is None:
            rate, interval = '<b class="inconclusive">inconclusive</b>', "—"
        else:
            rate = _e(_pct(c.pass_rate))
            interval = _e(f"{_pct(c.interval[0])} – {_pct(c.interval[1])}")
        values = [*(f"{c.pass_k[k]:.3f}" if k in c.pass_k else "—" for k in ks),
                  _pct(c.duplicate_rate),
                  "—" if c.recovery_rate is None else _pct(c.recovery_rate)]
        rows.append(f'<tr class="{_cell_state(c)}"><td>{_e(c.harness)}</td>'
                    f'<td>{_e(c.suite)}</td><td class="num">{c.episodes}</td>'
                    f'<td class="num">{c.inconclusive}</td><td class="num">{rate}</td>'
                    f'<td class="num">{interval}</td>'
                    + "".join(f'<td class="num">{_e(v)}</td>' for v in values) + "</tr>")
    header = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "\n".join(rows) or f'<tr><td colspan="{len(head)}">no cells</td></tr>'
    return (f'<section><h2>Results by harness and suite</h2><p class="meta">Rates are over '
            "conclusive episodes; an inconclusive episode's suite faults never reached the "
            "agent (or its suite could not be applied).</p>"
            f'<table class="cells"><thead><tr>{header}</tr></thead><tbody>\n{body}\n</tbody>'
            "</table></section>")


def _cell_state(cell: Cell) -> str:
    """``inconclusive`` (no conclusive episode), ``partial`` (some) or ``conclusive``."""
    if not cell.conclusive:
        return "inconclusive"
    return "partial" if cell.inconclusive else "conclusive"


def _not_applied(results: CampaignResults) -> str:
    if not results.not_applied:
        return ""
    items = "".join(f"<li><b>{_e(suite)}</b>: {_e(reason)}</li>"
                    for suite, reason in results.not_applied.items())
    return ('<section class="not-applied"><h2>Suites not applied</h2><p>These suites could '
            f"not be applied, so they tested nothing:</p><ul>{items}</ul></section>")


def _fault_table(results: CampaignResults) -> str:
    if not results.by_fault:
        return ""
    head = ["fault", "harness", "episodes", "duplicate-effect rate", "violation rate",
            "recovery rate"]
    rows = [f"<tr><td>{_e(f.fault)}</td><td>{_e(f.harness)}</td>"
            f'<td class="num">{f.episodes}</td><td class="num">{_pct(f.duplicate_rate)}</td>'
            f'<td class="num">{_pct(f.violation_rate)}</td>'
            f'<td class="num">{_pct(f.recovery_rate)}</td></tr>' for f in results.by_fault]
    header = "".join(f"<th>{_e(h)}</th>" for h in head)
    return (f'<section><h2>By fault type</h2><table class="cells"><thead><tr>{header}</tr>'
            f"</thead><tbody>\n{chr(10).join(rows)}\n</tbody></table></section>")


def _suite_charts(results: CampaignResults, colour: dict[str, str]) -> str:
    suites = _ordered(results.campaign.suites, (c.suite for c in results.cells))
    figures = []
    for suite in suites:
        cells = sorted((c for c in results.cells if c.suite == suite),
                       key=lambda c: list(colour).index(c.harness))
        figures.append(f"<figure><figcaption>{_e(suite)}</figcaption>"
                       f"{_pass_rate_chart(suite, cells, colour)}</figure>")
    return ('<section><h2>Pass rate by suite</h2><p class="meta">Bars are pass rates over '
            "conclusive episodes; whiskers are Wilson 95% intervals.</p>"
            f'<div class="charts">{"".join(figures)}</div></section>')


def _domain_charts(results: CampaignResults, harnesses: list[str],
                   colour: dict[str, str]) -> str:
    per_harness: dict[str, Counter[str]] = {h: Counter() for h in harnesses}
    for cell in results.cells:
        per_harness[cell.harness].update(cell.domains)
    # One scale for every harness, so equal bar lengths mean equal counts across charts.
    largest = max((n for counts in per_harness.values() for n in counts.values()), default=0)
    figures = [f"<figure><figcaption>{_e(h)}</figcaption>"
               f"{_domain_chart(h, per_harness[h], largest, colour[h])}</figure>"
               for h in harnesses]
    return ("<section><h2>Failures by domain</h2>"
            f'<div class="charts">{"".join(figures)}</div></section>')


def _failures(failures: list[FailureCase]) -> str:
    if not failures:
        return "<section><h2>Failure cases</h2><p>No failing episodes.</p></section>"
    return ("<section><h2>Failure cases</h2>"
            + "\n".join(_failure(i, f) for i, f in enumerate(failures, 1)) + "</section>")


def _failure(number: int, f: FailureCase) -> str:
    problems = "".join(f"<li>{_e(p)}</li>" for p in f.problems) or "<li>none recorded</li>"
    return (
        f'<section class="failure" id="failure-{number}">'
        f"<h3>{number}. {_e(f.scenario)} · {_e(f.suite)} · {_e(f.harness)} · seed {f.seed}</h3>"
        f'<p class="meta">verdict <b>{_e(f.verdict)}</b> · domain <b>{_e(f.domain)}</b></p>'
        f'<ul class="problems">{problems}</ul>'
        '<table class="plans"><thead><tr><th>fault plan as run</th><th>shrunk plan</th></tr>'
        f"</thead><tbody><tr><td>{_plan(f.faults)}</td><td>{_plan(f.shrunk_faults)}</td></tr>"
        "</tbody></table>"
        f'<p>Replay:</p><pre><code class="replay">{_e(f.replay)}</code></pre>'
        f"<p>Trace:</p>{_timeline(f)}</section>")


def _plan(faults: list[str]) -> str:
    if not faults:
        return "<i>no faults</i>"
    return "<ul>" + "".join(f"<li><code>{_e(fault)}</code></li>" for fault in faults) + "</ul>"


# -- charts -------------------------------------------------------------------------------------


def _pass_rate_chart(suite: str, cells: list[Cell], colour: dict[str, str]) -> str:
    left, top, plot_h, slot, bar_w = 44, 12, 160, 84, 40
    width, height = left + slot * max(1, len(cells)) + 8, top + plot_h + 40
    bottom = top + plot_h

    def y(rate: float) -> float:
        return top + (1 - rate) * plot_h

    body = []
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        body.append(_line(left, y(tick), width - 4, y(tick), "grid"))
        body.append(_text(left - 6, y(tick) + 4, _pct(tick, 0), "muted", "end"))
    body.append(_line(left, top, left, bottom, "axis"))
    for i, c in enumerate(cells):
        x = left + slot * i + (slot - bar_w) / 2
        centre = x + bar_w / 2
        body.append(_text(centre, bottom + 16, c.harness, "", "middle"))
        if c.pass_rate is None or c.interval is None:
            # No bar: a height of zero would read as a 0 % pass rate.
            body.append(_text(centre, bottom + 31, "inconclusive", "inconclusive", "middle"))
            continue
        low, high = c.interval
        tip = (f"{c.harness} on {suite}: {_pct(c.pass_rate)} "
               f"({_pct(low)} – {_pct(high)}), {c.passed}/{c.conclusive}"
               + (f" ({c.inconclusive} inconclusive)" if c.inconclusive else ""))
        body.append(_rect(x, y(c.pass_rate), bar_w, c.pass_rate * plot_h, colour[c.harness], tip))
        body.append(_line(centre, y(high), centre, y(low), "whisker"))
        body.extend(_line(centre - 7, y(v), centre + 7, y(v), "whisker") for v in (low, high))
        body.append(_text(centre, bottom + 31, _pct(c.pass_rate), "muted", "middle"))
    return _svg(width, height, f"pass rate by harness on suite {suite}", body)


def _domain_chart(harness: str, counts: Counter[str], largest: int, fill: str) -> str:
    label_w, bar_max, row_h = 170, 260, 22
    if not counts:
        return _svg(label_w + bar_max, row_h + 6, f"failures by domain for {harness}",
                    [_text(0, 16, "no failures", "muted")])
    rows = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    body = []
    for i, (domain, n) in enumerate(rows):
        y = 4 + i * row_h
        length = bar_max * n / largest
        body.append(_text(label_w - 8, y + 14, _clip(domain, 24), "", "end"))
        body.append(_rect(label_w, y + 2, length, row_h - 6, fill, f"{domain}: {n}"))
        body.append(_text(label_w + length + 6, y + 14, str(n), "muted"))
    return _svg(label_w + bar_max + 50, 8 + row_h * len(rows),
                f"failures by domain for {harness}", body)


def _timeline(f: FailureCase) -> str:
    label = f"trace of {f.scenario} seed {f.seed} under {f.harness}"
    if not f.trace:
        return _svg(600, 24, label, [_text(0, 16, "no trace recorded", "muted")])
    label_w, plot_w, detail_w, row_h, top = 230, 480, 260, 20, 22
    end_s = max(item.at_s for item in f.trace)
    end_s = end_s if end_s > 0 else 1.0  # an all-at-zero trace still gets a one-second axis
    width, height = label_w + plot_w + detail_w, top + row_h * len(f.trace) + 6

    def x(at_s: float) -> float:
        return label_w + 8 + (plot_w - 16) * at_s / end_s

    # Row shading first, then the time grid over it, then the markers over both.
    body = [_rect(0, top + i * row_h + 1, label_w + plot_w, row_h - 2, "row", None)
            for i in range(len(f.trace))]
    for tick in range(5):
        at_s = end_s * tick / 4
        body.append(_line(x(at_s), top - 4, x(at_s), height - 4, "grid"))
        body.append(_text(x(at_s), 12, f"{at_s:g} s", "muted", "middle"))
    for i, item in enumerate(f.trace):
        body.append(_trace_row(item, top + i * row_h, row_h, x(item.at_s), label_w + plot_w))
    return _svg(width, height, label, body)


def _trace_row(item: TraceItem, y: float, row_h: int, cx: float, detail_x: int) -> str:
    state = "failed" if item.failed else "ok"
    tip = f"{item.at_s:g} s {item.kind} {item.name}" + (f": {item.detail}" if item.detail else "")
    mid = y + row_h / 2
    parts = [f'<g class="item {state}">',
             _text(6, mid + 4, _clip(f"{item.kind} {item.name}", 32),
                   "failed" if item.failed else ""),
             f'<circle class="{state}" cx="{_n(cx)}" cy="{_n(mid)}" r="5">'
             f"<title>{_e(tip)}</title></circle>"]
    if item.detail:
        parts.append(_text(detail_x + 6, mid + 4, _clip(item.detail, 36),
                           "failed" if item.failed else "muted"))
    parts.append("</g>")
    return "".join(parts)


# -- SVG and text helpers -----------------------------------------------------------------------


def _svg(width: float, height: float, label: str, body: list[str]) -> str:
    # No xmlns: inline SVG in HTML does not need it, and the page then holds no URL at all.
    return (f'<svg class="chart" width="{_n(width)}" height="{_n(height)}" '
            f'viewBox="0 0 {_n(width)} {_n(height)}" role="img" aria-label="{_e(label)}">'
            + "".join(body) + "</svg>")


def _rect(x: float, y: float, w: float, h: float, cls: str, title: str | None) -> str:
    tip = f"<title>{_e(title)}</title>" if title else ""
    return (f'<rect class="{cls}" x="{_n(x)}" y="{_n(y)}" width="{_n(w)}" height="{_n(h)}">'
            f"{tip}</rect>")


def _line(x1: float, y1: float, x2: float, y2: float, cls: str) -> str:
    return f'<line class="{cls}" x1="{_n(x1)}" y1="{_n(y1)}" x2="{_n(x2)}" y2="{_n(y2)}"/>'


def _text(x: float, y: float, text: str, cls: str = "", anchor: str = "start") -> str:
    klass = f' class="{cls}"' if cls else ""
    return (f'<text{klass} x="{_n(x)}" y="{_n(y)}" text-anchor="{anchor}">{_e(text)}</text>')


def _n(value: float) -> str:
    """A coordinate with at most two decimals and no trailing zeros, for stable bytes."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _pct(rate: float, digits: int = 1) -> str:
    return f"{rate * 100:.{digits}f}%"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _e(text: str) -> str:
    return escape(text, quote=True)


def _k_order(k: str) -> tuple[int, str]:
    return (int(k), k) if k.isdigit() else (1 << 30, k)


def _ordered(declared: list[str], seen: Iterable[str]) -> list[str]:
    """The campaign's declared order, then anything found only in the cells, in first-seen
    order — so a hand-edited results file still shows every cell."""
    order = list(dict.fromkeys(declared))
    order.extend(s for s in dict.fromkeys(seen) if s not in order)
    return order
