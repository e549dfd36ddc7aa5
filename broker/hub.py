"""In-memory fan-out of committed events to live subscribers, by seq."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from broker.bus.log import StoredEvent
    from broker.clock import Clock

log = logging.getLogger(__name__)


class Subscriber:
    """A bounded mailbox of committed batches. When it would overflow it is emptied and
    flagged instead: the reader then catches up from the store, so nothing is lost and
    a slow reader costs the hub nothing."""

    def __init__(self, maxsize: int, hub: Hub) -> None:
        self.maxsize = maxsize
        self._hub = hub
        self._batches: deque[list[StoredEvent]] = deque()
        self._count = 0
        # A bare future rather than Event + wait_for: this wait happens once per commit
        # per subscriber, and wait_for's extra task and timer dominated the fan-out cost.
        self._waiter: asyncio.Future[None] | None = None
        self.sink: Callable[[list[StoredEvent]], bool] | None = None
        """Takes live batches synchronously (see `follow`); False means "full"."""
        self.end_when_full = False
        """A full sink ends this subscriber (its reader is dropped and resumes by seq)
        instead of sending it back to the store."""
        self.idle_timeout: float | None = None
        self.waiting_since: float | None = None
        self.overflowed = False
        self.closed = False

    @property
    def pending(self) -> bool:
        return bool(self._batches)

    def push(self, batch: list[StoredEvent]) -> None:
        if self.overflowed or self.closed:
            return
        if self.sink is not None:
            try:
                room = self.sink(batch)
            except Exception:  # one broken stream must not stop the fan-out to others
                log.exception("a live stream failed to take events; it catches up")
                room = False
            if not room:
                if self.end_when_full:
                    self.sink = None
                    self.close()
                else:
                    self._overflow()
            return
        if self._count + len(batch) > self.maxsize:
            self._overflow()
            return
        else:
            self._batches.append(batch)
            self._count += len(batch)
        self._wake()

    def resync(self) -> None:
        """Send the reader back to the store (it catches up by seq and rejoins live)."""
        if not (self.overflowed or self.closed):
            self._overflow()

    def _overflow(self) -> None:
        self.overflowed = True
        self.sink = None
        self._hub.overflows += 1
        self._batches.clear()
        self._count = 0
        self._wake()

    def close(self) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self, timeout: float | None = None) -> list[list[StoredEvent]]:
        """The batches received so far; waits for one, or until the hub's ticker finds
        this subscriber idle for `timeout` seconds ([] then)."""
        if not self._batches and not (self.overflowed or self.closed):
            self.idle_timeout = timeout
            self.waiting_since = self._hub.clock.monotonic()
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None
                self.waiting_since = None
            if not self._batches and not (self.overflowed or self.closed):
                return []
        batches = list(self._batches)
        self._batches.clear()
        self._count = 0
        return batches


def _seq_of(event: StoredEvent) -> int:
    return event.seq


def _ascending(batch: list[StoredEvent]) -> bool:
    previous = 0
    for event in batch:
        if event.seq <= previous:
            return False
        previous = event.seq
    return True


class Hub:
    """Fans out each committed batch to every subscriber, in commit (seq) order."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._subscribers: set[Subscriber] = set()
        self.head = 0
        self.closed = False
        self.overflows = 0
        """Times a subscriber fell behind and went back to the store."""

    def subscribe(self, maxsize: int = 1024) -> Subscriber:
        sub = Subscriber(maxsize, self)
        if self.closed:
            sub.close()
        self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subscribers.discard(sub)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def publish(self, batch: list[StoredEvent]) -> None:
        """Hand a committed batch to every subscriber. This is the one place live events
        are ordered: a unit of work appends in its own order (an event, then the audit
        event its routing derived, then the next event), so the batch is sorted here and
        anything at or below the head already fanned out is dropped. Every live reader
        therefore sees strictly increasing seq, whatever the writer handed over."""
        if not batch:
            return
        if not _ascending(batch):
            batch = sorted(batch, key=_seq_of)
        if batch[0].seq <= self.head:
            batch = [e for e in batch if e.seq > self.head]
            if not batch:
                return
        gap = batch[0].seq > self.head + 1
        self.head = batch[-1].seq
        if gap:
            # Seqs below this batch committed elsewhere (another process on the same
            # database) and have not been fanned out here: rather than hand out a later
            # event first, every reader reads the gap from the store and rejoins.
            for sub in list(self._subscribers):
                sub.resync()
            return
        for sub in self._subscribers:
            sub.push(batch)

    async def tick(self, interval: float = 0.25) -> None:
        """Wake subscribers idle longer than their timeout (heartbeats): one timer for
        the whole hub instead of one per wait."""
        while not self.closed:
            await self.clock.sleep(interval)
            now = self.clock.monotonic()
            for sub in list(self._subscribers):
                since, limit = sub.waiting_since, sub.idle_timeout
                if since is not None and limit is not None and now - since >= limit:
                    sub._wake()

    def close(self) -> None:
        """Shutdown: every live reader ends (clients reconnect and resume by seq)."""
        self.closed = True
        for sub in list(self._subscribers):
            sub.close()
