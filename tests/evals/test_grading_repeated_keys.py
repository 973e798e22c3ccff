"""A key the agent repeats when nothing goes wrong is not a duplicate effect in the grade."""

from __future__ import annotations

from tests.evals.test_suite_seeded_twin import BASE, two_mails
from tether.evals.grading import grade
from tether.evals.suites import variant
from tether.sim.episode import run_episode


def test_the_agents_own_repeated_key_is_no_duplicate() -> None:
    """Two emails with one key in the fault-free twin: crash recovery under tether passes with
    no duplicate effect counted."""
    for seed in range(4):
        v = variant(BASE, "crash_recovery", seed, agent=two_mails)
        g = grade(v, run_episode(v, seed, "default", agent=two_mails))
        assert (g.verdict, g.duplicates) == ("pass", 0), seed
