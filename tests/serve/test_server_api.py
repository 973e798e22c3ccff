"""The HTTP API in process (httpx's ASGI transport): a conversation, auth, tenants, input."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tether.serve.app import OPEN_ROUTES, OPENAPI, ROUTES

from .serve_helpers import Served, served

REFUND_SMALL = "The headphones from order ch_0002 stopped working. Please refund them."
REFUND_LARGE = "The espresso machine from order ch_0003 arrived broken. Please refund it."


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def message(s: Served, sid: str, text: str, who: str = "ada",
                  **extra: Any) -> list[tuple[int | None, str, Any]]:
    return await s.frames("POST", f"/v1/sessions/{sid}/triggers/user-message", who,
                          {"input": {"text": text}, **extra})


async def chat(s: Served, sid: str = "chat1") -> None:
    response = await s.call("POST", "/v1/sessions", body={
        "agent": "support-chat", "session_id": sid, "variables": {"customer_name": "Ada"}})
    assert response.status_code == 201, response.text


def test_a_conversation_with_a_client_tool_and_an_approval(tmp_path: Path) -> None:
    """Three turns over HTTP: a read, a refund confirmed by the client tool's continue, and a
    refund the supervisor's key approves (the customer's key is refused with 403)."""

    async def go() -> None:
        async with served(tmp_path) as s:
            await chat(s)
            first = await message(s, "chat1", "How much did I pay for order ch_0001?")
            assert first[0][1] == "turn.started"
            assert first[-1][1] == "turn.finished" and "49.99" in first[-1][2]["answer"]

            second = await message(s, "chat1", REFUND_SMALL)
            asked = next(d for _, t, d in second if t == "client_tool.requested")
            assert second[-1][1] == "run.waiting"
            run_id = asked["execution_id"]
            resumed = await s.frames("POST", f"/v1/executions/{run_id}/continue", body={
                "results": {asked["call_id"]: {"confirmed": True}}})
            assert resumed[-1][1] == "turn.finished"
            assert resumed[-1][2]["status"] == "completed"
            seen = [i for i, _, _ in second + resumed if i is not None]
            assert seen == sorted(set(seen)), "the continue's stream repeats no event"

            third = await message(s, "chat1", REFUND_LARGE)
            asked = next(d for _, t, d in third if t == "client_tool.requested")
            run_id = asked["execution_id"]
            held = await s.frames("POST", f"/v1/executions/{run_id}/continue", body={
                "results": {asked["call_id"]: {"confirmed": True}}})
            assert held[-1][1] == "run.waiting"
            assert any(t == "approval.requested" for _, t, _ in held)
            pending = (await s.call("GET", "/v1/approvals")).json()["approvals"]
            assert [a["run_id"] for a in pending] == [run_id]

            refused = await s.call("POST", f"/v1/approvals/{run_id}/approve", "ada", {})
            assert refused.status_code == 403, refused.text
            assert refused.json()["error"]["type"] == "forbidden"
            decided = await s.call("POST", f"/v1/approvals/{run_id}/approve", "grace",
                                   {"note": "ok"})
            assert decided.status_code == 200, decided.text
            assert decided.json()["by"] == "grace@acme"
            last = max(i for i, _, _ in held if i is not None)
            rest = await s.frames("GET", f"/v1/executions/{run_id}/events",
                                  headers={"Last-Event-ID": str(last)})
            assert rest[-1][1] == "turn.finished" and rest[-1][2]["status"] == "completed"
            assert all(i is None or i > last for i, _, _ in rest)

            journal = (await s.call("GET", f"/v1/runs/{run_id}/events")).json()["events"]
            deciders = [e["by"] for e in journal if e["kind"] == "wait_resolved"
                        and e["key"].startswith("approval:")]
            assert deciders == ["grace@acme"]
            view = (await s.call("GET", "/v1/sessions/chat1")).json()
            assert [t["status"] for t in view["turns"]] == ["completed"] * 3
            assert view["resources"]["order_notes"]["version"] == 2

    run(go())


def test_a_denial_needs_the_role_and_the_turn_goes_on_without_the_call(tmp_path: Path) -> None:
    """Denying a held refund with the customer's key is 403 and changes nothing; the
    supervisor's denial is journaled with its principal and the turn finishes without the
    refund."""

    async def go() -> None:
        async with served(tmp_path) as s:
            await chat(s)
            third = await message(s, "chat1", REFUND_LARGE)
            asked = next(d for _, t, d in third if t == "client_tool.requested")
            run_id = asked["execution_id"]
            await s.frames("POST", f"/v1/executions/{run_id}/continue", body={
                "results": {asked["call_id"]: {"confirmed": True}}})
            refused = await s.call("POST", f"/v1/approvals/{run_id}/deny", "ada", {})
            assert refused.status_code == 403
            assert len((await s.call("GET", "/v1/approvals")).json()["approvals"]) == 1
            denied = await s.call("POST", f"/v1/approvals/{run_id}/deny", "grace",
                                  {"note": "too much"})
            assert denied.status_code == 200 and denied.json()["decision"] == "denied"
            again = await s.call("POST", f"/v1/approvals/{run_id}/approve", "grace", {})
            assert again.status_code in (404, 409), again.text
            rest = await s.frames("GET", f"/v1/executions/{run_id}/events")
            assert rest[-1][1] == "turn.finished"
            refunds = [d for _, t, d in rest if t == "tool.finished"
                       and d["tool"] == "issue_refund" and d["status"] == "ok"]
            assert refunds == []
            journal = (await s.call("GET", f"/v1/runs/{run_id}/events")).json()["events"]
            assert [e["by"] for e in journal if e["kind"] == "wait_resolved"
                    and e["key"].startswith("approval:")] == ["grace@acme"]

    run(go())


def test_a_message_sent_twice_under_one_revision_makes_one_turn(tmp_path: Path) -> None:
    """Two copies of a message conditional on the same revision, sent at once: one turn
    starts, the other is 409 and appends nothing; a stale revision later is 409 too."""

    async def go() -> None:
        async with served(tmp_path) as s:
            await chat(s)
            revision = (await s.call("GET", "/v1/sessions/chat1")).json()["revision"]
            body = {"input": {"text": "How much did I pay for order ch_0001?"},
                    "expected_revision": revision}
            path = "/v1/sessions/chat1/triggers/user-message"
            answers = await asyncio.gather(s.call("POST", path, body=body),
                                           s.call("POST", path, body=body))
            assert sorted(a.status_code for a in answers) == [200, 409], [
                a.text for a in answers]
            stale = await s.call("POST", path, body=body)
            assert stale.status_code == 409
            assert stale.json()["error"]["type"] == "session_conflict"
            view = (await s.call("GET", "/v1/sessions/chat1")).json()
            assert [t["status"] for t in view["turns"]] == ["completed"]

    run(go())


STREAMING_AGENT = """
name: chatty
model: {provider: scripted, script: "chatty.py:script", settings: {stream: true}}
"""
CHATTY = """
import asyncio
from tether.models import reply

