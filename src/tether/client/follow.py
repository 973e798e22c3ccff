"""Following one run's stream across dropped connections: what to yield, where to resume.

:class:`Follower` is the whole decision, with no I/O: the sync and async clients feed it the
frames they read and ask it, when a connection ends before the terminal event, how long to wait
and what to request next. It yields each event once:

* an event with an id is yielded only if its id is above the last one yielded, so the replay
  of a resumed stream (``Last-Event-ID``) never repeats an event, whatever the server resends;
* an event without an id is ephemeral (``model.delta``) or carries its identity in its data
  (``resource.updated``: name and version); the latter are yielded once per distinct data;
* after the terminal event (``turn.finished``, ``run.waiting``) nothing more is read.

>>> from tether.serve.sse import SseFrame
>>> f = Follower("session:a.s:turn:1")
>>> again = SseFrame(event="turn.started", data="{}", id="1")
>>> [e.id for e in map(f.accept, [again, again]) if e is not None]
[1]
>>> f.resume_call().headers["Last-Event-ID"]
'1'
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

from tether.client import wire
from tether.client.errors import ConnectionFailedError, InternalServerError, ServerError
from tether.client.models import StreamEvent
from tether.serve.sse import SseFrame

__all__ = ["EPHEMERAL_EVENTS", "Follower", "Reconnect"]

#: Events the server sends once, live, and never replays: a resumed stream may not repeat
#: them, and two equal ones are two events (the same token twice).
EPHEMERAL_EVENTS = frozenset({"model.delta"})


@dataclass(frozen=True, slots=True)
class Reconnect:
    """How a dropped stream is resumed: up to ``attempts`` tries in a row that bring no new
    event, waiting ``backoff_s`` doubled at each try up to ``backoff_s_max``, times a jitter
    in [0.5, 1) so many clients of a restarted server do not all come back at once.

    >>> Reconnect(backoff_s=1.0, backoff_s_max=3.0).delay_s(3, random.Random(1)) <= 3.0
    True
    """

    attempts: int = 6
    backoff_s: float = 0.2
    backoff_s_max: float = 5.0

    def delay_s(self, attempt: int, rng: random.Random) -> float:
        """The wait before try ``attempt`` (1-based)."""
        base = min(self.backoff_s_max, self.backoff_s * 2.0 ** max(0, attempt - 1))
        return base * (0.5 + rng.random() / 2)


def _retriable(error: BaseException | None) -> bool:
    # A failed resume request is worth another try only when the server may come back (it is
    # restarting: 5xx, or no connection); a 4xx says the run is not there to follow.
    return not isinstance(error, ServerError) or isinstance(error, InternalServerError)


class Follower:
    """The state of one run's stream as the client consumed it."""

    def __init__(self, run_id: str | None, *, after: int = 0,
                 policy: Reconnect | None = None, rng: random.Random | None = None,
                 until_finished: bool = False) -> None:
        self.run_id = run_id
        #: Follow the run through its waits: only ``turn.finished`` ends the stream.
        self.until_finished = until_finished
        #: The id of the last journal-backed event yielded (``after`` before any).
        self.last_id = after
        self.done = False
        self.policy = policy or Reconnect()
        self.failures = 0
        # Jitter only: an unseeded generator is fine here, nothing is journaled from it.
        self._rng = rng or random.Random()
        self._seen: set[tuple[str, str]] = set()

    def accept(self, frame: SseFrame) -> StreamEvent | None:
        """The event to yield for ``frame``, or ``None`` when it was already yielded."""
        if self.done:
            return None
        event = StreamEvent(id=_int_id(frame.id), type=frame.event, data=_json(frame.data))
        if event.id is not None:
            if event.id <= self.last_id:
                return None
            self.last_id = event.id
        elif event.type not in EPHEMERAL_EVENTS:
            identity = (event.type, json.dumps(event.data, sort_keys=True, default=str))
            if identity in self._seen:
                return None
            self._seen.add(identity)
        if self.run_id is None:
            self.run_id = _run_id_of(event.data)
        self.failures = 0  # progress: the next drop starts a fresh round of attempts
        self.done = event.type == "turn.finished" if self.until_finished else event.terminal
        return event

    def opened(self, run_id: str | None, after: str | None) -> None:
        """Take what a stream's response headers say before any frame: its run (when the
        stream has none yet) and the seq it starts after. A fire's or a continue's stream can
        then be resumed at the right place even if it drops before its first event."""
        if self.run_id is None and run_id:
            self.run_id = run_id
        if after is not None and after.isascii() and after.isdigit():
            self.last_id = max(self.last_id, int(after))

    def dropped(self, error: BaseException | None) -> float:
        """The wait before resuming after the connection ended (``error``: why, or ``None`` for
        a stream the server closed before the terminal event); :class:`ConnectionFailedError` (or
        the server's typed refusal) when it cannot be resumed."""
        if isinstance(error, ServerError) and not _retriable(error):
            raise error
        if self.run_id is None:
            raise ConnectionFailedError(
                "the stream ended before it named its run, so it cannot be resumed; the trigger "
                "may have fired: read the session (Client.session) for its latest turn's run_id "
                "and follow it with Client.events(run_id), or fire again under the same key",
            ) from error
        self.failures += 1
        if self.failures > self.policy.attempts:
            raise ConnectionFailedError(
                f"the stream of run {self.run_id!r} dropped and {self.policy.attempts} tries in "
                f"a row to resume it after event {self.last_id} brought nothing new ({error!r}); "
                f"follow it later with Client.events({self.run_id!r}, after={self.last_id})",
                run_id=self.run_id, last_id=self.last_id) from error
        return self.policy.delay_s(self.failures, self._rng)

    def resume_call(self) -> wire.Call:
        """The request that resumes the stream after the last event yielded."""
        assert self.run_id is not None, "dropped() refuses to resume a stream with no run"
        return wire.events(self.run_id, self.last_id, until_finished=self.until_finished)


def _int_id(raw: str | None) -> int | None:
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise ServerError(200, "InvalidResponse",
                          f"an event id must be the journal's integer seq, got {raw!r}") from None


def _json(data: str) -> Any:
    try:
        return json.loads(data)
    except json.JSONDecodeError:
        return data  # a server event whose data is plain text is still shown as it came


def _run_id_of(data: Any) -> str | None:
    if isinstance(data, dict):
        for name in ("run_id", "execution_id"):
            if isinstance(data.get(name), str) and data[name]:
                return str(data[name])
    return None
