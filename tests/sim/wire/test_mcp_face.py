"""The world's operations as MCP tools, driven with the official MCP client: the listing
(names, input and output schemas, hints), reads and writes reaching the ledger and recorded as
service calls, and every wire fault as an MCP client meets it — in-process and over streamable
HTTP."""

from __future__ import annotations

import asyncio
import importlib
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolRequest, CallToolRequestParams, CallToolResult

from tether.errors import Crash, UsageError
from tether.sim import Environment, scenario_from_dict
from tether.sim.episode import environment_for
from tether.sim.scenario import SERVICES
from tether.sim.wire.mcp_face import READ_OPERATIONS, mcp_asgi_app, mcp_server

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[3]


def _env(faults: list[dict[str, Any]] | None = None, seed: int = 0) -> Environment:
    scenario = scenario_from_dict({
        "name": "mcp", "agent": "tests.sim.own_agents.credit:agent", "task": "t",
        "world": {
            "payments": {
                "customers": [{"id": "cus_1", "email": "ann@example.com", "name": "Ann"}],
                "charges": [{"id": "ch_1", "customer": "cus_1", "amount": 5_000}]},
            "crm": {"customers": [{"id": "cus_1", "email": "ann@example.com",
                                   "name": "Ann"}]}},
        "faults": faults or []})
    return environment_for(scenario, seed)


def _with_client(env: Environment, body: Callable[[Client], Awaitable[T]]) -> T:
    async def run() -> T:
        async with Client(mcp_server(env)) as client:
            return await body(client)

    return asyncio.run(run())


def _call(env: Environment, name: str, arguments: dict[str, Any]) -> CallToolResult:
    return _with_client(env, lambda client: client.call_tool(name, arguments))


def _refunds(env: Environment) -> list[Any]:
    return env.world.ledger.of("payments", "refund")


def test_every_operation_of_every_service_is_a_tool() -> None:
    """The listing names one tool per operation of each service, ``service_operation``, and
    leaves out the simulated user."""
    env = _env()
    listed = _with_client(env, lambda client: client.list_tools())
    expected = {f"{service}_{operation}" for service in SERVICES if service in env.world.services
                for operation in type(env.world.services[service]).OPERATIONS}
    assert {t.name for t in listed.tools} == expected
    assert not any(t.name.startswith("user_") for t in listed.tools)


def test_schemas_and_hints_follow_the_operations() -> None:
    """Input schemas come from the signatures (required and optional arguments, the key);
    output schemas from the models (a list wrapped as ``result``); reads are read-only, and
    no write claims to be idempotent — a keyed write repeated *without* its optional key
    applies again — while its key argument says what the key is for."""
    tools = {t.name: t for t in _with_client(_env(), lambda c: c.list_tools()).tools}
    refund = tools["payments_create_refund"]
    assert refund.input_schema["required"] == ["charge"]
    assert {"amount", "reason", "metadata", "idempotency_key"} <= \
        set(refund.input_schema["properties"])
    assert refund.annotations is not None
    assert refund.annotations.read_only_hint is False
    assert refund.annotations.idempotent_hint is False
    assert "same key" in refund.input_schema["properties"]["idempotency_key"]["description"]
    charge = tools["payments_get_charge"]
    assert charge.annotations is not None and charge.annotations.read_only_hint is True
    assert charge.output_schema is not None
    assert {"id", "amount", "refunded"} <= set(charge.output_schema["required"] +
                                               list(charge.output_schema["properties"]))
    listing = tools["payments_list_charges"].output_schema
    assert listing is not None and listing["required"] == ["result"]
    note = tools["crm_add_note"].annotations
    assert note is not None and note.read_only_hint is False and note.idempotent_hint is False


def test_only_known_reads_are_marked_read_only() -> None:
    """A tool is read-only exactly when its operation is a known read: an operation a service
    gains later is never advertised as safe to repeat."""
    tools = _with_client(_env(), lambda client: client.list_tools()).tools
    for tool in tools:
        service, _, operation = tool.name.partition("_")
        assert tool.annotations is not None
        assert tool.annotations.read_only_hint is \
            (operation in READ_OPERATIONS.get(service, frozenset())), tool.name


