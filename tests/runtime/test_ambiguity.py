"""Which exceptions say a request may have been applied: defaults, declarations, agreement."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import botocore.exceptions as aws  # type: ignore[import-untyped]
import httpx
import httpx2
import openai
import pytest
import requests
import stripe
import urllib3
from aiohttp.client_reqrep import ConnectionKey
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from tether import MemoryStore, RunStatus, Runtime, ToolContext, ToolFailed, tool
from tether.clock import VirtualClock
from tether.errors import AmbiguousOutcome, TransientError, UsageError
from tether.events import ToolAmbiguous, ToolRetry
from tether.runtime.ambiguity import ErrorOutcome, outcome_of, retry_after_s
from tether.runtime.failures import FailureType, classify

#: The Stripe SDK, untyped constructors and all.
S: Any = stripe
A, T, P = ErrorOutcome.AMBIGUOUS, ErrorOutcome.TRANSIENT, ErrorOutcome.PERMANENT
_REQUEST = httpx.Request("POST", "http://127.0.0.1/refunds")


def _httpx_status(status: int) -> httpx.HTTPStatusError:
    response = httpx.Response(status, request=_REQUEST)
    return httpx.HTTPStatusError("status", request=_REQUEST, response=response)


def _openai(cls: type[openai.APIStatusError], status: int) -> openai.APIStatusError:
    response = httpx2.Response(status, request=httpx2.Request("POST", "http://127.0.0.1/v1"))
    return cls("status", response=response, body=None)


def _requests_status(status: int) -> requests.HTTPError:
    response = requests.Response()
    response.status_code = status
    return requests.HTTPError("status", response=response)


def _refused_via_requests() -> requests.ConnectionError:
    reason = urllib3.exceptions.NewConnectionError(None, "Connection refused")  # type: ignore[arg-type]
    return requests.ConnectionError(urllib3.exceptions.MaxRetryError(None, "/", reason))  # type: ignore[arg-type]


CASES: list[tuple[BaseException, ErrorOutcome]] = [
    (TimeoutError("read"), A),
    (ConnectionResetError("reset"), A),
    (BrokenPipeError("pipe"), A),
    (ConnectionRefusedError("refused"), T),
    (KeyError("id"), P),
    (httpx.ConnectTimeout("connect"), T),
    (httpx.ConnectError("refused"), T),
    (httpx.PoolTimeout("pool"), T),
    (httpx.ReadTimeout("read"), A),
    (httpx.WriteTimeout("write"), A),
    (httpx.ReadError("read"), A),
    (httpx.WriteError("write"), A),
    (httpx.RemoteProtocolError("hung up"), A),
    (httpx2.ReadTimeout("read"), A),
    (httpx2.ConnectError("refused"), T),
    (_httpx_status(429), T),
    (_httpx_status(500), A),
    (_httpx_status(502), A),
    (_httpx_status(503), A),
    (_httpx_status(504), A),
    (_httpx_status(404), P),
    (requests.ConnectTimeout("connect"), T),
    (requests.ReadTimeout("read"), A),
    (requests.ConnectionError("reset"), A),
    (_refused_via_requests(), T),
    (requests.exceptions.ChunkedEncodingError("cut"), A),
    (_requests_status(429), T),
    (_requests_status(500), A),
    (_requests_status(400), P),
    (aiohttp.ServerDisconnectedError(), A),
    (aiohttp.ClientOSError(104, "reset"), A),
    (aiohttp.ServerTimeoutError("read"), A),
    (aiohttp.ConnectionTimeoutError("connect"), T),
    (aiohttp.ClientPayloadError("cut"), A),
    (aiohttp.ClientConnectorError(ConnectionKey("127.0.0.1", 9, False, True, None, None, None,
                                                None), OSError(111, "refused")), T),
    (S.APIConnectionError("timed out"), A),
    (S.RateLimitError("slow down", http_status=429), T),
    (S.APIError("internal", http_status=500), A),
    (S.APIError("unparseable answer"), A),
    (S.CardError("declined", None, "card_declined", http_status=402), P),
    (S.InvalidRequestError("bad", None, http_status=400), P),
    (aws.ConnectTimeoutError(endpoint_url="http://127.0.0.1"), T),
    (aws.EndpointConnectionError(endpoint_url="http://127.0.0.1"), T),
    (aws.ReadTimeoutError(endpoint_url="http://127.0.0.1"), A),
    (aws.ConnectionClosedError(endpoint_url="http://127.0.0.1"), A),
    (aws.ClientError({"Error": {"Code": "ThrottlingException"},
                      "ResponseMetadata": {"HTTPStatusCode": 400}}, "PutItem"), T),
    (aws.ClientError({"Error": {"Code": "InternalError"},
                      "ResponseMetadata": {"HTTPStatusCode": 500}}, "PutItem"), A),
    (aws.ClientError({"Error": {"Code": "ValidationException"},
                      "ResponseMetadata": {"HTTPStatusCode": 400}}, "PutItem"), P),
    (openai.APITimeoutError(httpx2.Request("POST", "http://127.0.0.1")), A),
    (openai.APIConnectionError(request=httpx2.Request("POST", "http://127.0.0.1")), A),
    (_openai(openai.InternalServerError, 500), A),
    (_openai(openai.RateLimitError, 429), T),
    (_openai(openai.BadRequestError, 400), P),
    (_openai(openai.AuthenticationError, 401), P),
]


@pytest.mark.parametrize(("exc", "expected"), CASES, ids=lambda v: type(v).__qualname__)
def test_client_library_exceptions_have_their_default_outcome(
        exc: BaseException, expected: ErrorOutcome) -> None:
    """Each library's timeouts and connection errors are read by the table's rules."""
    assert outcome_of(exc) is expected


@pytest.mark.parametrize(("exc", "expected"), CASES, ids=lambda v: type(v).__qualname__)
def test_classify_agrees_with_the_outcome(exc: BaseException, expected: ErrorOutcome) -> None:
    """failures.classify gives ambiguous_write / transient (or rate_limited) for the same cases."""
    kind = classify(exc).type
    wanted = {A: {FailureType.AMBIGUOUS_WRITE},
              T: {FailureType.TRANSIENT_TOOL_ERROR, FailureType.RATE_LIMITED},
              P: {FailureType.PERMANENT_TOOL_ERROR}}[expected]
    assert kind in wanted


@settings(max_examples=40, deadline=None)
@given(case=st.sampled_from(CASES), depth=st.integers(1, 3))
def test_a_subclass_inherits_its_base_libraries_outcome(
        case: tuple[BaseException, ErrorOutcome], depth: int) -> None:
    """An application's own subclass of a library error is read like the library's."""
    exc, expected = case
    cls: type[BaseException] = type(exc)
    for level in range(depth):
        cls = type(f"AppError{level}", (cls,), {"__module__": "app.errors"})
    child = cls.__new__(cls)
    child.__dict__.update(exc.__dict__)
    child.args = exc.args
    assert outcome_of(child) is expected


def test_declarations_extend_and_override_the_defaults() -> None:
    """ambiguous_on / transient_on by type or dotted name come before the defaults."""

    class VendorTimeout(Exception):
        pass

    assert outcome_of(VendorTimeout()) is P
    assert outcome_of(VendorTimeout(), ambiguous_on=(VendorTimeout,)) is A
    assert outcome_of(VendorTimeout(), transient_on=(
        f"{VendorTimeout.__module__}.{VendorTimeout.__qualname__}",)) is T
    assert outcome_of(httpx.ConnectError("x"), ambiguous_on=("httpx.ConnectError",)) is A
    assert outcome_of(S.CardError("d", None, "c"), transient_on=(
        "stripe._error.StripeError",)) is T
    # Both declared: the conservative reading wins.
    assert outcome_of(VendorTimeout(), ambiguous_on=(VendorTimeout,),
                      transient_on=(VendorTimeout,)) is A


def test_a_classifier_is_asked_first_and_may_abstain() -> None:
    """classify_error can say "permanent" for a timeout, or None to leave it to the rest."""

    def mine(exc: BaseException) -> str | None:
        return "permanent" if isinstance(exc, TimeoutError) else None

    assert outcome_of(TimeoutError(), classify_error=mine) is P
    assert outcome_of(httpx.ReadTimeout("x"), classify_error=mine) is A
    # tether's own signals are the handler's explicit word: nothing overrides them.
    assert outcome_of(TransientError("x"), classify_error=lambda e: "ambiguous") is T
    assert outcome_of(AmbiguousOutcome("x"), ambiguous_on=(), classify_error=mine) is A


def test_retry_after_is_read_from_the_libraries_headers() -> None:
    """A 429's Retry-After seconds become the retry hint; dates and junk are ignored."""
    assert retry_after_s(S.RateLimitError("x", headers={"Retry-After": "3"})) == 3.0
    response = httpx.Response(429, headers={"Retry-After": "7"}, request=_REQUEST)
    assert retry_after_s(httpx.HTTPStatusError("x", request=_REQUEST, response=response)) == 7.0
    assert retry_after_s(S.RateLimitError(
        "x", headers={"Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT"})) is None
    assert retry_after_s(TimeoutError()) is None


