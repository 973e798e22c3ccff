"""A CRM with a primary and a lagging read replica.

Writes go to the primary at once; reads come from a replica that reflects the primary as of
``now - lag_s``. The fault layer can also open a *stale window* (:meth:`CRM.go_stale`): until it
closes, the replica serves the state as of the window's start, which is how "the CRM returns
stale data for ninety seconds" is reproduced. Every version is kept with the virtual time it was
written, so any past state can be served exactly.

Notes are append-only free text. Their text is stored as given: a note may carry a prompt
injection, and that is for the agent's harness to handle, not the CRM.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar, Generic, Literal, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, Field

from tether.sim.services._ids import IdCounter
from tether.sim.services._time import as_datetime
from tether.sim.services.errors import InvalidRequest, NotFound
from tether.sim.world import World
from tether.specs import StrictNumbers

__all__ = ["CRM", "CRMCustomer", "Note", "Ticket", "TicketStatus"]

TicketStatus = Literal["open", "pending", "closed"]
M = TypeVar("M")

# Seeded records exist "since forever": a replica lagging behind the start still sees them.
_SEEDED = float("-inf")


class Note(BaseModel):
    """An append-only note on a customer or a ticket (``target``)."""

    model_config = ConfigDict(frozen=True)

    id: str
    target: str
    text: str
    author: str
    created_at: datetime


class CRMCustomer(BaseModel):
    """A CRM customer; ``stripe_customer_id`` links it to the payments service."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    email: str
    tier: str = "standard"
    stripe_customer_id: str | None = None
    notes: tuple[Note, ...] = ()


class Ticket(BaseModel):
    """A support ticket of ``customer``."""

    model_config = ConfigDict(frozen=True)

    id: str
    customer: str
    status: TicketStatus = "open"
    subject: str
    updated_at: datetime
    notes: tuple[Note, ...] = ()


