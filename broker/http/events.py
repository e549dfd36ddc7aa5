"""`/v1/events`: publish in any content mode, query and fetch stored events."""

from __future__ import annotations

import functools
import time
from typing import Any

import orjson
from aiohttp import hdrs, web
from multidict import istr

from broker.auth.principal import check_sources, principal_of
from broker.bus.log import EventLog, StoredEvent
from broker.errors import Forbidden, Gone, NotFound
from broker.events import STRUCTURED_TYPE, Limits, parse_request_encoded
from broker.filters import Filter
from broker.filters.narrow import narrowing_of
from broker.http.filters import request_filter, warnings_json
from broker.http.util import BROKER, broker_of, id_param, int_param, json_response
from broker.reserved import RESTORE_HEADER, admit, restore_requested
from broker.timeutil import parse_since

routes = web.RouteTableDef()

SCAN_PAGE = 200
"""Events read from the store per step of a filtered query."""

SCAN_SPAN = 2000
"""Seqs one read of a scan may cover: the store skips in SQL what the attributes (and
a filter's required type, source or subject) rule out, returning at most a page."""

CLOCK_EVERY = 8
"""Events tested between two looks at the time budget (testing one costs ~10 µs)."""


def limits_of(request: web.Request) -> Limits:
    s = broker_of(request).settings
    return _limits(s.max_event_bytes, s.max_request_bytes, s.max_batch_events)


@functools.lru_cache(maxsize=8)
def _limits(event_bytes: int, request_bytes: int, batch_events: int) -> Limits:
    """One object per set of limits, not one per request (a reload may change them)."""
    return Limits(event_bytes, request_bytes, batch_events)


@routes.post("/v1/events")
async def publish(request: web.Request) -> web.Response:
    """Publish events (binary, structured or batched CloudEvents); durable on 2xx."""
    broker = request.app[BROKER]
    body = await request.read()
    headers = request.headers
    content_type = headers.get(hdrs.CONTENT_TYPE)  # `istr` names: see RESTORE
    s = broker.settings
    parsed, encoded, is_batch = parse_request_encoded(
        content_type, headers, body,
        _limits(s.max_event_bytes, s.max_request_bytes, s.max_batch_events))
    restore = RESTORE in headers and restore_requested(headers)
    principal = principal_of(request)
    if restore and not principal.has("admin"):
        raise Forbidden(f"restoring an export ({RESTORE_HEADER}: true) needs the admin scope",
                        scope="admin")
    # A structured or batched body that never spells "opsbus" (nor escapes a character
    # that could spell it) holds no reserved event: no type, source or extension can
    # start so. (A lone backslash is found by memchr, a two-byte needle by a slower
    # search.) A binary-mode event's attributes are headers: it is always looked at.
    # `find`, not `in`: `bytes.__contains__` first tries its argument as an integer and
    # formats a TypeError it then discards, ~2,000 instructions a test.
    find = body.find
    events = (parsed if (is_batch or content_type == STRUCTURED_TYPE)
              and find(b"opsbus") < 0 and (find(b"\\") < 0 or find(b"\\u") < 0)
              else admit(parsed, restore=restore, batch=is_batch))
    if principal.limits_sources:
        check_sources(principal, [str(e.get("source")) for e in events])
    # The bytes made while parsing are the stored ones unless admitting changed an event.
    results = await broker.bus.publish(events, encoded=encoded if events is parsed else None)
    if is_batch:
        # `Published.to_dict` spelled out for the common answer, once per event.
        return json_response([{"seq": r.seq, "id": r.id, "duplicate": r.duplicate}
                              if not r.dropped else r.to_dict() for r in results])
    seq, event_id, duplicate, dropped = results[0]
    if dropped:
        return json_response(results[0].to_dict())
    # `Published.to_dict` written out: one answer per request, made without a dict.
    return web.Response(status=200 if duplicate else 201, content_type=JSON,
                        body=ANSWER % (seq, orjson.dumps(event_id),
                                       b"true" if duplicate else b"false"))


RESTORE = istr(RESTORE_HEADER)
"""The header's name as an `istr`: headers looked up by a plain `str` name fold it to its
case-insensitive form every time, ~500 instructions a lookup."""
ANSWER = b'{"seq":%d,"id":%b,"duplicate":%b}'
"""A single event's answer (`Published.to_dict` of an event not dropped)."""
JSON = "application/json"


@routes.get("/v1/events")
async def list_events(request: web.Request) -> web.Response:
    """Page stored events by seq, narrowed by attributes, time and a CESQL filter."""
    broker = broker_of(request)
    limit = int_param(request, "limit", 100, minimum=1, maximum=1000)
    after = int_param(request, "after", 0)
    descending = request.query.get("order", "asc") == "desc"
    flt = await request_filter(request)
    q = request.query
    now = broker_of(request).clock.now()
    since = parse_since(q["since"], "since", now) if q.get("since") else None
    until = parse_since(q["until"], "until", now) if q.get("until") else None
    attributes = {"type": q.get("type"), "source": q.get("source"),
                  "subject": q.get("subject"), "id": q.get("id"),
                  "correlationid": q.get("correlationid"),
                  "causationid": q.get("causationid")}
    query: dict[str, Any] = {"since": since, "until": until, "descending": descending,
                             **attributes}
    if flt is None and indexed(attributes):
        page = await broker.store.events.read(after=after, limit=limit, **query)
        chosen, cursor = page, (page[-1].seq if len(page) == limit else None)
    else:
        chosen, cursor = await scan(broker.store.events, after, limit, flt, query,
                                    broker.settings.scan_budget_events,
                                    broker.settings.scan_budget_ms / 1000)
    doc = {"events": [listed(e) for e in chosen], "next_after": cursor,
           "warnings": warnings_json(flt)}
    gap = None if descending else await retention_gap(broker.store.events, after)
    if gap is None:
        return json_response(doc)
    # The page goes on from what is retained; the field and header say what is not.
    return json_response({**doc, "gap": gap}, headers={
        "Opsbus-Retention-Gap": f"after={after}; retained_from={gap['retained_from']}"})


