"""report.html of a real campaign in headless Chromium at 1280 and 390 px: no sideways page
scroll, the headline painted above the fold, axis labels apart and legible, tables scrolling in
their own boxes, and a screenshot that decodes to the window's size with a painted page.

Driven over the DevTools protocol (tests/serve/cdp.py). Screenshots are saved under tmp_path
and their paths printed (``pytest -s``) so a person can look at them too.
"""

from __future__ import annotations

import base64
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest

from tests.evals.sample_results import sample_results
from tests.evals.test_html_browser import _chromium
from tests.serve.cdp import Browser
from tether.evals.html import ReportMeta, write_html
from tether.evals.run import run_full_campaign

pytestmark = pytest.mark.browser

LONG = "default-with-strict-approvals"
HEIGHT = 900  # a laptop's fold at 1280; a phone's (390 × 844) is close to it

# Every text element of one class in one chart, with its box on screen.
BOXES = """Array.from(document.querySelectorAll('svg.chart')).map(svg =>
  Array.from(svg.querySelectorAll('text.CLS')).map(t => {
    const r = t.getBoundingClientRect();
    const own = Array.from(t.childNodes).filter(n => n.nodeType === 3).map(n => n.data);
    const title = t.querySelector('title');
    return {text: own.join(''), title: title ? title.textContent : '',
            left: r.left, right: r.right, top: r.top, bottom: r.bottom};
  })).filter(list => list.length > 0)"""


class Fixed:
    """A wall clock stopped at 2026-12-01 09:00 UTC: the report's date, a zero duration."""

    def now(self) -> float:
        return 1_796_115_600.0


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real campaign's report: both harnesses, the built-in scenarios, three suites."""
    out = tmp_path_factory.mktemp("campaign")
    run_full_campaign(out, suites=["retry_safety", "crash_recovery", "schema_drift"],
                      seeds=3, workers=2, name="phone check", clock=Fixed())
    return out / "report.html"


@pytest.fixture(scope="module")
def sampled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The hand-made results, whose one failure has a trace spread over 4 s (a time axis), with
    a harness name too long for its slot under a bar (it must be clipped, not overlap)."""
    path = tmp_path_factory.mktemp("sample") / "report.html"
    results = sample_results()
    results.campaign.harnesses[1] = LONG
    for cell in results.cells:
        cell.harness = LONG if cell.harness == "default" else cell.harness
    write_html(results, path, ReportMeta("2026-12-01T09:00:00Z", "0.1.0", 3.4))
    return path


@pytest.mark.parametrize("width", [1280, 390])
def test_real_campaign_report_fits_and_reads(campaign: Path, tmp_path: Path,
                                             width: int) -> None:
    """The real campaign's page at this width: nothing overflows, the headline is on the
    first screen, labels are apart, and the screenshot is a painted page of the right size."""
    browser = Browser(_chromium(), tmp_path / "profile")
    try:
        page = _load(browser, campaign, width)
        _check_layout(browser, width)
        # Every failure names the invariant it broke and the effect, and can be replayed.
        failures = browser.js("""Array.from(document.querySelectorAll('section.failure')).map(
            s => ({text: s.innerText, broken: s.querySelectorAll('li.broken-invariant').length,
                   replay: (s.querySelector('code.replay') || {}).textContent || ''}))""")
        assert failures, page
        assert all(f["replay"].startswith("tether sim run ") for f in failures)
        violations = [f for f in failures if "verdict violation" in f["text"]]
        assert violations and all(f["broken"] > 0 for f in violations)
        assert all("invariant " in f["text"] and "effect " in f["text"] for f in violations)
        # The virtual clock left every event at 0 s: lists in order, no empty time axis.
        assert browser.js("document.querySelectorAll('ol.sequence').length") > 0
        assert "trace of" not in page
        shot = _screenshot(browser, tmp_path / f"campaign-{width}.png", width)
        _check_headline_painted(browser, shot, width)
    finally:
        browser.close()


@pytest.mark.parametrize("width", [1280, 390])
def test_time_axis_report_fits_and_reads(sampled: Path, tmp_path: Path, width: int) -> None:
    """A failure whose events span time gets a time axis with round, separate ticks; at 390
    px it scrolls in its own box rather than widening the page."""
    browser = Browser(_chromium(), tmp_path / "profile")
    try:
        _load(browser, sampled, width)
        _check_layout(browser, width)
        ticks = browser.js(BOXES.replace("CLS", "tick"))
        timeline = [t["text"] for t in ticks[-1]]
        assert timeline == ["0 s", "1 s", "2 s", "3 s", "4 s"]
        # The long name is clipped under its bar; the whole name is in its hover title.
        labels = browser.js(BOXES.replace("CLS", "label"))
        assert [(b["text"], b["title"]) for b in labels[0]] == [
            ("naive", ""), (f"{LONG[:9]}…", LONG)]
        shot = _screenshot(browser, tmp_path / f"sample-{width}.png", width)
        _check_headline_painted(browser, shot, width)
    finally:
        browser.close()


def _load(browser: Browser, report: Path, width: int) -> str:
    browser.call("Emulation.setDeviceMetricsOverride", width=width, height=HEIGHT,
                 deviceScaleFactor=1, mobile=width < 600)
    browser.goto(report.as_uri())
    assert browser.js("window.innerWidth") == width
    text: str = browser.js("document.documentElement.outerHTML")
    return text


def _check_layout(browser: Browser, width: int) -> None:
    # No sideways scroll of the page itself.
    assert browser.js("document.documentElement.scrollWidth") <= width
    # Wide tables scroll inside their own boxes, which stay within the window.
    boxes = browser.js("""Array.from(document.querySelectorAll('div.scroll')).map(d => {
        const r = d.getBoundingClientRect(); return [r.right, d.scrollWidth, d.clientWidth]})""")
    assert boxes and all(right <= width + 0.5 for right, _, _ in boxes)
    if width == 390:  # the cell table (pass^k columns and all) is wider than a phone
        assert any(scroll > client for _, scroll, client in boxes)
    # Charts fit the window and keep axis labels at a legible size.
    charts = browser.js("""Array.from(document.querySelectorAll('svg.chart')).map(s => {
        const r = s.getBoundingClientRect(); return [r.left, r.right]})""")
    assert charts
    ticks = browser.js(BOXES.replace("CLS", "tick"))
    labels = browser.js(BOXES.replace("CLS", "label"))
    assert ticks and labels
    for group in ticks + labels:
        for box in group:
            assert box["bottom"] - box["top"] >= 10, box  # 12 px type, not shrunk below 10
        _assert_apart(group)
    pass_rate_ticks = [t["text"] for t in ticks[0]]
    assert pass_rate_ticks == ["0%", "25%", "50%", "75%", "100%"]


def _assert_apart(boxes: list[dict[str, Any]]) -> None:
    """No two labels' boxes intersect."""
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            overlap = (a["left"] < b["right"] and b["left"] < a["right"]
                       and a["top"] < b["bottom"] and b["top"] < a["bottom"])
            assert not overlap, (a, b)


