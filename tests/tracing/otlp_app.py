"""A worker process exporting its runs' spans over OTLP/HTTP, so a test can SIGKILL it mid-run.

    python -m tests.tracing.otlp_app --store runs.db --endpoint http://127.0.0.1:PORT/v1/traces \\
        --kill-at reserve_stock:in_handler
    python -m tests.tracing.otlp_app --store runs.db --endpoint ... --resume

The exporter is wired as a user wires it: an SDK ``TracerProvider`` with a
``SimpleSpanProcessor(OTLPSpanExporter(endpoint=...))`` and ``OTelSink(provider, store=store)``.
``--kill-at NAME:POINT`` SIGKILLs the process (no flush, no cleanup) when the durable call
``NAME`` reaches ``POINT``: a runtime probe point (``after_intent``, ``after_result``,
``after_model`` …) or ``in_handler``, inside the tool's handler. Every process is the same
worker restarting (one owner), so a resume takes the killed process's run back at once.

The workflow (``fulfil``) on the real clock: a step; a model call asking for ``lookup_order``
(its call id ``call_lookup``); that read; ``reserve_stock``, an idempotent write that fails
transiently once per process and is retried after 50 ms; ``charge_card``, an idempotent write;
a model call giving the final answer.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from typing import Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from pydantic import BaseModel

from tether import ProbePoint, RunContext, Runtime, SQLiteStore, SystemClock, tool, workflow
from tether.errors import TransientError
from tether.models.base import Message, ModelRequest, ToolSpec
from tether.models.scripted import ScriptedModel, call, reply, sequence
from tether.tracing import OTelSink

RUN_ID = "run-otlp-crash"


class Killer:
    """SIGKILLs this process when the call ``name`` reaches ``point``."""

    def __init__(self, spec: str | None) -> None:
        self.name, _, self.point = (spec or "").rpartition(":")

    def __call__(self, point: ProbePoint) -> None:
        self.maybe(point.name, point.point)

    def maybe(self, name: str, point: str) -> None:
        if (name, point) == (self.name, self.point):
            sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGKILL)


class Order(BaseModel):
    order_id: str


def build(killer: Killer) -> Any:
    failed_once = {"reserve_stock": False}
    model = ScriptedModel(sequence([call("lookup_order", {"order_id": "A-1"},
                                         call_id="call_lookup"), reply("all done")]),
                          name="openai:gpt-4o-mini")

    @tool(name="lookup_order", args=Order, result=dict[str, Any])
    async def lookup_order(ctx: Any, args: Order) -> dict[str, Any]:
        killer.maybe("lookup_order", "in_handler")
        return {"order_id": args.order_id, "sku": "blue-mug"}

    @tool(name="reserve_stock", effect="idempotent", key=lambda a: f"hold:{a.order_id}",
          retry_delay_s=0.05, args=Order, result=dict[str, Any])
    async def reserve_stock(ctx: Any, args: Order) -> dict[str, Any]:
        killer.maybe("reserve_stock", "in_handler")
        if not failed_once["reserve_stock"]:
            failed_once["reserve_stock"] = True
            raise TransientError("warehouse busy")
        return {"hold_id": f"h_{ctx.idempotency_key}"}

    @tool(name="charge_card", effect="idempotent", key=lambda a: f"charge:{a.order_id}",
          args=Order, result=dict[str, Any])
    async def charge_card(ctx: Any, args: Order) -> dict[str, Any]:
        killer.maybe("charge_card", "in_handler")
        return {"charge_id": f"ch_{ctx.idempotency_key}"}

    tools = (ToolSpec(name="lookup_order"),)

    @workflow(name="fulfil")
    async def fulfil(ctx: RunContext, order_id: str) -> str:
        await ctx.step("plan", lambda: order_id)
        asked = [Message.user(f"fulfil {order_id}")]
        first = await ctx.call_model(model, ModelRequest(messages=tuple(asked), tools=tools))
        await ctx.call_tool(lookup_order, {"order_id": order_id})
        await ctx.call_tool(reserve_stock, {"order_id": order_id})
        await ctx.call_tool(charge_card, {"order_id": order_id})
        asked += [Message.assistant(tool_calls=first.tool_calls)]
        final = await ctx.call_model(model, ModelRequest(messages=tuple(asked)))
        return final.text

    return fulfil


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--store", required=True)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--kill-at", default=None)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)

    provider = TracerProvider(resource=Resource.create({"service.name": "otlp-crash-app"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=args.endpoint)))
    store = SQLiteStore(args.store)
    killer = Killer(args.kill_at)
    flow = build(killer)
    runtime = Runtime(store, clock=SystemClock(), workflows=[flow], probe=killer,
                      owner="otlp-app-worker", listeners=[OTelSink(provider, store=store)])
    if args.resume:
        result = asyncio.run(runtime.resume(RUN_ID))
    else:
        result = asyncio.run(runtime.start(flow, "A-1", run_id=RUN_ID))
    provider.shutdown()
    store.close()
    print(result.status.value)
    return 0


if __name__ == "__main__":
    sys.exit(main())
