"""The live tail: feeds a replica's hub from the shared log strictly in seq order.

Three things move it: this replica's own commits (published from memory when they start
right after the tail's head, else after reading the gap), notifications naming a new
head, and a poll of the head (docs/postgres.md, section 5). The tail is the only caller
of `publish`, so every live reader of the replica sees one gapless, increasing log."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from broker.bus.log import StoredEvent
from broker.clock import Clock, SystemClock

log = logging.getLogger(__name__)

ReadRange = Callable[[int, int, int], Awaitable[list[StoredEvent]]]
"""(after, upto, limit) -> committed events with after < seq <= upto, in seq order."""


def _seq_of(event: StoredEvent) -> int:
    return event.seq


class LogTail:
    """Advance `head` through the log, handing each contiguous run to `publish`."""

    def __init__(self, read_range: ReadRange, publish: Callable[[list[StoredEvent]], None],
                 head: int, *, page: int = 500, on_read: Callable[[], None] = lambda: None
                 ) -> None:
        self._read_range = read_range
        self._publish = publish
        self._on_read = on_read
        self.head = head
        """The highest seq handed to `publish`."""
        self.target = head
        """The highest seq known to be committed."""
        self._page = page
        self._own: list[list[StoredEvent]] = []
        self._wake = asyncio.Event()
        self._look = False
        self.reads = 0
        """Pages read from the table (own commits published from memory read nothing)."""

    def committed(self, batch: list[StoredEvent]) -> None:
        """This replica committed `batch`: one transaction's events, whose seqs are
        contiguous (they were taken under one hold of the log's lock) but listed in the
        order the units of work appended them. Published at once when it continues the
        tail, else queued behind a read of the gap."""
        if not batch:
            return
        batch = sorted(batch, key=_seq_of)
        if batch[-1].seq <= self.head:
            return
        if not self._own and batch[0].seq <= self.head + 1:
            # It continues the tail: publish now, whatever else is known to follow (the
            # answer to its publisher must not wait for a read of the table).
            self._emit(batch)
            if self.target > self.head:
                self._wake.set()
            return
        self._own.append(batch)
        self.target = max(self.target, batch[-1].seq)
        self._wake.set()

    def signal(self, head: int | None) -> None:
        """Another replica (or a poll) says the log reaches `head`; None: unknown, look."""
        if head is None:
            self._look = True
            self._wake.set()
            return
        if head > self.target:
            self.target = head
            self._wake.set()

    async def run(self, committed_head: Callable[[], Awaitable[int]],
                  poll_s: float, clock: Clock | None = None) -> None:
        """Advance whenever woken, and check the head every `poll_s` seconds of `clock`
        anyway (the broker's clock: on the manual one, only notifications and own
        commits move the tail until a test advances time)."""
        clock = clock or SystemClock()
        while True:
            polled = not await clock.wait(self._wake, poll_s)
            self._wake.clear()
            try:
                if polled or self._look:
                    self._look = False
                    self.signal(await committed_head())
                await self.advance()
            except asyncio.CancelledError:
                raise
            except Exception:  # the database is away: the next wake or poll retries
                log.exception("the live tail could not read the log")

    async def advance(self) -> None:
        """Publish everything up to `target`: queued own batches from memory, the rest
        read from the table in pages."""
        while self.head < self.target:
            if self._own and self._own[0][-1].seq <= self.head:
                self._own.pop(0)
                continue
            if self._own and self._own[0][0].seq <= self.head + 1:
                self._emit(self._own.pop(0))
                continue
            upto = self._own[0][0].seq - 1 if self._own else self.target
            page = await self._read_range(self.head, upto, self._page)
            self.reads += 1
            if not page or page[0].seq > self.head + 1:
                # Committed seqs are visible and gapless: this means the log was trimmed
                # below us (retention) — carry on from what is there. (A page starting
                # lower overlaps an own batch published during the read: trimmed below.)
                log.warning("the log has no seq %d (next is %s)", self.head + 1,
                            page[0].seq if page else None)
                if not page:
                    return
            self._emit(page)
            self._on_read()  # others committed: their new work may be waiting
        self._own = [b for b in self._own if b[-1].seq > self.head]

    def _emit(self, batch: list[StoredEvent]) -> None:
        fresh = batch if batch[0].seq > self.head else [e for e in batch if e.seq > self.head]
        if fresh:
            self.head = fresh[-1].seq
            self.target = max(self.target, self.head)
            self._publish(fresh)
