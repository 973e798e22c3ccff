"""The statistics a campaign reports: intervals, pass^k, pass@k and a regression test.

Every function is pure and exact where it can be: pass^k and pass@k use integer
combinatorics (:func:`math.comb`) and rational sums, so a report shows the same digits on every
machine.

>>> wilson_interval(0, 0)
(0.0, 1.0)
>>> pass_hat_k({"refund": (4, 2), "calendar": (4, 4)}, 2)  # (1/6 + 6/6) / 2
0.5833333333333334
>>> pass_at_k({"refund": (4, 2), "calendar": (4, 4)}, 2)  # (5/6 + 1) / 2
0.9166666666666666
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from fractions import Fraction

from tether.errors import UsageError

__all__ = ["pass_at_k", "pass_hat_k", "two_proportion_test", "wilson_interval"]

# One task's estimate from its (trials, successes), as an exact fraction.
_Estimator = Callable[[int, int], Fraction]


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of ``successes / n`` (95 % for the default ``z``).

    Chosen over the textbook ``p ± z·sqrt(p(1-p)/n)`` because that one collapses to a zero-width
    interval at 0/n and n/n — exactly the cells a campaign cares most about — and can leave
    [0, 1]. With no trials nothing is known, so the interval is all of [0, 1].

    >>> [round(x, 4) for x in wilson_interval(8, 10)]
    [0.4902, 0.9433]
    """
    _check_counts(successes, n)
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    z2 = z * z
    denominator = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    # At 0/n and n/n the exact bound is 0 or 1; float rounding would leave a 1e-17 residue.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return (low, high)


def pass_hat_k(per_task: Mapping[str, tuple[int, int]], k: int) -> float | None:
    """τ-bench's pass^k: the chance that k fresh trials of a task *all* succeed, averaged.

    ``per_task`` maps a task to ``(trials, successes)``. A task with ``n`` trials and ``c``
    successes contributes ``C(c, k) / C(n, k)``, the unbiased estimate from drawing k of its
    trials without replacement. Tasks with fewer than k trials cannot estimate it and are left
    out; when none qualifies the answer is ``None`` (not 0, which would claim a measurement).

    Over a fixed set of tasks pass^k never rises with k. Across k values whose qualifying task
    sets differ it can, so compare k values only over tasks with at least the largest k trials.

    >>> pass_hat_k({"t": (4, 2)}, 2)  # C(2,2)/C(4,2) = 1/6
    0.16666666666666666
    """
    return _average(per_task, k, lambda n, c: Fraction(math.comb(c, k), math.comb(n, k)))


def pass_at_k(per_task: Mapping[str, tuple[int, int]], k: int) -> float | None:
    """pass@k: the chance that *at least one* of k fresh trials succeeds, averaged over tasks.

    The optimistic counterpart of :func:`pass_hat_k`, shown beside it for contrast: a task
    contributes ``1 - C(n-c, k) / C(n, k)``. Same ``(trials, successes)`` input and exclusions.

    >>> pass_at_k({"t": (4, 2)}, 2)  # 1 - C(2,2)/C(4,2) = 5/6
    0.8333333333333334
    """
    return _average(per_task, k, lambda n, c: 1 - Fraction(math.comb(n - c, k), math.comb(n, k)))


def two_proportion_test(s1: int, n1: int, s2: int, n2: int) -> tuple[float, float, float]:
    """Pooled two-sided z-test of ``s1/n1`` against ``s2/n2``: ``(difference, z, p_value)``.

    ``difference`` is ``s2/n2 - s1/n1`` (the change from the first sample to the second), ``z``
    has the same sign, and ``p_value`` is the two-sided normal tail ``erfc(|z| / √2)``.
    Degenerate inputs carry no evidence of a change and give ``p_value`` 1.0: an empty sample
    (difference 0.0, since a rate of nothing is undefined) or a pooled rate of exactly 0 or 1
    (both samples all-fail or all-pass, so the difference is 0 too).

    >>> d, z, p = two_proportion_test(90, 100, 70, 100)
    >>> round(d, 2), round(z, 3), round(p, 5)
    (-0.2, -3.536, 0.00041)
    """
    _check_counts(s1, n1)
    _check_counts(s2, n2)
    if n1 == 0 or n2 == 0:
        return (0.0, 0.0, 1.0)
    difference = s2 / n2 - s1 / n1
    pooled = (s1 + s2) / (n1 + n2)
    variance = pooled * (1 - pooled) * (1 / n1 + 1 / n2)
    if variance <= 0.0:
        return (difference, 0.0, 1.0)
    z = difference / math.sqrt(variance)
    return (difference, z, math.erfc(abs(z) / math.sqrt(2)))


def _average(per_task: Mapping[str, tuple[int, int]], k: int,
             estimate: _Estimator) -> float | None:
    if k < 1:
        raise UsageError(f"k must be at least 1, not {k}")
    total = Fraction(0)
    counted = 0
    for task, (n, c) in per_task.items():
        try:
            _check_counts(c, n)
        except UsageError as exc:
            raise UsageError(f"task {task!r}: {exc.message}") from None
        if n < k:
            continue
        total += estimate(n, c)
        counted += 1
    return float(total / counted) if counted else None


def _check_counts(successes: int, n: int) -> None:
    if n < 0 or not 0 <= successes <= n:
        raise UsageError(f"need 0 <= successes <= trials, got {successes} successes of {n} "
                         f"trials")
