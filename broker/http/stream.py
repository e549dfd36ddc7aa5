"""`/v1/stream`: Server-Sent Events of committed events, resumable by seq."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import HttpVersion11, web

from broker.errors import BadRequest
from broker.follow import follow
from broker.http.events import query_filter
from broker.http.util import MAX_ID, broker_of
from broker.store.records import StoredEvent

routes = web.RouteTableDef()
log = logging.getLogger(__name__)

DIRECT_HIGH_WATER = 256 * 1024
"""Bytes queued on a stream's socket beyond which live events stop being written from
the fan-out and the stream catches up with awaited (back-pressured) writes instead."""


def resume_point(request: web.Request, head: int) -> int:
    """`Last-Event-ID` wins over `?after=`; neither means "from now on"."""
    for raw, what in ((request.headers.get("Last-Event-ID"), "Last-Event-ID"),
                      (request.query.get("after"), "after")):
        if raw not in (None, ""):
            try:
                value = int(raw)
            except ValueError:
                raise BadRequest(f"{what} must be an event seq (an integer), got {raw!r}"
                                 ) from None
            if not 0 <= value <= MAX_ID:
                raise BadRequest(f"{what} must be an event seq between 0 and {MAX_ID}")
            return value
    return head


class StalledWriteWatchdog:
    """Closes the connection of a client that accepts no bytes for `timeout` seconds
    (it resumes by Last-Event-ID when it comes back). One periodic timer per stream
    instead of a timeout around every write, which the fan-out hot path cannot afford."""

    def __init__(self, request: web.Request, timeout: float) -> None:
        self.request = request
        self.timeout = timeout
        self.loop = asyncio.get_running_loop()
        self.writing_since: float | None = None
        self.fired = False
        self._handle = self.loop.call_later(timeout / 2, self._check)

    def __enter__(self) -> None:
        self.writing_since = self.loop.time()

    def __exit__(self, *exc: object) -> None:
        self.writing_since = None

    def _check(self) -> None:
        started = self.writing_since
        if started is not None and self.loop.time() - started > self.timeout:
            self.fired = True
            if self.request.transport is not None:
                self.request.transport.abort()
            return
        self._handle = self.loop.call_later(self.timeout / 2, self._check)

    def cancel(self) -> None:
        self._handle.cancel()


@routes.get("/v1/stream")
async def stream(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events of committed events; resumes after Last-Event-ID or ?after=."""
    broker = broker_of(request)
    flt = query_filter(request)
    after = resume_point(request, broker.hub.head)
    settings = broker.settings
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream",
        "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no",
    })
    chunked = request.version >= HttpVersion11
    if chunked:
        response.enable_chunked_encoding()
    await response.prepare(request)
    await response.write(b"retry: 1000\n: opsbus stream after %d\n\n" % after)
    keep = (lambda e: flt.matches(e.event)) if flt is not None else None
    watchdog = StalledWriteWatchdog(request, settings.stream_write_timeout_s)
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

    try:
        async for batch in follow(broker.store, broker.hub, after, buffer=settings.stream_buffer,
                                  heartbeat=settings.heartbeat_s, keep=keep, direct=direct):
            chunk = b"".join(e.sse_frame() for e in batch) if batch else b": heartbeat\n\n"
            with watchdog:
                await response.write(chunk)
    except (ConnectionResetError, ConnectionError):
        if watchdog.fired:
            log.info("dropped a stream client that stopped reading")
    finally:
        watchdog.cancel()
    return response
