"""Triggers: the named, typed entry points of a declarative agent that start a turn.

An agent file declares each trigger's kind, input schema and how its input becomes the user
turn and variables (``triggers:`` in :mod:`tether.sessions.spec`)::

    triggers:
      user-message: {input: {type: object, properties: {text: {type: string}},
                             required: [text]},
                     turn: "{{ input.text }}"}
      plan-changed: {input: {...}, turn: "(The plan changed to {{ input.plan }}.)",
                     variables: {plan: "{{ input.plan }}"}}
      billing-event: {kind: webhook, webhook: {secret_env: BILLING_WEBHOOK_SECRET},
                      input: {...}, turn: "(Billing says: {{ input.summary }})"}
      check-in: {kind: schedule, schedule: {every_s: 86400}, turn: "(Daily check-in.)"}
      decided: {kind: approval, turn: "(The supervisor {{ input.decision }} {{ input.tool }}.)"}

Each kind has its own entry point (refusing a session that talks to another agent than the
file's), and all of them go through one path (``_start``), so the rules cannot drift between
kinds:

1. the input is validated against the trigger's schema — an invalid input is refused
   (:class:`~tether.errors.TriggerInputInvalid`) before anything is appended or run — and the
   variables it sets are computed and checked against their declared types (a template that is
   exactly one ``{{ input.field }}`` keeps the field's JSON type; any other is rendered as
   text);
2. a half-done earlier turn of the session is finished first (as :meth:`Sessions.turn` does);
   if it waits (an approval, a client tool) or another worker is running it now,
   :class:`~tether.errors.SessionConflict` is raised and nothing is recorded;
3. the variables (``variable_set``, ``by="trigger"``, the trigger and key as provenance), the
   firing record (``trigger_fired`` with the trigger's dedupe key, when it has one) and the turn
   (``turn_started``) are appended **in one compare-and-set append** at the session's revision:
   either all of them are recorded or none is, and of two processes firing the same key one
   append wins and the other, re-reading the session, finds the key and starts nothing;
4. the turn is run (:meth:`Sessions.resume` runs the turn just started, or resumes it after a
   crash).

A crash after the append leaves a started turn, which the next call on the session (any trigger,
:meth:`Sessions.turn` or :meth:`Sessions.resume`) resumes: a recorded firing is never skipped
and never doubled.

The kinds:

* ``message`` — :func:`fire` with the caller's input (an optional ``key`` makes it idempotent).
* ``webhook`` — :func:`fire_webhook` with the raw body and headers: the HMAC-SHA256 signature
  of the timestamp, the sender's event id, the target (session and trigger) and the body
  (:func:`sign_webhook`) and the
  timestamp (against replay, on the runtime's clock) are checked **before** the body is even
  parsed, then the JSON body is the input and the event id the dedupe key
  (:class:`~tether.errors.WebhookRejected` otherwise; the secret is never in a message).
* ``schedule`` — :func:`due` lists the elapsed slots that have not fired; :func:`fire_due`
  fires them: slot ``k`` of a trigger is the key, so each slot fires at most once per session
  across crashes and racing schedulers. With ``catch_up: latest`` (the default) only the latest
  elapsed slot fires and the input's ``missed`` says how many before it were skipped (and the
  firing record's ``detail`` which); a slot older than one already fired never fires.
* ``approval`` — :func:`on_decision` after ``Runtime.approve``/``deny`` on a turn of the
  session: the waiting turn is resumed (it goes on with the decision), then each approval
  trigger whose ``decisions`` include it fires once per decision with ``{decision, by, role,
  note, tool}`` as input.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tether.errors import (
    ConcurrencyConflict,
    RunOwned,
    SessionConflict,
    SessionInactive,
    TriggerInputInvalid,
    UsageError,
    WebhookRejected,
)
from tether.events import (
    Event,
    RunStatus,
    TriggerFired,
    TurnStarted,
    VariableSet,
    WaitResolved,
    WaitStarted,
)
from tether.runtime.codec import to_json
from tether.runtime.schema_check import problems
from tether.sessions.spec import ApprovalSpec, TriggerSpec, check_value, render
from tether.sessions.state import SessionState, SessionStatus, fold, stream_id, turn_run_id

if TYPE_CHECKING:
    from tether.sessions.loader import AgentDefinition
    from tether.sessions.session import Session, Sessions, TurnResult

__all__ = ["DueSlot", "Fired", "due", "fire", "fire_due", "fire_webhook", "on_decision",
           "sign_webhook"]

_EVENT_ID = re.compile(r"[\x21-\x7e]{1,200}")   # printable ASCII, no spaces
# No dot in a webhook's event id: the signed text is "<t>.<id>." + body, and an id that
# could hold a dot could take the first bytes of the body into itself under one signature.
_WEBHOOK_ID = re.compile(r"[\x21-\x2d\x2f-\x7e]{1,200}")
_TIMESTAMP = re.compile(r"[0-9]{1,15}")
_APPROVAL = "approval:"   # the wait-key prefix of approval requests (tether.policy.approvals)
#: How often one firing re-reads the session after losing a compare-and-set race.
_ATTEMPTS = 8
#: With ``catch_up: all``, the most slots of one trigger one call of :func:`due` lists.
MAX_CATCH_UP = 1_000


@dataclass(frozen=True, slots=True)
class Fired:
    """What firing a trigger came to.

    ``turn`` is the number of the turn it started (``None``: the trigger only set variables).
    ``result`` is that turn as run by this call; ``None`` when there is no turn, or when
    another worker is running it right now (it finishes there). ``duplicate`` says the key had
    fired before this call: nothing new was recorded, and the earlier turn was resumed or
    reported. ``detail`` is what the firing decided besides (the schedule slots it skipped)."""

    trigger: str
    key: str | None
    turn: int | None
    result: TurnResult | None
    duplicate: bool = False
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DueSlot:
    """An elapsed, unfired slot of a schedule trigger: slot ``slot`` at clock time ``at``;
    ``missed`` earlier elapsed slots that will not fire (``catch_up: latest``), the first of
    them being ``slot - missed``."""

    trigger: str
    slot: int
    at: float
    missed: int = 0


# -- the entry points ------------------------------------------------------------------------


async def fire(sessions: Sessions, definition: AgentDefinition, session_id: str,
               trigger: str, payload: Mapping[str, Any], *,
               key: str | None = None,
               expected_revision: int | None = None, principal: str = "anonymous",
               roles: Sequence[str] = ()) -> TurnResult | Session:
    """Fire the ``message`` trigger ``trigger`` of ``definition`` on session ``session_id``
    with ``payload``: the turn's result, or the session when the trigger only sets variables.

    With ``key`` the firing is idempotent: a second call with the same key records nothing and
    returns the first call's turn (resumed if a crash interrupted it).

    ``expected_revision`` (the revision the caller last read) makes the firing conditional,
    as a compare-and-set on the session's stream: it is checked on the very read the firing
    appends at, so of two processes firing under one revision at most one records anything
    and the other gets :class:`~tether.errors.SessionConflict`. A half-done earlier turn this
    call finishes first moves the revision by its ending only; a turn another writer started
    meanwhile is a conflict.

    The turn runs on behalf of ``principal`` holding ``roles`` (what the agent's policy judges
    its calls by), recorded with the turn. Webhook, schedule and approval firings run as
    ``anonymous``: no person sent them."""
    spec = _trigger(definition, trigger, "message")
    if key is not None and not _EVENT_ID.fullmatch(key):
        raise UsageError(f"trigger {trigger!r}: key {key!r} must be 1 to 200 printable ASCII "
                         "characters without spaces")
    done = await _start(sessions, definition, session_id, trigger, spec, dict(payload),
                        key=None if key is None else f"message:{trigger}:{key}",
                        expected_revision=expected_revision,
                        on_behalf=(principal, tuple(roles)))
    assert done is not None  # only a schedule's firing is ever superseded
    if done.result is not None:
        return done.result
    return sessions.session(session_id)


def sign_webhook(secret: str | bytes, body: bytes, timestamp: float, event_id: str, *,
                 target: str) -> str:
    """The signature header value a sender puts on delivery ``event_id`` of ``body`` sent at
    ``timestamp`` (unix seconds) to ``target``: ``t=<timestamp>,v1=<hex HMAC-SHA256 of
    "<timestamp>.<event id>.<len(target)>:<target>." + body>``. The event id is signed with
    the body, so a captured delivery replayed under another id (to pass the dedupe) fails the
    signature; so is the target — ``<session id>/<trigger>`` (``tether serve``:
    ``<tenant>/<session id>/<trigger>``) — so one replayed to another session, tenant or
    trigger sharing the secret fails it too."""
    if not _WEBHOOK_ID.fullmatch(event_id):
        raise UsageError(f"event id {event_id[:40]!r}: expected 1 to 200 printable ASCII "
                         "characters, no space or dot")
    key = secret.encode() if isinstance(secret, str) else secret
    stamp = str(int(timestamp))
    return f"t={stamp},v1={_digest(key, stamp, event_id, target, body)}"


def _digest(key: bytes, stamp: str, event_id: str, target: str, body: bytes) -> str:
    # The target is length-prefixed: no byte can move between it and the body.
    named = f"{len(target.encode())}:{target}".encode()
    signed = stamp.encode() + b"." + event_id.encode() + b"." + named + b"." + body
    return hmac.new(key, signed, hashlib.sha256).hexdigest()


async def fire_webhook(sessions: Sessions, definition: AgentDefinition, session_id: str,
                       trigger: str, body: bytes, headers: Mapping[str, str], *,
                       environ: Mapping[str, str] | None = None,
                       target: str | None = None) -> Fired:
    """Fire the ``webhook`` trigger ``trigger`` with a delivery's raw ``body`` and ``headers``.

    The signature must name the delivery's ``target`` (default ``<session id>/<trigger>``; a
    server passes the address the sender used, see :func:`sign_webhook`).

    The signature header is checked before anything else (the secret is read from the
    environment variable the trigger names, in ``environ`` or ``os.environ``): a missing,
    malformed, forged or stale signature, or a delivery without an event id, raises
    :class:`~tether.errors.WebhookRejected` and nothing is appended. The JSON body is then
    the trigger's input (:class:`~tether.errors.TriggerInputInvalid` if it is not JSON or
    does not fit the schema), and the event id the dedupe key: the same delivery twice starts
    one turn, across processes."""
    spec = _trigger(definition, trigger, "webhook")
    settings = spec.webhook
    assert settings is not None  # the spec requires it for kind: webhook
    secret = (os.environ if environ is None else environ).get(settings.secret_env, "")
    if not secret:
        raise UsageError(f"{definition.source}: triggers.{trigger}.webhook.secret_env: the "
                         f"environment variable {settings.secret_env} is not set or empty; it "
                         "must hold the webhook's HMAC secret")
    found = {name.lower(): value for name, value in headers.items()}
    stamp, digests = _signature(found.get(settings.header.lower()), settings.header, trigger)
    event_id = found.get(settings.id_header.lower(), "")
    if not _WEBHOOK_ID.fullmatch(event_id):
        raise WebhookRejected(
            f"trigger {trigger!r}: the delivery has no usable {settings.id_header} header "
            f"(found {event_id[:40]!r}); it must carry the sender's event id (1 to 200 "
            "printable ASCII characters, no space or dot), which makes a repeated delivery "
            "start one turn",
            reason="missing-event-id")
    now = sessions.runtime.clock.now()
    if abs(now - int(stamp)) > settings.tolerance_s:
        raise WebhookRejected(
            f"trigger {trigger!r}: the delivery was signed at {stamp}, {abs(now - int(stamp)):.0f}"
            f" s from the clock's {now:.0f} (tolerance {settings.tolerance_s:g} s); a stale or "
            "replayed delivery is refused — the sender signs each delivery when it sends it",
            reason="stale")
    addressed = f"{session_id}/{trigger}" if target is None else target
    expected = _digest(secret.encode(), stamp, event_id, addressed, body)
    if not any(hmac.compare_digest(expected, digest) for digest in digests):
        raise WebhookRejected(
            f"trigger {trigger!r}: the {settings.header} signature does not match the "
            f"delivery (HMAC-SHA256 of \"<t>.<{settings.id_header}>.<len>:<target>.\" + body "
            f"under the secret in {settings.secret_env}, target {addressed!r}); the body, "
            "event id or target was altered, or it was signed with another secret",
            reason="bad-signature")
    return await _started(sessions, definition, session_id, trigger, spec,
                          _json_body(body, trigger), key=f"webhook:{trigger}:{event_id}")


def due(sessions: Sessions, definition: AgentDefinition, session_id: str,
        now: float | None = None) -> list[DueSlot]:
    """The slots of ``definition``'s schedule triggers that have elapsed by ``now`` (default:
    the runtime's clock) and not fired in session ``session_id``, oldest first."""
    state, fired = _read(sessions, session_id, definition)
    when = sessions.runtime.clock.now() if now is None else now
    if not math.isfinite(when):
        raise UsageError(f"due(now={when!r}): the time must be a finite clock reading")
    slots: list[DueSlot] = []
    for name, spec in definition.spec.triggers.items():
        if spec.kind != "schedule":
            continue
        settings = spec.schedule
        assert settings is not None  # the spec requires it for kind: schedule
        first = settings.start_at_s if settings.start_at_s is not None else \
            state.created_at + settings.every_s
        current = _slot_at(first, settings.every_s, when)
        last = _last_slot(fired, name)
        if current <= last:
            continue
        if settings.catch_up == "latest":
            slots.append(DueSlot(name, current, first + current * settings.every_s,
                                 missed=current - last - 1))
        else:
            for slot in range(last + 1, min(current, last + MAX_CATCH_UP) + 1):
                slots.append(DueSlot(name, slot, first + slot * settings.every_s))
    return sorted(slots, key=lambda s: (s.at, s.trigger))


