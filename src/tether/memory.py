"""Durable agent memory: facts keyed by subject, each with its provenance, on any Store.

A fact is ``subject`` → ``key`` → ``value`` ("customer:42" / "preferred_channel" / "email")
together with where it came from: the ``source`` and :class:`~tether.runtime.provenance.Trust`
of what it was derived from, the run and step that wrote it, when, and when it expires. Reads
return that provenance, so the policy layer can treat a memory written from untrusted content as
untrusted: a fact an agent extracted from an email is still ``external`` when another run reads it
next week. The trust of a fact is the *lowest* trust of what it was derived from
(:func:`derived_trust`); an agent that writes a fact from a retrieved document must pass the
document's trust, never its own.

**Storage.** Memory is event-sourced on the ordinary :class:`~tether.store.base.Store` contract,
so it works on every backend without a schema of its own. A *namespace* is a journal under the
reserved run id ``memory:{namespace}``: ``run_started`` (workflow ``tether.memory``) and at once
``run_finished`` (completed), so recovery never tries to resume it, then one
:class:`~tether.events.MemoryWritten` or :class:`~tether.events.MemoryForgotten` per change.
The state is the fold of that journal: the latest write per (subject, key) wins, a forget removes
what came before it, and expired facts are left out of reads by the clock. A :class:`Memory`
caches the fold and catches up (``read(after_seq=…)``) before every operation, so writes made
by another process are seen; appends use optimistic concurrency and retry a lost race.

**Inside a run**, use :func:`remember_in_run` and :func:`recall_in_run`: each is a durable step,
so a replay neither writes twice nor sees a different set of facts than the first execution.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tether.clock import Clock
from tether.errors import ConcurrencyConflict, TetherError, UsageError
from tether.events import Event, MemoryForgotten, MemoryWritten, RunFinished, RunStarted, RunStatus
from tether.runtime.codec import to_json
from tether.runtime.provenance import Sourced, Trust
from tether.store.base import Store

if TYPE_CHECKING:
    from tether.runtime.context import RunContext

__all__ = ["MEMORY_WORKFLOW", "Fact", "Memory", "derived_trust", "recall_in_run",
           "remember_in_run"]

#: The workflow name of memory namespace journals (``tether runs list`` hides them).
MEMORY_WORKFLOW = "tether.memory"

#: How many lost append races in a row a change survives before ConcurrencyConflict is raised.
MAX_ATTEMPTS = 20


def derived_trust(*trusts: Trust | str) -> Trust:
    """The trust of something derived from all of ``trusts``: the lowest of them.

    >>> derived_trust("user", "retrieved").value
    'retrieved'
    """
    if not trusts:
        raise UsageError("derived_trust needs the trust of at least one input")
    return min((_trust(t) for t in trusts), key=lambda t: t.rank)


@dataclass(frozen=True, slots=True)
class Fact:
    """One remembered value with its provenance.

    ``written_at`` and ``expires_at`` are times of the memory's clock; ``run_id`` and
    ``position`` name the durable step that wrote the fact (``None`` outside a run).
    """

    subject: str
    key: str
    value: Any
    source: str
    trust: Trust
    run_id: str | None
    position: int | None
    written_at: float
    expires_at: float | None

    def trusted(self, minimum: Trust | str) -> bool:
        """Whether this fact is at least as trusted as ``minimum``."""
        return self.trust.at_least(_trust(minimum))

    def sourced(self) -> Sourced:
        """The value with its provenance, for a tool to return (see
        :class:`~tether.runtime.provenance.Sourced`): a memory keeps the trust it was written
        with, however long ago."""
        return Sourced(self.value, source=f"memory:{self.subject}/{self.key} <- {self.source}",
                       trust=self.trust)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of the fact (as journaled by :func:`recall_in_run`)."""
        return {"subject": self.subject, "key": self.key, "value": self.value,
                "source": self.source, "trust": self.trust.value, "run_id": self.run_id,
                "position": self.position, "written_at": self.written_at,
                "expires_at": self.expires_at}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fact:
        """Rebuild a fact from :meth:`to_dict`."""
        return cls(**{**data, "trust": Trust(data["trust"])})

    @classmethod
    def of(cls, event: MemoryWritten) -> Fact:
        return cls(event.subject, event.key, event.value, event.source, Trust(event.trust),
                   event.run_id, event.position, event.at, event.expires_at)


