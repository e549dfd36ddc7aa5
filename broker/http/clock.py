"""`/v1/test/clock`: read and move a broker's manual clock (tests only).

A broker started with `--test-clock` runs on a `ManualClock`: time stands still until a
test advances it, so leases, retries, backoffs, snoozes, sweeps and heartbeats happen
exactly when the test says, never because a slow machine let real time pass. A broker
on the system clock answers 404 here.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from broker.clock import ManualClock
from broker.errors import BadRequest, NotFound
from broker.http.util import broker_of, json_response, read_object
from broker.timeutil import MAX_DURATION_S

routes = web.RouteTableDef()


def manual_clock(request: web.Request) -> ManualClock:
    clock = broker_of(request).clock
    if not isinstance(clock, ManualClock):
        raise NotFound("this broker runs on the system clock; a broker started with"
                       " --test-clock (tests only) lets its time be moved here")
    return clock


def describe(clock: ManualClock) -> dict[str, Any]:
    return {"now": clock.stamp(), "monotonic": clock.monotonic(),
            "pending_timers": clock.pending_timers}


@routes.get("/v1/test/clock")
async def read_clock(request: web.Request) -> web.Response:
    """The manual clock's time and how many timers wait on it."""
    return json_response(describe(manual_clock(request)))


@routes.post("/v1/test/clock")
async def advance_clock(request: web.Request) -> web.Response:
    """`{"advance": seconds}`: move the clock forward, firing every timer that falls due
    (in order); answers once the work those timers woke has come back to the clock."""
    clock = manual_clock(request)
    body = await read_object(request)
    unknown = sorted(set(body) - {"advance"})
    if unknown:
        raise BadRequest(f"unknown field(s) {', '.join(unknown)} (known: advance)",
                         field=unknown[0])
    seconds = body.get("advance")
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) \
            or not 0 <= seconds <= MAX_DURATION_S:
        raise BadRequest(f"advance must be a number of seconds from 0 to {MAX_DURATION_S}",
                         field="advance")
    await clock.advance(float(seconds))
    return json_response(describe(clock))
