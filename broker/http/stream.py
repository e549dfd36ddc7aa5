"""`/v1/stream`: Server-Sent Events of committed events, resumable by seq."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import deque

import orjson
from aiohttp import HttpVersion11, web

from broker.auth.principal import principal_of
from broker.bus.log import StoredEvent
from broker.clock import Clock
from broker.core import Broker
from broker.errors import BadRequest
from broker.filters import Filter
from broker.follow import follow
from broker.http.bounds import StreamSlots, bounds_of
from broker.http.events import retention_gap
from broker.http.filters import request_filter, warnings_header
from broker.http.util import broker_of
from broker.memory import release_soon, release_when_flushed
from broker.metrics_core import SSE_READERS, STREAM_DROPS
from broker.numbers import NumberError, whole_number

routes = web.RouteTableDef()
log = logging.getLogger(__name__)

SOCKET_HIGH_WATER = 64 * 1024
"""Bytes queued on a stream's socket beyond which live events wait, shared, in the
stream's pending list rather than being copied into the socket's buffer."""

CLOSED_CHECK_S = 1.0
"""Longest an idle stream whose client has gone keeps its slot (max_streams)."""

CATCH_UP_PAGE = 100
"""Events read from the log at a time by a stream catching up: the most a reader
waiting for its socket to drain holds beside the bytes queued for it."""


class SharedFrames:
    """The bytes of the batch being fanned out, framed once for every stream that
    writes it whole (no filter): the hub hands all of them the same list, and 500
    streams would otherwise each join and frame their own copy."""

    def __init__(self) -> None:
        self._batch: list[StoredEvent] | None = None
        self._bytes: dict[bool, bytes] = {}

    def framed(self, batch: list[StoredEvent], chunked: bool) -> bytes:
        if batch is not self._batch:
            self._batch = batch  # held, so its id cannot be reused by another list
            self._bytes = {}
        data = self._bytes.get(chunked)
        if data is None:
            data = b"".join(e.sse_frame() for e in batch)
            if chunked:
                data = b"%x\r\n%b\r\n" % (len(data), data)
            self._bytes[chunked] = data
        return data


LIVE_FRAMES = SharedFrames()


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
    slots = bounds_of(request).streams
    with slots.hold(principal_of(request).name):
        return await _stream(request, broker, slots, flt, after)


async def _stream(request: web.Request, broker: Broker, slots: StreamSlots,
                  flt: Filter | None, after: int) -> web.StreamResponse:
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
    sock = request.transport.get_extra_info("socket") if request.transport else None
    if sock is not None:
        with contextlib.suppress(OSError):  # not a TCP socket (tests, other transports)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF,
                            settings.stream_socket_buffer_bytes)
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
    limit = settings.stream_buffer_bytes
    behind = False
    # Live bytes waiting for the socket to drain: the very bytes objects every stream
    # of the fan-out shares, so a reader that falls behind holds references, not copies.
    pending: deque[bytes] = deque()
    pending_bytes = 0
    flusher: asyncio.Task[None] | None = None

    def frame(data: bytes) -> bytes:
        return b"%x\r\n%b\r\n" % (len(data), data) if chunked else data

    waiting = False  # counted in opsbus_streams_behind

    def set_waiting(now: bool) -> None:
        nonlocal waiting
        if now != waiting:
            slots.behind += 1 if now else -1
            waiting = now

    def clear_pending() -> None:
        nonlocal pending_bytes
        pending.clear()
        pending_bytes = 0
        set_waiting(False)

    def drop() -> None:
        """The reader fell too far behind: what is queued is all it costs. It gets a
        last comment and the end of the body once it reads them, and is cut off if it
        does not within stream_write_timeout_s; it resumes by Last-Event-ID."""
        nonlocal behind
        behind = True
        clear_pending()
        if flusher is not None:
            flusher.cancel()
        if transport is None or transport.is_closing():
            return
        transport.write(frame(b": opsbus: this reader fell more than %d bytes behind"
                              b" (stream_buffer_bytes) and is dropped; reconnect with"
                              b" Last-Event-ID to resume\n\n" % limit)
                        + (b"0\r\n\r\n" if chunked else b""))
        transport.close()
        release_when_flushed(transport)
        clock.call_later(settings.stream_write_timeout_s, cut_off)

    def cut_off() -> None:
        if transport is not None:
            transport.abort()  # nothing if the client read to the end and it closed
        release_soon()

    async def flush() -> None:
        """Hand pending live bytes to the socket as it drains, at most
        SOCKET_HIGH_WATER at a time (a reader that stalls now holds no more copied)."""
        nonlocal flusher, pending_bytes
        try:
            while pending and transport is not None and not transport.is_closing():
                await request.writer.drain()
                parts: list[bytes] = []
                size = 0
                while pending and size < SOCKET_HIGH_WATER:
                    parts.append(pending.popleft())
                    size += len(parts[-1])
                pending_bytes -= size
                if not pending:
                    clear_pending()
                transport.write(b"".join(parts))
        except ConnectionError:
            pass  # the client went away; the stream ends on its next tick
        finally:
            flusher = None

    live = False  # live events went out since the stream last looked (no heartbeat due)

    def direct(batch: list[StoredEvent]) -> bool:
        """Write a live batch without awaiting (this runs inside the hub's fan-out);
        False, and the reader dropped, once more than stream_buffer_bytes wait for it."""
        nonlocal flusher, pending_bytes, live
        if transport is None or transport.is_closing():
            return False
        live = True
        # Unfiltered streams are handed the hub's own batch: its bytes are shared.
        data = (LIVE_FRAMES.framed(batch, chunked) if keep is None
                else frame(b"".join(e.sse_frame() for e in batch)))
        queued = transport.get_write_buffer_size()
        if not pending and queued <= SOCKET_HIGH_WATER:
            transport.write(data)
            return True
        set_waiting(True)
        pending.append(data)
        pending_bytes += len(data)
        if queued + pending_bytes <= limit:
            if flusher is None:
                flusher = asyncio.get_running_loop().create_task(flush())
            return True
        drop()
        return False

    quiet_since = clock.monotonic()
    # Woken at least this often even when idle: to send heartbeats, and to notice a
    # connection the client or the watchdog closed (its stream slot is given back then).
    tick = min(settings.heartbeat_s, settings.stream_write_timeout_s / 2, CLOSED_CHECK_S)
    readers = broker.metrics.gauge(*SSE_READERS)
    readers.inc()
    try:
        async for batch in follow(broker.store.events, broker.hub, after,
                                  buffer=settings.stream_buffer, heartbeat=tick, keep=keep,
                                  direct=direct, end_when_full=True, page=CATCH_UP_PAGE):
            if not batch:
                if transport is None or transport.is_closing():
                    break
                if live:  # written from the fan-out: the stream was not quiet
                    live = False
                    quiet_since = clock.monotonic()
                if pending or clock.monotonic() - quiet_since < settings.heartbeat_s:
                    continue
            chunk = b"".join(e.sse_frame() for e in batch) if batch else b": heartbeat\n\n"
            del batch  # a slow reader holds the bytes queued for it, not the events
            quiet_since = clock.monotonic()
            if transport is None or transport.is_closing():
                break
            transport.write(frame(chunk))
            del chunk
            # Catching up from the log: the next page is read once this one has left.
            with watchdog:
                await request.writer.drain()
    except (ConnectionResetError, ConnectionError):
        pass  # the client went away (or the watchdog closed it); it resumes by seq
    finally:
        if flusher is not None:
            flusher.cancel()
        clear_pending()
        readers.dec()
        watchdog.cancel()
        release_soon()  # what was queued for this reader is freed as its connection ends
        if watchdog.fired or behind:
            log.info("dropped a stream client that %s", "fell behind" if behind
                     else "stopped reading")
            broker.metrics.counter(*STREAM_DROPS).inc()
    return response
