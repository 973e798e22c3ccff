"""The report's drawing primitives and stylesheet: escaped text and SVG elements with stable bytes.

Coordinates are written with at most two decimals and no trailing zeros, so the same results
always give the same page. Charts carry a ``viewBox`` and scale to their container's width
(``CHART_CSS``); the container caps them at their natural size, so a chart shrinks on a phone
and never grows past the size its text was laid out for.

>>> text(0, 12.5, "a < b")
'<text x="0" y="12.5" text-anchor="start">a &lt; b</text>'
"""

from __future__ import annotations

from html import escape

__all__ = ["CHART_CSS", "PAGE_CSS", "REPORT_CSS", "clip", "esc", "line", "num", "pct", "rect",
           "svg", "text"]

#: Colour classes for harnesses (.h0 … .h5), reused in order when there are more harnesses.
PALETTE = 6

#: What the shared sections need — the charts and the headline: import it beside
#: ``pass_rate_charts``, ``domain_charts`` and ``headline`` (all in :mod:`tether.evals.html`)
#: to show them on another page.
CHART_CSS = """
.charts{display:flex;flex-wrap:wrap;gap:18px}figure{margin:0;min-width:0}
figcaption{font-weight:600}svg.chart{display:block;width:100%;height:auto}
svg text{font:12px system-ui,sans-serif;fill:#1d2329}svg .muted{fill:#5b6570}
svg .axis{stroke:#9aa3ab;stroke-width:1}svg .grid{stroke:#e4e7ea;stroke-width:1}
svg .whisker{stroke:#1d2329;stroke-width:1.5}svg .row{fill:#f7f8f9}
svg .ok{fill:#2f7d4a}svg .failed{fill:#c62828}svg text.failed{font-weight:600}
.inconclusive{color:#8a5a00;fill:#8a5a00}
.h0{fill:#4c78a8}.h1{fill:#f58518}.h2{fill:#54a24b}.h3{fill:#b279a2}.h4{fill:#9d755d}
.h5{fill:#72b7b2}
.headline{background:#f4f6f8;border-radius:6px;padding:12px 16px;margin:10px 0 4px}
.headline p{margin:0}.headline .big{font-size:20px;line-height:1.35;margin:2px 0}
.headline .from{color:#c62828;font-weight:700}.headline .to{color:#2f7d4a;font-weight:700}
.headline .note{color:#5b6570;font-size:13px;margin-top:6px}
""".strip()

#: The page around them: type, tables in scrolling boxes, definitions, failures.
PAGE_CSS = """
*{box-sizing:border-box}
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1d2329;margin:20px auto;
max-width:1100px;padding:0 14px;overflow-wrap:anywhere}
h1{font-size:22px;margin:0 0 8px}h2{font-size:18px;margin:30px 0 8px;border-bottom:1px solid #ddd}
h3{font-size:15px;margin:0 0 6px}
dl.facts{display:grid;grid-template-columns:max-content minmax(0,1fr);gap:2px 14px;margin:0}
dl.facts dt{color:#5b6570}dl.facts dd{margin:0}
dl.defs dt{font-weight:600;margin-top:8px}dl.defs dd{margin:2px 0 0 0}
.scroll{overflow-x:auto;max-width:100%;-webkit-overflow-scrolling:touch}
table{border-collapse:collapse;margin:8px 0}th,td{padding:4px 9px;border-bottom:1px solid #e4e7ea;
text-align:left;vertical-align:top;overflow-wrap:normal}th{background:#f4f6f8;font-weight:600;white-space:nowrap}
td.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
tr.inconclusive td{background:#fff8e6}table.cells td{white-space:nowrap}
section.failure{border:1px solid #e4e7ea;border-left:4px solid #c62828;border-radius:4px;
padding:10px 14px;margin:14px 0}
.meta{color:#5b6570;margin:0 0 6px}ul,ol{margin:4px 0;padding-left:22px}
ul.broken li{margin:3px 0}
ol.sequence li{margin:1px 0}ol.sequence li.failed{color:#c62828;font-weight:600}
ol.sequence .kind{color:#5b6570}
pre{background:#f4f6f8;padding:8px 10px;border-radius:4px;overflow-x:auto;margin:6px 0}
code{font:13px ui-monospace,SFMono-Regular,Menlo,monospace}
code.replay{white-space:pre-wrap;overflow-wrap:anywhere}code.invariant{color:#5b6570;font-size:12px}
""".strip()

#: The whole report's stylesheet.
REPORT_CSS = PAGE_CSS + "\n" + CHART_CSS


def svg(width: float, height: float, label: str, body: list[str]) -> str:
    """An inline SVG chart scaled by its ``viewBox`` (no xmlns: inline SVG in HTML needs none,
    and the page then holds no URL at all)."""
    return (f'<svg class="chart" viewBox="0 0 {num(width)} {num(height)}" role="img" '
            f'aria-label="{esc(label)}">' + "".join(body) + "</svg>")


def rect(x: float, y: float, w: float, h: float, cls: str, title: str | None) -> str:
    """A rectangle, with a hover title when given."""
    tip = f"<title>{esc(title)}</title>" if title else ""
    return (f'<rect class="{cls}" x="{num(x)}" y="{num(y)}" width="{num(w)}" '
            f'height="{num(h)}">{tip}</rect>')


def line(x1: float, y1: float, x2: float, y2: float, cls: str) -> str:
    """A line segment."""
    return f'<line class="{cls}" x1="{num(x1)}" y1="{num(y1)}" x2="{num(x2)}" y2="{num(y2)}"/>'


def text(x: float, y: float, content: str, cls: str = "", anchor: str = "start",
         title: str | None = None) -> str:
    """A text label (escaped), with a hover title when given (the full text of a clipped one)."""
    klass = f' class="{cls}"' if cls else ""
    tip = f"<title>{esc(title)}</title>" if title else ""
    return (f'<text{klass} x="{num(x)}" y="{num(y)}" text-anchor="{anchor}">{tip}'
            f"{esc(content)}</text>")


def num(value: float) -> str:
    """A coordinate with at most two decimals and no trailing zeros, for stable bytes."""
    written = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if written == "-0" else written


def pct(rate: float, digits: int = 1) -> str:
    """``0.4`` → ``40.0%``."""
    return f"{rate * 100:.{digits}f}%"


def clip(content: str, limit: int) -> str:
    """``content`` cut to ``limit`` characters, an ellipsis marking the cut."""
    return content if len(content) <= limit else content[:limit - 1] + "…"


def esc(content: str) -> str:
    """HTML-escaped text, quotes included (safe in attributes too)."""
    return escape(content, quote=True)
