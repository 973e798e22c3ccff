"""The served world's verdict says INCONCLUSIVE when it has no agent to judge (no request
reached an operation) or when none of the scenario's faults fired, never PASS, NOT DONE or a
FAIL about the seed's own world; `tether sim verdict --url` turns every address that is not a
served world (a malformed URL, a server that speaks something else) into exit 2 with the
reason, never a traceback; a --host that is no address is named as such."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from tether.cli import app
from tether.sim import scenario_from_dict
from tether.sim.environment import Environment
from tether.sim.episode import environment_for
from tether.sim.wire.verdict import judge

KEY = "sk_test_verdict"
WORLD = {"payments": {
    "customers": [{"id": "cus_1", "email": "ann@example.com", "name": "Ann"}],
    "charges": [{"id": "ch_1", "customer": "cus_1", "amount": 5000}]},
    "crm": {"customers": [{"id": "cus_1", "name": "Ann", "email": "ann@example.com"}],
            "tickets": [{"id": "T-1", "customer": "cus_1", "subject": "x", "status": "open"}]}}
DROP_AFTER = {"kind": "timeout_after", "target": "payments.create_refund", "on_call": [1]}


def _env(faults: list[dict[str, Any]], **extra: Any) -> Environment:
    scenario = {"name": "verdict", "agent": "tests.sim.own_agents.credit:agent",
                "task": "Refund 10.00 of charge ch_1 once.", "world": WORLD, "faults": faults,
                "invariants": [{"at_most": {"effect": "payments.refund", "n": 1}}],
                "success": [{"final_state": {"service": "crm", "path": "tickets.T-1.status",
                                             "equals": "open"}}], **extra}
    return environment_for(scenario_from_dict(scenario), 0)


def _read_charge(env: Environment) -> int:
    with env.httpx_client(auth=(KEY, "")) as http:
        return http.get("/payments/v1/charges/ch_1").status_code


def test_a_world_no_request_reached_is_inconclusive_not_a_pass() -> None:
    """A success check the seed's world already meets, with no request from any agent: the
    verdict is INCONCLUSIVE (nothing was judged), never PASS."""
    result = judge(_env([]))
    assert result.headline == "INCONCLUSIVE"
    assert any("no request reached" in why for why in result.inconclusive)


def test_an_invariant_the_seed_breaks_is_no_fail_when_no_agent_came() -> None:
    """An invariant the seed's world breaks before any request (a listed refund missing) says
    nothing about an agent that never called: INCONCLUSIVE with the violation in the reason,
    not FAIL."""
    env = _env([], invariants=[{"exactly_once": {"effect": "payments.refund",
                                                 "keys": ["refund:ch_1"]}}])
    result = judge(env)
    assert result.headline == "INCONCLUSIVE"
    assert any("0 × refund:ch_1" in why for why in result.inconclusive)


def test_an_agent_that_called_is_judged_as_before() -> None:
    """Once an operation was called, the verdict is the ledger's (here the task check holds:
    PASS)."""
    env = _env([])
    assert _read_charge(env) == 200
    result = judge(env)
    assert (result.headline, result.inconclusive) == ("PASS", [])


def test_a_session_whose_faults_never_fired_is_inconclusive() -> None:
    """The scenario's wire fault targets a refund the agent never asked for: the session did
    not test the agent against it, so the verdict is INCONCLUSIVE naming it; once it fired,
    the verdict is the ledger's."""
    env = _env([DROP_AFTER])
    assert _read_charge(env) == 200
    result = judge(env)
    assert result.headline == "INCONCLUSIVE"
    assert any("none of the scenario's faults fired (timeout_after@payments.create_refund)"
               in why for why in result.inconclusive)
    with env.httpx_client(auth=(KEY, "")) as http, pytest.raises(httpx.ReadTimeout):
        http.post("/payments/v1/refunds", data={"charge": "ch_1", "amount": 100})
    assert judge(env).headline == "PASS"


