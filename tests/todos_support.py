"""Helpers shared by the todo and silence tests: a queue config, publish, item calls."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import orjson

from tests.conftest import STRUCTURED, make_event

T = TypeVar("T")

CONFIG = """
[[queues]]
name = "work"
description = "Alert-like work items"
title = "{data.labels.alertname} on {subject}"
priority = "{data.labels.severity}"
resolve_filter = { sql = "data.status = 'resolved'" }
lease = "30m"
actions = ["restart-pod", { name = "page-dba", runbook_url = "https://runbooks.example/dba" }]

[[queues]]
name = "short"
description = "Claims here expire quickly"
lease = "1s"

[[queues]]
name = "other"

[[routes]]
name = "work"
filter = { exact = { type = "test.work" } }
targets = ["queue:work"]

[[routes]]
name = "short"
filter = { exact = { type = "test.short" } }
targets = ["queue:short"]

[[routes]]
name = "other"
filter = { exact = { type = "test.other" } }
targets = ["queue:other"]
"""


def write_config(folder: Path, text: str = CONFIG) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "opsbus.toml"
    path.write_text(text)
    return path


def work_event(subject: str | None = None, status: str = "firing", *,
               type: str = "test.work", **overrides: Any) -> dict[str, Any]:
    """An alert-like event for the `work` queue; a fresh subject (group) by default."""
    return make_event(type=type, subject=subject or f"host-{uuid.uuid4().hex[:8]}",
                      data={"status": status, "labels": {"alertname": "DiskFull",
                                                          "severity": "critical"}},
                      **overrides)


async def publish(http: aiohttp.ClientSession, url: str, event: dict[str, Any]) -> int:
    async with http.post(url + "/v1/events", data=orjson.dumps(event),
                         headers=STRUCTURED) as resp:
        assert resp.status in (200, 201), await resp.text()
        return int((await resp.json())["seq"])


async def targets(http: aiohttp.ClientSession, url: str, seq: int) -> dict[str, Any]:
    """The event's target hits: {"queue:work": detail, ...}."""
    async with http.get(f"{url}/v1/events/{seq}") as resp:
        assert resp.status == 200, await resp.text()
        return {t["target"]: t.get("detail", {}) for t in (await resp.json())["targets"]}


async def item_of(http: aiohttp.ClientSession, url: str, seq: int,
                  target: str = "queue:work") -> int:
    """The id of the item event `seq` opened or attached to."""
    detail = (await targets(http, url, seq))[target]
    assert "todo" in detail, detail
    return int(detail["todo"])


async def get_json(http: aiohttp.ClientSession, url: str, path: str,
                   **params: str) -> dict[str, Any]:
    async with http.get(url + path, params=params) as resp:
        assert resp.status == 200, await resp.text()
        data: dict[str, Any] = await resp.json()
        return data


async def todo(http: aiohttp.ClientSession, url: str, todo_id: int) -> dict[str, Any]:
    return await get_json(http, url, f"/v1/todos/{todo_id}")


async def op(http: aiohttp.ClientSession, url: str, todo_id: int, name: str,
             **body: Any) -> tuple[int, dict[str, Any]]:
    async with http.post(f"{url}/v1/todos/{todo_id}/{name}", json=body) as resp:
        return resp.status, await resp.json(content_type=None)


async def eventually(check: Callable[[], Awaitable[T | None]], timeout: float = 8.0) -> T:
    """Poll `check` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last: {value!r})")
        await asyncio.sleep(0.1)
