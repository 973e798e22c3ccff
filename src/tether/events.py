"""Journal events: the append-only record from which a run's state is derived.

Every event is a frozen pydantic model with a ``kind`` tag, a per-kind schema version ``v``, the
run-local sequence number ``seq`` (1, 2, 3 … with no gaps) and ``at``, the time on the run's
clock. Durable calls made by a workflow carry ``pos``, their position in the run: on resume the
journaled outcome at a position is returned instead of executing the call again.

Bodies are stored as the exact JSON text :func:`encode` produces, with a CRC-32 beside them, so a
store can tell a torn or altered event from a good one. The text is valid UTF-8 that
:func:`decode` turns back into an equal event, whatever the event holds: non-finite floats are
written as the constants ``Infinity``, ``-Infinity`` and ``NaN`` (as Python's :mod:`json` writes
and reads them), and a string with a lone surrogate as ``\\uXXXX`` escapes.
"""

from __future__ import annotations

import copy
import json
import zlib
from collections.abc import Callable
from enum import StrEnum
from types import UnionType
from typing import Annotated, Any, ClassVar, Literal, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
)
from pydantic_core import PydanticSerializationError

from tether.errors import CorruptJournal, SchemaTooNew

__all__ = [
    "DURABLE_CALLS",
    "STATUS_KINDS",
    "TOOL_DESCRIPTION_CHARS",
    "Event",
    "MemoryForgotten",
    "MemoryWritten",
    "ResourceVersion",
    "RunDequeued",
    "RunFinished",
    "RunStarted",
    "RunStatus",
    "RunWaiting",
    "SessionClosed",
    "SessionCreated",
    "SessionRestored",
    "StepFailed",
    "StepRecorded",
    "TimerFired",
    "TimerStarted",
    "ToolAmbiguous",
    "ToolError",
    "ToolIntent",
    "ToolResult",
    "TriggerFired",
    "TurnFinished",
    "TurnStarted",
    "VariableSet",
    "WaitExpired",
    "WaitResolved",
    "WaitStarted",
    "checksum",
    "decode",
    "encode",
    "encode_with_checksum",
    "status_after",
    "status_change",
]


class RunStatus(StrEnum):
    """Where a run stands, derived from its journal. ``queued``: enqueued for a worker, which
    has not taken it up yet."""

    QUEUED = "queued"
    RUNNING = "running"
    WAITING = "waiting"
    COMPLETED = "completed"
    FAILED = "failed"
    ESCALATED = "escalated"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in _FINISHED


_FINISHED = {RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.ESCALATED, RunStatus.CANCELLED}


class _Event(BaseModel):
    # Non-finite floats as the constants Python's json reads back, never as null: what a
    # live run saw is what its replay sees (see tether.runtime.codec).
    # defer_build: a kind's validator and serializer are built when it is first used, not when
    # this module is imported (building all of them was most of a restarted worker's start-up).
    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="constants",
                              defer_build=True)
    VERSION: ClassVar[int] = 1

    seq: int
    at: float
    v: int = 1


def _drop_defaults(data: dict[str, Any], event: BaseModel, names: tuple[str, ...]) -> None:
    """Leave fields added after a kind's first release out of its JSON while they hold their
    default, so journals that do not use them stay byte for byte what they were."""
    for name in names:
        if getattr(event, name) == type(event).model_fields[name].default:
            data.pop(name, None)


