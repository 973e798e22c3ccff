"""The HTML report in a real browser: headless Chromium parses it and paints it.

Chromium is required: CI installs it (``.ci/run``). Without it these tests fail with an install
hint, unless TETHER_SKIP_BROWSER=1 says to skip them on purpose.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from tests.evals.sample_results import REPLAY, sample_results
from tether.evals.html import render_html, write_html

pytestmark = pytest.mark.browser

HOSTILE = "<script>alert(1)</script>"


def _chromium() -> str:
    """The Chromium binary; fails the calling test (or skips it when TETHER_SKIP_BROWSER=1)
    if there is none. A plain call rather than a fixture, so a missing browser is reported as
    the test's FAILURE, not as a setup error."""
    if os.environ.get("TETHER_SKIP_BROWSER") == "1":
        pytest.skip("TETHER_SKIP_BROWSER=1: browser tests are turned off")
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.fail("Chromium is not installed: run `apt-get install -y chromium` (Debian) "
                    "or set TETHER_SKIP_BROWSER=1 to skip the browser tests", pytrace=False)
    return binary


def _run(chromium: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # A private profile directory keeps runs independent of each other and of ~/.config;
    # --no-sandbox because CI runs as root, where Chromium's sandbox refuses to start.
    command = [chromium, "--headless=new", "--no-sandbox", "--disable-gpu",
               "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          check=False)
    assert done.returncode == 0, f"chromium failed ({done.returncode}):\n{done.stderr[-2000:]}"
    return done


def _dump_dom(chromium: str, tmp_path: Path, page: str) -> str:
    path = tmp_path / "report.html"
    path.write_text(page, encoding="utf-8")
    return _run(chromium, tmp_path, "--dump-dom", path.as_uri()).stdout


def test_browser_parses_table_replay_and_svg(tmp_path: Path) -> None:
    """Chromium's DOM holds the table cells, the replay command and every SVG element."""
    chromium = _chromium()
    page = render_html(sample_results())
    dom = _dump_dom(chromium, tmp_path, page)
    assert "<title>nightly — tether campaign</title>" in dom
    # naive on faults: 40.0 % with its Wilson interval; default on baseline: 100.0 %.
    assert '<td class="num">40.0%</td><td class="num">21.9% – 61.3%</td>' in dom
    assert '<td class="num">100.0%</td>' in dom
    assert f'<code class="replay">{REPLAY}</code>' in dom
    # The browser rebuilt the SVGs as elements: it re-serializes every self-closed <line/> as
    # <line ...></line>, and the element counts match what we wrote.
    assert dom.count("<svg") == 5
    for tag in ("rect", "line", "circle", "text"):
        assert dom.count(f"<{tag} ") == page.count(f"<{tag} ") > 0, tag
    # 4 bars + 4 domain bars (naive 3, default 1) + 4 trace rows = 12 rects.
    assert dom.count("<rect ") == 12
    assert dom.count("</line>") == page.count("<line ")
    assert dom.count('<circle class="failed"') == 1


def test_browser_sees_hostile_names_as_text(tmp_path: Path) -> None:
    """A scenario named like a script tag creates no script element in the parsed page."""
    chromium = _chromium()
    dom = _dump_dom(chromium, tmp_path, render_html(sample_results(scenario=HOSTILE)))
    assert "<script" not in dom
    assert "&lt;script&gt;alert(1)&lt;/script&gt; · faults · naive · seed 7" in dom


def test_browser_screenshot_is_a_painted_png(tmp_path: Path) -> None:
    """A screenshot of the report is a PNG of the window's size with more than a blank page."""
    chromium = _chromium()
    report, shot = tmp_path / "report.html", tmp_path / "report.png"
    write_html(sample_results(), report)
    _run(chromium, tmp_path, "--hide-scrollbars", "--window-size=1200,1600",
         f"--screenshot={shot}", report.as_uri())
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    width, height = struct.unpack(">II", data[16:24])  # IHDR follows the signature
    assert (width, height) == (1200, 1600)
    # A blank page compresses to a few distinct byte values; bars, text and colours give many.
    assert len(set(_pixels(data))) > 50


def _pixels(png: bytes) -> bytes:
    """The decompressed image data of a PNG (filter bytes included), from its IDAT chunks."""
    at, idat = 8, b""
    while at < len(png):
        length, kind = struct.unpack(">I4s", png[at:at + 8])
        if kind == b"IDAT":
            idat += png[at + 8:at + 8 + length]
        at += 12 + length
    return zlib.decompress(idat)
