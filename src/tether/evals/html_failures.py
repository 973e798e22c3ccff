"""The report's failure cases: what broke (which invariant, about which effect), the fault plan
before and after shrinking, the one-line reproduction, and what happened.

What happened is drawn on a time axis only when its events span some time. On the virtual
clock an episode often runs in no time at all — every event at 0 s — and a time axis would
stack every marker on one line; such a trace is shown as what it is, an ordered sequence: the
harness's steps in order, then the ledger's effects in ledger order. So is the naive loop's,
whose transcript numbers its steps rather than timing them.

>>> _ticks(4.0)
[0.0, 1.0, 2.0, 3.0, 4.0]
>>> _ticks(130.0)
[0.0, 50.0, 100.0, 150.0]
"""

from __future__ import annotations

import math

from tether.evals.html_svg import clip, esc, line, num, rect, svg, text
from tether.evals.results import FailureCase, TraceItem

__all__ = ["failure_cases"]

#: The kind of trace item the naive loop's transcript gives (its at_s is a step number).
NAIVE = "naive"


def failure_cases(failures: list[FailureCase]) -> str:
    """The failure cases section: one block per failure, numbered from 1."""
    if not failures:
        return '<section class="failures"><h2>Failure cases</h2><p>No failing episodes.</p>' \
            "</section>"
    return ('<section class="failures"><h2>Failure cases</h2><p class="meta">The worst '
            "failing episode of each suite and harness, with the invariants it broke and a "
            "command that replays it.</p>"
            + "\n".join(_failure(i, f) for i, f in enumerate(failures, 1)) + "</section>")


def _failure(number: int, f: FailureCase) -> str:
    return (
        f'<section class="failure" id="failure-{number}">'
        f"<h3>{number}. {esc(f.scenario)} · {esc(f.suite)} · {esc(f.harness)} · seed {f.seed}"
        "</h3>"
        f'<p class="meta">verdict <b>{esc(f.verdict)}</b> · domain <b>{esc(f.domain)}</b></p>'
        f"{_what_broke(f)}"
        '<div class="scroll"><table class="plans"><thead><tr><th>fault plan as run</th>'
        f"<th>shrunk plan</th></tr></thead><tbody><tr><td>{_plan(f.faults)}</td>"
        f"<td>{_plan(f.shrunk_faults)}</td></tr></tbody></table></div>"
        f'<p>Reproduce:</p><pre><code class="replay">{esc(f.replay)}</code></pre>'
        f"{_trace(f)}</section>")


def _what_broke(f: FailureCase) -> str:
    """Each broken invariant with its effect, then the grader's other findings."""
    items = []
    for b in f.broken:
        about = (f"effect <code>{esc(b.effect)}</code>" if b.effect
                 else "the episode as a whole")
        items.append(f'<li class="broken-invariant">invariant <b>{esc(b.kind)}</b> on {about} '
                     f"broken: {esc(b.detail or b.invariant)}"
                     f'<br><code class="invariant">{esc(b.invariant)}</code></li>')
    listed = {f"{b.invariant}: {b.detail}" for b in f.broken}
    others = [p for p in f.problems if p not in listed]
    items += [f"<li>{esc(p)}</li>" for p in others]
    if f.verdict != "violation":
        items.insert(0, f"<li>No invariant broke; verdict {esc(f.verdict)}.</li>")
    return f'<ul class="broken">{"".join(items)}</ul>'


def _plan(faults: list[str]) -> str:
    if not faults:
        return "<i>no faults</i>"
    return "<ul>" + "".join(f"<li><code>{esc(fault)}</code></li>" for fault in faults) + "</ul>"


# -- what happened ------------------------------------------------------------------------------


