"""Peers side by side: one publishing harness against opsbus, NATS JetStream (file
storage) and Redis streams, same payloads, same number of publishes in flight, each
awaited for its acknowledgement.

    .venv/bin/python bench/peers.py [--seconds 10] [--in-flight 32] [--repeat 3]
                                    [--prefill 0] [--nats nats://127.0.0.1:4222]
                                    [--redis redis://127.0.0.1:6379]

One asyncio process drives every target with the same loop: `in-flight` workers, each
publishing one message (or one batch of 100 for "opsbus batched") and awaiting the
acknowledgement before the next. Payloads are the same structured CloudEvent JSON with a
random UUID id. opsbus runs with `durability = "full"` (fsync before the answer), on a
fresh store each repeat (or the pre-filled one);
JetStream gets a temporary file-storage stream (deleted afterwards) with the event id
as `Nats-Msg-Id`, so it deduplicates like opsbus; Redis gets `XADD` to a temporary key.
What each acknowledgement means differs and is printed beside the figure. Targets that
are not running are reported and skipped. Each repeat also measures the storage ceiling:
raw SQLite `executemany` of the broker's rows into a fresh store in its own layout, 3,200
rows per fsynced commit (`ingest.py`'s reference), so a goal stated against a peer can be
read against what the disk and SQLite allow in the same minutes. And each repeat drives
two HTTP references with the same harness, batched: the do-nothing aiohttp handler
(`ingest.py`'s, which reads each body and answers), the most any batched publisher over
this HTTP stack and this client gets on this machine, and the durable handler
(`durable_reference.py`), which also parses and group-commits the events into a fresh
store. Prints figures; asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson
from _common import AUTH, PAYLOAD, discard, machine, parse_count, start_broker
from ingest import durable_reference, fresh_store, reference, sqlite_ceiling

RAW = "raw SQLite (3,200/commit)"
DO_NOTHING = "do-nothing handler, batched"
DURABLE = "durable handler, batched"
Publish = Callable[[], Awaitable[int]]
"""Publishes one message or batch, awaits its acknowledgement, returns events acked."""


def payload() -> tuple[str, bytes]:
    ident = str(uuid.uuid4())
    return ident, orjson.dumps({
        "specversion": "1.0", "id": ident, "source": "bench/peers", "type": "bench.event",
        "subject": "s1", "time": "2026-11-25T10:00:00Z", "datacontenttype": "application/json",
        "data": {"severity": "warning", "payload": PAYLOAD}})


async def drive(publish: Publish, in_flight: int, seconds: float) -> float:
    """Events acknowledged per second with `in_flight` publishers awaiting each ack."""
    done = 0
    deadline = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal done
        while time.monotonic() < deadline:
            acked = await publish()  # not `done += await …`: that reads `done` first
            done += acked

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return done / (time.monotonic() - started)


async def opsbus_targets(url: str) -> tuple[Publish, Publish, Callable[[], Awaitable[None]]]:
    import aiohttp

    session = aiohttp.ClientSession(headers=AUTH, connector=aiohttp.TCPConnector(limit=0))
    single_headers = {"Content-Type": "application/cloudevents+json"}
    batch_headers = {"Content-Type": "application/cloudevents-batch+json"}

    async def single() -> int:
        async with session.post(url + "/v1/events", data=payload()[1],
                                headers=single_headers) as resp:
            await resp.read()
            return 1 if resp.status < 300 else 0

    async def batched() -> int:
        body = b"[" + b",".join(payload()[1] for _ in range(100)) + b"]"
        async with session.post(url + "/v1/events", data=body, headers=batch_headers) as resp:
            await resp.read()
            return 100 if resp.status < 300 else 0

    return single, batched, session.close


async def references(in_flight: int, seconds: float) -> dict[str, float]:
    """The batched rate of the do-nothing and the durable handlers, same harness."""
    rates: dict[str, float] = {}
    store = await asyncio.to_thread(fresh_store)  # creates it with a loop of its own
    try:
        with reference() as (_, plain_url), durable_reference(store) as (_, durable_url):
            for name, url in {DO_NOTHING: plain_url, DURABLE: durable_url}.items():
                _, batched, close = await opsbus_targets(url)
                try:
                    rates[name] = await drive(batched, in_flight, seconds)
                finally:
                    await close()
    finally:
        shutil.rmtree(store.parent, ignore_errors=True)
    return rates


async def jetstream_target(server: str) -> tuple[Publish, Callable[[], Awaitable[None]]]:
    import nats
    from nats.js.api import StorageType, StreamConfig

    nc = await nats.connect(server, connect_timeout=2, max_reconnect_attempts=0)
    js = nc.jetstream()
    name = f"OPSBUS_BENCH_{uuid.uuid4().hex[:8].upper()}"
    subject = f"opsbus.bench.{name.lower()}"
    await js.add_stream(StreamConfig(name=name, subjects=[subject],
                                     storage=StorageType.FILE))

    async def publish() -> int:
        ident, body = payload()
        await js.publish(subject, body, headers={"Nats-Msg-Id": ident})
        return 1

    async def close() -> None:
        await js.delete_stream(name)
        await nc.close()

    return publish, close


async def redis_target(url: str, in_flight: int) -> tuple[Publish, Callable[[], Awaitable[None]]]:
    import redis.asyncio as redis

    client = redis.Redis.from_url(url, max_connections=in_flight)
    await client.ping()
    key = f"opsbus-bench-{uuid.uuid4().hex[:8]}"

    async def publish() -> int:
        await client.xadd(key, {"event": payload()[1]})
        return 1

    async def close() -> None:
        await client.delete(key)
        await client.aclose()

    return publish, close


def raw_sqlite(seconds: float) -> float:
    """The storage ceiling's events/s into a fresh store of its own, removed after."""
    from prefill import create_schema, store_path

    with tempfile.TemporaryDirectory(prefix="opsbus-peers-raw-") as folder:
        create_schema(Path(folder))
        return sqlite_ceiling(store_path(Path(folder)), seconds)


