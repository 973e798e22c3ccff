"""`tether sim serve` as a real process on a free loopback port: the official stripe SDK (its
default requests client, only the base address changed), httpx, and a shell script with curl
reach the world; faults arrive as a 429 and as a connection dropped without a response;
`tether sim verdict --url` and SIGTERM give the verdict with `tether sim run`'s exit codes;
webhooks reach a real receiver, signed as Stripe signs them."""

from __future__ import annotations

import asyncio
import json
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import stripe
import yaml

ROOT = Path(__file__).resolve().parents[3]
CURL_AGENT = Path(__file__).with_name("curl_agent.sh")
KEY = "sk_test_served"

WORLD = {"payments": {
    "customers": [{"id": "cus_1", "email": "ann@example.com", "name": "Ann"}],
    "charges": [{"id": "ch_1", "customer": "cus_1", "amount": 5000}]}}
DROP_AFTER = {"kind": "timeout_after", "target": "payments.create_refund", "on_call": [1]}


def _scenario(faults: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"name": "served-refund", "agent": "tests.sim.own_agents.credit:agent",
            "task": "Refund 10.00 of charge ch_1 once.", "world": WORLD, "faults": faults,
            "invariants": [{"exactly_once": {"effect": "payments.refund"}}],
            "success": [{"exactly_once": {"effect": "payments.refund",
                                          "match": {"charge": "ch_1"}}}], **extra}


class Served:
    """A running `tether sim serve` and the addresses it printed."""

    def __init__(self, proc: subprocess.Popen[str], urls: dict[str, str]) -> None:
        self.proc, self.urls = proc, urls

    @property
    def root(self) -> str:
        return self.urls["verdict"].removesuffix("/_tether/verdict")

    def stop(self) -> tuple[int, str]:
        """SIGTERM, then the exit status and what it printed after the addresses."""
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=30)
        return self.proc.returncode, out


def _tether(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tether.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


@contextmanager
def serve(tmp_path: Path, scenario: dict[str, Any], seed: int = 0) -> Iterator[Served]:
    path = tmp_path / f"{scenario['name']}.yaml"
    path.write_text(yaml.safe_dump(scenario), encoding="utf-8")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tether.cli", "sim", "serve", str(path), "--seed", str(seed),
         "--port", "0"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True)
    try:
        urls: dict[str, str] = {}
        assert proc.stdout is not None
        while "verdict" not in urls:
            line = proc.stdout.readline()
            if not line:
                raise AssertionError(f"tether sim serve ended early ({proc.wait()})")
            name, _, url = line.strip().partition(" ")
            urls[name] = url.strip()
        yield Served(proc, urls)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)


def _sdk(served: Served, retries: int) -> stripe.StripeClient:
    return stripe.StripeClient(KEY, base_addresses={"api": served.urls["payments"]},
                               max_network_retries=retries)


def test_serve_prints_one_machine_readable_line_per_address(tmp_path: Path) -> None:
    """Each service, the MCP endpoint, the OpenAPI document and the verdict URL are printed as
    NAME URL on one free loopback port, and each answers there."""
    with serve(tmp_path, _scenario([])) as served:
        assert {"payments", "crm", "identity", "mcp", "openapi", "verdict"} <= set(served.urls)
        ports = {url.split("/")[2] for url in served.urls.values()}
        assert len(ports) == 1 and ports.pop().startswith("127.0.0.1:")
        assert httpx.get(served.urls["openapi"]).json()["openapi"].startswith("3.1")
        health = httpx.get(f"{served.root}/_tether/health").json()
        assert (health["scenario"], health["seed"]) == ("served-refund", 0)


