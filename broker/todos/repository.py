"""What the todos feature needs from a store: the repository contracts for todo items and
for silences. Each backend implements them (`broker/store/<backend>/`).

"Now" is always passed in (a stamp from the broker's clock), one reading per decision,
so the database decides what is due with the same moment the caller used.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from broker.store.transaction import Transaction
from broker.todos.model import QueueCounts, Silence, TodoEventRef, TodoHistoryEntry, TodoItem


class TodoWrites(ABC):
    """Todo writes inside the writer's transaction. An item a write method returns stays
    locked (no other writer, in this process or another, can change it) until the
    transaction ends, so read-decide-save in one unit of work is atomic."""

    gathers: bool = False
    """True when `add_event` and a `save` that keeps the item's state only gather in
    memory until the end of the transaction (run no statement, cannot fail): a caller
    that decided everything before them needs no savepoint of its own around them. A
    savepoint around them still undoes them. Reads that do run a statement
    (`find_active`, `lock`) then leave the transaction usable when they fail (on
    PostgreSQL, where a failed statement aborts it, inside a savepoint of their own)."""

    @abstractmethod
    async def find_active(self, queue: str, key: str) -> TodoItem | None:
        """The open or claimed item of `queue` with group key `key`, locked."""

    @abstractmethod
    async def lock(self, todo_id: int) -> TodoItem | None:
        """One item by id, locked; None when there is none."""

    @abstractmethod
    async def insert(self, *, queue: str, key: str, title: str, priority: str | None,
                     seq: int, at: str) -> TodoItem:
        """A new open item holding event `seq` (count 1, first and last seen `at`). At
        most one unresolved item per (queue, key) exists: the database enforces it."""

    @abstractmethod
    async def save(self, item: TodoItem) -> None:
        """Write every mutable field of `item` (all but id, queue, key, created and
        first seen/event)."""

    @abstractmethod
    async def add_event(self, todo_id: int, seq: int) -> None:
        """Record that event `seq` belongs to the item (idempotent)."""

    async def attach(self, item: TodoItem, seq: int) -> None:
        """Record event `seq` with `item` and save it (`add_event`, then `save`): the
        item as `changes.attach` returned it, its state kept. With `gathers` this only
        gathers, as those do."""
        await self.add_event(item.id, seq)
        await self.save(item)

    # Without an await, for the events a queue takes (most attach to an item the
    # transaction already holds): a coroutine per call cost more than the call's work.
    def held_active(self, queue: str, key: str) -> TodoItem | None:
        """The item `find_active` would return, when this transaction already holds it
        (read or written in it): no statement runs. None when it does not hold one
        (then ask `find_active`)."""
        return None

    def attached(self, item: TodoItem, seq: int) -> bool:
        """`attach`, when it only gathers (the transaction holds the item, in the same
        state): True. False, doing nothing, when `attach` must run."""
        return False

    @abstractmethod
    async def add_history(self, todo_id: int, entry: TodoHistoryEntry) -> None:
        """Append one entry to the item's history."""

    @abstractmethod
    async def expired_claims(self, now: str) -> list[TodoItem]:
        """Claimed items whose lease ended at or before `now`, locked."""

    @abstractmethod
    async def ended_snoozes(self, now: str) -> list[TodoItem]:
        """Unresolved items whose `snoozed_until` is at or before `now`, locked."""


class TodoRepository(ABC):
    """Todo items of a backend. Reads are each their own short read transaction."""

    @abstractmethod
    def writes(self, tx: Transaction) -> TodoWrites:
        """Todo writes inside `tx`."""

    @abstractmethod
    async def get(self, todo_id: int) -> TodoItem | None:
        """One item by id."""

    @abstractmethod
    async def events(self, todo_id: int, limit: int = 1000) -> list[TodoEventRef]:
        """The item's events, oldest first; the newest `limit` when there are more."""

    @abstractmethod
    async def event_seqs(self, todo_id: int) -> list[int]:
        """Every seq attached to the item, ascending."""

    @abstractmethod
    async def history(self, todo_id: int) -> list[TodoHistoryEntry]:
        """The item's history, oldest first."""

    @abstractmethod
    async def page(
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
    async def due(self, now: str) -> bool:
        """True when a lease or a snooze has run out (the sweeper has work)."""


class SilenceWrites(ABC):
    """Silence writes inside the writer's transaction."""

    @abstractmethod
    async def insert(self, *, matcher: dict[str, Any], queue: str | None, comment: str,
                     author: str, created_at: str, ends_at: str) -> Silence:
        """Store a new silence."""

    @abstractmethod
    async def expire(self, silence_id: int, at: str, by: str) -> Silence | None:
        """End a silence at `at` (if it ends later); None when there is no such silence."""

    @abstractmethod
    async def active(self, now: str) -> list[Silence]:
        """Silences holding at `now`, read inside the transaction (so a silence created
        in an earlier commit is always seen by the routing of a later event)."""


class SilenceRepository(ABC):
    """Silences of a backend."""

    @abstractmethod
    def writes(self, tx: Transaction) -> SilenceWrites:
        """Silence writes inside `tx`."""

    @abstractmethod
    async def recent(self, now: str, *, include_expired: bool = False) -> list[Silence]:
        """Silences (holding ones only unless `include_expired`), newest first."""

    @abstractmethod
    async def get(self, silence_id: int) -> Silence | None:
        """One silence by id."""
