"""The viewer's page in headless Chromium (tests/serve/cdp.py), over a real ``tether view``
process: the runs list and its filter, a run's timeline, the approvals inbox, a campaign's
charts, a run moving on under an open page, hostile journal text, and a 390 px screen.

Chromium is required (CI installs it); TETHER_SKIP_BROWSER=1 skips these on purpose.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serve.cdp import Browser

from .conftest import viewing
from .runs import HOSTILE, approve, resume, start_another

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    if os.environ.get("TETHER_SKIP_BROWSER") == "1":
        pytest.skip("TETHER_SKIP_BROWSER=1: browser tests are turned off")
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.fail("Chromium is not installed: run `apt-get install -y chromium` (Debian) "
                    "or set TETHER_SKIP_BROWSER=1 to skip the browser tests", pytrace=False)
    made = Browser(binary, tmp_path_factory.mktemp("chromium") / "profile")
    try:
        yield made
    finally:
        made.close()


def _frame_text(browser: Browser, path: str) -> str:
    """The text of the page's frame showing ``path``: the report is sandboxed (an opaque
    origin), so the page cannot read it and the frame is read through its own DevTools
    target."""
    targets = browser.call("Target.getTargets")["targetInfos"]
    target = next(t for t in targets if t["type"] == "iframe" and t["url"].endswith(path))
    session = browser.call("Target.attachToTarget", targetId=target["targetId"],
                           flatten=True)["sessionId"]
    ident = 1_000_000
    browser.ws.send(json.dumps({
        "id": ident, "sessionId": session, "method": "Runtime.evaluate",
        "params": {"expression": "document.body ? document.body.innerText : ''",
                   "returnByValue": True}}))
    while True:
        message = json.loads(browser.ws.recv(timeout=30))
        if message.get("id") == ident:  # an error: the frame went away while being read
            text: str = message.get("result", {}).get("result", {}).get("value", "")
            return text


def _rows(browser: Browser) -> list[str]:
    found: list[str] = browser.js(
        "[...document.querySelectorAll('#runs tbody tr')].map(r => r.dataset.runId)")
    return found


def test_runs_list_filters_by_status_and_opens_a_timeline(browser: Browser,
                                                          store_path: Path) -> None:
    """Newest first; choosing ``failed`` leaves the failed run; a run opens on its timeline with
    model calls (tokens, cost), tool calls (effect class, retries) and decisions."""
    with viewing("--store", str(store_path)) as (url, _):
        browser.goto(f"{url}/#/runs")
        browser.wait("document.querySelectorAll('#runs tbody tr').length === 3")
        assert _rows(browser) == ["run-fail", "run-wait", "run-done"]
        assert browser.js("document.getElementById('filter-status').options.length") == 8
        browser.js("(() => { const s = document.getElementById('filter-status');"
                   " s.value = 'failed'; s.dispatchEvent(new Event('change')); })()")
        browser.wait("document.querySelectorAll('#runs tbody tr').length === 1")
        assert _rows(browser) == ["run-fail"] and browser.js("location.hash") == (
            "#/runs?status=failed")
        browser.goto(f"{url}/#/runs")
        browser.wait("document.querySelector('#runs tr[data-run-id=\"run-done\"] a')")
        browser.js("document.querySelector('#runs tr[data-run-id=\"run-done\"] a').click()")
        browser.wait("document.querySelectorAll('#timeline li.item').length === 7")
        items = browser.js("[...document.querySelectorAll('#timeline > li.item')]"
                           ".map(li => li.querySelector('.row').innerText.replace(/\\s+/g, ' '))")
        assert items[0].startswith("+0.000 s chat scripted @1") and "tokens $0.0000" in items[0]
        assert "lookup_order @3" in items[2] and "1 retry" in items[2]
        assert "transient_tool_error" in items[2]
        assert "issue_refund @6" in items[5] and "idempotent" in items[5]
        assert items[1].startswith("+0.000 s decision policy")
        totals = browser.js("document.getElementById('totals').innerText")
        assert totals.endswith("1 retry, 3 model calls, 2 tool calls")


def test_the_approvals_inbox_shows_the_held_call_and_its_commands(browser: Browser,
                                                                  store_path: Path) -> None:
    """The inbox card names the tool, role, reason and arguments and the exact commands; the
    header counts it."""
    with viewing("--store", str(store_path)) as (url, _):
        browser.goto(f"{url}/#/approvals")
        browser.wait("document.querySelector('#approvals .card')")
        card = browser.js("document.querySelector('#approvals .card').innerText")
        assert "issue_refund needs supervisor" in card and "above the limit of 50,000" in card
        assert '"amount_cents": 72000' in card
        assert (f"tether approve run-wait --store {store_path} --step 6 --role supervisor"
                in card)
        browser.wait("document.getElementById('approval-count').innerText === '1'")


def test_campaign_results_show_the_reports_charts(browser: Browser, store_path: Path,
                                                  campaign_dir: Path) -> None:
    """The campaign page draws the summary table and the report's SVG charts, and frames the
    report itself."""
    results = json.loads((campaign_dir / "results.json").read_text())
    with viewing("--store", str(store_path), str(campaign_dir)) as (url, _):
        browser.goto(f"{url}/#/campaign")
        browser.wait("document.querySelector('#campaign figure svg.chart')")
        assert browser.js("document.querySelectorAll('#cells tbody tr').length") == len(
            results["cells"])
        charts = browser.js("document.querySelectorAll('#campaign figure svg.chart').length")
        assert charts >= len(results["campaign"]["suites"])
        # The chart styles apply: bars are painted in the harness colours, not black.
        fill = browser.js("getComputedStyle(document.querySelector('#campaign svg rect.h0'))"
                          ".fill")
        assert fill == "rgb(76, 120, 168)"
        assert browser.js("document.querySelector('iframe.report').getAttribute('src')") == (
            "/campaign/report.html")
        browser.wait("document.querySelector('iframe.report')")
        text = ""
        for _ in range(100):  # the frame loads after the page: until its text is in
            text = _frame_text(browser, "/campaign/report.html")
            if "Invariant violations" in text:
                break
            browser.js("new Promise(r => setTimeout(r, 100))")
        assert "Invariant violations" in text and "Results by harness and suite" in text


def test_a_run_moving_on_appears_without_a_reload(browser: Browser, store_path: Path) -> None:
    """With a run's page open, another process's approval and a worker's resume show up on it
    live; the page is never reloaded."""
    with viewing("--store", str(store_path)) as (url, _):
        browser.goto(f"{url}/#/run/run-wait")
        browser.wait("document.querySelector('#timeline li.item[data-kind=\"wait\"]')")
        browser.wait("document.getElementById('live').innerText === 'live'")
        browser.js("window.sameDocument = 'yes'")
        assert browser.js("document.querySelector('#run-view .approval') !== null")
        approve(store_path, by="sam")
        browser.wait("document.querySelector('#timeline li.item[data-kind=\"wait\"]')"
                     ".innerText.includes('resolved by sam')")
        assert browser.js("document.querySelector('#run-view .approval')") is None
        assert resume(store_path).value == "completed"
        browser.wait("document.querySelector('#run-view h2 .status').innerText === 'completed'")
        kinds = browser.js("[...document.querySelectorAll('#timeline > li.item')]"
                           ".map(li => li.dataset.kind)")
        assert kinds[5:] == ["wait", "tool", "model"]  # the approved refund, then the answer
        assert browser.js("window.sameDocument") == "yes"
        assert browser.js("window.viewUpdates") >= 2


def test_a_new_run_appears_in_the_open_list(browser: Browser, store_path: Path) -> None:
    """The runs list picks up a run another process started after the page opened, at the
    top, and a run's new status."""
    with viewing("--store", str(store_path)) as (url, _):
        browser.goto(f"{url}/#/runs")
        browser.wait("document.querySelectorAll('#runs tbody tr').length === 3")
        browser.js("window.sameDocument = 'yes'")
        start_another(store_path)
        browser.wait("document.querySelectorAll('#runs tbody tr').length === 4")
        assert _rows(browser)[0] == "run-new"
        approve(store_path)
        resume(store_path)
        browser.wait("document.querySelector('#runs tr[data-run-id=\"run-wait\"]')"
                     ".dataset.status === 'completed'")
        assert browser.js("window.sameDocument") == "yes"


