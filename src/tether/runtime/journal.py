"""One run's journal as the runtime sees it: what is recorded, and how to add to it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from tether.clock import Clock
from tether.errors import ConcurrencyConflict
from tether.events import (
    Decision,
    Event,
    ModelCalled,
    ModelFailed,
    RunFinished,
    RunStarted,
    StepFailed,
    StepRecorded,
    TimerStarted,
    ToolAmbiguous,
    ToolError,
    ToolIntent,
    ToolResult,
    ToolRetry,
    WaitExpired,
    WaitResolved,
    WaitStarted,
)
from tether.store.base import Store

__all__ = ["Listener", "Probe", "ProbePoint", "RunJournal", "call_identity"]


@dataclass(frozen=True, slots=True)
class ProbePoint:
    """A named instant inside a durable call, where tests and the simulator may crash a worker.

    ``point`` is one of ``before_intent``, ``after_intent`` (intent durable, handler not called),
    ``after_call`` (handler returned, result not journaled) and ``after_result``; steps report
    ``after_step``.
    """

    run_id: str
    position: int
    name: str
    point: str


class Probe(Protocol):
    """Called at every :class:`ProbePoint`; raising :class:`~tether.errors.Crash` abandons
    the run."""

    def __call__(self, point: ProbePoint) -> None: ...


#: Called with every event once it is appended (sinks: traces, JSONL, progress).
Listener = Callable[[str, Event], None]


def call_identity(event: Event) -> tuple[str, str] | None:
    """(call kind, name) of the durable call an event belongs to, for determinism checks."""
    if isinstance(event, StepRecorded | StepFailed):
        return (event.call, event.name)
    if isinstance(event, TimerStarted):
        return ("sleep", "")
    if isinstance(event, WaitStarted):
        return ("wait_for", event.key)
    if isinstance(event, ToolIntent):
        return ("compensate" if event.compensates is not None else "call_tool", event.tool)
    if isinstance(event, ToolResult | ToolError | ToolAmbiguous | ToolRetry):
        return ("call_tool", event.tool)
    if isinstance(event, ModelCalled | ModelFailed):
        return ("call_model", event.model)
    if isinstance(event, Decision):
        return ("decide", event.name)
    return None


_RETRY_ACTIONS = ("backoff", "compress", "reformat", "refresh_auth")


def _is_retry(event: Event) -> bool:
    if isinstance(event, ToolRetry):
        return True
    if isinstance(event, ToolIntent):
        return event.attempt > 1
    return (isinstance(event, Decision) and event.name == "recover"
            and event.data.get("action") in _RETRY_ACTIONS)


class RunJournal:
    """The events of one run, indexed by position, plus the means to append more.

    Appends stamp the next ``seq`` and the clock's time, write through the store with the
    expected last seq (so a second writer is detected), then tell the listeners.
    """

    def __init__(
        self,
        store: Store,
        run_id: str,
        clock: Clock,
        events: Sequence[Event] = (),
        listeners: Sequence[Listener] = (),
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.clock = clock
        self.listeners = tuple(listeners)
        self.last_seq = 0
        self.started: RunStarted | None = None
        self.finished: RunFinished | None = None
        self._by_pos: dict[int, list[Event]] = {}
        self._resolutions: dict[str, WaitResolved] = {}
        for event in events:
            self._index(event)
            self.last_seq = event.seq

    def _index(self, event: Event) -> None:
        pos = getattr(event, "pos", None)
        if pos is not None:
            self._by_pos.setdefault(pos, []).append(event)
        elif isinstance(event, WaitResolved):
            self._resolutions.setdefault(event.key, event)
        elif isinstance(event, RunStarted):
            self.started = event
        elif isinstance(event, RunFinished):
            self.finished = event

    def _absorb_resolutions(self) -> bool:
        """After a lost append race, take in what was appended meanwhile if it is only
        resolutions delivered from outside (``Runtime.resolve``); then the append may retry.
        Anything else means another worker owns the run."""
        newer = self.store.read(self.run_id, after_seq=self.last_seq)
        if not newer or not all(isinstance(e, WaitResolved) for e in newer):
            return False
        for event in newer:
            self._index(event)
            self.last_seq = event.seq
        return True

    def refresh(self) -> None:
        """Take in resolutions delivered from outside since this journal was read."""
        self._absorb_resolutions()

    def at(self, position: int) -> list[Event]:
        """Events recorded for the durable call at ``position`` (empty if none)."""
        return self._by_pos.get(position, [])

    def retries_before(self, position: int) -> int:
        """Retries the run has spent at positions before ``position``: tool retries
        (``tool_retry``), re-issued writes, and the harness's retry decisions. Counted from
        the journal, so a replay counts exactly what the first execution did."""
        spent = 0
        for pos, events in self._by_pos.items():
            if pos >= position:
                continue
            spent += sum(1 for e in events if _is_retry(e))
        return spent

    def positions(self) -> list[int]:
        return sorted(self._by_pos)

    def resolution(self, key: str) -> WaitResolved | None:
        return self._resolutions.get(key)

    def expired(self, position: int) -> bool:
        return any(isinstance(e, WaitExpired) for e in self.at(position))

    def record(self, cls: type[Any], *, sync: bool = False, **fields: Any) -> Any:
        """Append one event of type ``cls``; ``sync`` makes it (and all before it) durable."""
        while True:
            event = cls(seq=self.last_seq + 1, at=self.clock.now(), **fields)
            try:
                self.store.append(self.run_id, [event], expected_last_seq=self.last_seq,
                                  sync=sync)
                break
            except ConcurrencyConflict:
                if not self._absorb_resolutions():
                    raise
        self.last_seq = event.seq
        self._index(event)
        for listener in self.listeners:
            listener(self.run_id, event)
        return event
