"""The chat page of a real `tether serve` in headless Chromium, driven over the DevTools
protocol (tests/serve/cdp.py): a message with a hostile text, a client tool form, an approval
decided by a supervisor's key, and a server SIGKILLed mid-turn and restarted under the page.

CDP over the installed ``websockets`` package rather than Playwright: Playwright's Python
package pins its own browser build and driver (a download), while this needs only Debian's
``chromium`` and a few DevTools commands.

Chromium is required: CI installs it (``.ci/run``). Without it these tests fail with an install
hint, unless TETHER_SKIP_BROWSER=1 says to skip them on purpose.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from .cdp import Browser
from .serve_helpers import EXAMPLE
from .test_server_process import CLI, GATED, GATED_AGENT, make_key

FORM_AGENT = """
name: form
instructions: Ask, then say what was answered.
model: {provider: scripted, script: "form.py:script", settings: {stream: true}}
tools:
  - client:
      name: ask
      description: Ask the person.
      args: {type: object, properties: {question: {type: string}}, required: [question]}
      result:
        type: object
        properties:
          name: {type: string}
          amount: {type: number}
          count: {type: integer}
          ok: {type: boolean}
          color: {type: string, enum: [red, green]}
        required: [name, amount, count, ok, color]
      effect: read
      timeout_s: 600
"""
FORM = """
import asyncio
from tether.models import call, reply

async def script(request):
    results = [m for m in request.messages if m.role == "tool"]
    if not results:
        return call("ask", {"question": "Who are you?"})
    # A moment before it writes (its text streamed in pieces): the page's stream is open.
    await asyncio.sleep(0.5)
    return reply("answered: " + results[-1].content)