async def fire_due(sessions: Sessions, definition: AgentDefinition, session_id: str,
                   now: float | None = None) -> list[Fired]:
    """Fire every slot :func:`due` lists, oldest first, each at most once per session (the
    slot is recorded with its turn in one compare-and-set append). A turn of an earlier
    firing that a crash interrupted is resumed first and listed as a ``duplicate``. The input
    of a slot's turn is ``{slot, scheduled_at, missed}``.

    A session whose turn waits (an approval, a client tool), or whose open turn another
    worker is running, raises :class:`~tether.errors.SessionConflict` and records nothing:
    its slots fire on a later call."""
    out: list[Fired] = []
    resumed = await _resume_pending(sessions, definition, session_id)
    if resumed is not None:
        out.append(resumed)
    for slot in due(sessions, definition, session_id, now):
        spec = definition.spec.triggers[slot.trigger]
        detail = {} if slot.missed == 0 else \
            {"missed": slot.missed, "missed_slots": [slot.slot - slot.missed, slot.slot - 1]}

        def superseded(fired: Mapping[str, TriggerFired], name: str = slot.trigger,
                       number: int = slot.slot) -> bool:
            # Another scheduler fired a later slot meanwhile: this one is no longer due.
            return _last_slot(fired, name) > number

        done = await _start(
            sessions, definition, session_id, slot.trigger, spec,
            {"slot": slot.slot, "scheduled_at": slot.at, "missed": slot.missed},
            key=_slot_key(slot.trigger, slot.slot), detail=detail, superseded=superseded)
        if done is not None:
            out.append(done)
    return out


