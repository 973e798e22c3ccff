"""The requests of every verb, and how an answer is read: shared by the sync and async clients.

Each verb is a pure function returning a :class:`Call` (method, path, JSON body, query); the
clients only send it. Path parameters are percent-quoted (run ids hold ``:``), so no id can
walk into another path.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from tether.client.errors import ServerError, error_for
from tether.errors import UsageError

__all__ = ["AFTER_HEADER", "RUN_HEADER", "Call", "check", "decoded", "items"]

#: The response headers of a stream naming its run and the seq it starts after, before any
#: frame comes (a server that sends neither still works, with a narrower resume).
RUN_HEADER = "Tether-Run-Id"
AFTER_HEADER = "Tether-After"


@dataclass(frozen=True, slots=True)
class Call:
    """One HTTP request of the API (relative to the base URL)."""

    method: str
    path: str
    body: Any = None
    params: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


def _seg(value: str) -> str:
    if not isinstance(value, str) or not value:
        raise UsageError(f"a path id must be a non-empty string, not {value!r}")
    return quote(value, safe=":")


def _body(**fields: Any) -> dict[str, Any]:
    # Optional fields the caller left out are not sent: the server applies its own defaults.
    return {k: v for k, v in fields.items() if v is not None}


def create_session(agent: str, session_id: str | None, variables: dict[str, Any] | None,
                   ttl_s: float | None) -> Call:
    return Call("POST", "/v1/sessions", _body(agent=agent, session_id=session_id,
                                              variables=variables, ttl_s=ttl_s))


def session(sid: str) -> Call:
    return Call("GET", f"/v1/sessions/{_seg(sid)}")


def fire(sid: str, trigger: str, input: Any, key: str | None,
         expected_revision: int | None) -> Call:
    return Call("POST", f"/v1/sessions/{_seg(sid)}/triggers/{_seg(trigger)}",
                {"input": input, **_body(key=key, expected_revision=expected_revision)},
                headers={"Accept": "text/event-stream"})


def continue_execution(run_id: str, results: dict[str, Any]) -> Call:
    return Call("POST", f"/v1/executions/{_seg(run_id)}/continue", {"results": results},
                headers={"Accept": "text/event-stream"})


def events(run_id: str, after: int, *, until_finished: bool = False) -> Call:
    """The stream of ``run_id`` after seq ``after``: both the header and the query say it, so a
    proxy that drops one still resumes at the right place. ``until_finished``: through the
    run's waits to ``turn.finished`` (``?until=finished``)."""
    params = {"after": str(after)} | ({"until": "finished"} if until_finished else {})
    return Call("GET", f"/v1/executions/{_seg(run_id)}/events", params=params,
                headers={"Accept": "text/event-stream", "Last-Event-ID": str(after)})


def restore(sid: str, history: list[Any], agent: str | None, variables: dict[str, Any] | None,
            ttl_s: float | None) -> Call:
    return Call("POST", f"/v1/sessions/{_seg(sid)}/restore",
                {"history": history, **_body(agent=agent, variables=variables, ttl_s=ttl_s)})


def approvals() -> Call:
    return Call("GET", "/v1/approvals")


def decide(run_id: str, verdict: str, note: str | None, step: int | None) -> Call:
    return Call("POST", f"/v1/approvals/{_seg(run_id)}/{verdict}", _body(note=note, step=step))


def runs() -> Call:
    return Call("GET", "/v1/runs")


def run_events(run_id: str) -> Call:
    return Call("GET", f"/v1/runs/{_seg(run_id)}/events")


def check(response: httpx.Response) -> None:
    """Raise the typed :class:`ServerError` of a 4xx/5xx ``response`` (its body must be read)."""
    if response.status_code < 400:
        return
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    raise error_for(response.status_code, body, response.text)


def decoded(response: httpx.Response) -> Any:
    """The JSON body of a successful ``response``; :class:`ServerError` otherwise."""
    check(response)
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ServerError(response.status_code, "InvalidResponse",
                          f"the server answered {response.status_code} with a body that is not "
                          f"JSON: {response.text[:200]!r}") from exc


def items(body: Any, key: str) -> list[Any]:
    """The list of a listing answer: the body itself, or its ``key`` field."""
    if isinstance(body, dict) and isinstance(body.get(key), list):
        return list(body[key])
    if isinstance(body, list):
        return body
    raise ServerError(200, "InvalidResponse",
                      f"expected a list of {key} (or an object with a {key!r} list), got "
                      f"{type(body).__name__}")


def maybe_applied(call: Call) -> str:
    """What a caller must know about a request that got no answer."""
    if call.method == "GET":
        return ""
    return ("; the request may have reached the server and been applied: read the state back "
            "before sending it again (a trigger fired again under the same key is not fired twice)")


def is_stream(response: httpx.Response) -> bool:
    """Whether a 2xx ``response`` is a server-sent event stream (not a JSON answer)."""
    return str(response.headers.get("content-type", "")).startswith("text/event-stream")


def not_a_stream(call: Call, response: httpx.Response) -> ServerError:
    """The error of a stream request answered with something else than a stream."""
    return ServerError(response.status_code, "InvalidResponse",
                       f"{call.method} {call.path} answered "
                       f"{response.headers.get('content-type', 'no content type')!r}, "
                       "not an event stream")
