"""A circuit breaker per push subscription: suspend after N consecutive failures, probe
after a cool-down, resume on the first success."""

from __future__ import annotations

from enum import StrEnum


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """In memory: after a restart a subscription starts closed, which is itself a probe."""

    def __init__(self, failures: int, cooldown: float) -> None:
        self.threshold = failures
        self.cooldown = cooldown
        self.state = BreakerState.CLOSED
        self.consecutive_failures = 0
        self.reopen_at = 0.0
        self.last_error: str | None = None

    def permits(self, in_flight: int, now: float) -> int | None:
        """How many new attempts may start at monotonic time `now`: None means "no limit
        from the breaker"; while open, none until the cool-down ends, then one probe."""
        if self.state is BreakerState.CLOSED:
            return None
        if self.state is BreakerState.OPEN:
            if now < self.reopen_at:
                return 0
            self.state = BreakerState.HALF_OPEN
        return 0 if in_flight else 1

    def wait_s(self, now: float) -> float | None:
        """Seconds from monotonic time `now` until an open breaker lets a probe through."""
        if self.state is not BreakerState.OPEN:
            return None
        return max(0.0, self.reopen_at - now)

    def success(self) -> bool:
        """Record a delivered attempt; True when this resumes a suspended subscription."""
        resumed = self.state is not BreakerState.CLOSED
        self.state = BreakerState.CLOSED
        self.consecutive_failures = 0
        return resumed

    def failure(self, error: str | None, now: float) -> bool:
        """Record a failed attempt at monotonic time `now`; True when this suspends the
        subscription."""
        self.consecutive_failures += 1
        self.last_error = error
        moment = now
        if self.state is BreakerState.HALF_OPEN:
            self.state = BreakerState.OPEN
            self.reopen_at = moment + self.cooldown
            return False
        if self.state is BreakerState.CLOSED and self.consecutive_failures >= self.threshold:
            self.state = BreakerState.OPEN
            self.reopen_at = moment + self.cooldown
            return True
        return False