"""
HOSTILE = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>'


def _chromium() -> str:
    """The Chromium binary; fails the calling test (or skips it when TETHER_SKIP_BROWSER=1)
    if there is none."""
    if os.environ.get("TETHER_SKIP_BROWSER") == "1":
        pytest.skip("TETHER_SKIP_BROWSER=1: browser tests are turned off")
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.fail("Chromium is not installed: run `apt-get install -y chromium` (Debian) "
                    "or set TETHER_SKIP_BROWSER=1 to skip the browser tests", pytrace=False)
    return binary


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _serve(tmp: Path, keys: Path, port: int) -> Iterator[subprocess.Popen[str]]:
    """`tether serve` of the support chat (with its world), the gated agent and the form
    agent, on ``port``."""
    agent, form = tmp / "gated.yaml", tmp / "form.yaml"
    agent.write_text(GATED_AGENT)
    (tmp / "gated.py").write_text(GATED)
    form.write_text(FORM_AGENT)
    (tmp / "form.py").write_text(FORM)
    proc = subprocess.Popen(
        [*CLI, "serve", str(EXAMPLE / "agent.yaml"), str(agent), str(form), "--store",
         str(tmp / "runs.db"), "--keys", str(keys), "--port", str(port),
         "--world", str(EXAMPLE / "world.yaml"), "--seed", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "GATE_DIR": str(tmp)})
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = proc.stdout.readline()
        assert line.startswith("serving http://"), (
            line, proc.stderr.read() if proc.poll() is not None else "")
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_page_references_nothing_off_host(tmp_path: Path) -> None:
    """The page and its files are served without a key, load only same-origin paths, and
    name no URL of another host (no browser needed: not marked ``browser``)."""
    keys = tmp_path / "keys.yaml"
    make_key(keys, "shop", "ada", "customer")
    port = _free_port()
    with _serve(tmp_path, keys, port):
        base = f"http://127.0.0.1:{port}"
        page = httpx.get(f"{base}/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "default-src 'self'" in page.headers["content-security-policy"]
        texts = [page.text]
        for name in re.findall(r'(?:src|href)="([^"]+)"', page.text):
            assert not re.match(r"^[a-z]+:|^//", name), name
            asset = httpx.get(f"{base}/{name}")
            assert asset.status_code == 200, name
            texts.append(asset.text)
        assert len(texts) == 3
        for text in texts:
            assert not re.search(r"(?i)\b(?:https?|wss?|ftp):|//[a-z0-9.-]+\.[a-z]{2,}/", text)
        # Only the page's own files are served: no path beyond them.
        assert httpx.get(f"{base}/static/..%2Fapp.py").status_code == 404
        assert httpx.get(f"{base}/static/nope.js").status_code == 404


@pytest.mark.browser
def test_chat_page_in_chromium(tmp_path: Path) -> None:
    """In headless Chromium: a hostile message stays text and is answered; a refund's client
    tool form is filled and sent; the approval is refused to the customer's key (naming the
    role) and approved with a supervisor's; the server is SIGKILLed mid-turn and restarted on
    the same port and store, and the page reconnects and shows the whole turn once."""
    chromium = _chromium()
    keys = tmp_path / "keys.yaml"
    ada = make_key(keys, "shop", "ada", "customer")
    grace = make_key(keys, "shop", "grace", "supervisor")
    port = _free_port()
    base = f"http://127.0.0.1:{port}/"
    browser = Browser(chromium, tmp_path / "profile")
    try:
        with _serve(tmp_path, keys, port) as proc:
            browser.goto(base)
            _use_key(browser, ada)
            _open(browser, "support-chat", "ada")

            # 1. A hostile message is shown as text, and answered.
            _say(browser, HOSTILE + " How much did I pay for order ch_0001?")
            turn1 = "#log .turn:nth-of-type(1)"
            browser.wait(f"document.querySelector('{turn1} .state.completed')")
            assert browser.js(f"document.querySelector('{turn1} .msg.user').textContent") == (
                HOSTILE + " How much did I pay for order ch_0001?")
            assert browser.js("document.querySelectorAll('#log img, #log script').length") == 0
            assert browser.js("window.pwned === undefined")
            assert "49.99" in browser.js(
                f"[...document.querySelectorAll('{turn1} .msg.assistant')]"
                ".map(e => e.textContent).join(' ')")

            # 2. A refund that asks the app to confirm: a form from the result's schema.
            _say(browser, "The espresso machine from order ch_0003 arrived broken. "
                 "Please refund it.")
            turn2 = "#log .turn:nth-of-type(2)"
            browser.wait(f"document.querySelector('{turn2} form.client-tool')")
            assert browser.js(
                f"document.querySelector('{turn2} form.client-tool input[name=confirmed]')"
                ".type") == "checkbox"
            browser.js(f"(() => {{ const f = document.querySelector('{turn2} form.client-tool');"
                       " f.querySelector('input[name=confirmed]').checked = true;"
                       " f.requestSubmit(); })()")

            # 3. The approval: the customer's key cannot decide; the supervisor's can.
            card = f"{turn2} .approval"
            browser.wait(f"document.querySelector('{card}')")
            browser.js(f"document.querySelector('{card} button.approve').click()")
            browser.wait(f"document.querySelector('{card} .error').textContent === "
                         "'this key cannot decide: needs role supervisor'")
            _use_key(browser, grace)
            browser.js(f"document.querySelector('{card} button.approve').click()")
            browser.wait(f"document.querySelector('{turn2} .state.completed')")
            assert browser.js(f"[...document.querySelectorAll('{turn2} .tool')]"
                              ".some(e => e.textContent === 'approval approved by grace@shop')")

            assert browser.js("document.querySelectorAll('#log .streaming').length") == 0
            # 4. A turn under way when the server is SIGKILLed.
            _open(browser, "gated", "g1")
            _say(browser, "Refund ch_1 please")
            browser.wait("document.querySelector('#log .turn .tool') !== null")
            _wait_file(browser, tmp_path / "entered")
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        browser.wait("document.getElementById('status').textContent === 'reconnecting…'")
        (tmp_path / "open").write_text("")
        with _serve(tmp_path, keys, port):
            browser.wait("document.querySelector('#log .turn .state.completed')")
            browser.wait("document.getElementById('status').textContent === ''")
            live = _turn(browser)
            assert [m for m in live["messages"] if m.startswith("msg ")] == [
                "msg user:Refund ch_1 please",
                "msg assistant:done: {\"refunded\": \"ch_1\"}"], live
            assert len(live["seqs"]) == len(set(live["seqs"])) > 0
            # The page opened afresh replays the same turn from the store: the same thing.
            browser.goto(base)
            _open(browser, "gated", "g1")
            browser.wait("document.querySelector('#log .turn .state.completed')")
            assert _turn(browser) == live
        assert (tmp_path / "effects").read_text().split() == ["refund:ch_1"]
    finally:
        browser.close()


@pytest.mark.browser
def test_client_tool_form_follows_the_result_schema(tmp_path: Path) -> None:
    """A client tool's result schema (string, number, integer, boolean, enum) becomes a form
    whose answer reaches the run with each value of its schema's type."""
    chromium = _chromium()
    keys = tmp_path / "keys.yaml"
    ada = make_key(keys, "shop", "ada", "customer")
    port = _free_port()
    browser = Browser(chromium, tmp_path / "profile")
    try:
        with _serve(tmp_path, keys, port):
            browser.goto(f"http://127.0.0.1:{port}/")
            _use_key(browser, ada)
            _open(browser, "form", "f1")
            _say(browser, "ask me")
            form = "#log form.client-tool"
            browser.wait(f"document.querySelector('{form}')")
            kinds = browser.js(f"[...document.querySelectorAll('{form} input, {form} select')]"
                               ".map(e => [e.name, e.tagName, e.type, e.step || ''])")
            assert {name: rest for name, *rest in kinds} == {
                "name": ["INPUT", "text", ""], "amount": ["INPUT", "number", "any"],
                "count": ["INPUT", "number", "1"], "ok": ["INPUT", "checkbox", ""],
                "color": ["SELECT", "select-one", ""]}
            assert browser.js(f"[...document.querySelectorAll('{form} option')]"
                              ".map(e => e.textContent)") == ["red", "green"]
            # Streamed text (model.delta) is shown while it comes, then replaced by the
            # journaled response: the observer counts the streaming bubbles ever added.
            browser.js("window.deltas = 0; new MutationObserver(ms => { for (const m of ms)"
                       " for (const n of m.addedNodes) if (n.classList &&"
                       " n.classList.contains('streaming')) window.deltas += 1; })"
                       ".observe(document.getElementById('log'),"
                       " {childList: true, subtree: true})")
            browser.js(f"(() => {{ const f = document.querySelector('{form}');"
                       " const e = (n) => f.elements.namedItem(n);"
                       " e('name').value = '<b>Ada</b>';"
                       " e('amount').value = '12.5'; e('count').value = '3';"
                       " e('ok').checked = true; e('color').selectedIndex = 1;"
                       " f.requestSubmit(); })()")
            browser.wait("document.querySelector('#log .state.completed')")
            answers = browser.js("[...document.querySelectorAll('#log .msg.assistant')]"
                                 ".map(e => e.textContent)")
            assert browser.js("window.deltas") > 0
            assert browser.js("document.querySelectorAll('#log .streaming').length") == 0
            assert len(answers) == 1, answers
            answer = answers[0]
            assert answer.startswith("answered: ")
            assert json.loads(answer.removeprefix("answered: ")) == {
                "name": "<b>Ada</b>", "amount": 12.5, "count": 3, "ok": True, "color": "green"}
            assert browser.js("document.querySelectorAll('#log b').length") == 0
    finally:
        browser.close()


