"""Calendar: deterministic slot search, booking effects, double bookings, idempotent creation."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tether.sim.services.calendar import Calendar, CalendarEvent
from tether.sim.services.errors import Conflict, InvalidRequest, NotFound
from tether.sim.world import World

from .conftest import DAY_S, HOUR_S

# 2026-01-05 is a Monday; the clock starts on Thursday 2026-01-01.
MON = "2026-01-05T00:00:00Z"
TUE = "2026-01-06T00:00:00Z"

SEED: dict[str, Any] = {
    "people": [
        {"id": "ada"},
        {"id": "bo", "working_hours": {"start": "09:00", "end": "17:00", "utc_offset_min": 60}},
        {"id": "cy", "working_hours": {"start": "13:00", "end": "15:00", "days": [0]}},
    ],
    "events": [
        {"title": "Standup", "attendees": ["ada"], "start": "2026-01-05T09:00:00Z",
         "end": "2026-01-05T10:00:00Z"},
        {"id": "evt_0001", "title": "1:1", "attendees": ["bo"], "start": "2026-01-05T10:00:00Z",
         "end": "2026-01-05T10:30:00Z"},
    ],
}


@pytest.fixture
def cal(world: World) -> Calendar:
    return Calendar(world, SEED)


def starts(slots: list[Any]) -> list[str]:
    return [s.start.strftime("%a %H:%M") for s in slots]


# -- slot search ---------------------------------------------------------------------------


def test_first_common_free_slots(cal: Calendar) -> None:
    """Slots are inside everyone's working hours (offsets applied) and clear of their events."""
    slots = cal.find_slots(["ada", "bo"], 30, MON, TUE)
    assert starts(slots) == ["Mon 10:30", "Mon 10:45", "Mon 11:00", "Mon 11:15", "Mon 11:30"]
    assert all((s.end - s.start).total_seconds() == 1800 for s in slots)


def test_working_hours_bound_the_search(cal: Calendar) -> None:
    """The last slot ends when the earliest-closing attendee stops (bo: 16:00 UTC)."""
    slots = cal.find_slots(["ada", "bo"], 60, MON, TUE, limit=100)
    assert starts(slots)[-1] == "Mon 15:00"
    assert starts(cal.find_slots(["cy", "ada"], 60, MON, TUE, limit=10)) == [
        "Mon 13:00", "Mon 13:15", "Mon 13:30", "Mon 13:45", "Mon 14:00"]


def test_weekends_and_off_days_are_skipped(cal: Calendar) -> None:
    """No slot falls on a day outside a person's working days."""
    assert cal.find_slots(["ada"], 30, "2026-01-03T00:00Z", MON) == []
    assert starts(cal.find_slots(["cy"], 30, "2026-01-01T00:00Z", "2026-01-13T00:00Z"))[0] \
        == "Mon 13:00"


def test_no_slots_in_the_past(world: World, cal: Calendar) -> None:
    """The search starts at the virtual now, rounded up to the step."""
    world.clock.advance(10 * HOUR_S + 7 * 60)  # Thursday 10:07
    assert starts(cal.find_slots(["ada"], 30, "2026-01-01T00:00Z", TUE, limit=1)) == [
        "Thu 10:15"]


def test_limit_and_window_end(cal: Calendar) -> None:
    """At most ``limit`` slots, none ending after the window."""
    assert len(cal.find_slots(["ada"], 30, MON, TUE, limit=2)) == 2
    assert starts(cal.find_slots(["ada"], 30, "2026-01-05T15:00Z", "2026-01-05T16:00Z",
                                 limit=10)) == ["Mon 15:00", "Mon 15:15", "Mon 15:30"]


@pytest.mark.parametrize(("args", "error", "param"), [
    ((["ada"], 0, MON, TUE), InvalidRequest, "duration_min"),
    ((["ada"], 30, TUE, MON), InvalidRequest, "window_end"),
    ((["ada"], 30, MON, "2026-03-01T00:00Z"), InvalidRequest, "window_end"),
    ((["ada"], 30, "next monday", TUE), InvalidRequest, "window_start"),
    (([], 30, MON, TUE), InvalidRequest, "attendees"),
    (("ada", 30, MON, TUE), InvalidRequest, "attendees"),
])
def test_bad_searches(cal: Calendar, args: tuple[Any, ...], error: type[Exception],
                      param: str) -> None:
    """Malformed searches are InvalidRequest naming the parameter."""
    with pytest.raises(error) as info:
        cal.find_slots(*args)
    assert getattr(info.value, "param", None) == param


