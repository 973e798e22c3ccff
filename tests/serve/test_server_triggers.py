"""Triggers under tether serve: webhook deliveries, schedules fired by the server, and
conditional turns across servers sharing one store."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest

from tether.clock import VirtualClock
from tether.errors import SessionConflict
from tether.runtime.runtime import Runtime
from tether.serve.app import OPEN_ROUTES, OPENAPI, ROUTES
from tether.serve.server import Server
from tether.sessions.loader import load_definition
from tether.sessions.session import Sessions
from tether.sessions.triggers import fire, sign_webhook
from tether.store.sqlite import SQLiteStore

from .serve_helpers import EXAMPLE, Served, events_of, ring, served

SECRET = "whsec-test-0123456789"
REFUND_LARGE = "The espresso machine from order ch_0003 arrived broken. Please refund it."
WEBHOOK = "/v1/tenants/acme/sessions/chat1/webhooks/billing"
#: What a delivery to WEBHOOK signs as its target.
TARGET = "acme/chat1/billing"
TRIGGERS = """
  billing:
    kind: webhook
    webhook: {secret_env: TETHER_TEST_BILLING_SECRET}
    input: {type: object, properties: {summary: {type: string}}, required: [summary]}
    turn: "(Billing says: {{ input.summary }})"
  check-in:
    kind: schedule
    schedule: {every_s: 60}
    turn: "(Daily check-in.)"