async def script(request):
    # A model that takes a moment before it writes: the stream is open by then.
    await asyncio.sleep(0.2)
    return reply("Hello there, this answer is written in several pieces.")
"""


def test_a_streaming_model_sends_deltas_without_ids_beside_the_journaled_text(
        tmp_path: Path) -> None:
    """With model streaming on, the turn's stream carries model.delta events (no id): pieces
    of the text the journaled model.text then carries whole; the journal's ids come once."""
    (tmp_path / "chatty.yaml").write_text(STREAMING_AGENT)
    (tmp_path / "chatty.py").write_text(CHATTY)

    async def go() -> None:
        async with served(tmp_path, agent=tmp_path / "chatty.yaml") as s:
            made = await s.call("POST", "/v1/sessions", body={"agent": "chatty",
                                                              "session_id": "c"})
            assert made.status_code == 201, made.text
            events = await message(s, "c", "hi")
            text = next(d["text"] for _, t, d in events if t == "model.text")
            deltas = [(i, d) for i, t, d in events if t == "model.delta"]
            assert deltas, [t for _, t, _ in events]
            assert all(i is None and d["text"] in text for i, d in deltas)
            ids = [i for i, _, _ in events if i is not None]
            assert ids == sorted(set(ids))
            assert events[-1][1] == "turn.finished"
            assert s.server.deltas.followers(events[0][2]["run_id"]) == 0

    run(go())


