"""Estimated cost of a run from its token usage and a price table (USD per million tokens)."""
from __future__ import annotations

from judge.errors import JudgeError

# List prices (input, output) in USD per 1M tokens, as published by OpenAI in 2024-2025; check the
# provider's page before trusting a total, and pass --price IN,OUT for any other model or deal.
PRICES = {
    "gpt-4": (30.0, 60.0),
    "gpt-4-0613": (30.0, 60.0),
    "gpt-4-32k": (60.0, 120.0),
    "gpt-4-turbo": (10.0, 30.0),
    "gpt-4-turbo-2024-04-09": (10.0, 30.0),
    "gpt-4o": (2.5, 10.0),
    "gpt-4o-2024-08-06": (2.5, 10.0),
    "gpt-4o-mini": (0.15, 0.6),
    "gpt-4.1": (2.0, 8.0),
    "gpt-4.1-mini": (0.4, 1.6),
}


def parse_price(text: str) -> tuple[float, float]:
    """`"2.5,10"` -> (2.5, 10.0): input and output price in USD per million tokens."""
    try:
        prompt, completion = (float(part) for part in text.split(","))
    except ValueError:
        raise JudgeError(f"--price: expected IN,OUT in USD per million tokens, got {text!r}") from None
    if prompt < 0 or completion < 0:
        raise JudgeError(f"--price: prices must not be negative, got {text!r}")
    return prompt, completion


def estimate_cost(model: str, usage: dict, price: tuple[float, float] | None = None) -> dict:
    """Token totals and the estimated cost (None when no price is known for `model`)."""
    price = price or PRICES.get(model)
    prompt, completion = int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))
    cost = None if price is None else round((prompt * price[0] + completion * price[1]) / 1e6, 6)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "price_per_million": price,
            "estimated_cost_usd": cost}
