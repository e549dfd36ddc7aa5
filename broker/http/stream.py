"""`/v1/stream`: Server-Sent Events of committed events, resumable by seq."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from broker.errors import BadRequest
from broker.follow import follow
from broker.http.events import query_filter
from broker.http.util import broker_of

routes = web.RouteTableDef()
log = logging.getLogger(__name__)


def resume_point(request: web.Request, head: int) -> int:
    """`Last-Event-ID` wins over `?after=`; neither means "from now on"."""
    for raw, what in ((request.headers.get("Last-Event-ID"), "Last-Event-ID"),
                      (request.query.get("after"), "after")):
        if raw not in (None, ""):
            try:
                value = int(raw)  # type: ignore[arg-type]
            except ValueError:
                raise BadRequest(f"{what} must be an event seq (an integer), got {raw!r}"
                                 ) from None
            if value < 0:
                raise BadRequest(f"{what} must not be negative")
            return value
    return head


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
    await response.prepare(request)
    await response.write(b"retry: 1000\n: opsbus stream after %d\n\n" % after)
    keep = (lambda e: flt.matches(e.event)) if flt is not None else None
    timeout = settings.stream_write_timeout_s
    try:
        async for batch in follow(broker.store, broker.hub, after, buffer=settings.stream_buffer,
                                  heartbeat=settings.heartbeat_s, keep=keep):
            chunk = b"".join(e.sse_frame() for e in batch) if batch else b": heartbeat\n\n"
            # A client that stops reading fills the socket buffer; after `timeout` it is
            # dropped, and resumes by Last-Event-ID when it comes back.
            await asyncio.wait_for(response.write(chunk), timeout)
    except TimeoutError:
        log.info("dropping a stream client that stopped reading")
        if request.transport is not None:
            request.transport.close()
    except (ConnectionResetError, ConnectionError):
        pass
    return response
