"""Bounds on what clients hold open: streams (total and per token) and connections.

Streams and waiting pull receives take a slot for as long as they are open; a request
past a bound is refused with a problem saying which bound and when to retry. Connections
are counted below aiohttp, where they are accepted: past `max_connections` a new one is
answered 503 at once and closed, before anything is parsed or allocated for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import orjson
from aiohttp import web

from broker.errors import TooManyRequests, Unavailable

log = logging.getLogger(__name__)

RETRY_AFTER_S = 5
"""Seconds a refused stream or connection is told to wait (streams end when their
clients go; a short wait lets a reconnecting client find its old slot free)."""


class StreamSlots:
    """Counts open streams, in total and per principal (a token's name)."""

    def __init__(self, total: int, per_principal: int) -> None:
        self.total = total
        self.per_principal = per_principal
        self.refused = 0
        self.behind = 0
        """Streams whose live events wait for their socket to drain right now."""
        self._held: Counter[str] = Counter()
        self._count = 0

    @property
    def open(self) -> int:
        return self._count

    @contextmanager
    def hold(self, principal: str, what: str = "stream") -> Iterator[None]:
        """A slot for `principal` while the block runs; 503 when the broker is at
        `max_streams`, 429 when this principal is at `max_streams_per_principal`."""
        if self._count >= self.total:
            self.refused += 1
            raise Unavailable(
                f"the broker has {self.total} streams and waiting receives open"
                f" (max_streams); retry later", limit=self.total, setting="max_streams",
                retry_after=RETRY_AFTER_S)
        if self._held[principal] >= self.per_principal:
            self.refused += 1
            raise TooManyRequests(
                f"{principal!r} has {self.per_principal} streams and waiting receives open"
                f" (max_streams_per_principal); close one or retry later",
                limit=self.per_principal, setting="max_streams_per_principal",
                retry_after=RETRY_AFTER_S)
        self._held[principal] += 1
        self._count += 1
        try:
            yield
        finally:
            self._count -= 1
            self._held[principal] -= 1
            if not self._held[principal]:
                del self._held[principal]


def _refusal(limit: int) -> bytes:
    body = orjson.dumps({
        "type": "https://opsbus.dev/problems/unavailable", "title": "Service unavailable",
        "status": 503, "detail": f"the broker has {limit} connections open (max_connections);"
                                 " retry later", "setting": "max_connections",
        "limit": limit})
    return (b"HTTP/1.1 503 Service Unavailable\r\n"
            b"Content-Type: application/problem+json\r\n"
            b"Retry-After: %d\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
            % (RETRY_AFTER_S, len(body), body))


class _Refuse(asyncio.Protocol):
    """Answers 503 and closes. The request is read and discarded meanwhile: closing a
    socket with unread input resets it, and the client would lose the answer."""

    LINGER_S = 1.0

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's does not derive from asyncio.Transport).
        self.transport = transport = cast(asyncio.Transport, transport)
        transport.write(self.answer)
        if transport.can_write_eof():
            transport.write_eof()  # the answer is complete; the client closes its end
        else:
            transport.close()
        asyncio.get_running_loop().call_later(self.LINGER_S, transport.abort)

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> bool:
        if self.transport is not None:
            self.transport.close()
        return False


class ConnectionGate:
    """The protocol factory the listening socket uses: aiohttp's server while fewer than
    `limit` connections are open, a 503 answer otherwise."""

    def __init__(self, server: web.Server, limit: int) -> None:
        self.server = server
        self.limit = limit
        self.refused = 0
        self._answer = _refusal(limit)

    @property
    def open(self) -> int:
        return len(self.server.connections)

    def __call__(self) -> asyncio.BaseProtocol:
        if len(self.server.connections) >= self.limit:
            self.refused += 1
            if self.refused == 1 or self.refused % 1000 == 0:
                log.warning("refused a connection: %d open (max_connections); %d refused"
                            " so far", self.limit, self.refused)
            return _Refuse(self._answer)
        protocol: asyncio.BaseProtocol = self.server()
        return protocol


class GatedSite(web.TCPSite):
    """A TCP site whose connections pass through a `ConnectionGate` (reported on by
    `bounds`)."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, *, limit: int,
                 bounds: HttpBounds | None = None, **options: Any) -> None:
        super().__init__(runner, host, port, **options)
        self.limit = limit
        self.bounds = bounds

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site; TCPSite's would listen
        server = self._runner.server
        assert server is not None
        gate = ConnectionGate(server, self.limit)
        if self.bounds is not None:
            self.bounds.gate = gate
        self._server = await asyncio.get_running_loop().create_server(
            gate, self._host, self._port, ssl=self._ssl_context,
            backlog=self._backlog, reuse_address=self._reuse_address,
            reuse_port=self._reuse_port)


class HttpBounds:
    """The bounds of one broker's HTTP edge, for handlers (streams) and metrics."""

    def __init__(self, max_streams: int, max_streams_per_principal: int) -> None:
        self.streams = StreamSlots(max_streams, max_streams_per_principal)
        self.gate: ConnectionGate | None = None
        """Set when the broker listens through `GatedSite` (`opsbus serve`, `up`)."""


BOUNDS = web.AppKey("bounds", HttpBounds)


def bounds_of(request: web.Request) -> HttpBounds:
    return request.app[BOUNDS]
