"""The HTML report's structure: self-contained, escaped, deterministic, one SVG per chart."""

from __future__ import annotations

import re
from pathlib import Path

from tests.evals.sample_results import REPLAY, sample_results
from tether.evals.html import render_html, write_html
from tether.evals.results import CampaignInfo, CampaignResults

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