"""


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def agent_file(tmp: Path) -> Path:
    """The support chat with a webhook and a schedule trigger besides its own."""
    folder = tmp / "agent"
    shutil.copytree(EXAMPLE, folder)
    path = folder / "agent.yaml"
    text = path.read_text()
    marker = "triggers:\n"
    assert marker in text
    path.write_text(text.replace(marker, marker + TRIGGERS.lstrip("\n"), 1))
    return path


async def chat(s: Served, sid: str = "chat1") -> None:
    response = await s.call("POST", "/v1/sessions", body={"agent": "support-chat",
                                                          "session_id": sid})
    assert response.status_code == 201, response.text


def delivery(s: Served, body: dict[str, Any], event_id: str = "evt_1",
             secret: str = SECRET, target: str = TARGET) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(body).encode()
    signature = sign_webhook(secret, raw, s.server.runtime.clock.now(), event_id,
                             target=target)
    return raw, {"X-Tether-Signature": signature, "X-Tether-Event-Id": event_id,
                 "Content-Type": "application/json"}


async def revision(s: Served) -> int:
    return int((await s.call("GET", "/v1/sessions/chat1")).json()["revision"])


def test_a_signed_delivery_starts_one_turn_and_a_repeat_streams_it_again(tmp_path: Path) -> None:
    """A signed webhook delivery needs no API key and streams the turn it started; the same
    event id delivered again streams that same turn, and no second turn starts."""

    async def go() -> None:
        async with served(tmp_path, agent=agent_file(tmp_path)) as s:
            s.server.webhook_environ = {"TETHER_TEST_BILLING_SECRET": SECRET}
            await chat(s)
            raw, headers = delivery(s, {"summary": "card declined"})
            first = await s.http.post(WEBHOOK, content=raw, headers=headers)
            assert first.status_code == 200, first.text
            events = events_of(first.text)
            assert events[0][1] == "turn.started" and events[-1][1] == "turn.finished"
            again = await s.http.post(WEBHOOK, content=raw, headers=headers)
            assert again.status_code == 200, again.text
            assert again.headers["Tether-Run-Id"] == first.headers["Tether-Run-Id"]
            assert [e for e in events_of(again.text) if e[0] is not None] == \
                [e for e in events if e[0] is not None]
            view = (await s.call("GET", "/v1/sessions/chat1")).json()
            assert [t["trigger"] for t in view["turns"]] == ["billing"]

    run(go())


@pytest.mark.parametrize(("tamper", "status", "reason"), [
    ("unsigned", 401, "missing-signature"), ("forged", 401, "bad-signature"),
    ("stale", 401, "stale"), ("no-event-id", 400, "missing-event-id"),
    ("malformed", 400, "malformed-signature"), ("retargeted", 401, "bad-signature")])
def test_a_refused_delivery_says_why_and_appends_nothing(tmp_path: Path, tamper: str,
                                                         status: int, reason: str) -> None:
    """An unsigned, forged, stale, id-less or retargeted (signed for another session)
    delivery is refused with the WebhookRejected
    reason (401 unauthenticated, 400 not a delivery) and the session does not change."""

    async def go() -> None:
        async with served(tmp_path, agent=agent_file(tmp_path)) as s:
            s.server.webhook_environ = {"TETHER_TEST_BILLING_SECRET": SECRET}
            await chat(s)
            before = await revision(s)
            # "retargeted": a delivery signed for another session, replayed to this one.
            raw, headers = delivery(s, {"summary": "paid"},
                                    secret="another" if tamper == "forged" else SECRET,
                                    target="acme/chat2/billing" if tamper == "retargeted"
                                    else TARGET)
            if tamper == "unsigned":
                del headers["X-Tether-Signature"]
            elif tamper == "no-event-id":
                del headers["X-Tether-Event-Id"]
            elif tamper == "malformed":
                headers["X-Tether-Signature"] = "v1=abc"
            elif tamper == "stale":
                stamp = s.server.runtime.clock.now() - 3600
                headers["X-Tether-Signature"] = sign_webhook(SECRET, raw, stamp, "evt_1",
                                                             target=TARGET)
            answer = await s.http.post(WEBHOOK, content=raw, headers=headers)
            assert answer.status_code == status, answer.text
            error = answer.json()["error"]
            assert (error["type"], error["param"]) == ("webhook_rejected", reason)
            assert SECRET not in answer.text
            assert await revision(s) == before

    run(go())


def test_what_is_not_a_served_webhook_is_one_404_and_a_missing_secret_503(
        tmp_path: Path) -> None:
    """Another tenant, an unknown session and a trigger that is not a webhook all answer
    the same 404 to an unauthenticated sender; a server without the secret answers 503; a
    webhook trigger fired by hand through /triggers is refused."""

    async def go() -> None:
        async with served(tmp_path, agent=agent_file(tmp_path)) as s:
            s.server.webhook_environ = {"TETHER_TEST_BILLING_SECRET": SECRET}
            await chat(s)
            raw, headers = delivery(s, {"summary": "paid"})
            for path in ["/v1/tenants/other/sessions/chat1/webhooks/billing",
                         "/v1/tenants/acme/sessions/nope/webhooks/billing",
                         "/v1/tenants/acme/sessions/chat1/webhooks/check-in",
                         "/v1/tenants/acme/sessions/chat1/webhooks/plan-changed",
                         "/v1/tenants/a.b/sessions/chat1/webhooks/billing"]:
                answer = await s.http.post(path, content=raw, headers=headers)
                assert answer.status_code == 404, (path, answer.text)
                assert answer.json()["error"]["type"] == "not_found"
            by_hand = await s.call("POST", "/v1/sessions/chat1/triggers/billing",
                                   body={"input": {"summary": "paid"}})
            assert by_hand.status_code == 400, by_hand.text
            assert "webhooks/" in by_hand.json()["error"]["message"]
            s.server.webhook_environ = {}
            unset = await s.http.post(WEBHOOK, content=raw, headers=headers)
            assert unset.status_code == 503, unset.text
            assert "TETHER_TEST_BILLING_SECRET" not in unset.text
            assert (await s.call("GET", "/v1/sessions/chat1")).json()["turns"] == []

    run(go())


def test_the_openapi_document_describes_the_webhook_route_without_a_key() -> None:
    """The webhook route is documented with no security (its signature authenticates it)
    and the document lists exactly the keyed and the open routes."""
    documented = {(m.upper(), p) for p, ops in OPENAPI["paths"].items() for m in ops}
    assert documented == {(m, p) for p, m, _ in [*ROUTES, *OPEN_ROUTES]}
    operation = OPENAPI["paths"]["/v1/tenants/{tenant}/sessions/{sid}/webhooks/{trigger}"]
    assert operation["post"]["security"] == []
    assert {"400", "401", "404", "503"} <= set(operation["post"]["responses"])


def test_a_conditional_trigger_is_a_compare_and_set_across_processes(tmp_path: Path) -> None:
    """Two Sessions objects on one SQLite file fire a trigger conditional on the same
    revision: one turn starts, the other is a SessionConflict and appends nothing."""

    async def go() -> None:
        definition = load_definition(agent_file(tmp_path))
        db = tmp_path / "runs.db"
        first, second = (Sessions(Runtime(SQLiteStore(db), owner=name))
                         for name in ("server-a", "server-b"))
        for sessions in (first, second):
            sessions.add_definition(definition)
        first.create("acme.chat1", agent="support-chat")
        read = second.session("acme.chat1").revision
        await fire(first, definition, "acme.chat1", "plan-changed", {"plan": "pro"},
                   expected_revision=read)
        after = second.session("acme.chat1").revision
        with pytest.raises(SessionConflict):
            await fire(second, definition, "acme.chat1", "plan-changed", {"plan": "pro"},
                       expected_revision=read)
        assert second.session("acme.chat1").revision == after
        assert len(first.session("acme.chat1").turns) == 1

    run(go())


def test_schedule_slots_fire_on_the_servers_clock_once_each(tmp_path: Path) -> None:
    """The server's tick fires a schedule trigger's slot once it is due on the runtime's
    clock (not before, not twice), as a turn of the session."""

    async def go() -> None:
        clock = VirtualClock(start=1_000.0, autojump=False)
        async with served(tmp_path, clock=clock, agent=agent_file(tmp_path)) as s:
            await chat(s)
            assert await s.server.tick() == 0
            clock.advance(61)
            assert await s.server.tick() == 1
            await s.server.idle()
            assert await s.server.tick() == 0
            view = (await s.call("GET", "/v1/sessions/chat1")).json()
            assert [(t["trigger"], t["status"]) for t in view["turns"]] == \
                [("check-in", "completed")]

    run(go())


def test_a_failing_session_does_not_stop_the_others_and_work_per_tick_is_bounded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With more due sessions than a tick's batch, each tick queues at most the batch, and
    every session is reached in later ticks; a session whose stream cannot be read is
    skipped without stopping the rest."""

    async def go() -> None:
        clock = VirtualClock(start=1_000.0, autojump=False)
        async with served(tmp_path, clock=clock, agent=agent_file(tmp_path)) as s:
            s.server.tick_batch = 2
            for n in range(5):
                await chat(s, f"c{n}")
            clock.advance(61)
            broken = s.server.sessions.session
            def session(stored: str) -> Any:
                if stored == "acme.c1":
                    raise RuntimeError("unreadable")
                return broken(stored)
            monkeypatch.setattr(s.server.sessions, "session", session)
            counts = []
            for _ in range(4):
                counts.append(await s.server.tick())
                await s.server.idle()
            assert max(counts) <= 2 and sum(counts) == 4, counts
            monkeypatch.undo()
            turns = {n: len((await s.call("GET", f"/v1/sessions/c{n}")).json()["turns"])
                     for n in range(5)}
            assert turns == {0: 1, 1: 0, 2: 1, 3: 1, 4: 1}

    run(go())


