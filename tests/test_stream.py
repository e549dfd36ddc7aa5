"""The live SSE stream: resume by seq, slow and stalled readers, many subscribers."""

from __future__ import annotations

import asyncio
import re

import aiohttp
import orjson

from tests.broker_process import BrokerProcess
from tests.conftest import BATCH, make_event
from tests.sse import RawStream, collect, opening_id, read_sse


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


async def test_a_reader_that_falls_behind_is_dropped_and_resumes_without_loss(tmp_path, http):
    proc = BrokerProcess(tmp_path / "data", args=["--stream-buffer-bytes", "65536",
                                                  "--durability", "normal"]).start()
    try:
        blob = "z" * 2000
        # 6 MB: far beyond what the broker's stream socket (stream_socket_buffer_bytes),
        # the reader's 4 KiB receive buffer and its 64 KiB stream buffer hold.
        total = 3000
        received: list[int] = []
        notices: list[bytes] = []
        subscribed, published = asyncio.Event(), asyncio.Event()

        async def slow_reader() -> None:
            last = 0
            while len(received) < total:
                stream = await RawStream.open(proc.port, headers={"Last-Event-ID": str(last)})
                assert await stream.head() == 200
                subscribed.set()
                # Reads nothing while 6 MB are published: far more than its 64 KiB
                # buffer and its small socket hold, so the broker drops it.
                await published.wait()
                async for block in stream.blocks():
                    if block[0].startswith(b": opsbus: this reader fell"):
                        notices.append(block[0])
                    elif block[0].startswith(b"id: ") and len(block) > 1:
                        last = int(block[0][4:])
                        received.append(last)
                        if len(received) == total:
                            break
                stream.close()

        reader = asyncio.create_task(slow_reader())
        await asyncio.wait_for(subscribed.wait(), 10)
        drops = await metric(http, proc.url, "opsbus_stream_drops_total")
        sent: list[int] = []
        for _ in range(total // 100):
            sent += await publish_batch(http, proc.url,
                                        [make_event(data={"blob": blob}) for _ in range(100)])
        published.set()
        await asyncio.wait_for(reader, 60)
        assert received == sent  # every event once, in order, across the reconnects
        assert notices and b"Last-Event-ID" in notices[0]
        assert await metric(http, proc.url, "opsbus_stream_drops_total") > drops
    finally:
        proc.stop()


async def test_client_that_stops_reading_is_dropped_and_resumes_cleanly(tmp_path, http):
    proc = BrokerProcess(tmp_path / "data", args=["--stream-buffer", "16",
                                                  "--stream-write-timeout-s", "1",
                                                  "--durability", "normal"]).start()
    try:
        first = await publish_batch(http, proc.url, [make_event()])
        stalled = await http.get(proc.url + "/v1/stream", params={"after": "0"})
        # The stream subscribes to the live fan-out before it reads the log, so once
        # the stored event has arrived the reader is counted (the 200 alone comes first).
        while b"id: %d\n" % first[0] not in await stalled.content.readuntil(b"\n\n"):
            pass
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


async def test_live_events_keep_a_stream_from_sending_heartbeats(tmp_path, http):
    """A stream written from the fan-out is not idle: no heartbeat while events arrive
    closer together than heartbeat_s (15 s), one once they stop for that long."""
    proc = BrokerProcess(tmp_path / "data", test_clock=True).start()
    try:
        async with http.get(proc.url + "/v1/stream") as resp:
            messages = read_sse(resp)
            sent: list[int] = []
            for _ in range(3):
                sent += await publish_batch(http, proc.url, [make_event()])
                await proc.advance(http, 10)
            seen: list[dict] = []
            while len([m for m in seen if m.get("event") == "cloudevent"]) < len(sent):
                seen.append(await anext(messages))
            assert [m for m in seen if m.get("comment") == "heartbeat"] == [], seen
            await proc.advance(http, 16)
            assert await anext(messages) == {"comment": "heartbeat"}
    finally:
        proc.stop()
