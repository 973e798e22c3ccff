"""A small real server speaking tether serve's wire format, for the client's tests.

It is not a mock of httpx: a Starlette app served by uvicorn on a loopback port, with bearer
keys, the error shape ``{"error": {"type", "message", "param"?}}``, sessions, approvals, runs, and
SSE streams of scripted runs that it cuts where a test says (after ``k`` frames, either by ending
the response cleanly or by aborting the connection mid-body).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

#: key -> (tenant, roles)
KEYS = {"key-a": ("a", {"customer"}), "key-a-sup": ("a", {"supervisor"}),
        "key-b": ("b", {"supervisor"})}

#: One frame of a scripted run: (id or None, event type, data).
Script = list[tuple[int | None, str, Any]]


def turn_script(run_id: str, *, waiting: bool = False) -> Script:
    """A turn's frames: journal-backed events with ids (not consecutive: not every journal
    event is shown), token deltas without one, a resource update without one, a terminal."""
    frames: Script = [
        (1, "turn.started", {"run_id": run_id, "trigger": "message"}),
        (None, "model.delta", {"text": "Hel"}),
        (None, "model.delta", {"text": "lo"}),
        (2, "model.text", {"text": "Hello\nthere \u2028 friend"}),
        (3, "tool.requested", {"tool": "lookup", "call_id": "c1"}),
        (4, "tool.started", {"tool": "lookup"}),
        (6, "tool.finished", {"tool": "lookup", "status": "ok"}),
        (None, "resource.updated", {"name": "plan", "version": 2, "revision": 3}),
        (7, "model.text", {"text": "Done."}),
    ]
    if waiting:
        frames.append((9, "run.waiting", {"for": "client_tool", "call_ids": ["c9"]}))
    else:
        frames.append((9, "turn.finished", {"status": "completed", "reason": "answered",
                                            "answer": "Done."}))
    return frames


def frame_text(event_id: int | None, event: str, data: Any) -> str:
    """One frame on the wire (data split into lines as SSE requires)."""
    lines = [] if event_id is None else [f"id: {event_id}"]
    lines.append(f"event: {event}")
    lines += [f"data: {line}" for line in json.dumps(data).split("\n")]
    return "\n".join(lines) + "\n\n"


class Cut(Exception):
    """Raised inside a response body to abort the connection mid-stream."""


@dataclass
class Fake:
    """The server's state, shared with the test that drives it (same process, other thread)."""

    scripts: dict[str, Script] = field(default_factory=dict)
    #: run id -> for each successive connection: (frames to send, "close" | "abort" |
    #: "stall").
    cuts: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    #: run id -> statuses to answer its next resume requests (``/events``) with.
    refusals: dict[str, list[int]] = field(default_factory=dict)
    #: Every stream request: (path, Last-Event-ID header, ?after).
    stream_requests: list[tuple[str, str | None, str | None]] = field(default_factory=list)
    #: Every decision: (run id, verdict, principal, note).
    decisions: list[tuple[str, str, str, str | None]] = field(default_factory=list)
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    fired: dict[str, int] = field(default_factory=dict)
    #: run id -> the highest position of its script any connection sent (deltas are live only).
    sent: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    # -- helpers ---------------------------------------------------------------------------

    def error(self, status: int, type_: str, message: str, param: str | None = None) -> Response:
        body: dict[str, Any] = {"type": type_, "message": message}
        if param is not None:
            body["param"] = param
        return JSONResponse({"error": body}, status_code=status)

    def caller(self, request: Request) -> tuple[str, set[str]] | Response:
        auth = request.headers.get("authorization", "")
        scheme, _, key = auth.partition(" ")
        if scheme.lower() != "bearer" or key not in KEYS:
            return self.error(401, "Unauthorized", "missing or unknown API key")
        return KEYS[key]

    def view(self, tenant: str, sid: str) -> dict[str, Any]:
        state = self.sessions[f"{tenant}.{sid}"]
        return {"id": sid, "agent": state["agent"], "status": state["status"],
                "revision": state["revision"], "variables": state["variables"],
                "resources": {"plan": {"version": 2, "content": "pro",
                                       "provenance": {"by": "trigger"}}},
                "turns": [{"number": n, "run_id": f"session:{tenant}.{sid}:turn:{n}",
                           "trigger": "message", "status": "completed"}
                          for n in range(1, state["turns"] + 1)],
                "history": [{"role": "user", "content": "hi", "run_id": None, "seq": 1,
                             "source": "user", "trust": "user"}]}

    def stream(self, run_id: str, after: int, path: str, request: Request) -> Response:
        with self.lock:
            self.stream_requests.append((path, request.headers.get("last-event-id"),
                                         request.query_params.get("after")))
            # Refusals script a restarting server: they answer resume requests only.
            refusals = self.refusals.get(run_id, []) if path.endswith("/events") else []
            if refusals:
                status = refusals.pop(0)
                return self.error(status, "Unavailable" if status >= 500 else "UnknownExecution",
                                  f"scripted {status}")
            plan = self.cuts.get(run_id, [])
            cut = plan.pop(0) if plan else None
            script = self.scripts[run_id]
            # Replay after the last journal-backed frame at or below ``after``.
            start = max((i + 1 for i, (eid, _, _) in enumerate(script)
                         if eid is not None and eid <= after), default=0)
            frontier = self.sent.get(run_id, -1)
            chosen = [(i, f) for i, f in enumerate(script) if i >= start
                      and not (f[1] == "model.delta" and i <= frontier)]

        async def body() -> AsyncIterator[str]:
            for count, (position, (eid, kind, data)) in enumerate(chosen):
                if cut is not None and count == cut[0]:
                    if cut[1] == "abort":
                        raise Cut(f"cut after {count} frames")
                    if cut[1] == "stall":
                        # A half-open connection: nothing more comes, nothing closes it
                        # (the client's read timeout must; the server ends on disconnect).
                        await asyncio.Event().wait()
                    return
                with self.lock:
                    self.sent[run_id] = max(self.sent.get(run_id, -1), position)
                text = frame_text(eid, kind, data)
                # Two chunks per frame, split mid-line: the client must join them.
                half = len(text) // 2
                yield ": keepalive\n\n"
                yield text[:half]
                yield text[half:]

        return StreamingResponse(body(), media_type="text/event-stream")


