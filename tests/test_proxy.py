"""The API middleware: `/proxy/<name>/...` in front of a real local upstream, calls as events."""

from __future__ import annotations

import asyncio
import hashlib
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import orjson
import pytest

from tests.broker_process import AUTH, BrokerProcess, free_port
from tests.plugin_helpers import events_of, eventually
from tests.upstream import Upstream

MB = 1024 * 1024


def config_for(root: Path, upstream: str, down: str) -> Path:
    config = root / "opsbus.toml"
    config.write_text(textwrap.dedent(f"""
        [[proxy]]
        name = "erp"
        upstream = "{upstream}"
        emit = {{ methods = ["POST", "PUT", "DELETE"], paths = ["/api/v1/*"] }}

        [[proxy]]
        name = "erp-all"
        upstream = "{upstream}"
        capture_bodies = true
        max_body_capture = 64
        event_type = "legacy.erp.{{method}}"

        [[proxy]]
        name = "down"
        upstream = "{down}"
    """))
    return config


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    server = Upstream().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory, upstream: Upstream
           ) -> Iterator[BrokerProcess]:
    root = tmp_path_factory.mktemp("proxy")
    config = config_for(root, upstream.url, f"http://127.0.0.1:{free_port()}")
    proc = BrokerProcess(root / "data", config=config,
                         args=["--durability", "off", "--allow-private-targets"]).start()
    try:
        yield proc
    finally:
        proc.stop()


async def call_events(http, broker, **params) -> list[dict]:
    return await events_of(http, broker, source="opsbus/proxy", **params)


async def test_calls_pass_through_unchanged(broker, upstream, http):
    async with http.get(broker.url + "/proxy/erp/api/v1/orders/17?expand=lines&x=1",
                        headers={"X-Request-Id": "req-abc"}) as resp:
        assert resp.status == 200
        assert await resp.json() == {"id": "17", "query": {"expand": "lines", "x": "1"}}
        assert resp.headers["X-Upstream"] == "legacy-erp" and resp.headers["ETag"] == '"v7"'
        assert resp.headers.getall("Set-Cookie") == ["a=1; Path=/", "b=2; Path=/"]
    seen = upstream.seen[-1]
    assert seen["headers"]["X-Request-Id"] == "req-abc"
    assert seen["headers"]["X-Forwarded-For"] == "127.0.0.1"
    assert seen["headers"]["Host"] == upstream.url.removeprefix("http://")

    body = b'{"sku": "A-1", "qty": 2}'
    async with http.post(broker.url + "/proxy/erp/api/v1/orders", data=body,
                         headers={"Content-Type": "application/json", "Connection": "close",
                                  "X-Secret-Hop": "x", "Keep-Alive": "timeout=5"}) as resp:
        assert resp.status == 201 and resp.headers["Location"] == "/api/v1/orders/17"
        assert (await resp.json())["echo"] == body.decode()
    forwarded = upstream.seen[-1]["headers"]
    assert "Keep-Alive" not in forwarded and forwarded.get("Connection") != "close"

    for code in (204, 404, 503):
        async with http.get(f"{broker.url}/proxy/erp/status/{code}") as resp:
            assert resp.status == code
    async with http.get(broker.url + "/proxy/erp/redirect", allow_redirects=False) as resp:
        assert resp.status == 302 and resp.headers["Location"] == "/api/v1/orders/1"
    # Encoded characters reach the upstream as sent, even ones no event could carry.
    async with http.get(broker.url + "/proxy/erp-all/api/v1/orders/a%2Fb%0A") as resp:
        assert resp.status == 200 and (await resp.json())["id"] == "a/b\n"


async def test_emit_rules_choose_the_calls_that_become_events(broker, http):
    async with http.delete(broker.url + "/proxy/erp/api/v1/orders",
                           headers={"X-Request-Id": "del-1"}) as resp:
        assert resp.status == 201
    async with http.get(broker.url + "/proxy/erp/api/v1/orders/9",
                        headers={"X-Request-Id": "get-1"}) as resp:
        assert resp.status == 200

    async def deleted() -> dict | None:
        calls = await call_events(http, broker, type="opsbus.api.erp.call")
        return next((e for e in calls if e["data"]["request_id"] == "del-1"), None)

    event = await eventually(deleted)
    data = event["data"]
    assert data["method"] == "DELETE" and data["path"] == "/api/v1/orders"
    assert data["status"] == 201 and data["latency_ms"] >= 0 and data["error"] is None
    assert "request_body" not in data
    assert event["subject"] == "/api/v1/orders"
    calls = await call_events(http, broker, type="opsbus.api.erp.call")
    assert not [e for e in calls if e["data"]["request_id"] == "get-1"]  # GET: not emitted


