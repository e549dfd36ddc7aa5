"""Filters over HTTP: `/v1/filters/evaluate` (the console's live check) and the `filter=` /
`q=` parameters of the stream and event queries, compiled off the event loop."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final, TypeVar

from aiohttp import web

from broker.filters import (
    MATCH_ALL,
    Filter,
    FilterLimits,
    FilterWarning,
    all_of,
    compile_filter,
    compile_search,
    evaluate_request,
    limits_of,
)
from broker.filters.limits import exceeded
from broker.http.util import broker_of, json_response, parse_object

routes = web.RouteTableDef()

T = TypeVar("T")

# One worker thread compiles every filter that arrives over HTTP. Compiling is bounded by
# the limits, but it is CPU work: in threads of their own, many requests at once would
# take the interpreter lock from the event loop in turn; queued behind one thread, the
# loop always gets it back within a switch interval.
_COMPILER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="opsbus-filters")


async def off_loop(work: Callable[[], T]) -> T:
    """Run filter compilation (and a tester's evaluation) on the filter worker thread."""
    return await asyncio.get_running_loop().run_in_executor(_COMPILER, work)


WARNINGS_HEADER: Final = "Opsbus-Filter-Warnings"
"""Response header of `/v1/stream` carrying the filter's warnings as a JSON array."""
HEADER_WARNINGS: Final = 10
"""Most warnings the header carries (headers are size-limited by clients)."""


def request_limits(request: web.Request) -> FilterLimits:
    """The filter limits of the broker serving ``request`` (its `filter_*` settings)."""
    return limits_of(broker_of(request).settings)


@routes.post("/v1/filters/evaluate")
async def evaluate(request: web.Request) -> web.Response:
    """Evaluate a CESQL expression or filter against an event: {value, error, warnings}."""
    raw = await request.read()
    limits = request_limits(request)
    # The body is parsed on the filter thread too: it may be megabytes of filter.
    answer = await off_loop(lambda: evaluate_request(parse_object(raw), limits))
    return json_response(answer)


async def request_filter(request: web.Request) -> Filter | None:
    """The `filter` (CESQL) and `q` (free-text search) parameters as one filter, or None.

    Both are compiled under the broker's limits in a worker thread; a bad one is a 400
    problem with the position (CESQL) or the limit's setting name (too large).
    """
    text = request.query.get("filter") or None
    words = request.query.get("q") or None
    if text is None and words is None:
        return None
    limits = request_limits(request)
    for given in (text, words):
        if given is not None and len(given) > limits.max_length:
            # Refused at once, without waiting for the filter thread.
            raise exceeded("max_length", limits, f"the filter is {len(given)} characters long")

    def compile_both() -> Filter:
        flt = compile_filter(text, limits=limits) if text is not None else MATCH_ALL
        return all_of(flt, compile_search(words, limits=limits))

    flt = await off_loop(compile_both)
    return None if flt is MATCH_ALL else flt


def warnings_json(flt: Filter | None) -> list[dict[str, Any]]:
    """A filter's warnings in their JSON form (an empty list for none)."""
    return [warning.to_dict() for warning in (flt.warnings if flt is not None else ())]


def warnings_header(flt: Filter | None) -> dict[str, str]:
    """The `Opsbus-Filter-Warnings` header for a streamed response, when there are any."""
    warnings: tuple[FilterWarning, ...] = flt.warnings if flt is not None else ()
    if not warnings:
        return {}
    # ASCII-only JSON: header values are Latin-1 at best.
    value = json.dumps([w.to_dict() for w in warnings[:HEADER_WARNINGS]],
                       ensure_ascii=True, separators=(",", ":"))
    return {WARNINGS_HEADER: value}