def _paths(run_id: str) -> list[tuple[str, str]]:
    fill = {"{sid}": "chat1", "{trigger}": "user-message", "{run_id}": run_id}
    out = []
    for path, method, _ in ROUTES:
        for k, v in fill.items():
            path = path.replace(k, v)
        out.append((method, path))
    return out


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer tk_not-a-key-at-all-00000"},
                                     {"Authorization": "Basic YWRhOmFkYQ=="}])
def test_every_endpoint_needs_a_known_key(tmp_path: Path, headers: dict[str, str]) -> None:
    """Every /v1 endpoint answers 401 with the error shape to a missing, unknown or non-Bearer
    key, and does nothing."""

    async def go() -> None:
        async with served(tmp_path) as s:
            for method, path in _paths("session:acme.chat1:turn:1"):
                response = await s.http.request(method, path, json={}, headers=headers)
                assert response.status_code == 401, (method, path, response.text)
                assert response.json()["error"]["type"] == "unauthorized"
                assert response.headers["www-authenticate"] == "Bearer"
            assert s.server.store.list_runs() == []

    run(go())


def test_another_tenant_can_read_continue_restore_or_decide_nothing(tmp_path: Path) -> None:
    """Tenant B's key (even with the supervisor role) gets 404 for every session, run and
    approval of tenant A, sees none of them listed, and changes nothing."""

    async def go() -> None:
        async with served(tmp_path) as s:
            await chat(s)
            third = await message(s, "chat1", REFUND_LARGE)
            asked = next(d for _, t, d in third if t == "client_tool.requested")
            run_id = asked["execution_id"]
            await s.frames("POST", f"/v1/executions/{run_id}/continue", body={
                "results": {asked["call_id"]: {"confirmed": True}}})
            before = {i.run_id: i.last_seq for i in s.server.store.list_runs()}
            bodies: dict[str, Any] = {
                "continue": {"results": {asked["call_id"]: {"confirmed": True}}},
                "restore": {"history": []},
                "user-message": {"input": {"text": "hi"}}}
            for method, path in _paths(run_id):
                if path in ("/v1/sessions", "/v1/approvals", "/v1/runs"):
                    continue
                body: Any = next((b for k, b in bodies.items() if path.endswith(k)), {})
                response = await s.call(method, path, "mallory", body)
                assert response.status_code == 404, (method, path, response.text)
            assert (await s.call("GET", "/v1/approvals", "mallory")).json()["approvals"] == []
            assert (await s.call("GET", "/v1/runs", "mallory")).json()["runs"] == []
            assert {i.run_id: i.last_seq for i in s.server.store.list_runs()} == before
            # B's namespace is its own: the same session id is another session.
            mine = await s.call("POST", "/v1/sessions", "mallory",
                                {"agent": "support-chat", "session_id": "chat1"})
            assert mine.status_code == 201 and mine.json()["turns"] == []
            assert len((await s.call("GET", "/v1/approvals", "grace")).json()["approvals"]) == 1

    run(go())


def test_openapi_document_describes_exactly_the_routes(tmp_path: Path) -> None:
    """GET /openapi.json is served without a key and lists every route with its method, and
    nothing else."""

    async def go() -> None:
        async with served(tmp_path) as s:
            document = (await s.http.get("/openapi.json")).json()
            assert document == OPENAPI
            documented = {(m.upper(), p) for p, ops in document["paths"].items() for m in ops}
            assert documented == {(m, p) for p, m, _ in [*ROUTES, *OPEN_ROUTES]}

    run(go())
