"""Every stream delivers strictly increasing seq, derived events included, and opens with
an `id:` line naming the head it starts after (real broker process, real SSE)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from broker.client import OpsbusClient
from tests.broker_process import BrokerProcess
from tests.conftest import BATCH, STRUCTURED, make_event
from tests.sse import opening_id, read_sse

CONFIG = """
[[routes]]
name = "work"
filter = { exact = { type = "test.work" } }
targets = ["queue:work"]

[[subscriptions]]
name = "puller"
type = "pull"
filter = { any = [{ exact = { type = "test.work" } }, { prefix = { type = "opsbus.todo." } }] }
"""


@pytest.fixture
def routed(tmp_path: Path) -> AsyncIterator[BrokerProcess]:
    config = tmp_path / "opsbus.toml"
    config.write_text(CONFIG)
    proc = BrokerProcess(tmp_path / "data", config=config).start()
    try:
        yield proc
    finally:
        proc.stop()


async def publish_batch(http: aiohttp.ClientSession, url: str, count: int) -> list[int]:
    # Each event opens a todo item, whose routing appends an `opsbus.todo.opened` event
    # in the same transaction: derived events interleave with the batch in append order.
    events = [make_event(type="test.work", subject=f"host-{i}") for i in range(count)]
    async with http.post(url + "/v1/events", data=orjson.dumps(events), headers=BATCH) as resp:
        assert resp.status == 200, await resp.text()
        return [r["seq"] for r in await resp.json()]


async def read_ids(resp: aiohttp.ClientResponse, count: int) -> list[int]:
    ids: list[int] = []
    async for msg in read_sse(resp):
        if msg.get("event") == "cloudevent":
            ids.append(int(msg["id"]))
            if len(ids) == count:
                break
    return ids


async def test_derived_events_reach_a_live_stream_in_seq_order(routed, http):
    async with http.get(routed.url + "/v1/stream") as resp:
        head = await opening_id(read_sse(resp))
        reader = asyncio.create_task(read_ids(resp, 40))
        published = await publish_batch(http, routed.url, 20)
        ids = await asyncio.wait_for(reader, 20)
    assert all(a < b for a, b in itertools.pairwise(ids)), ids
    assert ids == list(range(head + 1, head + 41))
    assert set(published) < set(ids)


async def test_resuming_from_any_seen_live_id_loses_nothing(routed, http):
    async with http.get(routed.url + "/v1/stream") as resp:
        messages = read_sse(resp)
        head = await opening_id(messages)
        await publish_batch(http, routed.url, 15)
        first = await read_ids(resp, 11)
    # A marker published last tells the resumed reader it has seen everything.
    async with http.post(routed.url + "/v1/events", data=orjson.dumps(make_event(id="end")),
                         headers=STRUCTURED) as resp:
        end = (await resp.json())["seq"]
    rest: list[int] = []
    async with http.get(routed.url + "/v1/stream",
                        headers={"Last-Event-ID": str(first[-1])}) as resp:
        async for msg in read_sse(resp):
            if msg.get("event") == "cloudevent":
                rest.append(int(msg["id"]))
                if msg["data"]["id"] == "end":
                    break
    assert first + rest == list(range(head + 1, end + 1))


async def test_pull_receive_hands_out_derived_events_in_seq_order(routed, http):
    await publish_batch(http, routed.url, 10)
    got: list[int] = []
    while len(got) < 20:
        async with http.post(routed.url + "/v1/subscriptions/puller/receive",
                             json={"max": 7}) as resp:
            assert resp.status == 200, await resp.text()
            batch = [m["seq"] for m in await resp.json()]
        assert batch
        got += batch
    assert got == list(range(1, 21))


async def test_every_stream_opens_with_the_head_it_starts_after(broker, http):
    async with http.get(broker.url + "/v1/stream") as resp:
        assert await opening_id(read_sse(resp)) == 0
    async with http.post(broker.url + "/v1/events", data=orjson.dumps(make_event()),
                         headers=STRUCTURED) as resp:
        seq = (await resp.json())["seq"]
    async with http.get(broker.url + "/v1/stream") as resp:
        assert await opening_id(read_sse(resp)) == seq
    async with http.get(broker.url + "/v1/stream", params={"after": "0"}) as resp:
        assert await opening_id(read_sse(resp)) == 0
    async with http.get(broker.url + "/v1/stream", headers={"Last-Event-ID": "7"}) as resp:
        assert await opening_id(read_sse(resp)) == 7


async def test_a_reconnect_before_the_first_event_resumes_from_the_opening_id(broker, http):
    # An EventSource that drops before any event reconnects with the opening id as its
    # Last-Event-ID: what was published while it was away still reaches it.
    async with http.get(broker.url + "/v1/stream") as resp:
        head = await opening_id(read_sse(resp))
    async with http.post(broker.url + "/v1/events", data=orjson.dumps(make_event(id="gap")),
                         headers=STRUCTURED) as resp:
        assert resp.status == 201
    async with http.get(broker.url + "/v1/stream",
                        headers={"Last-Event-ID": str(head)}) as resp:
        async for msg in read_sse(resp):
            if msg.get("event") == "cloudevent":
                assert msg["data"]["id"] == "gap"
                break


async def test_the_client_resumes_from_the_opening_id_too():
    # The broker's own client (tail, console) keeps the opening id as its resume point:
    # a scripted server closes the first stream right after its opening line.
    resumed_with: list[str | None] = []

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        if not resumed_with and "Last-Event-ID" not in request.headers:
            resumed_with.append(None)
            await response.write(b": opsbus stream after 41\nretry: 1000\nid: 41\n\n")
            return response
        resumed_with.append(request.headers.get("Last-Event-ID"))
        frame = orjson.dumps(make_event(id="after-open"))
        await response.write(b"id: 42\nevent: cloudevent\ndata: " + frame + b"\n\n")
        return response

    app = web.Application()
    app.router.add_get("/v1/stream", stream)
    server = TestServer(app)
    await server.start_server()
    try:
        async with OpsbusClient(str(server.make_url("")).rstrip("/"), token="t") as client:
            events = client.stream(reconnect=True, retry_s=0)
            seq, event = await asyncio.wait_for(anext(events), 10)
            await events.aclose()
    finally:
        await server.close()
    assert (seq, event["id"]) == (42, "after-open")
    assert resumed_with == [None, "41"]
