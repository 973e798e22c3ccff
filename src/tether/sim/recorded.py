"""Tools answered from a recorded run: what a captured incident's scenario replays against.

A scenario made by ``tether sim capture`` (see :mod:`tether.sim.capture`) carries a
``recorded:`` mapping — for each tool the recorded run called, in call order, what each call
was sent and what it met:

.. code-block:: yaml

    recorded:
      run: run-agent-A1001              # the run it was captured from
      tools:
        lookup_order:
          effect: read
          calls:
            - {outcome: ok, args: {order_id: A-1001}, result: {amount_cents: 4999}}
        refund:
          effect: idempotent
          calls:
            - {outcome: timeout_after, args: {order_id: A-1001, amount_cents: 4999},
               key: "refund:A-1001", result: {refund_id: re_1}}
            - {outcome: ok, args: {...}, key: "refund:A-1001", result: {refund_id: re_1}}

``outcome`` is one of :data:`OUTCOMES`: ``ok`` (answered ``result``), ``error`` (the service
refused: ``error`` is the journaled error, raised again), ``throttled`` (429, ``retry_after_s``),
``unavailable`` (5xx ``status``), ``timeout`` (no answer, nothing applied), ``timeout_after``
(a write's answer was lost; assumed applied), ``crash_after`` (the worker died with the write in
flight; assumed applied), ``auth_expired``. The failures are reproduced by the scenario's
``faults:`` on targets ``recorded.<tool>`` at the same call numbers; this module reproduces the
answers.

:class:`RecordedTools` (installed by :func:`wrap_recorded`) replaces each tool's handler, so the
agent's own handlers — and the production clients behind them — never run:

* a **read** answers with the next recorded answer of that tool whose arguments equal the
  call's (in call order); once they are used up, a read repeated with the same arguments gets
  the last answer recorded for them (the state as the run last observed it — a naive harness
  restarting its task repeats its reads). Any other read is outside the recording.
* a **write** is applied to a recording service that keeps a ledger effect ``recorded.<tool>``
  under the write's business key (the recorded key of the recorded write with the same
  arguments), so invariants count it whatever key the replaying harness uses. Like a real
  provider, it deduplicates by the idempotency key the caller passes (``ctx.idempotency_key``),
  answering the first response again without a second effect; with no key (the naive harness),
  every call applies again — which is how a blind retry of a write shows as a duplicate. It
  answers the response the run recorded for that key. A refusal (``error``) is permanent, as
  a provider's 4xx is: a write the run's provider only ever refused is refused again, and the
  n-th call of a tool is refused again when the run's n-th call, with the same arguments, was.
  A write with arguments the run never sent is outside the recording.
* a **lookup** (``reconcile`` of a reconcilable tool) answers from the recording service: the
  response under the key if a write under it was applied in this episode, else nothing.
* a **compensation** (a saga's undo) is not recorded: it is refused as outside the recording,
  rather than run against services that hold none of the run's state.
* an answer the handler gave with its own provenance (``source``, ``trust``) keeps it.

Every handler goes through the episode's fault layer (:meth:`FaultLayer.call`) under target
``recorded.<tool>`` (lookups under ``recorded.<tool>.lookup``), so the recorded faults fire at
the recorded call numbers. A call outside the recording raises :class:`NotRecorded` and is
listed by :func:`unrecorded`: the replay left the recorded trajectory, so the episode cannot
say what the services would have answered — it is inconclusive, never a pass.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tether.errors import UsageError, rebuild_error
from tether.runtime.provenance import Sourced
from tether.runtime.tools import Tool, ToolContext
from tether.sim.faults import FaultLayer
from tether.sim.world import World
from tether.specs import describe, explain

__all__ = [
    "OUTCOMES",
    "RECORDED_FIELDS",
    "RECORDED_SERVICE",
    "NotRecorded",
    "RecordedCall",
    "RecordedTool",
    "RecordedTools",
    "Recording",
    "recorded_effects",
    "recording_from_dict",
    "unrecorded",
    "wrap_recorded",
]

#: The service name of recorded tools' effects (``recorded.<tool>``) and fault targets.
RECORDED_SERVICE = "recorded"

#: The fields of a ``recorded.<tool>`` effect: the write's arguments and the caller's key.
RECORDED_FIELDS: dict[str, tuple[type, ...]] = {"args": (dict,), "idempotency_key": (str,)}

#: What one recorded call met (see the module docstring).
OUTCOMES = ("ok", "error", "throttled", "unavailable", "timeout", "timeout_after",
            "crash_after", "auth_expired")
Outcome = Literal["ok", "error", "throttled", "unavailable", "timeout", "timeout_after",
                  "crash_after", "auth_expired"]
#: Outcomes after which a write is taken as applied.
APPLIED = ("ok", "timeout_after", "crash_after")
#: Outcomes whose call reached the service's answer (the rest are the fault layer's).
ANSWERED = ("ok", "error")


class NotRecorded(UsageError):
    """A tool call the recorded run did not make: the replay left the recorded trajectory."""


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RecordedCall(_Spec):
    """One recorded call of a tool: what it was sent and what it met."""

    outcome: Outcome
    #: The arguments, as JSON (``None`` for a read whose arguments the journal did not keep).
    args: dict[str, Any] | None = None
    #: A write's idempotency key, as the recorded run sent it.
    key: str = ""
    #: The answer (``ok``), or for a write the answer recorded under its key.
    result: Any = None
    #: The journaled error (``error``): raised again when the call is replayed.
    error: dict[str, Any] | None = None
    status: int | None = Field(default=None, ge=100, le=599)
    retry_after_s: float | None = Field(default=None, ge=0.0)
    #: Where the answer came from and how far it is trusted, when the handler said so itself
    #: (it returned a :class:`~tether.runtime.provenance.Sourced` value): replayed as such.
    source: str | None = None
    trust: Literal["system", "user", "agent", "retrieved", "external"] | None = None

    def answer(self) -> Any:
        """The recorded answer, with its own provenance if it had one."""
        value = copy.deepcopy(self.result)
        if self.source is None:
            return value
        return Sourced(value, source=self.source, trust=self.trust or "external")


class RecordedTool(_Spec):
    """A tool's recorded calls, in call order, and its effect class."""

    effect: Literal["read", "idempotent", "reconcilable", "unsafe"] = "read"
    calls: list[RecordedCall] = []

    @property
    def writes(self) -> bool:
        return self.effect != "read"


