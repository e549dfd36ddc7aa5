"""The manual clock tests drive time with: timers fire in order as it advances, and the
tasks they wake have run before `advance` returns."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from broker.clock import ManualClock, SystemClock

START = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


async def test_a_periodic_loop_runs_once_per_period_it_is_advanced_through():
    clock = ManualClock(START)
    ticks: list[str] = []

    async def every_second() -> None:
        while True:
            await clock.sleep(1)
            ticks.append(clock.stamp())

    task = asyncio.create_task(every_second())
    await asyncio.sleep(0)  # parked on the clock
    await clock.advance(3.5)
    assert ticks == ["2026-11-25T10:00:01.000000Z", "2026-11-25T10:00:02.000000Z",
                     "2026-11-25T10:00:03.000000Z"]
    assert clock.stamp() == "2026-11-25T10:00:03.500000Z"
    await clock.advance(0.5)
    assert len(ticks) == 4
    task.cancel()


async def test_work_a_timer_starts_is_done_when_advance_returns():
    clock = ManualClock(START)
    done: list[int] = []

    async def sweeper() -> None:
        await clock.sleep(10)
        await asyncio.sleep(0.01)  # some real work (a store read) after waking
        done.append(1)
        await clock.sleep(10)

    task = asyncio.create_task(sweeper())
    await asyncio.sleep(0)
    await clock.advance(9.9)
    assert done == []
    await clock.advance(0.1)
    assert done == [1]
    task.cancel()


async def test_timed_waits_end_on_the_event_or_on_the_clock():
    clock = ManualClock(START)
    event = asyncio.Event()
    waiting = asyncio.create_task(clock.wait(event, 5))
    await asyncio.sleep(0)
    event.set()
    assert await waiting is True

    event.clear()
    waiting = asyncio.create_task(clock.wait(event, 5))
    await asyncio.sleep(0)
    await clock.advance(5)
    assert waiting.done() and waiting.result() is False
    assert await clock.wait(event, 0) is False


async def test_timers_fire_in_deadline_order_and_can_be_cancelled():
    clock = ManualClock(START)
    fired: list[str] = []
    clock.call_later(2, lambda: fired.append("b"))
    clock.call_later(1, lambda: fired.append("a"))
    clock.call_later(3, lambda: fired.append("never")).cancel()
    before = clock.monotonic()
    await clock.advance(5)
    assert fired == ["a", "b"]
    assert clock.monotonic() - before == 5
    assert clock.pending_timers == 0


async def test_the_system_clock_waits_for_real():
    clock = SystemClock()
    event = asyncio.Event()
    assert await clock.wait(event, 0.01) is False
    event.set()
    assert await clock.wait(event, 10) is True
    assert clock.stamp().endswith("Z") and clock.stamp(60) > clock.stamp()
