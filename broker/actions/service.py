"""The actions feature as the broker sees it: the `action` target handler, operator quick
actions on todo items, and job listings for the API."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from broker.actions.render import RenderError
from broker.actions.runner import ActionRunner
from broker.actions.spec import ActionRegistry
from broker.delivery.effects import is_replay, record_request
from broker.errors import BadRequest, Conflict, Forbidden, NotFound, Unavailable
from broker.store.base_delivery import ActionJob, JobState
from broker.store.records import ConfigObject, StoredEvent

if TYPE_CHECKING:
    from broker.bus import WriteContext
    from broker.core import Broker

log = logging.getLogger(__name__)

MAX_QUICK_WAIT_S = 60.0


class ActionService:
    """Owns the action registry and runner of one broker."""

    def __init__(self, broker: Broker, environ: Mapping[str, str]) -> None:
        self.broker = broker
        self.clock = broker.clock
        self.registry = ActionRegistry(environ, broker.clock)
        self.runner = ActionRunner(broker, self.registry)
        self.runner.on_result.append(self._attach_to_todo)

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
        job_id = await ctx.tx.add_action_job(name, stored.seq, self.clock.stamp())
        ctx.on_commit(self.runner.wake)
        return {"job": job_id}

    async def stop(self) -> None:
        await self.runner.stop(self.broker.settings.shutdown_grace_s)

    async def jobs(self, name: str, after: int, limit: int) -> dict[str, Any]:
        self.broker.config.get("actions", name)
        rows = await self.broker.store.list_action_jobs(name, after, limit)
        return {"jobs": [j.to_dict() for j in rows],
                "next": rows[-1].id if len(rows) == limit else None}

    # -- quick actions on todo items ------------------------------------------------------
    async def run_on_todo(self, todo_id: int, name: str, operator: str,
                          params: Any, wait_s: float) -> tuple[bool, dict[str, Any]]:
        """Run a queue's permitted action for an item, templated from the item's latest
        event with `params` overriding its fields. Waits up to `wait_s` for the result:
        (finished, {"job", "result"})."""
        todos = self.broker.extensions.get("todos")
        if todos is None:
            raise Unavailable("todo queues are not enabled in this broker")
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise BadRequest("params must be an object of field names to values",
                             field="params")
        if not 0 <= wait_s <= MAX_QUICK_WAIT_S:
            raise BadRequest(f"wait_s must be between 0 and {MAX_QUICK_WAIT_S:g}")
        item = await self.broker.store.get_todo(todo_id)
        if item is None:
            raise NotFound(f"no todo item {todo_id}")
        permitted = [a["name"] for a in todos.queue(item.queue).spec.get("actions", [])]
        if name not in permitted:
            raise Forbidden(f"action {name!r} is not permitted on queue {item.queue!r}"
                            f" (permitted: {', '.join(permitted) or 'none'})",
                            permitted=permitted)
        if self.registry.get(name) is None:
            raise Conflict(f"queue {item.queue!r} permits action {name!r}, but no action"
                           " with that name is configured")
        job_id = await self.broker.bus.run(lambda ctx: ctx.tx.add_action_job(
            name, item.event_seq, self.clock.stamp(), params=params, todo_id=item.id,
            operator=operator))
        future = self.runner.waiter(job_id)
        self.runner.wake()
        try:
            job = await self.clock.within(asyncio.shield(future), wait_s)
        except TimeoutError:
            self.runner._waiters.pop(job_id, None)
            current = await self.broker.store.get_action_job(job_id)
            if current is None or current.state not in (JobState.SUCCEEDED, JobState.FAILED):
                return False, {"job": current.to_dict() if current else {"id": job_id}}
            job = current
        result = await self.broker.store.get_event(job.result_seq) if job.result_seq else None
        return True, {"job": job.to_dict(), "result": result.to_dict() if result else None}

    async def _attach_to_todo(self, ctx: WriteContext, job: ActionJob,
                              result: StoredEvent) -> None:
        """Put a quick action's result on the item: its events and its history."""
        if job.todo_id is None:
            return
        from broker.todos import changes

        item = await ctx.tx.lock_todo(job.todo_id)
        if item is None:
            return
        at = self.clock.stamp()
        item = changes.touch(item, at)
        await ctx.tx.save_todo(item)
        await ctx.tx.add_todo_event(item.id, result.seq)
        await changes.record(
            ctx, item, "actioned", at, operator=job.operator, cause=result,
            event_seq=result.seq,
            detail={"action": job.action, "job": job.id, "ok": result.type.endswith("succeeded"),
                    "status": result.event.get("data", {}).get("status"),
                    "params": job.params})