def listed(stored: StoredEvent) -> dict[str, Any]:
    """`StoredEvent.to_dict`, with the event as its stored JSON bytes: a listing neither
    decodes nor re-encodes the events it returns."""
    return {"seq": stored.seq, "recvtime": stored.recvtime, "routes": list(stored.routes),
            "event": orjson.Fragment(stored.raw)}


def indexed(attributes: dict[str, str | None]) -> bool:
    """Whether an index finds these events (the hashed identity or a link), or no
    attribute narrows the log at all (a plain page by seq)."""
    if attributes["correlationid"] or attributes["causationid"]:
        return True
    if attributes["source"] is not None and attributes["id"] is not None:
        return True
    return all(value is None for value in attributes.values())


async def scan(log: EventLog, after: int, limit: int, flt: Filter | None,
               query: dict[str, Any], budget: int, budget_s: float
               ) -> tuple[list[StoredEvent], int | None]:
    """Events matching what no index serves, examining at most `budget` stored events
    (seqs) and about `budget_s` seconds per request (a range of seqs at a time, jumping
    over removed ones and to the time range asked for), then answering what it found
    with the seq to continue after (None once the log is exhausted). At least a page
    (SCAN_PAGE events) is examined, so a client following `next_after` always gets
    further; past it the clock is read every few events tested, so no page runs far
    over the time budget. What a filter requires of `type`, `source` or `subject` is tested in SQL
    first (`broker.filters.narrow`), so the events that cannot match are never decoded."""
    descending = query["descending"]
    narrow = narrowing_of(flt.spec) if flt is not None else ()
    chosen: list[StoredEvent] = []
    cursor: int | None = after
    scanned = 0
    examined = 0
    # A cost bound, not a schedule: the real elapsed time, not the broker's clock.
    clock = time.perf_counter
    deadline = clock() + budget_s
    start: int | None = None
    while cursor is not None and len(chosen) < limit and scanned < budget:
        if start is None:
            nearest = await log.read(after=cursor, limit=1, descending=descending,
                                     since=query["since"], until=query["until"])
            if not nearest:
                return chosen, None
            start = nearest[0].seq
        span = min(SCAN_SPAN, budget - scanned)
        scan_to = start - span + 1 if descending else start + span - 1
        want = limit - len(chosen) if flt is None else SCAN_PAGE
        page = await log.read(after=cursor, limit=want, scan_to=scan_to, narrow=narrow,
                              **query)
        for stored in page:
            cursor = stored.seq
            if flt is None or flt.matches(stored.event):
                chosen.append(stored)
                if len(chosen) == limit:
                    return chosen, cursor
            examined += 1
            if examined >= SCAN_PAGE and examined % CLOCK_EVERY == 0 and clock() >= deadline:
                return chosen, cursor
        if len(page) == want:
            # The page ended inside the range: go on after its last event.
            assert cursor is not None
            scanned += abs(cursor - start) + 1
            start = cursor - 1 if descending else cursor + 1
            if descending and start < 1:
                return chosen, None
        else:
            # The whole range was examined; below seq 1 there is nothing more to read.
            scanned += span
            cursor = None if descending and scan_to <= 1 else scan_to
            # An empty range may sit in a removed stretch: find the next stored event.
            start = None if not page else (scan_to - 1 if descending else scan_to + 1)
        if clock() >= deadline:
            break
    return chosen, cursor


async def retention_gap(log: EventLog, after: int) -> dict[str, Any] | None:
    """What a reader resuming after `after` missed to retention: None when nothing, else
    `{after, retained_from, reason}` (events below `retained_from` are gone except those
    something still needed, which are still listed)."""
    retained_from = await log.retained_from()
    if after >= retained_from - 1:
        return None
    return {"after": after, "retained_from": retained_from, "reason": "retention"}


@routes.get("/v1/events/{seq:[0-9]+}")
async def get_event(request: web.Request) -> web.Response:
    """One stored event with the routes and targets it hit."""
    broker = broker_of(request)
    seq = id_param(request, "seq")
    stored = await broker.store.events.get(seq)
    if stored is None:
        retained_from = await broker.store.events.retained_from()
        if seq < retained_from and seq <= await broker.store.events.last_seq():
            raise Gone(f"event {seq} was removed by retention; the retained log starts at"
                       f" seq {retained_from}", retained_from=retained_from)
        raise NotFound(f"no event with seq {seq}")
    targets = await broker.store.events.targets_of(seq)
    doc = stored.to_dict()
    doc["targets"] = [{"route": t.route, "target": t.target, **({"detail": t.detail}
                       if t.detail else {})} for t in targets]
    return json_response(doc)