def test_the_stripe_sdk_meets_a_429_then_its_retries_survive_a_dropped_connection(
        tmp_path: Path) -> None:
    """The official SDK on its default requests client: a throttled read is a RateLimitError
    carrying Retry-After; a refund whose connection drops after the write is retried by the SDK
    with the idempotency key it added, so the server replays it and the ledger has one refund."""
    throttle = {"kind": "error", "status": 429, "retry_after_s": 2,
                "target": "payments.get_charge", "on_call": [1]}
    with serve(tmp_path, _scenario([throttle, DROP_AFTER])) as served:
        with pytest.raises(stripe.RateLimitError) as throttled:
            _sdk(served, retries=0).v1.charges.retrieve("ch_1")
        assert throttled.value.http_status == 429
        assert throttled.value.headers is not None and \
            throttled.value.headers.get("retry-after") == "2"
        client = _sdk(served, retries=2)
        assert client.v1.charges.retrieve("ch_1").amount == 5000
        refund = client.v1.refunds.create(params={"charge": "ch_1", "amount": 1000})
        assert refund.last_response is not None and \
            refund.last_response.headers.get("idempotent-replayed") == "true"
        ledger = httpx.get(f"{served.root}/_tether/ledger").json()["effects"]
        assert [(e["operation"], e["data"]["amount"]) for e in ledger] == [("refund", 1000)]
        assert ledger[0]["data"]["idempotency_key"]  # the SDK's own key reached the service
        status, out = served.stop()
    assert status == 0 and out.startswith("PASS")


def test_a_dropped_connection_is_a_retryable_connection_error_for_the_sdk(
        tmp_path: Path) -> None:
    """With the SDK's retries off, the dropped connection surfaces as APIConnectionError marked
    retryable (requests saw the server close without a response) after the write applied; the
    agent's own retry with its idempotency key is replayed, not applied again."""
    twice = {**DROP_AFTER, "on_call": [1, 2]}
    params: Any = {"charge": "ch_1", "amount": 1000}
    keyed: Any = {"idempotency_key": "refund-ch_1-1000"}
    with serve(tmp_path, _scenario([twice])) as served:
        client = _sdk(served, retries=0)
        with pytest.raises(stripe.APIConnectionError) as dropped:
            client.v1.refunds.create(params=params, options=keyed)
        assert dropped.value.should_retry
        with pytest.raises(requests.ConnectionError, match=r"without response|aborted|reset"):
            requests.post(f"{served.urls['payments']}/v1/refunds", auth=(KEY, ""),
                          data={"charge": "ch_1", "amount": 1})
        replayed = client.v1.refunds.create(params=params, options=keyed)
        assert replayed.last_response is not None and \
            replayed.last_response.headers.get("idempotent-replayed") == "true"
        ledger = httpx.get(f"{served.root}/_tether/ledger").json()["effects"]
        assert [e["data"]["amount"] for e in ledger] == [1000, 1]
        assert ledger[0]["data"]["refund_id"] == replayed.id


def test_httpx_sees_a_dropped_connection_as_a_transport_error_after_the_write(
        tmp_path: Path) -> None:
    """httpx gets RemoteProtocolError (no response at all) while the refund is in the ledger;
    a naive retry without a key refunds again, and the verdict says FAIL with exit 1."""
    with serve(tmp_path, _scenario([DROP_AFTER])) as served:
        with httpx.Client(base_url=served.urls["payments"], auth=(KEY, "")) as http:
            assert http.get("/v1/charges/ch_1").json()["amount"] == 5000
            with pytest.raises(httpx.RemoteProtocolError):
                http.post("/v1/refunds", data={"charge": "ch_1", "amount": 1000})
            again = http.post("/v1/refunds", data={"charge": "ch_1", "amount": 1000})
            assert again.status_code == 200
        verdict = _tether("sim", "verdict", "--url", served.urls["verdict"], "--json")
        assert verdict.returncode == 1, verdict.stdout
        as_json = json.loads(verdict.stdout)
        assert (as_json["headline"], as_json["ok"]) == ("FAIL", False)
        assert "2 × refund:ch_1" in as_json["verdicts"][0]["detail"]


