"""A journal listener that writes every event as one line of JSON.

Each line is ``{"run_id": ..., **event}``: the event exactly as the journal stores it plus the
run it belongs to, so ``jq``, log shippers and :func:`read_jsonl` can all read it back.
Lines are flushed as they are written, so a crashed process loses at most a partial last line.

>>> import io
>>> from tether.events import RunStarted
>>> out = io.StringIO()
>>> JsonlSink(out)("run_1", RunStarted(seq=1, at=0.0, workflow="w", seed=7))
>>> out.getvalue()[:40]
'{"run_id":"run_1","seq":1,"at":0.0,"v":1'
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from types import TracebackType
from typing import IO

from tether.errors import CorruptJournal
from tether.events import Event, decode

__all__ = ["JsonlSink", "read_jsonl"]

logger = logging.getLogger(__name__)


class JsonlSink:
    """Append events to ``target``: a path (opened for appending, closed by :meth:`close`) or
    an open text file (left open; :meth:`close` only flushes it).

    A write that fails is logged on the ``tether.tracing.jsonl`` logger, not raised: a full
    disk must not change a run's outcome.
    """

    def __init__(self, target: str | os.PathLike[str] | IO[str]) -> None:
        if isinstance(target, str | os.PathLike):
            # Held open for the sink's life, closed by close(): not a with-block's scope.
            self._file: IO[str] = Path(target).open("a", encoding="utf-8")  # noqa: SIM115
            self._owned = True
        else:
            self._file = target
            self._owned = False
        self._lock = threading.Lock()

    def __call__(self, run_id: str, event: Event) -> None:
        line = json.dumps({"run_id": run_id, **event.model_dump(mode="json")},
                          separators=(",", ":"), ensure_ascii=False)
        try:
            with self._lock:
                self._file.write(line + "\n")
                self._file.flush()
        except (OSError, ValueError):  # ValueError: the file was closed under us
            logger.warning("could not write event %s of run %s", event.seq, run_id,
                           exc_info=True)

    def close(self) -> None:
        """Flush, and close the file if this sink opened it."""
        with self._lock:
            if self._file.closed:
                return
            self._file.flush()
            if self._owned:
                self._file.close()

    def __enter__(self) -> JsonlSink:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def read_jsonl(path: str | os.PathLike[str]) -> list[tuple[str, Event]]:
    """Read a file a :class:`JsonlSink` wrote: ``(run_id, event)`` per line, events validated
    like stored ones (:func:`tether.events.decode`). A torn last line is skipped; any other
    damage raises :class:`~tether.errors.CorruptJournal`."""
    pairs: list[tuple[str, Event]] = []
    with Path(path).open(encoding="utf-8") as file:
        lines = file.read().split("\n")
    for number, line in enumerate(lines, 1):
        if not line:
            continue
        try:
            raw = json.loads(line)
        except ValueError as exc:
            if number == len(lines):  # the last line, cut short by a crash
                break
            raise CorruptJournal(f"{path}:{number}: not a JSON line ({exc})") from exc
        run_id = raw.pop("run_id")
        pairs.append((run_id, decode(json.dumps(raw), run_id=run_id)))
    return pairs
