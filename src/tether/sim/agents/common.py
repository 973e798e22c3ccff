"""Binding services to tools: each tool's handler goes through the fault layer.

Every tool declares its result type (a response model of :mod:`tether.sim.services.responses`,
or ``str`` for text shown to the model as prose): the runtime validates each answer against it,
so a drifted response (a renamed, removed or retyped field) is ``tool_result_invalid`` and never
reaches the model as a plausible-looking value.

A service error that is worth retrying (``retryable``) becomes
:class:`~tether.errors.TransientError` (the call certainly did not take effect); an expired
token becomes :class:`~tether.errors.AuthExpired`; other service errors are permanent and the
agent sees them as observations.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from tether.errors import AuthExpired, TransientError, UsageError
from tether.models.base import ModelRequest
from tether.runtime.provenance import Sourced, Trust
from tether.runtime.tools import Tool, ToolContext, tool
from tether.sim.faults import FaultLayer
from tether.sim.services.errors import ServiceError, TokenExpired

__all__ = ["bind", "plain", "tool_results"]


def tool_results(request: ModelRequest) -> dict[str, list[str]]:
    """What each tool has answered so far in the conversation, by tool name, oldest first:
    what a reference model decides its next move from."""
    found: dict[str, list[str]] = {}
    for m in request.messages:
        if m.role == "tool" and m.name:
            found.setdefault(m.name, []).append(m.content)
    return found


def plain(value: Any) -> Any:
    """A service's answer as JSON-ready data."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    return value


def bind(layer: FaultLayer, target: str, args_type: type[BaseModel], description: str,
         operation: Callable[[Any, str], Any], *, result: Any = None, name: str | None = None,
         effect: str = "read", key: Callable[[Any], str] | None = None,
         trust: str = "system", text: bool = False, stale: Any = None,
         reconcile: Callable[[str], Any] | None = None) -> Tool[Any, Any]:
    """A tool named after ``target``'s operation, calling ``operation(args, key)`` through
    ``layer``, declaring ``result`` as its result type (``str`` for a ``text`` tool, whose
    answer is rendered as prose; any other tool must declare one). ``stale`` is a service with
    a lagging replica that ``stale_read`` faults use; ``reconcile(key)`` looks a write up by
    its key (for ``effect="reconcilable"``)."""
    tool_name = name or target.split(".", 1)[1]
    if text:
        result = str
    if result is None or result is Any:
        raise UsageError(f"tool {tool_name!r}: declare its result type (a response model), so "
                         "that a drifted response is caught instead of read as a wrong value")

    async def handler(ctx: ToolContext, args: Any) -> Any:
        def run() -> Any:
            try:
                return operation(args, ctx.idempotency_key)
            except TokenExpired as exc:
                raise AuthExpired(str(exc), dependency=target) from exc
            except ServiceError as exc:
                if exc.retryable:
                    raise TransientError(f"{target}: {exc}") from exc
                raise

        def on_stale(age_s: float) -> None:
            # Reads return the state as it was age_s ago, for as long again.
            stale.go_stale(age_s, age_s=age_s)

        answer = await layer.call(target, run, on_stale=on_stale if stale is not None else None)
        if text:
            return Sourced(_as_text(answer), source=f"{target}", trust=Trust(trust))
        return answer

    async def look_up(ctx: ToolContext, idempotency_key: str) -> Any:
        assert reconcile is not None
        return await layer.call(f"{target}.lookup", lambda: reconcile(idempotency_key))

    handler.__doc__ = description
    return tool(name=tool_name, description=description, effect=effect, key=key,
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