def _trace(f: FailureCase) -> str:
    if not f.trace:
        return "<p>What happened: <i>no trace recorded</i>.</p>"
    times = [item.at_s for item in f.trace]
    if any(item.kind == NAIVE for item in f.trace):
        # The naive loop keeps a transcript, not a journal: its items are numbered in order
        # (see tether.evals.shrink.trace_of), and a number of steps is no time.
        return _sequence(f.trace, "The naive loop records the order of its steps, not their "
                         "times, so they are listed in order rather than drawn on a time axis.")
    if max(times) == min(times):
        return _sequence(f.trace, f"Every event is at {times[0]:g} s of virtual time, so they "
                         "are listed in order rather than drawn on a time axis.")
    return ('<p>What happened, on the episode\'s virtual clock:</p><div class="scroll">'
            f"{_timeline(f)}</div>")


def _sequence(trace: list[TraceItem], why: str) -> str:
    """The trace as ordered lists: order is all there is to show."""
    steps = [item for item in trace if item.kind != "effect"]
    effects = [item for item in trace if item.kind == "effect"]
    parts = [f'<p class="meta trace-note">{why}</p>']
    if steps:
        parts.append(f"<p>What the harness did, in order:</p>{_ordered(steps)}")
    if effects:
        parts.append(f"<p>Effects on the ledger, in order:</p>{_ordered(effects)}")
    return "".join(parts)


def _ordered(items: list[TraceItem]) -> str:
    rows = []
    for item in items:
        state = ' class="failed"' if item.failed else ""
        detail = f" — {esc(item.detail)}" if item.detail else ""
        mark = " (failed)" if item.failed else ""
        rows.append(f'<li{state}><span class="kind">{esc(item.kind)}</span> '
                    f"<code>{esc(item.name)}</code>{detail}{mark}</li>")
    return f'<ol class="sequence">{"".join(rows)}</ol>'


def _timeline(f: FailureCase) -> str:
    label = f"trace of {f.scenario} seed {f.seed} under {f.harness}"
    label_w, plot_w, detail_w, row_h, top = 230, 480, 260, 20, 22
    ticks = _ticks(max(item.at_s for item in f.trace))
    end_s = ticks[-1]
    width, height = label_w + plot_w + detail_w, top + row_h * len(f.trace) + 6

    def x(at_s: float) -> float:
        return label_w + 8 + (plot_w - 16) * at_s / end_s

    # Row shading first, then the time grid over it, then the markers over both.
    body = [rect(0, top + i * row_h + 1, label_w + plot_w, row_h - 2, "row", None)
            for i in range(len(f.trace))]
    for at_s in ticks:
        body.append(line(x(at_s), top - 4, x(at_s), height - 4, "grid"))
        body.append(text(x(at_s), 12, f"{at_s:g} s", "muted tick", "middle"))
    for i, item in enumerate(f.trace):
        body.append(_trace_row(item, top + i * row_h, row_h, x(item.at_s), label_w + plot_w))
    # A timeline keeps its size (its labels stay legible) and scrolls sideways on a phone.
    return f'<div style="width:{width}px">{svg(width, height, label, body)}</div>'


def _ticks(end_s: float) -> list[float]:
    """At most six round ticks from 0 covering ``end_s``: steps of 1, 2, 2.5 or 5 × 10ⁿ."""
    if end_s <= 0:
        return [0.0, 1.0]
    magnitude = 10.0 ** math.floor(math.log10(end_s / 5))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if end_s / (m * magnitude) <= 5)
    count = math.ceil(end_s / step - 1e-9)
    return [round(i * step, 9) for i in range(count + 1)]


def _trace_row(item: TraceItem, y: float, row_h: int, cx: float, detail_x: int) -> str:
    state = "failed" if item.failed else "ok"
    tip = f"{item.at_s:g} s {item.kind} {item.name}" + (f": {item.detail}" if item.detail else "")
    mid = y + row_h / 2
    parts = [f'<g class="item {state}">',
             text(6, mid + 4, clip(f"{item.kind} {item.name}", 32),
                  "failed" if item.failed else ""),
             f'<circle class="{state}" cx="{num(cx)}" cy="{num(mid)}" r="5">'
             f"<title>{esc(tip)}</title></circle>"]
    if item.detail:
        parts.append(text(detail_x + 6, mid + 4, clip(item.detail, 36),
                          "failed" if item.failed else "muted"))
    parts.append("</g>")
    return "".join(parts)
