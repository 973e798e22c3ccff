"""A failed call is read with everything it wraps: causes, contexts, exception groups, and the
standard library's own HTTP client."""

from __future__ import annotations

import asyncio
import email.message
import http.client
import io
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import httpx
import httpx2
import openai
import pytest
import requests
import stripe
import urllib3
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from tether import MemoryStore, RunStatus, Runtime, ToolContext, tool
from tether.clock import VirtualClock
from tether.events import ToolAmbiguous
from tether.runtime.ambiguity import ErrorOutcome, outcome_of

S: Any = stripe
A, T, P = ErrorOutcome.AMBIGUOUS, ErrorOutcome.TRANSIENT, ErrorOutcome.PERMANENT
_REQUEST = httpx.Request("POST", "http://127.0.0.1/refunds")


class PaymentError(Exception):
    """An application's own error, wrapping whatever its client raised."""


def _from(outer: BaseException, inner: BaseException) -> BaseException:
    outer.__cause__ = inner
    outer.__context__ = inner
    return outer


def _while_handling(outer: BaseException, inner: BaseException) -> BaseException:
    outer.__context__ = inner
    return outer


def _status(status: int) -> httpx.HTTPStatusError:
    response = httpx.Response(status, request=_REQUEST)
    return httpx.HTTPStatusError("status", request=_REQUEST, response=response)


def _http_error(status: int) -> urllib.error.HTTPError:
    return urllib.error.HTTPError("http://x/", status, "x", email.message.Message(),
                                  io.BytesIO(b""))


def _retries_exhausted(status: int) -> requests.exceptions.RetryError:
    reason = urllib3.exceptions.ResponseError(f"too many {status} error responses")
    return requests.exceptions.RetryError(urllib3.exceptions.MaxRetryError(
        None, "/refund", reason))  # type: ignore[arg-type]


def _refused_via_requests() -> requests.ConnectionError:
    reason = urllib3.exceptions.NewConnectionError(None, "refused")  # type: ignore[arg-type]
    return requests.ConnectionError(urllib3.exceptions.MaxRetryError(
        None, "/", reason))  # type: ignore[arg-type]


def _hidden(inner: BaseException) -> BaseException:
    outer = _while_handling(PaymentError("failed"), inner)
    outer.__suppress_context__ = True  # raise PaymentError(...) from None
    return outer


CASES: list[tuple[str, BaseException, ErrorOutcome]] = [
    ("from a read timeout", _from(PaymentError("x"), httpx.ReadTimeout("r")), A),
    ("from a refused connection", _from(PaymentError("x"), httpx.ConnectError("c")), T),
    ("from a 400", _from(PaymentError("x"), _status(400)), P),
    ("from None hides a timeout", _hidden(httpx.ReadTimeout("r")), A),
    ("two levels deep", _from(PaymentError("x"), _from(RuntimeError("y"), TimeoutError())), A),
    ("group with a timeout", ExceptionGroup("g", [ValueError("v"), httpx.ReadTimeout("r")]), A),
    ("group of refusals", ExceptionGroup("g", [httpx.ConnectError("c")]), T),
    ("refused and 400", ExceptionGroup("g", [httpx.ConnectError("c"), _status(400)]), P),
    ("group in a cause", _from(PaymentError("x"), ExceptionGroup(
        "g", [ExceptionGroup("h", [KeyError("k"), httpx.WriteTimeout("w")])])), A),
    ("translated connect timeout", _from(httpx.ConnectTimeout("c"), TimeoutError()), T),
    ("translated refusal", _from(urllib3.exceptions.NewConnectionError(
        None, "r"), TimeoutError()), T),  # type: ignore[arg-type]
    ("400 after a read timeout", _while_handling(_status(400), httpx.ReadTimeout("r")), A),
    ("urllib 500", _http_error(500), A),
    ("urllib 503", _http_error(503), A),
    ("urllib 429", _http_error(429), T),
    ("urllib 404", _http_error(404), P),
    ("urllib refused", urllib.error.URLError(ConnectionRefusedError(111, "refused")), T),
    ("urllib send timeout", urllib.error.URLError(TimeoutError("timed out")), A),
    ("urllib bad url", urllib.error.URLError("unknown url type: foo"), P),
    ("incomplete read", http.client.IncompleteRead(b"{", 99), A),
    ("bad status line", http.client.BadStatusLine("garbage"), A),
    ("remote disconnected", http.client.RemoteDisconnected("closed"), A),
    ("retries on 502", _retries_exhausted(502), A),
    ("retries on 429", _retries_exhausted(429), T),
    ("openai refused", _from(openai.APIConnectionError(
        request=httpx2.Request("POST", "http://127.0.0.1")), httpx2.ConnectError("r")), T),
    ("openai reset", _from(openai.APIConnectionError(
        request=httpx2.Request("POST", "http://127.0.0.1")), httpx2.ReadError("r")), A),
    ("stripe refused", _from(S.APIConnectionError("network"), _refused_via_requests()), T),
]