def test_a_client_tool_past_its_timeout_is_settled_without_a_request(tmp_path: Path) -> None:
    """A turn waiting on a client tool whose timeout_s passed is resumed by the server's
    tick (the wait expires and the turn ends) with no client request."""

    async def go() -> None:
        clock = VirtualClock(start=1_000.0, autojump=False)
        async with served(tmp_path, clock=clock) as s:
            await chat(s)
            frames = await s.frames("POST", "/v1/sessions/chat1/triggers/user-message",
                                    body={"input": {"text": REFUND_LARGE}})
            assert frames[-1][1] == "run.waiting"
            assert await s.server.tick() == 0
            clock.advance(601)
            assert await s.server.tick() == 1
            await s.server.idle()
            assert await s.server.tick() == 0
            view = (await s.call("GET", "/v1/sessions/chat1")).json()
            assert view["turns"][0]["status"] not in ("waiting", "running", None), view

    run(go())


def test_the_timer_loop_runs_from_start_to_stop(tmp_path: Path) -> None:
    """Server.start runs the timer loop on the runtime's clock (a slot fires when the
    clock passes it, with no call of tick) and Server.stop ends it."""

    async def go() -> None:
        clock = VirtualClock(start=1_000.0, autojump=False)
        async with served(tmp_path, clock=clock, agent=agent_file(tmp_path)) as s:
            await chat(s)
            await s.server.start()
            clock.advance(61)
            for _ in range(200):
                await asyncio.sleep(0.01)
                if s.server.sessions.session("acme.chat1").turns:
                    break
            await s.server.idle()
            assert [t.trigger for t in s.server.sessions.session("acme.chat1").turns] == \
                ["check-in"]
            await s.server.stop()
            assert s.server._timer is None

    run(go())


