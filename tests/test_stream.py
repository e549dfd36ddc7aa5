"""The live SSE stream: resume by seq, slow and stalled readers, many subscribers."""

from __future__ import annotations

import asyncio
import re
import socket
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from tests.broker_process import BrokerProcess
from tests.conftest import BATCH, make_event
from tests.sse import collect, opening_id, read_sse


async def publish_batch(http: aiohttp.ClientSession, url: str, events: list[dict]) -> list[int]:
    async with http.post(url + "/v1/events", data=orjson.dumps(events), headers=BATCH) as resp:
        assert resp.status == 200, await resp.text()
        return [r["seq"] for r in await resp.json()]


async def metric(http: aiohttp.ClientSession, url: str, name: str) -> float:
    async with http.get(url + "/metrics") as resp:
        text = await resp.text()
    match = re.search(rf"^{name} (\S+)$", text, re.M)
    assert match, text
    return float(match.group(1))


async def test_stream_frames_carry_seq_type_and_structured_event(broker, http):
    reader = asyncio.create_task(collect(http, broker.url, 3, params={"after": "0"}))
    seqs = await publish_batch(http, broker.url, [make_event(id=f"e{i}") for i in range(3)])
    got = await asyncio.wait_for(reader, 10)
    assert [int(m["id"]) for m in got] == seqs
    assert {m["event"] for m in got} == {"cloudevent"}
    assert [m["data"]["id"] for m in got] == ["e0", "e1", "e2"]
    assert got[0]["data"]["specversion"] == "1.0"


async def test_resume_after_last_event_id_returns_exactly_the_missed_events(broker, http):
    seqs = await publish_batch(http, broker.url, [make_event(id=f"r{i}") for i in range(10)])
    got = await collect(http, broker.url, 6, headers={"Last-Event-ID": str(seqs[3])})
    assert [int(m["id"]) for m in got] == seqs[4:10]
    # ?after= does the same; Last-Event-ID wins when both are given.
    got = await collect(http, broker.url, 2, params={"after": str(seqs[7])})
    assert [int(m["id"]) for m in got] == seqs[8:]
    got = await collect(http, broker.url, 1, params={"after": "0"},
                        headers={"Last-Event-ID": str(seqs[8])})
    assert [int(m["id"]) for m in got] == seqs[9:]


async def test_resume_spans_stored_and_live_events_without_gap_or_repeat(broker, http):
    before = await publish_batch(http, broker.url, [make_event() for _ in range(50)])
    reader = asyncio.create_task(collect(http, broker.url, 150, params={"after": "0"}))
    after: list[int] = []
    for _ in range(10):
        after += await publish_batch(http, broker.url, [make_event() for _ in range(10)])
    got = await asyncio.wait_for(reader, 20)
    assert [int(m["id"]) for m in got] == before + after


async def test_stream_without_resume_point_starts_at_now(broker, http):
    await publish_batch(http, broker.url, [make_event(id="old")])
    async with http.get(broker.url + "/v1/stream") as resp:
        messages = read_sse(resp)
        await opening_id(messages)  # subscribed: no sleep needed before publishing
        await publish_batch(http, broker.url, [make_event(id="new")])
        async for msg in messages:
            if msg.get("event") == "cloudevent":
                assert msg["data"]["id"] == "new"
                break


async def test_bad_resume_point_is_a_problem(broker, http):
    async with http.get(broker.url + "/v1/stream", params={"after": "x"}) as resp:
        assert resp.status == 400 and resp.content_type == "application/problem+json"


RECEIVE_BUFFER = 64 * 1024


def small_receive_buffer(addr_info: Any) -> socket.socket:
    """A client socket whose receive buffer is fixed at 64 KiB. Left alone, Linux grows a
    loopback connection's receive window up to `tcp_rmem` (32 MiB on some machines),
    which can swallow everything a test publishes: a reader that reads nothing would
    then never fall behind, or only when publishing outran the window's growth."""
    family, kind, proto, _, _ = addr_info
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)  # before connect
    return sock


