"""Wilson intervals, pass^k, pass@k and the two-proportion test, against hand-computed values."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tether.errors import UsageError
from tether.evals.stats import pass_at_k, pass_hat_k, two_proportion_test, wilson_interval

# z = 1.96, z² = 3.8416 throughout. For n = 10: z²/n = 0.38416, so the denominator
# 1 + z²/n = 1.38416 and z²/(2n) = 0.19208, z²/(4n²) = 0.009604.


def test_wilson_eight_of_ten() -> None:
    """8/10 gives the textbook Wilson interval (0.4902, 0.9433)."""
    # centre = (0.8 + 0.19208) / 1.38416 = 0.99208 / 1.38416 = 0.716738
    # half   = 1.96 / 1.38416 * sqrt(0.8 * 0.2 / 10 + 0.009604)
    #        = 1.416021 * sqrt(0.025604) = 1.416021 * 0.160012 = 0.226581
    # low = 0.716738 - 0.226581 = 0.490157; high = 0.716738 + 0.226581 = 0.943319
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.490157, abs=1e-6)
    assert high == pytest.approx(0.943319, abs=1e-6)


def test_wilson_none_and_all_of_ten() -> None:
    """0/10 and 10/10 give exact 0 and 1 bounds and a width of 2·z²/(2n)/(1 + z²/n)."""
    # p = 0: centre = 0.19208 / 1.38416 = 0.138770 and half = 1.416021 * sqrt(0.009604)
    #        = 1.416021 * 0.098 = 0.138770, so low = 0 and high = 0.277540.
    # p = 1 mirrors it: (1 - 0.277540, 1) = (0.722460, 1).
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(0.277540, abs=1e-6)
    low, high = wilson_interval(10, 10)
    assert low == pytest.approx(0.722460, abs=1e-6) and high == 1.0


def test_wilson_no_trials_is_the_whole_range() -> None:
    """0/0 says nothing is known: (0, 1)."""
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_wilson_rejects_impossible_counts() -> None:
    """More successes than trials, or negative counts, are usage errors naming the counts."""
    with pytest.raises(UsageError, match="got 11 successes of 10 trials"):
        wilson_interval(11, 10)
    with pytest.raises(UsageError):
        wilson_interval(-1, 10)


# Three tasks of four trials each: all pass, half pass, none pass.
TASKS = {"all": (4, 4), "half": (4, 2), "none": (4, 0)}


def test_pass_hat_k_by_hand() -> None:
    """pass^k averages C(c,k)/C(n,k) over tasks: 1/2, 7/18 and 1/3 at k = 1, 2, 4."""
    # k=1: (4/4 + 2/4 + 0/4) / 3 = 1.5 / 3 = 1/2
    # k=2: C(4,2) = 6; (6/6 + C(2,2)/6 + C(0,2)/6) / 3 = (1 + 1/6 + 0) / 3 = 7/18
    # k=4: C(4,4) = 1; (1/1 + C(2,4)/1 + C(0,4)/1) / 3 = (1 + 0 + 0) / 3 = 1/3
    assert pass_hat_k(TASKS, 1) == pytest.approx(1 / 2)
    assert pass_hat_k(TASKS, 2) == pytest.approx(7 / 18)
    assert pass_hat_k(TASKS, 4) == pytest.approx(1 / 3)


def test_pass_at_k_by_hand() -> None:
    """pass@k averages 1 - C(n-c,k)/C(n,k): 1/2, 11/18 and 2/3 at k = 1, 2, 4."""
    # k=1: same as pass^1 = 1/2
    # k=2: (1 - C(0,2)/6) + (1 - C(2,2)/6) + (1 - C(4,2)/6) = 1 + 5/6 + 0 → / 3 = 11/18
    # k=4: (1 - C(0,4)/1) + (1 - C(2,4)/1) + (1 - C(4,4)/1) = 1 + 1 + 0 → / 3 = 2/3
    assert pass_at_k(TASKS, 1) == pytest.approx(1 / 2)
    assert pass_at_k(TASKS, 2) == pytest.approx(11 / 18)
    assert pass_at_k(TASKS, 4) == pytest.approx(2 / 3)


def test_pass_k_leaves_out_tasks_with_too_few_trials() -> None:
    """Tasks with n < k are excluded; with none left the answer is None, not 0."""
    # k=4: "short" (n=2) is excluded; "long" (n=4, c=3) gives C(3,4)/C(4,4) = 0/1 = 0,
    # so the average over the one remaining task is 0.
    tasks = {"short": (2, 2), "long": (4, 3)}
    assert pass_hat_k(tasks, 4) == 0.0
    # k=2: short C(2,2)/C(2,2) = 1; long C(3,2)/C(4,2) = 3/6; (1 + 1/2) / 2 = 3/4
    assert pass_hat_k(tasks, 2) == pytest.approx(3 / 4)
    assert pass_hat_k(tasks, 8) is None
    assert pass_at_k(tasks, 8) is None
    assert pass_hat_k({}, 1) is None


def test_pass_k_rejects_bad_input() -> None:
    """k below 1 and a task with more successes than trials are usage errors."""
    with pytest.raises(UsageError, match="k must be at least 1"):
        pass_hat_k(TASKS, 0)
    with pytest.raises(UsageError, match="task 'x'"):
        pass_at_k({"x": (2, 3)}, 1)


def test_two_proportion_test_by_hand() -> None:
    """90/100 → 70/100: Δ = -0.2, z = -3.5355, two-sided p = erfc(2.5) ≈ 4.07e-4."""
    # pooled = 160/200 = 0.8; variance = 0.8 * 0.2 * (1/100 + 1/100) = 0.0032
    # z = -0.2 / sqrt(0.0032) = -0.2 / 0.0565685 = -3.535534
    # p = erfc(3.535534 / sqrt(2)) = erfc(2.5) = 0.000406952
    difference, z, p = two_proportion_test(90, 100, 70, 100)
    assert difference == pytest.approx(-0.2)
    assert z == pytest.approx(-3.535534, abs=1e-6)
    assert p == pytest.approx(0.000406952, rel=1e-6)


def test_two_proportion_test_is_symmetric_and_equal_rates_are_not_significant() -> None:
    """Swapping the samples flips Δ and z but not p; equal rates give z = 0, p = 1."""
    forward = two_proportion_test(30, 50, 40, 50)
    backward = two_proportion_test(40, 50, 30, 50)
    assert backward[0] == pytest.approx(-forward[0]) and backward[1] == pytest.approx(-forward[1])
    assert backward[2] == pytest.approx(forward[2])
    assert two_proportion_test(5, 10, 10, 20) == (0.0, 0.0, 1.0)


def test_two_proportion_test_degenerate_cases() -> None:
    """An empty sample, or both samples all-pass or all-fail, is no evidence: p = 1."""
    assert two_proportion_test(0, 0, 5, 10) == (0.0, 0.0, 1.0)
    assert two_proportion_test(5, 10, 0, 0) == (0.0, 0.0, 1.0)
    assert two_proportion_test(10, 10, 20, 20) == (0.0, 0.0, 1.0)
    assert two_proportion_test(0, 10, 0, 20) == (0.0, 0.0, 1.0)
    with pytest.raises(UsageError):
        two_proportion_test(3, 2, 1, 2)


@st.composite
def counts(draw: st.DrawFn) -> tuple[int, int]:
    n = draw(st.integers(min_value=0, max_value=5_000))
    return draw(st.integers(min_value=0, max_value=n)), n


@given(counts(), st.sampled_from([1.0, 1.645, 1.96, 2.576]))
def test_wilson_brackets_the_estimate(sn: tuple[int, int], z: float) -> None:
    """0 ≤ low ≤ p̂ ≤ high ≤ 1 for every count and confidence level."""
    successes, n = sn
    low, high = wilson_interval(successes, n, z)
    p_hat = successes / n if n else 0.5
    assert 0.0 <= low <= p_hat <= high <= 1.0


# Every task has at least 8 trials, so all k in 1..8 are averaged over the same tasks:
# monotonicity in k only holds over a fixed task set (see pass_hat_k's docstring).
fixed_tasks = st.dictionaries(
    st.text(min_size=1, max_size=4),
    st.integers(min_value=8, max_value=30).flatmap(
        lambda n: st.tuples(st.just(n), st.integers(min_value=0, max_value=n))),
    min_size=1, max_size=6)


@given(fixed_tasks)
def test_pass_hat_k_never_rises_with_k(tasks: dict[str, tuple[int, int]]) -> None:
    """Over a fixed task set pass^k is non-increasing in k and pass@k non-decreasing."""
    hats = [_measured(pass_hat_k(tasks, k)) for k in range(1, 9)]
    ats = [_measured(pass_at_k(tasks, k)) for k in range(1, 9)]
    assert hats == sorted(hats, reverse=True)
    assert ats == sorted(ats)
    assert hats[0] == ats[0]
    assert math.isclose(hats[0], sum(c / n for n, c in tasks.values()) / len(tasks))


def _measured(value: float | None) -> float:
    assert value is not None
    return value
