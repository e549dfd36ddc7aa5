"""The todos side of quick actions: which actions a queue permits on its items, and the
result of one put on the item (its events and history). The actions feature reaches it
through the `TodoActions` port, so it never touches todo records itself."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from broker.errors import Forbidden, NotFound
from broker.todos import changes
from broker.todos.model import TodoItem
from broker.todos.queues import QueueRegistry
from broker.todos.repository import TodoRepository

if TYPE_CHECKING:
    from broker.bus import StoredEvent, WriteContext


class TodoQuickActions:
    """Implements `broker.ports.TodoActions` over the todo repository."""

    def __init__(self, repo: TodoRepository, queues: QueueRegistry) -> None:
        self.repo = repo
        self.queues = queues

    async def item_for(self, todo_id: int, action: str) -> TodoItem:
        """The item, if its queue permits `action` (NotFound / Forbidden otherwise)."""
        item = await self.repo.get(todo_id)
        if item is None:
            raise NotFound(f"no todo item {todo_id}")
        permitted = [a["name"] for a in self.queues.queue(item.queue).spec.get("actions", [])]
        if action not in permitted:
            raise Forbidden(f"action {action!r} is not permitted on queue {item.queue!r}"
                            f" (permitted: {', '.join(permitted) or 'none'})",
                            permitted=permitted)
        return item

    async def attach_result(self, ctx: WriteContext, todo_id: int, *, action: str,
                            job: int, operator: str | None, params: dict[str, Any] | None,
                            result: StoredEvent, ok: bool) -> None:
        """Put a quick action's result event on the item: its events and its history."""
        writes = self.repo.writes(ctx.transaction)
        item = await writes.lock(todo_id)
        if item is None:
            return
        at = ctx.recvtime
        item = changes.touch(item, at)
        await writes.save(item)
        await writes.add_event(item.id, result.seq)
        data = result.event.get("data")
        status = data.get("status") if isinstance(data, dict) else None
        await changes.record(ctx, writes, item, "actioned", at, operator=operator, cause=result,
                             event_seq=result.seq,
                             detail={"action": action, "job": job, "ok": ok, "status": status,
                                     "params": params})
