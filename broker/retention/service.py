"""The retention service: removes old events in small batches off the hot path.

Each pass (every `maintenance_interval_s` on the broker's clock) does three things, each
as short write transactions through the bus's writer, so publishers only ever wait for
one batch:

1. advance the cut: examine the oldest events after it and remove those past their
   age, or past the count or size limit; events something still needs (decided by the
   backend inside the removing transaction) and events a per-type rule keeps longer are
   passed over and stay below the cut;
2. recheck a batch of the events left below the cut, whose reason to stay may be gone;
3. per-type rules shorter than the default: remove their expired events above the cut.

Then it hands freed pages back to the file system and publishes
`opsbus.retention.applied` with the counts."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from broker.events import new_event
from broker.retention.policy import Candidate, RetentionPolicy
from broker.retention.repository import Removal, RetentionRepository

if TYPE_CHECKING:
    from broker.bus.context import WriteContext
    from broker.bus.writer import Bus
    from broker.clock import Clock
    from broker.wiring import Wiring

log = logging.getLogger(__name__)

APPLIED_TYPE = "opsbus.retention.applied"
SOURCE = "opsbus/retention"
MAX_STEPS = 50
"""Batches one pass removes at most (the next pass goes on)."""
RECLAIM_PAGES = 4096
"""Free pages handed back to the file system per step (16 MiB at 4 KiB pages)."""


@dataclass
class Tally:
    """What one pass did."""

    removed: int = 0
    needed: int = 0
    by_age: int = 0
    by_limit: int = 0

    def add(self, removal: Removal) -> None:
        self.removed += removal.removed
        self.needed += removal.needed


class Retention:
    """Applies a `RetentionPolicy` to the event log."""

    def __init__(self, *, bus: Bus, repo: RetentionRepository, clock: Clock,
                 policy: RetentionPolicy, interval_s: float) -> None:
        self.bus = bus
        self.repo = repo
        self.clock = clock
        self.policy = policy
        self.interval_s = interval_s
        self.removed_total = 0
        self.needed_total = 0
        self.passes = 0
        self.retained_from = 1
        self._recheck_after = 0
        self._short_after = 0

    async def run(self) -> None:
        while True:
            await self.clock.sleep(self.interval_s)
            try:
                await self.apply()
            except Exception:  # the next pass tries again; never kill the service
                log.exception("retention pass failed")

    # -- one pass ----------------------------------------------------------------------
    async def apply(self) -> Tally:
        """One retention pass; publishes `opsbus.retention.applied` if it removed any."""
        tally = Tally()
        if not self.policy.active:
            return tally
        for _ in range(MAX_STEPS):
            if not await self._advance(tally):
                break
            await self._reclaim()
        await self._recheck(tally)
        await self._short_rules(tally)
        if tally.removed:
            await self._reclaim()
        self.passes += 1
        self.removed_total += tally.removed
        self.needed_total += tally.needed
        self.retained_from = await self.repo.cut() + 1
        if tally.removed:
            await self._announce(tally)
        return tally

    def _older(self, row: Candidate, age_s: float | None, cache: dict[float, str]) -> bool:
        """`row` was received more than `age_s` ago (False for None: no limit)."""
        if age_s is None:
            return False
        stamp = cache.get(age_s)
        if stamp is None:
            stamp = cache[age_s] = self.clock.stamp(-age_s)
        return row.recvtime < stamp

    async def _over(self) -> tuple[int, bool]:
        """(events over the count limit, over the size limit) right now."""
        p = self.policy
        if not (p.max_events or p.max_bytes):
            return 0, False
        usage = await self.repo.usage(count=bool(p.max_events), size=bool(p.max_bytes))
        over = max(0, usage.events - p.max_events) if p.max_events else 0
        return over, bool(p.max_bytes) and usage.bytes > p.max_bytes

    def _choose(self, rows: list[Candidate], over: int, over_bytes: bool, tally: Tally,
                cache: dict[float, str]) -> tuple[list[int], int | None]:
        """(seqs to remove, last seq the cut may pass) for rows oldest first."""
        p = self.policy
        chosen: list[int] = []
        passed: int | None = None
        for row in rows:
            if self._older(row, p.age_of(row.type), cache):
                chosen.append(row.seq)
                tally.by_age += 1
                passed = row.seq
                continue
            pressed = (over > 0 or over_bytes) and self._older(row, p.resume_window_s, cache)
            if pressed and not p.kept_longer(row.type):
                chosen.append(row.seq)
                tally.by_limit += 1
                over -= 1
                passed = row.seq
                continue
            if p.kept_longer(row.type) and (pressed or self._older(row, p.max_age_s, cache)):
                passed = row.seq  # its own rule keeps it: it stays below the cut
                continue
            break
        return chosen, passed

    async def _remove(self, seqs: list[int], cut: int | None) -> Removal:
        async def unit(ctx: WriteContext) -> Removal:
            return await self.repo.writes(ctx.transaction).remove(seqs, cut)

        return await self.bus.run(unit, size=max(1, len(seqs) // 100))

    async def _advance(self, tally: Tally) -> bool:
        cut = await self.repo.cut()
        rows = await self.repo.scan(cut, self.policy.batch)
        if not rows:
            return False
        over, over_bytes = await self._over()
        chosen, passed = self._choose(rows, over, over_bytes, tally, {})
        if passed is None:
            return False
        tally.add(await self._remove(chosen, passed))
        return True

    async def _recheck(self, tally: Tally) -> None:
        cut = await self.repo.cut()
        rows = await self.repo.scan(self._recheck_after, self.policy.batch, upto=cut)
        if not rows:
            self._recheck_after = 0
            return
        self._recheck_after = rows[-1].seq
        over, over_bytes = await self._over()
        p = self.policy
        cache: dict[float, str] = {}
        chosen = [r.seq for r in rows if self._older(r, p.age_of(r.type), cache)
                  or ((over > 0 or over_bytes) and not p.kept_longer(r.type)
                      and self._older(r, p.resume_window_s, cache))]
        if chosen:
            tally.add(await self._remove(chosen, None))

    async def _short_rules(self, tally: Tally) -> None:
        p = self.policy
        shortest = p.shortest_age_s
        if not p.types or shortest is None or shortest == p.max_age_s:
            return
        cache: dict[float, str] = {}
        self._short_after = max(self._short_after, await self.repo.cut())
        for _ in range(MAX_STEPS):
            rows = await self.repo.scan(self._short_after, p.batch)
            young = next((i for i, r in enumerate(rows)
                          if not self._older(r, shortest, cache)), len(rows))
            rows = rows[:young]
            if not rows:
                return
            self._short_after = rows[-1].seq
            chosen = [r.seq for r in rows if self._older(r, p.age_of(r.type), cache)]
            if chosen:
                tally.by_age += len(chosen)
                tally.add(await self._remove(chosen, None))

    async def _reclaim(self) -> None:
        async def unit(ctx: WriteContext) -> int:
            return await self.repo.writes(ctx.transaction).reclaim(RECLAIM_PAGES)

        await self.bus.run(unit)

    async def _announce(self, tally: Tally) -> None:
        data: dict[str, Any] = {
            "removed": tally.removed, "removed_by_age": tally.by_age,
            "removed_by_limit": tally.by_limit, "kept_needed": tally.needed,
            "retained_from": self.retained_from}
        event = new_event(type=APPLIED_TYPE, source=SOURCE, time=self.clock.stamp(),
                          data=data)

        async def unit(ctx: WriteContext) -> None:
            await ctx.publish(event)

        await self.bus.run(unit)

    def wire(self, wiring: Wiring) -> None:
        metrics = wiring.metrics
        metrics.sampled("opsbus_retention_removed_total",
                        "Events retention removed.", "counter", lambda: self.removed_total)
        metrics.sampled("opsbus_retention_kept_needed_total",
                        "Events retention would have removed but kept because an unresolved"
                        " item, an open delivery or a pending action job needs them (counted"
                        " at each examination).", "counter", lambda: self.needed_total)
        metrics.sampled("opsbus_retention_passes_total", "Retention passes run.", "counter",
                        lambda: self.passes)
        metrics.sampled("opsbus_retention_retained_from",
                        "The seq the retained log starts at: below it, only events something"
                        " still needs or a longer per-type rule keeps.", "gauge",
                        lambda: self.retained_from)
        if self.policy.active:
            wiring.service("retention", self.run)