async def on_decision(sessions: Sessions, definition: AgentDefinition,
                      session_id: str) -> list[Fired]:
    """After an approval requested by a turn of session ``session_id`` was decided
    (``Runtime.approve``/``deny``): resume the waiting turn, so it goes on with the decision,
    then fire each ``approval`` trigger whose ``decisions`` include the decision, once per
    decision, with ``{decision, by, role, note, tool}`` as input. Calling it again (after a
    crash, or from another process) fires nothing twice; it fires decisions not fired yet.

    If the resumed turn waits again (another approval, a client tool),
    :class:`~tether.errors.SessionConflict` is raised and the decision's trigger fires on a
    later call, once that wait is resolved."""
    triggers = [(name, spec) for name, spec in definition.spec.triggers.items()
                if spec.kind == "approval"]
    out: list[Fired] = []
    # The decided turn goes on first: its run reads the decision from its own journal.
    state, fired = _read(sessions, session_id, definition)
    if state.pending is not None:
        try:
            await sessions.resume(session_id)
        except RunOwned as exc:
            raise SessionConflict(
                f"session {session_id!r}: turn {state.pending.number} is being run by worker "
                f"{exc.owner!r}; decisions fire their triggers after it: call on_decision "
                "again later (nothing was recorded)", session_id=session_id,
                expected_revision=state.revision, found_revision=state.revision) from exc
        state, fired = _read(sessions, session_id)
    store = sessions.runtime.store
    for turn in state.turns:
        events = store.read(turn.run_id)
        requests = {e.key: e for e in events
                    if isinstance(e, WaitStarted) and e.key.startswith(_APPROVAL)}
        for event in events:
            if not (isinstance(event, WaitResolved) and event.key in requests):
                continue
            payload = _decision(event, requests[event.key])
            for name, spec in triggers:
                decisions = (spec.approval or ApprovalSpec()).decisions
                key = f"approval:{name}:{turn.run_id}:{event.key}"
                if payload["decision"] not in decisions or key in fired:
                    continue
                done = await _started(sessions, definition, session_id, name, spec, payload,
                                      key=key)
                out.append(done)
    return out


