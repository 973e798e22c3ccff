"""Every error the API answers speaks of what the caller knows: its own session ids, never the
stored ``tenant.sid``, a server path (agent file, store) or another tenant."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tether.serve.redact import Redactor

from .serve_helpers import EXAMPLE, KEYS, Served, served
from .test_server_input import LaterClock

REFUND = "The headphones from order ch_0002 stopped working. Please refund them."
#: A trigger that sets a boolean variable from a string: the set-variable refusal.
VIP_TRIGGER = """
  vip-changed:
    input: {type: object, properties: {vip: {type: string}}, required: [vip]}
    variables: {vip: "is {{ input.vip }}"}
"""


def agent_copy(tmp: Path) -> Path:
    """The support chat, copied to a folder of the server's own, with a vip-changed trigger."""
    folder = tmp / "secret-agents-folder"
    shutil.copytree(EXAMPLE, folder)
    agent = folder / "agent.yaml"
    text = agent.read_text().replace("\ntriggers:\n", "\ntriggers:" + VIP_TRIGGER, 1)
    agent.write_text(text)
    return agent


def leaks(message: str, tmp: Path) -> list[str]:
    """What ``message`` (an error answered to tenant acme) tells that acme does not know."""
    found = [p for p in (str(tmp), str(EXAMPLE), "secret-agents-folder", "runs.db", "/tmp")
             if p in message]
    found += [w for w in ("zulutenant", "zedprincipal", "mallory", "tether-serve")
              if w in message]
    # Turn run ids are public (the API lists them); anything else 'acme.' is a stored id.
    public = re.sub(r"session:acme\.[A-Za-z0-9_-]+:turn:[0-9]+", "", message)
    if "acme." in public:
        found.append("a stored session id")
    return found


async def _setup(s: Served) -> dict[str, str]:
    """acme's session c waiting for the app, acme's session done (expired), zulutenant's z."""
    await s.call("POST", "/v1/sessions", body={"agent": "support-chat", "session_id": "c"})
    events = await s.frames("POST", "/v1/sessions/c/triggers/user-message",
                            body={"input": {"text": REFUND}})
    asked = next(d for _, t, d in events if t == "client_tool.requested")
    await s.call("POST", "/v1/sessions", body={"agent": "support-chat", "session_id": "old",
                                                "ttl_s": 60})
    await s.call("POST", "/v1/sessions", "zed", {"agent": "support-chat", "session_id": "z"})
    await s.frames("POST", "/v1/sessions/z/triggers/user-message", "zed",
                   body={"input": {"text": REFUND}})
    return {"{run}": asked["execution_id"], "{call}": asked["call_id"],
            "{zrun}": "session:zulutenant.z:turn:1"}


#: (method, path, body, status): the error paths a tenant reaches with its key.
ERRORS: list[tuple[str, str, Any, int]] = [
    ("POST", "/v1/sessions", {"agent": "support-chat", "variables": {"plan": 3}}, 400),
    ("POST", "/v1/sessions", {"agent": "support-chat", "session_id": "v",
                              "variables": {"vip": "yes"}}, 400),
    ("POST", "/v1/sessions", {"agent": "support-chat", "variables": {"nope": 1}}, 400),
    ("POST", "/v1/sessions", {"agent": "support-chat", "session_id": "c"}, 409),
    ("POST", "/v1/sessions", {"agent": "support-chat", "session_id": "zulutenant.z"}, 422),
    ("POST", "/v1/sessions", {"agent": "nobody"}, 422),
    ("GET", "/v1/sessions/z", None, 404),
    ("GET", "/v1/sessions/zulutenant.z", None, 422),
    ("POST", "/v1/sessions/c/triggers/vip-changed", {"input": {"vip": "very"}}, 422),
    ("POST", "/v1/sessions/c/triggers/user-message", {"input": {"text": "hi"}}, 409),
    ("POST", "/v1/sessions/c/triggers/user-message", {"input": {"txt": "hi"}}, 422),
    ("POST", "/v1/sessions/c/triggers/nope", {"input": {}}, 404),
    ("POST", "/v1/sessions/old/triggers/user-message", {"input": {"text": "hi"}}, 410),
    ("POST", "/v1/sessions/c/restore", {"history": []}, 409),
    ("POST", "/v1/sessions/lost/restore", {"history": []}, 404),
    ("POST", "/v1/sessions/old/restore", {"history": [], "variables": {"vip": "yes"}}, 422),
    ("POST", "/v1/sessions/old/restore", {"history": [], "ttl_s": 7200}, 422),
    ("POST", "/v1/sessions/lost/restore", {"history": [], "agent": "support-chat",
                                           "variables": {"vip": "yes"}}, 400),
    ("POST", "/v1/sessions/old/restore", {"history": [{"role": "system", "content": "x"}]},
     422),
    ("POST", "/v1/executions/{run}/continue", {"results": {"call_x": {"confirmed": True}}},
     422),
    ("POST", "/v1/executions/{run}/continue", {"results": {"{call}": {"confirmed": "y"}}},
     422),
    ("POST", "/v1/executions/{zrun}/continue", {"results": {"a": 1}}, 404),
    ("GET", "/v1/executions/{zrun}/events", None, 404),
    ("GET", "/v1/runs/{zrun}/events", None, 404),
    ("POST", "/v1/approvals/{run}/approve", {}, 404),
    ("POST", "/v1/approvals/{zrun}/deny", {}, 404),
    ("POST", "/v1/tenants/zulutenant/sessions/z/webhooks/hook", {}, 404),
]


def _fill(text: str, fill: dict[str, str]) -> str:
    for k, v in fill.items():
        text = text.replace(k, v)
    return text


