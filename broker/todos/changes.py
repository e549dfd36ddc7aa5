"""Item state transitions (pure: they return the changed item or raise Conflict) and
the audit event + history entry that record each change in the same transaction."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from broker.errors import Conflict
from broker.events import json_event
from broker.timeutil import parse_rfc3339, to_rfc3339
from broker.todos.model import TodoHistoryEntry, TodoItem, TodoState

if TYPE_CHECKING:
    from broker.bus import Publication, StoredEvent, WriteContext
    from broker.todos.repository import TodoWrites

AUDIT_SOURCE = "opsbus/todos"
SYSTEM = "system"
"""The operator recorded for changes the broker makes itself (auto-resolve, lease expiry)."""


def _later(at: str, seconds: float) -> str:
    return to_rfc3339(parse_rfc3339(at) + timedelta(seconds=seconds))


def _refuse_resolved(item: TodoItem, what: str) -> None:
    if item.state is TodoState.RESOLVED:
        by = (item.resolution or {}).get("by")
        raise Conflict(f"item {item.id} is resolved (by {by} at {item.resolved_at});"
                       f" it cannot be {what}", state=item.state.value)


def lease_lapsed(item: TodoItem, at: str) -> bool:
    """A claim whose lease has run out is abandoned even before the sweeper returns it."""
    return item.lease_expires is not None and item.lease_expires <= at


def claim(item: TodoItem, operator: str, at: str, lease_s: float | None) -> TodoItem:
    """Claim (or, by the owner, renew the lease of) an item."""
    _refuse_resolved(item, "claimed")
    if (item.state is TodoState.CLAIMED and item.owner != operator
            and not lease_lapsed(item, at)):
        raise Conflict(f"item {item.id} is already claimed by {item.owner}",
                       owner=item.owner, state=item.state.value)
    return replace(item, state=TodoState.CLAIMED, owner=operator, updated_at=at,
                   lease_expires=_later(at, lease_s) if lease_s else None,
                   snoozed_until=None)


def release(item: TodoItem, operator: str, at: str, force: bool) -> TodoItem:
    """Return a claimed item to open: its owner may, anyone else only with `force`."""
    _refuse_resolved(item, "released")
    if item.state is not TodoState.CLAIMED:
        raise Conflict(f"item {item.id} is not claimed; there is nothing to release",
                       state=item.state.value)
    if item.owner != operator and not force:
        raise Conflict(f"item {item.id} is claimed by {item.owner}; only they can release"
                       " it (or pass force: true)", owner=item.owner, state=item.state.value)
    return replace(item, state=TodoState.OPEN, owner=None, lease_expires=None, updated_at=at)


def resolve(item: TodoItem, by: str, note: str | None, at: str, *, auto: bool) -> TodoItem:
    if item.state is TodoState.RESOLVED:
        raise Conflict(f"item {item.id} is already resolved (by"
                       f" {(item.resolution or {}).get('by')} at {item.resolved_at})",
                       state=item.state.value)
    return replace(item, state=TodoState.RESOLVED, lease_expires=None, snoozed_until=None,
                   resolved_at=at, updated_at=at,
                   resolution={"by": by, "note": note or "", "auto": auto})


def snooze(item: TodoItem, until: str, at: str) -> TodoItem:
    _refuse_resolved(item, "snoozed")
    return replace(item, snoozed_until=until, updated_at=at)


def touch(item: TodoItem, at: str) -> TodoItem:
    """Mark activity (a comment, a re-emit) without another change."""
    return replace(item, updated_at=at)


def lapse(item: TodoItem, at: str) -> TodoItem:
    """The claim's lease ran out: the item is open again."""
    return replace(item, state=TodoState.OPEN, owner=None, lease_expires=None, updated_at=at)


def wake(item: TodoItem, at: str) -> TodoItem:
    """The snooze ran out."""
    return replace(item, snoozed_until=None, updated_at=at)


def attach(item: TodoItem, seq: int, at: str, title: str, priority: str | None) -> TodoItem:
    """Another event of the group: count it; title and priority follow the latest event."""
    # Built directly: `replace` inspects the fields on every call, and this runs for
    # every event a queue takes.
    return TodoItem(item.id, item.queue, item.key, title, item.state,
                    priority if priority is not None else item.priority, item.owner,
                    item.lease_expires, item.snoozed_until, item.count + 1, item.first_seen,
                    at, item.created_at, at, item.resolved_at, item.resolution, seq,
                    item.first_event_seq)


async def record(
    ctx: WriteContext, writes: TodoWrites, item: TodoItem, action: str, at: str, *,
    operator: str | None,
    note: str | None = None, cause: StoredEvent | None = None, event_seq: int | None = None,
    detail: dict[str, Any] | None = None,
) -> int | None:
    """Publish `opsbus.todo.<action>` for the item as it now is and append the history
    entry, in the caller's transaction; returns the audit event's seq (None when the
    event's root had used its descendant budget, so no audit event was stored).

    Events attached to the item earlier in the transaction and not announced yet are
    announced first, so the trail keeps the order in which things happened."""
    await ctx.gathered(Repeats.KEY, Repeats).announce(ctx, item.id)
    return await _announce(ctx, writes, item, action, at, operator=operator, note=note,
                           cause=cause, event_seq=event_seq, detail=detail)


