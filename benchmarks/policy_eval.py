"""How fast a realistic policy decides: verdicts per second.

    python benchmarks/policy_eval.py            # 7 repetitions
    python benchmarks/policy_eval.py --quick    # 3 repetitions

The rule set is what a refund agent in production would carry: a deny list, an allow list, an
argument limit ("refunds above $500 need a supervisor"), a role gate, an environment gate, the
taint gate and argument provenance. Each verdict is for a consequential call (``refund``, tier
2) with three arguments, evaluated against a context of N observations (~600 characters each,
one of them an untrusted document), the same work ``Policy.evaluate`` does before every tool
call. The baseline is the same policy without argument provenance — the only rule whose cost
grows with the context. Median of repetitions; each repetition times a batch of verdicts.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

from tether.policy import (
    Observation,
    Policy,
    PolicyRequest,
    Principal,
    allow_tools,
    argument_limit,
    argument_provenance,
    deny_tools,
    environment_gate,
    require_role,
    taint_gate,
)
from tether.runtime.provenance import Trust

CONTEXT_SIZES = (5, 20, 50)


def rules(with_provenance: bool) -> Policy:
    base = [
        deny_tools(["wire_transfer", "delete_customer"]),
        allow_tools(["lookup_order", "search_policies", "refund", "update_crm", "send_email"]),
        argument_limit("refund", "amount_cents", 50_000, role="supervisor"),
        require_role("support", min_tier=1),
        environment_gate(["staging", "prod"], min_tier=2),
        taint_gate(min_tier=3, action="deny"),
    ]
    if with_provenance:
        base.append(argument_provenance(min_tier=1))
    return Policy.of(*base)


def context(size: int) -> tuple[Observation, ...]:
    filler = ("Order history: shipped 2026-03-02, delivered 2026-03-05, carrier DHL, tracking "
              "JD014600006281234567, customer notes: please leave at the door. ") * 4
    observations = [Observation("user", Trust.USER, "Order A-1001 arrived broken; refund it.")]
    for i in range(size - 2):
        observations.append(Observation(f"lookup_{i}", Trust.SYSTEM,
                                        f'{{"order_id": "A-{1000 + i}", "amount_cents": 4999, '
                                        f'"note": "{filler[:520]}"}}'))
    observations.append(Observation("kb:refund-faq", Trust.RETRIEVED,
                                    "Refunds go to the original payment method. " + filler[:500]))
    return tuple(observations)


def request(observations: tuple[Observation, ...]) -> PolicyRequest:
    return PolicyRequest(
        stage="call", tool="refund", effect="idempotent", tier=2, tool_trust=Trust.SYSTEM,
        principal=Principal("agent-7", ("support",)), environment="prod",
        args={"order_id": "A-1001", "amount_cents": 4999, "reason": "arrived broken"},
        observations=observations)


def verdicts_per_s(policy: Policy, req: PolicyRequest, batch: int, reps: int) -> float:
    policy.evaluate(req)  # warm-up: compile patterns, fill caches
    rates = []
    for _ in range(reps):
        started = time.perf_counter()
        for _ in range(batch):
            policy.evaluate(req)
        rates.append(batch / (time.perf_counter() - started))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    reps = 3 if args.quick else 7
    print(f"- Python {platform.python_version()}; {reps} repetitions, median reported\n")
    print("| rule set | observations in context | verdicts/s | µs per verdict | vs baseline |")
    print("|---|---:|---:|---:|---:|")
    for size in CONTEXT_SIZES:
        req = request(context(size))
        base = verdicts_per_s(rules(False), req, 2000, reps)
        full = verdicts_per_s(rules(True), req, 300, reps)
        print(f"| 6 rules (baseline) | {size} | {base:,.0f} | {1e6 / base:,.1f} | 1.00× |")
        print(f"| 7 rules (+ argument provenance) | {size} | {full:,.0f} | {1e6 / full:,.1f} | "
              f"{base / full:,.1f}× slower |")


if __name__ == "__main__":
    main()