class Memory:
    """A namespace of facts in ``store``, timed by ``clock``.

    Several :class:`Memory` objects (in one process or many) may share a namespace; each sees
    the others' changes at its next operation. Methods are thread-safe.

    >>> from tether.clock import VirtualClock
    >>> from tether.store.memory import MemoryStore
    >>> clock = VirtualClock()
    >>> memory = Memory(MemoryStore(), clock=clock, namespace="support")
    >>> _ = memory.remember("order:7", "note", "call back", source="email:msg_1",
    ...                     trust="external", ttl_s=3600)
    >>> memory.recall("order:7", minimum_trust="user")
    []
    >>> clock.advance(3600)
    >>> memory.recall("order:7")
    []
    """

    def __init__(self, store: Store, *, clock: Clock, namespace: str = "default") -> None:
        if not isinstance(namespace, str) or not namespace or "\x00" in namespace:
            raise UsageError(f"memory namespace {namespace!r} must be a non-empty string "
                             "without NUL characters")
        self.store = store
        self.clock = clock
        self.namespace = namespace
        #: The journal this namespace lives in.
        self.run_id = f"memory:{namespace}"
        self._last_seq = 0
        # subject -> key -> latest fact; forgotten keys are removed, expired ones kept (the
        # clock decides at read time).
        self._facts: dict[str, dict[str, Fact]] = {}
        # (run_id, position) -> the fact that step wrote: what makes in-run writes exactly-once.
        self._by_step: dict[tuple[str, int], Fact] = {}
        self._lock = threading.Lock()

    # -- writing ----------------------------------------------------------------------------

    def remember(self, subject: str, key: str, value: Any, *, source: str, trust: Trust | str,
                 run_id: str | None = None, position: int | None = None,
                 ttl_s: float | None = None) -> Fact:
        """Store ``value`` under ``subject``/``key``, replacing what was there; return the fact.

        ``source`` and ``trust`` describe what the value was derived from: pass the lowest
        trust of its inputs (:func:`derived_trust`), e.g. ``retrieved`` for a fact read out of
        a knowledge-base article, whatever the agent's own standing. ``ttl_s`` makes the fact
        expire that many seconds of the clock from now. ``run_id`` and ``position`` name the
        step writing it; a second write from the same step returns the first fact instead of
        writing again, so a step re-executed after a crash does not remember twice.
        """
        _check_name("subject", subject)
        _check_name("key", key)
        _check_name("source", source)
        level = _trust(trust)
        data = _json_value(value, subject, key)
        if ttl_s is not None and not (isinstance(ttl_s, int | float) and 0 < ttl_s < math.inf):
            raise UsageError(f"ttl_s must be a positive number of seconds, not {ttl_s!r}")
        if (run_id is None) != (position is None):
            raise UsageError("pass run_id and position together (the step that writes the "
                             "fact), or neither")
        now = self.clock.now()
        event = MemoryWritten(
            seq=0, at=now, subject=subject, key=key, value=data, source=source,
            trust=level.value, run_id=run_id, position=position,
            expires_at=None if ttl_s is None else now + ttl_s,
        )

        def earlier_write() -> Fact | None:
            if run_id is None or position is None:
                return None
            fact = self._by_step.get((run_id, position))
            if fact is not None and (fact.subject, fact.key) != (subject, key):
                raise UsageError(
                    f"run {run_id!r} position {position} already remembered "
                    f"{fact.subject!r}/{fact.key!r} in memory {self.namespace!r}, not "
                    f"{subject!r}/{key!r}; one step writes one fact"
                )
            return fact

        with self._lock:
            written = self._commit(event, earlier_write)
        return written if isinstance(written, Fact) else Fact.of(event)

    def forget(self, subject: str, key: str | None = None, reason: str = "") -> int:
        """Forget ``subject``'s fact under ``key``, or all its facts when ``key`` is None.

        Returns how many unexpired facts were forgotten. The forget is journaled (with
        ``reason``) even when there was nothing to forget: it records that it was asked for.
        """
        _check_name("subject", subject)
        if key is not None:
            _check_name("key", key)
        event = MemoryForgotten(seq=0, at=self.clock.now(), subject=subject, key=key,
                                reason=reason)
        live = 0

        def count_live() -> None:
            # Counted on the caught-up state of each attempt, so the count is that of the
            # attempt whose append won.
            nonlocal live
            live = sum(1 for f in self._chosen(subject, key) if not self._expired(f))

        with self._lock:
            self._commit(event, count_live)
        return live

    # -- reading ----------------------------------------------------------------------------

    def recall(self, subject: str, key: str | None = None, *,
               minimum_trust: Trust | str | None = None) -> list[Fact]:
        """The current facts of ``subject`` (only the one under ``key``, if given), sorted by
        key: the latest write per key, without expired or forgotten ones, and only those at
        least ``minimum_trust`` when it is given.

        Sorted by key rather than by time so that a prompt built from a recall is stable.
        """
        _check_name("subject", subject)
        if key is not None:
            _check_name("key", key)
        floor = None if minimum_trust is None else _trust(minimum_trust)
        with self._lock:
            self._catch_up()
            return sorted(
                (f for f in self._chosen(subject, key)
                 if not self._expired(f) and (floor is None or f.trust.at_least(floor))),
                key=lambda f: f.key,
            )

    def subjects(self) -> list[str]:
        """Every subject with at least one unexpired fact, sorted."""
        with self._lock:
            self._catch_up()
            return sorted(s for s, facts in self._facts.items()
                          if any(not self._expired(f) for f in facts.values()))

    # -- the journal ------------------------------------------------------------------------

    def _chosen(self, subject: str, key: str | None) -> list[Fact]:
        facts = self._facts.get(subject, {})
        if key is None:
            return list(facts.values())
        fact = facts.get(key)
        return [] if fact is None else [fact]

    def _expired(self, fact: Fact) -> bool:
        return fact.expires_at is not None and fact.expires_at <= self.clock.now()

    def _catch_up(self) -> None:
        """Fold in every change appended since this object last read the namespace."""
        for event in self.store.read(self.run_id, after_seq=self._last_seq):
            self._apply(event)

    def _apply(self, event: Event) -> None:
        if isinstance(event, MemoryWritten):
            fact = Fact.of(event)
            self._facts.setdefault(event.subject, {})[event.key] = fact
            if event.run_id is not None and event.position is not None:
                self._by_step.setdefault((event.run_id, event.position), fact)
        elif isinstance(event, MemoryForgotten):
            if event.key is None:
                self._facts.pop(event.subject, None)
            else:
                self._facts.get(event.subject, {}).pop(event.key, None)
                if not self._facts.get(event.subject, True):
                    del self._facts[event.subject]
        elif isinstance(event, RunStarted) and event.seq == 1:
            if event.workflow != MEMORY_WORKFLOW:
                raise UsageError(
                    f"run {self.run_id!r} is a {event.workflow!r} run, not a memory namespace; "
                    "run ids starting with 'memory:' are reserved for tether.memory"
                )
        elif not isinstance(event, RunFinished):
            raise UsageError(f"memory namespace {self.run_id!r} holds a {event.kind!r} event at "
                             f"seq {event.seq}; only memory changes belong there")
        self._last_seq = event.seq

    def _commit(self, event: MemoryWritten | MemoryForgotten,
                before: Callable[[], object]) -> object:
        """Append ``event`` after the namespace's last event, creating the namespace if it is
        new, and fold it in. ``before`` runs on the caught-up state before each attempt; if it
        returns something other than None, nothing is appended and that is returned.

        A lost race (another writer appended first) is retried on the fresh state, at most
        :data:`MAX_ATTEMPTS` times.
        """
        for _ in range(MAX_ATTEMPTS):
            self._catch_up()
            answer = before()
            if answer is not None:
                return answer
            batch: list[Event] = []
            if self._last_seq == 0:
                # Created and finished in one atomic batch with the first change: a namespace
                # is never seen half-made, and never as a running run to recover.
                batch += [
                    RunStarted(seq=1, at=event.at, workflow=MEMORY_WORKFLOW,
                               input={"namespace": self.namespace}, seed=0),
                    RunFinished(seq=2, at=event.at, status=RunStatus.COMPLETED,
                                reason="memory namespace"),
                ]
            batch.append(event.model_copy(update={"seq": self._last_seq + len(batch) + 1}))
            try:
                # sync: once remembered, other runs may act on a fact; it must outlive a power
                # loss like any other output (the output-commit rule).
                self.store.append(self.run_id, batch, expected_last_seq=self._last_seq,
                                  sync=True)
            except ConcurrencyConflict:
                continue
            for appended in batch:
                self._apply(appended)
            return None
        raise ConcurrencyConflict(
            f"memory namespace {self.namespace!r}: {MAX_ATTEMPTS} appends in a row lost the "
            "race to other writers; the namespace is too contended, or a writer is stuck "
            "appending; try again later or split the namespace",
            run_id=self.run_id, expected_seq=self._last_seq,
        )