def test_unknown_attendee(cal: Calendar) -> None:
    """An attendee without a calendar is NotFound."""
    with pytest.raises(NotFound) as info:
        cal.find_slots(["ada", "zed"], 30, MON, TUE)
    assert info.value.resource_id == "zed"


@settings(max_examples=50, deadline=None)
@given(st.lists(st.sampled_from(["ada", "bo", "cy"]), min_size=1, max_size=3),
       st.sampled_from([15, 30, 45, 60, 90]), st.integers(min_value=0, max_value=6))
def test_slot_search_is_deterministic_and_sound(attendees: list[str], duration_min: int,
                                                day: int) -> None:
    """The same search gives the same slots in any world, and every slot is really free."""
    window = (f"2026-01-0{day + 1}T00:00:00Z", "2026-01-12T00:00:00Z")
    found = [Calendar(World(seed=s), SEED).find_slots(attendees, duration_min, *window, limit=8)
             for s in (1, 2)]
    assert found[0] == found[1]
    cal = Calendar(World(seed=1), SEED)
    for slot in found[0]:
        for person in attendees:
            assert not any(e.start < slot.end and slot.start < e.end
                           for e in cal.list_events(person))


# -- booking -------------------------------------------------------------------------------


def test_create_event_records_its_effect(world: World, cal: Calendar) -> None:
    """A booking is stored with sorted attendees and recorded under its business key."""
    event = cal.create_event("Sync", ["bo", "ada"], "2026-01-05T10:30:00Z",
                             "2026-01-05T11:00:00Z")
    assert (event.id, event.attendees, event.status) == ("evt_0003", ("ada", "bo"), "confirmed")
    effect = world.ledger.of("calendar", "create_event")[0]
    assert effect.key == "event:Sync:2026-01-05T10:30:00Z:ada,bo"
    assert dict(effect.data) == {"event_id": "evt_0003", "title": "Sync",
                                 "attendees": ["ada", "bo"], "start": "2026-01-05T10:30:00Z",
                                 "end": "2026-01-05T11:00:00Z", "idempotency_key": None}
    assert starts(cal.find_slots(["ada", "bo"], 30, MON, TUE, limit=1)) == ["Mon 11:00"]


def test_double_booking_is_accepted_and_visible_in_the_ledger(world: World,
                                                               cal: Calendar) -> None:
    """Booking the same people at the same time twice succeeds: two events, one effect key."""
    for _ in range(2):
        cal.create_event("Sync", ["ada", "bo"], "2026-01-05T10:30:00Z", "2026-01-05T11:00:00Z")
    keys = [e.key for e in world.ledger.of("calendar", "create_event")]
    assert len(keys) == 2 and keys[0] == keys[1]
    assert len(cal.list_events("ada")) == 3


def test_idempotent_creation(world: World, cal: Calendar) -> None:
    """The same key and event returns the same event, replayed, with no new effect."""
    first = cal.create_event("Sync", ["ada"], "2026-01-05T11:00:00Z", "2026-01-05T11:30:00Z",
                             idempotency_key="k1")
    again = cal.create_event("Sync", ["ada"], "2026-01-05T11:00:00+00:00",
                             "2026-01-05T11:30:00Z", idempotency_key="k1")
    assert again.id == first.id and again.idempotent_replayed
    assert len(world.ledger.of("calendar")) == 1


def test_key_reused_for_another_event(world: World, cal: Calendar) -> None:
    """A key reused for another event is a 409 mismatch; nothing is booked."""
    cal.create_event("Sync", ["ada"], "2026-01-05T11:00Z", "2026-01-05T11:30Z",
                     idempotency_key="k1")
    with pytest.raises(Conflict) as info:
        cal.create_event("Sync", ["ada"], "2026-01-05T12:00Z", "2026-01-05T12:30Z",
                         idempotency_key="k1")
    assert info.value.reason == "mismatch" and len(world.ledger) == 1


