"""What the delivery feature needs from a store: the repository contract for deliveries,
their attempts and the operators' pauses. Each backend implements it.

`now` and due times are stamps from the broker's clock, one reading per decision; a
backend shared by several processes may decide leases with the database's clock instead,
as long as every decision uses the same one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from broker.delivery.breaker import SubscriptionHealth
from broker.delivery.model import (
    Attempt,
    Delivery,
    LeaseBatch,
    Outcome,
    Settlement,
    SubscriptionControl,
)
from broker.store.transaction import Transaction


class DeliveryWrites(ABC):
    """Delivery writes inside the writer's transaction."""

    @abstractmethod
    async def add(self, subscription: str, seq: int, now: str) -> int | None:
        """Create a pending delivery of event `seq`, due now; None if it already exists
        (two routes to the same subscription deliver once)."""

    @abstractmethod
    async def lease(
        self, subscription: str, limit: int, now: str, lease_s: float, *,
        max_attempts: int, ordered: bool = False, only_exhausted: bool = False,
    ) -> LeaseBatch:
        """Claim up to `limit` due deliveries (pending with next_at <= now, or leased with
        an expired lease) in seq order, skipping any another writer holds: each gets a
        new lease token valid for `lease_s`, one more attempt, and an attempt row with
        outcome `leased`; a replaced expired lease's attempt becomes `expired`.
        Deliveries whose round attempts already reached `max_attempts` are dead-lettered
        instead and returned in `exhausted`. `ordered` considers only the lowest-seq
        open delivery, and only when it is due; `only_exhausted` dead-letters the
        exhausted ones and leaves the others alone."""

    @abstractmethod
    async def settle(
        self, delivery_id: int, lease: str, outcome: Outcome, now: str, *,
        next_at: str | None = None, status: int | None = None,
        latency_ms: float | None = None, error: str | None = None,
        require_live: bool = False, subscription: str | None = None,
    ) -> Delivery | None:
        """End (or renew) the attempt holding `lease`: the delivery moves to
        `NEXT_STATE[outcome]` (`next_at` is the retry/lease time for pending/leased) and
        the attempt row records outcome, status, latency and error. Returns None, changing
        nothing, when `lease` is not the delivery's current lease, or (with
        `require_live`) when it has expired, or (with `subscription`) when the delivery
        belongs to another subscription."""

    async def settle_many(self, settlements: Sequence[Settlement]) -> None:
        """`settle` each of them, when the caller needs nothing back (a backend may do
        it in fewer statements). Each changes nothing unless its lease is current."""
        for s in settlements:
            await self.settle(s.delivery_id, s.lease, s.outcome, s.now, next_at=s.next_at,
                              status=s.status, latency_ms=s.latency_ms, error=s.error)

    @abstractmethod
    async def requeue(self, delivery_id: int, now: str) -> Delivery | None:
        """Operator retry: a dead-lettered delivery becomes pending and due now, with a
        fresh attempt budget and retry window; None if it is not dead-lettered."""

    @abstractmethod
    async def set_paused(self, subscription: str, paused: bool, by: str | None,
                         now: str) -> SubscriptionControl:
        """Record an operator's pause or resume (shared by every process)."""

    @abstractmethod
    async def breaker(self, subscription: str) -> SubscriptionHealth | None:
        """The subscription's breaker as this transaction sees it (None: never tripped),
        for a decision written back with `save_breaker` in the same transaction."""

    @abstractmethod
    async def save_breaker(self, health: SubscriptionHealth) -> None:
        """Store the subscription's breaker (shared by every process)."""


class DeliveryRepository(ABC):
    """Deliveries of a backend. Reads are each their own short read transaction."""

    @abstractmethod
    def writes(self, tx: Transaction) -> DeliveryWrites:
        """Delivery writes inside `tx`."""

    @abstractmethod
    async def get(self, delivery_id: int) -> Delivery | None:
        """One delivery."""

    @abstractmethod
    async def page(self, subscription: str, state: str | None = None, after: int = 0,
                   limit: int = 100) -> list[Delivery]:
        """A subscription's deliveries with id > after, oldest first."""

    @abstractmethod
    async def attempts(self, delivery_ids: Sequence[int]) -> dict[int, list[Attempt]]:
        """The attempts of each delivery, in order."""

    @abstractmethod
    async def counts(self, subscription: str) -> dict[str, int]:
        """Number of deliveries by state (every state present, zero if none)."""

    @abstractmethod
    async def last_error(self, subscription: str) -> Delivery | None:
        """The most recently updated delivery that carries an error."""

    @abstractmethod
    async def next_due(self, subscription: str, ordered: bool = False) -> str | None:
        """When the subscription's next open delivery is due (ordered: its lowest-seq
        open delivery, which blocks the others); None when nothing is open."""

    @abstractmethod
    async def count_exhausted(self, subscription: str, max_attempts: int, now: str) -> int:
        """Leased deliveries whose lease expired after their last permitted attempt."""

    @abstractmethod
    async def controls(self) -> dict[str, SubscriptionControl]:
        """Every recorded pause/resume, by subscription name."""

    @abstractmethod
    async def breakers(self) -> dict[str, SubscriptionHealth]:
        """Every recorded breaker, by subscription name (a missing one is closed)."""