# -- the one path ----------------------------------------------------------------------------


async def _started(sessions: Sessions, definition: AgentDefinition, session_id: str,
                   name: str, spec: TriggerSpec, payload: Any, *, key: str) -> Fired:
    done = await _start(sessions, definition, session_id, name, spec, payload, key=key)
    assert done is not None  # only a schedule's firing is ever superseded
    return done


async def _start(sessions: Sessions, definition: AgentDefinition, session_id: str, name: str,
                 spec: TriggerSpec, payload: Any, *, key: str | None,
                 detail: Mapping[str, Any] | None = None,
                 superseded: Callable[[Mapping[str, TriggerFired]], bool] | None = None,
                 expected_revision: int | None = None,
                 on_behalf: tuple[str, tuple[str, ...]] = ("anonymous", ()),
                 ) -> Fired | None:
    """Validate ``payload``, record the firing with its variables and turn in one
    compare-and-set append, and run the turn (see the module docstring). ``None`` when
    ``superseded`` says the firing is no longer due. With ``expected_revision`` the session
    must still be at that revision (past the ending of an open turn this call finished) on
    the read the append is made at: SessionConflict otherwise, nothing appended."""
    found = problems(spec.input, payload)
    if found:
        raise TriggerInputInvalid(f"trigger {name!r}: the input does not fit its schema: "
                                  + "; ".join(found))
    expected = expected_revision
    for _ in range(_ATTEMPTS):
        state, fired = _read(sessions, session_id, definition)
        if key is not None and key in fired:
            return await _repeat(sessions, session_id, fired[key])
        if superseded is not None and superseded(fired):
            return None
        if expected is not None and state.revision != expected:
            raise SessionConflict(
                f"session {session_id!r} is at revision {state.revision}, not the expected "
                f"{expected}; nothing was appended for trigger {name!r}. If it was fired "
                "before, it was taken: read the session rather than fire it again",
                session_id=session_id, expected_revision=expected,
                found_revision=state.revision)
        # Computed before anything is appended, even the end of an earlier turn: an input
        # whose variables do not fit their types changes nothing.
        values = _values(definition, name, spec, state, payload)
        text = None if spec.turn is None else _render(name, "turn", spec.turn, values)
        if state.pending is not None:
            await _finish_open_turn(sessions, state, name)
            if expected is not None:
                # This call moved the revision by the open turn's ending; a turn another
                # writer started meanwhile is a change the caller has not seen.
                after, _ = _read(sessions, session_id)
                if len(after.turns) != len(state.turns):
                    raise SessionConflict(
                        f"session {session_id!r} was changed by another writer: turn "
                        f"{len(after.turns)} started after revision {expected} was read; "
                        f"nothing was appended for trigger {name!r}", session_id=session_id,
                        expected_revision=expected, found_revision=after.revision)
                expected = after.revision
            continue
        status = state.status(sessions.runtime.clock.now())
        if status is not SessionStatus.ACTIVE:
            raise SessionInactive(f"session {session_id!r} is {status.value}; trigger {name!r} "
                                  "cannot start a turn in it (nothing was recorded)",
                                  session_id=session_id, status=status.value)
        number = len(state.turns) + 1 if text is not None else None
        batch = _batch(sessions, session_id, name, spec, values, payload, key, number, text,
                       detail, on_behalf)
        if not batch:
            return Fired(name, key, None, None, detail=dict(detail or {}))
        try:
            _append(sessions, state, batch)
        except ConcurrencyConflict as exc:
            if key is None:
                raise SessionConflict(
                    f"session {session_id!r} was changed by another writer while trigger "
                    f"{name!r} fired (expected revision {state.revision}); nothing was "
                    "appended. Read the session again and retry if the input still applies",
                    session_id=session_id, expected_revision=state.revision,
                    found_revision=state.revision) from exc
            continue  # re-read: the winner may have fired this very key
        result = None if number is None else await _turn_result(sessions, session_id, number)
        return Fired(name, key, number, result, detail=dict(detail or {}))
    raise SessionConflict(
        f"session {session_id!r} changed {_ATTEMPTS} times while trigger {name!r} fired; "
        "nothing was recorded for it. Retry when the session is quieter",
        session_id=session_id, expected_revision=0, found_revision=0)


