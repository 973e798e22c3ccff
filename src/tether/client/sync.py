"""The synchronous client: :class:`Client`. ::

    client = Client("http://127.0.0.1:8000", "tk_…")
    session = client.create_session("support-chat", variables={"customer_name": "Ada"})
    for event in client.fire(session.id, "user-message", {"text": "Where is my order?"}):
        print(event.id, event.type, event.data)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator
from typing import Any

import httpx

from tether.client import wire
from tether.client.common import Options, checked_key, history_rows, listing
from tether.client.errors import ConnectionFailedError, ServerError
from tether.client.follow import Follower
from tether.client.models import (
    Approval,
    ApprovalDecision,
    RunSummary,
    SessionView,
    StreamEvent,
    TranscriptRow,
)
from tether.client.streams import EventStream
from tether.serve.sse import parse_frames

__all__ = ["Client"]


def _wait(seconds: float) -> None:
    # The client is a face, not the deterministic core; tests inject ``sleep`` instead.
    threading.Event().wait(seconds)


def _nothing() -> Generator[StreamEvent, None, None]:
    yield from ()


class Client:
    """The tether server's API over httpx, for synchronous code.

    ``http`` lets the caller bring a configured ``httpx.Client`` (proxies, TLS, an ASGI
    transport in tests); it is then theirs to close. ``sleep`` waits between reconnect tries.
    Streams (:meth:`fire`, :meth:`continue_execution`, :meth:`events`) resume on their own after
    a dropped connection under ``options.reconnect``, yielding every event once.
    """

    def __init__(self, base_url: str, api_key: str, *, http: httpx.Client | None = None,
                 options: Options | None = None,
                 sleep: Callable[[float], None] = _wait) -> None:
        self.options = options or Options()
        self._base = base_url.rstrip("/")
        self._key = checked_key(api_key)
        self._owned = http is None
        self._http = http or httpx.Client(timeout=self.options.timeout_s)
        self._sleep = sleep

    def close(self) -> None:
        """Close the HTTP client if this client made it."""
        if self._owned:
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- verbs ------------------------------------------------------------------------------

    def create_session(self, agent: str, *, session_id: str | None = None,
                       variables: dict[str, Any] | None = None,
                       ttl_s: float | None = None) -> SessionView:
        """Start a session of ``agent`` (the server picks the id unless ``session_id``)."""
        call = wire.create_session(agent, session_id, variables, ttl_s)
        return SessionView.model_validate(self._json(call))

    def session(self, sid: str) -> SessionView:
        """The session ``sid``: status, revision, variables, resources, turns and history."""
        return SessionView.model_validate(self._json(wire.session(sid)))

    def fire(self, sid: str, trigger: str, input: Any, key: str | None = None, *,
             expected_revision: int | None = None) -> EventStream:
        """Fire ``trigger`` of session ``sid`` and stream its turn. Refusals raise at once
        (:class:`~tether.client.errors.ConflictError`, ``UnprocessableEntityError``,
        ``GoneError`` …)."""
        call = wire.fire(sid, trigger, input, key, expected_revision)
        return self._stream(call, self._follower(None, 0), resumable_open=False)

    def continue_execution(self, run_id: str, results: dict[str, Any]) -> EventStream:
        """Answer client tool calls of the waiting run ``run_id`` (``{call_id: value}``) and
        stream it on."""
        call = wire.continue_execution(run_id, results)
        return self._stream(call, self._follower(run_id, 0), resumable_open=False)

    def events(self, run_id: str, after: int = 0, *,
               until_finished: bool = False) -> EventStream:
        """The stream of ``run_id`` after event ``after``: replayed, then live; it ends when
        the run waits (``run.waiting``), or with ``until_finished`` only at ``turn.finished``
        (a wait's answer or decision made elsewhere arrives on it)."""
        follower = self._follower(run_id, after, until_finished=until_finished)
        return self._stream(follower.resume_call(), follower, resumable_open=True)

    def restore(self, sid: str, history: list[TranscriptRow | dict[str, Any]], *,
                agent: str | None = None, variables: dict[str, Any] | None = None,
                ttl_s: float | None = None) -> SessionView:
        """Restore the expired session ``sid`` from the ``history`` the caller kept."""
        call = wire.restore(sid, history_rows(history), agent, variables, ttl_s)
        return SessionView.model_validate(self._json(call))

    def approvals(self) -> list[Approval]:
        """The tenant's pending approvals."""
        return listing(self._json(wire.approvals()), "approvals", Approval)

    def approve(self, run_id: str, *, note: str | None = None,
                step: int | None = None) -> ApprovalDecision:
        """Approve the run's pending approval as this key's principal (needs the role)."""
        return ApprovalDecision.model_validate(self._json(wire.decide(run_id, "approve", note,
                                                                      step)))

    def deny(self, run_id: str, *, note: str | None = None,
             step: int | None = None) -> ApprovalDecision:
        """Deny the run's pending approval as this key's principal (needs the role)."""
        return ApprovalDecision.model_validate(self._json(wire.decide(run_id, "deny", note,
                                                                      step)))

    def runs(self) -> list[RunSummary]:
        """The tenant's turn runs."""
        return listing(self._json(wire.runs()), "runs", RunSummary)

    def run_events(self, run_id: str) -> list[dict[str, Any]]:
        """The journal of ``run_id`` as JSON events."""
        return listing(self._json(wire.run_events(run_id)), "events", None)

    # -- plumbing ---------------------------------------------------------------------------

    def _follower(self, run_id: str | None, after: int, *,
                  until_finished: bool = False) -> Follower:
        return Follower(run_id, after=after, policy=self.options.reconnect, rng=self.options.rng,
                        until_finished=until_finished)

    def _request(self, call: wire.Call, *, stream: bool) -> httpx.Response:
        request = self._http.build_request(
            call.method, self._base + call.path, json=call.body, params=call.params or None,
            headers={"Authorization": f"Bearer {self._key}", **call.headers},
            timeout=self.options.stream_timeout() if stream else httpx.USE_CLIENT_DEFAULT)
        response = self._http.send(request, stream=stream)
        if response.status_code >= 400:
            try:
                response.read()
            finally:
                response.close()
            wire.check(response)
        return response

    def _json(self, call: wire.Call) -> Any:
        try:
            return wire.decoded(self._request(call, stream=False))
        except httpx.TransportError as exc:
            raise ConnectionFailedError(f"{call.method} {call.path} did not get an answer: {exc!r}"
                                   f"{wire.maybe_applied(call)}") from exc

    def _stream(self, call: wire.Call, follower: Follower, *,
                resumable_open: bool) -> EventStream:
        try:
            response = self._request(call, stream=True)
        except httpx.TransportError as exc:
            if not resumable_open:
                raise ConnectionFailedError(f"{call.method} {call.path} did not get an answer: "
                                       f"{exc!r}{wire.maybe_applied(call)}",
                                       run_id=follower.run_id) from exc
            response = self._resume(follower, exc)
        follower.opened(response.headers.get(wire.RUN_HEADER),
                        response.headers.get(wire.AFTER_HEADER))
        if not wire.is_stream(response):
            # A trigger that only set variables answers with the session: no turn to follow.
            try:
                response.read()
                body = wire.decoded(response)
            finally:
                response.close()
            if call.method != "POST" or "/triggers/" not in call.path:
                raise wire.not_a_stream(call, response)
            follower.done = True
            return EventStream(_nothing(), follower, SessionView.model_validate(body))
        return EventStream(self._follow(response, follower), follower)

    def _follow(self, response: httpx.Response,
                follower: Follower) -> Generator[StreamEvent, None, None]:
        while True:
            error: BaseException | None = None
            try:
                for frame in parse_frames(response.iter_bytes()):
                    event = follower.accept(frame)
                    if event is not None:
                        yield event
                    if follower.done:
                        return
            except httpx.TransportError as exc:  # dropped, reset, timed out mid-stream
                error = exc
            finally:
                response.close()
            response = self._resume(follower, error)

    def _resume(self, follower: Follower, error: BaseException | None) -> httpx.Response:
        while True:
            self._sleep(follower.dropped(error))
            try:
                return self._request(follower.resume_call(), stream=True)
            except (httpx.TransportError, ServerError) as exc:
                error = exc