class Args(BaseModel):
    order_id: str


def _run(the_tool: Any) -> tuple[Any, list[Any]]:
    async def workflow(ctx: Any) -> Any:
        return await ctx.call_tool(the_tool, {"order_id": "A-1"})

    store = MemoryStore()
    result = asyncio.run(Runtime(store, clock=VirtualClock(), seed=1).start(workflow))
    return result, store.read(result.run_id)


def test_a_tool_may_say_a_timeout_did_not_apply_anything() -> None:
    """A tool's classify_error turns a library timeout into a permanent failure, not a guess."""
    calls: list[int] = []

    @tool(effect="unsafe", classify_error=lambda e: "permanent")
    def wire(ctx: ToolContext, args: Args) -> str:
        """Wire money."""
        calls.append(ctx.attempt)
        raise httpx.ReadTimeout("read timed out")

    result, _ = _run(wire)
    assert result.status is RunStatus.FAILED and calls == [1]
    assert result.error["type"] == f"{ToolFailed.__module__}.ToolFailed"


def test_a_transient_library_error_waits_its_retry_after() -> None:
    """stripe.RateLimitError with Retry-After: the retry is journaled after at least that long."""

    @tool(effect="idempotent", key=lambda a: f"refund:{a.order_id}", retry_delay_s=0.0)
    def refund(ctx: ToolContext, args: Args) -> str:
        """Refund."""
        if ctx.attempt == 1:
            raise S.RateLimitError("slow down", http_status=429,
                                        headers={"Retry-After": "4"})
        return "ok"

    result, events = _run(refund)
    assert result.status is RunStatus.COMPLETED
    (retry,) = [e for e in events if isinstance(e, ToolRetry)]
    assert retry.delay_s >= 4.0


