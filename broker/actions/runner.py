"""The action runner: claims due action jobs, makes the call (or hands it to a plugin
kind), and publishes the outcome as `opsbus.action.succeeded` / `opsbus.action.failed`
caused by the triggering event, in the same write that settles the job."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from broker.actions.kinds import ActionKinds
from broker.actions.model import ActionJob, ClaimedJob, JobState
from broker.actions.render import RenderError
from broker.actions.repository import JobRepository
from broker.actions.spec import Action, ActionRegistry
from broker.backoff import backoff_delay
from broker.dispatcher import DispatchSettings, StoreDispatcher
from broker.errors import OpsbusError
from broker.events import new_event
from broker.outbound import OutboundResult, send
from broker.timeutil import later

if TYPE_CHECKING:
    from broker.bus import Bus, WriteContext
    from broker.clock import Clock
    from broker.ports import TodoActions

log = logging.getLogger(__name__)

SUCCEEDED = "opsbus.action.succeeded"
FAILED = "opsbus.action.failed"
BODY_LIMIT = 16 * 1024
LEASE_MARGIN_S = 60.0
"""A running job outlives twice the longest timeout by this much (rate-limit waits
included) before a crashed runner's job is taken over."""



def plugin_outcome(raw: Any, latency_ms: float) -> tuple[OutboundResult, dict[str, Any]]:
    """A plugin kind's `{"ok", "status", "body", "error", "request"}` as a result."""
    doc: dict[str, Any] = (
        raw if isinstance(raw, dict) else {"ok": False, "error": "the plugin returned nothing"}
    )
    status = doc.get("status") if isinstance(doc.get("status"), int) else None
    body = doc.get("body")
    text = body if isinstance(body, str) else ("" if body is None else str(body))
    ok = bool(doc.get("ok"))
    error = None if ok else str(doc.get("error") or "the plugin reported a failure")
    result = OutboundResult(status, latency_ms, text[:BODY_LIMIT], len(text) > BODY_LIMIT,
                            error=error, refused=not ok and not doc.get("retryable", False),
                            succeeded=ok)
    raw_request = doc.get("request")
    request: dict[str, Any] = raw_request if isinstance(raw_request, dict) else {}
    return result, request