async def _finish_open_turn(sessions: Sessions, state: SessionState, name: str) -> None:
    """Finish the session's open turn before trigger ``name`` starts another, as a turn does;
    SessionConflict (nothing recorded) when it waits, or another worker is running it now."""
    pending = state.pending
    assert pending is not None
    try:
        done = await sessions.resume(state.session_id)
    except RunOwned as exc:
        raise SessionConflict(
            f"session {state.session_id!r}: turn {pending.number} (run {pending.run_id!r}) is "
            f"being run by worker {exc.owner!r}; trigger {name!r} fires after it (nothing was "
            "recorded for it): retry later", session_id=state.session_id,
            expected_revision=state.revision, found_revision=state.revision) from exc
    if done is not None and done.run.status is RunStatus.WAITING:
        raise SessionConflict(
            f"session {state.session_id!r}: turn {done.turn} (run {done.run.run_id!r}) is "
            f"waiting for {done.run.waiting_for!r}; trigger {name!r} fires once it is "
            "resolved or continued (nothing was recorded for it)",
            session_id=state.session_id, expected_revision=state.revision,
            found_revision=state.revision)


def _values(definition: AgentDefinition, name: str, spec: TriggerSpec, state: SessionState,
            payload: Any) -> dict[str, Any]:
    """The session's variables with the trigger's new values over them, and ``input``."""
    values: dict[str, Any] = {**state.variables, "input": payload}
    for variable, template in spec.variables.items():
        value = _value(name, variable, template, values)
        declared = definition.spec.variables.get(variable)
        if declared is not None:
            problem = check_value(declared.type, value)
            if problem is not None:
                raise TriggerInputInvalid(f"trigger {name!r}: variables.{variable}: {problem}")
        values[variable] = value
    return values


