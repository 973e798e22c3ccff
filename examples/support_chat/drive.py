"""Drive the YAML support chat through a conversation of several turns, durably.

    python examples/support_chat/drive.py                       # a new SQLite store in a temp dir
    python examples/support_chat/drive.py --store runs.db       # or a store URL (sqlite:///...,
                                                                #   postgresql://...)
    python examples/support_chat/drive.py --payments URL        # a served payments world

The agent is ``agent.yaml`` (``load_definition`` → ``Sessions``); the payments service is the
simulated one of ``world.yaml``: built in this process by default, or, with ``--payments``, the
one ``tether sim serve examples/support_chat/world.yaml --seed 1`` serves — a service that
outlives this process, as a real one does, so its ledger counts the refunds really made.

One session (``support-ada``; variables ``customer_name`` and ``plan``), five turns:

1. a question about an order, answered with a server read (``lookup_order``);
2. a refund of 75.00: the customer confirms in the app first (the ``confirm_in_app`` client
   tool — this script plays the app and answers with ``Runtime.continue_execution``);
3. a refund of 150.00, confirmed in the app, then held by the policy for a supervisor (this
   script approves it with ``Runtime.approve(..., role="supervisor")`` and resumes the turn);
4. the ``plan-changed`` trigger, which sets the ``plan`` variable and starts a turn;
5. a question the answer of which shows the new plan.

After each refund the agent reads the session's ``order_notes`` document and writes a new
version with a line about it (the session tools of ``agent.yaml``; each version's provenance
names the turn's run, the call's idempotency key and the trust of what it was derived from).
Then a transcript and a summary: turns, refunds in the service's ledger, model
calls recorded in the journals and model calls made by this process.

**Run it again, or after a crash.** Every step is decided from the session as stored: a turn
already started is resumed, never started twice; a turn waiting for the app or the supervisor
is answered (each answer is recorded once; a repeated one changes nothing); a note the agent
wrote before a crash is found by its key, not written again. So the script may be killed anywhere
(SIGKILL included) and started again with the same store until it completes: no turn is lost,
no refund made twice, no model call recorded before the kill is paid again.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tether.clock import SystemClock
from tether.errors import SessionConflict
from tether.events import (
    Event,
    ModelCalled,
    RunStatus,
    WaitExpired,
    WaitResolved,
    WaitStarted,
)
from tether.runtime.journal import Probe
from tether.runtime.runtime import Runtime
from tether.sessions import Sessions, fire
from tether.sessions.loader import AgentDefinition, load_definition
from tether.store.base import Store
from tether.store.open import open_store

HERE = Path(__file__).resolve().parent
AGENT_FILE = HERE / "agent.yaml"
WORLD_FILE = HERE / "world.yaml"
SESSION_ID = "support-ada"
CUSTOMER: dict[str, Any] = {"customer_name": "Ada", "plan": "basic"}
#: The worker's name in run leases: a restarted driver takes its runs back at once.
OWNER = "support-chat-driver"
NOTES = "order_notes"


@dataclass(frozen=True)
class Step:
    """One turn of the conversation: a customer message, or a trigger with its input."""

    text: str = ""
    trigger: str = ""
    payload: Mapping[str, Any] = field(default_factory=dict)


STEPS: tuple[Step, ...] = (
    Step("Hi, how much did I pay for order ch_0001, and has any of it been refunded?"),
    Step("The headphones from order ch_0002 stopped working. Please refund them."),
    Step("The espresso machine from order ch_0003 arrived broken. Please refund it."),
    Step(trigger="plan-changed", payload={"plan": "pro"}),
    Step("Thanks! Which plan am I on now?"),
)


class HttpPayments:
    """The payments client of a served world (its Stripe-compatible API), for the tools."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=30.0,
                                       headers={"Authorization": "Bearer sk_test_support"})

    async def get_charge(self, charge_id: str) -> dict[str, Any]:
        return _answer(await self._http.get(f"/v1/charges/{charge_id}"))

    async def create_refund(self, charge: str, amount: int | None = None,
                            idempotency_key: str | None = None) -> dict[str, Any]:
        form: dict[str, Any] = {"charge": charge}
        if amount is not None:
            form["amount"] = amount
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return _answer(await self._http.post("/v1/refunds", data=form, headers=headers))

    async def list_refunds(self, charge: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = _answer(
            await self._http.get("/v1/refunds", params={"charge": charge}))["data"]
        return found

    def refunds(self) -> list[dict[str, Any]]:
        """The refunds in the world's ledger (what the service applied, not what was said)."""
        root = self.base_url.rsplit("/payments", 1)[0]
        ledger = httpx.get(f"{root}/_tether/ledger", timeout=30.0).json()
        return [e for e in ledger["effects"]
                if e["service"] == "payments" and e["operation"] == "refund"]


def _answer(response: httpx.Response) -> dict[str, Any]:
    """The body of a 2xx answer; else httpx's own status error (with the provider's message),
    which tether classifies by status: a 5xx may have been applied, a 429 was not, a 4xx is
    final. Network errors reach tether as httpx raised them, for the same reason."""
    if response.is_error:
        raise httpx.HTTPStatusError(
            f"payments {response.request.method} {response.request.url.path}: "
            f"{response.status_code} {response.text[:300]}",
            request=response.request, response=response)
    body: dict[str, Any] = response.json()
    return body


class Services:
    """What the tool factory (``tools.py:tools``) is given: ``client(name)``."""

    def __init__(self, payments: Any, refunds: Callable[[], list[dict[str, Any]]],
                 where: str) -> None:
        self._payments, self.refunds, self.where = payments, refunds, where

    def client(self, name: str) -> Any:
        if name != "payments":
            raise KeyError(f"no {name!r} service here; only payments")
        return self._payments


def services(payments_url: str | None) -> Services:
    """The served world at ``payments_url``, or ``world.yaml``'s built in this process."""
    if payments_url:
        http = HttpPayments(payments_url)
        return Services(http, http.refunds, f"served at {payments_url}")
    from tether.sim.episode import environment_for
    from tether.sim.scenario import load_scenario

    env = environment_for(load_scenario(WORLD_FILE), seed=1)
    return Services(env.client("payments"),
                    lambda: [e.as_data() for e in env.world.ledger.of("payments", "refund")],
                    "in this process: it starts afresh each run")


class Chat:
    """The support chat of one store: the session, the runtime, and the app and supervisor
    that answer the turns' waits."""

    def __init__(self, store: Store, world: Services, *, probe: Probe | None = None,
                 say: Callable[[str], None] = print) -> None:
        self.definition: AgentDefinition = load_definition(AGENT_FILE)
        self.world, self.say = world, say
        self.runtime = Runtime(store, clock=SystemClock(), seed=7, probe=probe, owner=OWNER)
        self.sessions = Sessions(self.runtime)
        # Typed variables, instructions rendered per turn, session tools bound to these
        # sessions: the agent file's agent, built with the payments client for its tools.
        self.agent = self.sessions.add_definition(self.definition, env=world)

    async def run(self) -> None:
        """Create the session if need be, then take every step to its end."""
        if self.runtime.store.get_run(f"session:{SESSION_ID}") is None:
            self.sessions.create(SESSION_ID, agent=self.agent.name, variables=CUSTOMER)
        for number, step in enumerate(STEPS, 1):
            await self.step(number, step)

    async def step(self, number: int, step: Step) -> None:
        """Bring turn ``number`` to its end, from wherever it stands in the store."""
        while True:
            session = self.sessions.session(SESSION_ID)
            if len(session.turns) < number:
                # Conditional on what was read: of two drivers (a restarted one while the old
                # one still runs), one starts the turn and the other is told, not given a
                # second turn for the same message; a trigger's firing is keyed likewise.
                try:
                    if step.trigger:
                        await fire(self.sessions, self.definition, SESSION_ID, step.trigger,
                                   step.payload, key=f"{SESSION_ID}.turn-{number}")
                    else:
                        await self.sessions.turn(SESSION_ID, step.text,
                                                 expected_revision=session.revision)
                except SessionConflict:
                    pass  # read the session again: the turn was started by someone else
                continue
            turn = session.turns[number - 1]
            if turn.status is not None:
                break
            info = self.runtime.store.get_run(turn.run_id)
            waiting = info is not None and info.status is RunStatus.WAITING
            if waiting and not await self.answer_waits(turn.run_id):
                raise RuntimeError(
                    f"turn {number} (run {turn.run_id!r}) waits for something neither the app "
                    "nor the supervisor of this script answers; see "
                    f"`tether runs show {turn.run_id}`")
            await self.sessions.resume(SESSION_ID)

    async def answer_waits(self, run_id: str) -> bool:
        """Play the app (confirm) and the supervisor (approve) for what the run waits on;
        whether there was anything of theirs to answer (an answer recorded before a crash
        leaves nothing: the run is only to be resumed)."""
        calls = self.runtime.pending_client_calls(run_id)
        held = self.runtime.pending_approvals(run_id)
        if calls:
            results: dict[str, Any] = {}
            for c in calls:
                self.say(f"  [app] {c.tool}: {c.arguments.get('question', c.arguments)} -> yes")
                results[c.call_id] = {"confirmed": True}
            await self.runtime.continue_execution(run_id, results, by="app:ada")
        for approval in held:
            self.say(f"  [supervisor] approves {approval.tool} {approval.args} "
                     f"({approval.reason})")
            self.runtime.approve(run_id, by="supervisor:grace", role="supervisor",
                                 step=approval.step)
        return bool(calls or held) or _answered(self.runtime.store.read(run_id))

    def summary(self) -> dict[str, Any]:
        """What happened, from the store and the service (not from the agent's words)."""
        session = self.sessions.session(SESSION_ID)
        store = self.runtime.store
        model_calls = {t.run_id: sum(isinstance(e, ModelCalled) for e in store.read(t.run_id))
                       for t in session.turns}
        return {
            "turns": [{"number": t.number, "trigger": t.trigger, "input": t.input,
                       "status": t.status} for t in session.turns],
            "transcript": session.transcript(),
            "variables": session.variables,
            "resources": {name: {"version": r.version, "content": r.content,
                                 "provenance": r.provenance}
                          for name, r in session.resources.items()},
            "refunds": self.world.refunds(),
            "payments": self.world.where,
            "model_calls": model_calls,
        }


def _answered(events: Sequence[Event]) -> bool:
    """Whether every wait the run began is resolved or expired (so a resume goes on)."""
    closed = {e.key for e in events if isinstance(e, WaitResolved | WaitExpired)}
    return all(e.key in closed for e in events if isinstance(e, WaitStarted))


def print_transcript(summary: Mapping[str, Any], say: Callable[[str], None] = print) -> None:
    """The conversation as the customer saw it, and the counts that matter."""
    for row in summary["transcript"]:
        if row["role"] == "user":
            say(f"customer : {row['content']}")
        elif row["role"] == "assistant" and row["content"]:
            say(f"agent    : {row['content']}")
    unfinished = [f"turn {t['number']} {t['status'] or 'open'}" for t in summary["turns"]
                  if t["status"] != "completed"]
    if unfinished:
        say("not completed: " + ", ".join(unfinished))
    refunds = summary["refunds"]
    made = ", ".join(f"{r['data']['charge']} {r['data']['amount']}" for r in refunds)
    say(f"turns: {len(summary['turns'])}, refunds in the payments ledger "
        f"({summary['payments']}): {len(refunds)} ({made}), "
        f"model calls recorded: {sum(summary['model_calls'].values())}, "
        f"variables: {summary['variables']}")
    notes = summary["resources"].get(NOTES)
    if notes is not None:
        say(f"{NOTES} (version {notes['version']}, trust {notes['provenance'].get('trust')}):")
        for line in str(notes["content"]).splitlines():
            say(f"  {line}")


def main(argv: list[str] | None = None, *, probe: Probe | None = None,
         wrap_store: Callable[[Store], Store] | None = None) -> dict[str, Any]:
    """Parse the command line, drive the conversation to its end, print it; returns the
    summary. ``probe``/``wrap_store`` let a test stop the process at a chosen instant."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", help="store URL or SQLite file (default: a temp dir's)")
    parser.add_argument("--payments", help="a served world's payments URL "
                        "(default: world.yaml's, in this process)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args(argv)
    url = args.store or os.path.join(tempfile.mkdtemp(prefix="support-chat-"), "runs.db")
    store = open_store(url)
    if wrap_store is not None:
        store = wrap_store(store)
    quiet = args.json
    chat = Chat(store, services(args.payments), probe=probe,
                say=(lambda _line: None) if quiet else print)
    asyncio.run(chat.run())
    summary = chat.summary()
    if quiet:
        print(json.dumps(summary, sort_keys=True, default=str))
    else:
        print(f"store: {url}")
        print_transcript(summary)
    return summary


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    main()
