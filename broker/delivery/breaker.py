"""The circuit breaker of a push subscription: suspend after N consecutive failures, let
one probe through after a cool-down, resume on the first success.

The state is a record in the store (`SubscriptionHealth`), shared by every process on
it: these pure functions decide each change, and the dispatcher writes the result in
the transaction that settles (or claims) the attempt. Several replicas therefore see one
breaker: when one opens it the others stop claiming, and the half-open probe is claimed
by exactly one of them (whoever moves the record from open to half-open first; writes
are serialised by the store's writer)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from broker.timeutil import later, seconds_between


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class SubscriptionHealth:
    """A subscription's breaker as stored. No record means closed with no failures."""

    subscription: str
    state: BreakerState
    consecutive_failures: int
    reopen_at: str
    """Open: when a probe may start. Half-open: when the probe's claim lapses (its
    replica died or never settled it), after which another replica may probe."""
    last_error: str | None
    updated_at: str

    @property
    def clean(self) -> bool:
        """Closed with no failures counted: a success changes nothing."""
        return self.state is BreakerState.CLOSED and self.consecutive_failures == 0


def closed(subscription: str, now: str) -> SubscriptionHealth:
    """The breaker of a subscription with no recorded trouble."""
    return SubscriptionHealth(subscription, BreakerState.CLOSED, 0, now, None, now)


def probe_due(health: SubscriptionHealth, now: str) -> bool:
    """An open breaker whose cool-down ended, or a half-open one whose probe lapsed."""
    return health.state is not BreakerState.CLOSED and health.reopen_at <= now


def wait_s(health: SubscriptionHealth | None, now: str) -> float | None:
    """Seconds until the breaker lets a probe through; None when it is closed."""
    if health is None or health.state is BreakerState.CLOSED:
        return None
    return max(0.0, seconds_between(now, health.reopen_at))


def start_probe(health: SubscriptionHealth, now: str, lease_s: float) -> SubscriptionHealth:
    """Half-open: this process sends the one probe, for at most `lease_s`."""
    return replace(health, state=BreakerState.HALF_OPEN, reopen_at=later(now, lease_s),
                   updated_at=now)


def after_success(health: SubscriptionHealth, now: str) -> tuple[SubscriptionHealth, bool]:
    """A delivered attempt closes the breaker; True when that resumes a suspended
    subscription."""
    return closed(health.subscription, now), health.state is not BreakerState.CLOSED


def after_failure(health: SubscriptionHealth, error: str | None, now: str, *,
                  threshold: int, cooldown_s: float) -> tuple[SubscriptionHealth, bool]:
    """A failed attempt counts; True when it suspends the subscription (the threshold
    reached while closed). A failed probe opens the breaker for another cool-down."""
    failures = health.consecutive_failures + 1
    counted = replace(health, consecutive_failures=failures, last_error=error, updated_at=now)
    if health.state is BreakerState.HALF_OPEN:
        return replace(counted, state=BreakerState.OPEN,
                       reopen_at=later(now, cooldown_s)), False
    if health.state is BreakerState.CLOSED and failures >= threshold:
        return replace(counted, state=BreakerState.OPEN,
                       reopen_at=later(now, cooldown_s)), True
    return counted, False
