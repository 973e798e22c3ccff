"""Who a worker is, and the heartbeat that keeps its lease on a run while a call runs long.

A run being executed has one owner (see :mod:`tether.store.base`): the runtime acquires the
run's lease before executing it, renews it piggy-backed on appends once past half its time to
live, and — with a real clock — from a :class:`Heartbeat` thread, so a handler that blocks for
longer than the lease (a slow API, a human on the phone) does not let another worker take the
run over while this one is alive. Virtual clocks get no heartbeat: their time moves only with
the run's own durable calls, which renew the lease as they append, and a thread would make a
simulation depend on real time.
"""

from __future__ import annotations

import os
import socket
import threading

from tether.runtime.journal import RunJournal

__all__ = ["Heartbeat", "default_owner"]


def default_owner() -> str:
    """This process's worker name: ``host:pid``. Runtimes in one process share it (a fresh
    runtime may take over what an abandoned one of the same process held); give each its own
    ``owner`` when several in one process recover the same store concurrently."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Heartbeat:
    """Renews ``journal``'s lease every ``interval_s`` seconds of real time from a daemon
    thread, until :meth:`stop`. A refused renewal marks the journal lost (the run stops at its
    next durable call); a store error is retried at the next beat, while the lease still holds.

    >>> from tether.clock import SystemClock
    >>> from tether.store.memory import MemoryStore
    >>> beat = Heartbeat(RunJournal(MemoryStore(), "r", SystemClock()), interval_s=10)
    >>> beat.start(); beat.stop()
    """

    def __init__(self, journal: RunJournal, *, interval_s: float) -> None:
        self.journal = journal
        self.interval_s = interval_s
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True,
                                        name=f"tether-lease-{journal.run_id}")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join()

    def _beat(self) -> None:
        # Event.wait is the pause between beats: stop() ends it at once.
        while not self._stopped.wait(self.interval_s):
            if self.journal.lost is not None:
                return
            try:
                self.journal.renew_lease()
            except Exception:  # a store hiccup: the next beat tries again
                continue
