"""The failure taxonomy, the retry policy's arithmetic and the circuit breaker's states."""

from __future__ import annotations

import pytest

from tether import (
    Action,
    AmbiguousOutcome,
    AuthExpired,
    BreakerState,
    BudgetExceeded,
    CircuitBreaker,
    ContextOverflow,
    Domain,
    FailureType,
    MalformedOutput,
    ModelError,
    ModelUnavailable,
    RateLimited,
    RetryPolicy,
    Rule,
    ToolArgsInvalid,
    ToolFailed,
    ToolResultInvalid,
    TransientError,
    VirtualClock,
    classify,
)
from tether.runtime.failures import DOMAINS
from tether.runtime.retry import jitter_rng


@pytest.mark.parametrize(("error", "kind", "domain"), [
    (RateLimited("429", retry_after_s=3), "rate_limited", "infrastructure"),
    (ModelUnavailable("503"), "model_unavailable", "infrastructure"),
    (ContextOverflow("long"), "context_overflow", "context"),
    (MalformedOutput("junk"), "malformed_output", "model"),
    (ModelError("400 bad request"), "model_rejected", "harness"),
    (ToolArgsInvalid("bad args"), "invalid_tool_call", "tool_interface"),
    (TransientError("503"), "transient_tool_error", "infrastructure"),
    (TimeoutError("slow"), "ambiguous_write", "infrastructure"),
    (ConnectionRefusedError("refused"), "transient_tool_error", "infrastructure"),
    (AmbiguousOutcome("?"), "ambiguous_write", "infrastructure"),
    (ToolFailed("no", failure="permanent_tool_error"), "permanent_tool_error", "tool_interface"),
    (ToolFailed("old journal", failure="retries_exhausted"), "transient_tool_error",
     "infrastructure"),
    (ToolResultInvalid("drift", failure="tool_result_invalid"), "tool_result_invalid",
     "tool_interface"),
    (AuthExpired("expired"), "auth_expired", "infrastructure"),
    (BudgetExceeded("over", limit="max_steps"), "budget_exceeded", "harness"),
    (KeyError("x"), "permanent_tool_error", "tool_interface"),
])
def test_each_error_is_classified_into_one_type_and_domain(
        error: BaseException, kind: str, domain: str) -> None:
    """classify() maps every error tether knows to its failure type and domain."""
    failure = classify(error)
    assert (failure.type.value, failure.domain.value) == (kind, domain)


def test_every_failure_type_has_a_domain_and_a_rule() -> None:
    """The taxonomy is closed: each type has a domain and a default rule."""
    policy = RetryPolicy()
    for kind in FailureType:
        assert isinstance(DOMAINS[kind], Domain)
        assert isinstance(policy.rule(kind), Rule)
    assert {d.value for d in DOMAINS.values()} == {
        "model", "context", "tool_interface", "harness", "infrastructure", "governance"}


def test_retry_after_is_a_floor_and_the_delay_is_capped() -> None:
    """Delays grow exponentially, are jittered down, capped, never below retry-after."""
    rule = Rule(Action.BACKOFF, base_delay_s=1.0, max_delay_s=5.0, multiplier=2.0, jitter=0.5)
    delays = [rule.delay_s(n, jitter_rng(1, 0, n)) for n in range(1, 6)]
    for n, delay in enumerate(delays, start=1):
        ceiling = min(5.0, 2.0 ** (n - 1))
        assert ceiling * 0.5 <= delay <= ceiling
    assert rule.delay_s(1, jitter_rng(1, 0, 1), retry_after_s=9.0) == 9.0


def test_jitter_depends_only_on_seed_position_and_attempt() -> None:
    """The same (seed, position, attempt) draws the same jitter in any process."""
    assert jitter_rng(3, 4, 5).random() == jitter_rng(3, 4, 5).random()
    assert jitter_rng(3, 4, 5).random() != jitter_rng(3, 4, 6).random()


def test_policies_are_data_and_overridable() -> None:
    """with_rule returns a new policy; the default is untouched."""
    strict = RetryPolicy().with_rule("rate_limited", Rule(Action.FAIL, max_attempts=1))
    assert strict.rule(FailureType.RATE_LIMITED).action is Action.FAIL
    assert RetryPolicy().rule(FailureType.RATE_LIMITED).action is Action.BACKOFF
    # never() retries nothing; taking up a run after its worker stopped is recovery, not a
    # retry, so the crash rule keeps its bound.
    assert all(r.max_attempts == 1 for kind, r in RetryPolicy.never().rules.items()
               if kind is not FailureType.CRASH)
    assert RetryPolicy.never().rule(FailureType.CRASH) == RetryPolicy().rule(FailureType.CRASH)


def test_breaker_closed_open_half_open_closed() -> None:
    """Threshold failures open it; the cooldown lets one probe through; success closes it."""
    clock = VirtualClock(start=0.0)
    breaker = CircuitBreaker("payments", clock, failure_threshold=2, cooldown_s=30.0)
    assert breaker.allow() and breaker.record(ok=False) is BreakerState.CLOSED
    assert breaker.record(ok=False) is BreakerState.OPEN
    assert not breaker.allow() and breaker.retry_in_s() == 30.0
    clock.advance(30.0)
    assert breaker.allow() and breaker.state is BreakerState.HALF_OPEN
    assert not breaker.allow()  # only one probe at a time
    assert breaker.record(ok=False) is BreakerState.OPEN  # the probe failed: open again
    clock.advance(30.0)
    assert breaker.allow()
    assert breaker.record(ok=True) is BreakerState.CLOSED and breaker.allow()
