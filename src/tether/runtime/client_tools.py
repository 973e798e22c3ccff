"""Client tools: tools whose handler is the caller's own infrastructure.

A client tool is declared like any tool (arguments, result, effect class) but has no server
handler. When a run calls it, the request — execution id (the run id), call id, tool, validated
arguments, idempotency key of a write, the result's JSON Schema — is journaled as a durable
wait on ``client:{position}:{call_id}`` and the run suspends (status ``waiting``); its process
may exit. The caller reads what is asked (:func:`pending_client_calls`), does the work, and
continues the execution with the results (:func:`continue_execution`), from any process on the
store. The run then resumes on a worker and the model reads the results.

What each odd continue does (the whole continue is refused before anything is recorded):

* an execution the store does not hold → :class:`~tether.errors.UnknownExecution`;
* a result for a call the execution never requested, for a call whose wait expired, for a
  finished run, or a value that breaks the tool's result schema →
  :class:`~tether.errors.ClientResultRefused` naming the call and what is wrong;
* the same results again → a no-op (idempotent): nothing is recorded, the run is not run twice;
* another result for an answered call → :class:`~tether.errors.ClientResultConflict` naming
  the first, which stands.

A call not answered within the tool's ``timeout_s`` (on the run's clock, and never past the
run's deadline) follows its effect class, as any tool's unknown outcome does: a ``read`` fails
as an observation the model reads; a write may have been carried out by the client, so an
``unsafe`` one escalates the run, and an ``idempotent`` or ``reconcilable`` one is requested
again under the *same* idempotency key (the client deduplicates or looks it up), up to the
tool's ``attempts``, after which it escalates: its outcome is still unknown.

Within one model response every client call is requested before the run suspends, so one
continue can answer them all (server tools of the same response run first); the run resumes
only when every call of the round is settled.

>>> from pydantic import BaseModel
>>> class Pick(BaseModel):
...     question: str
>>> confirm = client_tool("confirm", args=Pick, result=bool, description="Ask the user.")
>>> confirm.effect.value, confirm.trust.value
('read', 'user')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from tether.clock import Clock
from tether.errors import (
    ClientResultConflict,
    ClientResultRefused,
    ConcurrencyConflict,
    RunEscalated,
    RunSuspended,
    ToolFailed,
    ToolResultInvalid,
    UnknownExecution,
    UsageError,
    WaitTimedOut,
)
from tether.events import (
    Event,
    RunFinished,
    RunStatus,
    WaitExpired,
    WaitResolved,
    WaitStarted,
)
from tether.runtime.codec import to_json
from tether.runtime.context import RunContext, internals
from tether.runtime.provenance import Trust
from tether.runtime.schema_check import problems
from tether.runtime.tools import Effect, Tool, ToolContext
from tether.store.base import Store

if TYPE_CHECKING:
    from tether.runtime.runtime import RunResult, Runtime

__all__ = ["CLIENT_PREFIX", "ClientCall", "ClientTool", "client_tool", "continue_execution",
           "open_client_calls", "pending_client_calls", "record_client_results",
           "settle_client_calls"]

#: Wait keys of client calls start with this.
CLIENT_PREFIX = "client:"
_APPEND_ATTEMPTS = 100


class ClientTool(Tool[Any, Any]):
    """A :class:`Tool` the caller executes; see :func:`client_tool`."""


def _no_server_handler(ctx: ToolContext, args: Any) -> Any:
    raise UsageError(
        f"tool {ctx.tool!r} is a client tool: it has no server handler and cannot be called "
        "with ctx.call_tool. An agent requests it from the caller by itself; a workflow uses "
        "tether.runtime.client_tools.settle_client_calls")


def client_tool(
    name: str,
    *,
    args: type[BaseModel],
    result: Any = Any,
    description: str = "",
    effect: Effect | str = Effect.READ,
    key: Any = None,
    timeout_s: float | None = None,
    attempts: int = 3,
    trust: Trust | str = Trust.USER,
    tier: int | None = None,
) -> ClientTool:
    """Declare a tool executed by the caller (no server handler).

    ``args`` is the arguments' pydantic model (what the model sees), ``result`` the type the
    caller's answer must fit (checked when it is given). ``effect`` says what an unanswered
    call means (see the module docstring); ``key`` derives a write's idempotency key from its
    arguments (default: the run and position), handed to the client with the request;
    ``timeout_s`` bounds the wait on the run's clock; ``attempts`` bounds how often an
    unanswered idempotent or reconcilable write is requested. Results are trusted as ``user``
    content by default: they come from outside the system of record.
    """
    if not (isinstance(args, type) and issubclass(args, BaseModel)):
        raise UsageError(f"client tool {name!r}: args must be a pydantic model class")
    if timeout_s is not None and not timeout_s > 0:
        raise UsageError(f"client tool {name!r}: timeout_s must be positive "
                         f"(found {timeout_s!r})")
    return ClientTool(name=name, description=description, effect=Effect(effect),
                      handler=_no_server_handler, args_type=args, result_type=result, key=key,
                      attempts=attempts, timeout_s=timeout_s, trust=Trust(trust), tier=tier)


@dataclass(frozen=True, slots=True)
class ClientCall:
    """One call an execution asks its caller to carry out."""

    execution_id: str
    call_id: str
    tool: str
    arguments: dict[str, Any]
    effect: str
    idempotency_key: str | None
    attempt: int
    result_schema: dict[str, Any]
    requested_at: float
    deadline: float | None
    key: str

    def as_data(self) -> dict[str, Any]:
        return {"execution_id": self.execution_id, "call_id": self.call_id, "tool": self.tool,
                "arguments": self.arguments, "effect": self.effect,
                "idempotency_key": self.idempotency_key, "attempt": self.attempt,
                "result_schema": self.result_schema, "requested_at": self.requested_at,
                "deadline": self.deadline}


# -- the run's side ------------------------------------------------------------------------


async def settle_client_calls(
    ctx: RunContext, calls: Sequence[tuple[str, ClientTool, BaseModel]]
) -> dict[str, Any]:
    """Request every ``(call_id, tool, args)`` from the caller and wait for all of them.

    Returns each call's journaled result, or the :class:`~tether.errors.ToolFailed` of a read
    nobody answered in time (for the model to read). Raises ``RunSuspended`` while any call of
    the round is unanswered (each was requested first), ``RunEscalated`` for a write whose
    outcome stays unknown. Calls are requested in order, in rounds, and a round starts only
    once the previous one is settled, so every request keeps its position on replay.
    """
    keys = {call_id: _idempotency_key(ctx, tool, args) for call_id, tool, args in calls}
    settled: dict[str, Any] = {}
    round_ = [(call_id, tool, args) for call_id, tool, args in calls]
    attempt = 1
    while round_:
        suspended: RunSuspended | None = None
        again = []
        for call_id, tool, args in round_:
            try:
                value = await _request(ctx, call_id, tool, args, keys[call_id], attempt)
                settled[call_id] = _checked(tool, value)
            except RunSuspended as signal:
                suspended = suspended or signal
            except WaitTimedOut:
                retry = _after_timeout(ctx, call_id, tool, attempt, keys[call_id])
                if retry is None:
                    settled[call_id] = ToolFailed(
                        f"client tool {tool.name!r}: the caller did not answer within "
                        f"{tool.timeout_s:g} s" if tool.timeout_s else
                        f"client tool {tool.name!r}: the caller did not answer in time",
                        tool=tool.name, failure="permanent_tool_error",
                        error_type="WaitTimedOut")
                else:
                    again.append((call_id, tool, args))
        if suspended is not None:
            raise suspended
        round_, attempt = again, attempt + 1
    return settled


async def _request(ctx: RunContext, call_id: str, tool: ClientTool, args: BaseModel,
                   key: str | None, attempt: int) -> Any:
    run = internals(ctx)
    position = run.position
    data = {"execution_id": ctx.run_id, "call_id": call_id, "tool": tool.name,
            "arguments": args.model_dump(mode="json"), "effect": tool.effect.value,
            "idempotency_key": key, "attempt": attempt, "result_schema": tool.result_schema(),
            # What the result's content is trusted as, so a history derived from the journal
            # shows it as the model saw it.
            "trust": tool.trust.value}
    return await ctx.wait_for(f"{CLIENT_PREFIX}{position}:{call_id}",
                              timeout_s=run.call_timeout_s(tool.timeout_s), data=data)


def _checked(tool: ClientTool, value: Any) -> Any:
    """The journaled answer, or the ToolResultInvalid the model reads if the tool's own type
    refuses it (the schema check at continue time covers what a JSON Schema can say)."""
    try:
        tool.validate_result(value)
    except ValidationError as exc:
        return ToolResultInvalid(f"client tool {tool.name!r}: the caller's result does not "
                                 f"fit the declared result type: {exc}", tool=tool.name,
                                 failure="tool_result_invalid", error_type="ValidationError")
    return value


def _idempotency_key(ctx: RunContext, tool: ClientTool, args: BaseModel) -> str | None:
    if not tool.effect.writes:
        return None
    # The first request's position names the call: stable across re-requests and resumes.
    return tool.idempotency_key(args, f"{ctx.run_id}:{internals(ctx).position}")


def _after_timeout(ctx: RunContext, call_id: str, tool: ClientTool, attempt: int,
                   key: str | None) -> bool | None:
    """What an unanswered request means: ``None`` → a failed read; ``True`` → request again;
    raises ``RunEscalated`` for a write whose outcome stays unknown."""
    if not tool.effect.writes:
        return None
    what = (f"client write {tool.name!r} (call {call_id!r}, idempotency key {key!r}) was not "
            f"answered in time; the caller may have carried it out")
    if tool.effect is Effect.UNSAFE:
        raise RunEscalated(f"{what}, and an unsafe write is never requested again blindly")
    if attempt >= tool.attempts or internals(ctx).past_deadline():
        raise RunEscalated(f"{what}; still unknown after {attempt} request(s)")
    return True


# -- the caller's side ---------------------------------------------------------------------


def pending_client_calls(runtime: Runtime, execution_id: str | None = None) -> list[ClientCall]:
    """The client calls waiting for a result (of one execution, if given), oldest first."""
    store = runtime.store
    if execution_id is not None:
        info = store.get_run(execution_id)
        if info is None:
            raise _unknown(execution_id)
        infos = [info]
    else:
        infos = store.list_runs(status=[RunStatus.WAITING, RunStatus.RUNNING], limit=100_000)
    found: list[ClientCall] = []
    for info in infos:
        if info.status.finished:
            continue
        found.extend(_open_calls(info.run_id, store.read(info.run_id)))
    return sorted(found, key=lambda c: (c.requested_at, c.execution_id, c.key))


async def continue_execution(runtime: Runtime, execution_id: str, results: Mapping[str, Any],
                             *, by: str = "client", resume: bool = True) -> RunResult:
    """Record the caller's ``results`` (``{call_id: value}``) and, with ``resume`` and once no
    client call of the execution is left unanswered, resume it on ``runtime``: the same as
    :meth:`Runtime.continue_execution <tether.runtime.runtime.Runtime.continue_execution>`.

    All or nothing: every result is checked (requested, still open, fits its schema) before
    any is recorded, and all are appended in one batch. Returns where the run stands.
    """
    return await runtime.continue_execution(execution_id, results, by=by, resume=resume)


def record_client_results(store: Store, clock: Clock, execution_id: str,
                          results: Mapping[str, Any], *, by: str = "client") -> None:
    """Record the caller's ``results`` (``{call_id: value}``) for ``execution_id`` in
    ``store``, all or nothing (see :func:`continue_execution`); resuming the run is the
    runtime's part. Results recorded before are an idempotent repeat: nothing is appended."""
    if not isinstance(results, Mapping) or not results:
        raise UsageError("continue_execution needs results: a non-empty {call_id: value} map")
    encoded = {str(k): to_json(v, what=f"the result of client call {k!r}")
               for k, v in results.items()}
    for _attempt in range(_APPEND_ATTEMPTS):
        events = store.read(execution_id)
        if not events:
            raise _unknown(execution_id)
        batch = _check_results(execution_id, events, encoded, now=clock.now())
        if not batch:
            return  # every result was recorded before: an idempotent repeat
        last = events[-1].seq
        now = clock.now()
        fresh = [WaitResolved(seq=last + 1 + i, at=now, key=key, value=value, by=by)
                 for i, (key, value) in enumerate(batch)]
        try:
            store.append(execution_id, fresh, expected_last_seq=last, sync=True)
            return
        except ConcurrencyConflict:
            continue  # the run (or another continue) moved on: read it again and re-check
    raise ConcurrencyConflict(
        f"execution {execution_id!r}: recording the client results lost "
        f"{_APPEND_ATTEMPTS} append races in a row; try again", run_id=execution_id)


