"""Argument provenance: did a call's values come from content we trust?

A consequential call whose argument values appear *only* in untrusted content (a retrieved
document, an email body, a web page) — not in the user's request, the instructions or a system
of record — was most likely steered by that content. This module finds such values.

How values are matched, precisely:

* **Which values.** Every leaf of the arguments (nested objects and lists included) that is a
  string of at least ``min_length`` characters (4 by default) after trimming, or a number whose
  absolute value is at least 10. Booleans, ``None``, short strings and small numbers are not
  checked: they occur everywhere by chance.
* **Strings** are compared case-insensitively as whole tokens: the value must not be glued to
  letters or digits on either side in the text (``ACC-1`` does not match inside ``ACC-12``).
  Values made mostly of digits (account numbers, IBANs, phone numbers) are also compared with
  spaces, dashes and dots removed on both sides, so ``DE89 3704 0044`` matches ``DE8937040044``.
* **Numbers** match any of their usual spellings as whole tokens: ``5000``, ``5,000``,
  ``5000.00``, ``5,000.00``; an integer is also read as cents (``500000`` matches ``5,000.00`` and
  ``$5,000``), because amounts travel in cents in APIs and in currency units in text.
* **Verdict.** A value found in at least one untrusted observation and in no trusted one is
  *untrusted-only*. A value found nowhere is *unsupported* (the model produced it); it is
  reported but only flagged when ``require_support`` is set.

What it cannot catch: a value the content taught in another form (spelled out, encoded,
split across fields, computed from others); a value that also happens to occur in trusted
content (an injected amount equal to the order's amount passes); short values; instructions
that change *which* trusted value is used (refund order B instead of A, when both are in the
system of record); and anything a tool mislabels as trusted. It is one layer, under the taint
gate and approvals, not a proof.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from tether.policy.request import Observation
from tether.runtime.provenance import Trust

__all__ = ["ArgumentFinding", "argument_values", "trace_arguments"]


@dataclass(frozen=True, slots=True)
class ArgumentFinding:
    """Where one argument value was found."""

    path: str
    value: Any
    trusted_sources: tuple[str, ...]
    untrusted_sources: tuple[str, ...]

    @property
    def untrusted_only(self) -> bool:
        return bool(self.untrusted_sources) and not self.trusted_sources

    @property
    def unsupported(self) -> bool:
        return not self.untrusted_sources and not self.trusted_sources


def argument_values(args: Any, *, min_length: int = 4, path: str = "") -> Iterator[tuple[str, Any]]:
    """``(path, value)`` for every checkable leaf of ``args``."""
    if isinstance(args, dict):
        for key, value in args.items():
            yield from argument_values(value, min_length=min_length,
                                       path=f"{path}.{key}" if path else str(key))
    elif isinstance(args, list | tuple):
        for index, value in enumerate(args):
            yield from argument_values(value, min_length=min_length, path=f"{path}[{index}]")
    elif isinstance(args, bool) or args is None:
        return
    elif isinstance(args, int | float):
        if abs(args) >= 10:
            yield path, args
    elif isinstance(args, str) and len(args.strip()) >= min_length:
        yield path, args.strip()


def trace_arguments(args: dict[str, Any], observations: Sequence[Observation], *,
                    trusted_at_least: Trust | str = Trust.USER,
                    min_length: int = 4) -> list[ArgumentFinding]:
    """Where each checkable argument value occurs among ``observations``."""
    floor = Trust(trusted_at_least)
    lowered = [_lowered(o.text) for o in observations]
    squashed: list[str] | None = None
    findings = []
    for path, value in argument_values(args, min_length=min_length):
        spellings = _spellings(value)
        compact = _compact(value) if isinstance(value, str) and _digit_heavy(value) else None
        if compact is not None and squashed is None:
            squashed = [_squashed(text) for text in lowered]
        trusted: list[str] = []
        untrusted: list[str] = []
        for index, obs in enumerate(observations):
            text = lowered[index]
            # A plain substring test first (fast, in C); the token check only on a hit.
            hit = any(s in text and _bounded(s, text, isinstance(value, str))
                      for s in spellings)
            if not hit and compact is not None and squashed is not None and len(compact) >= 6:
                hit = compact in squashed[index]
            if hit:
                (trusted if obs.trust.rank >= floor.rank else untrusted).append(obs.source)
        findings.append(ArgumentFinding(path, value, tuple(dict.fromkeys(trusted)),
                                        tuple(dict.fromkeys(untrusted))))
    return findings


# A context's texts are read again for every checkable value of every call, and they are the
# same str objects turn after turn (an observation's text is its message's content): lowered
# and squashed once each, not once per call.
@functools.lru_cache(maxsize=512)
def _lowered(text: str) -> str:
    return text.lower()


@functools.lru_cache(maxsize=512)
def _squashed(lowered: str) -> str:
    return _compact(lowered)


def _spellings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value.lower()]
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # 5000.0 is written "5000" or "5,000" in text
    spellings = {f"{value}", f"{value:,}", f"{value:.2f}", f"{value:,.2f}"}
    if isinstance(value, int):
        units = value / 100
        spellings |= {f"{units:.2f}", f"{units:,.2f}"}
        if value % 100 == 0:
            spellings |= {f"{value // 100}", f"{value // 100:,}"}
    return sorted(spellings)


@functools.lru_cache(maxsize=4096)
def _pattern(spelling: str, textual: bool) -> re.Pattern[str]:
    if textual:
        return re.compile(rf"(?<![0-9a-z]){re.escape(spelling)}(?![0-9a-z])")
    # A number must not continue into more digits or a decimal part ("5,000" vs "5,000.75").
    return re.compile(rf"(?<![0-9.,]){re.escape(spelling)}(?![0-9]|[.,][0-9])")


def _bounded(spelling: str, text: str, textual: bool) -> bool:
    return _pattern(spelling, textual).search(text) is not None


def _digit_heavy(text: str) -> bool:
    digits = sum(c.isdigit() for c in text)
    return digits >= 6 and digits >= len(text.replace(" ", "")) / 2


def _compact(text: str) -> str:
    return re.sub(r"[\s\-.]", "", text.lower())
