"""The support-chat driver (examples/support_chat/drive.py) as a worker a test can SIGKILL at an
exact boundary of a turn.

    python tests/crash/support_chat_app.py [--kill-at STREAM|KIND|AT|WHEN] [--trace FILE] \
        -- DRIVE_ARGS...
    python tests/crash/support_chat_app.py --fork-server

The first form is one worker process. The second imports the library once and then starts one
worker per line of JSON read from stdin (``{"argv": [...], "env": {...}, "log": FILE}``, argv
as the first form takes it) by ``fork``: each worker is its own process, killed by SIGKILL like
any other, and the server writes ``{"rc": ...}`` (``-9`` for SIGKILL) once it is gone. Starting
a worker then costs a fork instead of the imports, as in a pre-forking server.

A boundary is a store append: ``STREAM`` is the stream appended to (``session:<sid>`` for the
session's own changes, ``session:<sid>:turn:<n>`` for turn ``n``'s run), ``KIND`` the kind of
the batch's first event (``turn_started``, ``run_started``, ``model_called``, ``tool_intent``,
``tool_result``, ``wait_started``, ``wait_resolved``, ``run_finished``, ``turn_finished``,
``resource_version``, ``variable_set``, ...), ``AT`` the position of its durable call
(``@16``), the key of a wait's resolution, or else how many events of that kind the stream
holds once the batch is in (1 for the first), and ``WHEN`` ``before`` (the batch not appended:
the work before it done, e.g. a tool handler returned) or ``after`` (appended, nothing after
it done). The process kills itself with SIGKILL there: no cleanup, no flush.

``--trace FILE`` appends one JSON line per successful append (its boundary without ``WHEN``),
so a clean run lists every boundary there is.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tether.events import Event, WaitResolved
from tether.store.base import Store

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "support_chat"


def boundary(store: Store, stream: str, events: Sequence[Event]) -> str:
    """``STREAM|KIND|AT`` of appending ``events`` to ``stream``: AT is the durable call's
    position (``@16``) for an event of one, the key (``client:7:call_confirm_in_app``) for a
    wait's resolution, else how many events of the kind the stream holds with the batch in.
    Positions and keys stay put when a crash makes a call be made again; counts would not."""
    first = events[0]
    if isinstance(first, WaitResolved):
        return f"{stream}|{first.kind}|{first.key}"
    pos = getattr(first, "pos", None)
    if isinstance(pos, int):
        return f"{stream}|{first.kind}|@{pos}"
    k = sum(e.kind == first.kind for e in store.read(stream)) + 1
    return f"{stream}|{first.kind}|{k}"


def wrap(store: Store, kill_at: str | None, trace: Path | None) -> Store:
    """``store`` whose ``append`` stops the process at ``kill_at`` and traces to ``trace``."""
    original = store.append

    def append(run_id: str, events: Sequence[Event], **kw: Any) -> None:
        here = boundary(store, run_id, events) if events else ""
        if kill_at == f"{here}|before":
            os.kill(os.getpid(), signal.SIGKILL)
        original(run_id, events, **kw)
        if trace is not None and here:
            with trace.open("a") as f:
                f.write(json.dumps(here) + "\n")
        if kill_at == f"{here}|after":
            os.kill(os.getpid(), signal.SIGKILL)

    store.append = append  # type: ignore[method-assign]
    return store


def main(argv: list[str]) -> None:
    sys.path.insert(0, str(EXAMPLE))
    from drive import main as drive  # type: ignore[import-not-found,unused-ignore]  # by path

    if argv == ["--fork-server"]:
        fork_server()
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--kill-at")
    parser.add_argument("--trace", type=Path)
    parser.add_argument("rest", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    rest = args.rest[1:] if args.rest[:1] == ["--"] else args.rest
    drive(rest, wrap_store=lambda store: wrap(store, args.kill_at, args.trace))


def fork_server() -> None:
    """Start a worker process per job read from stdin; report how each ended."""
    for line in sys.stdin:
        job = json.loads(line)
        pid = os.fork()
        if pid == 0:  # the worker
            code = 0
            try:
                with open(job["log"], "a") as log:
                    os.dup2(log.fileno(), 1)
                    os.dup2(log.fileno(), 2)
                os.environ.update(job.get("env", {}))
                main(job["argv"])
            except BaseException:  # any failure is the worker's exit status 1
                import traceback

                traceback.print_exc()
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        rc = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        print(json.dumps({"rc": rc}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