@pytest.mark.browser
def test_a_decision_made_elsewhere_shows_on_the_page(tmp_path: Path) -> None:
    """A turn held for approval is approved by a supervisor through the API, not the page;
    the page, which follows the waiting run on one open stream (no asking again on a timer),
    shows the decision and the turn's end, on that same stream."""
    chromium = _chromium()
    keys = tmp_path / "keys.yaml"
    ada = make_key(keys, "shop", "ada", "customer")
    grace = make_key(keys, "shop", "grace", "supervisor")
    port = _free_port()
    browser = Browser(chromium, tmp_path / "profile")
    try:
        with _serve(tmp_path, keys, port):
            base = f"http://127.0.0.1:{port}"
            browser.goto(f"{base}/")
            _use_key(browser, ada)
            _open(browser, "support-chat", "ada")
            _say(browser, "The espresso machine from order ch_0003 arrived broken. "
                 "Please refund it.")
            browser.wait("document.querySelector('#log form.client-tool')")
            browser.js("(() => { const f = document.querySelector('#log form.client-tool');"
                       " f.elements.namedItem('confirmed').checked = true;"
                       " f.requestSubmit(); })()")
            browser.wait("document.querySelector('#log .approval')")
            browser.wait("document.querySelector('#log .state.waiting')")
            # The waiting run stays followed: one stream open, not counted as catching up.
            browser.wait("window.tetherChat.following() === 1 && window.tetherChat.busy() === 0")
            browser.js("(() => { window.streams = 0; const real = window.fetch;"
                       " window.fetch = (url, init) => {"
                       "  if (String(url).includes('/events')) window.streams += 1;"
                       "  return real(url, init); }; })()")
            run_id = browser.js("document.querySelector('#log .turn').dataset.run")
            decided = httpx.post(f"{base}/v1/approvals/{run_id}/approve", json={},
                                 headers={"Authorization": f"Bearer {grace}"})
            assert decided.status_code == 200, decided.text
            browser.wait("document.querySelector('#log .state.completed')")
            # The decision and the turn's end came on the stream already open.
            assert browser.js("window.streams") == 0
            assert browser.js("[...document.querySelectorAll('#log .approval button')]"
                              ".every(b => b.disabled)")
            assert browser.js("[...document.querySelectorAll('#log .tool')].filter(e =>"
                              " e.textContent === 'approval approved by grace@shop').length") == 1
            # Opened afresh, the page replays the turn: the answered form and the decided
            # approval take nothing more.
            browser.goto(f"{base}/")
            _open(browser, "support-chat", "ada")
            browser.wait("document.querySelector('#log .state.completed')")
            assert browser.js("[...document.querySelectorAll('#log form.client-tool input,"
                              " #log form.client-tool button, #log .approval button')]"
                              ".map(e => e.disabled)") == [True, True, True, True]
    finally:
        browser.close()


