"""One definition of a retry: the journal, the agent's output, the trace and the grader agree;
progress is counted per tool call the model asked for, not per harness re-execution."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from tether import (
    Agent,
    AuthExpired,
    MalformedOutput,
    MemoryStore,
    ModelRequest,
    ModelResponse,
    RateLimited,
    RunResult,
    RunStatus,
    ScriptedModel,
    ToolContext,
    TransientError,
    VirtualClock,
    tool,
)
from tether.evals.grading import grade
from tether.events import Event, RunFinished
from tether.models.scripted import call, reply
from tether.retries import count_retries
from tether.runtime.journal import RunJournal
from tether.sim.episode import EpisodeResult
from tether.sim.harness import HarnessOutcome
from tether.sim.scenario import load_scenario
from tether.tracing.timeline import build_trace

from .helpers import run

SCENARIO = load_scenario(Path(__file__).parents[2] / "examples" / "scenarios" /
                         "refund_timeout_after_commit.yaml")


class Args(BaseModel):
    order_id: str


def faulty(faults: Sequence[str], effect: str = "read") -> Any:
    """A tool whose n-th execution meets ``faults[n]`` (``ok`` past the end): ``auth``
    (expired credentials), ``throttled`` (429), ``unavailable`` (503) or ``lost`` (a timeout
    after the effect: ambiguous for a write)."""
    executions: list[int] = []

    async def handler(ctx: ToolContext, args: Args) -> str:
        n = len(executions)
        executions.append(n)
        fault = faults[n] if n < len(faults) else "ok"
        if fault == "auth":
            raise AuthExpired("token expired", dependency="svc")
        if fault == "throttled":
            raise TransientError("HTTP 429", retry_after_s=1.0)
        if fault == "unavailable":
            raise TransientError("HTTP 503")
        if fault == "lost" and effect != "read":
            raise TimeoutError("the answer was lost")
        return "ok"

    return handler


def model(faults: Sequence[str]) -> ScriptedModel:
    """Asks for ``refund`` then ``lookup``, then answers; its n-th answer meets ``faults[n]``
    (``malformed`` or ``throttled``)."""
    answers: list[int] = []

    def script(request: ModelRequest) -> ModelResponse:
        n = len(answers)
        answers.append(n)
        fault = faults[n] if n < len(faults) else "ok"
        if fault == "malformed":
            raise MalformedOutput("not JSON")
        if fault == "throttled":
            raise RateLimited("429", retry_after_s=2.0)
        done = {m.tool_call_id for m in request.messages if m.role == "tool"}
        if "c_refund" not in done:
            return call("refund", {"order_id": "A-1"}, call_id="c_refund")
        if "c_lookup" not in done:
            return call("lookup", {"order_id": "A-1"}, call_id="c_lookup")
        return reply("done")

    return ScriptedModel(script)


def agent_with(model_faults: Sequence[str], refund_faults: Sequence[str],
               lookup_faults: Sequence[str]) -> Agent:
    refund = tool(name="refund", args=Args, result=str, effect="idempotent", retry_delay_s=0.5,
                  key=lambda a: f"refund:{a.order_id}")(faulty(refund_faults, "idempotent"))
    lookup = tool(name="lookup", args=Args, result=str, retry_delay_s=0.5)(
        faulty(lookup_faults))
    return Agent(name="a", model=model(model_faults), tools=[refund, lookup],
                 refresh_auth=lambda dependency: None)


def four_counts(result: RunResult, events: list[Event]) -> dict[str, float]:
    """The retries as the journal, the agent's output, the trace and the grader count them."""
    journal = RunJournal(MemoryStore(), result.run_id, VirtualClock(), events)
    finished = next(e for e in events if isinstance(e, RunFinished))
    episode = EpisodeResult(
        scenario=SCENARIO.name, seed=0, harness="default", status=result.status.value,
        answer="", reason=result.reason, verdicts=[], firings=[], crashes=0,
        journal_digest="", ledger_digest="", virtual_duration_s=0.0, model_calls=0,
        tool_calls=0, outcome=HarnessOutcome(status=result.status.value, events=events))
    counts = {
        "journal": float(journal.retries_before(1 << 30)),
        "trace": float(build_trace(result.run_id, events).totals.retries),
        "grader": grade(SCENARIO, episode).metrics["retries"],
        "definition": float(count_retries(events)),
    }
    if isinstance(finished.result, dict):
        counts["agent_output"] = float(finished.result["retries"])
    return counts


def test_the_four_counts_agree_on_a_run_with_every_kind_of_fault() -> None:
    """Auth expiry, 429s, a 503, a lost write and a malformed answer: 6 retries everywhere."""
    agent = agent_with(["malformed", "throttled"], ["lost", "throttled"],
                       ["auth", "unavailable"])
    result, events, _ = run(agent)
    assert result.status is RunStatus.COMPLETED
    # reformat + backoff (model), re-issue + 429 retry (refund), refresh + 503 retry (lookup)
    assert set(four_counts(result, events).values()) == {6.0}


FAULTS = st.sampled_from(["ok", "auth", "throttled", "unavailable", "lost"])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model_faults=st.lists(st.sampled_from(["ok", "malformed", "throttled"]), max_size=4),
       refund_faults=st.lists(FAULTS, max_size=4), lookup_faults=st.lists(FAULTS, max_size=4))
def test_the_four_counts_agree_whatever_the_faults(model_faults: list[str],
                                                   refund_faults: list[str],
                                                   lookup_faults: list[str]) -> None:
    """For any mix of faults, every place that counts retries reads the same number."""
    result, events, _ = run(agent_with(model_faults, refund_faults, lookup_faults))
    counts = four_counts(result, events)
    assert len(set(counts.values())) == 1, counts


def test_an_auth_expiry_storm_with_429s_finishes_under_the_default_harness() -> None:
    """Credentials expiring twice, then a 429, then success: the run completes; the harness's
    re-executions are not the model repeating itself."""
    agent = agent_with([], [], ["auth", "auth", "throttled"])
    result, _, _ = run(agent)
    assert result.status is RunStatus.COMPLETED, result.reason
    assert result.result["answer"] == "done"
    assert result.result["tool_calls"] == 2


def test_the_model_repeating_itself_is_still_no_progress() -> None:
    """The same call asked for again and again by the model still stops the run."""
    ok = tool(name="lookup", args=Args, result=str)(faulty([]))
    looping = ScriptedModel(lambda r: call("lookup", {"order_id": "A-1"}))
    result, _, _ = run(Agent(name="a", model=looping, tools=[ok]))
    assert result.status is RunStatus.FAILED and "no progress" in result.reason


def test_credentials_that_expire_again_after_a_refresh_that_worked_are_refreshed_again() -> None:
    """Each of three calls meets a fresh expiry: each refresh works, so none escalates."""
    lookup = tool(name="lookup", args=Args, result=str)(
        faulty(["auth", "ok", "auth", "ok", "auth", "ok"]))

    def script(request: ModelRequest) -> ModelResponse:
        answered = sum(1 for m in request.messages if m.role == "tool")
        if answered < 3:
            return call("lookup", {"order_id": f"A-{answered}"}, call_id=f"c{answered}")
        return reply("done")

    agent = Agent(name="a", model=ScriptedModel(script), tools=[lookup],
                  refresh_auth=lambda dependency: None)
    result, _, _ = run(agent)
    assert result.status is RunStatus.COMPLETED, result.reason
