"""A session's conversation, derived from its turns' run journals (never stored twice).

The messages of one finished turn are what its run's journal implies: the request
(``run_started``'s task text) as a user message, then each usable model response
(``model_called``) as an assistant message, and after a response with tool calls one tool message
per call, in the order of the calls:

* a call the harness judged (a ``recover`` decision naming its ``call_id``: a failure the model
  was told about) reads ``error (<failure>): <message>``, as the agent loop wrote it;
* otherwise the next result of that tool journaled after the response (``tool_result``) is the
  call's observation, rendered as the loop renders results, with the provenance (``source``,
  ``trust``) the result was journaled with;
* a client tool's call is answered by the caller's result (the ``wait_resolved`` of its
  request), with source ``client:<tool>`` and the tool's trust (``user`` when the request does
  not record one), as the loop showed it to the model;
* a write that took effect with an unusable response reads ``applied (tool_result_invalid) …``;
* a call with neither (refused before it ran, e.g. by a policy or an open breaker) reads
  ``(no result recorded for this call)``, so every tool call is still answered.

Responses the loop could not use (malformed: neither text nor tool calls, or arguments that are
not a JSON object) are left out: the model was asked again, and only the answer it gave then
belongs to the conversation.

>>> from tether.events import RunStarted, RunFinished, RunStatus
>>> events = [RunStarted(seq=1, at=0.0, workflow="a", input={"text": "hi"}, seed=1)]
>>> [m.content for m in turn_messages("run-1", events)]
['hi']
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from tether.errors import CorruptJournal
from tether.events import (
    Decision,
    Event,
    ModelCalled,
    RunStarted,
    ToolResult,
    WaitResolved,
    WaitStarted,
)
from tether.models.base import Message, ModelResponse, ToolCall
from tether.runtime.client_tools import CLIENT_PREFIX

__all__ = ["NO_RESULT", "render_result", "turn_entries", "turn_messages", "usable"]

#: The observation of a tool call whose journal holds neither a result nor a judged failure.
NO_RESULT = "(no result recorded for this call)"


def turn_messages(run_id: str, events: Sequence[Event]) -> list[Message]:
    """The conversation one agent run added: its request, the model's usable responses and an
    answer to every tool call, derived from the run's ``events``."""
    return [message for _, message in turn_entries(run_id, events)]


def turn_entries(run_id: str, events: Sequence[Event]) -> list[tuple[int, Message]]:
    """:func:`turn_messages`, each with the seq of the journal event it was derived from."""
    entries: list[tuple[int, Message]] = []
    started = next((e for e in events if isinstance(e, RunStarted)), None)
    if started is None:
        return entries
    entries.append((started.seq, Message.user(_request_text(run_id, started.input))))
    calls: tuple[ToolCall, ...] = ()
    asked_at = 0
    judged: dict[str, tuple[int, dict[str, Any]]] = {}
    results: list[ToolResult] = []
    # Client calls of the current round: request key -> (call id, tool, trust), then each
    # answered call's (seq, observation, source, trust) by call id.
    requested: dict[str, tuple[str, str, str]] = {}
    answered: dict[str, tuple[int, str, str, str]] = {}
    for event in events:
        if isinstance(event, ModelCalled):
            entries += _answers(calls, asked_at, judged, results, answered)
            calls, judged, results, requested, answered = (), {}, [], {}, {}
            response = _response(run_id, event)
            if response is None:
                continue
            entries.append((event.seq, Message.assistant(response.text, response.tool_calls)))
            calls, asked_at = response.tool_calls, event.seq
        elif isinstance(event, Decision) and event.name == "recover" and "call_id" in event.data:
            judged[str(event.data["call_id"])] = (event.seq, event.data)
        elif isinstance(event, ToolResult):
            results.append(event)
        elif isinstance(event, WaitStarted) and event.key.startswith(CLIENT_PREFIX):
            requested[event.key] = (str(event.data.get("call_id", "")),
                                    str(event.data.get("tool", "")),
                                    str(event.data.get("trust") or "user"))
        elif isinstance(event, WaitResolved) and event.key in requested:
            call_id, tool, trust = requested[event.key]
            answered[call_id] = (event.seq, render_result(event.value), f"client:{tool}", trust)
    entries += _answers(calls, asked_at, judged, results, answered)
    return entries


def usable(response: ModelResponse) -> bool:
    """Whether the agent loop could use ``response`` (the loop's own malformed-output test)."""
    for call in response.tool_calls:
        try:
            parsed = call.parsed()
        except ValueError:
            return False
        if not isinstance(parsed, dict):
            return False
    return bool(response.tool_calls) or bool(response.text.strip())


def render_result(result: Any) -> str:
    """A tool result as the model read it."""
    if isinstance(result, str):
        return result
    return json.dumps(result, sort_keys=True, default=str)


def _request_text(run_id: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("text"), str):
        return str(value["text"])
    raise CorruptJournal(f"run {run_id!r}: its run_started input {value!r:.200} is not an agent "
                         "task; a session's turns must be runs of an agent")


def _response(run_id: str, event: ModelCalled) -> ModelResponse | None:
    try:
        response = ModelResponse.model_validate(event.response)
    except ValidationError as exc:
        raise CorruptJournal(f"run {run_id!r} event seq {event.seq}: the journaled model "
                             f"response is not a model response: {exc}") from exc
    return response if usable(response) else None


def _answers(calls: tuple[ToolCall, ...], asked_at: int,
             judged: dict[str, tuple[int, dict[str, Any]]],
             results: list[ToolResult],
             answered: dict[str, tuple[int, str, str, str]]) -> list[tuple[int, Message]]:
    """One tool message per call, in call order (see the module docstring)."""
    pending = sorted(results, key=lambda r: r.pos)
    answers: list[tuple[int, Message]] = []
    for call in calls:
        seq, decision = judged.get(call.id, (asked_at, None))
        # After a credential refresh the call was made again: its result is the observation.
        refreshed = decision is not None and decision.get("action") == "refresh_auth"
        if decision is not None and not (refreshed and _has(pending, call.name)):
            answers.append((seq, Message.tool(call, _judged_text(call, decision))))
            continue
        if call.id in answered:
            seq, content, source, trust = answered[call.id]
            answers.append((seq, Message.tool(call, content, source=source, trust=trust)))
            continue
        result = _take(pending, call.name)
        if result is None:
            answers.append((asked_at, Message.tool(call, NO_RESULT, source="harness",
                                                   trust="system")))
        elif result.unreadable is not None:
            answers.append((result.seq, Message.tool(
                call, "applied (tool_result_invalid): the call took effect, but its response "
                f"could not be used: {result.unreadable}")))
        else:
            answers.append((result.seq, Message.tool(
                call, render_result(result.result), source=result.source or call.name,
                trust=result.trust)))
    return answers


def _has(pending: list[ToolResult], tool: str) -> bool:
    return any(result.tool == tool for result in pending)


def _take(pending: list[ToolResult], tool: str) -> ToolResult | None:
    for index, result in enumerate(pending):
        if result.tool == tool:
            return pending.pop(index)
    return None


def _judged_text(call: ToolCall, decision: dict[str, Any]) -> str:
    text = f"error ({decision.get('failure', 'unknown')}): {decision.get('message', '')}"
    if decision.get("action") == "disable_tool":
        text += (f"\nThe tool {call.name!r} is now disabled for this run; continue without "
                 "it or tell the user what could not be done.")
    return text
