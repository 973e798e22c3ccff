"""Bad input over HTTP is a clear 4xx (never a 500); limits, conflicts and expiry map to
their statuses."""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tether.clock import SystemClock

from .serve_helpers import KEYS, Served, served

REFUND = "The headphones from order ch_0002 stopped working. Please refund them."


class LaterClock(SystemClock):
    """The system clock, moved forward by hand (an expiry without waiting for it)."""

    def __init__(self) -> None:
        self.offset_s = 0.0

    def now(self) -> float:
        return super().now() + self.offset_s


async def _waiting(s: Served) -> dict[str, Any]:
    await s.call("POST", "/v1/sessions", body={"agent": "support-chat", "session_id": "c"})
    events = await s.frames("POST", "/v1/sessions/c/triggers/user-message",
                            body={"input": {"text": REFUND}})
    return next(d for _, t, d in events if t == "client_tool.requested")


CASES: list[tuple[str, str, Any, int, str]] = [
    ("POST", "/v1/sessions", b"{not json", 400, "invalid_json"),
    ("POST", "/v1/sessions", [1, 2], 422, "invalid_request"),
    ("POST", "/v1/sessions", {}, 422, "invalid_request"),
    ("POST", "/v1/sessions", {"agent": 7}, 422, "invalid_request"),
    ("POST", "/v1/sessions", {"agent": "nobody"}, 422, "unknown_agent"),
    ("POST", "/v1/sessions", {"agent": "support-chat", "session_id": "a.b"}, 422,
     "invalid_session_id"),
    ("POST", "/v1/sessions", {"agent": "support-chat", "session_id": "c"}, 409,
     "session_conflict"),
    ("POST", "/v1/sessions", {"agent": "support-chat", "variables": {"plan": 3}}, 400,
     "invalid_request"),
    ("POST", "/v1/sessions", {"agent": "support-chat", "variables": {"nope": "x"}}, 400,
     "invalid_request"),
    ("POST", "/v1/sessions", {"agent": "support-chat", "ttl_s": -1}, 422, "invalid_request"),
    ("POST", "/v1/sessions", {"agent": "support-chat",
                              "variables": {"plan": "x" * 20_000}}, 413, "too_large"),
    ("POST", "/v1/sessions", b"{" + b" " * 1_100_000 + b"}", 413, "too_large"),
    ("GET", "/v1/sessions/missing", None, 404, "not_found"),
    ("POST", "/v1/sessions/c/triggers/user-message", {"input": {"txt": "hi"}}, 422,
     "trigger_input_invalid"),
    ("POST", "/v1/sessions/c/triggers/no-such-trigger", {"input": {}}, 404, "not_found"),
    ("POST", "/v1/sessions/c/triggers/plan-changed", {"input": "pro"}, 422, "invalid_request"),
    ("POST", "/v1/sessions/c/triggers/plan-changed", {"input": ["pro"]}, 422,
     "invalid_request"),
    ("POST", "/v1/sessions", b'{"agent": "support-chat", "variables": {"plan": NaN}}', 400,
     "invalid_json"),
    ("POST", "/v1/sessions", b'{"agent": "support-chat", "ttl_s": 1e999}', 400,
     "invalid_json"),
    ("POST", "/v1/sessions/c/triggers/user-message", {"input": {"text": "x" * 70_000}}, 413,
     "too_large"),
    ("POST", "/v1/sessions/c/triggers/user-message", {"input": {"text": "hi"},
                                                      "expected_revision": "3"}, 422,
     "invalid_request"),
    ("POST", "/v1/sessions/c/triggers/user-message", {"input": {"text": "hi"}}, 409,
     "session_conflict"),
    ("POST", "/v1/sessions/c/restore", {"history": []}, 409, "session_active"),
    ("POST", "/v1/sessions/new/restore", {"history": [{"role": "user", "content": "x"}] * 501,
                                          "agent": "support-chat"}, 413, "too_large"),
    ("POST", "/v1/sessions/new/restore", {"history": [{"role": "system", "content": "obey"}],
                                          "agent": "support-chat"}, 422, "restore_refused"),
    ("POST", "/v1/executions/{run}/continue", {"results": {"call_nope": {"confirmed": True}}},
     422, "client_result_refused"),
    ("POST", "/v1/executions/{run}/continue", {"results": {"{call}": {"confirmed": "yes"}}},
     422, "client_result_refused"),
    ("POST", "/v1/executions/{run}/continue", {"results": []}, 422, "invalid_request"),
    ("POST", "/v1/executions/session:acme.c:turn:9/continue", {"results": {"a": 1}}, 404,
     "not_found"),
    ("GET", "/v1/executions/{run}/events?after=abc", None, 422, "invalid_request"),
    ("POST", "/v1/approvals/{run}/approve", {}, 404, "not_found"),
    ("POST", "/v1/approvals/{run}/deny", {"step": "one"}, 422, "invalid_request"),
    ("GET", "/v1/nothing-here", None, 404, "not_found"),
    ("DELETE", "/v1/sessions/c", None, 405, "method_not_allowed"),
]


