"""Processes claiming from one store at once: the driver and the checks both real-process
claim races (SQLite file, PostgreSQL schema) share."""

from __future__ import annotations

import json
import subprocess
import sys

_LOOP = """
ttl_s, rounds, name, got = float(sys.argv[-2]), int(sys.argv[-1]), sys.argv[-3], []
sys.stdout.write("ready\\n"); sys.stdout.flush(); sys.stdin.readline()
# Each process has its own clock (now = 100 + round / 2), as workers on different machines.
for n in range(rounds):
    leases = store.claim(name, now=100.0 + n / 2, ttl_s=ttl_s, limit=2)
    if not leases and ttl_s > 100:
        break
    got += [[lease.run_id, lease.epoch] for lease in leases]
print(json.dumps(got))
"""


def claim_race(opening: str, args: list[str], ids: list[str], ttl_s: float,
               rounds: int) -> None:
    """Three processes, each opening the store with ``opening`` (Python that binds ``store``
    from ``sys.argv[1:]`` = ``args``), released together to claim in a loop. No run is handed
    out twice under one epoch and every epoch of every run went to exactly one claimer; with
    long leases each run once under epoch 1, with short ones some run taken over."""
    script = "import json, sys\n" + opening + "\n" + _LOOP
    procs = [subprocess.Popen([sys.executable, "-c", script, *args, f"p{n}", str(ttl_s),
                               str(rounds)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for n in range(3)]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    for proc in procs:  # released together, so the claims overlap
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    claims = []
    for proc in procs:
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0
        claims += [tuple(c) for c in json.loads(out.splitlines()[-1])]
    assert len(set(claims)) == len(claims), "a run was handed out twice under one epoch"
    epochs: dict[str, list[int]] = {run_id: [] for run_id in ids}
    for run_id, epoch in claims:
        epochs[run_id].append(epoch)
    assert all(sorted(e) == list(range(1, len(e) + 1)) for e in epochs.values())
    if ttl_s > 100:
        assert sorted(claims) == [(run_id, 1) for run_id in ids]
    else:
        assert any(len(e) > 1 for e in epochs.values()), "no lease expired and was taken over"
