"""A small independent SSE reader for tests (not the broker's own client)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from tests.broker_process import AUTH


async def read_sse(resp: aiohttp.ClientResponse) -> AsyncIterator[dict[str, Any]]:
    """Yield {"id", "event", "data", "comment"} per dispatched SSE message or comment, and
    {"id", "event": None} for a block that only sets the last event id (the opening
    line every stream starts with)."""
    fields: dict[str, Any] = {"data": []}
    while True:
        raw = await resp.content.readline()
        if not raw:
            return
        line = raw.decode().rstrip("\r\n")
        if line == "":
            if fields["data"]:
                yield {"id": fields.get("id"), "event": fields.get("event", "message"),
                       "data": json.loads("\n".join(fields["data"]))}
            elif "id" in fields:
                yield {"id": fields["id"], "event": None}
            fields = {"data": []}
        elif line.startswith(":"):
            yield {"comment": line[1:].strip()}
        else:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                fields["data"].append(value)
            else:
                fields[name] = value


async def collect(session: aiohttp.ClientSession, url: str, count: int,
                  headers: dict[str, str] | None = None, params: dict[str, str] | None = None
                  ) -> list[dict[str, Any]]:
    """Open a stream and return its first `count` cloudevent messages."""
    got: list[dict[str, Any]] = []
    async with session.get(url + "/v1/stream", headers=headers, params=params) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        async for msg in read_sse(resp):
            if msg.get("event") == "cloudevent":
                got.append(msg)
                if len(got) == count:
                    break
    return got


async def opening_id(messages: AsyncIterator[dict[str, Any]]) -> int:
    """The seq a stream starts after, from its opening `id:` line. Reading it is the
    barrier that says the broker has subscribed this stream: whatever is published
    from now on reaches it (no sleep needed before publishing)."""
    async with asyncio.timeout(10):
        async for msg in messages:
            if "comment" in msg:
                continue
            assert msg.get("event") is None and msg.get("id") is not None, (
                f"the stream did not open with an id line: {msg}")
            return int(msg["id"])
    raise AssertionError("the stream ended before its opening id line")


class RawStream:
    """A stream read over a bare socket with a small receive buffer (HTTP/1.0, so the
    body is the SSE text itself): a reader whose pace the test controls exactly, down
    to not reading at all."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int, *, after: int | None = None, rcvbuf: int = 4096,
                   headers: dict[str, str] | None = None) -> RawStream:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # Set before connecting, so the advertised window stays small.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 20)
        query = f"?after={after}" if after is not None else ""
        extra = "".join(f"{k}: {v}\r\n" for k, v in {**AUTH, **(headers or {})}.items())
        writer.write(f"GET /v1/stream{query} HTTP/1.0\r\nHost: 127.0.0.1\r\n{extra}\r\n"
                     .encode())
        await writer.drain()
        return cls(reader, writer)

    async def head(self) -> int:
        """Read the response head; its status."""
        head = await self.reader.readuntil(b"\r\n\r\n")
        return int(head.split()[1])

    async def blocks(self) -> AsyncIterator[list[bytes]]:
        """Each SSE block's lines, until the broker ends the stream."""
        lines: list[bytes] = []
        while line := await self.reader.readline():
            line = line.rstrip(b"\r\n")
            if line:
                lines.append(line)
            elif lines:
                yield lines
                lines = []

    def close(self) -> None:
        self.writer.transport.abort()


async def stalled_stream(port: int, *, rcvbuf: int = 4096) -> socket.socket:
    """A stream request on a socket nobody reads: not even into a client-side buffer
    (an asyncio stream would keep reading up to its limit)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        await loop.sock_connect(sock, ("127.0.0.1", port))
        auth = "".join(f"{k}: {v}\r\n" for k, v in AUTH.items()).encode()
        await loop.sock_sendall(sock, b"GET /v1/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n"
                                % auth)
    except BaseException:
        sock.close()
        raise
    return sock