def test_reads_answer_content_that_matches_their_output_schema() -> None:
    """Fault-free answers of reads (an object, a list) pass the official client's check
    against the advertised output schema, computed fields included."""
    env = _env()

    async def reads(client: Client) -> list[CallToolResult]:
        return [await client.call_tool("payments_get_charge", {"id": "ch_1"}),
                await client.call_tool("payments_list_charges", {"customer": "cus_1"}),
                await client.call_tool("payments_get_customer", {"id": "cus_1"}),
                await client.call_tool("crm_get_customer", {"id": "cus_1"})]

    charge, charges, customer, crm = _with_client(env, reads)
    assert not any(r.is_error for r in (charge, charges, customer, crm))
    assert charge.structured_content is not None
    assert charge.structured_content["refunded"] is False
    assert charges.structured_content is not None
    assert [c["id"] for c in charges.structured_content["result"]] == ["ch_1"]
    assert customer.structured_content is not None
    assert customer.structured_content["email"] == "ann@example.com"


def test_a_write_reaches_the_ledger_and_is_recorded_as_a_service_call() -> None:
    """A refund made through MCP is one ledger effect and one keyed ServiceCall on target
    ``payments.create_refund``."""
    env = _env()
    result = _call(env, "payments_create_refund",
                   {"charge": "ch_1", "amount": 700, "idempotency_key": "k1"})
    assert not result.is_error and result.structured_content is not None
    assert result.structured_content["amount"] == 700
    assert [(e.data["amount"], e.data["idempotency_key"]) for e in _refunds(env)] == \
        [(700, "k1")]
    assert [(c.target, c.keyed, c.args) for c in env.calls] == \
        [("payments.create_refund", True,
          {"charge": "ch_1", "amount": 700, "idempotency_key": "k1"})]


def test_a_refusal_is_an_error_result_in_the_services_own_shape() -> None:
    """A service error is a tool error result carrying the service's error JSON and status:
    Stripe's for payments, the service's fields for the CRM."""
    env = _env()

    async def calls(client: Client) -> list[CallToolResult]:
        return [await client.call_tool("payments_get_charge", {"id": "ch_404"}),
                await client.call_tool("crm_get_ticket", {"id": "t_404"})]

    stripe, crm = _with_client(env, calls)
    assert stripe.is_error and crm.is_error
    assert stripe.structured_content == {"error": {
        "type": "invalid_request_error", "code": "resource_missing", "param": "id",
        "message": "No such charge: 'ch_404'", "status": 404, "retryable": False}}
    assert crm.structured_content is not None
    assert crm.structured_content["error"]["status"] == 404
    assert crm.structured_content["error"]["type"] == "not_found"
    assert crm.structured_content["error"]["resource_id"] == "t_404"


@pytest.mark.parametrize(("status", "retry_after_s"), [(503, None), (429, 2.0)])
def test_an_injected_status_is_an_error_result_and_applies_nothing(
        status: int, retry_after_s: float | None) -> None:
    """An injected 5xx or 429 is an error result with the status (and the retry delay of a
    429); the refund is not applied."""
    fault: dict[str, Any] = {"kind": "error", "status": status,
                             "target": "payments.create_refund"}
    if retry_after_s is not None:
        fault["retry_after_s"] = retry_after_s
    env = _env([fault])
    result = _call(env, "payments_create_refund", {"charge": "ch_1", "idempotency_key": "k"})
    assert result.is_error and result.structured_content is not None
    error = result.structured_content["error"]
    assert (error["status"], error["retry_after_s"]) == (status, retry_after_s)
    assert _refunds(env) == []


def test_a_timeout_after_commit_applies_the_write_and_errors_with_504() -> None:
    """Under ``timeout_after`` the refund is applied but the call is a 504 error result whose
    outcome is unknown; the same call with the same key replays it: one refund in all."""
    env = _env([{"kind": "timeout_after", "target": "payments.create_refund",
                 "on_call": [1]}])

    async def twice(client: Client) -> list[CallToolResult]:
        arguments = {"charge": "ch_1", "amount": 700, "idempotency_key": "k1"}
        return [await client.call_tool("payments_create_refund", arguments),
                await client.call_tool("payments_create_refund", arguments)]

    lost, replay = _with_client(env, twice)
    assert lost.is_error and lost.structured_content is not None
    assert lost.structured_content["error"]["status"] == 504
    assert lost.structured_content["error"]["code"] == "response_lost"
    assert not replay.is_error and replay.structured_content is not None
    assert replay.structured_content["idempotent_replayed"] is True
    assert len(_refunds(env)) == 1


