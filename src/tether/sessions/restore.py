"""Validating a client's copy of a session's history before it is restored.

The client kept the conversation; the server lost it (the session expired, or the store that held
it is gone). What comes back is the client's word, so it is checked and demoted:

* every entry must be a message (``role`` user, assistant or tool; content a string). A
  ``system`` message is refused: instructions come from the agent, and a provider reads a system
  message as the system's whatever trust it is labelled with;
* a tool message must answer a tool call of an assistant message before it in the same history,
  once, and every tool call must be answered before the next user or assistant message (what
  providers require, and what the agent loop always produced);
* every restored message is demoted to the client's trust: ``source`` and ``trust`` become
  ``user`` whatever the copy claims, so policy never treats a restored "tool result" or "system"
  claim as more than the user's say-so.

>>> [m.trust for m in validated([{"role": "user", "content": "hi", "trust": "system"}])]
['user']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from tether.errors import RestoreRefused
from tether.models.base import Message

__all__ = ["CLIENT_TRUST", "validated"]

#: The trust every restored message gets: the client's, which is the user's.
CLIENT_TRUST = "user"


def validated(history: Sequence[Message | dict[str, Any]]) -> list[Message]:
    """``history`` checked as described in the module docstring and demoted to client trust;
    raises :class:`RestoreRefused` naming the first bad message."""
    if isinstance(history, str | bytes) or not isinstance(history, Sequence):
        raise RestoreRefused(f"a restored history must be a list of messages, got "
                             f"{type(history).__name__}")
    messages: list[Message] = []
    open_calls: dict[str, str] = {}
    answered: set[str] = set()
    for index, raw in enumerate(history):
        message = _message(index, raw)
        if message.role == "system":
            raise RestoreRefused(f"message {index}: a restored history may not hold a system "
                                 "message (instructions come from the agent); drop it")
        if message.role == "tool":
            _answer(index, message, open_calls, answered)
        else:
            if open_calls:
                raise RestoreRefused(
                    f"message {index} ({message.role}) comes before tool call(s) "
                    f"{sorted(open_calls)} were answered; each tool call needs its result "
                    "right after the assistant message that made it")
            if message.role == "user" and message.tool_calls:
                raise RestoreRefused(f"message {index}: a user message cannot make tool calls")
            for call in message.tool_calls:
                if call.id in open_calls or call.id in answered:
                    raise RestoreRefused(f"message {index}: tool call id {call.id!r} is used "
                                         "twice in the history")
                open_calls[call.id] = call.name
        messages.append(message.model_copy(update={"source": CLIENT_TRUST,
                                                   "trust": CLIENT_TRUST}))
    if open_calls:
        raise RestoreRefused(f"tool call(s) {sorted(open_calls)} at the end of the history have "
                             "no result; restore the history up to the message before them")
    return messages


def _message(index: int, raw: Message | dict[str, Any]) -> Message:
    if isinstance(raw, Message):
        return raw
    try:
        return Message.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'message'}: {e['msg']}"
                             for e in exc.errors())
        raise RestoreRefused(f"message {index} is not a message ({problems})") from None


def _answer(index: int, message: Message, open_calls: dict[str, str],
            answered: set[str]) -> None:
    call_id = message.tool_call_id
    if call_id is None or call_id not in open_calls:
        why = ("answers a tool call already answered" if call_id in answered
               else "answers no tool call made before it in this history")
        raise RestoreRefused(f"message {index}: tool result for call {call_id!r} {why}; a "
                             "restored history may only hold results of calls it shows")
    name = open_calls.pop(call_id)
    if message.name is not None and message.name != name:
        raise RestoreRefused(f"message {index}: tool result names tool {message.name!r} but "
                             f"call {call_id!r} was to {name!r}")
    answered.add(call_id)