def _value(name: str, variable: str, template: str, values: Mapping[str, Any]) -> Any:
    """A variable's new value: one input field as it came (its JSON type), else the text."""
    field_name = TriggerSpec.input_field(template)
    given = values["input"]
    if field_name is not None and isinstance(given, Mapping) and field_name in given:
        return given[field_name]
    return _render(name, f"variables.{variable}", template, values)


def _render(name: str, at: str, template: str, values: Mapping[str, Any]) -> str:
    """``template`` rendered; a reference without a value (an optional input field left out)
    is the input's fault: TriggerInputInvalid naming the trigger and the template."""
    try:
        return render(template, values)
    except UsageError as exc:
        missing = str(exc).split(";")[0]
        raise TriggerInputInvalid(f"trigger {name!r}: {at}: {missing} (the input leaves out a "
                                  "field the template reads); nothing was appended") from exc


def _batch(sessions: Sessions, session_id: str, name: str, spec: TriggerSpec,
           values: Mapping[str, Any], payload: Any, key: str | None, number: int | None,
           text: str | None, detail: Mapping[str, Any] | None,
           on_behalf: tuple[str, tuple[str, ...]] = ("anonymous", ())) -> list[Event]:
    """The events one firing appends: its variables, its record, its turn."""
    now = sessions.runtime.clock.now()
    provenance: dict[str, Any] = {"trigger": name}
    if key is not None:
        provenance["key"] = key
    batch: list[Event] = [
        VariableSet(seq=0, at=now, name=variable,
                    value=to_json(values[variable], what=f"variable {variable!r}"),
                    by="trigger", provenance=provenance)
        for variable in spec.variables]
    if key is not None:
        batch.append(TriggerFired(seq=0, at=now, trigger=name, key=key, turn=number,
                                  input=to_json(payload, what=f"trigger {name!r} input"),
                                  detail=dict(detail or {})))
    if number is not None:
        batch.append(TurnStarted(seq=0, at=now, turn=number,
                                 run_id=turn_run_id(session_id, number),
                                 trigger=name, input=text, principal=on_behalf[0],
                                 roles=list(on_behalf[1])))
    return batch


