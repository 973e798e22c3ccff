"""The sync client against a real (fake) server on a loopback port: verbs, typed errors, keys,
and streams resumed after dropped connections."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.client.fake_server import Fake, turn_script
from tether.client import (
    AuthenticationError,
    Client,
    ConflictError,
    ConnectionFailedError,
    GoneError,
    InternalServerError,
    NotFoundError,
    Options,
    PermissionDeniedError,
    Reconnect,
    StreamEvent,
    UnprocessableEntityError,
    wire,
)
from tether.errors import UsageError

Server = tuple[str, Fake]
_sids = itertools.count(1)


def client(url: str, key: str = "key-a", waits: list[float] | None = None,
           attempts: int = 4) -> Client:
    """A client whose reconnect waits are recorded instead of slept."""
    sink = waits if waits is not None else []
    options = Options(reconnect=Reconnect(attempts=attempts), rng=random.Random(7))
    return Client(url, key, options=options, sleep=sink.append)


def new_session(c: Client) -> str:
    return c.create_session("support", session_id=f"c{next(_sids)}").id


def ids(events: list[StreamEvent]) -> list[int | None]:
    return [e.id for e in events]


def test_create_and_read_a_session(server: Server) -> None:
    """create_session sends agent, id and variables; session() reads the typed view back."""
    url, _ = server
    with client(url) as c:
        made = c.create_session("support", session_id="view-1", variables={"plan": "pro"})
        view = c.session("view-1")
    assert (made.id, made.agent, made.variables) == ("view-1", "support", {"plan": "pro"})
    assert view.resources["plan"].version == 2
    assert view.history[0].role == "user" and view.history[0].run_id is None


def test_a_turn_streams_every_event_once_in_order(server: Server) -> None:
    """fire() yields the turn's frames as the server sent them and stops at turn.finished."""
    url, _ = server
    with client(url) as c:
        sid = new_session(c)
        stream = c.fire(sid, "message", "hello")
        events = list(stream)
    assert [e.type for e in events] == [t for _, t, _ in turn_script("x")]
    assert events[3].data["text"] == "Hello\nthere \u2028 friend"
    assert stream.finished and stream.last_id == 9 and stream.run_id.endswith(":turn:1")


@pytest.mark.parametrize("mode", ["close", "abort"])
def test_a_cut_stream_resumes_after_the_last_id(server: Server, mode: str) -> None:
    """A stream cut after 5 frames (ended cleanly or aborted mid-body) is resumed with
    Last-Event-ID = the last id yielded; the caller sees no gap and no duplicate."""
    url, fake = server
    waits: list[float] = []
    with client(url, waits=waits) as c:
        sid = new_session(c)
        run_id = f"session:a.{sid}:turn:1"
        fake.cuts[run_id] = [(5, mode)]
        events = list(c.fire(sid, "message", "hello"))
    assert ids(events) == [1, None, None, 2, 3, 4, 6, None, 7, 9]
    resumed = [r for r in fake.stream_requests if run_id.replace(":", "%3A") in r[0]
               or run_id in r[0]]
    assert resumed[-1][1:] == ("3", "3")
    assert len(waits) == 1


def test_a_replayed_resource_update_is_yielded_once(server: Server) -> None:
    """An id-less resource.updated the server sends again after a resume is not repeated."""
    url, fake = server
    with client(url) as c:
        sid = new_session(c)
        run_id = f"session:a.{sid}:turn:1"
        # 8 frames: up to resource.updated; the resume replays after id 6, so it comes again.
        fake.cuts[run_id] = [(8, "abort")]
        events = list(c.fire(sid, "message", "hello"))
    assert [e.type for e in events].count("resource.updated") == 1
    assert [i for i in ids(events) if i is not None] == [1, 2, 3, 4, 6, 7, 9]


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=st.lists(st.tuples(st.integers(0, 11), st.sampled_from(["close", "abort"])),
                     max_size=4))
def test_any_cut_plan_gives_every_event_once(server: Server, plan: list[tuple[int, str]]) -> None:
    """Whatever connections are cut after whatever number of frames, the ids yielded are the
    run's ids, each once, in order; id-less events at most once."""
    url, fake = server
    with client(url, attempts=10) as c:
        sid = new_session(c)
        run_id = f"session:a.{sid}:turn:1"
        # Cut the first connection only once a frame naming the run has come through.
        fake.cuts[run_id] = [(max(1, plan[0][0]), plan[0][1]), *plan[1:]] if plan else []
        events = list(c.fire(sid, "message", "hello"))
    assert [i for i in ids(events) if i is not None] == [1, 2, 3, 4, 6, 7, 9]
    idless = [(e.type, e.data["text"] if e.type == "model.delta" else "")
              for e in events if e.id is None]
    assert len(idless) == len(set(idless))
    assert events[-1].type == "turn.finished"


