"""The HTML report's structure: self-contained, escaped, deterministic, one SVG per chart."""

from __future__ import annotations

import re
from pathlib import Path

from tests.evals.sample_results import REPLAY, cell, sample_results
from tether.evals.html import ReportMeta, definitions, headline, render_html, write_html
from tether.evals.html_failures import _ticks
from tether.evals.results import BrokenInvariant, CampaignInfo, CampaignResults, TraceItem
from tether.evals.run import run_full_campaign

HOSTILE = "<script>alert(1)</script>"


def test_page_is_self_contained() -> None:
    """No URL anywhere: no src/href attributes, no external stylesheet, script or font."""
    page = render_html(sample_results())
    assert "http://" not in page and "https://" not in page
    assert not re.search(r"\b(src|href)\s*=", page, re.IGNORECASE)
    assert "<script" not in page and "<link" not in page and "@import" not in page
    assert "url(" not in page  # no CSS-fetched fonts or images either
    assert page.count("<style>") == 1


def test_one_svg_per_chart() -> None:
    """One SVG per suite bar chart, per harness domain chart and per failure timeline."""
    results = sample_results()
    page = render_html(results)
    # 2 suites + 2 harnesses + 1 failure case = 5 charts.
    assert page.count("<svg") == page.count("</svg>") == 5
    assert page.count('aria-label="pass rate by harness on suite') == 2
    assert page.count('aria-label="failures by domain for') == 2
    assert page.count('aria-label="trace of') == 1


def test_table_shows_rates_intervals_pass_k_duplicates_and_recovery() -> None:
    """Each cell's row holds its pass rate, Wilson interval, pass^k, duplicate and recovery rate."""
    page = render_html(sample_results())
    # naive on faults: 8/20 = 40.0 %, Wilson (0.2188, 0.6134), pass^2 = 0.4² = 0.160,
    # 6 duplicate episodes of 20 = 30.0 %, recovery rate 0.4.
    row = re.search(r'<tr class="conclusive"><td>naive</td><td>faults</td>.*?</tr>', page)
    assert row is not None
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(0))
    assert cells == ["naive", "faults", "20", "0", "40.0%", "21.9% – 61.3%", "0.400", "0.160",
                     "0.026", "30.0%", "40.0%"]
    assert "<th>pass^1</th><th>pass^2</th><th>pass^4</th>" in page
    # Baseline cells have no faulted episodes, so no recovery rate: an em dash, not 0 %.
    baseline = re.search(r'<tr class="conclusive"><td>default</td><td>baseline</td>.*?</tr>',
                         page)
    assert baseline is not None and baseline.group(0).endswith('<td class="num">—</td></tr>')


def test_failure_case_shows_plans_replay_and_marked_trace() -> None:
    """A failure shows its problems, both fault plans, the replay command and a marked trace."""
    page = render_html(sample_results())
    assert "refund_timeout · faults · naive · seed 7" in page
    assert "<li>exactly_once: 2 × refund:ch_0001</li>" in page
    assert "<code>latency@crm.lookup#2</code>" in page  # only in the original plan
    assert page.count("<code>timeout_after_commit@payments.refund#1</code>") == 2
    assert f'<code class="replay">{REPLAY}</code>' in page
    # Four trace items, one marked failed, and their times on the axis up to 4 s.
    assert page.count("<circle") == 4 and page.count('<circle class="failed"') == 1
    assert '<g class="item failed">' in page and ">4 s</text>" in page


def test_hostile_text_is_escaped_everywhere() -> None:
    """A scenario, harness, problem or trace detail holding markup is shown as text."""
    results = sample_results(scenario=HOSTILE)
    failure = results.failures[0]
    failure.problems.append(f'"quoted" & {HOSTILE}')
    failure.trace[1].detail = HOSTILE
    results.cells[0].harness = HOSTILE
    page = render_html(results)
    assert HOSTILE not in page and "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&quot;quoted&quot; &amp; " in page


def test_output_is_deterministic() -> None:
    """The same results give the same bytes, also after a JSON round trip."""
    results = sample_results()
    again = CampaignResults.model_validate_json(results.model_dump_json())
    assert render_html(results) == render_html(results) == render_html(again)


