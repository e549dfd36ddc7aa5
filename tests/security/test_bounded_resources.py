"""500 stalled SSE readers: what they cost the broker is bounded, good readers keep their
pace, and the memory comes back once they are gone.

A stalled reader sends its request and never reads. Once its socket is full (the kernel
buffer, capped by `stream_socket_buffer_bytes`, then 64 KiB queued in the process), the
live events it misses wait as references to bytes every stream shares; past
`stream_buffer_bytes` of them it is dropped with a note to resume by Last-Event-ID.

Figures are measured in the run, against a baseline taken in the same run before and
after the stalled readers (the larger of the two p99s), so a slow or noisy machine
weighs on both alike.
"""

from __future__ import annotations

import asyncio
import re
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import orjson
import pytest

from broker.http.stream import SOCKET_HIGH_WATER
from broker.settings import Settings
from tests.broker_process import AUTH, BrokerProcess
from tests.conftest import BATCH, make_event
from tests.sse import opening_id, read_sse, stalled_stream

STALLED = 500
GOOD = 4
EVENTS_PER_ROUND = 2
PAD = 1000
"""Bytes of padding per event. Rounds are small and many: a scheduling hiccup on a
busy machine spoils one round's samples, so many rounds keep p99 about the broker."""
BASELINE_ROUNDS = 600
MIB = 1024 * 1024

PER_STALLED_READER = (SOCKET_HIGH_WATER  # copied into its socket's buffer
                      + EVENTS_PER_ROUND * (PAD + 400)  # the batch that crossed the line
                      + 64 * 1024)  # the connection, its request and its stream objects
"""The documented cost of one stalled reader (docs/operations.md, "Limits"); the live
events it is behind on are shared with every other reader (one copy, at most
stream_buffer_bytes, counted once in the ceiling)."""
CEILING_SLACK = Settings.stream_buffer_bytes + 16 * MIB
"""Beyond the readers' own cost: the shared pending events, and what the broker itself
allocates during the run."""
RETURN_MARGIN = 0.25
RETURN_FLOOR = 32 * MIB
"""After the stalled readers are gone, RSS is back within RETURN_MARGIN of what they
added, or RETURN_FLOOR, whichever is more: Python's small-object allocator keeps some
freed arenas, and the store's caches grow with the events published meanwhile
(13 to 22 MiB above the baseline is what runs on a loaded 2-core machine ended at)."""


def rss_bytes(pid: int) -> int:
    """VmRSS of a process, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
    assert match, status
    return int(match.group(1)) * 1024


async def metric(http: aiohttp.ClientSession, url: str, name: str) -> float:
    async with http.get(url + "/metrics") as resp:
        text = await resp.text()
    match = re.search(rf"^{name} (\S+)$", text, re.M)
    assert match, name
    return float(match.group(1))


async def until(check, what: str, timeout: float = 30.0) -> None:
    """Poll `check` (async, truthy when done) until it holds or the deadline passes."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def drop(sock: socket.socket) -> None:
    """Close with a reset, as a client that vanished does (no lingering FIN handshake)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


class GoodReaders:
    """Readers that keep up; each event's latency is its arrival here minus the
    publisher's stamp in its data (time.monotonic_ns is one clock for both processes)."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.seen: list[int] = [0] * GOOD
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self, http: aiohttp.ClientSession, url: str) -> None:
        opened = [asyncio.get_running_loop().create_future() for _ in range(GOOD)]
        self.tasks = [asyncio.create_task(self._read(http, url, i, opened[i]))
                      for i in range(GOOD)]
        await asyncio.wait_for(asyncio.gather(*opened), 30)

    async def _read(self, http: aiohttp.ClientSession, url: str, index: int,
                    opened: asyncio.Future[None]) -> None:
        async with http.get(url + "/v1/stream") as resp:
            messages = read_sse(resp)
            await opening_id(messages)
            opened.set_result(None)
            async for msg in messages:
                if msg.get("event") == "cloudevent":
                    arrived = time.monotonic_ns()
                    self.latencies.append((arrived - msg["data"]["data"]["t"]) / 1e6)
                    self.seen[index] = int(msg["id"])

    async def caught_up(self, seq: int) -> None:
        async def done() -> bool:
            for task in self.tasks:
                if task.done():
                    task.result()  # a reader that ended raises its error here
            return min(self.seen) >= seq
        await until(done, f"good readers at seq {seq}")

    def stop(self) -> None:
        for task in self.tasks:
            task.cancel()