def test_events_replays_after_the_given_id(server: Server) -> None:
    """events(run, after=4) starts after event 4 (header and query both say 4)."""
    url, fake = server
    with client(url) as c:
        sid = new_session(c)
        run_id = f"session:a.{sid}:turn:1"
        list(c.fire(sid, "message", "hello"))
        events = list(c.events(run_id, after=4))
    assert [i for i in ids(events) if i is not None] == [6, 7, 9]
    assert fake.stream_requests[-1][1:] == ("4", "4")


def test_resume_retries_a_restarting_server_then_gives_up(server: Server) -> None:
    """503s on resume are retried with growing waits; past the attempts the client raises
    ConnectionFailedError naming the run and the last id."""
    url, fake = server
    waits: list[float] = []
    with client(url, waits=waits, attempts=3) as c:
        sid = new_session(c)
        run_id = f"session:a.{sid}:turn:1"
        fake.cuts[run_id] = [(2, "abort")]
        fake.refusals[run_id] = [503, 503, 503, 503]
        with pytest.raises(ConnectionFailedError) as caught:
            list(c.fire(sid, "message", "hello"))
    assert (caught.value.run_id, caught.value.last_id) == (run_id, 1)
    assert len(waits) == 3 and waits == sorted(waits)


def test_resume_after_a_503_goes_on(server: Server) -> None:
    """One 503 while resuming is retried and the stream completes."""
    url, fake = server
    with client(url) as c:
        sid = new_session(c)
        run_id = f"session:a.{sid}:turn:1"
        fake.cuts[run_id] = [(4, "close")]
        fake.refusals[run_id] = [503]
        events = list(c.fire(sid, "message", "hello"))
    assert [i for i in ids(events) if i is not None] == [1, 2, 3, 4, 6, 7, 9]


def test_resume_refused_with_404_is_not_retried(server: Server) -> None:
    """A 404 on resume (the run is not there) raises NotFoundError at once, without waiting."""
    url, fake = server
    waits: list[float] = []
    with client(url, waits=waits) as c:
        sid = new_session(c)
        run_id = f"session:a.{sid}:turn:1"
        fake.cuts[run_id] = [(2, "close")]
        fake.refusals[run_id] = [404]
        with pytest.raises(NotFoundError):
            list(c.fire(sid, "message", "hello"))
    assert len(waits) == 1


def test_a_stream_cut_before_it_names_its_run_is_not_guessed(server: Server) -> None:
    """A fire stream cut before any event raises ConnectionFailedError saying the trigger may have
    fired, instead of firing again or following some other run."""
    url, fake = server
    with client(url) as c:
        sid = new_session(c)
        fake.cuts[f"session:a.{sid}:turn:1"] = [(0, "abort")]
        with pytest.raises(ConnectionFailedError, match="may have fired"):
            list(c.fire(sid, "message", "hello"))


def test_a_waiting_run_ends_at_run_waiting_and_continues(server: Server) -> None:
    """A stream ends at run.waiting; continue_execution streams the rest."""
    url, fake = server
    with client(url) as c:
        sid = new_session(c)
        run_id = f"session:a.{sid}:turn:1"
        fake.scripts[run_id] = turn_script(run_id, waiting=True)
        fake.scripts[run_id + ":cont"] = [(10, "tool.finished", {"tool": "ask"}),
                                          (12, "turn.finished", {"status": "completed"})]
        first = list(c.fire(sid, "message", "hello"))
        rest = list(c.continue_execution(run_id, {"c9": {"ok": True}}))
    assert first[-1].type == "run.waiting" and first[-1].terminal
    assert ids(rest) == [10, 12]


def test_an_unknown_key_is_unauthorized(server: Server) -> None:
    """An unknown key raises AuthenticationError with the server's status and type."""
    url, _ = server
    with client(url, key="nope") as c, pytest.raises(AuthenticationError) as caught:
        c.session("whatever")
    assert caught.value.status == 401 and caught.value.type == "Unauthorized"


@pytest.mark.parametrize("key", ["", "two words", "k\n"])
def test_an_unsendable_key_is_refused_at_once(key: str) -> None:
    """A key that cannot be a bearer token is a UsageError, not a network error later."""
    with pytest.raises(UsageError, match="api_key"):
        Client("http://127.0.0.1:9", key)