class RunStarted(_Event):
    """A run began: which workflow, with what input and seed.

    ``queue`` is ``None`` for a run started in place by the process that created it (status
    ``running``) and the queue's name for a run *enqueued* for a worker (status ``queued``,
    nobody owns it until a worker claims it and appends :class:`RunDequeued`).
    """

    kind: Literal["run_started"] = "run_started"
    workflow: str
    input: Any = None
    seed: int
    session_id: str | None = None
    queue: str | None = None

    @model_serializer(mode="wrap")
    def _serialize(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        _drop_defaults(data, self, ("queue",))
        return data


class RunDequeued(_Event):
    """A worker took up a queued run (appended under its lease before anything else): the
    run's status moves from ``queued`` to ``running``."""

    kind: Literal["run_dequeued"] = "run_dequeued"


class RunWaiting(_Event):
    """A run that was woken without anything to do (a resolution for a wait it has not
    reached yet, one of several waits answered) suspended again on ``key``: its status moves
    back to ``waiting``, and ``wake_at`` is when a worker must look at it again (its earliest
    pending deadline or parked timer; ``None``: only a resolution wakes it)."""

    kind: Literal["run_waiting"] = "run_waiting"
    key: str
    wake_at: float | None = None


class StepRecorded(_Event):
    """A durable call that is not a tool (``step``, ``now``, ``random``, ``uuid``) returned."""

    kind: Literal["step"] = "step"
    pos: int
    call: str
    name: str
    result: Any = None


class StepFailed(_Event):
    """A ``step`` raised; on replay the same error is raised again."""

    kind: Literal["step_failed"] = "step_failed"
    pos: int
    call: str
    name: str
    error: dict[str, Any]


class TimerStarted(_Event):
    """A durable sleep began; it ends at ``wake_at`` on the run's clock.

    A ``parked`` timer suspends the run (status ``waiting``) instead of sleeping in the
    process: the run's index row carries ``wake_at`` and a worker takes it up again then.
    """

    kind: Literal["timer_started"] = "timer_started"
    pos: int
    wake_at: float
    parked: bool = False

    @model_serializer(mode="wrap")
    def _serialize(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        _drop_defaults(data, self, ("parked",))
        return data


class TimerFired(_Event):
    """A durable sleep ended."""

    kind: Literal["timer_fired"] = "timer_fired"
    pos: int


class WaitStarted(_Event):
    """The run waits for an external resolution of ``key`` (an approval, a signal …)."""

    kind: Literal["wait_started"] = "wait_started"
    pos: int
    key: str
    deadline: float | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class WaitResolved(_Event):
    """Someone resolved ``key``; ``by`` and ``note`` say who and why."""

    kind: Literal["wait_resolved"] = "wait_resolved"
    key: str
    value: Any = None
    by: str = ""
    note: str = ""


class WaitExpired(_Event):
    """A wait passed its deadline unresolved."""

    kind: Literal["wait_expired"] = "wait_expired"
    pos: int
    key: str


class ToolIntent(_Event):
    """A write is about to be sent. Journaled durably before the handler runs.

    ``compensates`` is set when this call undoes the write made at that position.
    """

    kind: Literal["tool_intent"] = "tool_intent"
    pos: int
    tool: str
    effect: str
    key: str
    args: dict[str, Any]
    attempt: int = 1
    compensates: int | None = None


class ToolResult(_Event):
    """A tool call returned (or, with ``reconciled``, a lookup found the write had happened)."""

    kind: Literal["tool_result"] = "tool_result"
    pos: int
    tool: str
    result: Any = None
    reconciled: bool = False
    latency_s: float = 0.0
    source: str | None = None
    trust: str | None = None
    #: Set when a write applied but its response is unusable (it cannot be journaled, or it
    #: breaks the declared result type): why. ``result`` then holds what could be kept.
    unreadable: str | None = None


class ToolError(_Event):
    """A tool call failed definitively, classified by ``failure``."""

    kind: Literal["tool_error"] = "tool_error"
    pos: int
    tool: str
    failure: str
    error: dict[str, Any]
    latency_s: float = 0.0


class ToolAmbiguous(_Event):
    """A write's outcome is unknown (a timeout, a lost connection, a crash after its intent).

    ``interrupted``: the process sending the attempt stopped (a crash, a lost lease) before
    its result was journaled — the provider did not leave it unknown, the worker did. Such
    attempts are bounded by the retry policy's ``crash`` rule, not by the tool's
    ``attempts``. Left out of the JSON while false (older journals read as before)."""

    kind: Literal["tool_ambiguous"] = "tool_ambiguous"
    pos: int
    tool: str
    key: str
    reason: str
    attempt: int = 1
    interrupted: bool = False

    @model_serializer(mode="wrap")
    def _serialize(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        _drop_defaults(data, self, ("interrupted",))
        return data


class ToolRetry(_Event):
    """A tool attempt failed transiently and will be retried after ``delay_s`` (run clock)."""

    kind: Literal["tool_retry"] = "tool_retry"
    pos: int
    tool: str
    failure: str
    attempt: int
    delay_s: float
    error: dict[str, Any]
    #: A lookup (``reconcile``) of a write with an unknown outcome failed and is made again;
    #: ``attempt`` is then the lookup's number, not the write's.
    lookup: bool = False


#: How much of a tool's description :class:`ModelCalled` keeps (longer ones are cut, ending
#: in ``…``): enough for a trace, bounded whatever a tool's docstring holds.
TOOL_DESCRIPTION_CHARS = 256


class ModelCalled(_Event):
    """A model call returned: the response, its usage and cost, the request's digest.

    Optional facts for traces, left out of the JSON while unset (journals without them are
    byte for byte what they were): ``server_address``/``server_port``, where the model was
    asked (``None`` for scripted and in-process models); ``tool_descriptions``, the
    description of each tool the response asked for, by name, cut to
    :data:`TOOL_DESCRIPTION_CHARS` characters; ``input``, the request itself (``messages`` and
    ``tools``, as :class:`~tether.models.base.ModelRequest` dumps them), only when the call's
    settings asked for it (``ModelSettings.journal_input``). Replay reads none of them.
    """

    kind: Literal["model_called"] = "model_called"
    pos: int
    model: str
    request_digest: str
    response: dict[str, Any]
    cost_usd: float = 0.0
    latency_s: float = 0.0
    server_address: str | None = None
    server_port: int | None = None
    tool_descriptions: dict[str, str] = Field(default_factory=dict)
    input: dict[str, Any] | None = None

    @model_serializer(mode="wrap")
    def _serialize(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        _drop_defaults(data, self, ("server_address", "server_port", "input"))
        if not self.tool_descriptions:
            data.pop("tool_descriptions", None)
        return data


class ModelFailed(_Event):
    """A model call failed, classified by ``failure``; on replay the same error is raised.
    ``server_address``, ``server_port`` and ``input`` as on :class:`ModelCalled`."""

    kind: Literal["model_failed"] = "model_failed"
    pos: int
    model: str
    request_digest: str
    failure: str
    error: dict[str, Any]
    latency_s: float = 0.0
    server_address: str | None = None
    server_port: int | None = None
    input: dict[str, Any] | None = None

    @model_serializer(mode="wrap")
    def _serialize(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        _drop_defaults(data, self, ("server_address", "server_port", "input"))
        return data


class Decision(_Event):
    """A decision of the harness at a position: a failure's classification and the action
    taken (``retry``, ``compress``, ``disable_tool``, ``stop`` …), a breaker opening, a budget
    breach. ``data`` holds its facts. Journaled so replay, traces and graders see it."""

    kind: Literal["decision"] = "decision"
    pos: int
    name: str
    data: dict[str, Any] = Field(default_factory=dict)


class MemoryWritten(_Event):
    """A fact was remembered in a memory namespace (see :mod:`tether.memory`): ``value`` for
    ``key`` of ``subject``, with where it came from (``source``, ``trust``, and the ``run_id``
    and ``position`` of the step that wrote it, if any) and when it expires (run clock)."""

    kind: Literal["memory_written"] = "memory_written"
    subject: str
    key: str
    value: Any = None
    source: str
    trust: str
    run_id: str | None = None
    position: int | None = None
    expires_at: float | None = None


class MemoryForgotten(_Event):
    """Facts of ``subject`` were forgotten: the one under ``key``, or all when ``key`` is None."""

    kind: Literal["memory_forgotten"] = "memory_forgotten"
    subject: str
    key: str | None = None
    reason: str = ""


class SessionCreated(_Event):
    """A session began (see :mod:`tether.sessions`): the agent it talks to, its variables'
    initial values and how long it lives without a turn (``ttl_s``; ``None``: forever)."""

    kind: Literal["session_created"] = "session_created"
    agent: str
    variables: dict[str, Any] = Field(default_factory=dict)
    ttl_s: float | None = None
    created_at: float


class VariableSet(_Event):
    """A session variable changed; ``by`` says who changed it (``trigger``, ``tool`` or
    ``client``) and ``provenance`` what it was derived from."""

    kind: Literal["variable_set"] = "variable_set"
    name: str
    value: Any = None
    by: Literal["trigger", "tool", "client"]
    provenance: dict[str, Any] = Field(default_factory=dict)


class ResourceVersion(_Event):
    """A new version of a session's named document, with where it came from
    (``provenance``: ``source``, ``run_id``, ``trust``)."""

    kind: Literal["resource_version"] = "resource_version"
    name: str
    version: int
    content: Any = None
    provenance: dict[str, Any] = Field(default_factory=dict)


class TurnStarted(_Event):
    """Turn ``turn`` of a session began as the run ``run_id``, started by ``trigger``."""

    kind: Literal["turn_started"] = "turn_started"
    turn: int
    run_id: str
    trigger: str = "user-message"
    input: Any = None
    #: On whose behalf the turn runs, and their roles: the turn's task carries them to the
    #: policy. Recorded here so a turn resumed after a crash runs for the same principal.
    principal: str = "anonymous"
    roles: list[str] = []


class TurnFinished(_Event):
    """The run of turn ``turn`` ended with ``status``."""

    kind: Literal["turn_finished"] = "turn_finished"
    turn: int
    run_id: str
    status: RunStatus


class SessionRestored(_Event):
    """A session's history was restored from the client's copy: ``messages`` as validated and
    demoted to the client's trust (``trust``), superseding the history before it."""

    kind: Literal["session_restored"] = "session_restored"
    messages: list[dict[str, Any]]
    trust: str = "user"


class TriggerFired(_Event):
    """Trigger ``trigger`` of a session fired for ``key`` (a webhook delivery's event id, a
    schedule's slot, an approval's decision), appended in the same batch as the variables it
    set and the turn it started (``turn``; ``None`` when it only set variables), so a second
    delivery of the same key finds it and starts nothing. ``detail`` says what else the
    firing decided (the schedule slots it skipped)."""

    kind: Literal["trigger_fired"] = "trigger_fired"
    trigger: str
    key: str
    turn: int | None = None
    input: Any = None
    detail: dict[str, Any] = Field(default_factory=dict)


class SessionClosed(_Event):
    """The session was closed; no turn may start in it again."""

    kind: Literal["session_closed"] = "session_closed"
    reason: str = ""


class RunFinished(_Event):
    """The run ended with ``status``; ``reason`` says why for failures and escalations."""

    kind: Literal["run_finished"] = "run_finished"
    status: RunStatus
    result: Any = None
    error: dict[str, Any] | None = None
    reason: str = ""


Event = Annotated[
    RunStarted
    | RunDequeued
    | RunWaiting
    | StepRecorded
    | StepFailed
    | TimerStarted
    | TimerFired
    | WaitStarted
    | WaitResolved
    | WaitExpired
    | ToolIntent
    | ToolResult
    | ToolError
    | ToolAmbiguous
    | ToolRetry
    | ModelCalled
    | ModelFailed
    | Decision
    | MemoryWritten
    | MemoryForgotten
    | SessionCreated
    | VariableSet
    | ResourceVersion
    | TurnStarted
    | TurnFinished
    | SessionRestored
    | SessionClosed
    | TriggerFired
    | RunFinished,
    Field(discriminator="kind"),
]

_KINDS: dict[str, type[_Event]] = {
    cls.model_fields["kind"].default: cls
    for cls in (RunStarted, RunDequeued, RunWaiting, StepRecorded, StepFailed, TimerStarted,
                TimerFired, WaitStarted, WaitResolved, WaitExpired, ToolIntent, ToolResult,
                ToolError, ToolAmbiguous, ToolRetry, ModelCalled, ModelFailed, Decision,
                MemoryWritten, MemoryForgotten, SessionCreated, VariableSet, ResourceVersion,
                TurnStarted, TurnFinished, SessionRestored, SessionClosed, TriggerFired,
                RunFinished)
}

#: Event kinds that record the outcome of a workflow's durable call at a position.
DURABLE_CALLS = frozenset({"step", "step_failed", "timer_started", "wait_started", "tool_intent",
                           "tool_result", "tool_error", "tool_ambiguous", "tool_retry",
                           "model_called", "model_failed", "decision"})


def _plain(annotation: object) -> bool:
    """Whether a field holds what :func:`json.loads` gives back unchanged (so a trusted row
    need not be validated): JSON's own types, Any, and lists, dicts, literals and unions of
    them. A float field is fixed up separately (JSON may spell a whole float as an int)."""
    if annotation in (int, str, bool, float, Any, None, type(None)):
        return True
    origin = get_origin(annotation)
    if origin is Literal:
        return True
    if origin in (list, dict, Union, UnionType):
        return all(_plain(arg) for arg in get_args(annotation))
    return False


class _Shape:
    """What a stored row of one kind needs to be built without validation: its fields in
    order (with their defaults), the required ones, the float and the :class:`RunStatus`
    fields."""

    __slots__ = ("defaults", "floats", "known", "required", "statuses")

    def __init__(self, cls: type[_Event]) -> None:
        fields = cls.model_fields
        self.known = frozenset(fields)
        self.required = frozenset(n for n, f in fields.items() if f.is_required())
        # (name, default, default_factory) in the order pydantic keeps them: the serializer
        # writes a model's fields in the order of its __dict__. A mutable default (a list)
        # is copied per event, as validation copies it, so no two events share one.
        self.defaults: tuple[tuple[str, Any, Callable[[], Any] | None], ...] = tuple(
            (n, f.default, f.default_factory or _copier(f.default))  # type: ignore[misc]
            for n, f in fields.items())
        self.floats = tuple(n for n, f in fields.items() if f.annotation in (float, float | None))
        self.statuses = tuple(n for n, f in fields.items() if f.annotation is RunStatus)


def _copier(default: object) -> Callable[[], Any] | None:
    """A factory of fresh copies of a mutable default; None for an immutable one."""
    if isinstance(default, list | dict | set):
        return lambda: copy.deepcopy(default)
    return None


def _trusted_shape(cls: type[_Event]) -> _Shape | None:
    """The kind's :class:`_Shape`, or ``None`` if a field holds anything but what JSON gives
    back (or the model does more than hold fields): then every row of the kind is validated."""
    if (cls.__pydantic_post_init__ or cls.__private_attributes__
            or any(f.alias or f.validation_alias or f.default_factory_takes_validated_data
                   for f in cls.model_fields.values())):
        return None
    if all(f.annotation is RunStatus or _plain(f.annotation) for f in cls.model_fields.values()):
        return _Shape(cls)
    return None


_TRUSTED_SHAPES = {cls: _trusted_shape(cls) for cls in _KINDS.values()}
_set = object.__setattr__


def _construct_trusted(cls: type[_Event], raw: dict[str, Any]) -> _Event | None:
    """``raw`` as a ``cls`` without validation, or ``None`` when it is not exactly a current
    row of the kind (an unknown or missing field: the validating path says why). What
    ``model_construct`` does for these plain models, without its general case (aliases,
    extras, post-init), which made it slower than validating."""
    shape = _TRUSTED_SHAPES[cls]
    if shape is None:
        return None
    keys = raw.keys()
    if not (keys <= shape.known and shape.required <= keys):
        return None
    for name in shape.floats:
        value = raw.get(name)
        if type(value) is int:
            raw[name] = float(value)
        elif value is not None and type(value) is not float:
            return None
    for name in shape.statuses:
        try:
            raw[name] = RunStatus(raw[name])
        except ValueError:
            return None
    values = {name: raw[name] if name in raw else (default if factory is None else factory())
              for name, default, factory in shape.defaults}
    event = cls.__new__(cls)
    _set(event, "__dict__", values)
    _set(event, "__pydantic_fields_set__", set(keys))
    _set(event, "__pydantic_extra__", None)
    _set(event, "__pydantic_private__", None)
    return event


def encode(event: _Event) -> str:
    """The canonical JSON text of an event, as stored."""
    return encode_with_checksum(event)[0]


def encode_with_checksum(event: _Event) -> tuple[str, int]:
    """:func:`encode` and :func:`checksum` of its text at once, as stores write them.

    >>> encode_with_checksum(RunDequeued(seq=2, at=0.0))
    ('{"seq":2,"at":0.0,"v":1,"kind":"run_dequeued"}', 3397255825)
    """
    try:
        # The serializer itself, not model_dump_json: the same call with the same (default)
        # options minus its Python wrapper, which cost a third of encoding a step's event;
        # and the CRC is taken of the UTF-8 bytes it returns, without encoding the text again.
        raw = type(event).__pydantic_serializer__.to_json(event)
    except PydanticSerializationError as exc:
        # A string holding a lone surrogate, which UTF-8 cannot encode: written as \uXXXX
        # escapes instead, which decode() reads back as the same string.
        try:
            body = json.dumps(event.model_dump(mode="json"), separators=(",", ":"))
        except (TypeError, ValueError):
            raise exc from None
        return body, checksum(body)
    return raw.decode(), zlib.crc32(raw)


def checksum(body: str) -> int:
    """CRC-32 of an encoded event, stored beside it."""
    return zlib.crc32(body.encode())


def decode(body: str, *, run_id: str = "", seq: int | None = None, crc: int | None = None) -> Event:
    """Parse a stored event, checking its checksum, kind and version.

    Raises :class:`CorruptJournal` for damaged data and :class:`SchemaTooNew` for an event
    written by a newer tether; never returns a partial event.
    """
    where = f"run {run_id!r} event seq {seq}" if seq is not None else f"run {run_id!r}"
    if crc is not None and checksum(body) != crc:
        raise CorruptJournal(f"{where}: checksum mismatch (stored {crc}, computed "
                             f"{checksum(body)}); the journal was altered or torn")
    try:
        raw = json.loads(body)
    except ValueError as exc:
        raise CorruptJournal(f"{where}: body is not JSON ({exc})") from exc
    kind = raw.get("kind") if isinstance(raw, dict) else None
    cls = _KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise SchemaTooNew(f"{where}: unknown event kind {kind!r}; it was written by a newer "
                           "tether or by something else; upgrade tether to read it")
    if int(raw.get("v", 1)) > cls.VERSION:
        raise SchemaTooNew(f"{where}: {kind} version {raw.get('v')} is newer than the "
                           f"version {cls.VERSION} this tether reads; upgrade tether")
    event: _Event | None = None
    if crc is not None and not cls.__pydantic_complete__ and raw.get("v", 1) == cls.VERSION:
        # The checksum matched, so these are the bytes encode() wrote from a validated event
        # of this kind at this version: validating them again would only repeat that work,
        # after first building the kind's validator (milliseconds, most of a restarted
        # worker's reading). Once the kind is built (this process wrote or validated one),
        # validating is the cheaper of the two (about 2 µs against 3.5 µs), so it is used.
        event = _construct_trusted(cls, raw)
    if event is None:
        event = _validated(cls, raw, where, str(kind))
    if seq is not None and event.seq != seq:
        raise CorruptJournal(f"{where}: body says seq {event.seq}")
    return event  # type: ignore[return-value]  # one of the kinds of the Event union


def _validated(cls: type[_Event], raw: dict[str, Any], where: str, kind: str) -> _Event:
    """``raw`` validated as its kind (the kind's validator alone is built, not the union's)."""
    try:
        return cls.model_validate(raw)
    except ValidationError as exc:
        unknown = [".".join(map(str, e["loc"])) for e in exc.errors()
                   if e["type"] == "extra_forbidden"]
        if unknown and len(unknown) == exc.error_count():
            # Fields are added to kinds over time (optional, left out at their default): one
            # this tether does not know means a newer writer; damage is the checksum's to catch.
            raise SchemaTooNew(f"{where}: {kind} has fields this tether does not know "
                               f"({', '.join(unknown)}); it was written by a newer tether; "
                               "upgrade tether to read it") from exc
        raise CorruptJournal(f"{where}: {kind} does not match its schema: {exc}") from exc


# How each kind moves a run's status: (new status, only if the status is currently …).
# Kinds whose change depends on the event's fields are decided in status_change.
_STATUS_CHANGES: dict[str, tuple[RunStatus, RunStatus | None]] = {
    "run_dequeued": (RunStatus.RUNNING, RunStatus.QUEUED),
    "run_waiting": (RunStatus.WAITING, None),
    "wait_started": (RunStatus.WAITING, None),
    "wait_resolved": (RunStatus.RUNNING, RunStatus.WAITING),
    "wait_expired": (RunStatus.RUNNING, RunStatus.WAITING),
    "timer_fired": (RunStatus.RUNNING, RunStatus.WAITING),
}


#: The kinds whose events may change a run's status: :func:`status_change` is ``None`` for
#: every other kind without looking further (a store asks it of every event it appends).
STATUS_KINDS = frozenset({"run_finished", "run_started", "timer_started", *_STATUS_CHANGES})


def status_change(event: _Event) -> tuple[RunStatus, RunStatus | None] | None:
    """How ``event`` changes its run's status: ``(new, required_current)`` or ``None``.

    ``required_current`` is ``None`` when the change applies whatever the status is.
    """
    if event.kind not in STATUS_KINDS:  # type: ignore[attr-defined]
        return None
    if isinstance(event, RunFinished):
        return (event.status, None)
    if isinstance(event, RunStarted):
        return (RunStatus.RUNNING if event.queue is None else RunStatus.QUEUED, None)
    if isinstance(event, TimerStarted):
        return (RunStatus.WAITING, None) if event.parked else None
    return _STATUS_CHANGES.get(event.kind)  # type: ignore[attr-defined]


def status_after(current: RunStatus | None, event: _Event) -> RunStatus | None:
    """The run status once ``event`` is applied, or ``current`` if the event does not change it."""
    change = status_change(event)
    if change is None or (change[1] is not None and current != change[1]):
        return current
    return change[0]