class _SeedNote(StrictNumbers, BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str
    author: str = "system"
    created_at: datetime | None = None


class _SeedCustomer(StrictNumbers, BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    name: str
    email: str
    tier: str = "standard"
    stripe_customer_id: str | None = None
    notes: list[_SeedNote | str] = Field(default_factory=list)


class _SeedTicket(StrictNumbers, BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    customer: str
    subject: str
    status: TicketStatus = "open"
    notes: list[_SeedNote | str] = Field(default_factory=list)


class _Seed(StrictNumbers, BaseModel):
    model_config = ConfigDict(extra="forbid")

    customers: list[_SeedCustomer] = Field(default_factory=list)
    tickets: list[_SeedTicket] = Field(default_factory=list)
    lag_s: float = Field(default=0.0, ge=0)


class _Versions(Generic[M]):
    """Every version of every record, with the virtual time it was written."""

    def __init__(self) -> None:
        self._times: dict[str, list[float]] = {}
        self._values: dict[str, list[M]] = {}

    def put(self, key: str, at: float, value: M) -> None:
        """Record ``value`` as the version of ``key`` written at ``at`` (times never decrease)."""
        self._times.setdefault(key, []).append(at)
        self._values.setdefault(key, []).append(value)

    def latest(self, key: str) -> M | None:
        """The primary's version of ``key``."""
        values = self._values.get(key)
        return values[-1] if values else None

    def as_of(self, key: str, at: float) -> M | None:
        """The last version written at or before ``at``."""
        times = self._times.get(key, [])
        index = bisect.bisect_right(times, at)
        return self._values[key][index - 1] if index else None

    def ids(self) -> list[str]:
        """Every key ever written, sorted."""
        return sorted(self._values)


class CRM:
    """Customers, tickets and notes behind a primary and a lagging read replica.

    ``seed_state`` (notes may be plain strings; ``lag_s`` defaults to 0)::

        {
            "customers": [{"id": "cust_001", "name": "Ada Lovelace", "email": "ada@example.com",
                           "tier": "gold", "stripe_customer_id": "cus_0001",
                           "notes": ["Prefers email.", {"text": "VIP", "author": "sam"}]}],
            "tickets": [{"id": "tkt_001", "customer": "cust_001", "subject": "Charged twice",
                         "status": "open"}],
            "lag_s": 0,
        }

    >>> world = World(seed=1)
    >>> crm = CRM(world, {"tickets": [], "customers": [
    ...     {"id": "c1", "name": "Ada", "email": "ada@example.com"}]})
    >>> crm.lag_s = 5.0
    >>> _ = crm.add_note("c1", "called back", "agent")
    >>> len(crm.get_customer("c1").notes)  # the replica is 5 s behind
    0
    >>> world.clock.advance(5.0)
    >>> len(crm.get_customer("c1").notes)
    1
    """

    #: The effects this service records in the world's ledger (``operation`` → field → the
    #: types its value can have): what a scenario's invariants may name and match on.
    EFFECTS: ClassVar[dict[str, dict[str, tuple[type, ...]]]] = {
        "ticket_status": {"ticket": (str,), "from_status": (str,), "to_status": (str,)},
        "note": {"note_id": (str,), "target": (str,), "author": (str,), "text": (str,)},
    }

    #: What its clients may call (``env.client("crm")``).
    OPERATIONS: ClassVar[tuple[str, ...]] = (
        "get_customer", "find_customer", "get_ticket", "list_tickets", "update_ticket",
        "add_note", "primary_notes")

    def __init__(self, world: World, seed_state: Mapping[str, Any] | None = None) -> None:
        self.world = world
        seed = _Seed.model_validate(seed_state or {})
        self.lag_s = seed.lag_s
        self.stale_from: float | None = None
        self.stale_until: float | None = None
        self._customers: _Versions[CRMCustomer] = _Versions()
        self._tickets: _Versions[Ticket] = _Versions()
        self._notes: list[tuple[float, Note]] = []
        self._note_ids = IdCounter("note_")
        ids = [c.id for c in seed.customers] + [t.id for t in seed.tickets]
        if len(set(ids)) != len(ids):
            twice = sorted({i for i in ids if ids.count(i) > 1})
            raise ValueError(f"crm seed: customer and ticket ids must be unique together; "
                             f"repeated: {twice}")
        start = as_datetime(world.now())
        for c in seed.customers:
            self._customers.put(c.id, _SEEDED, CRMCustomer(
                id=c.id, name=c.name, email=c.email, tier=c.tier,
                stripe_customer_id=c.stripe_customer_id))
            self._seed_notes(c.id, c.notes, start)
        for t in seed.tickets:
            if self._customers.latest(t.customer) is None:
                raise ValueError(f"crm seed: ticket {t.id} names customer {t.customer!r}, "
                                 "which is not among the customers")
            self._tickets.put(t.id, _SEEDED, Ticket(id=t.id, customer=t.customer,
                                                    status=t.status, subject=t.subject,
                                                    updated_at=start))
            self._seed_notes(t.id, t.notes, start)

    def _seed_notes(self, target: str, notes: list[_SeedNote | str], start: datetime) -> None:
        for entry in notes:
            note = _SeedNote(text=entry) if isinstance(entry, str) else entry
            self._notes.append((_SEEDED, Note(id=self._note_ids.new(), target=target,
                                              text=note.text, author=note.author,
                                              created_at=note.created_at or start)))

    # -- the replica -----------------------------------------------------------------------

    def replica_time(self) -> float:
        """The instant of the primary's history the replica serves now."""
        now = self.world.now()
        at = now - self.lag_s
        if (self.stale_from is not None and self.stale_until is not None
                and self.stale_from <= now < self.stale_until):
            at = min(at, self.stale_from)
        return at

    def go_stale(self, duration_s: float, *, age_s: float = 0.0) -> None:
        """For ``duration_s`` of virtual time, serve reads as the primary was ``age_s`` ago
        (0: frozen at the current state)."""
        now = self.world.now()
        self.stale_from, self.stale_until = now - age_s, now + duration_s

    def primary_notes(self, target: str) -> list[Note]:
        """The notes of a customer or ticket as the primary holds them now (for looking up a
        write that may or may not have happened: a replica may not show it yet)."""
        return [n for _, n in self._notes if n.target == target]

    def clear_stale(self) -> None:
        """End the stale window now."""
        self.stale_from = self.stale_until = None

    def _notes_on(self, target: str, at: float) -> tuple[Note, ...]:
        return tuple(n for t, n in self._notes if n.target == target and t <= at)

    def _customer_at(self, id: str, at: float) -> CRMCustomer | None:
        customer = self._customers.as_of(id, at)
        return None if customer is None else customer.model_copy(
            update={"notes": self._notes_on(id, at)})

    def _ticket_at(self, id: str, at: float) -> Ticket | None:
        ticket = self._tickets.as_of(id, at)
        return None if ticket is None else ticket.model_copy(
            update={"notes": self._notes_on(id, at)})

    # -- reads (from the replica) ----------------------------------------------------------

    def get_customer(self, id: str) -> CRMCustomer:
        """The customer ``id``, with its notes, as the replica sees it."""
        customer = self._customer_at(id, self.replica_time())
        if customer is None:
            raise NotFound(f"no customer {id!r}", "crm", "customer", id)
        return customer

    def find_customer(self, email: str) -> CRMCustomer:
        """The customer whose email is ``email`` (case-insensitive), as the replica sees it."""
        at = self.replica_time()
        for id in self._customers.ids():
            customer = self._customer_at(id, at)
            if customer is not None and customer.email.lower() == email.strip().lower():
                return customer
        raise NotFound(f"no customer with email {email!r}", "crm", "customer", email)

    def get_ticket(self, id: str) -> Ticket:
        """The ticket ``id``, with its notes, as the replica sees it."""
        ticket = self._ticket_at(id, self.replica_time())
        if ticket is None:
            raise NotFound(f"no ticket {id!r}", "crm", "ticket", id)
        return ticket

    def list_tickets(self, customer: str) -> list[Ticket]:
        """The tickets of ``customer`` sorted by id, as the replica sees them."""
        at = self.replica_time()
        if self._customers.as_of(customer, at) is None:
            raise NotFound(f"no customer {customer!r}", "crm", "customer", customer)
        tickets = (self._ticket_at(id, at) for id in self._tickets.ids())
        return [t for t in tickets if t is not None and t.customer == customer]

    # -- writes (to the primary) -----------------------------------------------------------

    def update_ticket(self, id: str, status: str) -> Ticket:
        """Set the status of ticket ``id``; the primary's new version is returned.

        Setting the status it already has changes nothing and records no effect.
        """
        if status not in get_args(TicketStatus):
            raise InvalidRequest(f"status must be one of open, pending, closed; got {status!r}",
                                 "crm", "status")
        ticket = self._tickets.latest(id)
        if ticket is None:
            raise NotFound(f"no ticket {id!r}", "crm", "ticket", id)
        now = self.world.now()
        if ticket.status != status:
            previous = ticket.status
            ticket = ticket.model_copy(update={"status": status, "updated_at": as_datetime(now)})
            self._tickets.put(id, now, ticket)
            self.world.effect("crm", "ticket_status", key=f"ticket:{id}:{status}", ticket=id,
                              from_status=previous, to_status=status)
        return ticket.model_copy(update={"notes": self._notes_on(id, now)})

    def add_note(self, customer_or_ticket: str, text: str, author: str = "agent") -> Note:
        """Append a note to a customer or a ticket (looked up on the primary)."""
        target = customer_or_ticket
        if self._customers.latest(target) is None and self._tickets.latest(target) is None:
            raise NotFound(f"no customer or ticket {target!r}", "crm", "customer_or_ticket",
                           target)
        if not text.strip():
            raise InvalidRequest("a note needs some text", "crm", "text")
        now = self.world.now()
        note = Note(id=self._note_ids.new(), target=target, text=text, author=author,
                    created_at=as_datetime(now))
        self._notes.append((now, note))
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        self.world.effect("crm", "note", key=f"note:{target}:{digest}", note_id=note.id,
                          target=target, author=author, text=text)
        return note

    def snapshot(self) -> dict[str, Any]:
        """Canonical state of the primary: customers and tickets with their notes, by id
        (``tickets.tkt_001.status``)."""
        latest = float("inf")
        customers = {id: self._customer_at(id, latest) for id in self._customers.ids()}
        tickets = {id: self._ticket_at(id, latest) for id in self._tickets.ids()}
        return {"customers": {i: c.model_dump(mode="json") for i, c in customers.items() if c},
                "tickets": {i: t.model_dump(mode="json") for i, t in tickets.items() if t}}
