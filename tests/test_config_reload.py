"""Hot reload of opsbus.toml under a running broker: new routes take effect, a broken file
is refused with a clear log line and the running table stays."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import orjson

from tests.broker_process import BrokerProcess
from tests.conftest import STRUCTURED, make_event

ROUTE_A = """
[[routes]]
name = "route-a"
filter = { sql = "type = 'reload.a'" }
targets = ["plugin:a"]
"""
ROUTE_B = """
[[routes]]
name = "route-b"
filter = { prefix = { type = "reload.b" } }
targets = ["plugin:b"]
"""


def write(path: Path, text: str, *, atomic: bool = False) -> None:
    if atomic:  # how most editors save: a new file renamed over the old one
        tmp = path.with_name(path.name + ".swp")
        tmp.write_text(text)
        os.replace(tmp, path)
    else:
        path.write_text(text)


async def get(http: Any, url: str) -> Any:
    async with http.get(url) as resp:
        return await resp.json()


async def routed(http: Any, url: str, event_type: str) -> list[str]:
    """Publish an event and answer the routes it was stored with."""
    async with http.post(url + "/v1/events", data=orjson.dumps(make_event(type=event_type)),
                         headers=STRUCTURED) as resp:
        seq = (await resp.json())["seq"]
    return list((await get(http, f"{url}/v1/events/{seq}"))["routes"])


async def wait_for(check: Any, timeout: float = 10.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def test_editing_the_file_reloads_routes_and_a_broken_edit_keeps_the_old_table(
        tmp_path: Path, http):
    config = tmp_path / "opsbus.toml"
    write(config, ROUTE_A)
    broker = BrokerProcess(tmp_path / "data", config=config).start()
    url = broker.url
    try:
        assert await routed(http, url, "reload.a") == ["route-a"]
        assert await routed(http, url, "reload.b") == []

        async def names() -> list[str]:
            return [r["name"] for r in (await get(http, url + "/v1/routes"))["routes"]]

        # A new route in the file takes effect without a restart.
        write(config, ROUTE_A + ROUTE_B, atomic=True)
        await wait_for(lambda: _has(names, "route-b"))
        assert await routed(http, url, "reload.b.sub") == ["route-b"]
        status = await get(http, url + "/v1/config/status")
        assert status["file"] == str(config) and status["reloads"] >= 1
        assert status["error"] is None

        # A broken edit is refused, said so, and the running table stays.
        write(config, ROUTE_A + ROUTE_B.replace("prefix = { type = \"reload.b\" }",
                                                "sql = \"type = 'reload.b' AND\""))

        async def error() -> Any:
            return (await get(http, url + "/v1/config/status"))["error"]

        message = await wait_for(error)
        assert "routes[1]" in message and "route-b" in message and "column" in message
        listed = await get(http, url + "/v1/routes")
        assert listed["config_error"] == message
        assert [r["name"] for r in listed["routes"]] == ["route-a", "route-b"]
        assert await routed(http, url, "reload.b") == ["route-b"]
        assert "configuration not reloaded, keeping the running one" in broker.log()

        # Bad TOML too; then a good file clears the error and drops the removed route.
        write(config, "[[routes]\nname = ")
        await wait_for(lambda: _changed(error, message))
        assert "opsbus.toml" in (await error())
        write(config, ROUTE_B)
        await wait_for(lambda: _gone(names, "route-a"))
        assert await error() is None
        assert await routed(http, url, "reload.a") == []

        # File routes are edited in the file, not through the API.
        async with http.delete(url + "/v1/routes/route-b") as resp:
            assert resp.status == 409
    finally:
        broker.stop()


async def _has(names: Any, name: str) -> bool:
    return name in await names()


async def _gone(names: Any, name: str) -> bool:
    return name not in await names()


async def _changed(current: Any, old: str) -> bool:
    value = await current()
    return bool(value) and value != old
