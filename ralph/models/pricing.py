"""Model prices: the built-in table (ralph/data/pricing.yaml) and `pricing:` overrides."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from importlib import resources
from typing import Any

from .base import Pricing

# Anthropic's cache multipliers, used when an override gives only input and output prices.
CACHE_WRITE_FACTOR = 1.25  # 5-minute cache write
CACHE_READ_FACTOR = 0.10


def pricing_from_mapping(prices: Mapping[str, Any]) -> Pricing:
    """A Pricing from {input, output[, cache_write, cache_read]} in USD per million tokens."""
    base = float(prices["input"])
    return Pricing(
        input=base,
        output=float(prices["output"]),
        cache_write=float(prices.get("cache_write", base * CACHE_WRITE_FACTOR)),
        cache_read=float(prices.get("cache_read", base * CACHE_READ_FACTOR)),
    )


@functools.cache
def builtin_prices() -> dict[str, Pricing]:
    """The package's price table, read once on first use."""
    import yaml  # 19 ms: only for a pricing file

    text = resources.files("ralph").joinpath("data/pricing.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text) or {}
    models = data.get("models") or {}
    return {str(model): pricing_from_mapping(prices) for model, prices in models.items()}


def lookup(
    model: str, overrides: Mapping[str, Mapping[str, float]] | None = None
) -> Pricing | None:
    """The price of a model id: `overrides` (RunConfig.pricing) first, then the built-in
    table. None when unknown: the cost is then reported as unknown, never guessed."""
    if overrides and model in overrides:
        return pricing_from_mapping(overrides[model])
    return builtin_prices().get(model)