@pytest.mark.parametrize(("faults", "key", "expected"), [
    ([], "", 0),                                 # nothing drops: one refund, PASS
    ([DROP_AFTER], "", 1),                       # naive retry after the drop: two refunds
    ([DROP_AFTER], "refund-ch_1-once", 0),       # the same retry with a key: replayed
])
def test_a_curl_agent_is_judged_by_tether_sim_verdict(tmp_path: Path, faults: list[Any],
                                                      key: str, expected: int) -> None:
    """A shell script with curl refunds over loopback; `tether sim verdict --url` exits 0 when
    the ledger holds one refund and 1 when the naive retry refunded twice."""
    with serve(tmp_path, _scenario(faults)) as served:
        agent = subprocess.run(["sh", str(CURL_AGENT), served.urls["payments"], "ch_1", "1000",
                                key], capture_output=True, text=True, timeout=60)
        assert agent.returncode == 0, agent.stderr
        verdict = _tether("sim", "verdict", "--url", served.root)
        assert verdict.returncode == expected, verdict.stdout
        assert verdict.stdout.split()[0] == ("PASS" if expected == 0 else "FAIL")
        status, out = served.stop()
    assert status == expected and out.split()[0] == verdict.stdout.split()[0]


def test_sigterm_prints_the_verdict_and_exits_with_its_status(tmp_path: Path) -> None:
    """SIGTERM stops the server; it prints the verdict (here NOT DONE: the agent read the
    charge and refunded nothing) and exits 0, as `tether sim run` does for a safe run that did
    not do its task."""
    with serve(tmp_path, _scenario([])) as served:
        assert httpx.get(f"{served.urls['payments']}/v1/charges/ch_1",
                         auth=(KEY, "")).status_code == 200
        status, out = served.stop()
    assert status == 0
    assert out.startswith("NOT DONE  served-refund  seed=0  harness=served")
    assert "replay:" not in out  # a served agent cannot be replayed by tether


def test_a_fault_the_wire_cannot_deliver_makes_the_verdict_inconclusive(tmp_path: Path) -> None:
    """A model fault cannot reach an agent in another process: the session did not test it,
    so the verdict is INCONCLUSIVE (exit 3), never a pass."""
    model_fault = {"kind": "rate_limit", "target": "model", "on_call": [1]}
    with serve(tmp_path, _scenario([model_fault])) as served:
        subprocess.run(["sh", str(CURL_AGENT), served.urls["payments"], "ch_1", "1000", "k"],
                       check=True, capture_output=True, timeout=60)
        verdict = _tether("sim", "verdict", "--url", served.root)
        assert verdict.returncode == 3 and verdict.stdout.startswith("INCONCLUSIVE")
        assert "targets what the served world does not run" in verdict.stdout


def test_verdict_of_an_address_nothing_serves_exits_2() -> None:
    """An unreachable URL is bad input (exit 2) with the reason, never a verdict."""
    with ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler) as free:
        port = free.server_address[1]
    answer = _tether("sim", "verdict", "--url", f"http://127.0.0.1:{port}")
    assert answer.returncode == 2 and "cannot reach" in answer.stderr


# -- webhooks to a real receiver --------------------------------------------------------------


