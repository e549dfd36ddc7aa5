"""Helpers for delivery and action tests: a real local HTTP receiver, polling, API calls."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from tests.conftest import STRUCTURED, make_event

Reply = Callable[["Received"], Awaitable[web.StreamResponse] | web.StreamResponse]


@dataclass
class Received:
    """One request the receiver got."""

    method: str
    path: str
    raw_path: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)

    @property
    def json(self) -> Any:
        return orjson.loads(self.body)


class Receiver:
    """An aiohttp server on 127.0.0.1 in the test process. `reply` decides each answer
    (default 200); `statuses` is a script of statuses used first, one per request.
    `hold()` makes it keep every request unanswered until `release()`: a receiver as
    slow as a test needs, with no clock involved."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.statuses: list[int | tuple[int, dict[str, str]]] = []
        self.reply: Reply | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._arrived = asyncio.Event()
        self._open = asyncio.Event()
        self._open.set()
        self.waiting = 0
        """Requests held unanswered right now."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    def hold(self) -> None:
        """Answer nothing until `release()`."""
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    async def stop(self) -> None:
        self._open.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        got = Received(request.method, request.path, request.raw_path,
                       dict(request.headers), await request.read())
        self.requests.append(got)
        if not self._open.is_set():
            self.waiting += 1
            self._arrived.set()
            try:
                await self._open.wait()
            finally:
                self.waiting -= 1
        self._arrived.set()
        if self.statuses:
            status = self.statuses.pop(0)
            headers = {}
            if isinstance(status, tuple):
                status, headers = status
            return web.Response(status=status, text="scripted", headers=headers)
        if self.reply is not None:
            answer = self.reply(got)
            if asyncio.iscoroutine(answer):
                answer = await answer
            return answer  # type: ignore[return-value]
        return web.json_response({"ok": True})

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """The first `count` requests, waiting up to `timeout` for them."""
        await self._until(lambda: len(self.requests) >= count, timeout,
                          lambda: f"expected {count} requests, got {len(self.requests)}")
        return self.requests[:count]

    async def wait_held(self, count: int, timeout: float = 10.0) -> None:
        """Until `count` requests are held unanswered at the same time."""
        await self._until(lambda: self.waiting >= count, timeout,
                          lambda: f"expected {count} requests held, got {self.waiting}")

    async def _until(self, done: Callable[[], bool], timeout: float,
                     failure: Callable[[], str]) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(failure())
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                pass


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 10.0,
                     interval: float = 0.05) -> Any:
    """The first truthy result of `check`, polled until `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last: {result!r})")
        await asyncio.sleep(interval)


async def call(http: aiohttp.ClientSession, method: str, url: str, body: Any = None,
               expect: int | None = None) -> Any:
    """JSON in, JSON out; asserts the status when `expect` is given."""
    async with http.request(method, url, json=body) as resp:
        data = await resp.read()
        if expect is not None:
            assert resp.status == expect, f"{method} {url}: {resp.status} {data[:500]!r}"
        return orjson.loads(data) if data else None


async def publish(http: aiohttp.ClientSession, base: str, **attrs: Any) -> dict[str, Any]:
    """Publish one structured event; returns {seq, id, duplicate, event}."""
    event = make_event(**attrs)
    async with http.post(base + "/v1/events", data=orjson.dumps(event),
                         headers=STRUCTURED) as resp:
        assert resp.status == 201, await resp.text()
        return {**await resp.json(), "event": event}


async def put_object(http: aiohttp.ClientSession, base: str, kind: str,
                     spec: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = await call(http, "PUT", f"{base}/v1/{kind}/{spec['name']}", spec)
    assert "name" in result, result
    return result


async def events_of_type(http: aiohttp.ClientSession, base: str, type: str,
                         **params: str) -> list[dict[str, Any]]:
    """Every stored event of a type, following `next_after` past the scan budget."""
    found: list[dict[str, Any]] = []
    after: int | None = 0
    while after is not None:
        page = await call(http, "GET", f"{base}/v1/events?type={type}&limit=1000&after={after}"
                          + "".join(f"&{k}={v}" for k, v in params.items()), expect=200)
        found += [item["event"] for item in page["events"]]
        after = page["next_after"]
    return found
