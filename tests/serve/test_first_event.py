"""A turn's events leave the server in the event loop's next round after they are journaled
(the first one after its run started, the last one after the run finished): under load every
round waits behind every other ready turn, so each round between the two was latency."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from tether.events import Event, RunFinished, RunStarted
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


async def _post(app: Any, path: str, body: dict[str, Any] | None, on_body: Any,
                query: bytes = b"") -> None:
    """``POST path`` (``GET`` without a body) straight through the ASGI app, as uvicorn
    calls it (ASGI 2.3)."""
    sent = body is None
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
             "http_version": "1.1", "method": "GET" if body is None else "POST",
             "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
             "query_string": query,
             "headers": [(b"authorization", f"Bearer {KEYS['ada'][0]}".encode()),
                         (b"content-type", b"application/json")],
             "server": ("serve", 80), "client": ("client", 1)}
    await app(scope, receive, send)


def test_a_turns_events_are_sent_in_the_round_after_they_are_journaled(
        tmp_path: Path) -> None:
    """Between the turn run's run_started and the stream's first frame (turn.started) the
    event loop turns at most once (the request wakes on the run's start and sends the head
    and the first frames in that step), and so it does between run_finished and the
    turn.finished frame (the append settles the stream's wake itself)."""

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
                if isinstance(event, RunFinished) and ":turn:" in run_id:
                    marks.setdefault("run_finished", rounds.count)

            def on_body(message: dict[str, Any]) -> None:
                if message.get("body"):
                    marks.setdefault("first_frame", rounds.count)
                    text = message["body"].decode()
                    marks.setdefault("first_is_turn_started", int("turn.started" in text))
                    if "turn.finished" in text:
                        marks.setdefault("last_frame", rounds.count)

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
            assert marks["last_frame"] - marks["run_finished"] <= 1, marks

    asyncio.run(go())


def test_an_event_appended_while_a_stream_waits_is_sent_in_the_next_round(
        tmp_path: Path) -> None:
    """A stream follows a turn waiting for the app (until=finished) and is idle; another
    request continues the turn with the app's answer: the frame showing the answer leaves in
    the event loop's next round (the server wakes the run's streams on the answer itself,
    settling their wakes at once, and a stream waits on its wake alone)."""

    async def go() -> None:
        async with served(tmp_path) as s:
            await s.call("POST", "/v1/sessions", body={"agent": "support-chat",
                                                        "session_id": "c"})
            fired = await s.frames("POST", "/v1/sessions/c/triggers/user-message", body={
                "input": {"text": "The headphones from order ch_0002 stopped working. "
                                  "Please refund them."}})
            asked = next(d for _, t, d in fired if t == "client_tool.requested")
            run_id = asked["execution_id"]
            app = create_app(s.server)
            rounds = Rounds()
            marks: dict[str, int] = {}
            ended = asyncio.Event()

            def on_body(message: dict[str, Any]) -> None:
                text = (message.get("body") or b"").decode()
                if "tool.finished" in text and "answered" in marks:
                    marks.setdefault("sent", rounds.count)
                    ended.set()

            following = asyncio.ensure_future(
                _post(app, f"/v1/executions/{run_id}/events", None, on_body,
                      b"until=finished"))
            while run_id not in s.server._waiters:  # the stream sent run.waiting, and waits
                await asyncio.sleep(0)
            for _ in range(3):
                await asyncio.sleep(0)
            rounds.start()
            await asyncio.sleep(0)
            who = s.server.keys.identify(KEYS["ada"][0])
            assert who is not None
            await s.server.continue_execution(
                who, run_id, {"results": {asked["call_id"]: {"confirmed": True}}})
            marks["answered"] = rounds.count
            await ended.wait()
            rounds.stop()
            following.cancel()
            assert marks["sent"] - marks["answered"] <= 1, marks

    asyncio.run(go())