def test_a_write_by_another_server_after_the_check_is_a_409_not_a_second_turn(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two servers on one SQLite file: another server writes the session after this one
    took the request under revision r but before it appended; the conditional trigger is
    409 and starts no turn (the revision is compared on the read the append is made at)."""
    from tether.events import VariableSet
    from tether.runtime.schema_check import problems as checked
    from tether.sessions.state import stream_id

    async def go() -> None:
        async with served(tmp_path) as s:
            other = Server(SQLiteStore(tmp_path / "runs.db"),
                           [load_definition(EXAMPLE / "agent.yaml")], ring(), tick_s=None)
            await chat(s)
            read = await revision(s)

            def interleaved(schema: Any, value: Any) -> Any:
                # The other server changes the session in the window between the request
                # being taken and its turn being appended.
                other.store.append(stream_id("acme.chat1"), [VariableSet(
                    seq=read + 1, at=0.0, name="plan", value="gold", by="client")],
                    expected_last_seq=read, sync=True)
                monkeypatch.setattr("tether.sessions.triggers.problems", checked)
                return checked(schema, value)

            monkeypatch.setattr("tether.sessions.triggers.problems", interleaved)
            answer = await s.call("POST", "/v1/sessions/chat1/triggers/plan-changed",
                                  body={"input": {"plan": "pro"}, "expected_revision": read})
            assert answer.status_code == 409, answer.text
            assert answer.json()["error"]["type"] == "session_conflict"
            view = (await s.call("GET", "/v1/sessions/chat1")).json()
            assert view["turns"] == [] and view["variables"]["plan"] == "gold"

    run(go())


def test_a_real_server_fires_schedules_and_takes_signed_webhooks(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`tether serve` in a subprocess: a schedule slot fires on the server's own clock with
    no request, and a signed delivery with no API key streams its turn."""
    import time

    from .test_server_process import Api, make_key, tether_serve

    folder = agent_file(tmp_path)
    path = folder.read_text().replace("schedule: {every_s: 60}", "schedule: {every_s: 1}")
    folder.write_text(path)
    monkeypatch.setenv("TETHER_TEST_BILLING_SECRET", SECRET)
    keys = tmp_path / "keys.yaml"
    key = make_key(keys, "acme", "ada", "customer")
    with tether_serve(tmp_path, keys, agent=folder) as (_, base):
        api = Api(base, key)
        created = api.json("POST", "/v1/sessions", {"agent": "support-chat",
                                                    "session_id": "chat1"})
        assert created.status_code == 201, created.text
        turns: list[dict[str, Any]] = []
        for _ in range(300):
            turns = api.json("GET", "/v1/sessions/chat1").json()["turns"]
            if any(t["status"] == "completed" for t in turns):
                break
            time.sleep(0.1)
        assert turns and turns[0]["trigger"] == "check-in", turns
        raw = json.dumps({"summary": "card declined"}).encode()
        signed = {"X-Tether-Signature": sign_webhook(SECRET, raw, time.time(), "evt_9",
                                                       target=TARGET),
                  "X-Tether-Event-Id": "evt_9"}
        answer = httpx.post(f"{base}{WEBHOOK}", content=raw, headers=signed, timeout=60.0)
        assert answer.status_code == 200, answer.text
        assert events_of(answer.text)[-1][1] == "turn.finished"