def app_for(fake: Fake) -> Starlette:
    """The Starlette app of ``fake``."""

    async def create(request: Request) -> Response:
        who = fake.caller(request)
        if isinstance(who, Response):
            return who
        body = await request.json()
        if not isinstance(body.get("agent"), str):
            return fake.error(422, "UsageError", "agent must be a string", "agent")
        sid = body.get("session_id") or f"s{len(fake.sessions) + 1}"
        fake.sessions[f"{who[0]}.{sid}"] = {"agent": body["agent"], "status": "active",
                                           "revision": 1, "turns": 0,
                                           "variables": body.get("variables") or {}}
        return JSONResponse(fake.view(who[0], sid), status_code=201)

    async def read(request: Request) -> Response:
        who = fake.caller(request)
        if isinstance(who, Response):
            return who
        sid = request.path_params["sid"]
        if f"{who[0]}.{sid}" not in fake.sessions:
            return fake.error(404, "UnknownSession", f"no session {sid!r}")
        return JSONResponse(fake.view(who[0], sid))

    async def trigger(request: Request) -> Response:
        who = fake.caller(request)
        if isinstance(who, Response):
            return who
        sid, body = request.path_params["sid"], await request.json()
        state = fake.sessions.get(f"{who[0]}.{sid}")
        if state is None:
            return fake.error(404, "UnknownSession", f"no session {sid!r}")
        if state["status"] == "expired":
            return fake.error(410, "SessionInactive", "the session expired; restore it")
        if body.get("input") == "bad":
            return fake.error(422, "TriggerInputInvalid", "input must not be 'bad'", "input")
        expected = body.get("expected_revision")
        if expected is not None and expected != state["revision"]:
            return fake.error(409, "SessionConflict", f"revision is {state['revision']}")
        state["turns"] += 1
        state["revision"] += 1
        run_id = f"session:{who[0]}.{sid}:turn:{state['turns']}"
        fake.scripts.setdefault(run_id, turn_script(run_id))
        return fake.stream(run_id, 0, request.url.path, request)

    def owned(who: tuple[str, set[str]], run_id: str) -> bool:
        return run_id.startswith(f"session:{who[0]}.") and run_id in fake.scripts

    async def cont(request: Request) -> Response:
        who = fake.caller(request)
        if isinstance(who, Response):
            return who
        run_id, body = request.path_params["run_id"], await request.json()
        if not owned(who, run_id):
            return fake.error(404, "UnknownExecution", f"no execution {run_id!r}")
        if set(body.get("results", {})) != {"c9"}:
            return fake.error(422, "ClientResultRefused", "call c9 is the one waiting",
                              "results")
        return fake.stream(run_id + ":cont", 0, request.url.path, request)

    async def events(request: Request) -> Response:
        who = fake.caller(request)
        if isinstance(who, Response):
            return who
        run_id = request.path_params["run_id"]
        if not owned(who, run_id):
            return fake.error(404, "UnknownExecution", f"no execution {run_id!r}")
        raw = request.headers.get("last-event-id") or request.query_params.get("after") or "0"
        return fake.stream(run_id, int(raw), request.url.path, request)

    async def restore(request: Request) -> Response:
        who = fake.caller(request)
        if isinstance(who, Response):
            return who
        sid, body = request.path_params["sid"], await request.json()
        history = body.get("history")
        if not isinstance(history, list) or any(
                set(row) - {"role", "content", "tool_calls", "tool_call_id"} for row in history):
            return fake.error(422, "RestoreRefused", "history rows must be messages", "history")
        fake.sessions[f"{who[0]}.{sid}"] = {"agent": body.get("agent", "support"),
                                           "status": "active", "revision": 1, "turns": 0,
                                           "variables": {}}
        return JSONResponse(fake.view(who[0], sid))

    async def approvals(request: Request) -> Response:
        who = fake.caller(request)
        if isinstance(who, Response):
            return who
        return JSONResponse({"approvals": [
            {"run_id": run_id, "tool": "issue_refund", "args": {"order": "o1"},
             "role": "supervisor", "why": "over 100"}
            for run_id in fake.scripts if run_id.startswith(f"session:{who[0]}.")]})

    async def decide(request: Request) -> Response:
        who = fake.caller(request)
        if isinstance(who, Response):
            return who
        run_id, verdict = request.path_params["run_id"], request.path_params["verdict"]
        if not owned(who, run_id):
            return fake.error(404, "UnknownExecution", f"no approval for {run_id!r}")
        if "supervisor" not in who[1]:
            return fake.error(403, "Forbidden", "deciding needs the supervisor role")
        note = (await request.json()).get("note")
        fake.decisions.append((run_id, verdict, who[0], note))
        return JSONResponse({"run_id": run_id, "decision": verdict, "by": f"x@{who[0]}"})

    async def runs(request: Request) -> Response:
        who = fake.caller(request)
        if isinstance(who, Response):
            return who
        return JSONResponse([{"run_id": r, "status": "completed"} for r in fake.scripts
                             if r.startswith(f"session:{who[0]}.")])

    async def run_events(request: Request) -> Response:
        who = fake.caller(request)
        if isinstance(who, Response):
            return who
        run_id = request.path_params["run_id"]
        if not owned(who, run_id):
            return fake.error(404, "UnknownRun", f"no run {run_id!r}")
        return JSONResponse({"events": [{"seq": 1, "kind": "run_started"}]})

    async def broken(request: Request) -> Response:
        return Response("<html>bad gateway</html>", status_code=502, media_type="text/html")

    return Starlette(routes=[
        Route("/v1/sessions", create, methods=["POST"]),
        Route("/v1/sessions/{sid}", read, methods=["GET"]),
        Route("/v1/sessions/{sid}/triggers/{trigger}", trigger, methods=["POST"]),
        Route("/v1/sessions/{sid}/restore", restore, methods=["POST"]),
        Route("/v1/executions/{run_id}/continue", cont, methods=["POST"]),
        Route("/v1/executions/{run_id}/events", events, methods=["GET"]),
        Route("/v1/approvals", approvals, methods=["GET"]),
        Route("/v1/approvals/{run_id}/{verdict:str}", decide, methods=["POST"]),
        Route("/v1/runs", runs, methods=["GET"]),
        Route("/v1/runs/{run_id}/events", run_events, methods=["GET"]),
        Route("/v1/broken", broken, methods=["GET"]),
    ])


@contextlib.contextmanager
def serving(fake: Fake) -> Iterator[str]:
    """``fake`` served by uvicorn on a loopback port, in a thread: its base URL."""
    with serving_app(app_for(fake), lifespan="off") as url:
        yield url


@contextlib.contextmanager
def serving_app(app: Any, *, lifespan: str = "on") -> Iterator[str]:
    """Any ASGI ``app`` served by uvicorn on a loopback port, in a thread: its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # Aborted streams are the point of these tests: uvicorn's traceback for each is noise.
    config = uvicorn.Config(app, log_level="critical", lifespan=lifespan)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started and thread.is_alive():
        threading.Event().wait(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
