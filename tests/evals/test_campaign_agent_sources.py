"""A campaign's job keys follow every source of the agent, not only the factory's file; the jobs
of one (scenario, seed) are planned together."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tether.evals import campaign
from tether.evals.campaign import plan, run_campaign
from tether.evals.suites import BUILTIN_SCENARIOS

REFUND = next(p for p in BUILTIN_SCENARIOS if p.stem == "refund")

FACTORY = '''import sys, pathlib
sys.path.insert(0, str(pathlib.Path(__file__).parent))
from desk_helpers import build


def agent(env):
    return build(env)
'''
HELPERS = '''from tether.reference.refund import agent as _reference

TONE = "plain"


def build(env):
    return _reference(env)
'''


def _project(tmp_path: Path) -> Path:
    """A scenario whose agent file imports its tools from a helper module beside it."""
    (tmp_path / "desk_agent.py").write_text(FACTORY)
    (tmp_path / "desk_helpers.py").write_text(HELPERS)
    scenario = tmp_path / "scenario.yaml"
    text = REFUND.read_text()
    scenario.write_text("\n".join("agent: desk_agent.py:agent" if line.startswith("agent:")
                                  else line for line in text.splitlines()) + "\n")
    return scenario


def _edit(path: Path, old: str, new: str) -> None:
    stat = path.stat()
    path.write_text(path.read_text().replace(old, new))
    # Same size, a later mtime: what an editor saving a one-character change leaves.
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


def test_editing_a_helper_module_reruns_the_campaign(tmp_path: Path) -> None:
    """A resumed campaign runs its jobs again after a module the agent file imports changed,
    and skips them when nothing changed."""
    scenario = _project(tmp_path)
    out = tmp_path / "episodes.jsonl"
    jobs = plan([scenario], ["crash_recovery"], ["default"], seeds=2)
    assert run_campaign(jobs, out, workers=1) == 2
    assert run_campaign(plan([scenario], ["crash_recovery"], ["default"], seeds=2), out,
                        workers=1) == 0
    _edit(tmp_path / "desk_helpers.py", '"plain"', '"plaix"')
    assert run_campaign(plan([scenario], ["crash_recovery"], ["default"], seeds=2), out,
                        workers=1) == 2


def test_a_module_spec_covers_its_whole_package(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """``pkg.agent:fn``: an edit anywhere in ``pkg`` (a sub-package's helper) changes the keys;
    caches, hidden folders and virtualenvs inside it do not."""
    package = tmp_path / "deskpkg"
    (package / "tools").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "agent.py").write_text("def agent(env):\n    return None\n")
    (package / "tools" / "__init__.py").write_text("")
    (package / "tools" / "mail.py").write_text("SUBJECT = 'Hi'\n")
    for ignored in ("__pycache__", ".hidden", "venv/lib"):
        (package / ignored).mkdir(parents=True)
        (package / ignored / "x.py").write_text("X = 1\n")
    (package / "venv" / "pyvenv.cfg").write_text("home = /usr\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    def key() -> str:
        return plan([REFUND], ["retry_safety"], ["default"], seeds=1,
                    agent="deskpkg.agent:agent")[0].key

    first = key()
    for ignored in ("__pycache__", ".hidden", "venv/lib"):
        _edit(package / ignored / "x.py", "1", "2")
    assert key() == first
    _edit(package / "tools" / "mail.py", "Hi", "Ho")
    assert key() != first


def test_a_huge_folder_falls_back_to_the_factory_file(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Beyond the bound, only the factory's file is hashed: still a fingerprint, edits to it
    still count."""
    monkeypatch.setattr(campaign, "MAX_AGENT_SOURCES", 2)
    scenario = _project(tmp_path)
    (tmp_path / "more.py").write_text("")
    first = plan([scenario], ["retry_safety"], ["default"], seeds=1)[0].key
    _edit(tmp_path / "desk_helpers.py", '"plain"', '"plaix"')
    assert plan([scenario], ["retry_safety"], ["default"], seeds=1)[0].key == first
    _edit(tmp_path / "desk_agent.py", "return build", "return  build")
    assert plan([scenario], ["retry_safety"], ["default"], seeds=1)[0].key != first


def test_the_jobs_of_one_scenario_and_seed_are_consecutive() -> None:
    """Scenario, then seed, then suite, then harness: a worker's chunk shares its twins."""
    jobs = plan([REFUND], ["retry_safety", "crash_recovery"], ["naive", "default"], seeds=3)
    assert [(j.seed, j.suite, j.harness) for j in jobs[:4]] == [
        (0, "retry_safety", "naive"), (0, "retry_safety", "default"),
        (0, "crash_recovery", "naive"), (0, "crash_recovery", "default")]
    assert [j.seed for j in jobs] == sorted(j.seed for j in jobs)


def test_a_folder_of_many_other_files_falls_back_too(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A folder with few sources but many other entries is not walked to its end: the
    factory's file alone is hashed."""
    monkeypatch.setattr(campaign, "MAX_AGENT_ENTRIES", 5)
    scenario = _project(tmp_path)
    for index in range(6):
        (tmp_path / f"data{index}.csv").write_text("")
    first = plan([scenario], ["retry_safety"], ["default"], seeds=1)[0].key
    _edit(tmp_path / "desk_helpers.py", '"plain"', '"plaix"')
    assert plan([scenario], ["retry_safety"], ["default"], seeds=1)[0].key == first


def test_editing_the_scenarios_policy_file_changes_its_jobs(tmp_path: Path) -> None:
    """A scenario's policy file is part of what its episodes ran with: editing it makes a
    resumed campaign run them again."""
    (tmp_path / "story.yaml").write_text("rules:\n  - deny_tools: {tools: [remember]}\n")
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(REFUND.read_text() + "\npolicy: story.yaml\n")
    before = [job.key for job in plan([scenario], ["retry_safety"], ["default"], 1)]
    (tmp_path / "story.yaml").write_text("rules:\n  - deny_tools: {tools: [send_email]}\n")
    stat = os.stat(tmp_path / "story.yaml")
    os.utime(tmp_path / "story.yaml", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    after = [job.key for job in plan([scenario], ["retry_safety"], ["default"], 1)]
    assert before != after
