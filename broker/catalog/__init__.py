"""The event catalog: per (source, type), when it was first and last seen, how often it
arrives, and the shape of its `data` as inferred from what arrived.

The tracker learns from every committed batch in memory (after COMMIT, off the
transaction). When a producer's shape drifts — a field added, removed or retyped — or it
stops arriving for longer than its usual gap times `catalog_silence_factor`, the catalog
publishes `opsbus.catalog.changed` with the difference, and writes its entries in that
same transaction; otherwise it flushes them every `catalog_interval_s` on the clock
(when it also looks for silent producers) and at stop. Its records are `model`, its
repository contract `repository`; the backends implement the latter.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from broker.catalog.model import CHANGED, SOURCE, CatalogEntry
from broker.catalog.tracker import CatalogSettings, Drift, Tracker
from broker.errors import OpsbusError
from broker.events import new_event

if TYPE_CHECKING:
    from broker.bus import Bus, StoredEvent, WriteContext
    from broker.catalog.repository import CatalogRepository
    from broker.clock import Clock
    from broker.wiring import Wiring

__all__ = ["CHANGED", "SOURCE", "Catalog", "CatalogEntry", "CatalogSettings"]

log = logging.getLogger(__name__)


class Catalog:
    """The catalog feature, built from what it uses."""

    def __init__(self, *, bus: Bus, repo: CatalogRepository, clock: Clock,
                 settings: CatalogSettings) -> None:
        self.bus = bus
        self.repo = repo
        self.clock = clock
        self.settings = settings
        self.tracker = Tracker(settings)
        self._drifts: list[Drift] = []
        self._writing: asyncio.Task[None] | None = None
        self._one_write = asyncio.Lock()
        """A write takes what is pending and gives it back as stored when it commits:
        one at a time, or two would write the same counts."""
        self.announced = 0
        """`opsbus.catalog.changed` events published."""

    def wire(self, wiring: Wiring) -> None:
        if not self.settings.enabled:
            return
        wiring.on_start(self.load)
        wiring.after_commit(self.observe)
        wiring.service("catalog", self.run)
        wiring.on_stop(self.flush)
        metrics = wiring.metrics
        metrics.sampled("opsbus_catalog_entries", "(source, type) pairs in the event catalog.",
                        "gauge", lambda: len(self.tracker))
        metrics.sampled("opsbus_catalog_untracked_events_total",
                        "Events not catalogued: their (source, type) came after"
                        " catalog_max_entries pairs.", "counter",
                        lambda: self.tracker.untracked)
        metrics.sampled("opsbus_catalog_changes_total",
                        "opsbus.catalog.changed events published (drift, silence).",
                        "counter", lambda: self.announced)

    # -- reads -------------------------------------------------------------------------
    def entries(self) -> list[dict[str, Any]]:
        """Every entry in the API form, without shapes, by source and type."""
        now = self.clock.epoch()
        return [self._doc(e, now, shape=False)
                for e in sorted(self.tracker.entries(), key=lambda e: (e.source, e.type))]

    def entry(self, source: str, type_: str) -> dict[str, Any] | None:
        """One entry in the API form, with its shape; None when not catalogued."""
        found = self.tracker.entry(source, type_)
        return None if found is None else self._doc(found, self.clock.epoch(), shape=True)

    def _doc(self, entry: CatalogEntry, now: float, *, shape: bool) -> dict[str, Any]:
        last = self.tracker.last_epoch(entry.source, entry.type)
        return entry.to_dict(0.0 if last is None else now - last, shape=shape)

    def conforms(self, event: dict[str, Any]) -> bool:
        """The `CONFORMS()` filter function: the event's data fits its learned shape."""
        return self.tracker.conforms(event)

    # -- the write side ----------------------------------------------------------------
    async def load(self) -> None:
        self.tracker.load(await self.repo.entries())

    def observe(self, committed: list[StoredEvent]) -> None:
        """Learn from a committed batch (the writer calls this after COMMIT)."""
        if not committed:
            return
        drifts = self.tracker.observe(committed, self.clock.epoch())
        if drifts:
            self._drifts.extend(drifts)
            self._write_soon()

    def _write_soon(self) -> None:
        if self._writing is None or self._writing.done():
            self._writing = asyncio.ensure_future(self._write_now())

    async def _write_now(self) -> None:
        try:
            async with self._one_write:
                await self.bus.run(self._write)
        except OpsbusError as exc:  # stopping: the stop hook flushes what is left
            log.warning("catalog not written: %s", exc.detail)

    async def run(self) -> None:
        """Look for silent producers and flush, every catalog_interval_s on the clock."""
        while True:
            await self.clock.sleep(self.settings.interval_s)
            silent = self.tracker.silences(self.clock.epoch())
            self._drifts.extend(silent)
            if self._drifts or self.tracker.pending():
                await self._write_now()
            try:  # what other processes sharing the store catalogued
                self.tracker.adopt(await self.repo.entries())
            except Exception:  # a store hiccup must not end the loop: next round
                log.exception("could not read the stored catalog")

    async def flush(self) -> None:
        """Write what is pending (at stop, before the writer drains)."""
        if self._writing is not None:
            await asyncio.gather(self._writing, return_exceptions=True)
        if self._drifts or self.tracker.pending():
            await self._write_now()

    async def _write(self, ctx: WriteContext) -> None:
        """Announce the drifts and merge the entries into the store, in one transaction."""
        drifts, self._drifts = self._drifts, []
        try:
            for drift in drifts:
                await ctx.publish(announcement(drift, ctx.recvtime), cause=drift.cause,
                                  elide=True)
            sent = self.tracker.pending()
            stored = await self.repo.writes(ctx.transaction).merge(
                sent, self.settings.max_fields)
        except BaseException:
            self._drifts[:0] = drifts  # announced with the next write
            raise
        self.announced += len(drifts)
        ctx.on_commit(lambda: self.tracker.flushed(sent, stored))


def announcement(drift: Drift, at: str) -> dict[str, Any]:
    """The `opsbus.catalog.changed` event for one drift."""
    data: dict[str, Any] = {"source": drift.source, "type": drift.type,
                            "changes": drift.changes}
    if drift.cause is not None:
        data["seq"] = drift.cause.seq
        data["id"] = drift.cause.event["id"]
    return new_event(type=CHANGED, source=SOURCE, subject=drift.type, time=at, data=data)
