"""A calendar service: people with working hours, events, and a deterministic slot search.

``find_slots`` walks the window in fixed steps on the virtual clock's dates and returns the
first free slots common to every attendee, so one scenario always proposes the same slots.
``create_event`` deliberately does not refuse double bookings: real calendars accept them, and
catching one is the job of the scenario's invariants. Every booking is recorded as its own
``calendar.create_event`` effect keyed by ``event:{title}:{start}:{attendees}``, so a booking
repeated by a blind retry shows up as two effects with one key. An idempotency key makes the
repeat a replay instead (payments' semantics).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, time
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tether.sim.services._idempotency import (
    DEFAULT_TTL_S,
    IdempotencyKeys,
    KeyInFlight,
    KeyReused,
    fingerprint,
)
from tether.sim.services._ids import IdCounter
from tether.sim.services._time import as_datetime, as_epoch, iso
from tether.sim.services.errors import Conflict, InvalidRequest, NotFound
from tether.sim.world import World
from tether.specs import StrictNumbers

__all__ = ["Calendar", "CalendarEvent", "Slot", "WorkingHours"]

_DAY_S = 86_400
_WINDOW_S_MAX = 31 * _DAY_S


class WorkingHours(StrictNumbers, BaseModel):
    """When a person can meet: ``start``–``end`` local time on ``days`` (0 = Monday)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    start: time = time(9, 0)
    end: time = time(17, 0)
    days: tuple[int, ...] = (0, 1, 2, 3, 4)
    utc_offset_min: int = Field(default=0, ge=-14 * 60, le=14 * 60)

    @model_validator(mode="after")
    def _one_day(self) -> WorkingHours:
        if self.end <= self.start:
            raise ValueError(f"working hours must end after they start ({self.start} to "
                             f"{self.end}); overnight hours are not supported")
        return self

    def contains(self, start: float, end: float) -> bool:
        """Whether [start, end) (epoch seconds) lies inside one working day."""
        offset = self.utc_offset_min * 60
        day = math.floor((start + offset) / _DAY_S) * _DAY_S
        if datetime.fromtimestamp(day, tz=UTC).weekday() not in self.days:
            return False
        opens = day + self.start.hour * 3600 + self.start.minute * 60 - offset
        closes = day + self.end.hour * 3600 + self.end.minute * 60 - offset
        return opens <= start and end <= closes


class CalendarEvent(BaseModel):
    """An event on the calendars of its ``attendees``."""

    model_config = ConfigDict(frozen=True)

    id: str
    title: str
    attendees: tuple[str, ...]
    start: datetime
    end: datetime
    status: Literal["confirmed", "cancelled"] = "confirmed"
    idempotency_key: str | None = None
    idempotent_replayed: bool = False

    def overlaps(self, start: float, end: float) -> bool:
        """Whether the event intersects [start, end) (epoch seconds)."""
        return self.start.timestamp() < end and start < self.end.timestamp()


class Slot(BaseModel):
    """A free interval common to every attendee asked about."""

    model_config = ConfigDict(frozen=True)

    start: datetime
    end: datetime


