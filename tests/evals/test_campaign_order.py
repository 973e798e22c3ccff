"""A campaign's results are a function of its jobs' records, not of the file's order or of a
record written twice; an episode that ran with other inputs than planned is not counted."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tether.errors import UsageError
from tether.evals.campaign import plan, read_records, run_campaign
from tether.evals.run import run_full_campaign
from tether.evals.suites import BUILTIN_SCENARIOS

REFUND = next(p for p in BUILTIN_SCENARIOS if p.stem == "refund")


def _campaign(out: Path, scenarios: list[Path]) -> bytes:
    run_full_campaign(out, scenarios=scenarios, suites=["retry_safety"],
                      harnesses=["naive", "default"], seeds=3, workers=1, shrink_failures=2)
    # Reproduction commands name the folder they were written to; the rest is compared as is.
    return (out / "results.json").read_bytes().replace(str(out).encode(), b"OUT")


@pytest.fixture(scope="module")
def twins(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two scenarios that fail alike at the same seeds: which one a report shows as the
    failure of a cell must not depend on which of them finished first."""
    folder = tmp_path_factory.mktemp("scenarios")
    text = REFUND.read_text(encoding="utf-8")
    (folder / "a.yaml").write_text(text, encoding="utf-8")
    (folder / "b.yaml").write_text(text.replace("name: refund", "name: refund-b", 1),
                                   encoding="utf-8")
    return [folder / "a.yaml", folder / "b.yaml"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, twins: list[Path]) -> tuple[Path, bytes]:
    out = tmp_path_factory.mktemp("finished")
    return out, _campaign(out, twins)


def _resumed_from(lines: list[str], out: Path, scenarios: list[Path]) -> bytes:
    out.mkdir()
    (out / "episodes.jsonl").write_text("".join(lines), encoding="utf-8")
    return _campaign(out, scenarios)


def test_results_do_not_depend_on_the_order_records_were_written(
        finished: tuple[Path, bytes], twins: list[Path], tmp_path: Path) -> None:
    """Records written in another order (episodes finishing out of order on a cluster, a
    campaign resumed with more seeds) give the same results.json, byte for byte."""
    source, expected = finished
    lines = (source / "episodes.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    assert _resumed_from(lines[::-1], tmp_path / "reversed", twins) == expected
    assert _resumed_from(lines[1::2] + lines[::2], tmp_path / "interleaved", twins) == expected


def test_a_record_written_twice_is_counted_once(finished: tuple[Path, bytes],
                                                twins: list[Path], tmp_path: Path) -> None:
    """A job whose record is in the file twice (run twice, two runs appending) counts once."""
    source, expected = finished
    lines = (source / "episodes.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    assert _resumed_from(lines + lines[:3], tmp_path / "twice", twins) == expected


def test_an_episode_run_with_other_inputs_than_planned_stops_the_campaign(
        tmp_path: Path) -> None:
    """A scenario edited after its jobs were planned: the episode that ran the edited file is
    not written under the planned key (nor under another), the campaign stops saying why."""
    scenario = tmp_path / "refund.yaml"
    shutil.copy(REFUND, scenario)
    jobs = plan([scenario], ["retry_safety"], ["default"], seeds=2)
    out = tmp_path / "episodes.jsonl"

    def edit(done: int, total: int) -> None:
        with scenario.open("a", encoding="utf-8") as file:
            file.write("# edited while the campaign ran\n")

    with pytest.raises(UsageError, match="other inputs than the campaign planned"):
        run_campaign(jobs, out, workers=1, progress=edit)
    assert list(read_records(out)) == []