def test_a_request_while_its_key_is_in_flight_is_a_retryable_409() -> None:
    """Two concurrent calls with one key under latency: the first holds the key while it
    waits on the virtual clock, the second is the service's retryable 409; one refund."""
    env = _env([{"kind": "latency", "target": "payments.create_refund", "latency_s": 5.0,
                 "on_call": [1]}])
    arguments = {"charge": "ch_1", "amount": 100, "idempotency_key": "k-same"}

    async def both(client: Client) -> list[CallToolResult]:
        return list(await asyncio.gather(
            client.call_tool("payments_create_refund", arguments),
            client.call_tool("payments_create_refund", arguments)))

    first, second = _with_client(env, both)
    assert not first.is_error
    assert second.is_error and second.structured_content is not None
    error = second.structured_content["error"]
    assert (error["status"], error["code"], error["retryable"]) == \
        (409, "idempotency_key_in_use", True)
    assert len(_refunds(env)) == 1


def test_a_timeout_before_delivery_is_a_408_and_applies_nothing() -> None:
    """Under ``timeout_before`` the call is a 408 error result saying nothing was applied."""
    env = _env([{"kind": "timeout_before", "target": "payments.create_refund"}])
    result = _call(env, "payments_create_refund", {"charge": "ch_1"})
    assert result.is_error and result.structured_content is not None
    assert result.structured_content["error"]["status"] == 408
    assert _refunds(env) == []


def test_expired_credentials_are_a_401_error_result() -> None:
    """Under ``auth_expiry`` the call is a 401 error result."""
    env = _env([{"kind": "auth_expiry", "target": "payments.get_charge"}])
    result = _call(env, "payments_get_charge", {"id": "ch_1"})
    assert result.is_error and result.structured_content is not None
    assert result.structured_content["error"]["status"] == 401


def test_schema_drift_breaks_the_output_schema_and_the_official_client_refuses_it() -> None:
    """A drifted answer reaches the client as it is: the official client refuses it against
    the advertised schema, and the raw result shows the renamed field."""
    env = _env([{"kind": "schema_drift", "target": "payments.get_charge",
                 "rename": {"amount": "amount_cents"}}])

    async def drifted(client: Client) -> CallToolResult:
        with pytest.raises(RuntimeError, match="Invalid structured content"):
            await client.call_tool("payments_get_charge", {"id": "ch_1"})
        request = CallToolRequest(params=CallToolRequestParams(
            name="payments_get_charge", arguments={"id": "ch_1"}))
        result: CallToolResult = await client.session.send_request(request, CallToolResult)
        return result

    raw = _with_client(env, drifted)
    assert raw.structured_content is not None
    assert raw.structured_content["amount_cents"] == 5_000
    assert "amount" not in raw.structured_content


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def test_a_crash_fault_reaches_the_in_process_caller() -> None:
    """A simulated worker crash propagates out of an in-process call as ``Crash`` (also out of
    the connection's task group), after the write it follows was applied."""
    env = _env([{"kind": "crash", "target": "payments.create_refund", "point": "after"}])
    with pytest.raises(BaseException) as caught:
        _call(env, "payments_create_refund", {"charge": "ch_1"})
    assert _leaves(caught.value)
    assert all(isinstance(leaf, Crash) for leaf in _leaves(caught.value))
    assert len(_refunds(env)) == 1


def test_faults_count_mcp_calls_with_the_other_clients() -> None:
    """An MCP call and an ``env.client`` call of one target share the fault counter: a fault
    on the second call fires on the MCP call that comes second."""
    env = _env([{"kind": "error", "status": 503, "target": "payments.get_charge",
                 "on_call": [2]}])
    async def first() -> Any:
        return await env.client("payments").get_charge("ch_1")

    asyncio.run(first())
    result = _call(env, "payments_get_charge", {"id": "ch_1"})
    assert result.is_error and result.structured_content is not None
    assert result.structured_content["error"]["status"] == 503