def test_key_in_flight_and_expiry(world: World, cal: Calendar) -> None:
    """A key in flight is a retryable 409; a key older than 24 h books again."""
    cal.begin_request("k1")
    with pytest.raises(Conflict) as info:
        cal.create_event("Sync", ["ada"], "2026-01-05T11:00Z", "2026-01-05T11:30Z",
                         idempotency_key="k1")
    assert info.value.retryable
    cal.finish_request("k1")
    cal.create_event("Sync", ["ada"], "2026-01-05T11:00Z", "2026-01-05T11:30Z",
                     idempotency_key="k1")
    world.clock.advance(DAY_S)
    cal.create_event("Sync", ["ada"], "2026-01-05T11:00Z", "2026-01-05T11:30Z",
                     idempotency_key="k1")
    assert len(world.ledger.of("calendar", "create_event")) == 2


def test_bad_bookings(world: World, cal: Calendar) -> None:
    """Events must end after they start and name known people."""
    with pytest.raises(InvalidRequest):
        cal.create_event("X", ["ada"], "2026-01-05T11:00Z", "2026-01-05T11:00Z")
    with pytest.raises(NotFound):
        cal.create_event("X", ["zed"], "2026-01-05T11:00Z", "2026-01-05T12:00Z")
    assert len(world.ledger) == 0


def test_cancel_event(world: World, cal: Calendar) -> None:
    """Cancelling records one effect, frees the time, and a second cancel changes nothing."""
    event = cal.cancel_event("evt_0001")
    assert event.status == "cancelled"
    cal.cancel_event("evt_0001")
    assert [e.key for e in world.ledger.of("calendar", "cancel_event")] == ["cancel:evt_0001"]
    assert cal.list_events("bo") == []
    assert [e.id for e in cal.list_events("bo", include_cancelled=True)] == ["evt_0001"]
    assert starts(cal.find_slots(["bo"], 30, MON, TUE, limit=9))[-1] == "Mon 10:00"
    with pytest.raises(NotFound):
        cal.cancel_event("evt_9")


def test_events_validate_back_from_their_json(cal: Calendar) -> None:
    """A journaled (JSON) event validates back into an equal event."""
    event = cal.create_event("Sync", ["ada"], "2026-01-05T11:00Z", "2026-01-05T11:30Z")
    assert CalendarEvent.model_validate(event.model_dump(mode="json")) == event


def test_list_events_by_start(cal: Calendar) -> None:
    """A person's events are listed by start time."""
    cal.create_event("Early", ["ada"], "2026-01-05T07:00Z", "2026-01-05T07:30Z")
    assert [e.title for e in cal.list_events("ada")] == ["Early", "Standup"]


# -- seeds and snapshots -------------------------------------------------------------------


@pytest.mark.parametrize(("seed", "error", "message"), [
    ({"events": [{"title": "X", "attendees": ["zed"], "start": MON, "end": TUE}]},
     ValueError, "zed"),
    ({"people": [{"id": "a"}], "events": [{"title": "X", "attendees": ["a"], "start": TUE,
                                           "end": MON}]}, ValueError, "ends before"),
    ({"people": [{"id": "a", "working_hours": {"start": "18:00", "end": "09:00"}}]},
     ValidationError, "overnight"),
    ({"people": [{"id": "a", "hours": {}}]}, ValidationError, "hours"),
])
def test_bad_seeds(world: World, seed: dict[str, Any], error: type[Exception],
                   message: str) -> None:
    """Seeds that do not fit are refused with the facts."""
    with pytest.raises(error, match=message):
        Calendar(world, seed)


def test_snapshot() -> None:
    """The snapshot is canonical JSON of working hours and events by id, identical across runs."""
    def run() -> str:
        world = World(seed=4)
        cal = Calendar(world, SEED)
        cal.create_event("Sync", ["ada"], "2026-01-05T11:00Z", "2026-01-05T11:30Z")
        cal.cancel_event("evt_0001")
        return json.dumps(cal.snapshot(), sort_keys=True)

    snap = json.loads(run())
    assert snap["events"]["evt_0001"]["status"] == "cancelled"
    assert snap["people"]["bo"]["utc_offset_min"] == 60
    assert run() == run()
