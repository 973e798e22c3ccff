"""A turn's first event leaves the server in the event loop's next round after its run
started: under load every round waits behind every other ready turn, so each round between
the two was time to first event."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from tether.events import Event, RunStarted
from tether.serve.app import create_app

from .serve_helpers import KEYS, served


class Rounds:
    """Counts the event loop's rounds: a task that steps once per round until stopped."""

    def __init__(self) -> None:
        self.count = 0
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        while True:
            self.count += 1
            await asyncio.sleep(0)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._tick())

    def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()


async def _post(app: Any, path: str, body: dict[str, Any], on_body: Any) -> None:
    """``POST path`` straight through the ASGI app, as uvicorn calls it (ASGI 2.3)."""
    sent = False
    gone = asyncio.Event()

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": json.dumps(body).encode(),
                    "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            on_body(message)
            if not message.get("more_body", False):
                gone.set()

    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
             "http_version": "1.1", "method": "POST", "scheme": "http", "path": path,
             "raw_path": path.encode(), "root_path": "", "query_string": b"",
             "headers": [(b"authorization", f"Bearer {KEYS['ada'][0]}".encode()),
                         (b"content-type", b"application/json")],
             "server": ("serve", 80), "client": ("client", 1)}
    await app(scope, receive, send)


def test_the_first_event_is_sent_in_the_round_after_the_run_started(tmp_path: Path) -> None:
    """Between the turn run's run_started and the stream's first frame (turn.started) the
    event loop turns at most once: the request wakes on the run's start and sends the head
    and the first frames in that step."""

    async def go() -> None:
        async with served(tmp_path) as s:
            await s.call("POST", "/v1/sessions", body={"agent": "support-chat",
                                                        "session_id": "c"})
            app = create_app(s.server)
            rounds = Rounds()
            marks: dict[str, int] = {}

            def heard(run_id: str, event: Event) -> None:
                if isinstance(event, RunStarted) and ":turn:" in run_id:
                    marks.setdefault("run_started", rounds.count)

            def on_body(message: dict[str, Any]) -> None:
                if message.get("body"):
                    marks.setdefault("first_frame", rounds.count)
                    text = message["body"].decode()
                    marks.setdefault("first_is_turn_started", int("turn.started" in text))

            s.server.runtime.add_listener(heard)
            rounds.start()
            try:
                await _post(app, "/v1/sessions/c/triggers/user-message",
                            {"input": {"text": "Hi, how much did I pay for order ch_0001?"}},
                            on_body)
            finally:
                rounds.stop()
            assert marks["first_is_turn_started"] == 1
            assert marks["first_frame"] - marks["run_started"] <= 1, marks

    asyncio.run(go())
