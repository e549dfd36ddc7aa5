"""Read models for the API: queue overviews, pages of items and one item in full."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from broker.errors import BadRequest, NotFound
from broker.store.base_todos import TODO_VIEWS, QueueCounts
from broker.timeutil import seconds_between

if TYPE_CHECKING:
    from broker.todos.service import TodoService


def _age_s(since: str | None, at: str) -> float | None:
    if since is None:
        return None
    return round(max(0.0, seconds_between(since, at)), 3)


async def queue_overview(service: TodoService) -> list[dict[str, Any]]:
    """Every configured queue and every queue holding items, by name, with counts."""
    at = service.clock.stamp()
    counts = {c.name: c for c in await service.broker.store.queue_counts(at)}
    configured = {o.name: o for o in service.broker.config.list("queues")}
    out = []
    for name in sorted(set(counts) | set(configured)):
        c = counts.get(name) or QueueCounts(name, 0, 0, 0, 0, None)
        obj = configured.get(name)
        spec = obj.spec if obj is not None else service.queue(name).spec
        out.append({
            **spec, "configured": obj is not None,
            "origin": obj.origin if obj is not None else None,
            "open": c.open, "claimed": c.claimed, "snoozed": c.snoozed,
            "resolved": c.resolved, "oldest_open_age_s": _age_s(c.oldest_open, at),
        })
    return out


async def queue_info(service: TodoService, name: str) -> dict[str, Any]:
    for queue in await queue_overview(service):
        if queue["name"] == name:
            return queue
    raise NotFound(f"no queue named {name!r} (neither configured nor holding items)")


def parse_cursor(text: str | None) -> tuple[str, int] | None:
    """`after` for the next page: `<updated_at>|<id>` as handed out in `next`."""
    if not text:
        return None
    at, sep, ident = text.rpartition("|")
    if not sep or not ident.isdigit():
        raise BadRequest(f"after {text!r} is not a cursor from a previous page's next",
                         parameter="after")
    return at, int(ident)


async def list_items(service: TodoService, *, queue: str | None = None,
                     state: str | None = None, owner: str | None = None, limit: int = 100,
                     after: str | None = None) -> dict[str, Any]:
    """A page of items, newest activity first: `{"items": [...], "next": cursor|null}`."""
    if state is not None and state not in TODO_VIEWS:
        raise BadRequest(f"state must be one of {', '.join(TODO_VIEWS)}, got {state!r}",
                         parameter="state")
    items = await service.broker.store.list_todos(
        now=service.clock.stamp(), queue=queue, view=state, owner=owner, limit=limit + 1,
        after=parse_cursor(after))
    more = len(items) > limit
    items = items[:limit]
    cursor = f"{items[-1].updated_at}|{items[-1].id}" if more and items else None
    return {"items": [i.to_dict() for i in items], "next": cursor}


async def item_detail(service: TodoService, todo_id: int) -> dict[str, Any]:
    """The item with its events, history and its queue's quick actions."""
    store = service.broker.store
    item = await store.get_todo(todo_id)
    if item is None:
        raise NotFound(f"no todo item {todo_id}")
    return {
        **item.to_dict(),
        "events": [e.to_dict() for e in await store.todo_events(todo_id)],
        "history": [h.to_dict() for h in await store.todo_history(todo_id)],
        "actions": service.queue(item.queue).spec.get("actions", []),
    }
