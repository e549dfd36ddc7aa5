"""The broker's one clock: wall time, monotonic time, sleeps, timed waits and timers; the
system clock in production and a manual clock that tests move by hand.

Every component that reads time or waits for it is handed a `Clock` at start-up; no
other module reads `time.time()`, `time.monotonic()`, `datetime.now()` or the loop's
time. Instants are kept and stored in one encoding, RFC 3339 UTC with microseconds and a
`Z` (`Clock.stamp()`, `broker.timeutil.to_rfc3339`): fixed width, so stamps compare and
sort as text in time order, in Python and in every store backend alike. Durations are
float seconds. (Latency measurements use `time.perf_counter`: they measure real work
and decide nothing.)
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

from broker.timeutil import seconds_between, to_rfc3339

log = logging.getLogger(__name__)
T = TypeVar("T")


class Timer(Protocol):
    """A scheduled callback (`Clock.call_later`)."""

    def cancel(self) -> None: ...


class Clock(ABC):
    """Where the broker reads time and waits for it."""

    @abstractmethod
    def now(self) -> datetime:
        """Wall time, UTC."""

    @abstractmethod
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for durations and timeouts)."""

    @abstractmethod
    async def sleep(self, seconds: float) -> None:
        """Wait `seconds` of this clock."""

    @abstractmethod
    async def wait(self, event: asyncio.Event, timeout: float | None) -> bool:
        """Wait until `event` is set or `timeout` seconds of this clock have passed;
        True when it was set."""

    @abstractmethod
    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        """Call `callback` (on the event loop) once `delay` seconds have passed."""

    def stamp(self, offset_s: float = 0.0) -> str:
        """Now (plus `offset_s` seconds) in the broker's time encoding."""
        moment = self.now()
        if offset_s:
            moment += timedelta(seconds=offset_s)
        return to_rfc3339(moment)

    def seconds_until(self, stamp: str) -> float:
        """Seconds from now until `stamp` (negative once it has passed)."""
        return seconds_between(self.stamp(), stamp)

    async def within(self, awaitable: Awaitable[T], timeout: float) -> T:
        """`awaitable`'s result, or TimeoutError once `timeout` seconds of this clock
        have passed (the awaitable is then cancelled)."""
        task = asyncio.ensure_future(awaitable)
        done = asyncio.Event()
        task.add_done_callback(lambda _: done.set())
        try:
            if not await self.wait(done, timeout):
                raise TimeoutError
        finally:
            if not task.done():
                task.cancel()
        return task.result()

    def epoch(self) -> float:
        """Wall time as Unix seconds (for wire formats that want it: webhook timestamps,
        HTTP dates)."""
        return self.now().timestamp()


