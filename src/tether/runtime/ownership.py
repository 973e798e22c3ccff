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

import itertools
import os
import socket
import threading

from tether.runtime.journal import RunJournal

__all__ = ["Heartbeat", "default_owner"]


# Numbers the runtimes of this process, so each default owner names one runtime. A counter,
# not the clock or a random draw: owner names never enter a journal, but a simulation must not
# depend on the wall clock or the global random generator even here.
_runtime_numbers = itertools.count(1)


def default_owner() -> str:
    """A new worker name for one runtime: ``host:pid:n``, ``n`` counting the runtimes of this
    process. Two runtimes of one process are two workers: neither takes over a run whose live
    lease the other holds. A worker restarted after a real crash (its lease still live) takes
    its runs back at once only under the same name: give such workers a stable explicit
    ``owner=``. (A simulated :class:`~tether.errors.Crash` releases the lease, so any runtime
    may take over then.)"""
    return f"{socket.gethostname()}:{os.getpid()}:{next(_runtime_numbers)}"


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