async def test_bodies_are_captured_capped_when_configured(broker, http):
    body = orjson.dumps({"note": "x" * 200})
    async with http.post(broker.url + "/proxy/erp-all/api/v1/orders?dry=1", data=body,
                         headers={"X-Request-Id": "cap-1"}) as resp:
        assert resp.status == 201

    async def captured() -> dict | None:
        calls = await call_events(http, broker, type="legacy.erp.post")
        return next((e for e in calls if e["data"]["request_id"] == "cap-1"), None)

    data = (await eventually(captured))["data"]
    assert data["query"] == {"dry": "1"}
    assert data["request_body"] == {"size": len(body), "truncated": True,
                                    "text": body[:64].decode()}
    assert data["response_body"]["truncated"] is True
    assert data["request_bytes"] == len(body)


async def test_large_bodies_stream_both_ways(broker, upstream, http):
    size = 20 * MB
    digest = hashlib.sha256()

    async def produce() -> AsyncIterator[bytes]:
        chunk = b"u" * MB
        digest.update(chunk)
        yield chunk
        # The upstream must see bytes before the client has sent them all.
        assert await asyncio.to_thread(upstream.upload_started.wait, 20)
        for _ in range(size // MB - 1):
            digest.update(chunk)
            yield chunk

    async with http.put(broker.url + "/proxy/erp-all/upload", data=produce()) as resp:
        assert resp.status == 200
        assert await resp.json() == {"size": size, "sha256": digest.hexdigest()}

    received = 0
    async with http.get(f"{broker.url}/proxy/erp-all/download/{size}") as resp:
        assert resp.status == 200 and resp.headers["Content-Length"] == str(size)
        async for chunk in resp.content.iter_chunked(MB):
            received += len(chunk)
            upstream.download_go.set()  # the first bytes arrived before the rest was sent
    assert received == size


async def test_unreachable_upstream_is_502_and_a_failed_call_event(broker, http):
    async with http.post(broker.url + "/proxy/down/anything", data=b"{}",
                         headers={"X-Request-Id": "down-1"}) as resp:
        assert resp.status == 502
        assert resp.content_type == "application/problem+json"
        problem = await resp.json()
    assert problem["proxy"] == "down" and problem["request_id"] == "down-1"

    async def failed() -> dict | None:
        calls = await call_events(http, broker, type="opsbus.api.down.call")
        return next((e for e in calls if e["data"]["request_id"] == "down-1"), None)

    data = (await eventually(failed))["data"]
    assert data["status"] == 502 and "Connect" in data["error"]


async def test_unknown_mount_is_404_and_mounts_are_config_objects(broker, http):
    async with http.get(broker.url + "/proxy/nosuch/x") as resp:
        assert resp.status == 404
    async with http.get(broker.url + "/v1/proxy") as resp:
        names = [m["name"] for m in (await resp.json())["proxy"]]
    assert names == ["down", "erp", "erp-all"]
    async with http.post(broker.url + "/v1/proxy", json={"name": "bad", "upstream": "ftp://x"}
                         ) as resp:
        assert resp.status == 400 and (await resp.json())["field"] == "upstream"


async def test_queued_call_events_survive_a_clean_shutdown(tmp_path, upstream):
    config = config_for(tmp_path, upstream.url, "http://127.0.0.1:9")
    proc = BrokerProcess(tmp_path / "data", config=config,
                         args=["--allow-private-targets"]).start()
    try:
        async with aiohttp.ClientSession(headers=AUTH) as http:
            await asyncio.gather(*(
                http.post(proc.url + "/proxy/erp/api/v1/orders", data=b"{}",
                          headers={"X-Request-Id": f"burst-{i}"}) for i in range(50)))
            assert proc.stop() == 0
            proc.start()
            calls = await call_events(http, proc, type="opsbus.api.erp.call")
        assert {e["data"]["request_id"] for e in calls} == {f"burst-{i}" for i in range(50)}
    finally:
        proc.stop()