class _SeedPerson(StrictNumbers, BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    working_hours: WorkingHours = WorkingHours()


class _SeedEvent(StrictNumbers, BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = None
    title: str
    attendees: list[str]
    start: datetime
    end: datetime

    @field_validator("start", "end")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return as_datetime(as_epoch(value))


class _Seed(StrictNumbers, BaseModel):
    model_config = ConfigDict(extra="forbid")

    people: list[_SeedPerson] = Field(default_factory=list)
    events: list[_SeedEvent] = Field(default_factory=list)
    slot_step_min: int = Field(default=15, gt=0)
    idempotency_ttl_s: float = Field(default=DEFAULT_TTL_S, gt=0)


class Calendar:
    """Per-person calendars with working hours, busy events and idempotent booking.

    ``seed_state`` (times are ISO 8601, UTC when no offset is given; working hours default to
    09:00–17:00 Monday to Friday, UTC)::

        {
            "people": [{"id": "ada@example.com",
                        "working_hours": {"start": "09:00", "end": "17:00",
                                          "days": [0, 1, 2, 3, 4], "utc_offset_min": 60}}],
            "events": [{"title": "Standup", "attendees": ["ada@example.com"],
                        "start": "2026-01-05T08:00:00Z", "end": "2026-01-05T08:15:00Z"}],
            "slot_step_min": 15,
        }

    >>> cal = Calendar(World(seed=1), {"people": [{"id": "ada"}, {"id": "bo"}]})
    >>> slot = cal.find_slots(["ada", "bo"], 30, "2026-01-05T00:00Z", "2026-01-06T00:00Z")[0]
    >>> slot.start.isoformat()
    '2026-01-05T09:00:00+00:00'
    """

    #: The effects this service records in the world's ledger (``operation`` → field → the
    #: types its value can have): what a scenario's invariants may name and match on.
    EFFECTS: ClassVar[dict[str, dict[str, tuple[type, ...]]]] = {
        "create_event": {"event_id": (str,), "title": (str,), "attendees": (list,),
                         "start": (str,), "end": (str,), "idempotency_key": (str, type(None))},
        "cancel_event": {"event_id": (str,), "title": (str,), "start": (str,)},
    }

    #: What its clients may call (``env.client("calendar")``).
    OPERATIONS: ClassVar[tuple[str, ...]] = (
        "find_slots", "list_events", "create_event", "cancel_event")

    def __init__(self, world: World, seed_state: Mapping[str, Any] | None = None) -> None:
        self.world = world
        seed = _Seed.model_validate(seed_state or {})
        self.slot_step_s = seed.slot_step_min * 60
        self._people = {p.id: p.working_hours for p in seed.people}
        if len(self._people) != len(seed.people):
            raise ValueError("calendar seed: person ids must be unique")
        self._events: dict[str, CalendarEvent] = {}
        self._keys: IdempotencyKeys[CalendarEvent] = IdempotencyKeys(world.now,
                                                                     seed.idempotency_ttl_s)
        self._event_ids = IdCounter("evt_", [e.id for e in seed.events if e.id is not None])
        for e in seed.events:
            unknown = sorted(set(e.attendees) - set(self._people))
            if unknown:
                raise ValueError(f"calendar seed: event {e.title!r} names attendees {unknown} "
                                 "who are not among the people")
            if e.end <= e.start:
                raise ValueError(f"calendar seed: event {e.title!r} ends before it starts")
            event = CalendarEvent(id=e.id or self._event_ids.new(), title=e.title,
                          attendees=tuple(sorted(set(e.attendees))), start=e.start, end=e.end)
            if event.id in self._events:
                raise ValueError(f"calendar seed: event id {event.id!r} is repeated")
            self._events[event.id] = event

    def _known(self, attendees: Sequence[str]) -> tuple[str, ...]:
        if isinstance(attendees, str) or not attendees:
            raise InvalidRequest("attendees must be a non-empty list of people", "calendar",
                                 "attendees")
        for person in attendees:
            if person not in self._people:
                raise NotFound(f"no calendar for {person!r}", "calendar", "person", person)
        return tuple(sorted(set(attendees)))

    def _busy(self, person: str, start: float, end: float) -> bool:
        return any(e.status == "confirmed" and person in e.attendees and e.overlaps(start, end)
                   for e in self._events.values())

    # -- reads -----------------------------------------------------------------------------

    def find_slots(self, attendees: Sequence[str], duration_min: int,
                   window_start: datetime | str | float, window_end: datetime | str | float,
                   limit: int = 5) -> list[Slot]:
        """The first ``limit`` slots of ``duration_min`` inside the window, not in the past,
        inside every attendee's working hours and clear of their confirmed events."""
        people = self._known(attendees)
        if duration_min <= 0:
            raise InvalidRequest("duration_min must be positive", "calendar", "duration_min")
        start, end = _instant(window_start, "window_start"), _instant(window_end, "window_end")
        if not start < end <= start + _WINDOW_S_MAX:
            raise InvalidRequest("the window must end after it starts and span at most 31 days",
                                 "calendar", "window_end")
        step, length = self.slot_step_s, duration_min * 60
        cursor = math.ceil(max(start, self.world.now()) / step) * step
        slots: list[Slot] = []
        while cursor + length <= end and len(slots) < limit:
            if all(self._people[p].contains(cursor, cursor + length)
                   and not self._busy(p, cursor, cursor + length) for p in people):
                slots.append(Slot(start=as_datetime(cursor), end=as_datetime(cursor + length)))
            cursor += step
        return slots

    def list_events(self, person: str, include_cancelled: bool = False) -> list[CalendarEvent]:
        """The events of ``person`` by start time."""
        self._known([person])
        events = [e for e in self._events.values() if person in e.attendees
                  and (include_cancelled or e.status == "confirmed")]
        return sorted(events, key=lambda e: (e.start, e.id))

    # -- writes ----------------------------------------------------------------------------

    def create_event(self, title: str, attendees: Sequence[str], start: datetime | str | float,
                     end: datetime | str | float,
                     idempotency_key: str | None = None) -> CalendarEvent:
        """Book an event (double bookings are accepted); a repeated idempotency key replays."""
        people = self._known(attendees)
        begins, ends = _instant(start, "start"), _instant(end, "end")
        if ends <= begins:
            raise InvalidRequest("an event must end after it starts", "calendar", "end")
        if idempotency_key is None:
            return self._create(title, people, begins, ends, None)
        signature = fingerprint("create_event", {"title": title, "attendees": people,
                                                 "start": begins, "end": ends})
        try:
            saved = self._keys.lookup(idempotency_key, signature)
        except KeyInFlight:
            raise Conflict(f"a booking with idempotency key {idempotency_key!r} is in progress; "
                           "retry later with the same key", "calendar", "in_flight") from None
        except KeyReused:
            raise Conflict(f"idempotency key {idempotency_key!r} was used for a different "
                           "event; use a new key for a new event", "calendar",
                           "mismatch") from None
        if saved is not None:
            return saved.replay().model_copy(update={"idempotent_replayed": True})
        event = self._create(title, people, begins, ends, idempotency_key)
        self._keys.save(idempotency_key, signature, event)
        return event

    def _create(self, title: str, people: tuple[str, ...], start: float, end: float,
                idempotency_key: str | None) -> CalendarEvent:
        event = CalendarEvent(id=self._event_ids.new(), title=title, attendees=people,
                      start=as_datetime(start), end=as_datetime(end),
                      idempotency_key=idempotency_key)
        self._events[event.id] = event
        self.world.effect("calendar", "create_event",
                          key=f"event:{title}:{iso(start)}:{','.join(people)}",
                          event_id=event.id, title=title, attendees=list(people),
                          start=iso(start), end=iso(end), idempotency_key=idempotency_key)
        return event

    def cancel_event(self, id: str) -> CalendarEvent:
        """Cancel event ``id``; cancelling a cancelled event changes nothing."""
        event = self._events.get(id)
        if event is None:
            raise NotFound(f"no event {id!r}", "calendar", "event", id)
        if event.status == "confirmed":
            event = self._events[id] = event.model_copy(update={"status": "cancelled"})
            self.world.effect("calendar", "cancel_event", key=f"cancel:{id}", event_id=id,
                              title=event.title, start=iso(event.start.timestamp()))
        return event

    def begin_request(self, idempotency_key: str) -> None:
        """Fault hook: hold ``idempotency_key`` in flight (409) until :meth:`finish_request`."""
        self._keys.begin(idempotency_key)

    def finish_request(self, idempotency_key: str) -> None:
        """Release ``idempotency_key`` held by :meth:`begin_request`."""
        self._keys.finish(idempotency_key)

    def snapshot(self) -> dict[str, Any]:
        """Canonical state: working hours and events by id (``events.evt_0001.status``)."""
        return {
            "people": {p: wh.model_dump(mode="json") for p, wh in sorted(self._people.items())},
            "events": {i: e.model_dump(mode="json", exclude={"idempotent_replayed"})
                       for i, e in sorted(self._events.items())},
        }


def _instant(value: datetime | str | float, param: str) -> float:
    try:
        epoch = as_epoch(value)
        # Every time derived from an instant (slot cursors, day starts in a person's offset)
        # lies within a window's span of it, so that span must be a datetime too: an epoch
        # beyond year 9999 is the caller's mistake (400), not the service's crash.
        as_datetime(epoch - _WINDOW_S_MAX), as_datetime(epoch + _WINDOW_S_MAX)
    except (TypeError, ValueError, OverflowError, OSError):
        raise InvalidRequest(f"{param} must be an ISO 8601 time between years 1 and 9999, "
                             f"got {value!r}", "calendar", param) from None
    return epoch