def test_a_lookup_that_cannot_connect_is_retried() -> None:
    """A reconcile lookup raising httpx.ConnectError is retried like any read."""
    lookups: list[int] = []

    def lookup(ctx: ToolContext, key: str) -> str | None:
        lookups.append(1)
        if len(lookups) == 1:
            raise httpx.ConnectError("refused")
        return "found"

    @tool(effect="reconcilable", reconcile=lookup, retry_delay_s=0.0)
    def book(ctx: ToolContext, args: Args) -> str:
        """Book."""
        raise httpx.ReadTimeout("read timed out")

    result, _ = _run(book)
    assert result.status is RunStatus.COMPLETED and result.result == "found"
    assert len(lookups) == 2


def test_an_undo_that_times_out_in_a_client_library_is_retried() -> None:
    """Saga compensation reads library timeouts like any call: re-sent under its undo key."""
    undos: list[str] = []

    def undo(ctx: ToolContext, args: Args, result: Any) -> str:
        undos.append(ctx.idempotency_key)
        if len(undos) == 1:
            raise httpx.ReadTimeout("read timed out")
        return "undone"

    @tool(effect="idempotent", key=lambda a: f"book:{a.order_id}", compensate=undo)
    def book(ctx: ToolContext, args: Args) -> str:
        """Book."""
        return "booked"

    async def workflow(ctx: Any) -> Any:
        await ctx.call_tool(book, {"order_id": "A-1"})
        raise ValueError("a later step failed")

    result = asyncio.run(Runtime(MemoryStore(), clock=VirtualClock(), seed=1).start(workflow))
    assert result.status is RunStatus.FAILED, result.reason
    assert undos == ["book:A-1:undo", "book:A-1:undo"]


