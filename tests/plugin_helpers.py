"""Helpers for plugin tests: config files, polling the broker, reading events back."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp

from tests.broker_process import BrokerProcess

T = TypeVar("T")


async def eventually(check: Callable[[], Awaitable[T | None]], timeout: float = 10.0) -> T:
    """Poll `check` until it returns something truthy; fail with the last value."""
    deadline = asyncio.get_running_loop().time() + timeout
    last: T | None = None
    while asyncio.get_running_loop().time() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout}s (last: {last!r})")


async def events_of(http: aiohttp.ClientSession, broker: BrokerProcess,
                    **params: str) -> list[dict[str, Any]]:
    """Stored events (the CloudEvent dicts) matching the query parameters."""
    async with http.get(broker.url + "/v1/events", params={"limit": "1000", **params}) as resp:
        assert resp.status == 200, await resp.text()
        return [e["event"] for e in (await resp.json())["events"]]


async def post_source(http: aiohttp.ClientSession, broker: BrokerProcess, path: str,
                      body: bytes, headers: dict[str, str] | None = None
                      ) -> tuple[int, dict[str, Any]]:
    async with http.post(f"{broker.url}/v1/sources/{path}", data=body,
                         headers={"Content-Type": "application/json", **(headers or {})}) as resp:
        return resp.status, await resp.json(content_type=None)
