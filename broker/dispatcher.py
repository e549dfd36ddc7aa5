"""The loop shared by the store-driven senders (webhook deliveries, action jobs): claim
due work in a pass, run it in tasks, sleep until woken by a commit or the next due time."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp

from broker.outbound import close_session, open_session

if TYPE_CHECKING:
    from broker.bus import Bus
    from broker.clock import Clock


@dataclass(frozen=True, slots=True)
class DispatchSettings:
    """How a store-driven sender paces itself (from the broker's settings)."""

    poll_s: float
    """Seconds between looks at the store for timer-driven work (commits wake it early)."""
    concurrency: int
    """Most calls in flight at once."""
    allow_private_targets: bool
    """Whether loopback and private addresses may be called."""
    shutdown_grace_s: float = 10.0
    """At stop, how long calls in flight may take to finish before they are cancelled."""


class StoreDispatcher(ABC):
    """Runs until stopped; `wake()` after a commit that created work for it."""

    def __init__(self, bus: Bus, clock: Clock, settings: DispatchSettings) -> None:
        self.bus = bus
        self.clock = clock
        self.settings = settings
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._stopping = False
        self.stats: Counter[str] = Counter()

    def wake(self) -> None:
        self._wake.set()

    @abstractmethod
    async def _pass(self) -> float:
        """Claim and start due work; seconds until the next pass is due."""

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def run(self) -> None:
        self._session = open_session(self.settings.allow_private_targets,
                                     limit=self.settings.concurrency)
        try:
            while not self._stopping:
                self._wake.clear()
                started = self.clock.monotonic()
                # A wait is reckoned from the pass's own reading of the clock: time that
                # passed during the pass (its reads and writes; a test moving the clock
                # meanwhile) is taken off, or work due by then would wait a full extra
                # interval.
                wait = await self._pass() - (self.clock.monotonic() - started)
                if wait > 0:
                    await self.clock.wait(self._wake, wait)
        finally:
            await self._drain(0)
            await close_session(self._session)

    async def stop(self, grace: float = 5.0) -> None:
        """Stop claiming; let in-flight calls finish within `grace`, then cancel them
        (their leases expire and they are sent again after the restart)."""
        self._stopping = True
        self._wake.set()
        await self._drain(grace)

    async def _drain(self, grace: float) -> None:
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