def test_arguments_the_operation_refuses_are_a_400_error_result() -> None:
    """Arguments the input schema admits but the operation refuses (an empty memory subject)
    are a 400 error result in the error shape, not a failure of the server."""
    result = _call(_env(), "memory_recall", {"subject": ""})
    assert result.is_error and result.structured_content is not None
    assert result.structured_content["error"]["status"] == 400
    assert "non-empty" in result.structured_content["error"]["message"]


def _values(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values of the JSON Schema subset the tools' input schemas use (ids of the seeded
    world among them, so calls reach existing objects too)."""
    if "anyOf" in schema:
        return st.one_of([_values(s) for s in schema["anyOf"]])
    kind = schema.get("type")
    if kind == "string":
        if schema.get("format") == "date-time":
            return st.datetimes().map(lambda d: d.isoformat())
        return st.one_of(st.sampled_from(["ch_1", "cus_1", "ann@example.com", ""]),
                         st.text(max_size=6))
    if kind == "integer":
        return st.integers(min_value=-5, max_value=10_000)
    if kind == "number":
        return st.floats(allow_nan=False, allow_infinity=False, width=32)
    if kind == "boolean":
        return st.booleans()
    if kind == "array":
        return st.lists(_values(schema.get("items", {"type": "string"})), max_size=3)
    if kind == "object":
        properties = schema.get("properties")
        if properties is None:
            items = schema.get("additionalProperties", {"type": "string"})
            return st.dictionaries(st.text(max_size=4), _values(items), max_size=2)
        required = set(schema.get("required", []))
        return st.fixed_dictionaries(
            {k: _values(v) for k, v in properties.items() if k in required},
            optional={k: _values(v) for k, v in properties.items() if k not in required})
    return st.none()


_LISTED = _with_client(_env(), lambda client: client.list_tools()).tools
_CALLS = st.sampled_from(_LISTED).flatmap(
    lambda tool: _values(tool.input_schema).map(lambda arguments: (tool.name, arguments)))


@settings(max_examples=25, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_CALLS, min_size=1, max_size=6))
def test_any_call_the_schema_admits_is_answered_in_shape(
        calls: list[tuple[str, dict[str, Any]]]) -> None:
    """Whatever arguments a tool's input schema admits, the answer is a result matching the
    output schema (the official client checks it) or an error result carrying the error's
    status and message — never a server failure without either; and a tool advertised as
    read-only records no effect."""
    env = _env()
    read_only = {t.name for t in _LISTED if t.annotations and t.annotations.read_only_hint}

    async def run(client: Client) -> list[CallToolResult]:
        results = []
        for name, arguments in calls:
            before = len(env.world.ledger)
            results.append(await client.call_tool(name, arguments))
            if name in read_only:
                assert len(env.world.ledger) == before, (name, arguments)
        return results

    for (name, arguments), result in zip(calls, _with_client(env, run), strict=True):
        if result.is_error:
            assert result.structured_content is not None, (name, arguments, result.content)
            error = result.structured_content["error"]
            assert 400 <= error["status"] <= 599 and error["message"], (name, arguments)


def test_an_unknown_service_is_refused() -> None:
    """Asking for a service the world does not have names what it has."""
    with pytest.raises(UsageError, match="no simulated service 'bank'"):
        mcp_server(_env(), services=["bank"])


async def _over_http(env: Environment, calls: list[tuple[str, dict[str, Any]]],
                     ) -> tuple[int, list[CallToolResult]]:
    """The official client over streamable HTTP to the ASGI app (in-process): the number of
    tools listed, and the results of ``calls`` in order."""
    app = mcp_asgi_app(env)
    async with app.router.lifespan_context(app):
        http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app),
                                  base_url="http://127.0.0.1:8000")
        url = "http://127.0.0.1:8000/mcp"
        async with Client(streamable_http_client(url, http_client=http)) as client:
            listed = await client.list_tools()
            return len(listed.tools), [await client.call_tool(n, a) for n, a in calls]


def test_streamable_http_serves_the_same_tools_and_faults() -> None:
    """Over streamable HTTP (the ASGI app, in-process), the official client lists the tools
    and meets the timeout after commit; the write is in the ledger once."""
    env = _env([{"kind": "timeout_after", "target": "payments.create_refund",
                 "on_call": [1]}])
    arguments = {"charge": "ch_1", "idempotency_key": "k9"}
    count, (lost, replay) = asyncio.run(asyncio.wait_for(_over_http(env, [
        ("payments_create_refund", arguments), ("payments_create_refund", arguments)]), 60))
    assert count > 20
    assert lost.is_error and lost.structured_content is not None
    assert lost.structured_content["error"]["status"] == 504
    assert not replay.is_error
    assert len(_refunds(env)) == 1


@pytest.mark.parametrize("path", ["/mcp", "/mcp/"])
def test_the_served_world_answers_mcp_at_its_path_with_or_without_a_slash(path: str) -> None:
    """The world ``tether sim serve`` serves answers the official client at ``/mcp`` and at
    ``/mcp/`` (as many MCP servers are addressed), not with a service's 404."""
    from tether.sim.wire.asgi import asgi_app

    async def listed() -> int:
        app = asgi_app(_env())
        async with app.router.lifespan_context(app):
            http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app),
                                      base_url="http://127.0.0.1:8000", follow_redirects=True)
            url = f"http://127.0.0.1:8000{path}"
            async with Client(streamable_http_client(url, http_client=http)) as client:
                return len((await client.list_tools()).tools)

    assert asyncio.run(asyncio.wait_for(listed(), 60)) > 20


