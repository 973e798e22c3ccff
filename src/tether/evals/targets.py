"""What an agent does, learned from a fault-free probe episode: the suites' targets.

The suites never name an agent, its tools or its services' records. Before building a variant
for a seed they run the agent on the base scenario with no faults at *that seed* (its
fault-free twin: the ``default`` harness, ``sloppy`` and ``gullible`` off) and read what it did
from the episode's service calls (:class:`~tether.sim.calls.ServiceCall`) and ledger. The seed
matters: an agent may draw on the episode's randomness (``env.rng``), so what it writes, and
how often, can differ from seed to seed; a variant's faults and counts are those of the same
seed's twin.

* **writes** — the ``service.operation`` targets whose calls caused ledger effects (a
  reconciler's lookups excluded), the **effects** they caused, and the **keyed** ones (called
  with an idempotency key);
* **reads** — the targets of read tools, with the response **fields** observed;
* **fields that matter** — read fields whose values flowed into a write's arguments (equal
  values, or a value written inside a longer argument): the drift suite drifts those first;
* **injection targets** — read responses with prose fields (strings with a space), tools
  trusted below ``user`` (retrieved, external, agent) first;
* **written** — each write as the agent made it: the tool, its arguments as the model gave
  them (from the journal's intents), the ledger effects it caused, and where each argument's
  value came from (a read field, a seeded record): what the adversarial suite's instructions
  reuse;
* **counts** and **key counts** — how many effects of each kind the writes caused, and how
  many of each business key: an agent may legitimately repeat a key (two emails with one
  subject), and that is its own behaviour, not a duplicate.

The twin is cached per (scenario content, agent, seed). When the agent offers nothing a suite
needs at a seed (no write, no read with fields, no read to inject into), :func:`require` raises
:class:`~tether.errors.SuiteNotApplicable` naming the suite, the agent and what is missing:
that seed has nothing to test, other seeds may.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from tether.errors import SuiteNotApplicable
from tether.events import ToolIntent
from tether.runtime.provenance import Trust
from tether.sim.scenario import Scenario, scenario_from_dict

__all__ = ["Origin", "Targets", "Write", "leaves", "probe_targets", "require"]

#: A path into a JSON value: dict keys and list indexes.
Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Origin:
    """Where a written value was read: the read target, which call of it, the path."""

    target: str
    call: int
    path: Path


@dataclass(frozen=True)
class Write:
    """One write the agent made in the probe."""

    #: The agent's tool that made it, and the arguments the model gave that tool.
    tool: str
    args: dict[str, Any]
    #: ``service.operation`` it reached, and the arguments the service received.
    target: str
    service_args: dict[str, Any]
    #: The ledger effects it caused: ``(service.operation, data)``.
    effects: tuple[tuple[str, dict[str, Any]], ...]
    keyed: bool
    #: For each top-level argument that came from a read: where from.
    origins: dict[str, Origin] = field(default_factory=dict)


@dataclass(frozen=True)
class Targets:
    """What one agent does on one base scenario (see the module docstring)."""

    agent: str
    writes: tuple[str, ...]
    effects: tuple[str, ...]
    keyed: tuple[str, ...]
    reads: tuple[str, ...]
    #: Per read target: the response fields observed, and their JSON types.
    fields: dict[str, dict[str, str]]
    #: Per read target: the fields whose values flowed into a write, in the order seen.
    matters: dict[str, tuple[str, ...]]
    #: ``(target, field, trust)`` of read responses with prose, least trusted first.
    injection: tuple[tuple[str, str, str], ...]
    written: tuple[Write, ...]
    #: How many effects of each kind the probe's writes caused.
    counts: dict[str, int]
    #: Every read response, by target, in call order (what instructions may reuse).
    responses: dict[str, tuple[Any, ...]]
    #: Every scalar the probe saw (arguments and responses), as text: what a fresh value
    #: must not collide with.
    seen: frozenset[str] = frozenset()
    #: Per effect kind: how many effects of each business key the probe's writes caused.
    key_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    #: The seed of the probe.
    seed: int = 0


def leaves(value: Any, path: Path = ()) -> Iterator[tuple[Path, Any]]:
    """The scalar leaves of a JSON value with their paths."""
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from leaves(inner, (*path, str(key)))
    elif isinstance(value, list | tuple):
        for index, inner in enumerate(value):
            yield from leaves(inner, (*path, index))
    else:
        yield path, value


def distinctive(value: Any) -> bool:
    """A value specific enough that seeing it again means it was carried over: not a flag, not
    a small number, not a short word."""
    if isinstance(value, bool) or value is None:
        return False
    if isinstance(value, int | float):
        return abs(value) >= 10
    return isinstance(value, str) and len(value.strip()) >= 3


def _top(path: Path) -> str | None:
    """The response field a path is under (its first key, past a list's index)."""
    for part in path:
        if isinstance(part, str):
            return part
    return None


def _inside(needle: str, haystack: str) -> bool:
    return len(needle) >= 4 and re.search(rf"(?<![\w]){re.escape(needle)}(?![\w])",
                                          haystack) is not None


_CACHE: dict[tuple[str, Any, int], Targets] = {}
_CACHE_SIZE = 64


def _digest(scenario: Scenario) -> str:
    body = scenario.model_dump_json(exclude={"name", "description"})
    return hashlib.sha256(f"{scenario.source}\n{body}".encode()).hexdigest()


def probe_scenario(base: Scenario) -> Scenario:
    """``base`` with no faults and the ``sloppy``/``gullible`` knobs off: the agent as it
    behaves when nothing goes wrong."""
    checks = {name: [{c.kind: c.settings} for c in getattr(base, name)]
              for name in ("invariants", "success")}
    data = base.model_dump(exclude={"source", "invariants", "success"})
    data.update(faults=[], knobs={"sloppy": 0.0, "gullible": 0.0})
    return scenario_from_dict({**data, **checks}, where=base.source)


def probe_targets(base: Scenario, agent: Any = None, seed: int = 0) -> Targets:
    """The targets of ``agent`` (default: the scenario's) on ``base`` at ``seed``, from the
    fault-free twin of that seed's episode; cached per (scenario content, agent, seed)."""
    key = (_digest(base), agent if agent is not None else base.agent, seed)
    found = _CACHE.get(key)
    if found is None:
        from tether.sim.episode import run_episode

        result = run_episode(probe_scenario(base), seed, "default", agent=agent)
        events = result.outcome.events if result.outcome is not None else []
        intents: dict[str, list[dict[str, Any]]] = {}
        for event in events:
            if isinstance(event, ToolIntent):
                intents.setdefault(event.tool, []).append(dict(event.args))
        found = replace(derive(result.agent, [c.as_data() for c in result.calls],
                               result.ledger, intents), seed=seed)
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = found
    return found


def _unique(values: Iterator[str]) -> tuple[str, ...]:
    """``values`` without repeats, in the order first seen."""
    return tuple(dict.fromkeys(values))


def derive(agent: str, calls: list[dict[str, Any]], ledger: list[dict[str, Any]],
           intents: dict[str, list[dict[str, Any]]] | None = None) -> Targets:
    """Targets from a probe's service calls (``ServiceCall.as_data()``), its ledger and the
    arguments of each write tool's intents (by tool, in order)."""
    by_seq = {int(e["seq"]): e for e in ledger}
    ok = [c for c in calls if not c.get("error")]
    write_calls = [c for c in ok if c.get("effects") and not c.get("lookup")]
    read_calls = [c for c in ok if c.get("effect") == "read" and not c.get("lookup")
                  and not c.get("effects")]

    # Reads: fields observed and every scalar, by where it was read.
    fields: dict[str, dict[str, str]] = {}
    responses: dict[str, list[Any]] = {}
    sources: list[tuple[Origin, Any]] = []
    for c in read_calls:
        target = c["target"]
        responses.setdefault(target, []).append(c.get("response"))
        index = len(responses[target]) - 1
        found = fields.setdefault(target, {})
        items = c.get("response")
        for record in items if isinstance(items, list) else [items]:
            if isinstance(record, dict):
                for name, value in record.items():
                    found.setdefault(str(name), type(value).__name__)
        for path, value in leaves(c.get("response")):
            if distinctive(value):
                sources.append((Origin(target, index, path), value))

    # Writes: what each made, its arguments as the model gave them, where they came from.
    intents = intents or {}
    used: Counter[str] = Counter()
    written: list[Write] = []
    counts: Counter[str] = Counter()
    key_counts: dict[str, Counter[str]] = {}
    matters: dict[str, list[str]] = {}
    for c in write_calls:
        tool = str(c.get("tool", ""))
        queue = intents.get(tool, [])
        args = dict(queue[used[tool]]) if used[tool] < len(queue) else dict(c["args"])
        used[tool] += 1
        effects = tuple((f"{by_seq[s]['service']}.{by_seq[s]['operation']}",
                         dict(by_seq[s]["data"])) for s in c["effects"] if s in by_seq)
        counts.update(name for name, _ in effects)
        for seq in c["effects"]:
            if seq in by_seq:
                effect = by_seq[seq]
                key_counts.setdefault(f"{effect['service']}.{effect['operation']}",
                                      Counter())[str(effect.get("key", ""))] += 1
        origins: dict[str, Origin] = {}
        for name, value in args.items():
            for _, leaf in leaves(value):
                if not distinctive(leaf):
                    continue
                origin = next((o for o, v in sources if str(v) == str(leaf)), None)
                if origin is not None:
                    origins.setdefault(name, origin)
        written.append(Write(tool=tool, args=args, target=c["target"],
                             service_args=dict(c["args"]), effects=effects,
                             keyed=bool(c.get("keyed")), origins=origins))
        # A read field matters when a value under it reaches the write's arguments.
        arg_leaves = [leaf for value in (args, c["args"]) for _, leaf in leaves(value)]
        for origin, value in sources:
            text = str(value)
            if any(str(leaf) == text or (isinstance(leaf, str) and isinstance(value, str)
                                         and _inside(text, leaf)) for leaf in arg_leaves):
                top = _top(origin.path)
                if top is not None and top not in matters.setdefault(origin.target, []):
                    matters[origin.target].append(top)

    injection: list[tuple[int, int, tuple[str, str, str]]] = []
    for order, c in enumerate(read_calls):
        items = c.get("response")
        prose: dict[str, int] = {}
        for record in items if isinstance(items, list) else [items]:
            if isinstance(record, dict):
                for name, value in record.items():
                    if isinstance(value, str) and " " in value.strip():
                        prose[str(name)] = max(prose.get(str(name), 0), len(value))
        if prose:
            best = max(prose, key=lambda n: (prose[n], n))
            trust = str(c.get("trust") or "system")
            rank = Trust(trust).rank if trust in {t.value for t in Trust} else 4
            entry = (c["target"], best, trust)
            if entry not in [e for _, _, e in injection]:
                injection.append((rank, order, entry))
    injection.sort(key=lambda x: (x[0], x[1]))

    seen = {str(leaf) for c in ok for part in (c.get("args"), c.get("response"))
            for _, leaf in leaves(part) if leaf is not None}
    return Targets(
        agent=agent,
        writes=_unique(w.target for w in written),
        effects=_unique(name for w in written for name, _ in w.effects),
        keyed=_unique(w.target for w in written if w.keyed),
        reads=_unique(c["target"] for c in read_calls),
        fields={t: f for t, f in fields.items() if f},
        matters={t: tuple(m) for t, m in matters.items()},
        injection=tuple(e for _, _, e in injection),
        written=tuple(written), counts=dict(counts),
        responses={t: tuple(r) for t, r in responses.items()},
        seen=frozenset(seen),
        key_counts={name: dict(sorted(keys.items())) for name, keys in key_counts.items()})


#: What each suite needs from the agent, and how to say it is missing.
_NEEDS = {
    "retry_safety": ("writes", "no write: none of its service calls caused an effect"),
    "crash_recovery": ("writes", "no write: none of its service calls caused an effect"),
    "schema_drift": ("fields", "no read whose response has fields"),
    "adversarial_context": ("injection", "no read whose response carries text an "
                                         "instruction could be planted in"),
}


def require(targets: Targets, suite: str, scenario: str) -> None:
    """Raise :class:`SuiteNotApplicable` when ``targets`` offer ``suite`` nothing to test at
    their seed."""
    need = _NEEDS.get(suite)
    missing = []
    if need is not None and not getattr(targets, need[0]):
        missing.append(need[1])
    if suite == "adversarial_context" and not targets.written:
        missing.append("no write an instruction could ask for")
    if missing:
        raise SuiteNotApplicable(
            # The text names no seed: the same reason at many seeds reads as one.
            f"suite {suite} cannot be applied to agent {targets.agent} on scenario {scenario}: "
            f"in a fault-free run it made {'; '.join(missing)}. Run the suites that apply "
            "(--suite), or give the scenario a task that makes the agent read and write")
