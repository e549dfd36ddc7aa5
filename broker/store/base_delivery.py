"""The store contract for subscription deliveries, their attempts, and API action jobs.

Times (`next_at`, `now`) are stamps (RFC 3339 UTC, see `broker.clock`) passed in by the
caller, one clock reading per decision; a backend shared by several processes may
decide with its own clock instead, as long as it does so consistently. A delivery or job is
*claimed* by giving it a fresh lease token in a write transaction: whoever holds the
token may settle it, and a token that is no longer current settles nothing. That one
rule makes pull consumers, the push dispatcher and crash recovery safe together.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from broker.store.records import StoredEvent


class DeliveryState(StrEnum):
    """Where a delivery is: due or backing off, leased (in flight), done, dead."""

    PENDING = "pending"
    LEASED = "leased"
    DELIVERED = "delivered"
    DEADLETTERED = "deadlettered"


OPEN_DELIVERY_STATES = (DeliveryState.PENDING, DeliveryState.LEASED)


class Outcome(StrEnum):
    """How an attempt ended; each maps to the delivery's next state."""

    LEASED = "leased"
    """Still in flight (the attempt row's outcome until it is settled)."""
    DELIVERED = "delivered"
    ACKED = "acked"
    RETRY = "retry"
    RELEASED = "released"
    DEADLETTERED = "deadlettered"
    REJECTED = "rejected"
    EXPIRED = "expired"
    RENEWED = "renewed"


NEXT_STATE: dict[Outcome, DeliveryState] = {
    Outcome.DELIVERED: DeliveryState.DELIVERED,
    Outcome.ACKED: DeliveryState.DELIVERED,
    Outcome.RETRY: DeliveryState.PENDING,
    Outcome.RELEASED: DeliveryState.PENDING,
    Outcome.DEADLETTERED: DeliveryState.DEADLETTERED,
    Outcome.REJECTED: DeliveryState.DEADLETTERED,
    Outcome.RENEWED: DeliveryState.LEASED,
}


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event on its way to one subscription."""

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


@dataclass(frozen=True, slots=True)
class SubscriptionControl:
    """An operator's pause of a subscription (kept across restarts)."""

    name: str
    paused: bool
    paused_by: str | None
    updated_at: str


class JobState(StrEnum):
    """An action job's lifecycle."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class ActionJob:
    """One run of an API action for one event."""

    id: int
    action: str
    seq: int
    state: JobState
    attempts: int
    next_at: str
    lease: str | None
    params: dict[str, Any] | None
    todo_id: int | None
    operator: str | None
    result_seq: int | None
    last_error: str | None
    created_at: str
    updated_at: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "action": self.action, "seq": self.seq, "state": self.state.value,
            "attempts": self.attempts, "next_at": self.next_at, "params": self.params,
            "todo_id": self.todo_id,
            "operator": self.operator, "result_seq": self.result_seq,
            "last_error": self.last_error, "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """A claimed action job with its triggering event."""

    job: ActionJob
    event: StoredEvent


class DeliveryWrites(ABC):
    """Delivery and action-job writes inside the writer's transaction."""

    @abstractmethod
    async def add_delivery(self, subscription: str, seq: int, now: str) -> int | None:
        """Create a pending delivery of event `seq`, due now; None if it already exists
        (two routes to the same subscription deliver once)."""

    @abstractmethod
    async def lease_deliveries(
        self, subscription: str, limit: int, now: str, lease_s: float, *,
        max_attempts: int, ordered: bool = False, only_exhausted: bool = False,
    ) -> LeaseBatch:
        """Claim up to `limit` due deliveries (pending with next_at <= now, or leased with
        an expired lease) in seq order: each gets a new lease token valid for `lease_s`,
        one more attempt, and an attempt row with outcome `leased`; a replaced expired
        lease's attempt becomes `expired`. Deliveries whose round attempts already reached
        `max_attempts` are dead-lettered instead and returned in `exhausted`. `ordered`
        considers only the lowest-seq open delivery, and only when it is due;
        `only_exhausted` dead-letters the exhausted ones and leaves the others alone."""

    @abstractmethod
    async def settle_delivery(
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

    @abstractmethod
    async def requeue_delivery(self, delivery_id: int, now: str) -> Delivery | None:
        """Operator retry: a dead-lettered delivery becomes pending and due now, with a
        fresh attempt budget and retry window; None if it is not dead-lettered."""

    @abstractmethod
    async def set_paused(self, subscription: str, paused: bool, by: str | None,
                         now: str) -> SubscriptionControl:
        """Record an operator's pause or resume."""

    @abstractmethod
    async def add_action_job(
        self, action: str, seq: int, now: str, *, params: dict[str, Any] | None = None,
        todo_id: int | None = None, operator: str | None = None,
    ) -> int:
        """Create a pending action job for event `seq`, due now."""

    @abstractmethod
    async def claim_action_jobs(self, limit: int, now: str, lease_s: float,
                                actions: Sequence[str] | None = None) -> list[ClaimedJob]:
        """Claim due jobs (pending and due, or running with an expired lease) oldest first;
        each gets a lease token and one more attempt. `actions` limits the claim to those
        action names (None: any)."""

    @abstractmethod
    async def finish_action_job(
        self, job_id: int, lease: str, state: JobState, now: str, *,
        next_at: str | None = None, result_seq: int | None = None,
        error: str | None = None,
    ) -> ActionJob | None:
        """Settle a claimed job: PENDING (retry at `next_at`), SUCCEEDED or FAILED (with the
        result event's seq). None, changing nothing, if `lease` is no longer current."""


class DeliveryReads(ABC):
    """Delivery and action-job reads (separate read connections)."""

    @abstractmethod
    async def get_delivery(self, delivery_id: int) -> Delivery | None:
        """One delivery."""

    @abstractmethod
    async def list_deliveries(self, subscription: str, state: str | None = None,
                              after: int = 0, limit: int = 100) -> list[Delivery]:
        """A subscription's deliveries with id > after, oldest first."""

    @abstractmethod
    async def delivery_attempts(self, delivery_ids: Sequence[int]) -> dict[int, list[Attempt]]:
        """The attempts of each delivery, in order."""

    @abstractmethod
    async def delivery_counts(self, subscription: str) -> dict[str, int]:
        """Number of deliveries by state (every state present, zero if none)."""

    @abstractmethod
    async def last_delivery_error(self, subscription: str) -> Delivery | None:
        """The most recently updated delivery that carries an error."""

    @abstractmethod
    async def next_delivery_due(self, subscription: str, ordered: bool = False
                                ) -> str | None:
        """When the subscription's next open delivery is due (ordered: its lowest-seq
        open delivery, which blocks the others); None when nothing is open."""

    @abstractmethod
    async def count_exhausted(self, subscription: str, max_attempts: int, now: str) -> int:
        """Leased deliveries whose lease expired after their last permitted attempt."""

    @abstractmethod
    async def subscription_controls(self) -> dict[str, SubscriptionControl]:
        """Every recorded pause/resume, by subscription name."""

    @abstractmethod
    async def get_action_job(self, job_id: int) -> ActionJob | None:
        """One action job."""

    @abstractmethod
    async def list_action_jobs(self, action: str, after: int = 0, limit: int = 100
                               ) -> list[ActionJob]:
        """An action's jobs with id > after, oldest first."""

    @abstractmethod
    async def next_action_due(self) -> str | None:
        """When the next pending or running job is due; None when there is none."""
