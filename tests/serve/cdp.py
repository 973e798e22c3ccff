"""A small Chrome DevTools Protocol driver: headless Chromium, one page, JavaScript evaluated in
it, over the ``websockets`` package (no browser download, no Node).

Chromium is started with ``--remote-debugging-port=0``; the port it picked is read from the
``DevToolsActivePort`` file it writes into its profile directory.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import ClientConnection, connect

FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1"]


class CdpError(RuntimeError):
    """A DevTools call failed, or JavaScript evaluated in the page threw."""


class Browser:
    """Headless Chromium with one page, driven over the DevTools protocol."""

    def __init__(self, binary: str, profile: Path) -> None:
        profile.mkdir(parents=True, exist_ok=True)
        self._stack = ExitStack()
        # Its output goes to a file: a pipe nobody reads could fill and stall the browser.
        self.log = profile.parent / "chromium.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen([binary, *FLAGS, f"--user-data-dir={profile}",
                                          "about:blank"], stdout=log, stderr=log)
        try:
            port = self._port(profile / "DevToolsActivePort")
            targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
            page = next(t for t in targets if t.get("type") == "page")
            self.ws: ClientConnection = self._stack.enter_context(
                connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=10))
        except BaseException:
            self.close()
            raise
        self._ids = itertools.count(1)

    def _port(self, path: Path) -> int:
        # Polling a file the browser writes once it listens: no timing assert, a deadline
        # only so a browser that never starts fails the test instead of hanging it.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise CdpError(f"chromium exited ({self.proc.returncode}): "
                               f"{self.log.read_text(errors='replace')[-2000:]}")
            if path.exists():
                first = path.read_text().split("\n")[0].strip()
                if first.isdigit():
                    return int(first)
            time.sleep(0.05)
        raise CdpError("chromium did not open its DevTools port within 30 s")

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """One DevTools command; its result (events arriving meanwhile are dropped)."""
        ident = next(self._ids)
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=60))
            if message.get("id") == ident:
                if "error" in message:
                    raise CdpError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result

    def js(self, expression: str) -> Any:
        """The value of ``expression`` evaluated in the page (promises awaited)."""
        result = self.call("Runtime.evaluate", expression=expression, awaitPromise=True,
                           returnByValue=True)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise CdpError(details.get("exception", {}).get("description") or str(details))
        return result["result"].get("value")

    def goto(self, url: str) -> None:
        """Navigate and wait until the document has loaded."""
        self.call("Page.navigate", url=url)
        self.wait("document.readyState === 'complete' && location.href === "
                  + json.dumps(url))

    def wait(self, condition: str, timeout: float = 30.0) -> None:
        """Poll the JavaScript ``condition`` until it is truthy (in JavaScript's sense: an
        element is, though it comes back as an empty object). Fails with the page's text
        when it never becomes so."""
        deadline = time.monotonic() + timeout
        while True:
            if self.js(f"Boolean({condition})") is True:
                return
            if time.monotonic() > deadline:
                text = self.js("document.body ? document.body.innerText : ''")
                raise CdpError(f"waited {timeout} s for {condition!r}; the page shows:\n{text}")
            time.sleep(0.05)

    def close(self) -> None:
        """Close the connection and end the browser."""
        self._stack.close()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