class ActionRunner(StoreDispatcher):
    """Runs action jobs from the store with bounded concurrency."""

    def __init__(self, bus: Bus, repo: JobRepository, clock: Clock, settings: DispatchSettings,
                 registry: ActionRegistry, kinds: ActionKinds) -> None:
        super().__init__(bus, clock, settings)
        self.repo = repo
        self.registry = registry
        self.kinds = kinds
        self.todos: TodoActions | None = None
        """Where a quick action's result goes on its item (the todos feature, if any)."""
        self._waiters: dict[int, asyncio.Future[ActionJob]] = {}

    def forget_waiter(self, job_id: int) -> None:
        """Nobody waits for this job any more (its caller timed out)."""
        self._waiters.pop(job_id, None)

    def waiter(self, job_id: int) -> asyncio.Future[ActionJob]:
        """A future resolved with the job once it has succeeded or failed."""
        future = self._waiters.get(job_id)
        if future is None:
            future = self._waiters[job_id] = asyncio.get_running_loop().create_future()
        return future

    async def _pass(self) -> float:
        poll = self.settings.poll_s
        room = self.settings.concurrency - len(self._tasks)
        if room <= 0 or self._stopping:
            return poll
        due = await self.repo.next_due()
        if due is None:
            return poll
        if due > self.clock.stamp():
            return min(poll, self.clock.seconds_until(due))
        # Jobs run for the longest timeout any action has, plus a margin, before
        # another runner (after a crash) may take them over.
        longest = max((a.timeout for a in self.registry.by_name.values()), default=10.0)
        try:
            claimed = await self.bus.run(
                lambda ctx: self.repo.writes(ctx.transaction).claim(
                    room, self.clock.stamp(), longest * 2 + LEASE_MARGIN_S))
        except OpsbusError as exc:
            log.warning("could not claim action jobs: %s", exc.detail)
            return poll
        for item in claimed:
            self._spawn(self._execute(item), f"action-job-{item.job.id}")
        return 0 if len(claimed) == room else poll

    async def _execute(self, claimed: ClaimedJob) -> None:
        try:
            action = self.registry.get(claimed.job.action)
            request: dict[str, Any] = {}
            if action is None:
                result = OutboundResult(None, 0.0, error="the action no longer exists",
                                        refused=True)
            else:
                result, request = await self._call(action, claimed)
            await self._settle(action, claimed, result, request)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("action job %s failed unexpectedly", claimed.job.id)
        finally:
            self._wake.set()

    async def _call(self, action: Action, claimed: ClaimedJob
                    ) -> tuple[OutboundResult, dict[str, Any]]:
        event = claimed.event.event
        params = claimed.job.params
        if action.problem:
            return OutboundResult(None, 0.0, error=action.problem, refused=True), {}
        if action.limiter is not None:
            await action.limiter.acquire()
        if action.kind != "http":
            run = self.kinds.get(action.kind)
            if run is None:
                return OutboundResult(None, 0.0, error=f"no plugin provides action kind "
                                      f"{action.kind!r}", refused=True), {}
            spec = {**action.spec, "params": params or {}}
            started = time.perf_counter()
            try:
                raw = await asyncio.wait_for(run(spec, event), action.timeout)
            except TimeoutError:
                raw = {"ok": False, "error": f"timed out after {action.timeout:g}s",
                       "retryable": True}
            except Exception as exc:  # a plugin's bug is this job's failure, not ours
                raw = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            return plugin_outcome(raw, round((time.perf_counter() - started) * 1000, 2))
        try:
            outbound = action.render(event, params)
        except RenderError as exc:
            return OutboundResult(None, 0.0, error=exc.detail, refused=True), {}
        assert self._session is not None
        result = await send(self._session, outbound, timeout=action.timeout, now=self.clock.epoch,
                            body_limit=BODY_LIMIT)
        return result, {"method": outbound.method, "url": outbound.url}

    async def _settle(self, action: Action | None, claimed: ClaimedJob,
                      result: OutboundResult, request: dict[str, Any]) -> None:
        job = claimed.job
        retries = action.retries if action else 0
        if not result.ok and result.retryable and job.attempts <= retries:
            assert action is not None
            delay = backoff_delay(job.attempts, action.retry_backoff)
            if result.retry_after is not None:
                delay = max(delay, result.retry_after)
            self.stats["retried"] += 1
            now = self.clock.stamp()
            await self._write(lambda ctx: self.repo.writes(ctx.transaction).finish(
                job.id, job.lease or "", JobState.PENDING, now,
                next_at=later(now, delay), error=result.error))
            return
        kind = action.kind if action else None
        data: dict[str, Any] = {
            "action": job.action, "kind": kind, "job": job.id, "ok": result.ok,
            "status": result.status, "latency_ms": result.latency_ms,
            "attempts": job.attempts, "request": request,
            "response": None if result.status is None else {
                "body": result.body, "truncated": result.truncated,
                "content_type": result.content_type},
            "error": result.error,
        }
        if job.todo_id is not None:
            data.update(todo=job.todo_id, operator=job.operator, params=job.params)
        state = JobState.SUCCEEDED if result.ok else JobState.FAILED
        self.stats[state.value] += 1
        outcome = new_event(type=SUCCEEDED if result.ok else FAILED, source="opsbus/actions",
                            time=self.clock.stamp(),
                            subject=job.action, data=data)

        async def write(ctx: WriteContext) -> ActionJob | None:
            # An operator's quick action starts a budget of its own (like a re-emit).
            # The request and response bodies are the broker's record of the call:
            # elided, not refused, when they make the result too large.
            published = await ctx.publish(outcome, cause=claimed.event,
                                          fresh_root=job.operator is not None, elide=True)
            stored = published.stored
            finished = await self.repo.writes(ctx.transaction).finish(
                job.id, job.lease or "", state, self.clock.stamp(),
                result_seq=stored.seq if stored else None, error=result.error)
            if (finished is not None and stored is not None and job.todo_id is not None
                    and self.todos is not None):
                await self.todos.attach_result(
                    ctx, job.todo_id, action=job.action, job=job.id, operator=job.operator,
                    params=job.params, result=stored, ok=result.ok)
            return finished

        finished = await self._write(write)
        if finished is not None:
            future = self._waiters.pop(job.id, None)
            if future is not None and not future.done():
                future.set_result(finished)

    async def _write(self, fn: Callable[[WriteContext], Awaitable[ActionJob | None]]
                     ) -> ActionJob | None:
        try:
            return await self.bus.run(fn)
        except OpsbusError as exc:  # shutting down: the lease expires, the job runs again
            log.warning("action job not recorded: %s", exc.detail)
            return None
