"""The one retry-delay formula: exponential backoff with "equal jitter", used by webhook
deliveries and action jobs alike."""

from __future__ import annotations

import random

MAX_DOUBLINGS = 40
"""Past this many doublings the delay is capped anyway (and 2**n stays an exact int)."""


def backoff_delay(attempt: int, base: float, cap: float | None = None,
                  rng: random.Random | None = None) -> float:
    """Seconds to wait after failed attempt `attempt` (1-based): `base` doubled per
    attempt, at most `cap`, half of it fixed and half random, so retries spread out but
    never come back sooner than half the nominal delay."""
    # 1 << n is 2 ** n typed as int (int ** int is Any to the type checker)
    nominal = base * (1 << min(MAX_DOUBLINGS, max(0, attempt - 1)))
    if cap is not None:
        nominal = min(cap, nominal)
    uniform = rng.uniform if rng is not None else random.uniform
    return nominal / 2 + uniform(0, nominal / 2)
