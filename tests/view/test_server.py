"""A real ``tether view`` process (uvicorn on 127.0.0.1) answered over HTTP: its API, its page,
its guards and its live event stream."""

from __future__ import annotations

import re
import signal
from pathlib import Path
from urllib.parse import quote

import httpx

from tether.serve.sse import SseFrame, SseParser

from .conftest import viewing
from .runs import approve, start_another


def test_the_api_serves_runs_a_run_and_approvals(store_path: Path) -> None:
    """The JSON routes answer from the store, filters included, and errors are 4xx JSON."""
    with viewing("--store", str(store_path)) as (url, _):
        runs = httpx.get(f"{url}/api/runs", params={"status": "waiting"}).json()
        assert [r["run_id"] for r in runs["runs"]] == ["run-wait"]
        run = httpx.get(f"{url}/api/runs/run-done").json()
        assert run["trace"]["totals"]["model_calls"] == 3
        [held] = httpx.get(f"{url}/api/approvals").json()
        assert held["approve"].startswith("tether approve run-wait --store ")
        bad = httpx.get(f"{url}/api/runs", params={"status": "nope"})
        assert bad.status_code == 400 and "status must be one of" in bad.json()["error"]["message"]
        missing = httpx.get(f"{url}/api/runs/nope")
        assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found"
        assert httpx.get(f"{url}/api/runs", params={"offset": "x"}).status_code == 400
        assert httpx.get(f"{url}/api/campaign").status_code == 404  # no folder given


def test_the_page_loads_only_its_own_files(store_path: Path) -> None:
    """The page, its script and style sheets are served with a strict policy and name no
    other host; nothing else comes out of the page folder."""
    with viewing("--store", str(store_path)) as (url, _):
        page = httpx.get(f"{url}/")
        policy = page.headers["content-security-policy"]
        assert "script-src 'self';" in policy and "frame-ancestors 'none'" in policy
        texts = [page.text]
        for name in re.findall(r'(?:src|href)="([^"]+)"', page.text):
            if name.startswith("#"):
                continue
            asset = httpx.get(f"{url}{name}")
            assert asset.status_code == 200, name
            texts.append(asset.text)
        assert len(texts) == 4  # the page, view.css, charts.css, view.js
        for text in texts:
            assert not re.search(r"(?i)\b(?:https?|wss?):|//[a-z0-9.-]+\.[a-z]{2,}/", text)
        assert httpx.get(f"{url}/static/..%2Fapp.py").status_code == 404
        assert httpx.get(f"{url}/static/data.py").status_code == 404


def test_other_host_names_are_refused(store_path: Path) -> None:
    """A request naming another host (a rebinding page's) is refused; localhost is fine."""
    with viewing("--store", str(store_path)) as (url, _):
        port = url.rsplit(":", 1)[1]
        assert httpx.get(f"{url}/api/runs", headers={"Host": "evil.example"}).status_code == 400
        ok = httpx.get(f"{url}/api/runs", headers={"Host": f"localhost:{port}"})
        assert ok.status_code == 200


def test_the_campaign_and_its_report_are_served(store_path: Path, campaign_dir: Path) -> None:
    """With DIR, the summary and charts are served, and the report itself, sandboxed."""
    with viewing("--store", str(store_path), str(campaign_dir)) as (url, _):
        summary = httpx.get(f"{url}/api/campaign").json()
        assert summary["name"] and "<svg" in summary["charts_html"] and summary["has_report"]
        report = httpx.get(f"{url}/campaign/report.html")
        assert report.status_code == 200 and "<svg" in report.text
        assert "sandbox" in report.headers["content-security-policy"]


def test_a_campaign_alone_needs_no_store(campaign_dir: Path) -> None:
    """Without --store the campaign is served and the store's routes say there is none."""
    with viewing(str(campaign_dir)) as (url, _):
        assert httpx.get(f"{url}/api/about").json()["store"] is None
        assert httpx.get(f"{url}/api/campaign").status_code == 200
        none = httpx.get(f"{url}/api/runs")
        assert none.status_code == 404 and "no store" in none.json()["error"]["message"]


def test_the_event_stream_names_a_run_that_moved(store_path: Path) -> None:
    """Once the stream is open, a decision appended by another process is announced as a
    ``runs`` event naming that run."""
    with viewing("--store", str(store_path)) as (url, _):
        parser = SseParser()
        with httpx.stream("GET", f"{url}/api/events", timeout=30) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            chunks = response.iter_text()
            frames: list[SseFrame] = []
            while not frames:
                frames = parser.feed(next(chunks))
            assert frames[0].event == "hello"
            approve(store_path)
            changed: list[SseFrame] = []
            while not changed:
                changed = [f for f in parser.feed(next(chunks)) if f.event == "runs"]
        assert '"changed": ["run-wait"]' in changed[0].data


def test_ctrl_c_with_a_page_open_stops_cleanly(store_path: Path) -> None:
    """SIGINT while a page listens: the server ends the page's stream and exits (130) at once,
    without uvicorn's cancellation tracebacks."""
    with viewing("--store", str(store_path)) as (url, proc):
        with httpx.stream("GET", f"{url}/api/events", timeout=30) as response:
            chunks = response.iter_text()
            assert "event: hello" in next(chunks)
            proc.send_signal(signal.SIGINT)
            for _ in chunks:  # the server closes the stream: iteration ends, no error
                pass
        assert proc.wait(timeout=20) == 130  # 128 + SIGINT, as an interrupted program exits
        assert proc.stderr is not None
        errors = proc.stderr.read()
        assert "Traceback" not in errors and "ERROR" not in errors, errors


def test_a_run_id_with_slashes_and_markup_is_served(store_path: Path) -> None:
    """A run id holding '/', '?', '#' and '<' is found by its percent-encoded path (as the
    page builds it with encodeURIComponent)."""
    odd = "tenant/a?b#c <i>x</i>"
    start_another(store_path, run_id=odd)
    with viewing("--store", str(store_path)) as (url, _):
        answer = httpx.get(f"{url}/api/runs/{quote(odd, safe='')}")
        assert answer.status_code == 200, answer.text
        assert answer.json()["run"]["run_id"] == odd
