"""One SSE reader per live view: reads the stream and posts coalesced batches."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from textual.message_pump import MessagePump

from broker.client import OpsbusClient
from broker.errors import OpsbusError
from console.messages import ConnectionChanged, EventsArrived, Row

BATCH_EVENTS = 500
"""Most events in one posted batch."""
BATCH_WINDOW_S = 0.05
"""How long a batch collects events after its first one arrived."""
HANDLED_TIMEOUT_S = 5.0
"""Give up waiting for a receiver that never acknowledges a batch (screen gone)."""


async def head_seq(client: OpsbusClient) -> int | None:
    """Where a feed starts so nothing committed after the screen loads is missed: the
    log's last seq (0 when empty), or None when the broker cannot be reached now."""
    try:
        head = await client.events(limit=1, order="desc")
    except OpsbusError:
        return None
    return int(head["events"][0]["seq"]) if head["events"] else 0


class EventFeed:
    """Follows `/v1/stream` (optionally filtered) and posts `EventsArrived` to `target`.

    Run `feed.run()` in a worker. Reading and posting are two tasks joined by a bounded
    queue: the reader keeps the socket drained while a batch is on its way, and when
    the UI lags the queue fills, the reader stops reading and the broker's own
    back-pressure (drop and resume by Last-Event-ID) takes over. The last seq seen is
    kept so a new feed (another filter) can start where this one stopped.
    """

    def __init__(self, name: str, client: OpsbusClient, target: MessagePump, *,
                 after: int | None, filter: str | None = None, text: str | None = None,
                 batch_events: int = BATCH_EVENTS, window_s: float = BATCH_WINDOW_S,
                 on_state: Callable[[str, str | None], None] | None = None) -> None:
        self.name = name
        self.client = client
        self.target = target
        self.after = after
        self.filter = filter or None
        self.text = text or None
        """A free-text search beside the filter (`q`)."""
        self.batch_events = batch_events
        self.window_s = window_s
        self.on_state = on_state

    def _state(self, state: str, detail: str | None) -> None:
        self.target.post_message(ConnectionChanged(self.name, state, detail))
        if self.on_state is not None:
            self.on_state(state, detail)

    async def _read(self, queue: asyncio.Queue[Row]) -> None:
        async for seq, event in self.client.stream(after=self.after, filter=self.filter,
                                                   q=self.text, on_state=self._state):
            await queue.put((seq, event))

    async def run(self) -> None:
        """Read and post until cancelled."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Row] = asyncio.Queue(maxsize=self.batch_events * 4)
        reader = asyncio.create_task(self._read(queue), name=f"feed-{self.name}")
        try:
            while True:
                first = await _first_of(queue, reader)
                batch = [first]
                deadline = loop.time() + self.window_s
                while len(batch) < self.batch_events:
                    if not queue.empty():
                        batch.append(queue.get_nowait())
                        continue
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        batch.append(await asyncio.wait_for(queue.get(), remaining))
                    except TimeoutError:
                        break
                self.after = batch[-1][0]
                message = EventsArrived(self.name, batch)
                self.target.post_message(message)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(message.handled.wait(), HANDLED_TIMEOUT_S)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader


async def _first_of(queue: asyncio.Queue[Row], reader: asyncio.Task[None]) -> Row:
    """The next event; re-raises the reader's error if it stopped (bad filter...)."""
    getter = asyncio.ensure_future(queue.get())
    try:
        await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        getter.cancel()
        raise
    if getter.done():
        return getter.result()
    getter.cancel()
    reader.result()  # raises the reader's error
    raise RuntimeError("the stream ended")