def test_a_violation_stays_a_fail_though_no_fault_fired() -> None:
    """Two refunds break the invariant whatever the faults did: FAIL, not INCONCLUSIVE."""
    env = _env([{**DROP_AFTER, "on_call": [9]}])
    with env.httpx_client(auth=(KEY, "")) as http:
        for _ in range(2):
            http.post("/payments/v1/refunds", data={"charge": "ch_1", "amount": 100})
    assert judge(env).headline == "FAIL"


# -- tether sim verdict --url on what is not a served world -----------------------------------


@contextmanager
def _speaking(reply: bytes) -> Iterator[str]:
    """A TCP server on 127.0.0.1 that answers every connection with ``reply`` and closes."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(reply)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        server.close()


_DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize("reply", [
    b"SSH-2.0-OpenSSH_9.6\r\n",                                      # not HTTP at all
    b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"a\"",          # a body cut short
    b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(_DEEP), _DEEP),  # too deep
    b"HTTP/1.1 404 Not Found\r\nContent-Length: %d\r\n\r\n%s" % (len(_DEEP), _DEEP),
])
def test_verdict_of_a_server_that_is_not_a_served_world_exits_2(reply: bytes) -> None:
    """A server that does not speak HTTP, or breaks off its answer, is bad input (exit 2)
    with the reason, not a traceback."""
    with _speaking(reply) as url:
        answer = CliRunner().invoke(app, ["sim", "verdict", "--url", url])
    assert answer.exit_code == 2, answer.output
    assert answer.exception is None or isinstance(answer.exception, SystemExit)
    assert "error:" in answer.output and url in answer.output


@pytest.mark.parametrize("url", ["http://[::1", "http://127.0.0.1:abc", "http://127.0.0.1:99999",
                                 "http://127.0.0.1:8765:1"])
def test_a_malformed_url_exits_2_naming_it(url: str) -> None:
    """A URL that cannot be an address (an open bracket, a port that is not a port) is bad
    input (exit 2) naming it, never a traceback."""
    answer = CliRunner().invoke(app, ["sim", "verdict", "--url", url])
    assert answer.exit_code == 2, answer.output
    assert answer.exception is None or isinstance(answer.exception, SystemExit)
    assert "--url" in answer.output and "expected" in answer.output


def test_an_effect_the_served_world_cannot_see_approved_is_inconclusive() -> None:
    """The served world has no way to ask for or grant an approval, so a refund under
    never_without_approval cannot be judged: INCONCLUSIVE naming it, not a FAIL every agent
    that does its task would get."""
    env = _env([], invariants=[{"never_without_approval": {"effect": "payments.refund"}}])
    with env.httpx_client(auth=(KEY, "")) as http:
        assert http.post("/payments/v1/refunds",
                         data={"charge": "ch_1", "amount": 100}).status_code == 200
    result = judge(env)
    assert result.headline == "INCONCLUSIVE"
    assert any("never_without_approval" in why and "approval" in why
               for why in result.inconclusive)


def test_a_service_url_given_for_the_server_says_which_url_to_give() -> None:
    """A --url below a service (the payments base URL serve also printed) meets that service's
    refusal; the error says to give the root or the verdict URL instead."""
    said = b'{"error": {"message": "You did not provide an API key."}}'
    refusal = (b"HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n%s" % (len(said), said))
    with _speaking(refusal) as url:
        answer = CliRunner().invoke(app, ["sim", "verdict", "--url", f"{url}/payments"])
    assert answer.exit_code == 2, answer.output
    assert "HTTP 401: You did not provide an API key." in answer.output
    assert "verdict URL" in answer.output


@pytest.mark.parametrize("host", ["nonexistent.invalid", "127.0.0.1:80"])
def test_a_host_that_is_no_address_names_the_host_not_the_port(host: str) -> None:
    """A --host that does not resolve is bad input naming --host (not advice to pick another
    port)."""
    from tether.errors import UsageError
    from tether.sim.wire.serve import listen

    with pytest.raises(UsageError, match=r"--host") as refused:
        listen(host, 0)
    assert "--port" not in str(refused.value)