def test_a_crash_over_http_is_a_lost_response_and_the_server_goes_on() -> None:
    """Over HTTP a worker crash cannot reach the agent's process: the call is answered as a
    lost response (504), the write stays applied, and the next call is served."""
    env = _env([{"kind": "crash", "target": "payments.create_refund", "point": "after",
                 "on_call": [1]}])
    _, (crashed, after) = asyncio.run(asyncio.wait_for(_over_http(env, [
        ("payments_create_refund", {"charge": "ch_1", "amount": 100}),
        ("payments_list_refunds", {"charge": "ch_1"})]), 60))
    assert crashed.is_error and crashed.structured_content is not None
    assert crashed.structured_content["error"]["status"] == 504
    assert after.structured_content is not None
    assert [r["amount"] for r in after.structured_content["result"]] == [100]


_STDIO = """
from tether.sim import scenario_from_dict
from tether.sim.episode import environment_for
from tether.sim.wire.mcp_face import run_stdio
run_stdio(environment_for(scenario_from_dict({
    "name": "stdio", "agent": "tests.sim.own_agents.credit:agent", "task": "t",
    "world": {"payments": {"customers": [{"id": "cus_1"}],
                           "charges": [{"id": "ch_1", "customer": "cus_1", "amount": 900}]}},
    "faults": [{"kind": "timeout_after", "target": "payments.create_refund",
                "on_call": [1]}]}), 0))
"""


def test_stdio_serves_the_world_to_the_official_client() -> None:
    """``run_stdio`` serves the world on stdin/stdout: the official client lists the tools,
    meets the timeout after commit, and the world (in the server's process) holds one
    refund after the keyed retry."""
    params = StdioServerParameters(command=sys.executable, args=["-c", _STDIO],
                                   cwd=str(ROOT))

    async def run() -> tuple[int, list[CallToolResult]]:
        async with Client(params) as client:
            listed = await client.list_tools()
            arguments = {"charge": "ch_1", "idempotency_key": "k"}
            results = [await client.call_tool("payments_create_refund", arguments),
                       await client.call_tool("payments_create_refund", arguments),
                       await client.call_tool("payments_list_refunds", {"charge": "ch_1"})]
            return len(listed.tools), results

    count, (lost, replay, refunds) = asyncio.run(asyncio.wait_for(run(), 60))
    assert count > 20
    assert lost.is_error and lost.structured_content is not None
    assert lost.structured_content["error"]["status"] == 504
    assert not replay.is_error
    assert refunds.structured_content is not None
    assert [r["amount"] for r in refunds.structured_content["result"]] == [900]


def test_the_missing_sdk_is_a_usage_error_with_the_install_hint(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the MCP SDK, the MCP face says which extra to install."""
    monkeypatch.setitem(sys.modules, "mcp.server.mcpserver", None)
    monkeypatch.delitem(sys.modules, "tether.sim.wire.mcp_face")
    with pytest.raises(UsageError, match=r"pip install 'tether\[mcp\]'"):
        importlib.import_module("tether.sim.wire.mcp_face")