def test_every_error_path_speaks_only_of_what_the_caller_knows() -> None:
    """Session create (variable types), set variable, restore, trigger input, continue,
    approvals and foreign ids: each refusal is the 4xx it names, and its message holds no
    stored id, no server path, no other tenant or principal, and no server name."""

    async def go() -> None:
        clock = LaterClock()
        with tempfile.TemporaryDirectory() as name:
            tmp = Path(name)
            async with served(tmp, clock=clock, agent=agent_copy(tmp)) as s:
                fill = await _setup(s)
                clock.offset_s = 120.0  # "old" (ttl 60 s) has expired; the wait (600 s) has not
                for method, path, body, status in ERRORS:
                    path = _fill(path, fill)
                    body = None if body is None else _fill_body(body, fill)
                    response = await s.call(method, path, body=body)
                    assert response.status_code == status, (path, body, response.text)
                    message = response.json()["error"]["message"]
                    assert message and not leaks(message, tmp), (path, message)

    asyncio.run(go())


def _fill_body(body: Any, fill: dict[str, str]) -> Any:
    if isinstance(body, dict):
        return {_fill(k, fill): _fill_body(v, fill) for k, v in body.items()}
    return body


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=6),
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.sampled_from(
                         ["agent", "session_id", "variables", "vip", "plan", "input", "text",
                          "history", "results", "step", "ttl_s", "key"]), inner, max_size=4),
                     max_leaves=8)
_ANY_PATH = ["/v1/sessions", "/v1/sessions/c/triggers/user-message",
             "/v1/sessions/c/triggers/vip-changed", "/v1/sessions/old/restore",
             "/v1/sessions/gone/restore", "/v1/executions/{run}/continue",
             "/v1/executions/{zrun}/continue", "/v1/approvals/{run}/approve"]


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(_ANY_PATH), _JSON), min_size=1, max_size=6))
def test_any_refused_body_speaks_only_of_what_the_caller_knows(
        requests: list[tuple[str, Any]]) -> None:
    """Whatever a tenant posts, a refusal's message holds no stored id, server path or other
    tenant."""

    async def go() -> None:
        with tempfile.TemporaryDirectory() as name:
            tmp = Path(name)
            async with served(tmp, agent=agent_copy(tmp)) as s:
                fill = await _setup(s)
                for path, body in requests:
                    response = await s.call("POST", _fill(path, fill), body=body)
                    if response.status_code >= 400:
                        message = response.json()["error"]["message"]
                        assert not leaks(message, tmp), (path, body, message)

    asyncio.run(go())


@settings(max_examples=50, deadline=None)
@given(st.from_regex(r"[a-z][a-z0-9_-]{0,10}", fullmatch=True),
       st.from_regex(r"[A-Za-z0-9_-]{1,12}", fullmatch=True))
def test_a_stored_id_is_rendered_as_the_callers_session_id(tenant: str, sid: str) -> None:
    """For its tenant a stored id becomes the session id, a turn run id stays, and for
    another tenant both become words that name neither tenant nor session."""
    redactor = Redactor(paths={}, tenants=lambda: [tenant, "zulutenant"])
    stored, run_id = f"{tenant}.{sid}", f"session:{tenant}.{sid}:turn:3"
    text = f"session {stored!r}: turn 3 (run {run_id!r}) waits"
    assert redactor.render(text, tenant) == f"session {sid!r}: turn 3 (run {run_id!r}) waits"
    seen = redactor.render(text, "zulutenant")
    assert f"{tenant}." not in seen


def test_server_paths_and_database_urls_are_not_told() -> None:
    """The server's known paths become what they are for; any other path on this machine's
    disk and any database URL become generic words; API routes stay as written."""
    redactor = Redactor(paths={"/srv/t/agents/chat.yaml": "agent 'chat'", "/srv/t/runs.db":
                               "the server's store"}, tenants=lambda: ["acme"])
    text = ("/srv/t/agents/chat.yaml: bad; no run 'x' in /srv/t/runs.db; see /tmp/x.log or "
            "postgresql://u:pw@db:5432/runs; POST /v1/sessions/{id}/restore")
    assert redactor.render(text, "acme") == (
        "agent 'chat': bad; no run 'x' in the server's store; see a server path or "
        "the server's store; POST /v1/sessions/{id}/restore")


def test_the_keys_of_the_sweep_are_distinct_tenants() -> None:
    """The sweep's other tenant is one the leak check can find in any message."""
    assert KEYS["zed"][1] == "zulutenant" != KEYS["ada"][1]


FAILING_AGENT = """
name: failing
instructions: Fail.
model: {provider: scripted, script: "failing.py:script"}
"""
FAILING = """
from pathlib import Path

def script(request):
    raise RuntimeError(f"cannot read {Path(__file__).resolve()} for session acme.boom")
"""


def test_a_failed_turns_reason_and_error_speak_only_of_what_the_caller_knows(
        tmp_path: Path) -> None:
    """A turn whose model fails with a message naming a server file and the stored session
    id ends with turn.finished whose reason and error hold neither."""

    async def go() -> None:
        folder = tmp_path / "secret-agents-folder"
        folder.mkdir()
        (folder / "failing.yaml").write_text(FAILING_AGENT)
        (folder / "failing.py").write_text(FAILING)
        async with served(tmp_path, agent=folder / "failing.yaml") as s:
            await s.call("POST", "/v1/sessions", body={"agent": "failing",
                                                        "session_id": "boom"})
            events = await s.frames("POST", "/v1/sessions/boom/triggers/user-message",
                                    body={"input": {"text": "hi"}})
            kind, data = events[-1][1], events[-1][2]
            assert kind == "turn.finished" and data["status"] != "completed", data
            told = json.dumps([data["reason"], data["error"]])
            assert "cannot read" in told
            assert not leaks(told, tmp_path), told

    asyncio.run(go())