class SystemClock(Clock):
    """The real clock (production)."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def wait(self, event: asyncio.Event, timeout: float | None) -> bool:
        if event.is_set():
            return True
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        return asyncio.get_running_loop().call_later(delay, callback)


def _resolve(future: asyncio.Future[T], value: T) -> None:
    if not future.done():
        future.set_result(value)


class _ManualTimer:
    __slots__ = ("callback", "cancelled", "deadline", "order", "task")

    def __init__(self, deadline: float, order: int, callback: Callable[[], None],
                 task: asyncio.Task[Any] | None) -> None:
        self.deadline = deadline
        self.order = order
        self.callback = callback
        self.task = task
        """The task woken by this timer (a sleep or a timed wait), to wait for it to run."""
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True

    def __lt__(self, other: _ManualTimer) -> bool:
        return (self.deadline, self.order) < (other.deadline, other.order)


class ManualClock(Clock):
    """A clock that moves only when `advance()` is called (tests).

    It starts at the real wall time (or `start`) so stamps look ordinary. `advance(s)`
    fires the timers that fall due, in deadline order, moving the clock to each one's
    deadline first; after each, it lets the tasks it woke run until they wait on this
    clock again (or end), so when it returns, the work those timers started has had its
    turn: a sweeper has swept, a dispatcher has made its pass. Waiting that involves no
    timer (I/O, a lock) is not controlled: tests still wait for the effects they expect.
    """

    SETTLE_LIMIT_S = 5.0
    """Real seconds `advance` waits for woken tasks to come back to the clock."""

    def __init__(self, start: datetime | None = None) -> None:
        self._wall = start or datetime.now(UTC)
        self._mono = 1000.0  # far from zero: no reading is mistaken for "unset"
        self._timers: list[_ManualTimer] = []
        self._order = itertools.count()
        self._parked: set[asyncio.Task[Any]] = set()
        """Tasks waiting on this clock right now."""
        self._settling: asyncio.Task[Any] | None = None
        self._settled: asyncio.Future[None] | None = None
        """While `advance` waits for a woken task: that task, and the future it resolves
        when it parks again (so settling costs no real-time polling)."""

    def now(self) -> datetime:
        return self._wall

    def monotonic(self) -> float:
        return self._mono

    def _schedule(self, delay: float, callback: Callable[[], None],
                  task: asyncio.Task[Any] | None = None) -> _ManualTimer:
        timer = _ManualTimer(self._mono + max(0.0, delay), next(self._order), callback, task)
        heapq.heappush(self._timers, timer)
        return timer

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        return self._schedule(delay, callback)

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future = asyncio.get_running_loop().create_future()
        task = asyncio.current_task()
        timer = self._schedule(seconds, lambda: _resolve(future, None), task)
        await self._park(future, timer, task)

    async def wait(self, event: asyncio.Event, timeout: float | None) -> bool:
        if event.is_set():
            return True
        if timeout is not None and timeout <= 0:
            await asyncio.sleep(0)
            return event.is_set()
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        task = asyncio.current_task()
        timer = (self._schedule(timeout, lambda: _resolve(future, False), task)
                 if timeout is not None else None)
        waiter = asyncio.ensure_future(event.wait())
        waiter.add_done_callback(lambda _: _resolve(future, True))
        try:
            return await self._park(future, timer, task)
        finally:
            waiter.cancel()

    async def _park(self, future: asyncio.Future[T], timer: _ManualTimer | None,
                    task: asyncio.Task[Any] | None) -> T:
        if task is not None:
            self._parked.add(task)
            if task is self._settling and self._settled is not None:
                _resolve(self._settled, None)
        try:
            return await future
        finally:
            if timer is not None:
                timer.cancel()
            if task is not None:
                self._parked.discard(task)

    async def advance(self, seconds: float) -> None:
        """Move the clock forward, firing every timer that falls due on the way."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        target = self._mono + seconds
        while self._timers and self._timers[0].deadline <= target:
            timer = heapq.heappop(self._timers)
            if timer.cancelled:
                continue
            self._move_to(timer.deadline)
            if timer.task is not None:
                self._parked.discard(timer.task)  # woken: running until it parks again
            timer.callback()
            await self._settle(timer.task)
        self._move_to(target)
        await self._settle(None)

    def _move_to(self, mono: float) -> None:
        if mono > self._mono:
            self._wall += timedelta(seconds=mono - self._mono)
            self._mono = mono

    async def _settle(self, woken: asyncio.Task[Any] | None) -> None:
        """Let the woken task run until it waits on this clock again or ends."""
        await asyncio.sleep(0)
        if woken is None or woken.done() or woken in self._parked:
            return
        # Still running (it awaits I/O: a store read in a thread): wait for it to park or
        # end, woken by that very step rather than by polling, which cost a real
        # millisecond or more per timer and made hour-long advances take a minute.
        loop = asyncio.get_running_loop()
        settled: asyncio.Future[None] = loop.create_future()
        self._settling, self._settled = woken, settled

        def ended(_: object) -> None:
            _resolve(settled, None)

        woken.add_done_callback(ended)
        # The real-time limit is the one use of the loop's clock here: a task stuck on
        # something outside this clock must not hang `advance`.
        limit = loop.call_later(self.SETTLE_LIMIT_S, _resolve, settled, None)
        try:
            await settled
        finally:
            limit.cancel()
            woken.remove_done_callback(ended)
            self._settling = self._settled = None
        if not woken.done() and woken not in self._parked:
            log.warning("test clock: %s did not come back to the clock within %gs",
                        woken.get_name(), self.SETTLE_LIMIT_S)

    @property
    def pending_timers(self) -> int:
        """Timers not yet fired (for tests and the clock endpoint)."""
        return sum(1 for t in self._timers if not t.cancelled)