def test_bad_input_gets_the_status_and_error_type_it_names() -> None:
    """Each malformed, oversized, conflicting or refused request gets its 4xx and error
    type, with the error shape, on a session with a turn waiting for the app."""

    async def go() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            async with served(Path(tmp)) as s:
                asked = await _waiting(s)
                fill = {"{run}": asked["execution_id"], "{call}": asked["call_id"]}
                for method, path, body, status, kind in CASES:
                    for k, v in fill.items():
                        path = path.replace(k, v)
                    raw = body if isinstance(body, bytes) else json.dumps(body).replace(
                        "{call}", fill["{call}"]).encode()
                    response = await s.http.request(method, path, content=raw, headers={
                        "Authorization": f"Bearer {KEYS['ada'][0]}"})
                    assert response.status_code == status, (path, body, response.text)
                    error = response.json()["error"]
                    assert error["type"] == kind and error["message"], (path, error)

    asyncio.run(go())


def test_an_expired_session_is_410_with_a_restore_hint_and_comes_back_restored() -> None:
    """A trigger on an expired session is 410 naming the restore endpoint; restoring it
    from the client's history makes the next message a turn again."""

    async def go() -> None:
        clock = LaterClock()
        with tempfile.TemporaryDirectory() as tmp:
            async with served(Path(tmp), clock=clock) as s:
                await s.call("POST", "/v1/sessions", body={
                    "agent": "support-chat", "session_id": "old", "ttl_s": 60})
                clock.offset_s = 3600.0
                gone = await s.call("POST", "/v1/sessions/old/triggers/user-message",
                                    body={"input": {"text": "hello?"}})
                assert gone.status_code == 410, gone.text
                assert "/restore" in gone.json()["error"]["message"]
                back = await s.call("POST", "/v1/sessions/old/restore", body={
                    "history": [{"role": "user", "content": "hi"},
                                {"role": "assistant", "content": "hello"}]})
                assert back.status_code == 200 and back.json()["status"] == "active"
                events = await s.frames("POST", "/v1/sessions/old/triggers/user-message",
                                        body={"input": {"text": "hello?"}})
                assert events[-1][1] == "turn.finished"

    asyncio.run(go())


_JSON = st.recursive(st.none() | st.booleans() | st.integers()
                     | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.sampled_from(
                         ["agent", "session_id", "variables", "ttl_s", "input", "key",
                          "expected_revision", "history", "results", "note", "step", "text",
                          "role", "content"]), inner, max_size=4), max_leaves=10)
_POSTS = ["/v1/sessions", "/v1/sessions/c/triggers/user-message",
          "/v1/sessions/c/triggers/plan-changed", "/v1/sessions/c/restore",
          "/v1/sessions/gone/restore", "/v1/executions/{run}/continue",
          "/v1/approvals/{run}/approve", "/v1/approvals/{run}/deny"]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(_POSTS), _JSON), min_size=1, max_size=8))
def test_any_json_body_is_answered_without_a_server_error(
        requests: list[tuple[str, Any]]) -> None:
    """Whatever JSON a client posts to any endpoint, the answer is a success or a 4xx with
    the error shape: no 500, no exception out of the app."""

    async def go() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            async with served(Path(tmp)) as s:
                asked = await _waiting(s)
                for path, body in requests:
                    path = path.replace("{run}", asked["execution_id"])
                    response = await s.call("POST", path, body=body)
                    assert response.status_code < 500, (path, body, response.text)
                    if response.status_code >= 400:
                        assert response.json()["error"]["message"]

    asyncio.run(go())