def _append(sessions: Sessions, state: SessionState, events: Sequence[Event]) -> None:
    """Append ``events`` at ``state``'s revision (compare-and-set): all or none."""
    batch = [e.model_copy(update={"seq": state.revision + i + 1})
             for i, e in enumerate(events)]
    # sync: a started turn is what the caller (and a webhook's sender) acts on.
    sessions.runtime.store.append(stream_id(state.session_id), batch,
                                  expected_last_seq=state.revision, sync=True)


async def _turn_result(sessions: Sessions, session_id: str, number: int) -> TurnResult | None:
    """Turn ``number`` run to where it stops: resumed when it is the session's open turn, its
    result read when it has finished; ``None`` while another worker executes it."""
    from tether.sessions.session import TurnResult

    state, _ = _read(sessions, session_id)
    turn = state.turns[number - 1]
    try:
        if state.pending is turn or (state.pending is not None
                                     and state.pending.number == number):
            return await sessions.resume(session_id)
        run = await sessions.runtime.resume(turn.run_id)
    except RunOwned:
        return None
    return TurnResult(session_id, number, run, state.revision)


async def _repeat(sessions: Sessions, session_id: str, record: TriggerFired) -> Fired:
    """A key that fired before: nothing is recorded; its turn is resumed or reported."""
    result = None
    if record.turn is not None:
        result = await _turn_result(sessions, session_id, record.turn)
    return Fired(record.trigger, record.key, record.turn, result, duplicate=True,
                 detail=dict(record.detail))


async def _resume_pending(sessions: Sessions, definition: AgentDefinition,
                          session_id: str) -> Fired | None:
    """Resume the session's open turn when a trigger's firing started it (a crash after the
    firing was recorded); the firing, as a duplicate."""
    state, fired = _read(sessions, session_id, definition)
    pending = state.pending
    if pending is None:
        return None
    for record in fired.values():
        if record.turn == pending.number:
            return await _repeat(sessions, session_id, record)
    return None


# -- reading ---------------------------------------------------------------------------------