@pytest.mark.browser
def test_an_expired_or_lost_session_is_restored_from_the_pages_copy(tmp_path: Path) -> None:
    """The page keeps its copy of a session's history. A message to the session once it has
    expired is refused; the page shows the Restore control, restores the session from its
    copy, and the next message is a turn again. A server whose store lost the session (a new
    store) offers the same control on opening it, and the restored session holds the
    conversation the page kept."""
    chromium = _chromium()
    keys = tmp_path / "keys.yaml"
    ada = make_key(keys, "shop", "ada", "customer")
    me = {"Authorization": f"Bearer {ada}"}
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    browser = Browser(chromium, tmp_path / "profile")
    try:
        with _serve(tmp_path, keys, port):
            created = httpx.post(f"{base}/v1/sessions", headers=me, json={
                "agent": "support-chat", "session_id": "short", "ttl_s": 3})
            assert created.status_code == 201, created.text
            browser.goto(f"{base}/")
            _use_key(browser, ada)
            _open(browser, "support-chat", "short")
            _say(browser, "How much did I pay for order ch_0001?")
            browser.wait("document.querySelector('#log .state.completed')")
            browser.wait("JSON.parse(localStorage.getItem('tether.history.short') || "
                         "'{\"history\": []}').history.length >= 2")
            _until_expired(f"{base}/v1/sessions/short", me)
            _say(browser, "Hello again?")
            browser.wait("!document.getElementById('restore-panel').hidden")
            assert browser.js("document.getElementById('send').disabled")
            assert "expired" in browser.js("document.getElementById('restore-text').textContent")
            browser.js("document.getElementById('restore').click()")
            browser.wait("document.getElementById('restore-panel').hidden"
                         " && !document.getElementById('send').disabled")
            view = httpx.get(f"{base}/v1/sessions/short", headers=me).json()
            assert view["status"] == "active"
            assert "49.99" in " ".join(str(m["content"]) for m in view["history"])
            _say(browser, "Which plan am I on?")
            browser.wait("document.querySelectorAll('#log .state.completed').length === 2")
        # A server on a new store: it has never heard of the session.
        for name in ("runs.db", "runs.db-wal", "runs.db-shm"):
            (tmp_path / name).unlink(missing_ok=True)
        with _serve(tmp_path, keys, port):
            browser.goto(f"{base}/")
            browser.js("(() => { document.getElementById('agent').value = 'support-chat';"
                       " document.getElementById('session').value = 'short';"
                       " document.getElementById('session-form').requestSubmit(); })()")
            browser.wait("!document.getElementById('restore-panel').hidden")
            assert "no longer has" in browser.js(
                "document.getElementById('restore-text').textContent")
            browser.js("document.getElementById('restore').click()")
            browser.wait("window.tetherChat.session() === 'short'"
                         " && !document.getElementById('send').disabled")
            view = httpx.get(f"{base}/v1/sessions/short", headers=me).json()
            texts = [str(m["content"]) for m in view["history"]]
            assert view["status"] == "active" and view["turns"] == []
            assert "How much did I pay for order ch_0001?" in texts
            assert "Which plan am I on?" in texts
    finally:
        browser.close()


@pytest.mark.browser
def test_opening_sessions_with_waiting_turns_one_after_another_leaks_no_connection(
        tmp_path: Path) -> None:
    """Eight sessions, each with a turn waiting for the app, are opened in the page one after
    another (each one's waiting turn followed on an open stream); the streams of a session
    left are closed, so the browser's few connections to the server are never used up and the
    last session still takes a message."""
    chromium = _chromium()
    keys = tmp_path / "keys.yaml"
    ada = make_key(keys, "shop", "ada", "customer")
    me = {"Authorization": f"Bearer {ada}"}
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    browser = Browser(chromium, tmp_path / "profile")
    try:
        with _serve(tmp_path, keys, port):
            for n in range(8):
                httpx.post(f"{base}/v1/sessions", headers=me,
                           json={"agent": "support-chat", "session_id": f"w{n}"})
                with httpx.stream("POST", f"{base}/v1/sessions/w{n}/triggers/user-message",
                                  headers=me, json={"input": {"text": "The headphones from "
                                  "order ch_0002 stopped working. Please refund them."}},
                                  timeout=60) as answer:
                    assert "run.waiting" in answer.read().decode()
            browser.goto(f"{base}/")
            _use_key(browser, ada)
            for n in range(8):
                _open(browser, "support-chat", f"w{n}")
                browser.wait("window.tetherChat.following() === 1")
            _open(browser, "support-chat", "fresh")
            _say(browser, "How much did I pay for order ch_0001?")
            browser.wait("document.querySelector('#log .state.completed')")
    finally:
        browser.close()