class Recording(_Spec):
    """A scenario's ``recorded:`` mapping."""

    run: str = ""
    tools: dict[str, RecordedTool] = {}


def recording_from_dict(data: Any, *, where: str = "<scenario>") -> Recording:
    """Validate a scenario's ``recorded:`` mapping; a :class:`UsageError` names the key path."""
    if isinstance(data, Recording):
        return data
    if not isinstance(data, dict):
        raise UsageError(f"{where}: recorded: expected a mapping, found {describe(data)}")
    try:
        recording = Recording.model_validate(data)
    except ValidationError as exc:
        raise explain(where, "recorded", exc, Recording) from exc
    for name, tool in recording.tools.items():
        for index, call in enumerate(tool.calls):
            at = f"{where}: recorded.tools.{name}.calls[{index}]"
            if call.outcome == "error" and call.error is None:
                raise UsageError(f"{at}: outcome error needs the error it raised (error: "
                                 "{type: ..., message: ...})")
            if tool.writes and call.args is None:
                raise UsageError(f"{at}: a write needs its args")
    return recording


def recorded_effects(data: Any) -> dict[str, dict[str, tuple[type, ...]]]:
    """The effects a recording's writes record (``recorded.<tool>`` → field types), for the
    scenario loader's check of invariant effects."""
    recording = recording_from_dict(data)
    return {f"{RECORDED_SERVICE}.{name}": dict(RECORDED_FIELDS)
            for name, tool in recording.tools.items() if tool.writes}


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _as_json(args: Any) -> dict[str, Any]:
    """A tool call's arguments as the JSON the journal keeps."""
    if isinstance(args, BaseModel):
        dumped: dict[str, Any] = args.model_dump(mode="json")
        return dumped
    if isinstance(args, dict):
        loaded: dict[str, Any] = json.loads(_canonical(args))
        return loaded
    return {"value": json.loads(_canonical(args))}


