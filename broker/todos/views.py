"""Read models for the API: queue overviews, pages of items and one item in full. They
read the todo repository and the queue registry, at the clock's now."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from broker.errors import BadRequest, NotFound
from broker.numbers import NumberError, whole_number
from broker.timeutil import seconds_between
from broker.todos.model import TODO_VIEWS, QueueCounts

if TYPE_CHECKING:
    from broker.clock import Clock
    from broker.todos.queues import QueueRegistry
    from broker.todos.repository import TodoRepository


class TodoViews:
    """What the API shows of queues and items."""

    def __init__(self, repo: TodoRepository, queues: QueueRegistry, clock: Clock) -> None:
        self.repo = repo
        self.queues = queues
        self.clock = clock


def _age_s(since: str | None, at: str) -> float | None:
    if since is None:
        return None
    return round(max(0.0, seconds_between(since, at)), 3)


async def queue_overview(views: TodoViews) -> list[dict[str, Any]]:
    """Every configured queue and every queue holding items, by name, with counts."""
    at = views.clock.stamp()
    counts = {c.name: c for c in await views.repo.queue_counts(at)}
    configured = views.queues.objects
    out = []
    for name in sorted(set(counts) | set(configured)):
        c = counts.get(name) or QueueCounts(name, 0, 0, 0, 0, None)
        obj = configured.get(name)
        spec = obj.spec if obj is not None else views.queues.queue(name).spec
        out.append({
            **spec, "configured": obj is not None,
            "origin": obj.origin if obj is not None else None,
            "open": c.open, "claimed": c.claimed, "snoozed": c.snoozed,
            "resolved": c.resolved, "oldest_open_age_s": _age_s(c.oldest_open, at),
        })
    return out


async def queue_info(views: TodoViews, name: str) -> dict[str, Any]:
    for queue in await queue_overview(views):
        if queue["name"] == name:
            return queue
    raise NotFound(f"no queue named {name!r} (neither configured nor holding items)")


def parse_cursor(text: str | None) -> tuple[str, int] | None:
    """`after` for the next page: `<updated_at>|<id>` as handed out in `next`."""
    if not text:
        return None
    at, sep, ident = text.rpartition("|")
    try:
        if not sep:
            raise NumberError("has no '|'")
        return at, whole_number(ident)
    except NumberError:
        shown = text if len(text) <= 60 else f"{text[:40]}… ({len(text)} characters)"
        raise BadRequest(f"after {shown!r} is not a cursor from a previous page's next",
                         parameter="after") from None


async def list_items(views: TodoViews, *, queue: str | None = None,
                     state: str | None = None, owner: str | None = None, limit: int = 100,
                     after: str | None = None) -> dict[str, Any]:
    """A page of items, newest activity first: `{"items": [...], "next": cursor|null}`."""
    if state is not None and state not in TODO_VIEWS:
        raise BadRequest(f"state must be one of {', '.join(TODO_VIEWS)}, got {state!r}",
                         parameter="state")
    items = await views.repo.page(
        now=views.clock.stamp(), queue=queue, view=state, owner=owner, limit=limit + 1,
        after=parse_cursor(after))
    more = len(items) > limit
    items = items[:limit]
    cursor = f"{items[-1].updated_at}|{items[-1].id}" if more and items else None
    return {"items": [i.to_dict() for i in items], "next": cursor}


async def item_detail(views: TodoViews, todo_id: int) -> dict[str, Any]:
    """The item with its events, history and its queue's quick actions."""
    item = await views.repo.get(todo_id)
    if item is None:
        raise NotFound(f"no todo item {todo_id}")
    return {
        **item.to_dict(),
        "events": [e.to_dict() for e in await views.repo.events(todo_id)],
        "history": [h.to_dict() for h in await views.repo.history(todo_id)],
        "actions": views.queues.queue(item.queue).spec.get("actions", []),
    }