def _until_expired(url: str, headers: dict[str, str]) -> None:
    """Wait (a deadline, not an assert on time) until the session at ``url`` has expired."""
    deadline = time.monotonic() + 60
    while httpx.get(url, headers=headers).json()["status"] != "expired":
        assert time.monotonic() < deadline, "the session never expired"
        time.sleep(0.2)


@pytest.mark.browser
def test_a_message_whose_answer_was_lost_is_sent_again_without_a_second_turn(
        tmp_path: Path) -> None:
    """The connection drops after a message reached the server but before its answer came
    back; the page sends it again, and the session still has one turn, shown once."""
    chromium = _chromium()
    keys = tmp_path / "keys.yaml"
    ada = make_key(keys, "shop", "ada", "customer")
    (tmp_path / "open").write_text("")  # the gated agent's write goes straight through
    port = _free_port()
    browser = Browser(chromium, tmp_path / "profile")
    try:
        with _serve(tmp_path, keys, port):
            base = f"http://127.0.0.1:{port}"
            browser.goto(f"{base}/")
            _use_key(browser, ada)
            _open(browser, "gated", "g1")
            # The first message's POST reaches the server, and its answer is thrown away.
            browser.js("(() => { const real = window.fetch; let lost = false;"
                       " window.fetch = async (url, init) => {"
                       "  const answer = await real(url, init);"
                       "  if (!lost && init && init.method === 'POST' &&"
                       "      String(url).includes('/triggers/')) {"
                       "   lost = true; answer.body.cancel(); throw new TypeError('lost'); }"
                       "  return answer; }; })()")
            _say(browser, "Refund ch_1 please")
            browser.wait("document.querySelector('#log .state.completed')")
            browser.wait("window.tetherChat.busy() === 0")
            me = {"Authorization": f"Bearer {ada}"}
            view = httpx.get(f"{base}/v1/sessions/g1", headers=me).json()
            assert [t["status"] for t in view["turns"]] == ["completed"]
            assert browser.js("[...document.querySelectorAll('#log .msg.user')]"
                              ".map(e => e.textContent)") == ["Refund ch_1 please"]
    finally:
        browser.close()


def _use_key(browser: Browser, key: str) -> None:
    browser.js(f"(() => {{ document.getElementById('key').value = {json.dumps(key)};"
               " document.getElementById('key-form').requestSubmit(); })()")
    assert browser.js("sessionStorage.getItem('tether.key')") == key


def _open(browser: Browser, agent: str, sid: str) -> None:
    browser.js(f"(() => {{ document.getElementById('agent').value = {json.dumps(agent)};"
               f" document.getElementById('session').value = {json.dumps(sid)};"
               " document.getElementById('session-form').requestSubmit(); })()")
    browser.wait(f"window.tetherChat.session() === {json.dumps(sid)}"
                 " && window.tetherChat.busy() === 0")


def _say(browser: Browser, text: str) -> None:
    browser.js(f"(() => {{ document.getElementById('message').value = {json.dumps(text)};"
               " document.getElementById('message-form').requestSubmit(); })()")


def _wait_file(browser: Browser, path: Path) -> None:
    # Polled from the browser's side too: the file is the tool's, the wait is the page's.
    for _ in range(600):
        if path.exists():
            return
        browser.js("new Promise(r => setTimeout(r, 50))")
    raise AssertionError(f"{path} never appeared; the page shows:\n"
                         + str(browser.js("document.body.innerText")))


def _turn(browser: Browser) -> dict[str, list[str]]:
    """The one turn on the page: its elements as 'class:text', and the seqs shown."""
    value = browser.js(
        "(() => { const t = document.querySelectorAll('#log .turn');"
        " if (t.length !== 1) return {count: t.length};"
        " const nodes = [...t[0].children];"
        " return {messages: nodes.map(n => n.className + ':' + n.textContent),"
        " seqs: nodes.filter(n => n.dataset.seq).map(n => n.dataset.seq)}; })()")
    assert isinstance(value, dict) and "messages" in value, value
    return value
