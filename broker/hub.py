"""In-memory fan-out of committed events to live subscribers, by seq."""

from __future__ import annotations

import asyncio
from collections import deque

from broker.store.records import StoredEvent


class Subscriber:
    """A bounded mailbox of committed batches. When it would overflow it is emptied and
    flagged instead: the reader then catches up from the store, so nothing is lost and
    a slow reader costs the hub nothing."""

    def __init__(self, maxsize: int, hub: Hub | None = None) -> None:
        self.maxsize = maxsize
        self._hub = hub
        self._batches: deque[list[StoredEvent]] = deque()
        self._count = 0
        self._wakeup = asyncio.Event()
        self.overflowed = False
        self.closed = False

    def push(self, batch: list[StoredEvent]) -> None:
        if self.overflowed or self.closed:
            return
        if self._count + len(batch) > self.maxsize:
            self.overflowed = True
            if self._hub is not None:
                self._hub.overflows += 1
            self._batches.clear()
            self._count = 0
        else:
            self._batches.append(batch)
            self._count += len(batch)
        self._wakeup.set()

    def close(self) -> None:
        self.closed = True
        self._wakeup.set()

    async def get(self, timeout: float | None = None) -> list[list[StoredEvent]]:
        """The batches received so far; waits up to `timeout` for one ([] on timeout)."""
        if not self._batches and not (self.overflowed or self.closed):
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout)
            except TimeoutError:
                return []
        batches = list(self._batches)
        self._batches.clear()
        self._count = 0
        return batches


class Hub:
    """Fans out each committed batch to every subscriber, in commit (seq) order."""

    def __init__(self) -> None:
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
        if not batch:
            return
        self.head = max(self.head, batch[-1].seq)
        for sub in self._subscribers:
            sub.push(batch)

    def close(self) -> None:
        """Shutdown: every live reader ends (clients reconnect and resume by seq)."""
        self.closed = True
        for sub in list(self._subscribers):
            sub.close()