# -- durable use inside a run -------------------------------------------------------------------


async def remember_in_run(ctx: RunContext, memory: Memory, subject: str, key: str, value: Any,
                          *, source: str, trust: Trust | str,
                          ttl_s: float | None = None) -> Fact:
    """:meth:`Memory.remember` as a durable step of the run: the fact records the run and the
    step's position, and a replay returns the journaled fact instead of writing again (a crash
    between the memory write and the step's journal entry is covered too: the write is found by
    its run and position).

    >>> async def note(ctx: RunContext, memory: Memory) -> None:
    ...     await remember_in_run(ctx, memory, "order:7", "refunded", True,
    ...                           source="tool:refund", trust="system")
    """
    # The position the step is about to take: the runtime's to know, asked of its side of the
    # run (imported here: a memory used outside runs never loads the runtime).
    from tether.runtime.context import internals

    position = internals(ctx).position

    def write() -> dict[str, Any]:
        return memory.remember(subject, key, value, source=source, trust=trust,
                               run_id=ctx.run_id, position=position, ttl_s=ttl_s).to_dict()

    data = await ctx.step(f"memory.remember {subject}/{key}", write)
    return Fact.from_dict(data)


async def recall_in_run(ctx: RunContext, memory: Memory, subject: str, key: str | None = None,
                        *, minimum_trust: Trust | str | None = None) -> list[Fact]:
    """:meth:`Memory.recall` as a durable step: the facts are journaled, so a replay sees the
    same facts as the first execution even if the memory changed since."""

    def read() -> list[dict[str, Any]]:
        return [f.to_dict() for f in memory.recall(subject, key, minimum_trust=minimum_trust)]

    data = await ctx.step(f"memory.recall {subject}", read)
    return [Fact.from_dict(d) for d in data]


# -- checks ---------------------------------------------------------------------------------


def _check_name(what: str, name: object) -> None:
    if not isinstance(name, str) or not name:
        raise UsageError(f"a memory {what} must be a non-empty string, not {name!r}")


def _trust(level: Trust | str) -> Trust:
    try:
        return Trust(level)
    except ValueError as exc:
        choices = ", ".join(t.value for t in Trust)
        raise UsageError(f"unknown trust level {level!r}; choose one of {choices}") from exc


def _json_value(value: Any, subject: str, key: str) -> Any:
    """``value`` exactly as it will read back from the journal, or a UsageError."""
    try:
        return json.loads(json.dumps(to_json(value, what="a memory value"), allow_nan=False))
    except (TetherError, TypeError, ValueError) as exc:
        raise UsageError(
            f"memory {subject!r}/{key!r}: a {type(value).__name__} value cannot be stored as "
            "JSON; remember JSON data (dict with str keys, list, str, finite number, bool, "
            "None) or a pydantic model"
        ) from exc