def test_refusals_raise_typed_errors(server: Server) -> None:
    """404, 409, 410, 422 and 403 answers raise their types with type, message and param."""
    url, fake = server
    with client(url) as c:
        sid = new_session(c)
        with pytest.raises(NotFoundError):
            c.session("missing")
        with pytest.raises(UnprocessableEntityError) as bad:
            c.fire(sid, "message", "bad")
        assert (bad.value.type, bad.value.param) == ("TriggerInputInvalid", "input")
        with pytest.raises(ConflictError) as conflict:
            c.fire(sid, "message", "hi", expected_revision=99)
        assert conflict.value.type == "SessionConflict"
        fake.sessions[f"a.{sid}"]["status"] = "expired"
        with pytest.raises(GoneError, match="restore"):
            c.fire(sid, "message", "hi")
        fake.scripts[f"session:a.{sid}:turn:1"] = turn_script("r")
        with pytest.raises(PermissionDeniedError):
            c.approve(f"session:a.{sid}:turn:1")
        with pytest.raises(UnprocessableEntityError):
            c.continue_execution(f"session:a.{sid}:turn:1", {"other": 1})


def test_another_tenants_run_is_not_found(server: Server) -> None:
    """Tenant b's key cannot follow, continue or decide tenant a's run: 404."""
    url, _ = server
    with client(url) as a, client(url, key="key-b") as b:
        sid = new_session(a)
        run_id = f"session:a.{sid}:turn:1"
        list(a.fire(sid, "message", "hi"))
        for attempt in (lambda: b.events(run_id), lambda: b.approve(run_id),
                        lambda: b.continue_execution(run_id, {"c9": 1})):
            with pytest.raises(NotFoundError):
                attempt()


def test_approvals_decisions_and_runs(server: Server) -> None:
    """approvals(), approve/deny (sent with the note), runs() and run_events() are typed."""
    url, fake = server
    with client(url) as a, client(url, key="key-a-sup") as sup:
        sid = new_session(a)
        list(a.fire(sid, "message", "hi"))
        run_id = f"session:a.{sid}:turn:1"
        pending = [p for p in sup.approvals() if p.run_id == run_id]
        decision = sup.deny(run_id, note="too much")
        runs = a.runs()
        journal = a.run_events(run_id)
    assert pending[0].role == "supervisor" and pending[0].args == {"order": "o1"}
    assert decision.run_id == run_id and fake.decisions[-1] == (run_id, "deny", "a", "too much")
    assert run_id in {r.run_id for r in runs}
    assert journal == [{"seq": 1, "kind": "run_started"}]


def test_restore_sends_messages_only(server: Server) -> None:
    """restore() reduces transcript rows to messages (the server refuses bookkeeping fields)."""
    url, _ = server
    with client(url) as c:
        sid = new_session(c)
        rows = c.session(sid).history
        view = c.restore(f"{sid}-r", [*rows, {"role": "assistant", "content": "ok"}])
    assert view.id == f"{sid}-r"


def test_a_non_json_error_keeps_its_status(server: Server) -> None:
    """A 502 HTML page from a proxy raises InternalServerError with the status and the text."""
    url, _ = server
    with client(url) as c, pytest.raises(InternalServerError, match="bad gateway") as caught:
        c._json(wire.Call("GET", "/v1/broken"))
    assert caught.value.status == 502


def test_an_unreachable_server_is_connection_failed() -> None:
    """No server on the port: ConnectionFailedError, and for a POST a warning it may have
    applied."""
    with client("http://127.0.0.1:9") as c, pytest.raises(ConnectionFailedError):
        c.session("x")
    with client("http://127.0.0.1:9") as c, pytest.raises(ConnectionFailedError, match="applied"):
        c.fire("x", "message", "hi")


def test_a_silent_stream_is_taken_for_dead_and_resumed(server: Server) -> None:
    """A stream that stops sending (no frame, no keep-alive) past the read timeout is resumed
    after its last id, like a dropped one."""
    url, fake = server
    options = Options(stream_read_timeout_s=0.3, reconnect=Reconnect(attempts=2),
                      rng=random.Random(1))
    with Client(url, "key-a", options=options, sleep=lambda s: None) as c:
        sid = new_session(c)
        fake.cuts[f"session:a.{sid}:turn:1"] = [(4, "stall")]
        events = list(c.fire(sid, "message", "hello"))
    assert [i for i in ids(events) if i is not None] == [1, 2, 3, 4, 6, 7, 9]
