"""The actions feature as the broker sees it: the `action` target handler, operator quick
actions on todo items, and job listings for the API."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from broker.actions.kinds import ActionKinds
from broker.actions.model import JobState
from broker.actions.render import RenderError
from broker.actions.repository import JobRepository
from broker.actions.runner import ActionRunner
from broker.actions.spec import ActionRegistry
from broker.dispatcher import DispatchSettings
from broker.errors import BadRequest, Conflict, NotFound, Unavailable
from broker.replayed import is_replay, record_request

if TYPE_CHECKING:
    from broker.bus import Bus, EventLog, StoredEvent, WriteContext
    from broker.clock import Clock
    from broker.config import ConfigObject
    from broker.ports import TodoActions

log = logging.getLogger(__name__)

MAX_QUICK_WAIT_S = 60.0


class ActionService:
    """Owns the action registry and runner of one broker."""

    def __init__(self, *, bus: Bus, repo: JobRepository, events: EventLog, clock: Clock,
                 settings: DispatchSettings, kinds: ActionKinds,
                 environ: Mapping[str, str]) -> None:
        self.bus = bus
        self.repo = repo
        self.events = events
        self.clock = clock
        self.registry = ActionRegistry(environ, clock)
        self.runner = ActionRunner(bus, repo, clock, settings, self.registry, kinds)
        self.todos: TodoActions | None = None
        """The todos feature's side of quick actions (None: no todo queues)."""

    def connect_todos(self, todos: TodoActions) -> None:
        """Quick actions on todo items: permissions and results go through `todos`."""
        self.todos = todos
        self.runner.todos = todos

    def on_config(self, objects: list[ConfigObject]) -> None:
        self.registry.load(objects)

    async def on_target(self, ctx: WriteContext, stored: StoredEvent, route: str,
                        name: str) -> dict[str, Any]:
        """`action:<name>`: a job row in this transaction, run after commit; for a
        replayed event, the request it would make, recorded instead."""
        action = self.registry.get(name)
        if action is None:
            return {"error": f"no action named {name!r}"}
        if is_replay(stored.event):
            request: dict[str, Any] = {"kind": action.kind, "action": name}
            if action.kind == "http":
                try:
                    request = action.render(stored.event).recorded()
                except RenderError as exc:
                    request = {"error": exc.detail}
            seq = await record_request(ctx, stored, source="opsbus/actions",
                                       target=f"action:{name}", request=request)
            return {"recorded": seq}
        job_id = await self.repo.writes(ctx.transaction).add(name, stored.seq,
                                                             self.clock.stamp())
        ctx.on_commit(self.runner.wake)
        return {"job": job_id}

    async def stop(self) -> None:
        await self.runner.stop(self.runner.settings.shutdown_grace_s)

    async def jobs(self, name: str, after: int, limit: int) -> dict[str, Any]:
        if name not in self.registry.by_name:
            raise NotFound(f"no action named {name!r}")
        rows = await self.repo.page(name, after, limit)
        return {"jobs": [j.to_dict() for j in rows],
                "next": rows[-1].id if len(rows) == limit else None}

    # -- quick actions on todo items ------------------------------------------------------
    async def run_on_todo(self, todo_id: int, name: str, operator: str,
                          params: Any, wait_s: float) -> tuple[bool, dict[str, Any]]:
        """Run a queue's permitted action for an item, templated from the item's latest
        event with `params` overriding its fields. Waits up to `wait_s` for the result:
        (finished, {"job", "result"})."""
        todos = self.todos
        if todos is None:
            raise Unavailable("todo queues are not enabled in this broker")
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise BadRequest("params must be an object of field names to values",
                             field="params")
        if not 0 <= wait_s <= MAX_QUICK_WAIT_S:
            raise BadRequest(f"wait_s must be between 0 and {MAX_QUICK_WAIT_S:g}")
        item = await todos.item_for(todo_id, name)
        if self.registry.get(name) is None:
            raise Conflict(f"queue {item.queue!r} permits action {name!r}, but no action"
                           " with that name is configured")
        job_id = await self.bus.run(lambda ctx: self.repo.writes(ctx.transaction).add(
            name, item.event_seq, self.clock.stamp(), params=params, todo_id=item.id,
            operator=operator))
        future = self.runner.waiter(job_id)
        self.runner.wake()
        try:
            job = await self.clock.within(asyncio.shield(future), wait_s)
        except TimeoutError:
            self.runner.forget_waiter(job_id)
            current = await self.repo.get(job_id)
            if current is None or current.state not in (JobState.SUCCEEDED, JobState.FAILED):
                return False, {"job": current.to_dict() if current else {"id": job_id}}
            job = current
        result = await self.events.get(job.result_seq) if job.result_seq else None
        return True, {"job": job.to_dict(), "result": result.to_dict() if result else None}
