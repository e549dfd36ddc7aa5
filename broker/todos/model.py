"""Todo items, their history and events, queue counts and silences: the todos feature's
records (what its repository hands out; frozen but for `TodoItem`, which is never
changed in place either; str Enums for states).

Times are stamps (RFC 3339 UTC, `broker.clock`), which compare as text in time order.
"""

from __future__ import annotations

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


_NAMES: dict[type, tuple[str, ...]] = {}


def _fields_of(record: Any) -> dict[str, Any]:
    """A record's fields as a dict; shallow, unlike `asdict`, whose deep copies showed
    up in the ingest profile (records are frozen and serialised right away). The names
    are looked up once per class: `fields()` itself showed up next."""
    names = _NAMES.get(type(record))
    if names is None:
        names = _NAMES[type(record)] = tuple(f.name for f in fields(record))
    return {name: getattr(record, name) for name in names}


@dataclass(slots=True)
class TodoItem:
    """One todo item: a group of events under one key that awaits a person.

    Not frozen, but never changed once made: a change makes a new item (`changes`), so
    a version kept to undo to stays as it was. A frozen dataclass's __init__ sets each
    field through object.__setattr__, about seven times the cost of this one's, and an
    item is made for every event a queue takes."""

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
