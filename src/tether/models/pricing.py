"""Cost of a model call in USD, from a price table you can override.

Prices are USD per million tokens, looked up by model name: an exact match first, then the
longest prefix (so ``gpt-4.1-2025-04-14`` finds ``gpt-4.1``). A model missing from the table
costs 0 and is reported by :meth:`PriceTable.known`, so a budget in USD is only as good as the
table: give your own contract prices with :meth:`PriceTable.with_prices`.

The defaults are the providers' published list prices for a few common models (per million
tokens, input / cached input / output), as listed in 2025; check them against your bill.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from tether.models.base import Usage

__all__ = ["DEFAULT_PRICES", "Price", "PriceTable"]


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens."""

    input_per_mtok: float
    output_per_mtok: float
    cached_input_per_mtok: float | None = None

    def cost_usd(self, usage: Usage) -> float:
        cached = min(usage.cached_input_tokens, usage.input_tokens)
        cached_rate = (self.cached_input_per_mtok if self.cached_input_per_mtok is not None
                       else self.input_per_mtok)
        total = ((usage.input_tokens - cached) * self.input_per_mtok + cached * cached_rate
                 + usage.output_tokens * self.output_per_mtok)
        return round(total / 1_000_000, 10)


DEFAULT_PRICES: Mapping[str, Price] = MappingProxyType({
    "gpt-4.1": Price(2.00, 8.00, 0.50),
    "gpt-4.1-mini": Price(0.40, 1.60, 0.10),
    "gpt-4.1-nano": Price(0.10, 0.40, 0.025),
    "gpt-4o": Price(2.50, 10.00, 1.25),
    "gpt-4o-mini": Price(0.15, 0.60, 0.075),
    "claude-opus-4": Price(15.00, 75.00, 1.50),
    "claude-sonnet-4": Price(3.00, 15.00, 0.30),
    "claude-3-5-haiku": Price(0.80, 4.00, 0.08),
})


@dataclass(frozen=True, slots=True)
class PriceTable:
    """Model name → :class:`Price`.

    >>> table = PriceTable().with_prices({"my-model": Price(1.0, 2.0)})
    >>> table.cost_usd("my-model", Usage(input_tokens=1_000_000, output_tokens=500_000))
    2.0
    """

    prices: Mapping[str, Price] = field(default_factory=lambda: DEFAULT_PRICES)

    def price(self, model: str) -> Price | None:
        if model in self.prices:
            return self.prices[model]
        matches = [name for name in self.prices if model.startswith(name)]
        return self.prices[max(matches, key=len)] if matches else None

    def known(self, model: str) -> bool:
        return self.price(model) is not None

    def cost_usd(self, model: str, usage: Usage) -> float:
        price = self.price(model)
        return price.cost_usd(usage) if price is not None else 0.0

    def with_prices(self, prices: Mapping[str, Price]) -> PriceTable:
        """A copy with ``prices`` added or replacing entries of the same name."""
        return PriceTable(MappingProxyType({**self.prices, **prices}))
