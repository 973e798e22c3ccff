"""The facts chat and tool spans need, journaled and exported: the provider's response id
(``gen_ai.response.id``), where the model was asked (``server.address``/``server.port``), a
tool's description (``gen_ai.tool.description``) and, with ``ModelSettings.journal_input`` and
``capture_content``, a chat span's input (``gen_ai.input.messages``,
``gen_ai.system_instructions``, ``gen_ai.tool.definitions``).

The OpenAI runs go over real HTTP to a threaded server on 127.0.0.1
(tests/models/local_server.py); the scripted runs use no server at all.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from pydantic import BaseModel

from tests.models.local_server import Answer, LocalServer, completion, tool_call_completion
from tether import MemoryStore, Runtime, SQLiteStore, VirtualClock
from tether.agent.agent import Agent
from tether.events import (
    TOOL_DESCRIPTION_CHARS,
    Event,
    ModelCalled,
    ModelFailed,
    RunStatus,
    decode,
    encode,
)
from tether.models.base import ModelSettings
from tether.models.openai import OpenAIModel
from tether.models.scripted import ScriptedModel, call, reply, sequence
from tether.runtime.tools import ToolContext, tool
from tether.store.base import Store
from tether.tracing import semconv as sc
from tether.tracing.otel import OTelSink, export_run

INSTRUCTIONS = "You answer questions about orders. Be brief."
LOOKUP_DOC = "Look up an order by its id."


class OrderArgs(BaseModel):
    order_id: str


@tool
async def lookup_order(ctx: ToolContext, args: OrderArgs) -> dict[str, str]:
    """Look up an order by its id."""
    return {"order_id": args.order_id, "status": "shipped"}


def collector() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def by_operation(spans: list[ReadableSpan], operation: str) -> list[ReadableSpan]:
    found = [s for s in spans if (s.attributes or {}).get(sc.GEN_AI_OPERATION_NAME) == operation]
    return sorted(found, key=lambda s: str((s.attributes or {})[sc.TETHER_POSITION]).zfill(9))


def openai_run(answers: list[Answer], *, journal_input: bool, capture: bool = True,
               store: Store | None = None) -> tuple[LocalServer, list[ReadableSpan], Store, str]:
    """One agent run against the local server, traced live by a sink."""
    provider, exporter = collector()
    store = store if store is not None else MemoryStore()
    sink = OTelSink(provider, capture_content=capture)
    with LocalServer(answers) as server:
        model = OpenAIModel("local-model", base_url=server.url + "/v1")
        agent = Agent(name="support", model=model, tools=[lookup_order],
                      instructions=INSTRUCTIONS,
                      settings=ModelSettings(tool_choice="auto", journal_input=journal_input))
        result = agent.run_sync("Where is order A-17?",
                                runtime=Runtime(store, clock=VirtualClock(), seed=7,
                                                listeners=[sink]))
    assert result.status is RunStatus.COMPLETED, result
    return server, list(exporter.get_finished_spans()), store, result.run_id


TOOL_THEN_TEXT: list[Answer] = [
    (200, tool_call_completion("lookup_order", '{"order_id": "A-17"}', call_id="call_A17")),
    (200, completion("Order A-17 has shipped.")),
]


def test_openai_run_over_http_journals_and_exports_every_fact() -> None:
    server, spans, store, run_id = openai_run(TOOL_THEN_TEXT, journal_input=True)
    host, port = server.url.removeprefix("http://").split(":")
    chats = by_operation(spans, sc.OP_CHAT)
    assert len(chats) == 2 and server.requests == 2
    for chat in chats:
        attrs = chat.attributes or {}
        assert attrs[sc.GEN_AI_RESPONSE_ID] == "chatcmpl-local"
        assert attrs[sc.SERVER_ADDRESS] == host == "127.0.0.1"
        assert attrs[sc.SERVER_PORT] == int(port)
        assert json.loads(str(attrs[sc.GEN_AI_SYSTEM_INSTRUCTIONS])) == [
            {"type": "text", "content": INSTRUCTIONS}]
        assert json.loads(str(attrs[sc.GEN_AI_TOOL_DEFINITIONS])) == [
            {"type": "function", "name": "lookup_order", "description": LOOKUP_DOC,
             "parameters": server.bodies[0]["tools"][0]["function"]["parameters"]}]
    first = json.loads(str((chats[0].attributes or {})[sc.GEN_AI_INPUT_MESSAGES]))
    assert first == [{"role": "user",
                      "parts": [{"type": "text", "content": "Where is order A-17?"}]}]
    second = json.loads(str((chats[1].attributes or {})[sc.GEN_AI_INPUT_MESSAGES]))
    assert [m["role"] for m in second] == ["user", "assistant", "tool"]
    assert second[1]["parts"] == [{"type": "tool_call", "id": "call_A17", "name": "lookup_order",
                                   "arguments": '{"order_id": "A-17"}'}]
    assert second[2]["parts"][0]["type"] == "tool_call_response"
    assert second[2]["parts"][0]["id"] == "call_A17"
    assert json.loads(second[2]["parts"][0]["response"])["status"] == "shipped"
    # What the server was sent is what the span says was sent (the user's words, the system).
    assert server.bodies[1]["messages"][0] == {"role": "system", "content": INSTRUCTIONS}
    (tool_span,) = by_operation(spans, sc.OP_EXECUTE_TOOL)
    tool_attrs = tool_span.attributes or {}
    assert tool_attrs[sc.GEN_AI_TOOL_DESCRIPTION] == LOOKUP_DOC
    assert tool_attrs[sc.GEN_AI_TOOL_CALL_ID] == "call_A17"
    called = [e for e in store.read(run_id) if isinstance(e, ModelCalled)]
    assert [e.server_address for e in called] == ["127.0.0.1", "127.0.0.1"]
    assert [e.response["id"] for e in called] == ["chatcmpl-local", "chatcmpl-local"]
    assert called[0].tool_descriptions == {"lookup_order": LOOKUP_DOC}
    assert called[1].tool_descriptions == {}  # the final answer asks for no tool
    assert called[0].input is not None and called[0].input["messages"][0]["role"] == "system"


def test_without_journal_input_no_request_is_journaled_or_exported() -> None:
    """The default: facts that are not content still go out; the request does not exist in
    the journal, so no input attribute appears even with capture on."""
    _, spans, store, run_id = openai_run(TOOL_THEN_TEXT, journal_input=False)
    chats = by_operation(spans, sc.OP_CHAT)
    for chat in chats:
        attrs = chat.attributes or {}
        assert attrs[sc.GEN_AI_RESPONSE_ID] == "chatcmpl-local"
        assert attrs[sc.SERVER_ADDRESS] == "127.0.0.1"
        assert {sc.GEN_AI_INPUT_MESSAGES, sc.GEN_AI_SYSTEM_INSTRUCTIONS,
                sc.GEN_AI_TOOL_DEFINITIONS}.isdisjoint(attrs)
        assert sc.GEN_AI_OUTPUT_MESSAGES in attrs  # capture is on: the output is there
    (tool_span,) = by_operation(spans, sc.OP_EXECUTE_TOOL)
    assert (tool_span.attributes or {})[sc.GEN_AI_TOOL_DESCRIPTION] == LOOKUP_DOC
    bodies = [encode(e) for e in store.read(run_id) if isinstance(e, ModelCalled)]
    assert bodies and all('"input"' not in b for b in bodies)


def test_capture_off_exports_no_content_even_when_the_journal_has_it() -> None:
    _, spans, _, _ = openai_run(TOOL_THEN_TEXT, journal_input=True, capture=False)
    for chat in by_operation(spans, sc.OP_CHAT):
        attrs = chat.attributes or {}
        assert attrs[sc.GEN_AI_RESPONSE_ID] == "chatcmpl-local"
        assert {sc.GEN_AI_INPUT_MESSAGES, sc.GEN_AI_SYSTEM_INSTRUCTIONS,
                sc.GEN_AI_TOOL_DEFINITIONS, sc.GEN_AI_OUTPUT_MESSAGES}.isdisjoint(attrs)


def test_a_later_process_exports_the_input_from_the_journal_alone(tmp_path: Path) -> None:
    """No sink while the run ran: a process that only opens the SQLite file exports the
    same content and facts."""
    path = tmp_path / "runs.db"
    with LocalServer(TOOL_THEN_TEXT) as server:
        model = OpenAIModel("local-model", base_url=server.url + "/v1")
        agent = Agent(name="support", model=model, tools=[lookup_order],
                      instructions=INSTRUCTIONS,
                      settings=ModelSettings(tool_choice="auto", journal_input=True))
        result = agent.run_sync("Where is order A-17?",
                                runtime=Runtime(SQLiteStore(str(path)), clock=VirtualClock(),
                                                seed=7))
    provider, exporter = collector()
    export_run(SQLiteStore(str(path)).read(result.run_id), provider, run_id=result.run_id,
               capture_content=True)
    spans = list(exporter.get_finished_spans())
    chats = by_operation(spans, sc.OP_CHAT)
    assert len(chats) == 2
    attrs = chats[1].attributes or {}
    assert attrs[sc.SERVER_PORT] == int(server.url.rsplit(":", 1)[1])
    assert json.loads(str(attrs[sc.GEN_AI_SYSTEM_INSTRUCTIONS]))[0]["content"] == INSTRUCTIONS
    assert len(json.loads(str(attrs[sc.GEN_AI_INPUT_MESSAGES]))) == 3
    (tool_span,) = by_operation(spans, sc.OP_EXECUTE_TOOL)
    assert (tool_span.attributes or {})[sc.GEN_AI_TOOL_DESCRIPTION] == LOOKUP_DOC


def test_a_failed_call_carries_its_server_and_input() -> None:
    """A 400 is permanent: the run fails after one model_failed, which still says where the
    model was asked and (journaled) what it was asked."""
    provider, exporter = collector()
    store = MemoryStore()
    bad = {"error": {"message": "messages: bad", "type": "invalid_request_error",
                     "param": None, "code": None}}
    with LocalServer([(400, bad)]) as server:
        model = OpenAIModel("local-model", base_url=server.url + "/v1")
        agent = Agent(name="support", model=model, tools=[lookup_order],
                      instructions=INSTRUCTIONS, settings=ModelSettings(journal_input=True))
        result = agent.run_sync("Where is order A-17?",
                                runtime=Runtime(store, clock=VirtualClock(), seed=7,
                                                listeners=[OTelSink(provider,
                                                                    capture_content=True)]))
    assert result.status is not RunStatus.COMPLETED
    (failed,) = [e for e in store.read(result.run_id) if isinstance(e, ModelFailed)]
    assert failed.server_address == "127.0.0.1" and failed.input is not None
    (chat,) = by_operation(list(exporter.get_finished_spans()), sc.OP_CHAT)
    attrs = chat.attributes or {}
    assert chat.status.status_code is StatusCode.ERROR
    assert attrs[sc.SERVER_ADDRESS] == "127.0.0.1"
    assert sc.GEN_AI_RESPONSE_ID not in attrs
    assert sc.GEN_AI_INPUT_MESSAGES in attrs


def long_tool(doc: str) -> Any:
    async def describe(ctx: ToolContext, args: OrderArgs) -> dict[str, str]:
        return {"order_id": args.order_id}

    return tool(name="describe_order", description=doc, args=OrderArgs,
                result=dict[str, str])(describe)


def scripted_run(store: Store, *, journal_input: bool, doc: str = LOOKUP_DOC,
                 capture: bool = True) -> tuple[list[ReadableSpan], str]:
    provider, exporter = collector()
    described = long_tool(doc)
    model = ScriptedModel(sequence([call("describe_order", {"order_id": "A-17"}),
                                    reply("It shipped.")]))
    agent = Agent(name="support", model=model, tools=[described], instructions=INSTRUCTIONS,
                  settings=ModelSettings(journal_input=journal_input))
    result = agent.run_sync("Where is A-17?", runtime=Runtime(
        store, clock=VirtualClock(), seed=5,
        listeners=[OTelSink(provider, capture_content=capture)]))
    assert result.status is RunStatus.COMPLETED, result
    return list(exporter.get_finished_spans()), result.run_id


def test_a_scripted_model_has_no_server_and_no_response_id() -> None:
    spans, _ = scripted_run(MemoryStore(), journal_input=True)
    chats = by_operation(spans, sc.OP_CHAT)
    assert len(chats) == 2
    for chat in chats:
        attrs = chat.attributes or {}
        assert {sc.SERVER_ADDRESS, sc.SERVER_PORT, sc.GEN_AI_RESPONSE_ID}.isdisjoint(attrs)
        assert sc.GEN_AI_TOOL_DEFINITIONS in attrs
    (tool_span,) = by_operation(spans, sc.OP_EXECUTE_TOOL)
    assert (tool_span.attributes or {})[sc.GEN_AI_TOOL_DESCRIPTION] == LOOKUP_DOC


def test_a_long_description_is_cut_in_the_journal_and_whole_in_the_definitions() -> None:
    doc = "Look up an order. " + "x" * 400
    store = MemoryStore()
    spans, run_id = scripted_run(store, journal_input=True, doc=doc)
    (asked, _) = [e for e in store.read(run_id) if isinstance(e, ModelCalled)]
    kept = asked.tool_descriptions["describe_order"]
    assert len(kept) == TOOL_DESCRIPTION_CHARS and kept.endswith("…")
    assert doc.startswith(kept[:-1])
    (tool_span,) = by_operation(spans, sc.OP_EXECUTE_TOOL)
    assert (tool_span.attributes or {})[sc.GEN_AI_TOOL_DESCRIPTION] == kept
    chat = by_operation(spans, sc.OP_CHAT)[0]
    definitions = json.loads(str((chat.attributes or {})[sc.GEN_AI_TOOL_DEFINITIONS]))
    assert definitions[0]["description"] == doc  # the request itself, as the model saw it


def test_journaling_the_input_adds_only_the_input() -> None:
    """The same scripted run with and without ``journal_input``: the same events, digests and
    responses; the only difference in the stored bodies is the ``input`` key."""
    plain, journaled = MemoryStore(), MemoryStore()
    _, plain_id = scripted_run(plain, journal_input=False)
    _, journaled_id = scripted_run(journaled, journal_input=True)
    a, b = plain.read(plain_id), journaled.read(journaled_id)
    assert [e.kind for e in a] == [e.kind for e in b]
    with_input = 0
    for x, y in zip(a, b, strict=True):
        body_x, body_y = json.loads(encode(x)), json.loads(encode(y))
        if body_y["kind"] == "model_called" and "input" in body_y:
            with_input += 1
            del body_y["input"]
        assert body_x == body_y
    assert with_input == 2


# Bodies as tether wrote them before these fields existed (checked against the encoder of the
# commit before them: it writes exactly these).
OLD_CALLED = ('{"seq":3,"at":1767225605.0,"v":1,"kind":"model_called","pos":3,'
              '"model":"openai:gpt-4o","request_digest":"d3","response":{"text":"",'
              '"tool_calls":[{"id":"call_1","name":"lookup_order","arguments":"{}"}],'
              '"usage":{"input_tokens":10,"output_tokens":2,"cached_input_tokens":0},'
              '"model":"gpt-4o","finish_reason":"tool_calls"},"cost_usd":0.03,"latency_s":1.5}')
OLD_FAILED = ('{"seq":2,"at":1767225601.5,"v":1,"kind":"model_failed","pos":0,'
              '"model":"openai:gpt-4o","request_digest":"d0","failure":"rate_limited",'
              '"error":{"type":"tether.errors.RateLimited","message":"429"},"latency_s":1.5}')
OLD_START = ('{"seq":1,"at":1767225600.0,"v":1,"kind":"run_started","workflow":"support",'
             '"input":"q","seed":1,"session_id":null}')
OLD_TOOL = ('{"seq":4,"at":1767225605.5,"v":1,"kind":"tool_result","pos":4,'
            '"tool":"lookup_order","result":{"status":"shipped"},"reconciled":false,'
            '"latency_s":0.5,"source":null,"trust":null,"unreadable":null}')


def test_old_journals_decode_encode_byte_for_byte_and_export() -> None:
    events: list[Event] = [decode(body) for body in (OLD_START, OLD_FAILED, OLD_CALLED, OLD_TOOL)]
    assert [encode(e) for e in events] == [OLD_START, OLD_FAILED, OLD_CALLED, OLD_TOOL]
    called = events[2]
    assert isinstance(called, ModelCalled)
    assert called.server_address is None and called.input is None
    assert called.tool_descriptions == {}
    provider, exporter = collector()
    export_run(events, provider, run_id="run_old", capture_content=True)
    spans = list(exporter.get_finished_spans())
    chats = by_operation(spans, sc.OP_CHAT)
    assert len(chats) == 2
    new_names = {sc.SERVER_ADDRESS, sc.SERVER_PORT, sc.GEN_AI_RESPONSE_ID,
                 sc.GEN_AI_INPUT_MESSAGES, sc.GEN_AI_SYSTEM_INSTRUCTIONS,
                 sc.GEN_AI_TOOL_DEFINITIONS}
    assert all(new_names.isdisjoint(c.attributes or {}) for c in chats)
    (tool_span,) = by_operation(spans, sc.OP_EXECUTE_TOOL)
    attrs = tool_span.attributes or {}
    assert attrs[sc.GEN_AI_TOOL_CALL_ID] == "call_1"
    assert sc.GEN_AI_TOOL_DESCRIPTION not in attrs


def test_new_fields_round_trip_through_the_codec() -> None:
    event = ModelCalled(seq=3, at=1.0, pos=3, model="m", request_digest="d",
                        response={"text": "hi", "id": "chatcmpl-1"}, server_address="10.0.0.2",
                        server_port=8000, tool_descriptions={"t": "does t"},
                        input={"messages": [{"role": "user", "content": "hi"}]})
    body = encode(event)
    assert decode(body) == event
    for key in ('"server_address":"10.0.0.2"', '"server_port":8000',
                '"tool_descriptions":{"t":"does t"}', '"input":{'):
        assert key in body
    failed = ModelFailed(seq=4, at=1.0, pos=4, model="m", request_digest="d", failure="x",
                         error={}, server_address="h", server_port=1)
    assert decode(encode(failed)) == failed and '"input"' not in encode(failed)
