"""Tools over the simulated environment's clients, shared by the shipped agents.

Every tool declares its result type (a response model of :mod:`tether.sim.services.responses`,
or ``str`` for text shown to the model as prose): the runtime validates each answer against it,
so a drifted response (a renamed, removed or retyped field) is ``tool_result_invalid`` and never
reaches the model as a plausible-looking value. The clients (``env.client(...)``) apply the
faults and raise what a production client raises.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel

from tether.errors import UsageError
from tether.models.base import ModelRequest
from tether.runtime.provenance import Sourced, Trust
from tether.runtime.tools import Tool, ToolContext, tool
from tether.sim.jsonable import plain

__all__ = ["bind", "plain", "tool_results"]


def tool_results(request: ModelRequest) -> dict[str, list[str]]:
    """What each tool has answered so far in the conversation, by tool name, oldest first:
    what a reference model decides its next move from."""
    found: dict[str, list[str]] = {}
    for m in request.messages:
        if m.role == "tool" and m.name:
            found.setdefault(m.name, []).append(m.content)
    return found


def bind(name: str, args_type: type[BaseModel], description: str,
         operation: Callable[[Any, str], Awaitable[Any]], *, result: Any = None,
         effect: str = "read", key: Callable[[Any], str] | None = None,
         trust: str = "system", text: bool = False, source: str = "",
         reconcile: Callable[[str], Awaitable[Any]] | None = None) -> Tool[Any, Any]:
    """A tool ``name`` whose handler awaits ``operation(args, idempotency_key)`` (a call of a
    client), declaring ``result`` as its result type (``str`` for a ``text`` tool, whose
    answer is rendered as prose; any other tool must declare one). ``reconcile(key)`` looks a
    write up by its key (for ``effect="reconcilable"``, or to settle an unknown outcome).
    ``source`` names where a text tool's answer came from (default: the tool)."""
    if text:
        result = str
    if result is None or result is Any:
        raise UsageError(f"tool {name!r}: declare its result type (a response model), so "
                         "that a drifted response is caught instead of read as a wrong value")

    async def handler(ctx: ToolContext, args: Any) -> Any:
        answer = await operation(args, ctx.idempotency_key)
        if text:
            return Sourced(_as_text(answer), source=source or name, trust=Trust(trust))
        return answer

    async def look_up(ctx: ToolContext, idempotency_key: str) -> Any:
        assert reconcile is not None
        return await reconcile(idempotency_key)

    handler.__doc__ = description
    return tool(name=name, description=description, effect=effect, key=key,
                trust=trust, args=args_type, result=result, retry_delay_s=None,
                reconcile=look_up if reconcile is not None else None)(handler)


def _as_text(result: Any) -> str:
    if isinstance(result, list):
        return "\n\n".join(_as_text(r) for r in result)
    if isinstance(result, dict):
        title = result.get("title", "")
        body = result.get("body", "")
        return f"{title}\n{body}".strip() if (title or body) else str(result)
    return str(result)
