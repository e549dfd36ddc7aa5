"""Deliveries to subscriptions, their attempts and operator controls: the delivery
feature's records (what its repository hands out).

A delivery or job is *claimed* by giving it a fresh lease token in a write transaction:
whoever holds the token may settle it, and a token that is no longer current settles
nothing. That one rule makes pull consumers, the push dispatcher, several broker
processes and crash recovery safe together. Times are stamps (`broker.clock`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

from broker.bus.log import StoredEvent


class DeliveryState(StrEnum):
    """Where a delivery is: due or backing off, leased (in flight), done, dead."""

    PENDING = "pending"
    LEASED = "leased"
    DELIVERED = "delivered"
    DEADLETTERED = "deadlettered"


class Outcome(StrEnum):
    """How an attempt ended; each maps to the delivery's next state."""

    LEASED = "leased"
    """Still in flight (the attempt row's outcome until it is settled)."""
    DELIVERED = "delivered"
    ACKED = "acked"
    RETRY = "retry"
    RELEASED = "released"
    UNSENT = "unsent"
    """Claimed ahead and given back without a call: the claim's attempt is taken back."""
    DEADLETTERED = "deadlettered"
    REJECTED = "rejected"
    EXPIRED = "expired"
    RENEWED = "renewed"


NEXT_STATE: dict[Outcome, DeliveryState] = {
    Outcome.DELIVERED: DeliveryState.DELIVERED,
    Outcome.ACKED: DeliveryState.DELIVERED,
    Outcome.RETRY: DeliveryState.PENDING,
    Outcome.RELEASED: DeliveryState.PENDING,
    Outcome.UNSENT: DeliveryState.PENDING,
    Outcome.DEADLETTERED: DeliveryState.DEADLETTERED,
    Outcome.REJECTED: DeliveryState.DEADLETTERED,
    Outcome.RENEWED: DeliveryState.LEASED,
}

OUTCOME_TEXT: dict[Outcome, str] = {outcome: outcome.value for outcome in Outcome}
"""Each outcome's text, for the paths that store or count one per delivery: `.value` of
an enum member is a Python descriptor on this Python (~1,500 instructions a read)."""
NEXT_STATE_TEXT: dict[Outcome, str] = {
    outcome: state.value for outcome, state in NEXT_STATE.items()}
"""The text of the state each outcome leads to (`NEXT_STATE`), as `OUTCOME_TEXT`."""


class Delivery(NamedTuple):
    """One event on its way to one subscription. A named tuple, not a frozen dataclass:
    one is built per claimed row, and a frozen dataclass sets each of its 13 fields
    through `object.__setattr__` (~11,000 more broker instructions per push delivery
    under callgrind); a named tuple is as immutable and is built in one call."""

    id: int
    subscription: str
    seq: int
    state: DeliveryState
    attempts: int
    """Attempts (leases) ever made; the pull `delivery_count`."""
    attempts_before: int
    """Attempts made before the last operator retry (the retry budget restarts there)."""
    next_at: str
    lease: str | None
    last_status: int | None
    last_error: str | None
    first_at: str
    """Start of the retry window that `max_age` measures."""
    created_at: str
    updated_at: str

    @property
    def round_attempts(self) -> int:
        """Attempts counted against max_attempts / max_deliveries."""
        return self.attempts - self.attempts_before

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "subscription": self.subscription, "seq": self.seq,
            "state": self.state.value, "attempts": self.attempts, "next_at": self.next_at,
            "last_status": self.last_status, "last_error": self.last_error,
            "created_at": self.created_at, "updated_at": self.updated_at,
        }


@dataclass(frozen=True, slots=True)
class Attempt:
    """One attempt (a webhook call, or a pull lease) and how it ended."""

    delivery_id: int
    n: int
    lease: str
    started_at: str
    outcome: Outcome
    status: int | None
    latency_ms: float | None
    error: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "started_at": self.started_at, "outcome": self.outcome.value,
                "status": self.status, "latency_ms": self.latency_ms, "error": self.error}


@dataclass(frozen=True, slots=True)
class LeasedDelivery:
    """A claimed delivery with its event, ready to send or hand to a consumer."""

    delivery: Delivery
    event: StoredEvent

    @property
    def lease(self) -> str:
        assert self.delivery.lease is not None
        return self.delivery.lease


@dataclass(frozen=True, slots=True)
class LeaseBatch:
    """What a claim took: leased deliveries, and the ones whose attempts were used up
    (already marked dead-lettered; the caller publishes their dead letters)."""

    leased: list[LeasedDelivery]
    exhausted: list[LeasedDelivery]


@dataclass(slots=True)
class Settlement:
    """How one attempt ended, for `DeliveryWrites.settle_many` (never `RENEWED`). A
    request to the store, not a record it hands out: not frozen, since one is made per
    webhook answer and a frozen dataclass takes several times as long to build."""

    delivery_id: int
    lease: str
    outcome: Outcome
    now: str
    next_at: str | None = None
    status: int | None = None
    latency_ms: float | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class SubscriptionControl:
    """An operator's pause of a subscription (kept across restarts)."""

    name: str
    paused: bool
    paused_by: str | None
    updated_at: str
