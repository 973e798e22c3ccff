"""An MCP server as a toolset of tether tools: every tool has a declared effect class (never
guessed), idempotent tools pass tether's key in the argument the caller names, arguments and
results are checked against the tools' schemas, error results are read by their status, and a
tether Agent on the world's MCP server refunds exactly once under a timeout after commit."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import pytest
from mcp import Client
from mcp.server.mcpserver import MCPServer
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import Field

import tether
from tether.agent.mcp import MCPToolError, mcp_toolset, mcp_toolset_async
from tether.errors import AuthExpired, ToolArgsInvalid, TransientError, UsageError
from tether.models.base import ModelRequest, ModelResponse
from tether.models.scripted import call, reply
from tether.runtime.ambiguity import ErrorOutcome
from tether.runtime.tools import Effect, Tool, ToolContext
from tether.sim import Environment, Scenario, run_episode, scenario_from_dict
from tether.sim.episode import environment_for
from tether.sim.wire.mcp_face import mcp_asgi_app, mcp_server

ROOT = Path(__file__).resolve().parents[2]
REFUND = {"payments_create_refund": "idempotent"}
TAKEN = ["payments_get_charge", "payments_create_refund"]


def _scenario(faults: list[dict[str, Any]] | None = None) -> Scenario:
    return scenario_from_dict({
        "name": "mcp-refund", "agent": "tests.agent.test_mcp_toolset:refund_agent",
        "task": "Please refund 700 cents of ch_1.",
        "world": {"payments": {
            "customers": [{"id": "cus_1", "email": "ann@example.com", "name": "Ann"}],
            "charges": [{"id": "ch_1", "customer": "cus_1", "amount": 5_000}]}},
        "faults": faults or [],
        "invariants": [{"exactly_once": {"effect": "payments.refund"}}],
        "success": [{"exactly_once": {"effect": "payments.refund",
                                      "match": {"charge": "ch_1", "amount": 700}}}]})


def _script(request: ModelRequest) -> ModelResponse:
    done = [m.content for m in request.messages if m.role == "tool"]
    if done:
        return reply(f"done: {done[-1][:200]}")
    return call("payments_create_refund", json.dumps({"charge": "ch_1", "amount": 700}),
                call_id="r1")


def refund_agent(env: Environment) -> tether.Agent:
    """An agent whose only tools are the world's MCP tools, reached in-process."""
    tools = mcp_toolset(mcp_server(env), effects=REFUND, key_arg="idempotency_key", only=TAKEN)
    return tether.Agent(name="mcp_refunds", model=tether.ScriptedModel(_script), tools=tools,
                        instructions="Refund as asked.")


def _tools(**options: Any) -> dict[str, Tool[Any, Any]]:
    server = mcp_server(environment_for(_scenario()))
    return {t.name: t for t in mcp_toolset(server, **options)}


def _handle(tool: Tool[Any, Any], ctx: ToolContext, arguments: dict[str, Any]) -> Any:
    """Run ``tool``'s handler once, as the runtime would call it."""
    async def run() -> Any:
        value = tool.handler(ctx, tool.validate_args(arguments))
        return await value if inspect.isawaitable(value) else value

    return asyncio.run(run())


def _ctx(name: str, key: str = "k-1") -> ToolContext:
    return ToolContext(run_id="r", tool=name, position=1, idempotency_key=key, attempt=1,
                       now=0.0)


# -- declaring effect classes -----------------------------------------------------------------


def test_tools_without_an_effect_class_are_refused_all_named() -> None:
    """Taking every tool with no declarations is refused, naming each tool not marked
    read-only (every write), and none of the reads."""
    with pytest.raises(UsageError) as refused:
        _tools()
    message = str(refused.value)
    for write in ("payments_create_refund", "crm_add_note", "email_send", "kb_publish"):
        assert write in message
    assert "payments_get_charge" not in message
    assert "never guessed" in message


