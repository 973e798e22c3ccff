"""The asynchronous client: :class:`AsyncClient` (the verbs of :class:`~tether.client.Client`,
awaited; streams are ``async for``)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
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
from tether.client.streams import AsyncEventStream
from tether.clock import SystemClock
from tether.serve.sse import aparse_frames

__all__ = ["AsyncClient"]


async def _nothing() -> AsyncGenerator[StreamEvent, None]:
    return
    yield  # an async generator that yields nothing


class AsyncClient:
    """The tether server's API over httpx, for asyncio code (see :class:`tether.client.Client`).

    ``sleep`` waits between reconnect tries (default: the system clock's).
    """

    def __init__(self, base_url: str, api_key: str, *, http: httpx.AsyncClient | None = None,
                 options: Options | None = None,
                 sleep: Callable[[float], Awaitable[None]] | None = None) -> None:
        self.options = options or Options()
        self._base = base_url.rstrip("/")
        self._key = checked_key(api_key)
        self._owned = http is None
        self._http = http or httpx.AsyncClient(timeout=self.options.timeout_s)
        self._sleep = sleep or SystemClock().sleep

    async def aclose(self) -> None:
        """Close the HTTP client if this client made it."""
        if self._owned:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- verbs ------------------------------------------------------------------------------

    async def create_session(self, agent: str, *, session_id: str | None = None,
                             variables: dict[str, Any] | None = None,
                             ttl_s: float | None = None) -> SessionView:
        """Start a session of ``agent`` (the server picks the id unless ``session_id``)."""
        call = wire.create_session(agent, session_id, variables, ttl_s)
        return SessionView.model_validate(await self._json(call))

    async def session(self, sid: str) -> SessionView:
        """The session ``sid``: status, revision, variables, resources, turns and history."""
        return SessionView.model_validate(await self._json(wire.session(sid)))

    async def fire(self, sid: str, trigger: str, input: Any, key: str | None = None, *,
                   expected_revision: int | None = None) -> AsyncEventStream:
        """Fire ``trigger`` of session ``sid`` and stream its turn; refusals raise at once."""
        call = wire.fire(sid, trigger, input, key, expected_revision)
        return await self._stream(call, self._follower(None, 0), resumable_open=False)

    async def continue_execution(self, run_id: str,
                                 results: dict[str, Any]) -> AsyncEventStream:
        """Answer client tool calls of the waiting run ``run_id`` and stream it on."""
        call = wire.continue_execution(run_id, results)
        return await self._stream(call, self._follower(run_id, 0), resumable_open=False)

    async def events(self, run_id: str, after: int = 0, *,
                     until_finished: bool = False) -> AsyncEventStream:
        """The stream of ``run_id`` after event ``after``: replayed, then live; it ends when
        the run waits (``run.waiting``), or with ``until_finished`` only at ``turn.finished``
        (a wait's answer or decision made elsewhere arrives on it)."""
        follower = self._follower(run_id, after, until_finished=until_finished)
        return await self._stream(follower.resume_call(), follower, resumable_open=True)

    async def restore(self, sid: str, history: list[TranscriptRow | dict[str, Any]], *,
                      agent: str | None = None, variables: dict[str, Any] | None = None,
                      ttl_s: float | None = None) -> SessionView:
        """Restore the expired session ``sid`` from the ``history`` the caller kept."""
        call = wire.restore(sid, history_rows(history), agent, variables, ttl_s)
        return SessionView.model_validate(await self._json(call))

    async def approvals(self) -> list[Approval]:
        """The tenant's pending approvals."""
        return listing(await self._json(wire.approvals()), "approvals", Approval)

    async def approve(self, run_id: str, *, note: str | None = None,
                      step: int | None = None) -> ApprovalDecision:
        """Approve the run's pending approval as this key's principal (needs the role)."""
        body = await self._json(wire.decide(run_id, "approve", note, step))
        return ApprovalDecision.model_validate(body)

    async def deny(self, run_id: str, *, note: str | None = None,
                   step: int | None = None) -> ApprovalDecision:
        """Deny the run's pending approval as this key's principal (needs the role)."""
        body = await self._json(wire.decide(run_id, "deny", note, step))
        return ApprovalDecision.model_validate(body)

    async def runs(self) -> list[RunSummary]:
        """The tenant's turn runs."""
        return listing(await self._json(wire.runs()), "runs", RunSummary)

    async def run_events(self, run_id: str) -> list[dict[str, Any]]:
        """The journal of ``run_id`` as JSON events."""
        return listing(await self._json(wire.run_events(run_id)), "events", None)

    # -- plumbing (the same steps as the sync client's; the decisions live in Follower) ------

    def _follower(self, run_id: str | None, after: int, *,
                  until_finished: bool = False) -> Follower:
        return Follower(run_id, after=after, policy=self.options.reconnect, rng=self.options.rng,
                        until_finished=until_finished)

    async def _request(self, call: wire.Call, *, stream: bool) -> httpx.Response:
        request = self._http.build_request(
            call.method, self._base + call.path, json=call.body, params=call.params or None,
            headers={"Authorization": f"Bearer {self._key}", **call.headers},
            timeout=self.options.stream_timeout() if stream else httpx.USE_CLIENT_DEFAULT)
        response = await self._http.send(request, stream=stream)
        if response.status_code >= 400:
            try:
                await response.aread()
            finally:
                await response.aclose()
            wire.check(response)
        return response

    async def _json(self, call: wire.Call) -> Any:
        try:
            return wire.decoded(await self._request(call, stream=False))
        except httpx.TransportError as exc:
            raise ConnectionFailedError(f"{call.method} {call.path} did not get an answer: {exc!r}"
                                   f"{wire.maybe_applied(call)}") from exc

    async def _stream(self, call: wire.Call, follower: Follower, *,
                      resumable_open: bool) -> AsyncEventStream:
        try:
            response = await self._request(call, stream=True)
        except httpx.TransportError as exc:
            if not resumable_open:
                raise ConnectionFailedError(f"{call.method} {call.path} did not get an answer: "
                                       f"{exc!r}{wire.maybe_applied(call)}",
                                       run_id=follower.run_id) from exc
            response = await self._resume(follower, exc)
        follower.opened(response.headers.get(wire.RUN_HEADER),
                        response.headers.get(wire.AFTER_HEADER))
        if not wire.is_stream(response):
            # A trigger that only set variables answers with the session: no turn to follow.
            try:
                await response.aread()
                body = wire.decoded(response)
            finally:
                await response.aclose()
            if call.method != "POST" or "/triggers/" not in call.path:
                raise wire.not_a_stream(call, response)
            follower.done = True
            return AsyncEventStream(_nothing(), follower, SessionView.model_validate(body))
        return AsyncEventStream(self._follow(response, follower), follower)

    async def _follow(self, response: httpx.Response,
                      follower: Follower) -> AsyncGenerator[StreamEvent, None]:
        while True:
            error: BaseException | None = None
            try:
                async for frame in aparse_frames(response.aiter_bytes()):
                    event = follower.accept(frame)
                    if event is not None:
                        yield event
                    if follower.done:
                        return
            except httpx.TransportError as exc:  # dropped, reset, timed out mid-stream
                error = exc
            finally:
                await response.aclose()
            response = await self._resume(follower, error)

    async def _resume(self, follower: Follower, error: BaseException | None) -> httpx.Response:
        while True:
            await self._sleep(follower.dropped(error))
            try:
                return await self._request(follower.resume_call(), stream=True)
            except (httpx.TransportError, ServerError) as exc:
                error = exc