def test_hostile_journal_text_stays_text(browser: Browser, store_path: Path) -> None:
    """Markup in a model's answer, a tool's error and a call's arguments is shown as the
    characters it is: no element is made of it and no script of it runs."""
    with viewing("--store", str(store_path)) as (url, _):
        for route, where in (("#/run/run-done", "#run-result"), ("#/run/run-fail", "#run-error"),
                             ("#/approvals", "#approvals .args")):
            browser.goto(f"{url}/{route}")
            browser.wait(f"document.querySelector({json.dumps(where)})")
            text = browser.js(f"document.querySelector({json.dumps(where)}).innerText")
            assert "<script>window.pwned=2</script>" in text, text
            assert browser.js("document.querySelectorAll('main img, main script').length") == 0
            assert browser.js("window.pwned === undefined") is True
        journal = browser.js("document.body.innerText")
        assert "onerror" in journal and HOSTILE.split('"')[0].replace(" ", "_") in journal


def test_every_view_fits_a_390_px_screen(browser: Browser, store_path: Path,
                                         campaign_dir: Path) -> None:
    """On a phone-sized screen no view is wider than the screen: tables scroll in their own
    boxes, long journal lines wrap."""
    browser.call("Emulation.setDeviceMetricsOverride", width=390, height=844,
                 deviceScaleFactor=2, mobile=True)
    try:
        with viewing("--store", str(store_path), str(campaign_dir)) as (url, _):
            for route, ready in (("#/runs", "#runs"), ("#/run/run-done", "#journal"),
                                 ("#/approvals", "#approvals .card"),
                                 ("#/campaign", "#campaign svg")):
                browser.goto(f"{url}/{route}")
                browser.wait(f"document.querySelector({json.dumps(ready)})")
                width = browser.js("document.documentElement.scrollWidth")
                assert width <= 390, (route, width)
    finally:
        browser.call("Emulation.clearDeviceMetricsOverride")