def _screenshot(browser: Browser, path: Path, width: int) -> tuple[int, int, list[bytes]]:
    data = base64.b64decode(browser.call("Page.captureScreenshot", format="png")["data"])
    path.write_bytes(data)
    print(f"screenshot: {path}")
    size, rows = _decode_png(data)
    assert size == (width, HEIGHT)
    colours = {row[i:i + 3] for row in rows for i in range(0, len(row), 3 * 7)}
    assert len(colours) > 50, f"{path} looks blank: {len(colours)} colours"
    return size[0], size[1], rows


def _check_headline_painted(browser: Browser, shot: tuple[int, int, list[bytes]],
                            width: int) -> None:
    """The headline box lies wholly above the fold, and the screenshot shows its background
    there: it is painted on the first screen, not just laid out."""
    box = browser.js("""(() => {const r = document.querySelector('section.headline')
        .getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]})()""")
    left, top, right, bottom = box
    assert top >= 0 and bottom <= HEIGHT and right <= width, box
    text = browser.js("document.querySelector('section.headline').innerText")
    assert "Invariant violations" in text and "Duplicate effects" in text
    _, _, rows = shot
    x, y = int(left) + 4, int(top) + 4  # inside its padding: the box's own background
    assert rows[y][3 * x:3 * x + 3] == bytes((0xF4, 0xF6, 0xF8))


def _decode_png(png: bytes) -> tuple[tuple[int, int], list[bytes]]:
    """The size and RGB rows of an 8-bit RGB or RGBA PNG (alpha dropped), scanline filters
    undone — enough to read a screenshot without Pillow."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    at, idat, header = 8, b"", b""
    while at < len(png):
        length, kind = struct.unpack(">I4s", png[at:at + 8])
        chunk = png[at + 8:at + 8 + length]
        if kind == b"IHDR":
            header = chunk
        elif kind == b"IDAT":
            idat += chunk
        at += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and colour in (2, 6), (depth, colour)
    step = 3 if colour == 2 else 4
    raw, stride = zlib.decompress(idat), width * step
    rows, previous = [], bytes(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        _unfilter(kind, line, previous, step)
        previous = bytes(line)
        rows.append(previous if step == 3 else
                    b"".join(previous[i:i + 3] for i in range(0, stride, 4)))
    return (width, height), rows


def _unfilter(kind: int, line: bytearray, up: bytes, step: int) -> None:
    if kind == 0:
        return
    if kind == 2:
        line[:] = bytes((a + b) & 0xFF for a, b in zip(line, up, strict=True))
        return
    for i in range(len(line)):
        left = line[i - step] if i >= step else 0
        corner = up[i - step] if i >= step else 0
        if kind == 1:
            line[i] = (line[i] + left) & 0xFF
        elif kind == 3:
            line[i] = (line[i] + (left + up[i]) // 2) & 0xFF
        else:
            p = left + up[i] - corner
            pa, pb, pc = abs(p - left), abs(p - up[i]), abs(p - corner)
            guess = left if pa <= pb and pa <= pc else up[i] if pb <= pc else corner
            line[i] = (line[i] + guess) & 0xFF