def test_read_only_tools_are_reads_and_declared_effects_are_kept() -> None:
    """A read-only tool becomes a read without a declaration; a declared one keeps its
    effect class."""
    tools = _tools(effects=REFUND, key_arg="idempotency_key", only=TAKEN)
    assert tools["payments_get_charge"].effect is Effect.READ
    assert tools["payments_create_refund"].effect is Effect.IDEMPOTENT


@pytest.mark.parametrize(("options", "needle"), [
    ({"effects": REFUND, "only": TAKEN}, "key_arg= names none"),
    ({"effects": REFUND, "key_arg": "key", "only": TAKEN}, "no argument 'key'"),
    ({"effects": {"crm_add_note": "reconcilable"}, "only": ["crm_add_note"]},
     "reconcile="),
    ({"effects": {"payments_refund": "idempotent"}, "only": TAKEN},
     "'payments_refund', which the server does not offer"),
    ({"effects": {"payments_create_refund": "safe"}, "only": TAKEN}, "'safe'"),
    ({"only": ["payments_nope"]}, "only names 'payments_nope'"),
])
def test_declarations_that_cannot_hold_are_refused(options: dict[str, Any], needle: str) -> None:
    """An idempotent tool without a key argument, a reconcilable one without a lookup, a
    name the server does not offer or an unknown effect class is a UsageError saying so."""
    with pytest.raises(UsageError, match=needle):
        _tools(**options)


def test_the_key_argument_is_hidden_from_the_model() -> None:
    """The model's schema of an idempotent tool has no key argument: tether supplies it."""
    refund = _tools(effects=REFUND, key_arg="idempotency_key", only=TAKEN)[
        "payments_create_refund"]
    parameters = refund.spec().parameters
    assert "idempotency_key" not in parameters["properties"]
    assert parameters["required"] == ["charge"]


def test_arguments_are_checked_against_the_input_schema() -> None:
    """Arguments breaking the tool's input schema are ToolArgsInvalid before anything is
    sent; valid ones pass as given."""
    refund = _tools(effects=REFUND, key_arg="idempotency_key", only=TAKEN)[
        "payments_create_refund"]
    with pytest.raises(ToolArgsInvalid, match="input schema"):
        refund.validate_args({"charge": 5})
    with pytest.raises(ToolArgsInvalid):
        refund.validate_args({"amount": 5})
    assert refund.validate_args({"charge": "ch_1", "amount": 5}).model_dump() == \
        {"charge": "ch_1", "amount": 5}


def test_results_are_checked_against_the_output_schema() -> None:
    """A result breaking the advertised output schema fails the tool's result type (what
    the runtime reads as drift); a conforming one passes."""
    read = _tools(only=["payments_get_charge"])["payments_get_charge"]
    env = environment_for(_scenario())
    charge: dict[str, Any] = asyncio.run(_charge(env))
    assert read.validate_result(charge) == charge
    drifted = {("amount_cents" if k == "amount" else k): v for k, v in charge.items()}
    with pytest.raises(ValueError, match="output schema"):
        read.validate_result(drifted)


async def _charge(env: Environment) -> Any:
    return await env.client("payments").get_charge("ch_1")


def test_the_idempotency_key_reaches_the_server() -> None:
    """A call of an idempotent tool carries tether's key in the named argument; a call
    without a key (a harness that keys nothing) carries none."""
    env = environment_for(_scenario())
    tools = {t.name: t for t in mcp_toolset(mcp_server(env), effects=REFUND,
                                            key_arg="idempotency_key", only=TAKEN)}
    refund = tools["payments_create_refund"]
    _handle(refund, _ctx(refund.name, "refund:ch_1"), {"charge": "ch_1", "amount": 100})
    _handle(refund, _ctx(refund.name, ""), {"charge": "ch_1", "amount": 100})
    assert [(c.keyed, c.args.get("idempotency_key")) for c in env.calls] == \
        [(True, "refund:ch_1"), (False, None)]