def spread(values: list[float]) -> str:
    values = sorted(values)
    mid = values[len(values) // 2]
    return f"{mid:>9,.0f}" + (f" ({values[0]:,.0f}-{values[-1]:,.0f})" if len(values) > 1
                              else "")


async def main(args: argparse.Namespace) -> None:
    print(f"machine: {machine()}")
    print(f"{args.in_flight} publishes in flight, each awaited; {args.seconds}s per figure,"
          f" {args.repeat} repeat(s); opsbus store holds {args.prefill:,} events before\n")
    results: dict[str, list[float]] = {}
    meaning: dict[str, str] = {
        "opsbus single": "HTTP 201 after fsync (synchronous=FULL), deduplicated by (source, id)",
        "opsbus batched (100/request)": "HTTP 200 after fsync, per event",
        "NATS JetStream (file)": "PubAck after the write to the stream file (not fsynced per"
                                 " message), deduplicated by Nats-Msg-Id within 2 min",
        "Redis streams": "XADD reply from memory (this server keeps nothing on disk)",
        RAW: "storage ceiling: no HTTP, no validation, no dedupe probe; in process",
        DO_NOTHING: "HTTP ceiling: reads each body and answers, stores nothing",
        DURABLE: "parses, group-commits with fsync; no validation, probe or routing",
    }
    closers = []
    try:
        targets: dict[str, Publish] = {}
        try:
            js, close = await jetstream_target(args.nats)
            closers.append(close)
            targets["NATS JetStream (file)"] = js
        except Exception as exc:  # the peer is optional: report and go on
            print(f"NATS JetStream at {args.nats} skipped: {exc!r}")
        try:
            rd, close = await redis_target(args.redis, args.in_flight)
            closers.append(close)
            targets["Redis streams"] = rd
        except Exception as exc:
            print(f"Redis at {args.redis} skipped: {exc!r}")
        for _ in range(args.repeat):  # interleaved, so a noisy moment hits every target
            # A broker of its own each repeat: on a fresh store every repeat starts from
            # an empty period, as the raw ceiling's fresh store does (a period's keys
            # are what a commit's cost grows with); a pre-filled store is kept.
            broker = start_broker(["--durability", "full", "--log-level", "warning"],
                                  prefill=args.prefill)
            try:
                single, batched, close = await opsbus_targets(broker.url)
                try:
                    for name, publish in {"opsbus single": single,
                                          "opsbus batched (100/request)": batched,
                                          **targets}.items():
                        results.setdefault(name, []).append(
                            await drive(publish, args.in_flight, args.seconds))
                finally:
                    await close()
            finally:
                discard(broker)
            results.setdefault(RAW, []).append(await asyncio.to_thread(raw_sqlite, args.seconds))
            for name, rate in (await references(args.in_flight, args.seconds)).items():
                results.setdefault(name, []).append(rate)
    finally:
        for close in closers:
            await close()
    js_rate = sorted(results.get("NATS JetStream (file)", [0]))[args.repeat // 2]
    print(f"{'target':<30} {'events/s (median, min-max)':>32}  vs JetStream  acknowledgement")
    for name, values in results.items():
        mid = sorted(values)[len(values) // 2]
        ratio = f"{mid / js_rate:>6.2f}x" if js_rate else "   n/a"
        print(f"{name:<30} {spread(values):>32}  {ratio:>11}  {meaning[name]}")
    print("\ngoal: opsbus batched >= 3x JetStream's per-message rate")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--in-flight", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--prefill", type=parse_count, default=0)
    parser.add_argument("--nats", default="nats://127.0.0.1:4222")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379")
    asyncio.run(main(parser.parse_args()))