def test_empty_campaign_renders() -> None:
    """A campaign with no cells and no failures still renders a complete page."""
    info = CampaignInfo(scenarios=[], suites=[], harnesses=[], seeds=0, episodes=0)
    page = render_html(CampaignResults(campaign=info, cells=[]))
    assert page.startswith("<!DOCTYPE html>") and page.endswith("</html>\n")
    assert "no cells" in page and "No failing episodes." in page and "<svg" not in page


def test_write_html_writes_utf8(tmp_path: Path) -> None:
    """write_html writes the rendered page as UTF-8 to the given path."""
    path = tmp_path / "report.html"
    write_html(sample_results(), path)
    assert path.read_text(encoding="utf-8") == render_html(sample_results())


def test_headline_counts_violations_and_duplicates_naive_first() -> None:
    """The headline sums each harness's violating episodes and duplicate effects over every
    suite, the naive loop first and each tether harness after the arrow, by CLI name."""
    results = sample_results()
    results.campaign.harnesses = ["default", "naive"]  # declared order does not move naive
    top = headline(results)
    # naive: 2 + 12 violating episodes, 6 duplicates; default: 0 + 1 and none.
    assert ('Invariant violations: <span class="from">14</span> with <b>naive</b> → '
            '<span class="to">1</span> with <b>default</b>') in top
    assert ('Duplicate effects: <span class="from">6</span> with <b>naive</b> → '
            '<span class="to">0</span> with <b>default</b>') in top
    assert "Over 40 conclusive episodes per harness" in top
    page = render_html(results)
    assert page.index('class="headline"') < page.index("<dl class=\"facts\">")


def test_headline_lists_every_tether_harness_after_the_arrow() -> None:
    """With a third harness, both tether harnesses follow naive, in declared order."""
    results = sample_results()
    results.campaign.harnesses.append("strict")
    results.cells.append(cell("strict", "faults", 20, 20))
    top = headline(results)
    assert ('<span class="from">14</span> with <b>naive</b> → <span class="to">1</span> with '
            '<b>default</b>, <span class="to">0</span> with <b>strict</b>') in top
    assert "conclusive episodes (naive 40, default 40, strict 20)" in top


def test_definitions_name_each_rate_as_aggregate_computes_it() -> None:
    """pass^k, duplicate-effect rate and recovery rate are defined on the page."""
    page = render_html(sample_results())
    assert definitions() in page
    for term, meaning in [("pass^k", "C(c, k) ÷ C(n, k)"),
                          ("duplicate-effect rate", "at least one duplicate effect ÷"),
                          ("recovery rate", "at least one fault fired")]:
        assert f"<dt>{term}</dt><dd>" in page and meaning in page


def test_meta_shows_date_version_and_duration_only_when_given() -> None:
    """Date, version and duration appear from ReportMeta; without it the page names none."""
    meta = ReportMeta(date="2026-12-01T09:00:00Z", version="9.9.9", duration_s=125.0)
    page = render_html(sample_results(), meta)
    assert "<dt>date</dt><dd>2026-12-01T09:00:00Z</dd>" in page
    assert "<dt>tether version</dt><dd>9.9.9</dd>" in page
    assert "<dt>campaign duration</dt><dd>2 min 5 s</dd>" in page
    assert "tether version" not in render_html(sample_results())
    assert render_html(sample_results(), meta) == page


def test_phone_layout_markup() -> None:
    """A viewport tag; every table inside a sideways-scrolling box; charts sized by viewBox."""
    page = render_html(sample_results())
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    assert page.count("<table") == page.count('<div class="scroll"><table') > 0
    assert page.count("viewBox=") == page.count("<svg") > 0
    assert not re.search(r"<svg[^>]* (width|height)=", page)  # sized by CSS, not fixed


