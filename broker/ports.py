"""Typed ports between features: what one feature needs from another, stated as a
protocol the composition root (`broker.core`) satisfies with the other feature's
component. A feature imports a port, never the other feature's internals."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from broker.bus import StoredEvent, WriteContext
    from broker.todos.model import TodoItem


class TodoActions(Protocol):
    """What quick actions (the actions feature) need from todo items (the todos feature)."""

    async def item_for(self, todo_id: int, action: str) -> TodoItem:
        """The item, if its queue permits `action`; NotFound or Forbidden otherwise."""
        ...

    async def attach_result(self, ctx: WriteContext, todo_id: int, *, action: str,
                            job: int, operator: str | None, params: dict[str, Any] | None,
                            result: StoredEvent, ok: bool) -> None:
        """Put the action's result event on the item, in the result's transaction."""
        ...
