"""Journal events: canonical encoding, checks on decode, status derivation."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tether.errors import CorruptJournal, SchemaTooNew
from tether.events import (
    RunDequeued,
    RunFinished,
    RunStarted,
    RunStatus,
    StepRecorded,
    TimerFired,
    TimerStarted,
    ToolIntent,
    WaitResolved,
    WaitStarted,
    checksum,
    decode,
    encode,
    status_after,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=12,
)


@given(seq=st.integers(1, 10**9), at=st.floats(0, 4e9), pos=st.integers(0, 10**6),
       name=st.text(max_size=30), result=json_values)
def test_step_round_trips_through_its_stored_form(seq: int, at: float, pos: int, name: str,
                                                  result: object) -> None:
    """decode(encode(e)) == e, and the checksum of the stored text verifies."""
    event = StepRecorded(seq=seq, at=at, pos=pos, call="step", name=name, result=result)
    body = encode(event)
    assert decode(body, seq=seq, crc=checksum(body)) == event


@given(args=st.dictionaries(st.text(max_size=8), json_values, max_size=5),
       key=st.text(min_size=1, max_size=40))
def test_tool_intent_round_trips(args: dict[str, object], key: str) -> None:
    """Tool intents keep their arguments and key exactly."""
    event = ToolIntent(seq=3, at=1.0, pos=1, tool="refund", effect="idempotent", key=key,
                       args=args)
    assert decode(encode(event)) == event


def test_altered_body_fails_its_checksum() -> None:
    """One changed byte is reported as corruption naming run and seq."""
    body = encode(StepRecorded(seq=4, at=1.0, pos=0, call="step", name="a", result=1))
    with pytest.raises(CorruptJournal, match=r"run 'r1' event seq 4: checksum mismatch"):
        decode(body.replace('"result":1', '"result":2'), run_id="r1", seq=4, crc=checksum(body))


def test_unknown_kind_and_newer_version_are_schema_too_new() -> None:
    """Events from a newer tether are refused with an upgrade hint, never skipped."""
    with pytest.raises(SchemaTooNew, match="unknown event kind 'teleported'"):
        decode(json.dumps({"kind": "teleported", "seq": 1, "at": 0}))
    newer = json.loads(encode(TimerFired(seq=2, at=0.0, pos=0)))
    newer["v"] = 99
    with pytest.raises(SchemaTooNew, match="version 99"):
        decode(json.dumps(newer))


def test_malformed_bodies_are_corrupt() -> None:
    """Non-JSON and schema-breaking bodies are CorruptJournal; a seq mismatch too."""
    with pytest.raises(CorruptJournal, match="not JSON"):
        decode("{torn")
    with pytest.raises(CorruptJournal, match="does not match its schema"):
        decode(json.dumps({"kind": "timer_fired", "seq": 1, "at": 0}))
    body = encode(TimerFired(seq=2, at=0.0, pos=0))
    with pytest.raises(CorruptJournal, match="body says seq 2"):
        decode(body, seq=3)


def test_status_follows_the_journal() -> None:
    """started → running, wait → waiting, resolution → running, finish → its status."""
    started = RunStarted(seq=1, at=0, workflow="w", seed=1)
    status = status_after(None, started)
    assert status is RunStatus.RUNNING
    status = status_after(status, WaitStarted(seq=2, at=0, pos=0, key="k"))
    assert status is RunStatus.WAITING
    status = status_after(status, WaitResolved(seq=3, at=0, key="k"))
    assert status is RunStatus.RUNNING
    finished = RunFinished(seq=4, at=0, status=RunStatus.ESCALATED, reason="why")
    assert status_after(status, finished) is RunStatus.ESCALATED
    assert RunStatus.ESCALATED.finished and not RunStatus.WAITING.finished


def test_fields_added_later_stay_out_of_old_journals() -> None:
    """A run started in place and a sleeping timer encode exactly as before queues existed."""
    started = RunStarted(seq=1, at=2.5, workflow="w", seed=7, input={"a": 1})
    assert encode(started) == ('{"seq":1,"at":2.5,"v":1,"kind":"run_started","workflow":"w",'
                               '"input":{"a":1},"seed":7,"session_id":null}')
    timer = TimerStarted(seq=2, at=3.0, pos=0, wake_at=9.0)
    assert encode(timer) == '{"seq":2,"at":3.0,"v":1,"kind":"timer_started","pos":0,"wake_at":9.0}'


def test_queued_run_and_parked_timer_round_trip() -> None:
    """queue, parked and run_dequeued are stored and read back equal."""
    for event in (RunStarted(seq=1, at=0, workflow="w", seed=1, queue="mail"),
                  RunDequeued(seq=2, at=1.0),
                  TimerStarted(seq=3, at=1.0, pos=0, wake_at=60.0, parked=True)):
        body = encode(event)
        assert decode(body, seq=event.seq, crc=checksum(body)) == event


def test_queued_run_status_follows_the_journal() -> None:
    """enqueued → queued, dequeued → running, parked timer → waiting, fired → running."""
    status = status_after(None, RunStarted(seq=1, at=0, workflow="w", seed=1, queue="default"))
    assert status is RunStatus.QUEUED and not status.finished
    status = status_after(status, RunDequeued(seq=2, at=1))
    assert status is RunStatus.RUNNING
    assert status_after(status, RunDequeued(seq=3, at=1)) is RunStatus.RUNNING
    assert status_after(status, TimerStarted(seq=3, at=1, pos=0, wake_at=5)) is status
    status = status_after(status, TimerStarted(seq=3, at=1, pos=0, wake_at=5, parked=True))
    assert status is RunStatus.WAITING
    assert status_after(status, TimerFired(seq=4, at=5, pos=0)) is RunStatus.RUNNING


def test_a_field_from_a_newer_tether_is_schema_too_new() -> None:
    """An event with fields this tether does not know was written by a newer one: upgrade,
    not corruption (as a queued run_started would have been to the tether before queues)."""
    newer = json.loads(encode(RunStarted(seq=1, at=0.0, workflow="w", seed=1)))
    newer["priority"] = 3
    with pytest.raises(SchemaTooNew, match=r"run_started has fields .* \(priority\).*upgrade"):
        decode(json.dumps(newer), run_id="r1", seq=1)
    newer["seed"] = "not a seed"
    with pytest.raises(CorruptJournal, match="does not match its schema"):
        decode(json.dumps(newer), run_id="r1", seq=1)
