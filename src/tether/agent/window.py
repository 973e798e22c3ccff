"""Context assembly: which messages go to the model, within a token budget.

The conversation is kept whole in the loop; before each model call the window checks its size
and, when it is over ``max_tokens`` (or the provider said the context overflowed), asks the
compressor for a shorter conversation. Compression runs as a durable step, so a resumed run
continues from the same compressed history and a summarizing model is not paid twice.

Two compressors come built in: :func:`drop_oldest` (drop whole turns, oldest first, keeping the
system messages and the task) and :func:`summarize_with` (replace the dropped turns with one
summary message written by a function of your choice); :func:`summarize_with_model` has a
model write the summary.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from tether.models.base import Message, Model, ModelRequest
from tether.runtime.provenance import Trust

__all__ = ["Compressor", "ContextWindow", "drop_oldest", "estimate_tokens", "summarize_with"]

#: ``(messages, target_tokens, count) -> shorter messages``.
Compressor = Callable[
    [list[Message], int, Callable[[Message], int]], list[Message] | Awaitable[list[Message]]
]


def estimate_tokens(message: Message) -> int:
    """About one token per four characters, plus a little per message: a deliberate estimate,
    good enough for budgets; pass a real tokenizer as ``ContextWindow(count=...)``."""
    chars = len(message.content) + sum(len(c.arguments) + len(c.name) for c in message.tool_calls)
    return 4 + chars // 4


def _turns(messages: Sequence[Message]) -> tuple[list[Message], list[list[Message]]]:
    """Split into the kept head (system messages and the first user message) and turns; an
    assistant message and the tool results answering it form one turn, so a cut never leaves
    a tool result without its call."""
    head: list[Message] = []
    rest = list(messages)
    while rest and rest[0].role == "system":
        head.append(rest.pop(0))
    if rest and rest[0].role == "user":
        head.append(rest.pop(0))
    turns: list[list[Message]] = []
    for message in rest:
        if message.role == "tool" and turns:
            turns[-1].append(message)
        else:
            turns.append([message])
    return head, turns


def _split(messages: list[Message], target_tokens: int, count: Callable[[Message], int],
           ) -> tuple[list[Message], list[list[Message]], list[Message]]:
    """(head, the oldest turns to drop, the messages kept): whole turns, oldest first, until
    the conversation fits; the last turn always stays."""
    head, turns = _turns(messages)
    total = sum(count(m) for m in messages)
    cut = 0
    while total > target_tokens and len(turns) - cut > 1:
        total -= sum(count(m) for m in turns[cut])
        cut += 1
    return head, turns[:cut], [m for turn in turns[cut:] for m in turn]


def drop_oldest(messages: list[Message], target_tokens: int,
                count: Callable[[Message], int]) -> list[Message]:
    """Drop whole turns, oldest first, until the conversation fits (the last turn is kept)."""
    head, dropped, kept = _split(messages, target_tokens, count)
    if not dropped:
        return list(messages)
    note = Message(role="user", source="harness", content=(
        f"[{len(dropped)} earlier turn(s) were removed to fit the context window]"))
    return [*head, note, *kept]


def summarize_with(
    summarize: Callable[[list[Message]], str | Awaitable[str]],
) -> Compressor:
    """A compressor replacing the oldest turns by ``summarize(dropped_messages)``."""

    async def compress(messages: list[Message], target_tokens: int,
                       count: Callable[[Message], int]) -> list[Message]:
        head, turns, kept = _split(messages, target_tokens, count)
        if not turns:
            return list(messages)
        dropped = [m for turn in turns for m in turn]
        summary = summarize(dropped)
        if inspect.isawaitable(summary):
            summary = await summary
        # A summary is as trustworthy as the least trusted thing it summarizes.
        trusts = [Trust(m.trust) for m in dropped if m.trust is not None]
        lowest = min(trusts, key=lambda t: t.rank).value if trusts else None
        note = Message(role="user", source="summary", trust=lowest,
                       content=f"Summary of the earlier conversation: {summary}")
        return [*head, note, *kept]

    return compress


SUMMARY_INSTRUCTIONS = (
    "Summarize the conversation below for the assistant that will continue it: the user's "
    "goal, facts established (ids, amounts, names), actions already taken and their results, "
    "and what remains. Be brief and precise; do not invent anything."
)


def summarize_with_model(model: Model, instructions: str = SUMMARY_INSTRUCTIONS) -> Compressor:
    """A compressor whose summaries are written by ``model`` (often a cheaper one). It runs
    inside the durable compression step, so a resumed run does not ask for it again."""

    async def summarize(dropped: list[Message]) -> str:
        transcript = "\n".join(
            f"{m.role}{f' ({m.name})' if m.name else ''}: {m.content}"
            + "".join(f" [calls {c.name} {c.arguments}]" for c in m.tool_calls)
            for m in dropped
        )
        response = await model.complete(ModelRequest(
            messages=(Message.system(instructions), Message.user(transcript))))
        return response.text

    return summarize_with(summarize)


@dataclass(frozen=True, slots=True)
class ContextWindow:
    """How much conversation a model call may carry, and how to shrink it.

    ``max_tokens=None`` sends everything until the provider reports an overflow; then the
    compressor targets ``overflow_ratio`` of the current size.
    """

    max_tokens: int | None = None
    compressor: Compressor = drop_oldest
    count: Callable[[Message], int] = estimate_tokens
    overflow_ratio: float = 0.5

    def size(self, messages: Sequence[Message]) -> int:
        return sum(self.count(m) for m in messages)

    def fits(self, messages: Sequence[Message]) -> bool:
        return self.max_tokens is None or self.size(messages) <= self.max_tokens

    def target_after_overflow(self, messages: Sequence[Message]) -> int:
        current = self.size(messages)
        bound = self.max_tokens if self.max_tokens is not None else current
        return max(1, int(min(current, bound) * self.overflow_ratio))

    async def compress(self, messages: list[Message], target_tokens: int) -> list[Message]:
        result = self.compressor(messages, target_tokens, self.count)
        if inspect.isawaitable(result):
            result = await result
        return list(result)