def open_client_calls(store: Store, execution_id: str) -> list[ClientCall]:
    """The client calls of ``execution_id`` not yet answered (nor expired), in the order they
    were requested."""
    return _open_calls(execution_id, store.read(execution_id))


def _check_results(execution_id: str, events: list[Event], results: Mapping[str, Any], *,
                   now: float) -> list[tuple[str, Any]]:
    """The (key, value) resolutions to append, or raise why the continue is refused."""
    requests: dict[str, WaitStarted] = {}
    for e in events:
        if isinstance(e, WaitStarted) and e.key.startswith(CLIENT_PREFIX):
            requests[str(e.data.get("call_id"))] = e  # the latest request of each call
    answered = {e.key: e for e in events if isinstance(e, WaitResolved)}
    expired = {e.key for e in events if isinstance(e, WaitExpired)}
    finished = any(isinstance(e, RunFinished) for e in events)
    batch = []
    for call_id, value in results.items():
        request = requests.get(call_id)
        if request is None:
            asked = ", ".join(repr(c) for c in requests) or "none"
            raise ClientResultRefused(
                f"execution {execution_id!r} never requested client call {call_id!r} (its "
                f"client calls: {asked}); nothing was recorded", execution_id=execution_id,
                call_id=call_id)
        first = answered.get(request.key)
        if first is not None:
            if first.value != value:
                raise ClientResultConflict(
                    f"execution {execution_id!r}: client call {call_id!r} was already answered "
                    f"with {first.value!r}; the first answer stands and {value!r} was not "
                    "recorded", run_id=execution_id, key=request.key, by=first.by,
                    at=first.at, value=first.value, note=first.note)
            continue
        if finished:
            raise ClientResultRefused(
                f"execution {execution_id!r} is finished; client call {call_id!r} can no "
                "longer be answered", execution_id=execution_id, call_id=call_id)
        if request.key in expired or (request.deadline is not None and now >= request.deadline):
            raise ClientResultRefused(
                f"execution {execution_id!r}: client call {call_id!r} "
                f"({request.data.get('tool')!r}) was not answered before its deadline; the run "
                "takes the tool's timeout course (see pending_client_calls for what it asks "
                "now); nothing was recorded", execution_id=execution_id, call_id=call_id)
        wrong = problems(dict(request.data.get("result_schema") or {}), value)
        if wrong:
            raise ClientResultRefused(
                f"execution {execution_id!r}: the result for client call {call_id!r} "
                f"({request.data.get('tool')!r}) breaks its result schema: "
                f"{'; '.join(wrong[:5])}; nothing was recorded", execution_id=execution_id,
                call_id=call_id)
        batch.append((request.key, value))
    return batch


def _open_calls(execution_id: str, events: list[Event]) -> list[ClientCall]:
    closed = {e.key for e in events if isinstance(e, WaitResolved | WaitExpired)}
    return [_call(execution_id, e) for e in events if isinstance(e, WaitStarted)
            and e.key.startswith(CLIENT_PREFIX) and e.key not in closed]


def _call(execution_id: str, e: WaitStarted) -> ClientCall:
    data = e.data
    return ClientCall(
        execution_id=execution_id, call_id=str(data.get("call_id", "")),
        tool=str(data.get("tool", "")), arguments=dict(data.get("arguments") or {}),
        effect=str(data.get("effect", "")), idempotency_key=data.get("idempotency_key"),
        attempt=int(data.get("attempt", 1)), result_schema=dict(data.get("result_schema") or {}),
        requested_at=e.at, deadline=e.deadline, key=e.key)


def _unknown(execution_id: str) -> UnknownExecution:
    return UnknownExecution(
        f"no execution {execution_id!r} in the store: an execution id is the run id a waiting "
        "run reported (RunResult.run_id, or pending_client_calls())",
        execution_id=execution_id)