_NO_ANSWER = object()


def _copied(answer: Any) -> Any:
    """A fresh copy of a stored answer, so a caller changing it changes nothing here."""
    if isinstance(answer, Sourced):
        return Sourced(copy.deepcopy(answer.value), source=answer.source, trust=answer.trust)
    return copy.deepcopy(answer)


@dataclass
class RecordedTools:
    """The recording service: answers reads, applies writes and keeps the episode's state."""

    recording: Recording
    world: World
    layer: FaultLayer
    #: Why each call outside the recording was refused, in order.
    unrecorded: list[str] = field(default_factory=list)
    _used: dict[str, set[int]] = field(default_factory=dict)
    _calls: dict[str, int] = field(default_factory=dict)
    _applied: dict[tuple[str, str], Any] = field(default_factory=dict)
    _identity: dict[tuple[str, str], str] = field(default_factory=dict)
    _assigned: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    def wrap(self, tools: Sequence[Tool[Any, Any]]) -> list[Tool[Any, Any]]:
        """``tools`` with handlers (and lookups) answering from the recording."""
        wrapped = []
        for tool in tools:
            changes: dict[str, Any] = {"handler": self._handler(tool)}
            if tool.reconcile is not None:
                changes["reconcile"] = self._lookup(tool.name)
            if tool.compensate is not None:
                changes["compensate"] = self._no_compensation(tool.name)
            wrapped.append(replace(tool, **changes))
        return wrapped

    def snapshot(self) -> dict[str, Any]:
        """The state invariants may read: the writes applied and the calls refused."""
        return {"applied": {f"{tool}:{key}": copy.deepcopy(result)
                            for (tool, key), result in self._applied.items()},
                "unrecorded": list(self.unrecorded)}

    # -- handlers --------------------------------------------------------------------------

    def _handler(self, tool: Tool[Any, Any]) -> Any:
        name, target = tool.name, f"{RECORDED_SERVICE}.{tool.name}"
        recorded = self.recording.tools.get(name)
        writes = tool.effect.writes if recorded is None else recorded.writes

        async def handler(ctx: ToolContext, args: Any) -> Any:
            data = _as_json(args)
            if writes:
                key = ctx.idempotency_key
                self._calls[name] = number = self._calls.get(name, 0) + 1
                answer = await self.layer.call(
                    target, lambda: self._write(name, data, key, number))
                if answer is _NO_ANSWER:
                    raise self._refuse(
                        f"tool {name!r}: the write with {_canonical(data)} was applied, but the "
                        "recorded run never received its response")
                return _copied(answer)
            return await self.layer.call(target, lambda: self._read(name, data))

        return handler

    def _lookup(self, name: str) -> Any:
        target = f"{RECORDED_SERVICE}.{name}.lookup"

        async def lookup(ctx: ToolContext, key: str) -> Any:
            def find() -> Any:
                applied = self._applied.get((name, key))
                return None if applied is None or applied is _NO_ANSWER else \
                    copy.deepcopy(applied)

            return await self.layer.call(target, find)

        return lookup

    def _no_compensation(self, name: str) -> Any:
        def compensate(ctx: ToolContext, args: Any, result: Any) -> Any:
            raise self._refuse(f"tool {name!r}: its write would be undone, and compensations "
                               "are not recorded")

        return compensate

    def _read(self, name: str, args: dict[str, Any]) -> Any:
        tool = self._tool(name, args)
        used = self._used.setdefault(name, set())
        candidates = [i for i, c in enumerate(tool.calls)
                      if c.outcome in ANSWERED and (c.args is None or c.args == args)]
        fresh = [i for i in candidates if i not in used]
        if fresh:
            index = fresh[0]
            used.add(index)
        else:
            # A read repeated once its recorded answers are used up (a harness that restarts
            # its task reads again) gets the state as the run last observed it.
            repeated = [i for i in candidates if tool.calls[i].args == args]
            if not repeated:
                raise self._refuse(
                    f"tool {name!r} was called with {_canonical(args)}, which the recorded run "
                    f"did not read ({len(candidates)} recorded answer(s) for these arguments)")
            index = repeated[-1]
        call = tool.calls[index]
        if call.outcome == "error":
            raise rebuild_error(call.error or {})
        return call.answer()

    def _write(self, name: str, args: dict[str, Any], key: str, number: int) -> Any:
        tool = self._tool(name, args)
        if number <= len(tool.calls):
            # The provider refused this very request in the recorded run: it refuses it again.
            same = tool.calls[number - 1]
            if same.outcome == "error" and same.args == args:
                raise rebuild_error(same.error or {})
        if key and (name, key) in self._applied:  # the provider's idempotency
            return self._applied[(name, key)]
        identity = self._key_of(name, args, key)
        sent = [c for c in tool.calls if c.key == identity]
        answered = [c for c in sent if c.outcome in APPLIED and c.result is not None]
        if not answered and not any(c.outcome in APPLIED for c in sent):
            refused = next((c for c in sent if c.outcome == "error"), None)
            if refused is not None:
                raise rebuild_error(refused.error or {})
        answer = answered[0].answer() if answered else _NO_ANSWER
        # ledger.record, not world.effect: the write's arguments may be named like
        # world.effect's own parameters.
        self.world.ledger.record(self.world.now(), RECORDED_SERVICE, name, identity,
                                 {"args": args, "idempotency_key": key})
        if key:
            self._applied[(name, key)] = answer
        return answer

    def _key_of(self, name: str, args: dict[str, Any], key: str) -> str:
        """The business key of a write: the recorded key of the recorded write with these
        arguments (the n-th distinct such key for the n-th distinct caller key)."""
        if key and (name, key) in self._identity:
            return self._identity[(name, key)]
        tool = self._tool(name, args)
        keys = list(dict.fromkeys(c.key for c in tool.calls if c.args == args))
        if not keys:
            raise self._refuse(f"tool {name!r} was called with {_canonical(args)}, which the "
                               "recorded run never sent")
        taken = self._assigned.setdefault((name, _canonical(args)), [])
        identity = next((k for k in keys if k not in taken), keys[-1])
        if identity not in taken:
            taken.append(identity)
        if key:
            self._identity[(name, key)] = identity
        return identity

    def _tool(self, name: str, args: dict[str, Any]) -> RecordedTool:
        tool = self.recording.tools.get(name)
        if tool is None:
            raise self._refuse(f"tool {name!r} was called with {_canonical(args)}; the recorded "
                               "run never called it")
        return tool

    def _refuse(self, why: str) -> NotRecorded:
        message = (f"not recorded: {why}. The replay left the recorded run's trajectory, so "
                   "what the service would answer is unknown; the episode is inconclusive")
        self.unrecorded.append(message)
        return NotRecorded(message)


def wrap_recorded(tools: Sequence[Tool[Any, Any]], recording: Any, world: World,
                  layer: FaultLayer) -> list[Tool[Any, Any]]:
    """The agent's ``tools`` answering from ``recording`` (a scenario's ``recorded:``), through
    ``layer`` under targets ``recorded.<tool>``. The recording service is added to ``world``
    as ``recorded`` (its snapshot lists the writes applied and the calls refused)."""
    service = RecordedTools(recording_from_dict(recording), world, layer)
    world.add(RECORDED_SERVICE, service)
    return service.wrap(tools)


def unrecorded(world: World) -> list[str]:
    """The calls of this episode that fell outside the recording (empty when the episode
    stayed on the recorded trajectory, or has no recording): non-empty means inconclusive."""
    service = world.services.get(RECORDED_SERVICE)
    return list(service.unrecorded) if isinstance(service, RecordedTools) else []