@pytest.mark.parametrize("declared", ["APIConnectionError", "", 42, dict])
def test_a_declaration_that_can_never_match_is_refused(declared: Any) -> None:
    """A bare or mistyped name would silently never match: tool() refuses it."""
    with pytest.raises(UsageError, match="names no exception"):
        tool(name="t", args=Args, result=str, ambiguous_on=[declared])(lambda ctx, args: "x")


def test_builtin_names_and_dotted_names_are_accepted() -> None:
    """'TimeoutError', 'stripe.APIConnectionError' and exception types are valid declarations."""
    made = tool(name="t", args=Args, result=str, transient_on=["TimeoutError"],
                ambiguous_on=["stripe.APIConnectionError", KeyError])(lambda ctx, args: "x")
    assert made.outcome_of(TimeoutError()) is T


def test_a_client_cancelling_its_own_request_is_an_ambiguous_write() -> None:
    """CancelledError from a handler (the run not cancelled) may follow a send: re-issued."""
    keys: list[tuple[str, int]] = []

    @tool(effect="idempotent", key=lambda a: f"refund:{a.order_id}", retry_delay_s=0.0)
    async def refund(ctx: ToolContext, args: Args) -> str:
        """Refund."""
        keys.append((ctx.idempotency_key, ctx.attempt))
        if ctx.attempt == 1:
            raise asyncio.CancelledError("the client's cancel scope fired after the send")
        return "refunded"

    result, events = _run(refund)
    assert result.status is RunStatus.COMPLETED, result.reason
    assert keys == [("refund:A-1", 1), ("refund:A-1", 2)]
    assert any("CancelledError" in e.reason for e in events if isinstance(e, ToolAmbiguous))


def test_cancelling_a_run_inside_a_tool_call_still_cancels_it() -> None:
    """A real cancellation during a handler propagates; nothing is journaled as ambiguous."""
    store = MemoryStore()
    entered = asyncio.Event()

    @tool(effect="idempotent", key=lambda a: f"refund:{a.order_id}")
    async def refund(ctx: ToolContext, args: Args) -> str:
        """Refund."""
        entered.set()
        await asyncio.Event().wait()
        return "unreachable"

    async def workflow(ctx: Any) -> Any:
        return await ctx.call_tool(refund, {"order_id": "A-1"})

    async def main() -> None:
        runtime = Runtime(store, clock=VirtualClock(autojump=False), seed=1)
        task = asyncio.create_task(runtime.start(workflow, run_id="cancelled"))
        await entered.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    kinds = [e.kind for e in store.read("cancelled")]
    assert "tool_ambiguous" not in kinds and "tool_error" not in kinds


def test_a_classifier_answering_nonsense_is_a_usage_error() -> None:
    """classify_error must answer one of the outcomes or None; anything else says so."""
    with pytest.raises(UsageError, match="classify_error returned 'maybe'"):
        outcome_of(TimeoutError(), classify_error=lambda e: "maybe")
