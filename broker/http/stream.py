"""`/v1/stream`: Server-Sent Events of committed events, resumable by seq."""

from __future__ import annotations

import logging

import orjson
from aiohttp import HttpVersion11, web

from broker.bus.log import StoredEvent
from broker.clock import Clock
from broker.errors import BadRequest
from broker.follow import follow
from broker.http.events import retention_gap
from broker.http.filters import request_filter, warnings_header
from broker.http.util import broker_of
from broker.metrics_core import SSE_READERS, STREAM_DROPS
from broker.numbers import NumberError, whole_number

routes = web.RouteTableDef()
log = logging.getLogger(__name__)

DIRECT_HIGH_WATER = 256 * 1024
"""Bytes queued on a stream's socket beyond which live events stop being written from
the fan-out and the stream catches up with awaited (back-pressured) writes instead."""


def resume_point(request: web.Request, head: int) -> int:
    """`Last-Event-ID` wins over `?after=`; neither means "from now on"."""
    for raw, what in ((request.headers.get("Last-Event-ID"), "Last-Event-ID"),
                      (request.query.get("after"), "after")):
        if raw is not None and raw != "":
            try:
                return whole_number(raw)
            except NumberError as exc:
                raise BadRequest(f"{what} is an event seq: it {exc}", parameter=what) from None
    return head


class StalledWriteWatchdog:
    """Closes the connection of a client that accepts no bytes for `timeout` seconds
    (it resumes by Last-Event-ID when it comes back). One periodic timer per stream
    instead of a timeout around every write, which the fan-out hot path cannot afford.
    A stream is stalled when an awaited write has not finished, or when bytes queued on
    its socket have not started to drain (live events are written without awaiting)."""

    def __init__(self, request: web.Request, timeout: float, clock: Clock) -> None:
        self.request = request
        self.timeout = timeout
        self.clock = clock
        self.writing_since: float | None = None
        self.fired = False
        self._queued = 0
        self._queued_since: float | None = None
        self._handle = clock.call_later(timeout / 2, self._check)

    def __enter__(self) -> None:
        self.writing_since = self.clock.monotonic()

    def __exit__(self, *exc: object) -> None:
        self.writing_since = None

    def _check(self) -> None:
        now = self.clock.monotonic()
        transport = self.request.transport
        queued = transport.get_write_buffer_size() if transport is not None else 0
        if queued and queued >= self._queued:
            self._queued_since = self._queued_since or now
        else:
            self._queued_since = None
        self._queued = queued
        for since in (self.writing_since, self._queued_since):
            if since is not None and now - since > self.timeout:
                self.fired = True
                if transport is not None:
                    transport.abort()
                return
        self._handle = self.clock.call_later(self.timeout / 2, self._check)

    def cancel(self) -> None:
        self._handle.cancel()


@routes.get("/v1/stream")
async def stream(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events of committed events; resumes after Last-Event-ID or ?after=."""
    broker = broker_of(request)
    flt = await request_filter(request)
    after = resume_point(request, broker.hub.head)
    settings = broker.settings
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream",
        "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no",
        **warnings_header(flt),
    })
    chunked = request.version >= HttpVersion11
    if chunked:
        response.enable_chunked_encoding()
    await response.prepare(request)
    # The opening block names the point the stream starts after as its `id`: a client
    # that reconnects before its first event (an EventSource sends Last-Event-ID from
    # it) resumes from there instead of from "now", so nothing published meanwhile is
    # lost. A block without data dispatches no message; it only sets the last id.
    await response.write(b": opsbus stream after %d\nretry: 1000\nid: %d\n\n" % (after, after))
    # Resuming below the retained range: say so before the first event, in a message of
    # its own type (no `id`, so the resume point stays where it is).
    gap = await retention_gap(broker.store.events, after)
    if gap is not None:
        await response.write(b"event: gap\ndata: %s\n\n" % orjson.dumps(gap))
    keep = (lambda e: flt.matches(e.event)) if flt is not None else None
    clock = broker.clock
    watchdog = StalledWriteWatchdog(request, settings.stream_write_timeout_s, clock)
    transport = request.transport

    def write_now(data: bytes) -> bool:
        """Write without awaiting (framed as the response's chunked body); False when
        the socket buffer is full, so the caller falls back to awaited writes."""
        if transport is None or transport.is_closing():
            return False
        transport.write(b"%x\r\n%b\r\n" % (len(data), data) if chunked else data)
        return transport.get_write_buffer_size() < DIRECT_HIGH_WATER

    def direct(batch: list[StoredEvent]) -> bool:
        return write_now(b"".join(e.sse_frame() for e in batch))

    quiet_since = clock.monotonic()
    # Woken at least this often even when idle: to send heartbeats, and to notice a
    # connection the watchdog closed while live events were flowing without awaits.
    tick = min(settings.heartbeat_s, settings.stream_write_timeout_s / 2)
    readers = broker.metrics.gauge(*SSE_READERS)
    readers.inc()
    try:
        async for batch in follow(broker.store.events, broker.hub, after,
                                  buffer=settings.stream_buffer, heartbeat=tick, keep=keep,
                                  direct=direct):
            if not batch:
                if transport is None or transport.is_closing():
                    break
                if clock.monotonic() - quiet_since < settings.heartbeat_s:
                    continue
            chunk = b"".join(e.sse_frame() for e in batch) if batch else b": heartbeat\n\n"
            quiet_since = clock.monotonic()
            with watchdog:
                await response.write(chunk)
    except (ConnectionResetError, ConnectionError):
        pass  # the client went away (or the watchdog closed it); it resumes by seq
    finally:
        readers.dec()
        watchdog.cancel()
        if watchdog.fired:
            log.info("dropped a stream client that stopped reading")
            broker.metrics.counter(*STREAM_DROPS).inc()
    return response
