"""Tools and scripts that agent files in the tests name by import path."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

import tether
from tether.models import ModelRequest, ModelResponse, call, reply


class Echo(BaseModel):
    text: str


@tether.tool(effect="read")
async def echo(ctx: tether.ToolContext, args: Echo) -> dict[str, str]:
    """Say the text back."""
    return {"echo": args.text}


@tether.tool(effect="idempotent", key=lambda a: f"note:{a.text}")
async def note(ctx: tether.ToolContext, args: Echo) -> dict[str, str]:
    """Keep a note."""
    return {"noted": args.text}


PAIR = [echo, note]
NOT_A_TOOL = 42


def made(env: Any) -> list[tether.Tool[Any, Any]]:
    """A tool factory: what it was given is in the tool's description."""

    @tether.tool(name="from_env", description=f"built with {env!r}", args=Echo,
                 result=dict[str, str])
    async def from_env(ctx: tether.ToolContext, args: Echo) -> Any:
        return {"env": repr(env)}

    return [from_env]


def two_args(env: Any, other: Any) -> list[tether.Tool[Any, Any]]:
    return []


def script(request: ModelRequest) -> ModelResponse:
    """Call echo once, then answer with what came back."""
    results = [m for m in request.messages if m.role == "tool"]
    if not results:
        return call("echo", {"text": "hi"})
    return reply(f"got {results[-1].content}")
