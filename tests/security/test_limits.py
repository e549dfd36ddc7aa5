"""Every resource a client can hold open is bounded by a setting, with a clear problem:
streams (total and per token, pull long-polls included), connections, idle time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import orjson
import pytest

from tests.broker_process import BrokerProcess
from tests.sse import opening_id, read_sse


def start(tmp_path: Path, *args: str) -> BrokerProcess:
    return BrokerProcess(tmp_path / "data", args=["--durability", "off", *args]).start()


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[BrokerProcess]:
    proc = start(tmp_path, "--max-streams", "3", "--max-streams-per-principal", "2")
    try:
        yield proc
    finally:
        proc.stop()


async def open_stream(http: aiohttp.ClientSession, url: str) -> aiohttp.ClientResponse:
    resp = await http.get(url + "/v1/stream")
    assert resp.status == 200, await resp.text()
    await opening_id(read_sse(resp))  # the slot is held from here on
    return resp


@pytest.fixture
async def streams() -> AsyncIterator[list[aiohttp.ClientResponse]]:
    held: list[aiohttp.ClientResponse] = []
    yield held
    for resp in held:
        resp.close()


async def test_streams_past_the_per_principal_limit_are_429(limited, http, streams):
    streams += [await open_stream(http, limited.url) for _ in range(2)]
    async with http.get(limited.url + "/v1/stream") as resp:
        assert resp.status == 429 and resp.content_type == "application/problem+json"
        assert resp.headers["Retry-After"].isdigit()
        problem = await resp.json()
    assert problem["setting"] == "max_streams_per_principal" and problem["limit"] == 2
    streams.pop().close()  # a slot comes back when its stream ends
    for _ in range(100):
        async with http.get(limited.url + "/v1/stream") as resp:
            if resp.status == 200:
                break
        await asyncio.sleep(0.05)  # the broker notices the closed stream on its next write
    assert resp.status == 200


async def test_a_waiting_pull_receive_holds_a_stream_slot(tmp_path, http, streams):
    proc = start(tmp_path, "--max-streams", "1")
    try:
        async with http.post(proc.url + "/v1/subscriptions", json={
                "name": "jobs", "type": "pull", "filter": {"exact": {"type": "x"}}}) as resp:
            assert resp.status == 201, await resp.text()
        streams.append(await open_stream(http, proc.url))
        receive = proc.url + "/v1/subscriptions/jobs/receive"
        async with http.post(receive, json={"wait_s": 5}) as resp:
            assert resp.status == 503 and resp.headers["Retry-After"].isdigit()
            assert (await resp.json())["setting"] == "max_streams"
        async with http.post(receive, json={}) as resp:  # not waiting: no slot needed
            assert resp.status == 200 and await resp.json() == []
        async with http.get(proc.url + "/metrics") as resp:
            text = await resp.text()
        assert "opsbus_streams_open 1.0" in text and "opsbus_streams_refused_total 1.0" in text
    finally:
        proc.stop()


async def test_streams_past_the_total_limit_are_503(tmp_path, http, streams):
    proc = start(tmp_path, "--max-streams", "2")
    try:
        streams += [await open_stream(http, proc.url) for _ in range(2)]
        async with http.get(proc.url + "/v1/stream") as resp:
            assert resp.status == 503 and resp.headers["Retry-After"].isdigit()
            assert (await resp.json())["setting"] == "max_streams"
    finally:
        proc.stop()


async def keep_alive_request(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection that has had one answer and stays open (keep-alive)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 200"), head
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length")))
        await reader.readexactly(length)
    except BaseException:
        writer.close()
        raise
    return reader, writer


async def test_connections_past_the_limit_are_answered_503_and_closed(tmp_path):
    proc = start(tmp_path, "--max-connections", "2")
    held = []
    try:
        held = [await keep_alive_request(proc.port) for _ in range(2)]
        reader, writer = await asyncio.open_connection("127.0.0.1", proc.port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), 10)  # answered, then closed
        writer.close()
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503"), answer
        assert b"Retry-After: " in head and b"application/problem+json" in head
        problem = orjson.loads(body)
        assert problem["setting"] == "max_connections" and problem["limit"] == 2
        for _, w in held:  # room again once connections close
            w.close()
        for _ in range(100):
            try:
                held = [await keep_alive_request(proc.port)]
                break
            except (AssertionError, asyncio.IncompleteReadError, ConnectionError):
                await asyncio.sleep(0.05)  # the broker sees the closes on its next turn
        assert held
    finally:
        for _, w in held:
            w.close()
        proc.stop()


async def test_idle_connections_are_closed_after_the_keepalive_timeout(tmp_path):
    proc = start(tmp_path, "--keepalive-timeout-s", "0.5")
    try:
        silent_reader, silent = await asyncio.open_connection("127.0.0.1", proc.port)
        used_reader, used = await keep_alive_request(proc.port)
        # Neither sends anything more: the broker closes both (EOF), no answer needed.
        assert await asyncio.wait_for(silent_reader.read(), 10) == b""
        assert await asyncio.wait_for(used_reader.read(), 10) == b""
        silent.close()
        used.close()
    finally:
        proc.stop()