# -- error results --------------------------------------------------------------------------


def _failing_server() -> MCPServer:
    server = MCPServer("failing", log_level="WARNING")
    answers: dict[str, Any] = {
        "gone": {"error": {"status": 504, "message": "timed out"}},
        "busy": {"error": {"status": 429, "retry_after_s": 3, "message": "slow down"}},
        "missing": {"error": {"status": 404, "message": "no such thing"}},
        "in_flight": {"error": {"status": 409, "retryable": True, "message": "key in use"}},
        "expired": {"error": {"status": 401, "message": "token expired"}},
        "flat_missing": {"error": "Not Found", "status": 404},
        "flat_busy": {"error": "Too Many Requests", "status_code": 429, "retry_after": 2},
        "plain": None,
    }

    def answer(kind: str) -> CallToolResult:
        body = answers[kind]
        text = json.dumps(body) if body is not None else "something went wrong"
        return CallToolResult(content=[TextContent(type="text", text=text)],
                              structured_content=body, is_error=True)

    server.add_tool(answer, name="read_fail", annotations=ToolAnnotations(read_only_hint=True))
    server.add_tool(answer, name="write_fail")
    return server


def _failure(tool: Tool[Any, Any], kind: str) -> BaseException:
    try:
        _handle(tool, _ctx(tool.name), {"kind": kind})
    except Exception as exc:
        return exc
    raise AssertionError("the call did not fail")


def test_error_results_are_read_by_their_status() -> None:
    """A 5xx result may have been applied (ambiguous), a 429 was not (TransientError with
    its delay), nor a 409 the server says to retry, a 404 is permanent, a 401 is expired
    credentials; a result without a status is ambiguous for a write and permanent for a
    read."""
    tools = {t.name: t for t in mcp_toolset(_failing_server(),
                                            effects={"write_fail": "unsafe"})}
    read, write = tools["read_fail"], tools["write_fail"]
    gone = _failure(write, "gone")
    assert isinstance(gone, MCPToolError) and gone.status == 504
    assert write.outcome_of(gone) is ErrorOutcome.AMBIGUOUS
    busy = _failure(write, "busy")
    assert isinstance(busy, TransientError) and busy.retry_after_s == 3.0
    missing = _failure(write, "missing")
    assert write.outcome_of(missing) is ErrorOutcome.PERMANENT
    assert isinstance(_failure(write, "in_flight"), TransientError)
    assert isinstance(_failure(read, "expired"), AuthExpired)
    assert write.outcome_of(_failure(write, "plain")) is ErrorOutcome.AMBIGUOUS
    assert read.outcome_of(_failure(read, "plain")) is ErrorOutcome.PERMANENT


def test_a_status_beside_an_error_message_is_read_too() -> None:
    """``{"error": "Not Found", "status": 404}``, the shape many servers send, is a 404 (a
    permanent refusal, not a write of unknown outcome), and a 429 beside its message is
    throttling with its delay."""
    tools = {t.name: t for t in mcp_toolset(_failing_server(),
                                            effects={"write_fail": "unsafe"})}
    write = tools["write_fail"]
    missing = _failure(write, "flat_missing")
    assert isinstance(missing, MCPToolError) and missing.status == 404
    assert write.outcome_of(missing) is ErrorOutcome.PERMANENT
    assert "Not Found" in str(missing)
    busy = _failure(write, "flat_busy")
    assert isinstance(busy, TransientError) and busy.retry_after_s == 2.0


def test_a_declared_classifier_is_asked_first() -> None:
    """The caller's ``classify_error`` overrides the reading of an error result."""
    tools = {t.name: t for t in mcp_toolset(
        _failing_server(), effects={"write_fail": "unsafe"},
        classify_error=lambda exc: "transient" if isinstance(exc, MCPToolError) else None)}
    write = tools["write_fail"]
    assert write.outcome_of(_failure(write, "gone")) is ErrorOutcome.TRANSIENT


