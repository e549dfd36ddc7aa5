"""The todo sweeper: returns claims whose lease ran out and wakes snoozed items, on the
clock, each change written and announced like any other."""

from __future__ import annotations

import logging
from collections import Counter
from typing import TYPE_CHECKING

from broker.errors import OpsbusError
from broker.todos import changes
from broker.todos.changes import SYSTEM
from broker.todos.queues import QueueRegistry
from broker.todos.repository import TodoRepository

if TYPE_CHECKING:
    from broker.bus import Bus, WriteContext
    from broker.clock import Clock

log = logging.getLogger(__name__)

MIN_INTERVAL_S = 0.05


class TodoSweeper:
    """A background service: looks for lapsed leases and ended snoozes on its interval."""

    def __init__(self, bus: Bus, repo: TodoRepository, queues: QueueRegistry, clock: Clock,
                 interval_s: float, counters: Counter[str]) -> None:
        self.bus = bus
        self.repo = repo
        self.queues = queues
        self.clock = clock
        self.interval_s = interval_s
        self.counters = counters

    def interval(self) -> float:
        """The setting, shortened for queues whose lease is under four of it."""
        shortest = self.queues.shortest_lease()
        limit = self.interval_s if shortest is None else min(self.interval_s, shortest / 4)
        return max(MIN_INTERVAL_S, limit)

    async def run(self) -> None:
        while True:
            await self.clock.sleep(self.interval())
            try:
                if await self.repo.due(self.clock.stamp()):
                    await self.bus.run(self.sweep)
            except OpsbusError as exc:  # e.g. stopping; try again next round
                log.debug("sweep skipped: %s", exc.detail)

    async def sweep(self, ctx: WriteContext) -> int:
        """Return claims whose lease ran out to open and end snoozes that ran out."""
        at = self.clock.stamp()
        writes = self.repo.writes(ctx.transaction)
        done = 0
        for item in await writes.expired_claims(at):
            owner = item.owner
            item = changes.lapse(item, at)
            await writes.save(item)
            await changes.record(ctx, writes, item, "released", at, operator=SYSTEM,
                                 note=f"lease expired (claimed by {owner})",
                                 detail={"lease_expired": True, "previous_owner": owner})
            self.counters["lease_expired"] += 1
            done += 1
        for item in await writes.ended_snoozes(at):
            item = changes.wake(item, at)
            await writes.save(item)
            await changes.record(ctx, writes, item, "updated", at, operator=SYSTEM,
                                 note="snooze ended", detail={"unsnoozed": True})
            done += 1
        return done
