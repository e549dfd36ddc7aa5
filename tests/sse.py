"""A small independent SSE reader for tests (not the broker's own client)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp


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