def test_the_missing_sdk_is_a_usage_error_with_the_install_hint(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the MCP SDK, building a toolset says which extra to install."""
    monkeypatch.setitem(sys.modules, "mcp", None)
    with pytest.raises(UsageError, match=r"pip install 'tether\[mcp\]'"):
        mcp_toolset("http://127.0.0.1:9/mcp", effects=REFUND)


# -- episodes ---------------------------------------------------------------------------------


def _refunds(result: Any) -> list[dict[str, Any]]:
    return [e for e in result.ledger if (e["service"], e["operation"]) == ("payments", "refund")]


TIMEOUT_AFTER = [{"kind": "timeout_after", "target": "payments.create_refund", "on_call": [1]}]


def test_an_agent_on_mcp_tools_refunds_once_under_a_timeout_after_commit() -> None:
    """Under the default harness, the refund whose answer was lost is re-issued with the same
    key through MCP and replayed: one refund in the ledger, the task done; both calls keyed
    and attributed to the tool."""
    result = run_episode(_scenario(TIMEOUT_AFTER), 1, "default", agent=refund_agent)
    assert result.status == "completed" and result.ok and result.done, result.verdicts
    assert [(e["data"]["charge"], e["data"]["amount"]) for e in _refunds(result)] == \
        [("ch_1", 700)]
    assert [(c.tool, c.target, c.keyed) for c in result.calls] == \
        [("payments_create_refund", "payments.create_refund", True)] * 2
    assert [f.kind for f in result.firings] == ["timeout_after"]


def test_a_naive_loop_on_the_same_mcp_tools_refunds_twice() -> None:
    """Under the naive harness (blind retries, no keys) the same agent, named by the
    scenario, refunds twice."""
    result = run_episode(_scenario(TIMEOUT_AFTER), 1, "naive")
    assert result.agent == "tests.agent.test_mcp_toolset:refund_agent"
    assert not result.ok
    assert len(_refunds(result)) == 2
    assert not any(c.keyed for c in result.calls)


def test_a_drifted_answer_to_a_write_is_applied_and_never_repeated() -> None:
    """A refund whose answer breaks the output schema took effect: it is settled as applied
    with an unreadable response, not re-issued nor reported failed."""
    drift = [{"kind": "schema_drift", "target": "payments.create_refund",
              "rename": {"amount": "amount_cents"}}]
    result = run_episode(_scenario(drift), 1, "default", agent=refund_agent)
    assert result.status == "completed", result.reason
    assert len(_refunds(result)) == 1
    assert len(result.calls) == 1
    assert "applied" in result.answer


def test_the_mcp_episode_is_identical_across_processes() -> None:
    """Another process, with its own hash seed, gives the same journal and ledger digests."""
    code = ("from tests.agent.test_mcp_toolset import TIMEOUT_AFTER, _scenario, refund_agent\n"
            "from tether.sim import run_episode\n"
            "r = run_episode(_scenario(TIMEOUT_AFTER), 3, 'default', agent=refund_agent)\n"
            "print(r.journal_digest, r.ledger_digest)\n")
    here = run_episode(_scenario(TIMEOUT_AFTER), 3, "default", agent=refund_agent)
    seed = "2" if os.environ.get("PYTHONHASHSEED") == "1" else "1"
    there = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True,
                           capture_output=True, text=True,
                           env={**os.environ, "PYTHONHASHSEED": seed}).stdout.split()
    assert there == [here.journal_digest, here.ledger_digest]


# -- other connections ------------------------------------------------------------------------


def test_an_open_session_serves_the_toolset() -> None:
    """From async code, an open official client is used for the listing and every call."""
    env = environment_for(_scenario())

    async def run() -> Any:
        async with Client(mcp_server(env)) as client:
            tools = await mcp_toolset_async(client, effects=REFUND, key_arg="idempotency_key",
                                            only=TAKEN)
            refund = next(t for t in tools if t.name == "payments_create_refund")
            args = refund.validate_args({"charge": "ch_1", "amount": 300})
            value = refund.handler(_ctx(refund.name, "k-open"), args)
            return await value if inspect.isawaitable(value) else value

    answer = asyncio.run(run())
    assert answer["amount"] == 300
    assert [e.data["idempotency_key"] for e in env.world.ledger.of("payments", "refund")] == \
        ["k-open"]


@contextlib.contextmanager
def _serving(app: Any) -> Iterator[str]:
    """``app`` served by uvicorn on a loopback port, in a thread: its MCP URL."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started and thread.is_alive():
        threading.Event().wait(0.01)
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture
def served() -> Iterator[tuple[str, Environment]]:
    """The world's MCP endpoint, with a timeout after the first refund, over loopback."""
    env = environment_for(_scenario(TIMEOUT_AFTER))
    with _serving(mcp_asgi_app(env)) as url:
        yield url, env


def test_an_agent_reaches_the_world_by_url(served: tuple[str, Environment]) -> None:
    """An agent whose tools come from the MCP endpoint's URL refunds exactly once under the
    timeout after commit (its runtime re-issues with the key over HTTP)."""
    url, env = served
    tools = mcp_toolset(url, effects=REFUND, key_arg="idempotency_key", only=TAKEN)
    agent = tether.Agent(name="by_url", model=tether.ScriptedModel(_script), tools=tools)
    result = agent.run_sync("Please refund 700 cents of ch_1.")
    assert result.status.value == "completed"
    assert [e.data["amount"] for e in env.world.ledger.of("payments", "refund")] == [700]
    assert [c.error.split(":")[0] for c in env.calls] == ["ConnectionDropped", ""]


def test_a_server_that_cannot_list_its_tools_is_a_usage_error_naming_it() -> None:
    """A wrong path or a port nobody listens on is said with the URL and the server's
    answer, from sync and async code alike."""
    with _serving(mcp_asgi_app(environment_for(_scenario()))) as url:
        with pytest.raises(UsageError, match=r"could not list the tools of '.*/nowhere'"):
            mcp_toolset(url.replace("/mcp", "/nowhere"))
        with pytest.raises(UsageError, match=r"could not list the tools of '.*/elsewhere'"):
            asyncio.run(mcp_toolset_async(url.replace("/mcp", "/elsewhere")))
    with pytest.raises(UsageError, match=r"could not list the tools of 'http://127\.0\.0\.1"
                                         r":1/mcp'.*ConnectError"):
        mcp_toolset("http://127.0.0.1:1/mcp")


def test_a_worker_crash_after_an_mcp_write_is_recovered_without_a_second_refund() -> None:
    """A crash after the refund was applied reaches the runtime as a crash (not wrapped by the
    connection); the recovered run re-issues with the same key: one refund, one crash."""
    crash = [{"kind": "crash", "target": "payments.create_refund", "point": "after",
              "on_call": [1]}]
    result = run_episode(_scenario(crash), 1, "default", agent=refund_agent)
    assert result.crashes == 1
    assert result.status == "completed" and result.ok, result.verdicts
    assert len(_refunds(result)) == 1


def test_business_keys_and_trust_are_declared_per_tool() -> None:
    """``keys`` gives a tool its business key from the arguments; ``trust`` per tool sets
    that tool's trust and leaves the others at system; a name the server lacks is refused."""
    tools = _tools(effects=REFUND, key_arg="idempotency_key", only=TAKEN,
                   keys={"payments_create_refund": lambda a: f"refund:{a['charge']}"},
                   trust={"payments_get_charge": "external"})
    refund, read = tools["payments_create_refund"], tools["payments_get_charge"]
    args = refund.validate_args({"charge": "ch_1", "amount": 5})
    assert refund.idempotency_key(args, "run:1") == "refund:ch_1"
    assert (read.trust.value, refund.trust.value) == ("external", "system")
    with pytest.raises(UsageError, match="trust names 'email_sned'"):
        _tools(only=["payments_get_charge"], trust={"email_sned": "external"})


def test_a_listing_that_cannot_come_while_the_loop_waits_is_an_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Building from inside a running loop, a server that never lists its tools is a
    UsageError pointing at the async builder, not a hang."""
    monkeypatch.setattr("tether.agent.mcp.LISTING_TIMEOUT_S", 0.3)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    url = f"http://127.0.0.1:{silent.getsockname()[1]}/mcp"

    async def build() -> None:
        mcp_toolset(url, effects=REFUND)

    try:
        with pytest.raises(UsageError, match="mcp_toolset_async"):
            asyncio.run(build())
    finally:
        silent.close()


def test_arguments_a_server_wants_as_headers_are_sent_as_headers() -> None:
    """A server marking an argument ``x-mcp-header`` refuses a call without the header; the
    toolset's fresh connection learns the mapping from the listing and the call goes
    through."""
    server = MCPServer("headers", log_level="WARNING")

    def where(region: Annotated[str, Field(json_schema_extra={"x-mcp-header": "Region"})],
              ) -> str:
        return f"served in {region}"

    server.add_tool(where, annotations=ToolAnnotations(read_only_hint=True))
    with _serving(server.streamable_http_app()) as url:
        (tool,) = mcp_toolset(url)
        assert _handle(tool, _ctx(tool.name), {"region": "eu"}) == {"result": "served in eu"}


def _note_script(request: ModelRequest) -> ModelResponse:
    if any(m.role == "tool" for m in request.messages):
        return reply("noted")
    return call("crm_add_note", json.dumps({"customer_or_ticket": "cus_1", "text": "refunded"}),
                call_id="n1")


def note_agent(env: Environment) -> tether.Agent:
    """An agent with one reconcilable MCP tool (a CRM note takes no key), looked up through
    the server's read tool."""
    server = mcp_server(env)
    (read,) = mcp_toolset(server, only=["crm_primary_notes"])

    async def find_note(ctx: ToolContext, key: str) -> Any:
        """The note the ambiguous call wrote, if it did."""
        value = read.handler(ctx, read.validate_args({"target": "cus_1"}))
        listed = await value if inspect.isawaitable(value) else value
        return next((n for n in listed["result"] if n["text"] == "refunded"), None)

    (write,) = mcp_toolset(server, effects={"crm_add_note": "reconcilable"},
                           only=["crm_add_note"], reconcile={"crm_add_note": find_note})
    return tether.Agent(name="notes", model=tether.ScriptedModel(_note_script),
                        tools=[write, read])


def test_a_reconcilable_mcp_write_is_looked_up_not_repeated() -> None:
    """A CRM note (no idempotency key) declared reconcilable: after a timeout after commit
    the runtime looks it up through MCP, finds it, and writes no second note."""
    scenario = scenario_from_dict({
        "name": "mcp-note", "agent": "tests.agent.test_mcp_toolset:note_agent",
        "task": "Note the refund.",
        "world": {"crm": {"customers": [{"id": "cus_1", "email": "ann@example.com",
                                         "name": "Ann"}]}},
        "faults": [{"kind": "timeout_after", "target": "crm.add_note", "on_call": [1]}],
        "invariants": [{"exactly_once": {"effect": "crm.note"}}]})
    result = run_episode(scenario, 1, "default")
    assert result.status == "completed" and result.ok, result.verdicts
    assert len([e for e in result.ledger if e["operation"] == "note"]) == 1
    assert [(c.target, c.lookup) for c in result.calls] == \
        [("crm.add_note", False), ("crm.primary_notes", True)]