async def rounds(http: aiohttp.ClientSession, url: str, good: GoodReaders, count: int,
                 pid: int) -> int:
    """Publish `count` rounds, each once every good reader has the previous one (so
    latencies measure the broker, not a queue the test built); the peak RSS seen."""
    peak = 0
    for _ in range(count):
        events = [make_event(data={"t": time.monotonic_ns(), "pad": "x" * PAD})
                  for _ in range(EVENTS_PER_ROUND)]
        async with http.post(url + "/v1/events", data=orjson.dumps(events),
                             headers=BATCH) as resp:
            assert resp.status == 200, await resp.text()
            last = (await resp.json())[-1]["seq"]
        peak = max(peak, rss_bytes(pid))
        await good.caught_up(last)
    return peak


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    proc = BrokerProcess(tmp_path / "data", args=["--durability", "off"]).start()
    try:
        yield proc
    finally:
        proc.stop()


async def test_stalled_readers_cost_a_bounded_buffer_and_give_it_back(broker, capsys):
    assert broker.proc is not None
    pid = broker.proc.pid
    stalled: list[socket.socket] = []
    good = GoodReaders()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                     headers=AUTH) as http:
        try:
            await good.start(http, broker.url)
            await rounds(http, broker.url, good, BASELINE_ROUNDS // 2, pid)  # warm-up
            good.latencies.clear()
            await rounds(http, broker.url, good, BASELINE_ROUNDS, pid)
            baseline_p99 = p99(good.latencies)
            baseline_rss = rss_bytes(pid)

            for start in range(0, STALLED, 50):
                stalled += await asyncio.gather(*(stalled_stream(broker.port)
                                                  for _ in range(start, start + 50)))

            async def all_open() -> bool:
                return await metric(http, broker.url, "opsbus_streams_open") >= GOOD + STALLED
            await until(all_open, f"{STALLED} stalled streams subscribed")
            opened_rss = rss_bytes(pid)
            drops_before = await metric(http, broker.url, "opsbus_stream_drops_total")

            # Until the stalled readers' sockets are full, writing to them costs what
            # writing to any reader costs (500 sockets taking bytes): that cost is
            # reported, not held against them.
            good.latencies.clear()
            peak = 0
            fill_rounds = 0
            while await metric(http, broker.url, "opsbus_streams_behind") < STALLED:
                peak = max(peak, await rounds(http, broker.url, good, 10, pid))
                fill_rounds += 10
                assert fill_rounds < 2000, "the stalled readers' sockets never filled"
            fill_p99 = p99(good.latencies)
            # Stalled: their live events wait for them, until each is dropped.
            good.latencies.clear()
            stalled_rounds = 0
            while stalled_rounds < BASELINE_ROUNDS or await metric(
                    http, broker.url, "opsbus_stream_drops_total") < drops_before + STALLED:
                peak = max(peak, await rounds(http, broker.url, good, 10, pid))
                stalled_rounds += 10
                assert stalled_rounds < 4000, "the stalled readers were never dropped"
            stalled_p99 = p99(good.latencies)
            samples = len(good.latencies)

            for sock in stalled:
                drop(sock)
            stalled.clear()

            async def all_closed() -> bool:
                return await metric(http, broker.url, "opsbus_streams_open") <= GOOD
            await until(all_closed, "the stalled streams to end")
            growth = max(0, peak - baseline_rss)
            allowed_after = baseline_rss + max(RETURN_FLOOR, RETURN_MARGIN * growth)

            async def returned() -> bool:
                return rss_bytes(pid) <= allowed_after
            try:
                await until(returned, "memory to come back", timeout=20)
            finally:
                after_rss = rss_bytes(pid)
            # The baseline again, now the stalled readers are gone: machine noise in
            # either half of the run then counts against neither.
            good.latencies.clear()
            await rounds(http, broker.url, good, BASELINE_ROUNDS, pid)
            baseline_p99 = max(before_p99 := baseline_p99, after_p99 := p99(good.latencies))
            ceiling = baseline_rss + STALLED * PER_STALLED_READER + CEILING_SLACK
            with capsys.disabled():
                print(f"\nbounded resources: baseline RSS {baseline_rss / MIB:.0f} MiB,"
                      f" with {STALLED} stalled readers open {opened_rss / MIB:.0f} MiB,"
                      f" peak {peak / MIB:.0f} MiB (ceiling {ceiling / MIB:.0f} MiB),"
                      f" after they are gone {after_rss / MIB:.0f} MiB"
                      f" (allowed {allowed_after / MIB:.0f} MiB); good readers' p99"
                      f" {before_p99:.1f} ms before, {fill_p99:.1f} ms while their"
                      f" sockets filled ({fill_rounds} rounds), {stalled_p99:.1f} ms with"
                      f" them stalled ({samples} samples, {stalled_rounds} rounds),"
                      f" {after_p99:.1f} ms after")
            assert peak <= ceiling
            assert stalled_p99 <= 2 * baseline_p99
        finally:
            for sock in stalled:
                drop(sock)
            good.stop()
            await asyncio.gather(*good.tasks, return_exceptions=True)
