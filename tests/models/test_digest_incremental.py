"""ModelRequest.digest continues the hash of an earlier request with the same first messages;
whatever order requests come in, it must equal the hash of the whole request's JSON."""

from __future__ import annotations

import hashlib

from tether.models import base
from tether.models.base import Message, ModelRequest, ModelSettings, ToolCall, ToolSpec


def whole(request: ModelRequest) -> str:
    """The digest as defined: sha256 of the request's JSON, settings' stream, journal_input
    (and an unset tool_choice) left out."""
    left_out = {"stream", "journal_input"}
    if request.settings.tool_choice is None:
        left_out.add("tool_choice")
    body = request.model_dump_json(exclude_defaults=False, exclude={"settings": left_out})
    return hashlib.sha256(body.encode()).hexdigest()[:16]


TOOLS = (ToolSpec(name="lookup", description="Look up — é, \u2028",
                  parameters={"type": "object", "properties": {"id": {"type": "string"}}}),)


def conversation(turns: int) -> list[Message]:
    messages = [Message.system("Be brief. ✓"), Message.user("Where is A-1?")]
    for n in range(turns):
        call = ToolCall(id=f"c{n}", name="lookup", arguments=f'{{"id": "A-{n}"}}')
        messages.append(Message.assistant("", (call,)))
        messages.append(Message.tool(call, f'{{"at": "depot {n}"}}', trust="system"))
    return messages


def test_growing_shrinking_and_diverging_requests_hash_as_a_whole() -> None:
    base._HASHED.clear()
    messages = conversation(12)
    settings = (ModelSettings(), ModelSettings(tool_choice="required", temperature=0.2,
                                               stream=True, journal_input=True))
    seen = set()
    for end in [*range(0, len(messages) + 1), 5, len(messages), 3]:
        for tools in ((), TOOLS):
            for setting in settings:
                request = ModelRequest(messages=tuple(messages[:end]), tools=tools,
                                       settings=setting)
                assert request.digest() == whole(request), (end, tools, setting)
                seen.add(request.digest())
    # A conversation that shares the first message object but not what follows.
    other = ModelRequest(messages=(messages[0], Message.user("Where is B-2?")))
    assert other.digest() == whole(other)
    # Equal messages that are other objects (a compressed, re-read context).
    copied = ModelRequest(messages=tuple(Message.model_validate(m.model_dump())
                                         for m in messages))
    assert copied.digest() == whole(copied) == ModelRequest(messages=tuple(messages)).digest()
    assert len(seen) > 50  # the requests did differ


def test_a_subclass_is_hashed_as_a_whole() -> None:
    class Tagged(ModelRequest):
        tag: str = "x"

    request = Tagged(messages=tuple(conversation(2)))
    assert request.digest() == whole(request)
    assert request.digest() != ModelRequest(messages=request.messages).digest()


def test_hash_states_kept_are_bounded() -> None:
    base._HASHED.clear()
    for n in range(base._HASHED_KEEP + 40):
        ModelRequest(messages=(Message.user(f"conversation {n}"),)).digest()
    assert len(base._HASHED) == base._HASHED_KEEP


def test_the_tools_json_is_made_once_for_the_same_specs() -> None:
    """Each request gets a new tuple of the same specs (pydantic copies it): one entry."""
    base._TAILS.clear()
    settings = ModelSettings()
    for n in range(5):
        request = ModelRequest(messages=(Message.user(f"turn {n}"),), tools=TOOLS,
                               settings=settings)
        assert request.tools is not TOOLS
        assert request.digest() == whole(request)
    assert len(base._TAILS) == 1
    changed = ModelRequest(messages=(Message.user("turn 0"),),
                           tools=(TOOLS[0].model_copy(update={"description": "other"}),))
    assert changed.digest() == whole(changed)
    assert len(base._TAILS) == 2