@pytest.mark.parametrize(("exc", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_wrapped_exception_is_read_with_what_it_wraps(
        exc: BaseException, expected: ErrorOutcome) -> None:
    """Any link that may have been applied makes the call ambiguous; a permanent answer beats a
    refusal; a library's translation of its own lower-level error is trusted."""
    assert outcome_of(exc) is expected


def test_the_tools_word_on_the_exception_it_got_wins_over_the_chain() -> None:
    """classify_error / transient_on naming the outer exception decide; on an inner one they
    are read like the table."""
    wrapped = _from(PaymentError("x"), httpx.ReadTimeout("r"))
    assert outcome_of(wrapped, classify_error=lambda e: (
        "permanent" if isinstance(e, PaymentError) else None)) is P
    assert outcome_of(wrapped, transient_on=(PaymentError,)) is T
    inner = _from(PaymentError("x"), KeyError("vendor timeout"))
    assert outcome_of(inner, ambiguous_on=(KeyError,)) is A


def test_cycles_end_and_an_unreadably_long_chain_is_ambiguous() -> None:
    """A cycle of contexts is read once; past 64 links the unread rest may hold a timeout."""
    first, second = PaymentError("a"), PaymentError("b")
    first.__context__, second.__context__ = second, first
    assert outcome_of(first) is P
    link: BaseException = httpx.ConnectError("refused")
    for level in range(100):
        link = _from(PaymentError(str(level)), link)
    assert outcome_of(link) is A


@settings(max_examples=40, deadline=None)
@given(depth=st.integers(0, 6), at=st.sampled_from(["cause", "context", "group"]),
       leaf=st.sampled_from([(httpx.ReadTimeout("r"), A), (httpx.ConnectError("c"), T),
                             (KeyError("k"), P), (TimeoutError(), A)]))
def test_an_unrecognised_wrapper_never_hides_its_leaf(
        depth: int, at: str, leaf: tuple[BaseException, ErrorOutcome]) -> None:
    """However deep and however wrapped, a lone leaf decides the outcome."""
    exc, expected = leaf
    for level in range(depth):
        if at == "group":
            exc = BaseExceptionGroup(f"g{level}", [exc])
        elif at == "cause":
            exc = _from(PaymentError(str(level)), exc)
        else:
            exc = _while_handling(RuntimeError(str(level)), exc)
    assert outcome_of(exc) is expected


@pytest.fixture
def answering() -> Iterator[dict[int, str]]:
    """A loopback server answering each status it is asked for (``/503``); yields its urls."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                head = conn.recv(65536).split(b" ")[1].decode()
                code = head.strip("/")
                conn.sendall(f"HTTP/1.1 {code} X\r\nContent-Length: 0\r\n"
                             "Connection: close\r\n\r\n".encode())

    threading.Thread(target=serve, daemon=True).start()
    port = server.getsockname()[1]
    yield {code: f"http://127.0.0.1:{port}/{code}" for code in (429, 500, 503, 404)}
    server.close()


def _urlopen_error(url: str) -> BaseException:
    try:
        urllib.request.urlopen(urllib.request.Request(url, data=b"{}", method="POST"),
                               timeout=5).read()
    except Exception as exc:
        return exc
    raise AssertionError("no error")


def test_the_standard_librarys_real_errors_have_their_outcome(
        answering: dict[int, str]) -> None:
    """urlopen's own HTTPError by status, and its URLError for a refused port (nothing sent)."""
    assert outcome_of(_urlopen_error(answering[500])) is A
    assert outcome_of(_urlopen_error(answering[503])) is A
    assert outcome_of(_urlopen_error(answering[429])) is T
    assert outcome_of(_urlopen_error(answering[404])) is P
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    refused = _urlopen_error(f"http://127.0.0.1:{port}/")
    assert isinstance(refused, urllib.error.URLError) and outcome_of(refused) is T


class Args(BaseModel):
    order_id: str


@pytest.mark.parametrize("wrap", ["from", "group"])
def test_a_write_whose_timeout_arrives_wrapped_is_reissued_not_failed(wrap: str) -> None:
    """A handler raising PaymentError from ReadTimeout, or a TaskGroup's ExceptionGroup of
    one, leaves the outcome unknown: re-issued under the same key instead of failed."""
    keys: list[tuple[str, int]] = []

    async def timed_out() -> None:
        raise httpx.ReadTimeout("read timed out")

    @tool(effect="idempotent", key=lambda a: f"refund:{a.order_id}", retry_delay_s=0.0)
    async def refund(ctx: ToolContext, args: Args) -> str:
        """Refund."""
        keys.append((ctx.idempotency_key, ctx.attempt))
        if ctx.attempt == 1:
            if wrap == "group":
                async with asyncio.TaskGroup() as group:
                    group.create_task(timed_out())
            try:
                await timed_out()
            except httpx.HTTPError as exc:
                raise PaymentError(f"refund failed: {exc!r}") from exc
        return "refunded"

    async def workflow(ctx: Any) -> Any:
        return await ctx.call_tool(refund, {"order_id": "A-1"})

    store = MemoryStore()
    result = asyncio.run(Runtime(store, clock=VirtualClock(), seed=1).start(workflow))
    assert result.status is RunStatus.COMPLETED and result.result == "refunded", result.reason
    assert keys == [("refund:A-1", 1), ("refund:A-1", 2)]
    assert any(isinstance(e, ToolAmbiguous) for e in store.read(result.run_id))


def _caught(call: Any) -> BaseException:
    try:
        call()
    except Exception as exc:
        return exc
    raise AssertionError("no error")


def test_what_the_caller_was_handling_is_not_part_of_the_call() -> None:
    """A lookup called inside the caller's ``except TimeoutError`` fails on its own terms: the
    caller's timeout is not read as the lookup's."""

    def lookup() -> None:
        raise PermissionError("403: lookup token expired")

    try:
        raise TimeoutError("the write's own timeout, being handled by the caller")
    except TimeoutError:
        failed = _caught(lookup)
    assert failed.__context__ is not None and outcome_of(failed) is P


def test_what_the_call_itself_was_handling_is_read() -> None:
    """A handler that raises its own error while handling a read timeout is ambiguous."""

    def handler() -> None:
        try:
            raise httpx.ReadTimeout("read timed out")
        except httpx.ReadTimeout:
            raise PaymentError("refund failed") from None

    assert outcome_of(_caught(handler)) is A
