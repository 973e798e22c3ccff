"""``GET /v1/executions/{id}/events?until=finished`` follows a run through its waits: one
stream shows the wait, then what an answer made elsewhere brought, to the turn's end."""

from __future__ import annotations

import asyncio
from pathlib import Path

from .serve_helpers import events_of, served

REFUND = "The headphones from order ch_0002 stopped working. Please refund them."


def test_a_stream_until_finished_goes_on_through_a_wait(tmp_path: Path) -> None:
    """The stream sends run.waiting once when the run waits for the app, stays open, and
    after another request continues the run it sends the rest, each id once, ending with
    turn.finished; without until=finished the same stream ends at run.waiting."""

    async def go() -> None:
        async with served(tmp_path) as s:
            await s.call("POST", "/v1/sessions", body={"agent": "support-chat",
                                                        "session_id": "c"})
            fired = await s.frames("POST", "/v1/sessions/c/triggers/user-message",
                                   body={"input": {"text": REFUND}})
            asked = next(d for _, t, d in fired if t == "client_tool.requested")
            run_id = asked["execution_id"]
            short = await s.frames("GET", f"/v1/executions/{run_id}/events")
            assert short[-1][1] == "run.waiting"

            following = asyncio.ensure_future(
                s.call("GET", f"/v1/executions/{run_id}/events?until=finished"))
            # Continued only once the stream has sent run.waiting and waits on the run.
            while run_id not in s.server._waiters:
                await asyncio.sleep(0)
            continued = await s.frames("POST", f"/v1/executions/{run_id}/continue", body={
                "results": {asked["call_id"]: {"confirmed": True}}})
            assert continued[-1][1] == "turn.finished"
            response = await following
            assert response.status_code == 200
            events = events_of(response.text)
            types = [t for _, t, _ in events]
            assert types.count("run.waiting") == 1 and types[-1] == "turn.finished"
            assert types.index("run.waiting") < types.index("turn.finished")
            ids = [i for i, _, _ in events if i is not None]
            assert ids == sorted(set(ids))
            assert ids == [i for i, _, _ in fired + continued if i is not None]

            bad = await s.call("GET", f"/v1/executions/{run_id}/events?until=later")
            assert bad.status_code == 422 and bad.json()["error"]["param"] == "until"

    asyncio.run(go())


def test_a_client_leaving_a_stream_that_follows_a_wait_ends_it(tmp_path: Path) -> None:
    """A stream following a waiting run (until=finished) whose client disconnects after the
    first frames ends at once: the app returns and no wake is left registered for the run."""
    from tether.serve.app import create_app

    from .serve_helpers import KEYS

    async def go() -> None:
        async with served(tmp_path) as s:
            await s.call("POST", "/v1/sessions", body={"agent": "support-chat",
                                                        "session_id": "c"})
            fired = await s.frames("POST", "/v1/sessions/c/triggers/user-message",
                                   body={"input": {"text": REFUND}})
            run_id = next(d for _, t, d in fired if t == "client_tool.requested")[
                "execution_id"]
            app = create_app(s.server)
            frames: list[bytes] = []
            left = asyncio.Event()

            async def receive() -> dict[str, object]:
                await left.wait()
                return {"type": "http.disconnect"}

            async def send(message: dict[str, object]) -> None:
                body = message.get("body")
                if isinstance(body, bytes) and body:
                    frames.append(body)
                    if b"run.waiting" in body:
                        left.set()  # the client goes away once it saw the wait

            path = f"/v1/executions/{run_id}/events"
            scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
                     "http_version": "1.1", "method": "GET", "scheme": "http", "path": path,
                     "raw_path": path.encode(), "root_path": "",
                     "query_string": b"until=finished",
                     "headers": [(b"authorization", f"Bearer {KEYS['ada'][0]}".encode())],
                     "server": ("serve", 80), "client": ("client", 1)}
            await asyncio.wait_for(app(scope, receive, send), timeout=30)
            assert any(b"run.waiting" in f for f in frames)
            assert run_id not in s.server._waiters

    asyncio.run(go())
