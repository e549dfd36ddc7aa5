"""What the actions feature needs from a store: the repository contract for action jobs.
Each backend implements it. Times are stamps from the broker's clock."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from broker.actions.model import ActionJob, ClaimedJob, JobState
from broker.store.transaction import Transaction


class JobWrites(ABC):
    """Action-job writes inside the writer's transaction."""

    @abstractmethod
    async def add(self, action: str, seq: int, now: str, *,
                  params: dict[str, Any] | None = None, todo_id: int | None = None,
                  operator: str | None = None) -> int:
        """Create a pending job for event `seq`, due now."""

    @abstractmethod
    async def claim(self, limit: int, now: str, lease_s: float,
                    actions: Sequence[str] | None = None) -> list[ClaimedJob]:
        """Claim due jobs (pending and due, or running with an expired lease) oldest first,
        skipping any another writer holds; each gets a lease token and one more attempt.
        `actions` limits the claim to those action names (None: any)."""

    @abstractmethod
    async def finish(self, job_id: int, lease: str, state: JobState, now: str, *,
                     next_at: str | None = None, result_seq: int | None = None,
                     error: str | None = None) -> ActionJob | None:
        """Settle a claimed job: PENDING (retry at `next_at`), SUCCEEDED or FAILED (with
        the result event's seq). None, changing nothing, if `lease` is no longer
        current."""


class JobRepository(ABC):
    """Action jobs of a backend."""

    @abstractmethod
    def writes(self, tx: Transaction) -> JobWrites:
        """Job writes inside `tx`."""

    @abstractmethod
    async def get(self, job_id: int) -> ActionJob | None:
        """One job."""

    @abstractmethod
    async def page(self, action: str, after: int = 0, limit: int = 100) -> list[ActionJob]:
        """An action's jobs with id > after, oldest first."""

    @abstractmethod
    async def next_due(self) -> str | None:
        """When the next pending or running job is due; None when there is none."""
