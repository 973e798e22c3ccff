"""Roles under tether serve come from the API key only: no request can claim one."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from tether.serve import app, server
from tether.serve.app import OPENAPI

from .serve_helpers import Served, served

REFUND_LARGE = "The espresso machine from order ch_0003 arrived broken. Please refund it."
#: Names a request could use to claim who it is or what it may do.
CLAIMS = {"role", "roles", "by", "principal", "tenant", "decider", "user", "as"}
#: What the server reads from request bodies, all of it (no claim among them).
READ = {"agent", "session_id", "variables", "ttl_s", "history", "input", "key",
        "expected_revision", "results", "note", "step"}
CLAIMING_BODY = {"role": "supervisor", "roles": ["supervisor"], "by": "grace@acme",
                 "principal": "grace", "tenant": "acme", "decider": "grace"}
CLAIMING_HEADERS = {"X-Role": "supervisor", "X-Tether-Role": "supervisor",
                    "X-Principal": "grace"}


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_no_documented_request_takes_a_role_or_an_identity() -> None:
    """No request body, query or header parameter in the OpenAPI document names a role,
    a principal or a tenant (the key in Authorization is the only identity)."""
    for path, operations in OPENAPI["paths"].items():
        for method, operation in operations.items():
            schema = operation.get("requestBody", {}).get("content", {}).get(
                "application/json", {}).get("schema", {})
            named = set(schema.get("properties", {})) | {
                p["name"].lower() for p in operation.get("parameters", []) if p["in"] != "path"}
            assert not named & CLAIMS, (method, path, named & CLAIMS)


def test_the_server_reads_no_claim_from_a_body() -> None:
    """Every field the server and the app read from a request body is a known, non-identity
    field (a new field that claims a role would fail here)."""
    source = Path(server.__file__).read_text() + Path(app.__file__).read_text()
    read = set(re.findall(r"_field\(body, \"(\w+)\"", source)) | set(
        re.findall(r"body\.get\(\"(\w+)\"", source))
    assert read, "the pattern no longer finds the body reads"
    assert read <= READ and not read & CLAIMS, read - READ


async def _held(s: Served) -> str:
    """A refund held for a supervisor's approval; its run id."""
    response = await s.call("POST", "/v1/sessions", body={"agent": "support-chat",
                                                          "session_id": "chat1"})
    assert response.status_code == 201, response.text
    frames = await s.frames("POST", "/v1/sessions/chat1/triggers/user-message",
                            body={"input": {"text": REFUND_LARGE}})
    asked = next(d for _, t, d in frames if t == "client_tool.requested")
    run_id = str(asked["execution_id"])
    held = await s.frames("POST", f"/v1/executions/{run_id}/continue", body={
        "results": {asked["call_id"]: {"confirmed": True}}})
    assert any(t == "approval.requested" for _, t, _ in held)
    return run_id


def test_a_role_claimed_in_the_request_is_ignored(tmp_path: Path) -> None:
    """A customer's key that claims the supervisor role in the body, headers and query is
    still 403 and decides nothing; a supervisor's decision claiming another decider is
    journaled as the key's principal@tenant, in the role the key holds."""

    async def go() -> None:
        async with served(tmp_path) as s:
            run_id = await _held(s)
            for verb in ("approve", "deny"):
                refused = await s.call(
                    "POST", f"/v1/approvals/{run_id}/{verb}?role=supervisor&by=grace",
                    "ada", CLAIMING_BODY, headers=CLAIMING_HEADERS)
                assert refused.status_code == 403, refused.text
            assert len((await s.call("GET", "/v1/approvals")).json()["approvals"]) == 1
            decided = await s.call("POST", f"/v1/approvals/{run_id}/approve", "grace",
                                   {"by": "mallory@other", "role": "customer",
                                    "principal": "mallory"})
            assert decided.status_code == 200, decided.text
            assert decided.json()["by"] == "grace@acme"
            await s.server.idle()
            journal = (await s.call("GET", f"/v1/runs/{run_id}/events")).json()["events"]
            resolved = [e for e in journal if e["kind"] == "wait_resolved"
                        and e["key"].startswith("approval:")]
            assert [e["by"] for e in resolved] == ["grace@acme"]
            assert resolved[0]["value"].get("role") == "supervisor", resolved[0]

    run(go())


def test_a_turn_runs_for_the_keys_holder_with_the_keys_roles(tmp_path: Path) -> None:
    """A turn fired with a key runs on behalf of ``principal@tenant`` holding the key's roles
    (what the agent's policy judges its calls by, and what an approval request names), not as
    anonymous, and not as anything the request claims."""

    async def go() -> None:
        async with served(tmp_path) as s:
            run_id = await _held(s)
            journal = (await s.call("GET", f"/v1/runs/{run_id}/events")).json()["events"]
            task = journal[0]["input"]
            assert (task["principal"], task["roles"]) == ("ada@acme", ["customer"])
            pending = (await s.call("GET", "/v1/approvals")).json()["approvals"]
            assert [a["principal"] for a in pending] == ["ada@acme"]

    run(go())
