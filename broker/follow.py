"""Following the log: catch up from the store by seq, then read live from the hub."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from broker.bus.log import EventLog, StoredEvent
from broker.hub import Hub

PAGE = 500


async def follow(
    events: EventLog,
    hub: Hub,
    after: int,
    *,
    buffer: int = 1024,
    heartbeat: float | None = None,
    keep: Callable[[StoredEvent], bool] | None = None,
    direct: Callable[[list[StoredEvent]], bool] | None = None,
    end_when_full: bool = False,
    page: int = PAGE,
) -> AsyncIterator[list[StoredEvent]]:
    """Yield committed events with seq > after, in seq order, forever.

    Subscribes to the hub before reading the store so nothing committed in between is
    missed; events seen twice are dropped by seq. A reader that overflows its hub
    mailbox goes back to the store and rejoins live. Yields [] every `heartbeat`
    seconds of silence so the caller can keep its connection alive. Ends when the hub
    closes. `keep` filters events (the seq still advances past the others).

    With `direct`, a reader that has caught up is handed live events synchronously from
    the hub's fan-out instead of being woken for each commit (the cost that dominates a
    fan-out to many streams); `direct` writes them without awaiting and returns False
    when its buffer is full, which sends the reader back to the store — or, with
    `end_when_full`, ends the iteration (the caller drops its client, which resumes by
    seq). `page` events at most are read from the store at a time."""
    last = after

    def deliver(batch: list[StoredEvent]) -> bool:
        nonlocal last
        if batch[-1].seq <= last:
            return True
        fresh = batch if batch[0].seq > last else [e for e in batch if e.seq > last]
        last = fresh[-1].seq
        chosen = [e for e in fresh if keep(e)] if keep else fresh
        return direct(chosen) if chosen and direct is not None else True

    while True:
        sub = hub.subscribe(buffer)
        sub.end_when_full = end_when_full
        try:
            while True:
                read = await events.read(after=last, limit=page)
                count = len(read)
                if read:
                    last = read[-1].seq
                    # Handed over without a local keeping it: while the caller waits
                    # for a slow client to drain, this frame holds no page of events.
                    chosen = [e for e in read if keep(e)] if keep else read
                    del read
                    box = [chosen] if chosen else []
                    del chosen
                    if box:
                        yield box.pop()
                if count < page:
                    break
            while not (sub.overflowed or sub.closed):
                if direct is not None and sub.sink is None and not sub.pending:
                    sub.sink = deliver  # caught up: from now on the hub hands events over
                batches = await sub.get(heartbeat)
                if not batches:
                    if not (sub.overflowed or sub.closed):
                        yield []
                    continue
                for batch in batches:
                    if batch[-1].seq <= last:
                        continue
                    fresh = [e for e in batch if e.seq > last]
                    last = fresh[-1].seq
                    chosen = [e for e in fresh if keep(e)] if keep else fresh
                    if chosen:
                        yield chosen
        finally:
            hub.unsubscribe(sub)
        if sub.closed:
            return
