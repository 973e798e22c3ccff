"""How journal facts become span attribute values: span events of decisions and other journal
events, and the opt-in content attributes in the GenAI conventions' message shapes.

>>> messages("user", [text_part("hi")])
'[{"role":"user","parts":[{"type":"text","content":"hi"}]}]'
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from tether.events import Decision, Event, RunFinished, StepFailed, TimerStarted, ToolError
from tether.tracing import semconv as sc

__all__ = ["decision_attributes", "error_type", "event_attributes", "input_attributes",
           "json_text", "messages", "output_messages", "run_error_type", "text_part"]

_DECISION_KEYS = {"failure": sc.TETHER_FAILURE_CLASS, "domain": sc.TETHER_FAILURE_DOMAIN,
                  "action": sc.TETHER_DECISION_ACTION, "attempt": sc.TETHER_ATTEMPT,
                  "delay_s": sc.TETHER_DELAY_S, "limit": sc.TETHER_LIMIT,
                  "reason": sc.TETHER_REASON}


def decision_attributes(decision: Decision) -> dict[str, Any]:
    """A decision as span-event attributes: its well-known facts under ``tether.*`` names, any
    other fact as ``tether.decision.<key>``."""
    attrs: dict[str, Any] = {sc.TETHER_DECISION_NAME: decision.name,
                             sc.TETHER_POSITION: decision.pos}
    for key, value in decision.data.items():
        if value not in (None, ""):
            attrs[_DECISION_KEYS.get(key, f"tether.decision.{key}")] = _scalar(value)
    return attrs


def event_attributes(event: Event) -> dict[str, Any]:
    """A journal event's facts (never its values or results) as span-event attributes."""
    attrs: dict[str, Any] = {}
    pos = getattr(event, "pos", None)
    if pos is not None:
        attrs[sc.TETHER_POSITION] = pos
    # A tool event's key is its idempotency key; a wait's key names what it waits for.
    key_name = sc.TETHER_IDEMPOTENCY_KEY if hasattr(event, "tool") else sc.TETHER_NAME
    for field, name in (("name", sc.TETHER_NAME), ("key", key_name),
                        ("attempt", sc.TETHER_ATTEMPT), ("failure", sc.TETHER_FAILURE_CLASS),
                        ("delay_s", sc.TETHER_DELAY_S), ("reason", sc.TETHER_REASON),
                        ("deadline", sc.TETHER_DEADLINE), ("by", sc.TETHER_RESOLVED_BY)):
        value = getattr(event, field, None)
        if value not in (None, ""):
            attrs[name] = value
    if isinstance(event, TimerStarted):
        attrs[sc.TETHER_WAKE_AT] = event.wake_at
    if isinstance(event, ToolError):
        attrs[sc.ERROR_TYPE] = event.failure
    elif isinstance(event, StepFailed):
        attrs[sc.ERROR_TYPE] = error_type(event.error, default="step_error")
    return attrs


def error_type(error: Mapping[str, Any] | None, *, default: str = sc.OTHER) -> str:
    """The ``error.type`` of a journaled error record, the same on every span: tether's
    failure class when the error carries one (``permanent_tool_error``, ``rate_limited`` …,
    as on the call's own span), else the exception's qualified type name, else ``default``."""
    error = error or {}
    data = error.get("data")
    failure = data.get("failure") if isinstance(data, dict) else None
    return str(failure or error.get("type") or default)


def run_error_type(finished: RunFinished) -> str:
    """The ``error.type`` of a failed or escalated run (see :func:`error_type`); a run that
    stopped without an error record is classed by its status (``escalated``)."""
    return error_type(finished.error, default=finished.status.value)


def _scalar(value: Any) -> Any:
    return value if isinstance(value, str | bool | int | float) else json_text(value)


# -- content (opt-in) ------------------------------------------------------------------------


def json_text(value: Any) -> str:
    """Compact JSON text, as content attributes carry it."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def text_part(value: Any) -> dict[str, Any]:
    """A text message part; non-strings become their JSON text."""
    return {"type": "text", "content": value if isinstance(value, str) else json_text(value)}


def messages(role: str, parts: list[dict[str, Any]], **extra: Any) -> str:
    """One message of ``role`` with ``parts``, as the JSON text of a message list."""
    return json_text([{"role": role, "parts": parts, **extra}])


def output_messages(response: Mapping[str, Any]) -> str:
    """A response in the conventions' output-message shape (one choice)."""
    parts = [text_part(response["text"])] if response.get("text") else []
    parts += [{"type": "tool_call", "id": c.get("id"), "name": c.get("name"),
               "arguments": c.get("arguments")} for c in response.get("tool_calls") or ()]
    return messages("assistant", parts, finish_reason=response.get("finish_reason") or "stop")


def input_attributes(request: Mapping[str, Any]) -> dict[str, str]:
    """A journaled request (``ModelCalled.input``: ``messages`` and ``tools`` as
    :class:`~tether.models.base.ModelRequest` dumps them) as the conventions' content
    attributes: ``gen_ai.system_instructions`` (the system messages' text parts),
    ``gen_ai.input.messages`` (the other messages: text, ``tool_call`` and
    ``tool_call_response`` parts) and ``gen_ai.tool.definitions``, each left out when empty.

    >>> input_attributes({"messages": [{"role": "system", "content": "Be brief."},
    ...                                {"role": "user", "content": "hi"}]})["gen_ai.input.messages"]
    '[{"role":"user","parts":[{"type":"text","content":"hi"}]}]'
    """
    system: list[dict[str, Any]] = []
    chat: list[dict[str, Any]] = []
    for message in request.get("messages") or ():
        if not isinstance(message, Mapping):
            continue
        role = str(message.get("role") or "user")
        content = message.get("content") or ""
        if role == "system":
            if content:
                system.append(text_part(content))
            continue
        if role == "tool":
            parts = [{"type": "tool_call_response", "id": message.get("tool_call_id"),
                      "response": content}]
        else:
            parts = [text_part(content)] if content else []
            parts += [{"type": "tool_call", "id": c.get("id"), "name": c.get("name"),
                       "arguments": c.get("arguments")}
                      for c in message.get("tool_calls") or () if isinstance(c, Mapping)]
        chat.append({"role": role, "parts": parts})
    tools = [{"type": "function", "name": t.get("name"), "description": t.get("description", ""),
              "parameters": t.get("parameters", {"type": "object"})}
             for t in request.get("tools") or () if isinstance(t, Mapping)]
    attrs: dict[str, str] = {}
    if system:
        attrs[sc.GEN_AI_SYSTEM_INSTRUCTIONS] = json_text(system)
    if chat:
        attrs[sc.GEN_AI_INPUT_MESSAGES] = json_text(chat)
    if tools:
        attrs[sc.GEN_AI_TOOL_DEFINITIONS] = json_text(tools)
    return attrs
