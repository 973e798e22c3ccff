"""Campaign throughput and memory: episodes per second on 1 and 2 processes, and a 10,000-
episode campaign's memory over time.

    python benchmarks/campaign.py            # scaling on 800 episodes, then 10,000 episodes
    python benchmarks/campaign.py --quick    # 200 episodes, then 2,000

The campaign is the demo's: the refund and calendar scenarios × the five suites × naive and
tether harnesses. Memory is the resident set size of the parent (read from /proc as the
campaign advances) and the peak of the worker processes (``getrusage(RUSAGE_CHILDREN)``).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

from tether.evals.campaign import plan, run_campaign
from tether.evals.suites import BUILTIN_SCENARIOS, SUITES

HARNESSES = ("naive", "default")


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def timed(episodes: int, workers: int) -> float:
    seeds = max(1, episodes // (len(BUILTIN_SCENARIOS) * len(SUITES) * len(HARNESSES)))
    jobs = plan(BUILTIN_SCENARIOS, tuple(SUITES), HARNESSES, seeds)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        run_campaign(jobs, Path(tmp) / "episodes.jsonl", workers=workers)
        return len(jobs) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    small, large = (200, 2_000) if args.quick else (800, 10_000)
    print(f"- Python {platform.python_version()}, {os.cpu_count()} cores\n")
    print("| processes | episodes | episodes/s | vs 1 process |")
    print("|---:|---:|---:|---:|")
    timed(40, 1)  # warm caches and imports
    one = timed(small, 1)
    two = timed(small, 2)
    print(f"| 1 | {small:,} | {one:,.0f} | 1.00× |")
    print(f"| 2 | {small:,} | {two:,.0f} | {two / one:.2f}× |")

    seeds = large // (len(BUILTIN_SCENARIOS) * len(SUITES) * len(HARNESSES))
    jobs = plan(BUILTIN_SCENARIOS, tuple(SUITES), HARNESSES, seeds)
    samples: list[tuple[int, float]] = []

    def progress(done: int, total: int) -> None:
        if done % max(1, total // 10) == 0:
            samples.append((done, rss_mib()))

    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        run_campaign(jobs, Path(tmp) / "episodes.jsonl", workers=2, progress=progress)
        elapsed = time.perf_counter() - started
    children_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"\n{len(jobs):,} episodes on 2 processes: {elapsed:.1f} s, "
          f"{len(jobs) / elapsed:,.0f} episodes/s; peak RSS of a worker {children_mib:.0f} MiB\n")
    print("| episodes done | parent RSS (MiB) |")
    print("|---:|---:|")
    for done, mib in samples:
        print(f"| {done:,} | {mib:.0f} |")


if __name__ == "__main__":
    main()