async def test_slow_consumer_still_receives_every_event(tmp_path, http):
    proc = BrokerProcess(tmp_path / "data", args=["--stream-buffer", "32",
                                                  "--durability", "normal"]).start()
    try:
        blob = "z" * 2000
        # More than the broker's socket can hold however far Linux grows its send buffer
        # (tcp_wmem's maximum), plus room for the client's fixed receive buffer.
        send_max = int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
        total = 100 * max(30, -(-(send_max + 2 * 1024 * 1024) // (100 * len(blob))))
        received: list[int] = []

        subscribed, published = asyncio.Event(), asyncio.Event()

        async def slow_reader() -> None:
            connector = aiohttp.TCPConnector(socket_factory=small_receive_buffer)
            async with aiohttp.ClientSession(connector=connector) as own, \
                    own.get(proc.url + "/v1/stream", params={"after": "0"}) as resp:
                messages = read_sse(resp)
                await opening_id(messages)
                subscribed.set()
                # Reads nothing while megabytes are published: far more than its
                # 32-event buffer and the sockets hold, so the broker must drop it back
                # to the store and catch it up from there.
                await published.wait()
                async for msg in messages:
                    if msg.get("event") == "cloudevent":
                        received.append(int(msg["id"]))
                        if len(received) == total:
                            return

        reader = asyncio.create_task(slow_reader())
        await asyncio.wait_for(subscribed.wait(), 10)
        overflows = await metric(http, proc.url, "opsbus_stream_overflows_total")
        sent: list[int] = []
        for _ in range(total // 100):
            sent += await publish_batch(http, proc.url,
                                        [make_event(data={"blob": blob}) for _ in range(100)])
        published.set()
        await asyncio.wait_for(reader, 60)
        assert received == sent
        assert await metric(http, proc.url, "opsbus_stream_overflows_total") > overflows
    finally:
        proc.stop()


async def test_client_that_stops_reading_is_dropped_and_resumes_cleanly(tmp_path, http):
    proc = BrokerProcess(tmp_path / "data", args=["--stream-buffer", "16",
                                                  "--stream-write-timeout-s", "1",
                                                  "--durability", "normal"]).start()
    try:
        stalled = await http.get(proc.url + "/v1/stream", params={"after": "0"})
        assert await metric(http, proc.url, "opsbus_stream_subscribers") == 1
        sent: list[int] = []
        blob = "q" * 4000
        for _ in range(40):
            sent += await publish_batch(http, proc.url,
                                        [make_event(data={"blob": blob}) for _ in range(100)])
        for _ in range(100):
            if await metric(http, proc.url, "opsbus_stream_subscribers") == 0:
                break
            await asyncio.sleep(0.1)
        assert await metric(http, proc.url, "opsbus_stream_subscribers") == 0
        stalled.close()
        # The broker is healthy and a reconnect resumes exactly where the reader was.
        got = await collect(http, proc.url, 100, headers={"Last-Event-ID": str(sent[-101])})
        assert [int(m["id"]) for m in got] == sent[-100:]
    finally:
        proc.stop()


async def test_many_subscribers_each_get_every_event(broker, http):
    subscribed: list[int] = []
    everyone = asyncio.Event()

    async def reader() -> list[dict]:
        got: list[dict] = []
        async with http.get(broker.url + "/v1/stream", params={"after": "0"}) as resp:
            messages = read_sse(resp)
            subscribed.append(await opening_id(messages))
            if len(subscribed) == 200:
                everyone.set()
            async for msg in messages:
                if msg.get("event") == "cloudevent":
                    got.append(msg)
                    if len(got) == 20:
                        return got
        return got

    readers = [asyncio.create_task(reader()) for _ in range(200)]
    await asyncio.wait_for(everyone.wait(), 30)  # all live before anything is published
    sent: list[int] = []
    for _ in range(4):
        sent += await publish_batch(http, broker.url, [make_event() for _ in range(5)])
    results = await asyncio.wait_for(asyncio.gather(*readers), 30)
    for got in results:
        assert [int(m["id"]) for m in got] == sent


async def test_heartbeat_comments_keep_idle_streams_alive(tmp_path, http):
    proc = BrokerProcess(tmp_path / "data", args=["--heartbeat-s", "0.2"]).start()
    try:
        async with http.get(proc.url + "/v1/stream") as resp:
            comments = 0
            async for msg in read_sse(resp):
                if msg.get("comment") == "heartbeat":
                    comments += 1
                    if comments == 2:
                        break
        assert comments == 2
    finally:
        proc.stop()
