"""Real client libraries against a loopback provider that commits, then stalls or hangs up.

Each library raises its own exceptions (``stripe.APIConnectionError``, ``httpx.ReadTimeout``,
``requests.ReadTimeout``, ``openai.APITimeoutError``, aiohttp's ``ServerDisconnectedError`` …);
the write protocol must read them as ambiguous (the provider did apply the write) or transient
(the connection was never made), per tool effect class.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import aiohttp
import httpx
import openai
import pytest
import requests
import stripe
from pydantic import BaseModel

from tether import MemoryStore, RunStatus, Runtime, ToolContext, tool
from tether.clock import SystemClock
from tether.events import ToolAmbiguous, ToolIntent, ToolRetry

TIMEOUT_S = 1.0  # the client's timeout; the provider stalls far longer (until teardown). Long
# enough that a loaded machine answers the re-issue in time: a second timeout would be a
# different (also correct) trajectory than the one asserted.


@dataclass
class Provider:
    """What the loopback provider did: effects applied per key, requests seen per key."""

    #: How the first request for each key ends after its effect is applied: "stall" (past the
    #: client's timeout), "hangup" (close the connection unanswered), "ok"; "429" answers
    #: Too Many Requests *without* applying anything.
    first: str = "stall"
    effects: dict[str, int] = field(default_factory=dict)
    seen: dict[str, int] = field(default_factory=dict)
    stored: dict[str, dict[str, Any]] = field(default_factory=dict)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""


def _handler(provider: Provider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            return None

        def _reply(self, status: int, body: dict[str, Any],
                   headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # the reconcile lookup: /lookup?key=…
            key = parse_qs(urlparse(self.path).query).get("key", [""])[0]
            with provider.lock:
                found = provider.stored.get(key)
            if found is None:
                self._reply(404, {"error": {"message": "no such object"}})
            else:
                self._reply(200, found)

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
            key = self.headers.get("Idempotency-Key") or _body_key(raw) or "unkeyed"
            with provider.lock:
                provider.seen[key] = provider.seen.get(key, 0) + 1
                first = provider.seen[key] == 1
                if first and provider.first == "429":
                    self._reply(429, {"error": {"message": "slow down", "type": "rate_limit"}},
                                {"Retry-After": "0"})
                    return
                replay = provider.stored.get(key)
                if replay is None or key == "unkeyed":  # no key: nothing to deduplicate by
                    provider.effects[key] = provider.effects.get(key, 0) + 1
                    replay = {"id": f"re_{len(provider.stored) + 1}", "object": "refund",
                              "key": key, "status": "succeeded"}
                    provider.stored[key] = replay
            if first and provider.first == "stall":
                provider.release.wait(10)  # committed; the answer comes far too late
            if first and provider.first == "hangup":
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self._reply(200, replay)

    return Handler


def _body_key(raw: str) -> str:
    """The key a JSON or form body names (for clients that cannot set headers)."""
    try:
        body = json.loads(raw)
        return str(body.get("key", "")) if isinstance(body, dict) else ""
    except ValueError:
        return parse_qs(raw).get("key", [""])[0]


@pytest.fixture
def provider(request: pytest.FixtureRequest) -> Iterator[Provider]:
    """A provider on 127.0.0.1; ``first`` comes from the test's parametrization, if any."""
    state = Provider(first=getattr(request, "param", "stall"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state
    state.release.set()
    server.shutdown()
    server.server_close()


@pytest.fixture
def refused() -> Iterator[str]:
    """A loopback address whose port is bound but not listening: connections are refused."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


class Refund(BaseModel):
    order_id: str


def run(the_tool: Any) -> tuple[Any, list[Any]]:
    """Run a workflow calling ``the_tool`` once; return the result and the journal."""

    async def workflow(ctx: Any) -> Any:
        return await ctx.call_tool(the_tool, {"order_id": "A-1"})

    store = MemoryStore()
    runtime = Runtime(store, clock=SystemClock(), seed=1)
    result = asyncio.run(runtime.start(workflow))
    return result, store.read(result.run_id)


def _stripe(url: str) -> stripe.StripeClient:
    return stripe.StripeClient("sk_test_loopback", base_addresses={"api": url},
                               http_client=stripe.RequestsClient(timeout=TIMEOUT_S),
                               max_network_retries=0)


# -- idempotent writes: re-issued under the same key, applied once ---------------------------


def test_stripe_sdk_timeout_after_commit_is_reissued_with_the_same_key(provider: Provider) -> None:
    """stripe.APIConnectionError after the refund committed: re-issued, one refund."""
    client = _stripe(provider.url)

    @tool(effect="idempotent", key=lambda a: f"refund:{a.order_id}", retry_delay_s=0.0)
    def refund(ctx: ToolContext, args: Refund) -> dict[str, Any]:
        """Refund an order through the official Stripe SDK."""
        made = client.v1.refunds.create(params={"charge": args.order_id},
                                        options={"idempotency_key": ctx.idempotency_key})
        return {"id": made.id}

    result, events = run(refund)
    assert result.status is RunStatus.COMPLETED, result.reason
    assert provider.effects == {"refund:A-1": 1} and provider.seen == {"refund:A-1": 2}
    (ambiguous,) = [e for e in events if isinstance(e, ToolAmbiguous)]
    assert "stripe.APIConnectionError" in ambiguous.reason
    assert [i.key for i in events if isinstance(i, ToolIntent)] == ["refund:A-1"] * 2


def test_httpx_read_timeout_after_commit_is_reissued_with_the_same_key(
        provider: Provider) -> None:
    """httpx.ReadTimeout after the write committed: re-issued under its key, applied once."""

    @tool(effect="idempotent", key=lambda a: f"refund:{a.order_id}", retry_delay_s=0.0)
    async def refund(ctx: ToolContext, args: Refund) -> dict[str, Any]:
        """Refund an order over httpx."""
        async with httpx.AsyncClient(timeout=TIMEOUT_S) as http:
            answer = await http.post(f"{provider.url}/refunds", json={"order": args.order_id},
                                     headers={"Idempotency-Key": ctx.idempotency_key})
        return dict(answer.raise_for_status().json())

    result, events = run(refund)
    assert result.status is RunStatus.COMPLETED, result.reason
    assert provider.effects == {"refund:A-1": 1} and provider.seen == {"refund:A-1": 2}
    assert any("httpx.ReadTimeout" in e.reason for e in events if isinstance(e, ToolAmbiguous))


@pytest.mark.parametrize("provider", ["hangup"], indirect=True)
def test_aiohttp_hangup_after_commit_is_reissued_with_the_same_key(provider: Provider) -> None:
    """aiohttp's ServerDisconnectedError after the commit: ambiguous, re-issued, applied once."""

    @tool(effect="idempotent", key=lambda a: f"refund:{a.order_id}", retry_delay_s=0.0)
    async def refund(ctx: ToolContext, args: Refund) -> dict[str, Any]:
        """Refund an order over aiohttp."""
        timeout = aiohttp.ClientTimeout(total=5 * TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout) as http, http.post(
                f"{provider.url}/refunds", json={"order": args.order_id},
                headers={"Idempotency-Key": ctx.idempotency_key}) as answer:
            return dict(await answer.json())

    result, events = run(refund)
    assert result.status is RunStatus.COMPLETED, result.reason
    assert provider.effects == {"refund:A-1": 1} and provider.seen == {"refund:A-1": 2}
    (ambiguous,) = [e for e in events if isinstance(e, ToolAmbiguous)]
    assert "aiohttp." in ambiguous.reason


# -- reconcilable writes: looked up, not re-issued -------------------------------------------


def test_requests_read_timeout_on_a_reconcilable_write_is_looked_up(provider: Provider) -> None:
    """requests.ReadTimeout after the commit: the lookup finds the write; no second request."""

    def lookup(ctx: ToolContext, key: str) -> dict[str, Any] | None:
        answer = requests.get(f"{provider.url}/lookup", params={"key": key}, timeout=5)
        return None if answer.status_code == 404 else dict(answer.json())

    @tool(effect="reconcilable", key=lambda a: f"refund:{a.order_id}", reconcile=lookup,
          retry_delay_s=0.0)
    def refund(ctx: ToolContext, args: Refund) -> dict[str, Any]:
        """Refund an order over requests."""
        answer = requests.post(f"{provider.url}/refunds", json={"key": ctx.idempotency_key},
                               timeout=(5, TIMEOUT_S))
        return dict(answer.json())

    result, events = run(refund)
    assert result.status is RunStatus.COMPLETED, result.reason
    assert result.result["key"] == "refund:A-1"
    assert provider.effects == {"refund:A-1": 1} and provider.seen == {"refund:A-1": 1}
    assert any("requests.ReadTimeout" in e.reason for e in events
               if isinstance(e, ToolAmbiguous))


# -- unsafe writes: escalated, never re-issued -----------------------------------------------


def test_openai_sdk_timeout_on_an_unsafe_write_escalates(provider: Provider) -> None:
    """openai.APITimeoutError on an unsafe write: the run escalates; one request, one effect."""
    client = openai.OpenAI(base_url=provider.url, api_key="sk-loopback", max_retries=0,
                           timeout=TIMEOUT_S)

    @tool(effect="unsafe")
    def submit(ctx: ToolContext, args: Refund) -> str:
        """Submit a batch through the OpenAI SDK (not deduplicated by the provider)."""
        batch = client.batches.create(completion_window="24h", endpoint="/v1/chat/completions",
                                      input_file_id="file-1")
        return batch.id

    result, events = run(submit)
    assert result.status is RunStatus.ESCALATED
    assert provider.effects == {"unkeyed": 1} and provider.seen == {"unkeyed": 1}
    assert any("openai.APITimeoutError" in e.reason for e in events
               if isinstance(e, ToolAmbiguous))


# -- transient: the connection was never made, so even an unsafe write is retried ------------


def test_a_refused_connection_on_an_unsafe_write_is_retried_not_escalated(
        provider: Provider, refused: str) -> None:
    """httpx.ConnectError (nothing was sent) is transient: retried, then applied once."""

    @tool(effect="unsafe", retry_delay_s=0.0)
    async def wire(ctx: ToolContext, args: Refund) -> dict[str, Any]:
        """Wire money once (the provider does not deduplicate)."""
        base = refused if ctx.attempt == 1 else provider.url
        async with httpx.AsyncClient(timeout=5) as http:
            answer = await http.post(f"{base}/wires", json={"key": "wire-1"})
        return dict(answer.json())

    provider.first = "ok"
    result, events = run(wire)
    assert result.status is RunStatus.COMPLETED, result.reason
    assert provider.effects == {"wire-1": 1}
    (retry,) = [e for e in events if isinstance(e, ToolRetry)]
    assert "httpx.ConnectError" in retry.error["message"]


def test_requests_refused_connection_is_transient(provider: Provider, refused: str) -> None:
    """requests wraps a refused connection in its ConnectionError; still not ambiguous."""

    @tool(effect="unsafe", retry_delay_s=0.0)
    def wire(ctx: ToolContext, args: Refund) -> dict[str, Any]:
        """Wire money once over requests."""
        base = refused if ctx.attempt == 1 else provider.url
        return dict(requests.post(f"{base}/wires", json={"key": "wire-1"}, timeout=5).json())

    provider.first = "ok"
    result, _ = run(wire)
    assert result.status is RunStatus.COMPLETED, result.reason
    assert provider.effects == {"wire-1": 1}


@pytest.mark.parametrize("provider", ["429"], indirect=True)
def test_stripe_rate_limit_is_retried_under_the_same_key(provider: Provider) -> None:
    """stripe.RateLimitError (429, nothing applied) is transient: retried, applied once."""
    client = _stripe(provider.url)

    @tool(effect="unsafe", retry_delay_s=0.0)
    def refund(ctx: ToolContext, args: Refund) -> dict[str, Any]:
        """Refund an order through the Stripe SDK."""
        made = client.v1.refunds.create(params={"charge": args.order_id},
                                        options={"idempotency_key": "refund-1"})
        return {"id": made.id}

    result, events = run(refund)
    assert result.status is RunStatus.COMPLETED, result.reason
    assert provider.effects == {"refund-1": 1} and provider.seen == {"refund-1": 2}
    (retry,) = [e for e in events if isinstance(e, ToolRetry)]
    assert "stripe.RateLimitError" in retry.error["message"]


def test_a_read_that_times_out_in_httpx_is_retried(provider: Provider) -> None:
    """A read's httpx.ReadTimeout is retried (tool_retry journaled), not a permanent failure."""

    @tool(retry_delay_s=0.0)
    async def search(ctx: ToolContext, args: Refund) -> dict[str, Any]:
        """Search orders over httpx."""
        async with httpx.AsyncClient(timeout=TIMEOUT_S) as http:
            answer = await http.post(f"{provider.url}/search", json={"key": args.order_id})
        return dict(answer.json())

    result, events = run(search)
    assert result.status is RunStatus.COMPLETED, result.reason
    assert provider.seen == {"A-1": 2}
    (retry,) = [e for e in events if isinstance(e, ToolRetry)]
    assert "httpx.ReadTimeout" in retry.error["message"]
