"""A lean HTTP/1.1 client for webhook deliveries to plain-http receivers.

A webhook call is always the same shape: one POST with a body already rendered, no
redirects followed, no cookies, no proxy, an answer that is mostly a status line. Made
with aiohttp's client session, its general machinery (request and response objects,
cookie filtering, per-request timers and payload wrappers) was most of the broker's
work per delivery; here a request is one buffer written to a kept-alive connection and
the answer is parsed as it arrives.

The outbound guard is the one every other call uses: metadata host names are refused
before any lookup, a name is resolved with `GuardedResolver` (every address it resolves
to is checked), and each address is checked again before it is connected to. Calls that
need more (https, credentials in the URL) go through `broker.outbound.send` instead:
`WebhookClient.handles` says which.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yarl
from aiohttp.http import SERVER_SOFTWARE

from broker.outbound import (
    DEFAULT_BODY_LIMIT,
    GuardedResolver,
    OutboundRefused,
    OutboundRequest,
    OutboundResult,
    check_host,
    literal_address,
    refusal,
    retry_after_seconds,
)

KEEPALIVE_S = 15.0
"""An idle connection older than this is closed rather than reused (aiohttp's default):
a receiver that closes idle connections sooner could otherwise close one just as a
request is written to it."""
HEAD_LIMIT = 64 * 1024
"""The most bytes a response's status line and headers may take."""
_NO_BODY = frozenset({204, 304})


class BadResponse(Exception):
    """The receiver's answer is not HTTP/1.x this client can read."""


class ServerDisconnectedError(ConnectionError):
    """The connection closed before a whole answer arrived (aiohttp's name for it)."""

    def __init__(self) -> None:
        super().__init__("Server disconnected")


@dataclass(frozen=True, slots=True)
class _Target:
    """What every call to one URL shares, worked out once."""

    key: tuple[str, int]
    host: str
    port: int
    head: bytes
    """The request line and Host header."""


@dataclass(slots=True)
class _Answer:
    status: int
    reason: str
    content_type: str | None
    retry_after: str | None
    body: bytes
    truncated: bool
    keep_alive: bool


class _Connection(asyncio.Protocol):
    """One kept-alive connection; reads one answer at a time."""

    def __init__(self, body_limit: int) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._limit = body_limit
        self._buffer = bytearray()
        self._waiter: asyncio.Future[_Answer] | None = None
        self._head: tuple[int, str, dict[str, str], bool] | None = None
        self._until_close = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self._until_close and self._head is not None:
            status, reason, headers, _ = self._head
            self._answer(status, reason, headers, bytes(self._buffer), False)
        else:
            waiter.set_exception(ServerDisconnectedError())

    def data_received(self, data: bytes) -> None:
        if self._waiter is None or self._waiter.done():
            self.close()  # nothing was asked: the connection is not in a known state
            return
        self._buffer += data
        try:
            self._parse()
        except BadResponse as exc:
            self._waiter.set_exception(exc)
            self.close()

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost settles a pending answer

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def exchange(self, request: bytes) -> asyncio.Future[_Answer]:
        assert self.transport is not None
        self._waiter = asyncio.get_running_loop().create_future()
        self._buffer.clear()
        self._head = None
        self._until_close = False
        self.transport.write(request)
        return self._waiter

    def _parse(self) -> None:
        buf = self._buffer
        while self._head is None:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > HEAD_LIMIT:
                    raise BadResponse("response headers too large")
                return
            head = _parse_head(bytes(buf[:end]))
            del buf[:end + 4]
            if 100 <= head[0] < 200 and head[0] != 101:
                continue  # an interim answer (100 Continue): the final one follows
            self._head = head
        status, reason, headers, keep_alive = self._head
        if status < 200:  # 101 Switching Protocols: nothing more this client can read
            self._answer(status, reason, headers, b"", False)
            return
        if status in _NO_BODY:
            self._answer(status, reason, headers, b"", False, keep_alive and not buf)
            return
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self._chunked(status, reason, headers, keep_alive)
            return
        length_text = headers.get("content-length")
        if length_text is not None:
            if not (length_text.isascii() and length_text.isdigit()):
                raise BadResponse(f"invalid Content-Length {length_text!r}")
            length = int(length_text)
            if length > self._limit and len(buf) > self._limit:
                # Enough to tell it is truncated; the rest is not read.
                self._answer(status, reason, headers, bytes(buf[:self._limit + 1]), True,
                             False)
            elif len(buf) >= length:
                self._answer(status, reason, headers, bytes(buf[:length]), False,
                             keep_alive and len(buf) == length)
            return
        # No length: the body runs to the end of the connection.
        self._until_close = True
        if len(buf) > self._limit:
            self._answer(status, reason, headers, bytes(buf[:self._limit + 1]), True, False)

    def _chunked(self, status: int, reason: str, headers: dict[str, str],
                 keep_alive: bool) -> None:
        buf = self._buffer
        body = bytearray()
        pos = 0
        while True:
            line_end = buf.find(b"\r\n", pos)
            if line_end < 0:
                if len(buf) - pos > HEAD_LIMIT:
                    raise BadResponse("chunk size line too long")
                return
            size_text = bytes(buf[pos:line_end]).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise BadResponse(f"invalid chunk size {size_text!r}") from None
            if size < 0:
                raise BadResponse("invalid chunk size")
            if size == 0:
                # Trailers (if any), then an empty line.
                trailers_end = buf.find(b"\r\n", line_end + 2)
                while trailers_end >= 0 and trailers_end != line_end + 2:
                    line_end = trailers_end
                    trailers_end = buf.find(b"\r\n", line_end + 2)
                if trailers_end < 0:
                    return
                self._answer(status, reason, headers, bytes(body), False,
                             keep_alive and trailers_end + 2 == len(buf))
                return
            start = line_end + 2
            if len(buf) < start + size + 2:
                if len(body) + len(buf) - start > self._limit:
                    body += buf[start:]
                    self._answer(status, reason, headers, bytes(body[:self._limit + 1]),
                                 True, False)
                return
            if buf[start + size:start + size + 2] != b"\r\n":
                raise BadResponse("chunk not followed by CRLF")
            body += buf[start:start + size]
            if len(body) > self._limit:
                self._answer(status, reason, headers, bytes(body[:self._limit + 1]), True,
                             False)
                return
            pos = start + size + 2

    def _answer(self, status: int, reason: str, headers: dict[str, str], body: bytes,
                truncated: bool, keep_alive: bool = False) -> None:
        waiter = self._waiter
        self._waiter = None
        if not keep_alive:
            self.close()
        if waiter is not None and not waiter.done():
            waiter.set_result(_Answer(status, reason, headers.get("content-type"),
                                      headers.get("retry-after"), body, truncated,
                                      keep_alive))


def _parse_head(head: bytes) -> tuple[int, str, dict[str, str], bool]:
    """(status, reason, headers by lower-case name (the first of each), keep-alive)."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or parts[0] not in ("HTTP/1.1", "HTTP/1.0") \
            or not (len(parts[1]) == 3 and parts[1].isascii() and parts[1].isdigit()):
        raise BadResponse(f"invalid status line {lines[0][:100]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise BadResponse(f"invalid header line {line[:100]!r}")
        headers.setdefault(name.lower(), value.strip())
    connection = headers.get("connection", "").lower()
    keep_alive = "close" not in connection if parts[0] == "HTTP/1.1" \
        else "keep-alive" in connection
    return int(parts[1]), parts[2].strip() if len(parts) > 2 else "", headers, keep_alive


@functools.lru_cache(maxsize=256)
def _target(url: str) -> _Target | None:
    """The parts of a plain-http URL this client calls; None for one it leaves to the
    general client (https, credentials, not parseable)."""
    try:
        parsed = yarl.URL(url, encoded=True)
    except ValueError:
        return None
    host = parsed.raw_host
    if parsed.scheme != "http" or not host or parsed.raw_user is not None \
            or parsed.raw_password is not None or parsed.port is None:
        return None
    authority = f"[{host}]" if ":" in host else host
    if not parsed.is_default_port():
        authority += f":{parsed.port}"
    path = parsed.raw_path_qs or "/"
    if not (path + authority).isascii() or any(ch in path + authority for ch in " \r\n\0"):
        return None  # left to the general client, which refuses or encodes it
    return _Target((host, parsed.port), host, parsed.port,
                   f"POST {path} HTTP/1.1\r\nHost: {authority}\r\n".encode("ascii"))


_AUTO = (("user-agent", f"User-Agent: {SERVER_SOFTWARE}\r\n"),
         ("accept", "Accept: */*\r\n"))
"""Headers sent unless the request sets them (as aiohttp's client does)."""
_SET_HERE = frozenset({"host", "content-length", "transfer-encoding"})
"""Headers the client writes itself, whatever the request says."""


def _render(target: _Target, request: OutboundRequest) -> bytes:
    """The whole request as written; ValueError for a header that would break it."""
    headers = request.headers
    lines = []
    names = set()
    for name, value in headers.items():
        lower = name.lower()
        if lower not in _SET_HERE:
            names.add(lower)
            lines.append(f"{name}: {value}\r\n")
    for lower, line in _AUTO:
        if lower not in names:
            lines.append(line)
    body = request.body
    if body and "content-type" not in names:
        lines.append("Content-Type: application/octet-stream\r\n")
    text = "".join(lines)
    # Each line ends in the one CR LF put there: a CR or LF inside a name or value
    # (which would start a header of its own) shows in the counts.
    if text.count("\n") != len(lines) or text.count("\r") != len(lines):
        raise ValueError("a header name or value holds a line break")
    return b"%s%sContent-Length: %d\r\n\r\n%s" % (target.head, text.encode(), len(body), body)


class WebhookClient:
    """Kept-alive connections to plain-http receivers, at most `limit` open at once
    (the dispatcher's concurrency, as the general client's pool)."""

    def __init__(self, allow_private: bool, limit: int,
                 body_limit: int = DEFAULT_BODY_LIMIT) -> None:
        self.allow_private = allow_private
        self._limit = max(1, limit)
        self._body_limit = body_limit
        self._resolver = GuardedResolver(allow_private)
        self._idle: dict[tuple[str, int], list[_Connection]] = {}
        self._open = 0
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._closed = False

    @staticmethod
    def handles(request: OutboundRequest) -> bool:
        """Whether this client makes `request` (a POST to a plain-http URL)."""
        if request.method != "POST":
            return False
        return _target(request.url) is not None

    async def send(self, request: OutboundRequest, *, timeout: float,
                   now: Callable[[], float]) -> OutboundResult:
        """Make the call; every failure becomes a result, as `broker.outbound.send`.
        `now` gives the Unix time an HTTP-date `Retry-After` is measured from."""
        started = time.perf_counter()

        def elapsed() -> float:
            return round((time.perf_counter() - started) * 100_000) / 100

        target = _target(request.url)
        assert target is not None
        try:
            check_host(target.host)
            wire = _render(target, request)
            async with asyncio.timeout(timeout):
                answer = await self._exchange(target, wire)
        except OutboundRefused as exc:
            return OutboundResult(None, elapsed(), error=str(exc), refused=True)
        except TimeoutError:
            return OutboundResult(None, elapsed(), error=f"timed out after {timeout:g}s")
        except ValueError as exc:
            return OutboundResult(None, elapsed(), error=f"bad request: {exc}", refused=True)
        except (OSError, BadResponse) as exc:
            return OutboundResult(None, elapsed(), error=f"{type(exc).__name__}: {exc}"[:500])
        status = answer.status
        return OutboundResult(
            status, elapsed(), answer.body[:self._body_limit].decode(errors="replace"),
            answer.truncated, answer.content_type,
            None if status < 400 else f"HTTP {status} {answer.reason}".strip(),
            retry_after=None if answer.retry_after is None
            else retry_after_seconds(answer.retry_after, now()))

    async def _exchange(self, target: _Target, wire: bytes) -> _Answer:
        conn = await self._acquire(target)
        reusable = False
        try:
            answer = await conn.exchange(wire)
            reusable = answer.keep_alive and not conn.closed
            return answer
        finally:
            self._release(target, conn, reusable)

    async def _acquire(self, target: _Target) -> _Connection:
        now = time.perf_counter()
        idle = self._idle.get(target.key)
        while idle:
            conn = idle.pop()
            if not conn.closed and now - conn.idle_since < KEEPALIVE_S:
                return conn
            self._drop(conn)
        while self._open >= self._limit:
            if not self._evict_one():
                waiter = asyncio.get_running_loop().create_future()
                self._waiting.append(waiter)
                try:
                    await waiter
                except BaseException:
                    if waiter.done() and not waiter.cancelled():
                        self._wake_one()  # pass the turn on
                    raise
                idle = self._idle.get(target.key)
                while idle:
                    conn = idle.pop()
                    if not conn.closed:
                        return conn
                    self._drop(conn)
        self._open += 1
        try:
            return await self._connect(target)
        except BaseException:
            self._open -= 1
            self._wake_one()
            raise

    def _release(self, target: _Target, conn: _Connection, reusable: bool) -> None:
        if reusable and not self._closed:
            conn.idle_since = time.perf_counter()
            self._idle.setdefault(target.key, []).append(conn)
        else:
            conn.close()
            self._open -= 1
        self._wake_one()

    def _drop(self, conn: _Connection) -> None:
        """Close a connection taken from the idle lists."""
        conn.close()
        self._open -= 1

    def _evict_one(self) -> bool:
        """Close an idle connection to make room for one to another receiver."""
        for idle in self._idle.values():
            if idle:
                self._drop(idle.pop(0))
                return True
        return False

    def _wake_one(self) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def _connect(self, target: _Target) -> _Connection:
        loop = asyncio.get_running_loop()
        literal = literal_address(target.host)
        addresses: list[tuple[int, str]]
        if literal is not None:
            addresses = [(socket.AF_INET6 if literal.version == 6 else socket.AF_INET,
                          str(literal))]
        else:
            answers = await self._resolver.resolve(target.host, target.port,
                                                   socket.AF_UNSPEC)
            addresses = [(int(a["family"]), str(a["host"])) for a in answers]
        last: OSError | None = None
        for family, address in addresses:
            reason = refusal(address.split("%", 1)[0], self.allow_private)
            if reason:
                raise OutboundRefused(f"refused to connect: {reason}")
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sockaddr: Any = (address, target.port) if family == socket.AF_INET \
                    else (address, target.port, 0, 0)
                await loop.sock_connect(sock, sockaddr)
                _, conn = await loop.create_connection(
                    functools.partial(_Connection, self._body_limit), sock=sock)
                return conn
            except OSError as exc:
                sock.close()
                last = exc
            except BaseException:
                sock.close()
                raise
        raise OSError(f"Cannot connect to host {target.host}:{target.port}"
                      f" [{last.strerror or last if last else 'no address'}]")

    async def close(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
        await self._resolver.close()
