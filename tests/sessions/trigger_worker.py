"""A worker process firing triggers on a SQLite store, so a test can SIGKILL it at any append.

    python -m tests.sessions.trigger_worker STORE create
    python -m tests.sessions.trigger_worker STORE schedule [--kill-at N]
    python -m tests.sessions.trigger_worker STORE webhook [--kill-at N]

``--kill-at N`` kills this process with SIGKILL (no cleanup) right after its N-th append to
the store has been stored, whichever stream it went to (the session's, the turn's run). The
clock is virtual and fixed per command, so every invocation of a command sees the same time:
``schedule`` runs one period after the session was created (slot 0 is due), ``webhook``
delivers one signed event (the same event id every time, as a sender retrying would).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from collections.abc import Sequence
from typing import Any

from tether import Runtime, VirtualClock
from tether.events import Event
from tether.sessions import Sessions, fire_due, fire_webhook
from tether.sessions.loader import AgentDefinition, definition_from_dict
from tether.sessions.triggers import sign_webhook
from tether.store.sqlite import SQLiteStore

H = "tests.sessions.helpers_agents"
START = 1_767_225_600.0
SECRET = "whsec-worker"
BODY = b'{"order": "A-17", "status": "shipped"}'
SPEC: dict[str, Any] = {
    "name": "helper",
    "variables": {"order": {"type": "string", "default": ""}},
    "model": {"provider": "scripted", "script": f"{H}:script"},
    "tools": [f"{H}:echo"],
    "triggers": {
        "billing": {"kind": "webhook", "webhook": {"secret_env": "HOOK_SECRET"},
                    "input": {"type": "object",
                              "properties": {"order": {"type": "string"},
                                             "status": {"type": "string"}},
                              "required": ["order", "status"]},
                    "turn": "(Order {{ input.order }} is {{ input.status }}.)",
                    "variables": {"order": "{{ input.order }}"}},
        "tick": {"kind": "schedule", "schedule": {"every_s": 60},
                 "turn": "(Check-in: slot {{ input.slot }}.)"},
    },
}


class KillingStore:
    """A store handle that SIGKILLs this process once its ``kill_at``-th append is stored."""

    def __init__(self, inner: SQLiteStore, kill_at: int | None) -> None:
        self.inner, self.kill_at, self.appends = inner, kill_at, 0

    def append(self, run_id: str, events: Sequence[Event], **kwargs: Any) -> None:
        self.inner.append(run_id, events, **kwargs)
        self.appends += 1
        if self.appends == self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def definition() -> AgentDefinition:
    return definition_from_dict(SPEC, where="<worker>")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("store")
    parser.add_argument("command", choices=["create", "schedule", "webhook"])
    parser.add_argument("--kill-at", type=int, default=None)
    args = parser.parse_args(argv)
    agent_file = definition()
    at = {"create": START, "schedule": START + 61, "webhook": START + 10}[args.command]
    store = KillingStore(SQLiteStore(args.store), args.kill_at)
    runtime = Runtime(store, clock=VirtualClock(at), seed=7, owner="worker")
    sessions = Sessions(runtime, definitions=[agent_file])
    if args.command == "create":
        sessions.create("s1", agent="helper")
    elif args.command == "schedule":
        asyncio.run(fire_due(sessions, agent_file, "s1"))
    else:
        signature = sign_webhook(SECRET, BODY, at, "evt_1", target="s1/billing")
        headers = {"X-Tether-Signature": signature,
                   "X-Tether-Event-Id": "evt_1"}
        asyncio.run(fire_webhook(sessions, agent_file, "s1", "billing", BODY, headers,
                                 environ={"HOOK_SECRET": SECRET}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