def _read(sessions: Sessions, session_id: str, definition: AgentDefinition | None = None,
          ) -> tuple[SessionState, dict[str, TriggerFired]]:
    """The session's state and its firing records by key, from one read of its stream; with
    ``definition``, a UsageError when the session talks to another agent (its triggers are
    not this session's)."""
    if not session_id or "\x00" in session_id:
        raise UsageError(f"session id {session_id!r} must be a non-empty string without NUL")
    state = SessionState(session_id)
    fired: dict[str, TriggerFired] = {}
    for event in sessions.runtime.store.read(stream_id(session_id)):
        fold(state, event)
        if isinstance(event, TriggerFired):
            fired[event.key] = event
    if not state.exists:
        raise UsageError(f"no session {session_id!r} in the store; create it with "
                         "sessions.create, or restore it from the client's copy")
    if definition is not None and state.agent != definition.name:
        raise UsageError(f"session {session_id!r} talks to agent {state.agent!r}, not "
                         f"{definition.name!r} ({definition.source}); fire the triggers of "
                         "the session's own agent file")
    return state, fired


def _trigger(definition: AgentDefinition, name: str, kind: str) -> TriggerSpec:
    spec = definition.spec.triggers.get(name)
    if spec is None:
        known = ", ".join(sorted(definition.spec.triggers)) or "none are declared"
        raise UsageError(f"{definition.source}: agent {definition.name!r} has no trigger "
                         f"{name!r} (triggers: {known})")
    if spec.kind != kind:
        entry = {"message": "fire", "webhook": "fire_webhook", "schedule": "fire_due",
                 "approval": "on_decision"}[spec.kind]
        raise UsageError(f"{definition.source}: triggers.{name} is kind {spec.kind}, not "
                         f"{kind}; it fires through {entry}() (its input is checked there)")
    return spec


def _signature(value: str | None, header: str, trigger: str) -> tuple[str, list[str]]:
    """The timestamp and v1 digests of a signature header, or WebhookRejected."""
    if value is None:
        raise WebhookRejected(f"trigger {trigger!r}: the delivery has no {header} header; every "
                              "delivery must be signed (t=<unix seconds>,v1=<hex HMAC-SHA256>)",
                              reason="missing-signature")
    stamp, digests = None, []
    for part in value.split(","):
        label, _, item = part.strip().partition("=")
        if label == "t":
            stamp = item
        elif label == "v1":
            digests.append(item)
    if stamp is None or not _TIMESTAMP.fullmatch(stamp) or not digests:
        raise WebhookRejected(f"trigger {trigger!r}: the {header} header is not "
                              "t=<unix seconds>,v1=<hex HMAC-SHA256> (one t, one or more v1)",
                              reason="malformed-signature")
    return stamp, digests


def _json_body(body: bytes, trigger: str) -> Any:
    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not JSON")

    try:
        return json.loads(body.decode("utf-8"), parse_constant=refuse)
    except (UnicodeDecodeError, ValueError) as exc:
        raise TriggerInputInvalid(f"trigger {trigger!r}: the webhook body is not UTF-8 JSON "
                                  f"({exc}); nothing was appended") from exc


def _slot_at(first: float, every_s: float, now: float) -> int:
    """The latest slot ``k`` with ``first + k * every_s <= now``; -1 when none has elapsed."""
    if now < first:
        return -1
    slot = math.floor((now - first) / every_s)
    # Float division may land one off at a slot's exact time: settle on the definition.
    while first + (slot + 1) * every_s <= now:
        slot += 1
    while slot >= 0 and first + slot * every_s > now:
        slot -= 1
    return slot


def _slot_key(trigger: str, slot: int) -> str:
    return f"schedule:{trigger}:{slot}"


def _last_slot(fired: Mapping[str, TriggerFired], trigger: str) -> int:
    """The latest slot of ``trigger`` recorded as fired; -1 when none."""
    prefix = f"schedule:{trigger}:"
    return max((int(key[len(prefix):]) for key in fired if key.startswith(prefix)), default=-1)


def _decision(resolved: WaitResolved, request: WaitStarted) -> dict[str, Any]:
    """An approval decision as a trigger's input: ``{decision, by, role, note, tool}``."""
    value = resolved.value if isinstance(resolved.value, dict) else \
        {"approved": bool(resolved.value)}
    role = value.get("role")
    return {"decision": "approved" if value.get("approved") else "denied",
            "by": resolved.by, "role": role if isinstance(role, str) else None,
            "note": resolved.note or str(value.get("note") or ""),
            "tool": str(request.data.get("tool", ""))}