@contextmanager
def receiver(statuses: list[int] | None = None) -> Iterator[tuple[str, queue.Queue[Any]]]:
    """A tiny HTTP server on 127.0.0.1 that records each POST (body, headers) and answers the
    next of ``statuses`` (then 200)."""
    got: queue.Queue[Any] = queue.Queue()
    answers = list(statuses or [])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            got.put((body, {k.lower(): v for k, v in self.headers.items()}))
            self.send_response(answers.pop(0) if answers else 200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks", got
    finally:
        server.shutdown()
        server.server_close()


def _events(got: queue.Queue[Any], n: int, secret: str) -> list[stripe.Event]:
    """The next ``n`` deliveries, each verified with the SDK (virtual timestamps: no
    tolerance check against the real clock)."""
    events = []
    for _ in range(n):
        body, headers = got.get(timeout=20)
        events.append(stripe.Webhook.construct_event(body, headers["stripe-signature"], secret,
                                                     tolerance=0))
    return events


def test_webhooks_reach_a_real_receiver_signed_duplicated_and_out_of_order(
        tmp_path: Path) -> None:
    """An endpoint registered through the SDK gets each event POSTed and signed with its
    secret (construct_event verifies it); duplicate_delivery sends event 1 twice, out_of_order
    holds event 2 back until event 3 has been delivered."""
    faults = [{"kind": "duplicate_delivery", "target": "payments.webhook", "on_call": [1]},
              {"kind": "out_of_order", "target": "payments.webhook", "on_call": [2]}]
    scenario = _scenario(faults, invariants=[], success=[])
    with serve(tmp_path, scenario) as served, receiver() as (url, got):
        client = _sdk(served, retries=0)
        endpoint = client.v1.webhook_endpoints.create(
            params={"url": url, "enabled_events": ["refund.created", "charge.refunded"]})
        assert endpoint.secret is not None and endpoint.secret.startswith("whsec_")
        client.v1.refunds.create(params={"charge": "ch_1", "amount": 1000})
        client.v1.refunds.create(params={"charge": "ch_1", "amount": 500})
        events = _events(got, 5, endpoint.secret)
        assert [(e.id, e.type) for e in events] == [
            ("evt_0001", "refund.created"), ("evt_0001", "refund.created"),
            ("evt_0003", "refund.created"), ("evt_0002", "charge.refunded"),
            ("evt_0004", "charge.refunded")]
        assert events[3].data.object["amount_refunded"] == 1000
        listed = client.v1.events.list(params={"type": "refund.created"})
        assert [e.id for e in listed.data] == ["evt_0003", "evt_0001"]


def test_a_receiver_that_fails_gets_the_event_again_on_the_next_round(tmp_path: Path) -> None:
    """A 500 from the receiver is retried after the next request, with the same event id."""
    scenario = _scenario([], invariants=[], success=[])
    with serve(tmp_path, scenario) as served, receiver([500]) as (url, got):
        client = _sdk(served, retries=0)
        endpoint = client.v1.webhook_endpoints.create(
            params={"url": url, "enabled_events": ["refund.created"]})
        assert endpoint.secret is not None
        client.v1.refunds.create(params={"charge": "ch_1", "amount": 1000})
        [first] = _events(got, 1, endpoint.secret)
        client.v1.charges.retrieve("ch_1")  # the next request: the next delivery round
        [again] = _events(got, 1, endpoint.secret)
        assert first.id == again.id == "evt_0001"
        attempts = httpx.get(f"{served.root}/_tether/webhooks").json()["attempts"]
        assert [(a["status"], a["outcome"]) for a in attempts] == \
            [(500, "retrying"), (200, "delivered")]


# -- the ASGI app in-process ------------------------------------------------------------------


def _asgi_env(faults: list[dict[str, Any]] | None = None) -> Any:
    from tether.sim import scenario_from_dict
    from tether.sim.episode import environment_for

    return environment_for(scenario_from_dict(_scenario(faults or [])), 0)


def test_the_clock_advances_only_by_a_valid_amount() -> None:
    """POST /_tether/clock/advance moves the virtual clock by N seconds; a negative, missing or
    non-numeric N is a 400 naming the parameter, and the clock stays."""
    from tether.sim.wire.asgi import asgi_app

    env = _asgi_env()
    start = env.clock.now()

    async def main() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi_app(env)),
                                     base_url="http://127.0.0.1") as http:
            return [await http.post("/_tether/clock/advance", json=body)
                    for body in ({"seconds": 90}, {"seconds": -1}, {"seconds": "soon"}, {},
                                 {"seconds": True})]

    moved, *refused = asyncio.run(main())
    assert moved.json()["now"] == start + 90 == env.clock.now()
    assert [(r.status_code, r.json()["error"]["param"]) for r in refused] == \
        [(400, "seconds")] * 4


def test_the_verdict_endpoint_judges_the_ledger_now() -> None:
    """GET /_tether/verdict answers the invariants and task checks as they stand:
    INCONCLUSIVE before any request (no agent to judge), NOT DONE once the agent has read the
    charge, PASS after the refund, with the headline word."""
    from tether.sim.wire.asgi import asgi_app

    env = _asgi_env()

    async def main() -> list[str]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi_app(env)),
                                     base_url="http://127.0.0.1", auth=(KEY, "")) as http:
            alone = (await http.get("/_tether/verdict")).json()["headline"]
            await http.get("/payments/v1/charges/ch_1")
            before = (await http.get("/_tether/verdict")).json()["headline"]
            await http.post("/payments/v1/refunds", data={"charge": "ch_1", "amount": 100})
            after = (await http.get("/_tether/verdict")).json()["headline"]
            return [alone, before, after]

    assert asyncio.run(main()) == ["INCONCLUSIVE", "NOT DONE", "PASS"]