def test_a_trace_at_one_instant_is_a_list_not_a_time_axis() -> None:
    """Events all at 0 s are listed in journal order, then ledger effects; no time axis."""
    results = sample_results()
    failure = results.failures[0]
    failure.trace = [TraceItem(at_s=0.0, kind="tool", name="create_refund", detail="timed out",
                               failed=True),
                     TraceItem(at_s=0.0, kind="effect", name="payments.refund",
                               detail="refund:ch_1"),
                     TraceItem(at_s=0.0, kind="model", name="chat")]
    page = render_html(results)
    assert 'aria-label="trace of' not in page and ">0 s</text>" not in page
    assert "Every event is at 0 s of virtual time" in page
    steps, effects = re.findall(r'<ol class="sequence">(.*?)</ol>', page)
    assert re.findall(r"<code>(.*?)</code>", steps) == ["create_refund", "chat"]
    assert '<li class="failed">' in steps and "(failed)" in steps
    assert re.findall(r"<code>(.*?)</code>", effects) == ["payments.refund"]


def test_a_naive_transcript_is_a_list_though_numbered() -> None:
    """The naive loop's steps carry step numbers, not times: listed, never on a seconds axis."""
    results = sample_results()
    results.failures[0].trace = [
        TraceItem(at_s=float(i), kind="naive", name="create_refund", detail="timed out",
                  failed=True) for i in range(3)]
    page = render_html(results)
    assert 'aria-label="trace of' not in page and " s</text>" not in page
    assert "records the order of its steps, not their times" in page
    assert page.count('<li class="failed"><span class="kind">naive</span>') == 3


def test_time_ticks_are_round() -> None:
    """A time axis ends at a round tick past the last event, with at most six ticks."""
    assert _ticks(4.0) == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert _ticks(3.7) == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert _ticks(600.0) == [0.0, 200.0, 400.0, 600.0]
    assert _ticks(0.3) == [0.0, 0.1, 0.2, 0.3]
    assert all(len(_ticks(x)) <= 6 and _ticks(x)[-1] >= x for x in (0.01, 7.5, 13, 999, 1e4))


def test_failure_names_the_broken_invariant_and_its_effect() -> None:
    """A broken invariant is shown by kind and effect, its detail once (not again as a
    problem); an episode-wide one says so."""
    results = sample_results()
    failure = results.failures[0]
    failure.broken = [
        BrokenInvariant(invariant="exactly_once(effect=payments.refund)", kind="exactly_once",
                        effect="payments.refund", detail="2 × refund:ch_0001"),
        BrokenInvariant(invariant="ends_within(seconds=65.0)", kind="ends_within",
                        detail="took 600 s")]
    failure.problems = ["exactly_once(effect=payments.refund): 2 × refund:ch_0001",
                        "ends_within(seconds=65.0): took 600 s", "1 blind retry"]
    page = render_html(results)
    assert ("invariant <b>exactly_once</b> on effect <code>payments.refund</code> broken: "
            "2 × refund:ch_0001") in page
    assert "invariant <b>ends_within</b> on the episode as a whole broken: took 600 s" in page
    assert page.count("2 × refund:ch_0001") == 1 and "<li>1 blind retry</li>" in page


class _Stopped:
    """A wall clock that never moves: the report's date is fixed, its duration zero."""

    def now(self) -> float:
        return 1_796_115_600.0  # 2026-12-01T09:00:00Z


def test_a_real_campaign_dates_its_report_not_its_results(tmp_path: Path) -> None:
    """run_full_campaign dates and times the report from its clock; results.json holds no
    date, and each violation's broken invariants name their effect. With a fixed clock two
    runs write the same report, byte for byte."""
    pages, saved = [], []
    out = tmp_path / "out"
    for name in ("a", "b"):  # one folder, as the replay commands name it, moved aside after
        run_full_campaign(out, suites=["retry_safety"], harnesses=["naive"], seeds=2,
                          workers=1, clock=_Stopped())
        pages.append((out / "report.html").read_bytes())
        saved.append((out / "results.json").read_text())
        out.rename(tmp_path / name)
    assert pages[0] == pages[1]
    page = pages[0].decode()
    assert "<dt>date</dt><dd>2026-12-01T09:00:00Z</dd>" in page
    assert "<dt>campaign duration</dt><dd>0.0 s</dd>" in page
    assert "2026-12-01" not in saved[0]
    results = CampaignResults.model_validate_json(saved[0])
    broken = [b for f in results.failures if f.verdict == "violation" for b in f.broken]
    assert broken and all(b.effect.count(".") == 1 and b.kind in b.invariant for b in broken
                          if b.kind != "ends_within")
    assert f"on effect <code>{broken[0].effect}</code>" in page