async def _announce(
    ctx: WriteContext, writes: TodoWrites, item: TodoItem, action: str, at: str, *,
    operator: str | None, note: str | None, cause: StoredEvent | None,
    event_seq: int | None, detail: dict[str, Any] | None,
) -> int | None:
    event = _announcement(item, action, at, operator=operator, note=note, detail=detail)
    # A title or note can be long; the audit event is kept, elided to fit.
    published = await ctx.publish(event, cause=cause, elide=True)
    audit_seq = None if published.dropped else published.seq
    await writes.add_history(item.id, TodoHistoryEntry(
        at, action, operator, note, event_seq, audit_seq, detail or {}))
    return audit_seq


def _announcement(item: TodoItem, action: str, at: str, *, operator: str | None,
                  note: str | None, detail: dict[str, Any] | None) -> dict[str, Any]:
    """The `opsbus.todo.<action>` event for the item as it now is."""
    data: dict[str, Any] = {"item": item.to_dict(), "operator": operator, "note": note}
    if detail:
        data["detail"] = detail
    return json_event(type=f"opsbus.todo.{action}", source=AUDIT_SOURCE, time=at,
                      subject=str(item.id), data=data, todoid=item.id)


def repeated(ctx: WriteContext, writes: TodoWrites, item: TodoItem, cause: StoredEvent
             ) -> None:
    """Another event attached to the item (already saved): announced with the item's
    other repeats of this transaction as one `opsbus.todo.updated` before COMMIT."""
    ctx.gathered(Repeats.KEY, Repeats).add(writes, item, cause)


@dataclass(slots=True)
class _Pending:
    item: TodoItem
    """The item as the latest attached event left it."""
    cause: StoredEvent
    """The latest attached event: the cause of the announcement."""
    seqs: list[int]
    writes: TodoWrites


class Repeats:
    """Events attached to items in this transaction and not yet announced: one
    `opsbus.todo.updated` and one history entry per item per transaction (`detail.events`
    lists the seqs it covers, the item's event list still holds each), published when
    the transaction's units are done, or earlier when the item changes otherwise.
    Every event of a group costing its own audit event was most of the cost of ingest
    into a queue."""

    KEY = "todos.repeats"

    def __init__(self) -> None:
        self._pending: dict[int, _Pending] = {}
        self._journal: list[tuple[int, tuple[_Pending, TodoItem, StoredEvent, int] | None]] = []
        """(item id, its pending entry as it was: None when there was none)."""
        self._marked = False
        """A step is open: changes are journaled (`WriteContext.gathered`)."""

    def _note(self, todo_id: int) -> None:
        if not self._marked:  # no step open: nothing will be undone but everything
            return
        found = self._pending.get(todo_id)
        self._journal.append((todo_id, None if found is None else
                              (found, found.item, found.cause, len(found.seqs))))

    def add(self, writes: TodoWrites, item: TodoItem, cause: StoredEvent) -> None:
        # `_note` spelled out: this runs for every event a queue takes.
        todo_id = item.id
        found = self._pending.get(todo_id)
        if self._marked:
            self._journal.append((todo_id, None if found is None else
                                  (found, found.item, found.cause, len(found.seqs))))
        if found is None:
            self._pending[todo_id] = _Pending(item, cause, [cause.seq], writes)
        else:
            found.item = item
            found.cause = cause
            found.seqs.append(cause.seq)

    async def announce(self, ctx: WriteContext, todo_id: int) -> None:
        """Publish the item's pending announcement now (if it has one)."""
        found = self._pending.get(todo_id)
        if found is None:
            return
        self._note(todo_id)
        del self._pending[todo_id]
        await _announce(ctx, found.writes, found.item, "updated", found.item.updated_at,
                        operator=None, note=None, cause=found.cause,
                        event_seq=found.cause.seq, detail={"events": list(found.seqs)})

    async def finish(self, ctx: WriteContext) -> bool:
        """Publish every pending announcement, in the order the items were first
        attached to, together (one append for all: `WriteContext.publish_derived`)."""
        if not self._pending:
            return False
        for todo_id in self._pending:
            self._note(todo_id)
        pending = list(self._pending.values())
        self._pending.clear()
        details = [{"events": list(found.seqs)} for found in pending]
        announced = [(_announcement(found.item, "updated", found.item.updated_at,
                                    operator=None, note=None, detail=detail), found.cause)
                     for found, detail in zip(pending, details, strict=True)]

        async def history(published: list[Publication]) -> None:
            # Once appended, before any is routed: a change routing one of them makes to
            # another of these items (announced one at a time, that item would have been
            # announced first) comes after the item's own entry, as its seq does.
            for found, detail, publication in zip(pending, details, published, strict=True):
                await found.writes.add_history(found.item.id, TodoHistoryEntry(
                    found.item.updated_at, "updated", None, None, found.cause.seq,
                    None if publication.dropped else publication.seq, detail))

        await ctx.publish_derived(announced, elide=True, appended=history)
        return True

    def mark(self) -> int:
        self._marked = True
        return len(self._journal)

    def settle(self) -> None:
        """No step is open any more: the journal (which kept each replaced item and
        cause alive until COMMIT) goes."""
        self._marked = False
        self._journal.clear()

    def undo(self, mark: int | None) -> None:
        at = mark or 0
        for todo_id, before in reversed(self._journal[at:]):
            if before is None:
                self._pending.pop(todo_id, None)
            else:
                found, item, cause, count = before
                found.item, found.cause = item, cause
                del found.seqs[count:]
                self._pending[todo_id] = found
        del self._journal[at:]
