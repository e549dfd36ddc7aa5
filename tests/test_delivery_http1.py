"""The webhook client for plain-http receivers: what it writes, how it reads each shape
of answer, when it reuses a connection, and the outbound guard."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest

from broker.delivery.http1 import WebhookClient
from broker.outbound import OutboundRequest


class Scripted:
    """A raw TCP server: reads one request at a time (head and Content-Length body) and
    writes the next scripted answer; `None` closes the connection instead."""

    def __init__(self, answers: list[bytes | None]) -> None:
        self.answers = answers
        self.requests: list[bytes] = []
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                     ) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                self.requests.append(head + await reader.readexactly(length))
                answer = self.answers.pop(0)
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/hook?x=1"


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[list[bytes | None]], asyncio.Future[Scripted]]]:
    servers: list[asyncio.Server] = []

    async def start(answers: list[bytes | None]) -> Scripted:
        scripted = Scripted(answers)
        scripted.server = await asyncio.start_server(scripted.handle, "127.0.0.1", 0)
        servers.append(scripted.server)
        return scripted

    yield start  # type: ignore[misc]
    for server in servers:
        server.close()
        await server.wait_closed()


def post(url: str, body: bytes = b'{"a":1}', **headers: str) -> OutboundRequest:
    return OutboundRequest("POST", url, {"Content-Type": "application/json", **headers},
                           body)


async def test_writes_one_request_and_reuses_the_connection(serve):
    server = await serve([b"HTTP/1.1 204 No Content\r\n\r\n"] * 3)
    client = WebhookClient(allow_private=True, limit=4)
    try:
        for _ in range(3):
            result = await client.send(post(server.url, **{"ce-id": "e1"}), timeout=5,
                                       now=time.time)
            assert result.ok and result.status == 204 and result.error is None
    finally:
        await client.close()
    assert server.connections == 1
    head, _, body = server.requests[0].partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /hook?x=1 HTTP/1.1"
    assert f"Host: {server.url.split('/')[2]}".encode() in lines
    assert b"Content-Length: 7" in lines and b"ce-id: e1" in lines
    assert body == b'{"a":1}'


async def test_reads_chunked_bodies_interim_answers_and_retry_after(serve):
    server = await serve([
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 503 Service Unavailable\r\n"
        b"Transfer-Encoding: chunked\r\nContent-Type: text/plain\r\nRetry-After: 7\r\n\r\n"
        b"4;ext=1\r\nbusy\r\n6\r\n, back\r\n0\r\nX-Trailer: t\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    ])
    client = WebhookClient(allow_private=True, limit=4)
    try:
        first = await client.send(post(server.url), timeout=5, now=time.time)
        second = await client.send(post(server.url), timeout=5, now=time.time)
    finally:
        await client.close()
    assert (first.status, first.body, first.content_type) == (503, "busy, back", "text/plain")
    assert first.error == "HTTP 503 Service Unavailable" and first.retryable
    assert first.retry_after == 7
    assert second.ok and second.body == "ok"
    assert server.connections == 1  # the chunked answer ended where its last chunk said


async def test_a_long_body_is_truncated_and_its_connection_not_reused(serve):
    big = b"x" * 100
    server = await serve([
        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 100\r\n\r\n" + big,
        b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + big,  # runs to the close
        b"HTTP/1.1 204 No Content\r\n\r\n",
    ])
    client = WebhookClient(allow_private=True, limit=4, body_limit=10)
    try:
        refused = await client.send(post(server.url), timeout=5, now=time.time)
        until_close = await client.send(post(server.url), timeout=5, now=time.time)
        last = await client.send(post(server.url), timeout=5, now=time.time)
    finally:
        await client.close()
    assert refused.status == 400 and refused.truncated and refused.body == "x" * 10
    assert not refused.retryable
    assert until_close.ok and until_close.truncated
    assert last.ok
    assert server.connections == 3


async def test_a_connection_closed_without_an_answer_is_a_retryable_failure(serve):
    server = await serve([None, b"HTTP/1.1 204 No Content\r\n\r\n"])
    client = WebhookClient(allow_private=True, limit=4)
    try:
        lost = await client.send(post(server.url), timeout=5, now=time.time)
        again = await client.send(post(server.url), timeout=5, now=time.time)
    finally:
        await client.close()
    assert lost.status is None and lost.retryable and not lost.refused
    assert "disconnected" in (lost.error or "")
    assert again.ok and server.connections == 2


async def test_an_answer_that_is_not_http_is_a_retryable_failure(serve):
    server = await serve([b"SMTP ready\r\n\r\n"])
    client = WebhookClient(allow_private=True, limit=4)
    try:
        result = await client.send(post(server.url), timeout=5, now=time.time)
    finally:
        await client.close()
    assert result.status is None and result.retryable
    assert "invalid status line" in (result.error or "")


async def test_forbidden_addresses_are_refused_before_connecting(serve):
    server = await serve([b"HTTP/1.1 204 No Content\r\n\r\n"])
    client = WebhookClient(allow_private=False, limit=4)
    try:
        loopback = await client.send(post(server.url), timeout=5, now=time.time)
        metadata = await client.send(post("http://169.254.169.254/latest"), timeout=5,
                                     now=time.time)
        named = await client.send(post("http://metadata.google.internal/x"), timeout=5,
                                  now=time.time)
    finally:
        await client.close()
    assert loopback.refused and "loopback" in (loopback.error or "")
    assert metadata.refused and "metadata" in (metadata.error or "")
    assert named.refused and "metadata" in (named.error or "")
    assert server.connections == 0


async def test_a_header_that_would_break_the_request_is_refused(serve):
    server = await serve([])
    client = WebhookClient(allow_private=True, limit=4)
    try:
        result = await client.send(post(server.url, **{"x-evil": "a\r\nInjected: 1"}),
                                   timeout=5, now=time.time)
    finally:
        await client.close()
    assert result.refused and result.error is not None and server.connections == 0


def test_only_plain_http_posts_are_taken():
    assert WebhookClient.handles(post("http://example.com/hook"))
    assert not WebhookClient.handles(post("https://example.com/hook"))
    assert not WebhookClient.handles(post("http://user:pw@example.com/hook"))
    assert not WebhookClient.handles(OutboundRequest("GET", "http://example.com/", {}))


async def test_at_most_limit_connections_are_open(serve):
    server = await serve([b"HTTP/1.1 204 No Content\r\n\r\n"] * 6)
    client = WebhookClient(allow_private=True, limit=2)
    try:
        results = await asyncio.gather(*(client.send(post(server.url), timeout=5,
                                                     now=time.time) for _ in range(6)))
    finally:
        await client.close()
    assert all(r.ok for r in results)
    assert server.connections <= 2
