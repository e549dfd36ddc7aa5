"""The `queue:<name>` route target: group events into items, auto-resolve, honour silences."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from broker.todos import changes
from broker.todos.changes import SYSTEM
from broker.todos.queues import Placement, place

if TYPE_CHECKING:
    from broker.bus import WriteContext
    from broker.store.records import StoredEvent
    from broker.todos.service import TodoService


async def take(service: TodoService, ctx: WriteContext, stored: StoredEvent,
               queue_name: str) -> dict[str, Any]:
    """Put one routed event into a queue, inside the event's transaction; the returned
    detail is recorded with the target hit."""
    queue = service.queue(queue_name)
    event = stored.event
    key = queue.key_of(event)
    at = stored.recvtime
    item = await ctx.tx.find_active_todo(queue.name, key)
    if item is not None and item.event_seq == stored.seq:
        # Two routes sent the same event to this queue: it counts once.
        return {"todo": item.id, "key": key, "duplicate_target": True}

    placement = place(queue, event, active=item is not None)
    if placement is Placement.IGNORE:
        return {"key": key, "resolved": None}  # a resolving event never opens an item
    if placement is Placement.RESOLVE:
        assert item is not None
        await ctx.tx.add_todo_event(item.id, stored.seq)
        note = f"resolved by {event['type']} {event['id']}"
        item = changes.resolve(item, SYSTEM, note, at, auto=True)
        await ctx.tx.save_todo(item)
        await changes.record(ctx, item, "resolved", at, operator=SYSTEM, note=note,
                             cause=stored, event_seq=stored.seq)
        service.count("resolved_auto")
        return {"todo": item.id, "key": key, "resolved": True}

    title, priority = queue.title_of(event), queue.priority_of(event)
    if placement is Placement.ATTACH:
        assert item is not None
        await ctx.tx.add_todo_event(item.id, stored.seq)
        item = changes.attach(item, stored.seq, at, title, priority)
        await ctx.tx.save_todo(item)
        await changes.record(ctx, item, "updated", at, operator=None, cause=stored,
                             event_seq=stored.seq)
        service.count("attached")
        return {"todo": item.id, "key": key, "attached": True}

    silence = await service.silences.matching(ctx, queue.name, key, event, at)
    if silence is not None:
        service.count("silenced")
        return {"silenced": silence.id, "key": key}
    item = await ctx.tx.insert_todo(queue=queue.name, key=key, title=title,
                                    priority=priority, seq=stored.seq, at=at)
    await changes.record(ctx, item, "opened", at, operator=None, cause=stored,
                         event_seq=stored.seq)
    service.count("opened")
    return {"todo": item.id, "key": key, "opened": True}
