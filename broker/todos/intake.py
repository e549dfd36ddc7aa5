"""The `queue:<name>` route target: group events into items, auto-resolve, honour silences."""

from __future__ import annotations

from collections import Counter
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import TYPE_CHECKING, Any

from broker.todos import changes
from broker.todos.changes import SYSTEM, Repeats
from broker.todos.model import TodoItem
from broker.todos.queues import Placement, Queue, QueueRegistry, place
from broker.todos.repository import TodoRepository, TodoWrites
from broker.todos.silences import Silences

if TYPE_CHECKING:
    from broker.bus import StoredEvent, WriteContext


_ATTACH, _IGNORE = Placement.ATTACH, Placement.IGNORE
"""Read once: an enum's member read off its class costs several times a plain attribute."""


class TodoIntake:
    """Puts routed events into queues, inside the event's transaction."""

    def __init__(self, queues: QueueRegistry, repo: TodoRepository, silences: Silences,
                 counters: Counter[str]) -> None:
        self.queues = queues
        self.repo = repo
        self.silences = silences
        self.counters = counters

    def take_held(self, ctx: WriteContext, stored: StoredEvent, route: str,
                  queue_name: str) -> dict[str, Any] | None:
        """`take`'s quick part (the router tries it first): an event that attaches to an
        item this transaction already holds, in the same state (most events of a busy
        group), is attached without a coroutine, `take`'s attach spelled out. None,
        having changed nothing, for any other event: `take` runs."""
        writes = self.repo.writes(ctx.transaction)
        if not writes.gathers:
            return None
        queue = self.queues.queue(queue_name)
        event = stored.event
        key = queue.key_of(event)
        item = writes.held_active(queue.name, key)
        if (item is None or item.event_seq == stored.seq
                or place(queue, event, active=True) is not _ATTACH):
            return None
        item = changes.attach(item, stored.seq, stored.recvtime, queue.title_of(event),
                              queue.priority_of(event))
        if not writes.attached(item, stored.seq):
            return None  # not held in that state: `take` attaches it with statements
        ctx.gathered(Repeats.KEY, Repeats).add(writes, item, stored)  # `repeated`
        self.counters["attached"] += 1
        return {"todo": item.id, "key": key, "attached": True}

    async def take(self, ctx: WriteContext, stored: StoredEvent, route: str,
                   queue_name: str, _in_step: bool = False) -> dict[str, Any]:
        """The router's handler for `queue:<name>` targets; the returned detail is
        recorded with the target hit. Registered as undoing its own work: it takes the
        step a failure must be undone with itself, around what runs statements, so that
        an event attached to a known item (most events of a busy group) takes none:
        nothing before an attach changes anything, and nothing after it raises.
        Without gathered writes it runs again inside a savepoint of its own
        (`_in_step`); with them it runs here, one coroutine per event."""
        writes = self.repo.writes(ctx.transaction)
        if not writes.gathers and not _in_step:
            async with ctx.attempt():
                return await self.take(ctx, stored, route, queue_name, True)
        queue = self.queues.queue(queue_name)
        event = stored.event
        key = queue.key_of(event)
        at = stored.recvtime
        item = writes.held_active(queue.name, key)
        if item is None:
            item = await writes.find_active(queue.name, key)
        if item is not None and item.event_seq == stored.seq:
            # Two routes sent the same event to this queue: it counts once.
            return {"todo": item.id, "key": key, "duplicate_target": True}

        placement = place(queue, event, active=item is not None)
        if placement is _IGNORE:
            return {"key": key, "resolved": None}  # a resolving event never opens an item
        if placement is _ATTACH:
            assert item is not None
            # Decided before the first write: from here on nothing raises, so with
            # gathered writes there is nothing a savepoint would have to undo.
            item = changes.attach(item, stored.seq, at, queue.title_of(event),
                                  queue.priority_of(event))
            if not writes.attached(item, stored.seq):
                await writes.attach(item, stored.seq)
            ctx.gathered(Repeats.KEY, Repeats).add(writes, item, stored)  # `repeated`
            self.counters["attached"] += 1
            return {"todo": item.id, "key": key, "attached": True}
        async with self._savepoint(ctx, writes):
            return await self._change(ctx, writes, stored, queue, key, item, placement)

    def _savepoint(self, ctx: WriteContext, writes: TodoWrites
                   ) -> AbstractAsyncContextManager[None]:
        # Without gathered writes `take` already holds one.
        return ctx.attempt() if writes.gathers else nullcontext()

    async def _change(self, ctx: WriteContext, writes: TodoWrites, stored: StoredEvent,
                      queue: Queue, key: str, item: TodoItem | None, placement: Placement
                      ) -> dict[str, Any]:
        """Resolve the group's item, or open one: state changes, written at once."""
        event = stored.event
        at = stored.recvtime
        if placement is Placement.RESOLVE:
            assert item is not None
            await writes.add_event(item.id, stored.seq)
            note = f"resolved by {event['type']} {event['id']}"
            item = changes.resolve(item, SYSTEM, note, at, auto=True)
            await writes.save(item)
            await changes.record(ctx, writes, item, "resolved", at, operator=SYSTEM, note=note,
                                 cause=stored, event_seq=stored.seq)
            self.counters["resolved_auto"] += 1
            return {"todo": item.id, "key": key, "resolved": True}

        title, priority = queue.title_of(event), queue.priority_of(event)
        silence = await self.silences.matching(ctx, queue.name, key, event, at)
        if silence is not None:
            self.counters["silenced"] += 1
            return {"silenced": silence.id, "key": key}
        item = await writes.insert(queue=queue.name, key=key, title=title, priority=priority,
                                   seq=stored.seq, at=at)
        await changes.record(ctx, writes, item, "opened", at, operator=None, cause=stored,
                             event_seq=stored.seq)
        self.counters["opened"] += 1
        return {"todo": item.id, "key": key, "opened": True}
