"""Decoding a stored row whose checksum verified, of a kind not built yet in this process,
builds the event without validating it (nor building the kind's validator), and gives exactly
what validation gives; anything not exactly a current row of its kind still goes through
validation and its errors.

The constructing path is called directly (``_construct_trusted``) where this process has
built the kind already (``decode`` then validates, the cheaper way once built), and through
``decode`` in a fresh interpreter.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tether.errors import CorruptJournal, SchemaTooNew
from tether.events import (
    ModelCalled,
    RunDequeued,
    RunFinished,
    RunStarted,
    RunStatus,
    StepRecorded,
    TimerStarted,
    ToolAmbiguous,
    TurnFinished,
    TurnStarted,
    VariableSet,
    _construct_trusted,
    _Event,
    checksum,
    decode,
    encode_with_checksum,
)

SAMPLES: list[_Event] = [
    RunStarted(seq=1, at=0.0, workflow="w", seed=7, input={"a": [1, 2.5, None]}),
    RunStarted(seq=1, at=0.0, workflow="w", seed=7, queue="mail"),
    StepRecorded(seq=2, at=1.5, pos=0, call="step", name="s", result=float("inf")),
    StepRecorded(seq=2, at=1.5, pos=0, call="step", name="\ud800 lone", result="\ud83d"),
    TimerStarted(seq=3, at=2.0, pos=1, wake_at=9.0, parked=True),
    ToolAmbiguous(seq=4, at=3.0, pos=2, tool="refund", key="k", reason="lost"),
    ModelCalled(seq=5, at=4.0, pos=3, model="m", request_digest="d", response={"text": "hi"},
                tool_descriptions={"t": "d"}),
    VariableSet(seq=6, at=5.0, name="x", value=1, by="tool"),
    TurnFinished(seq=7, at=6.0, turn=1, run_id="r2", status=RunStatus.COMPLETED),
    RunFinished(seq=8, at=7.0, status=RunStatus.ESCALATED, reason="why", result=[1]),
]


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: type(e).__name__)
def test_trusted_row_equals_the_validated_event(event: _Event) -> None:
    """A checksummed row decodes to the event validation gives (same field types, a
    RunStatus not a str), and encodes back to the same bytes."""
    body, crc = encode_with_checksum(event)
    fast = _construct_trusted(type(event), json.loads(body))
    slow = type(event).model_validate(json.loads(body))
    assert fast is not None
    assert fast == slow == event == decode(body, run_id="r", seq=event.seq, crc=crc)
    assert fast.model_fields_set == slow.model_fields_set
    assert {k: type(v) for k, v in fast.__dict__.items()} == \
        {k: type(v) for k, v in slow.__dict__.items()}
    assert encode_with_checksum(fast) == (body, crc)


def test_a_whole_float_written_as_an_int_is_read_as_a_float() -> None:
    """``"at":3`` (an int in JSON) is a float in the event, as validation makes it."""
    body = '{"seq":1,"at":3,"v":1,"kind":"run_dequeued"}'
    event = _construct_trusted(RunDequeued, json.loads(body))
    assert event is not None and event.at == 3.0 and type(event.at) is float
    assert decode(body, seq=1, crc=checksum(body)) == event


def test_rows_not_exactly_of_their_kind_are_not_constructed() -> None:
    """An unknown field, a missing required one, a float field holding a string or a status
    that is none: the constructing path declines, so validation decides."""
    declined = ['{"seq":1,"at":0.0,"v":1,"kind":"run_started","workflow":"w","seed":1,"x":1}',
                '{"seq":1,"at":0.0,"v":1,"kind":"step","pos":0,"call":"step"}',
                '{"seq":1,"at":"noon","v":1,"kind":"run_dequeued"}',
                '{"seq":1,"at":0.0,"v":1,"kind":"run_finished","status":"exploded"}']
    kinds: list[type[_Event]] = [RunStarted, StepRecorded, RunDequeued, RunFinished]
    for body, kind in zip(declined, kinds, strict=True):
        assert _construct_trusted(kind, json.loads(body)) is None, body


def test_an_unknown_field_is_still_schema_too_new() -> None:
    """A checksummed row with a field this tether does not know was written by a newer one."""
    raw = json.loads(encode_with_checksum(RunStarted(seq=1, at=0.0, workflow="w", seed=1))[0])
    raw["priority"] = 3
    body = json.dumps(raw, separators=(",", ":"))
    with pytest.raises(SchemaTooNew, match=r"\(priority\)"):
        decode(body, run_id="r", seq=1, crc=checksum(body))


def test_a_missing_or_mistyped_field_is_still_corrupt() -> None:
    """A checksummed row lacking a required field, or with a status that is not one, fails
    validation as before."""
    body = '{"seq":1,"at":0.0,"v":1,"kind":"step","pos":0,"call":"step"}'
    with pytest.raises(CorruptJournal, match="does not match its schema"):
        decode(body, seq=1, crc=checksum(body))
    body = '{"seq":1,"at":0.0,"v":1,"kind":"run_finished","status":"exploded"}'
    with pytest.raises(CorruptJournal, match="does not match its schema"):
        decode(body, seq=1, crc=checksum(body))
    body = '{"seq":1,"at":"noon","v":1,"kind":"run_dequeued"}'
    with pytest.raises(CorruptJournal, match="does not match its schema"):
        decode(body, seq=1, crc=checksum(body))


def test_a_newer_version_is_still_schema_too_new() -> None:
    """The version check comes before any shortcut."""
    body = '{"seq":1,"at":0.0,"v":2,"kind":"run_dequeued"}'
    with pytest.raises(SchemaTooNew, match="version 2"):
        decode(body, seq=1, crc=checksum(body))


def test_importing_and_reading_builds_no_validator() -> None:
    """``import tether.events`` builds no event model, and reading trusted rows of a kind does
    not build it either (a fresh interpreter, so nothing earlier built it)."""
    code = (
        "import tether.events as ev\n"
        "built = lambda: sorted(c.__name__ for c in ev._KINDS.values()\n"
        "                       if c.__pydantic_complete__)\n"
        "assert built() == [], built()\n"
        "body = '{\"seq\":1,\"at\":0.0,\"v\":1,\"kind\":\"step\",\"pos\":0,\"call\":\"step\","
        "\"name\":\"s\",\"result\":1}'\n"
        "e = ev.decode(body, seq=1, crc=ev.checksum(body))\n"
        "assert type(e) is ev.StepRecorded and e.result == 1, e\n"
        "assert built() == [], built()\n"
        "ev.decode(body, seq=1)\n"  # no checksum: validated, so this kind is built now
        "assert built() == ['StepRecorded'], built()\n"
        "assert ev.decode(body, seq=1, crc=ev.checksum(body)) == e\n"  # built: validated
        "bad = body.replace('\"name\":\"s\",', '')\n"  # a required field gone, checksummed
        "try:\n"
        "    ev.decode(bad, seq=1, crc=ev.checksum(bad))\n"
        "except ev.CorruptJournal as exc:\n"
        "    assert 'does not match its schema' in str(exc), exc\n"
        "else:\n"
        "    raise AssertionError('a row without its name decoded')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr


def test_a_mutable_default_is_not_shared() -> None:
    """Two constructed events left at a list default hold two lists, as validated ones do."""
    body = '{"seq":1,"at":0.0,"v":1,"kind":"turn_started","turn":1,"run_id":"r"}'
    first = _construct_trusted(TurnStarted, json.loads(body))
    second = _construct_trusted(TurnStarted, json.loads(body))
    assert isinstance(first, TurnStarted) and isinstance(second, TurnStarted)
    assert first.roles == second.roles == TurnStarted.model_validate(json.loads(body)).roles
    assert first.roles is not second.roles
