"""Action jobs: one run of an API action for one event (the actions feature's records).
Claimed by lease token like deliveries (see `broker.delivery.model`)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from broker.bus.log import StoredEvent


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
