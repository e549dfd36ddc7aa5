"""The store contract for todo items, their events and history, and silences.

Timestamps are RFC 3339 UTC strings from `broker.timeutil.to_rfc3339`, which sort as
text in time order; "now" is always passed in so that the database, not the caller's
clock reading at a different moment, decides what is due.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any


class TodoState(StrEnum):
    """Where an item is in the triage workflow (snoozing is a flag beside the state)."""

    OPEN = "open"
    CLAIMED = "claimed"
    RESOLVED = "resolved"


TODO_VIEWS = ("open", "claimed", "snoozed", "resolved", "active")
"""List filters: `open`/`claimed` leave snoozed items out, `snoozed` is any unresolved
item snoozed past now, `active` is open + claimed (not snoozed)."""


def _fields_of(record: Any) -> dict[str, Any]:
    """A record's fields as a dict; shallow, unlike `asdict`, whose deep copies showed
    up in the ingest profile (records are frozen and serialised right away)."""
    return {f.name: getattr(record, f.name) for f in fields(record)}


@dataclass(frozen=True, slots=True)
class TodoItem:
    """One todo item: a group of events under one key that awaits a person."""

    id: int
    queue: str
    key: str
    title: str
    state: TodoState
    priority: str | None
    owner: str | None
    lease_expires: str | None
    snoozed_until: str | None
    count: int
    first_seen: str
    last_seen: str
    created_at: str
    updated_at: str
    resolved_at: str | None
    resolution: dict[str, Any] | None
    """`{"by": operator, "note": str, "auto": bool}` once resolved."""
    event_seq: int
    """The latest event attached."""
    first_event_seq: int

    def to_dict(self) -> dict[str, Any]:
        """The API form (see the todo item contract)."""
        doc = _fields_of(self)
        doc["state"] = self.state.value
        return doc

    def is_snoozed(self, now: str) -> bool:
        return self.snoozed_until is not None and self.snoozed_until > now


@dataclass(frozen=True, slots=True)
class TodoHistoryEntry:
    """One change of an item: who did what, with which note, and the events involved."""

    at: str
    action: str
    operator: str | None
    note: str | None = None
    event_seq: int | None = None
    """The event the change is about (the attached, resolving or re-emitted event)."""
    audit_seq: int | None = None
    """The `opsbus.todo.<action>` event that announced the change."""
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return _fields_of(self)


@dataclass(frozen=True, slots=True)
class TodoEventRef:
    """An event attached to an item, as listed with the item."""

    seq: int
    type: str
    source: str
    subject: str | None
    time: str | None

    def to_dict(self) -> dict[str, Any]:
        return _fields_of(self)


@dataclass(frozen=True, slots=True)
class QueueCounts:
    """How many items of a queue are in each view, and when the oldest open one began."""

    name: str
    open: int
    claimed: int
    snoozed: int
    resolved: int
    oldest_open: str | None
    """`first_seen` of the oldest open (not snoozed) item."""


@dataclass(frozen=True, slots=True)
class Silence:
    """A mute: while it holds, matching events open no new todo item."""

    id: int
    matcher: dict[str, Any]
    """`{"key": glob}` on the group key or `{"filter": <filter spec>}` on the event."""
    queue: str | None
    comment: str
    author: str
    created_at: str
    ends_at: str
    expired_by: str | None
    """Who ended it early (None when it runs out by itself)."""

    def is_active(self, now: str) -> bool:
        return self.ends_at > now


class TodoWrites(ABC):
    """Todo and silence writes inside the writer's transaction. An item returned by a
    write method stays locked (no other writer can change it) until the transaction
    ends, so read-decide-save in one unit of work is atomic."""

    @abstractmethod
    async def find_active_todo(self, queue: str, key: str) -> TodoItem | None:
        """The open or claimed item of `queue` with group key `key`, locked."""

    @abstractmethod
    async def lock_todo(self, todo_id: int) -> TodoItem | None:
        """One item by id, locked; None when there is none."""

    @abstractmethod
    async def insert_todo(
        self, *, queue: str, key: str, title: str, priority: str | None, seq: int, at: str
    ) -> TodoItem:
        """A new open item holding event `seq` (count 1, first and last seen `at`). At
        most one unresolved item per (queue, key) exists: the database enforces it."""

    @abstractmethod
    async def save_todo(self, item: TodoItem) -> None:
        """Write every mutable field of `item` (all fields but id, queue, key, created
        and first seen/event)."""

    @abstractmethod
    async def add_todo_event(self, todo_id: int, seq: int) -> None:
        """Record that event `seq` belongs to the item (idempotent)."""

    @abstractmethod
    async def add_todo_history(self, todo_id: int, entry: TodoHistoryEntry) -> None:
        """Append one entry to the item's history."""

    @abstractmethod
    async def expired_claims(self, now: str) -> list[TodoItem]:
        """Claimed items whose lease ended at or before `now`, locked."""

    @abstractmethod
    async def ended_snoozes(self, now: str) -> list[TodoItem]:
        """Unresolved items whose `snoozed_until` is at or before `now`, locked."""

    @abstractmethod
    async def insert_silence(
        self, *, matcher: dict[str, Any], queue: str | None, comment: str, author: str,
        created_at: str, ends_at: str,
    ) -> Silence:
        """Store a new silence."""

    @abstractmethod
    async def expire_silence(self, silence_id: int, at: str, by: str) -> Silence | None:
        """End a silence at `at` (if it ends later); None when there is no such silence."""

    @abstractmethod
    async def active_silences(self, now: str) -> list[Silence]:
        """Silences holding at `now`, read inside the transaction (so a silence created
        in an earlier commit is always seen by the routing of a later event)."""


class TodoReads(ABC):
    """Todo and silence reads, each its own short read transaction."""

    @abstractmethod
    async def get_todo(self, todo_id: int) -> TodoItem | None:
        """One item by id."""

    @abstractmethod
    async def todo_events(self, todo_id: int, limit: int = 1000) -> list[TodoEventRef]:
        """The item's events, oldest first; the newest `limit` when there are more."""

    @abstractmethod
    async def todo_event_seqs(self, todo_id: int) -> list[int]:
        """Every seq attached to the item, ascending."""

    @abstractmethod
    async def todo_history(self, todo_id: int) -> list[TodoHistoryEntry]:
        """The item's history, oldest first."""

    @abstractmethod
    async def list_todos(
        self, *, now: str, queue: str | None = None, view: str | None = None,
        owner: str | None = None, limit: int = 100, after: tuple[str, int] | None = None,
    ) -> list[TodoItem]:
        """Items by latest activity, newest first (`updated_at`, then id, descending).
        `view` is one of TODO_VIEWS; `after` is the (updated_at, id) of the last item
        of the previous page."""

    @abstractmethod
    async def queue_counts(self, now: str) -> list[QueueCounts]:
        """Counts for every queue that has items, by name."""

    @abstractmethod
    async def todos_due(self, now: str) -> bool:
        """True when a lease or a snooze has run out (the sweeper has work)."""

    @abstractmethod
    async def list_silences(self, now: str, *, include_expired: bool = False
                            ) -> list[Silence]:
        """Silences (holding ones only unless `include_expired`), newest first."""

    @abstractmethod
    async def get_silence(self, silence_id: int) -> Silence | None:
        """One silence by id."""