def test_serving_without_the_extra_names_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without starlette the ASGI app is a UsageError naming pip install 'tether[serve]'."""
    import importlib

    from tether.errors import UsageError

    monkeypatch.setitem(sys.modules, "starlette.applications", None)
    monkeypatch.delitem(sys.modules, "tether.sim.wire.asgi", raising=False)
    with pytest.raises(UsageError, match=r"pip install 'tether\[serve\]'"):
        importlib.import_module("tether.sim.wire.asgi")


def test_a_crash_fault_cannot_reach_a_served_agent() -> None:
    """A crash fault is named among the reasons a served verdict is inconclusive."""
    from tether.sim.wire.verdict import judge

    env = _asgi_env([{"kind": "crash", "target": "payments.create_refund"}])
    result = judge(env)
    assert result.headline == "INCONCLUSIVE"
    assert any("a crash cannot stop an agent in another process" in why
               for why in result.inconclusive)


# -- MCP on the served world -----------------------------------------------------------------


def test_the_official_mcp_client_reaches_the_served_world(tmp_path: Path) -> None:
    """At the printed /mcp address the official MCP client (streamable HTTP) lists the world's
    tools and refunds; the timeout after commit is a 504 tool error, the keyed retry replays,
    the served verdict is PASS, and the refund's webhooks reach the agent's receiver."""
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    async def session(url: str) -> list[Any]:
        async with Client(streamable_http_client(url)) as client:
            names = {tool.name for tool in (await client.list_tools()).tools}
            assert "payments_create_refund" in names
            arguments = {"charge": "ch_1", "amount": 1000, "idempotency_key": "mcp-1"}
            return [await client.call_tool("payments_create_refund", arguments)
                    for _ in range(2)]

    with serve(tmp_path, _scenario([DROP_AFTER])) as served, receiver() as (hook, got):
        secret = httpx.post(f"{served.urls['payments']}/v1/webhook_endpoints", auth=(KEY, ""),
                            data={"url": hook, "enabled_events[]": "*"}).json()["secret"]
        lost, replayed = asyncio.run(asyncio.wait_for(session(served.urls["mcp"]), 60))
        assert lost.is_error and lost.structured_content["error"]["status"] == 504
        assert not replayed.is_error
        verdict = httpx.get(served.urls["verdict"]).json()
        assert [e.type for e in _events(got, 2, secret)] == \
            ["refund.created", "charge.refunded"]
    assert verdict["headline"] == "PASS" and len(verdict["ledger"]) == 1


def test_serve_stdio_gives_the_mcp_tools_on_stdin_and_stdout(tmp_path: Path) -> None:
    """`tether sim serve --stdio` serves the MCP tools over stdio to the official client."""
    from mcp import Client, StdioServerParameters

    path = tmp_path / "stdio.yaml"
    path.write_text(yaml.safe_dump(_scenario([])), encoding="utf-8")
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "tether.cli", "sim", "serve", str(path), "--stdio"],
        cwd=str(ROOT))

    async def session() -> Any:
        async with Client(params) as client:
            return await client.call_tool("payments_get_charge", {"id": "ch_1"})

    charge = asyncio.run(asyncio.wait_for(session(), 60))
    assert not charge.is_error and charge.structured_content["amount"] == 5000


def test_advancing_the_clock_retries_a_failed_webhook() -> None:
    """Time passing is a delivery round: a webhook that got a 500 is delivered again after
    POST /_tether/clock/advance, with no further request from the agent."""
    from tether.sim.wire.asgi import asgi_app

    env = _asgi_env()
    answers = [500]
    seen: list[str] = []

    def inbox(body: bytes, headers: dict[str, str]) -> int:
        seen.append(json.loads(body)["id"])
        return answers.pop(0) if answers else 200

    env.webhooks.receive("https://agent.example/hooks", inbox)

    async def main() -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi_app(env)),
                                     base_url="http://127.0.0.1", auth=(KEY, "")) as http:
            await http.post("/payments/v1/webhook_endpoints", data={
                "url": "https://agent.example/hooks", "enabled_events[]": "refund.created"})
            await http.post("/payments/v1/refunds", data={"charge": "ch_1", "amount": 100})
            assert seen == ["evt_0001"]
            await http.post("/_tether/clock/advance", json={"seconds": 60})

    asyncio.run(main())
    assert seen == ["evt_0001", "evt_0001"]
    assert [a.outcome for a in env.webhooks.attempts] == ["retrying", "delivered"]


def test_serve_refuses_bad_input_with_exit_2(tmp_path: Path) -> None:
    """A scenario that does not load, or a port already taken, is bad input (exit 2) naming
    the problem; nothing is served."""
    missing = _tether("sim", "serve", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "nope.yaml" in missing.stderr
    path = tmp_path / "ok.yaml"
    path.write_text(yaml.safe_dump(_scenario([])), encoding="utf-8")
    with ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler) as taken:
        port = taken.server_address[1]
        busy = _tether("sim", "serve", str(path), "--port", str(port))
    assert busy.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in busy.stderr


def broken_check(facts: Any) -> str | None:
    """A python invariant that cannot judge."""
    raise RuntimeError("the check's own bug")


def test_a_check_that_cannot_judge_gives_no_verdict() -> None:
    """A python invariant that raises makes the verdict endpoint answer 500 with the reason,
    never a verdict (tether sim verdict then exits 2 with it)."""
    from tether.sim import scenario_from_dict
    from tether.sim.episode import environment_for
    from tether.sim.wire.asgi import asgi_app

    scenario = _scenario([], invariants=[
        {"python": {"function": "tests.sim.wire.test_serve:broken_check"}}])
    env = environment_for(scenario_from_dict(scenario), 0)

    async def main() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi_app(env)),
                                     base_url="http://127.0.0.1") as http:
            return await http.get("/_tether/verdict")

    answer = asyncio.run(main())
    assert answer.status_code == 500
    assert "the check's own bug" in answer.json()["error"]["message"]


def test_two_sessions_of_one_seed_given_the_same_requests_are_the_same(tmp_path: Path) -> None:
    """What determinism means served: the seed's world, secrets and fault draws (here a 50 %
    drop) are the same in two processes, so the same requests in the same order give the
    same ledger, byte for byte; only the agent's own timing is not the seed's."""
    coin = {"kind": "timeout_after", "target": "payments.create_refund", "probability": 0.5}
    seen = []
    for _ in range(2):
        with serve(tmp_path, _scenario([coin]), seed=9) as served:
            with httpx.Client(base_url=served.urls["payments"], auth=(KEY, "")) as http:
                secret = http.post("/v1/webhook_endpoints", data={
                    "url": "http://127.0.0.1:9/nowhere", "enabled_events[]": "*"}
                ).json()["secret"]
                outcomes = []
                for amount in (100, 200, 300, 400, 500, 600):
                    try:
                        outcomes.append(http.post("/v1/refunds", data={
                            "charge": "ch_1", "amount": amount}).status_code)
                    except httpx.RemoteProtocolError:
                        outcomes.append(0)
            ledger = httpx.get(f"{served.root}/_tether/ledger").json()
            seen.append((secret, outcomes, ledger["digest"]))
    assert seen[0] == seen[1]
    assert 0 in seen[0][1] and 200 in seen[0][1]  # the seed drops some and not others


def test_without_the_abort_a_drop_is_a_broken_body_the_sdk_does_not_retry() -> None:
    """Under a server that cannot abort a connection (plain uvicorn h11 here) the drop is a
    started response whose body never comes: requests raises ChunkedEncodingError and the
    stripe SDK calls it not retryable — why tether sim serve aborts the connection instead."""
    import socket
    import time

    import uvicorn

    from tether.sim.wire.asgi import asgi_app

    env = _asgi_env([{**DROP_AFTER, "on_call": [1, 2]}])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    base = f"http://127.0.0.1:{sock.getsockname()[1]}/payments"
    server = uvicorn.Server(uvicorn.Config(asgi_app(env), http="h11", log_level="critical",
                                           lifespan="off"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])),
                              daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.01)  # allow-wallclock: waiting for a real server thread to start
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            requests.post(f"{base}/v1/refunds", auth=(KEY, ""),
                          data={"charge": "ch_1", "amount": 1})
        with pytest.raises(stripe.APIConnectionError) as dropped:
            stripe.StripeClient(KEY, base_addresses={"api": base}).v1.refunds.create(
                params={"charge": "ch_1", "amount": 1})
        assert not dropped.value.should_retry
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert len(env.world.ledger) == 2  # both writes applied before their drops


def test_serve_stdio_keeps_stdout_for_mcp_and_judges_on_stderr(tmp_path: Path) -> None:
    """When stdin closes, `serve --stdio` prints the verdict on stderr (stdout is the MCP
    channel and stays clean) and exits with its status (INCONCLUSIVE, 3: no agent called)."""
    path = tmp_path / "stdio.yaml"
    path.write_text(yaml.safe_dump(_scenario([])), encoding="utf-8")
    ended = subprocess.run([sys.executable, "-m", "tether.cli", "sim", "serve", str(path),
                            "--stdio"], cwd=ROOT, stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=60)
    assert (ended.returncode, ended.stdout) == (3, "")
    assert ended.stderr.startswith("INCONCLUSIVE  served-refund")


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.5.5.5", True), ("::1", True), ("[::1]", True),
    ("localhost", True), ("0.0.0.0", False), ("::", False), ("192.168.1.20", False),
    ("sim.example.com", False),
])
def test_only_loopback_hosts_serve_without_the_warning(host: str, loopback: bool) -> None:
    """The banner warns for any bind address other machines could reach (names included)."""
    from tether.sim.wire.serve import is_loopback

    assert is_loopback(host) is loopback


def test_concurrent_clients_are_answered_on_the_servers_one_event_loop(tmp_path: Path) -> None:
    """Clients in several threads at once (httpx over HTTP and the official MCP client) reach
    a world served by uvicorn as `tether sim serve` serves it: every operation runs on the
    server's one event-loop thread (the gateway and services are not thread-safe), and the
    ledger has each refund once."""
    import uvicorn
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    from tether.sim.wire.asgi import asgi_app, dropping_protocol
    from tether.sim.wire.serve import listen, root_of

    env = _asgi_env()
    ran_on: set[int] = set()
    invoke = env.gateway.invoke_async

    async def recording(*args: Any, **kwargs: Any) -> Any:
        ran_on.add(threading.get_ident())
        return await invoke(*args, **kwargs)

    env.gateway.invoke_async = recording
    sock = listen("127.0.0.1", 0)
    root = env.gateway.root = root_of(sock)
    server = uvicorn.Server(uvicorn.Config(asgi_app(env), http=dropping_protocol(),
                                           lifespan="on", log_level="warning"))
    serving = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])),
                               daemon=True)
    serving.start()

    def refund(amount: int) -> int:
        with httpx.Client(base_url=f"{root}/payments", auth=(KEY, "")) as http:
            return http.post("/v1/refunds", data={"charge": "ch_1", "amount": amount},
                             headers={"Idempotency-Key": f"k-{amount}"}).status_code

    async def by_mcp() -> None:
        async with Client(streamable_http_client(f"{root}/mcp")) as client:
            await client.call_tool("payments_get_charge", {"id": "ch_1"})

    try:
        while not server.started:
            threading.Event().wait(0.01)
        threads = [threading.Thread(target=lambda a=a: statuses.append(refund(a)))
                   for a in range(1, 9) for _ in range(2)]
        statuses: list[int] = []
        for thread in threads:
            thread.start()
        asyncio.run(by_mcp())
        for thread in threads:
            thread.join(timeout=30)
    finally:
        server.should_exit = True
        serving.join(timeout=30)
    assert statuses == [200] * 16
    assert len(ran_on) == 1 and threading.get_ident() not in ran_on
    assert sorted(e.data["amount"] for e in env.world.ledger) == list(range(1, 9))
    assert [c.target for c in env.calls].count("payments.get_charge") == 1  # the MCP call
