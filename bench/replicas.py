"""Scale-out figures: single and batched ingest and publish-to-SSE latency on SQLite (one
broker) and on PostgreSQL with 1, 2 and 3 replicas, same load generator, same run.

Load is split evenly over the replicas (wrk per replica, connections divided, so the
total offered load is the same in every setup); for latency, publishes go round-robin to
the replicas and the SSE readers are spread over them, so most deliveries cross from one
replica to another through the database.

    .venv/bin/python bench/replicas.py --seconds 10 --rate 500 --readers 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _common import AUTH, BATCH_LUA, SINGLE_LUA, WRK, BrokerProcess, machine, wrk
from ingest import _SseReader, event_json, python_load

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"

SETUPS = (("sqlite", 1), ("postgresql", 1), ("postgresql", 2), ("postgresql", 3))


def start(backend: str, replicas: int) -> tuple[list[BrokerProcess], str | None]:
    """The brokers of one setup, and the schema to drop after it (PostgreSQL)."""
    folder = Path(tempfile.mkdtemp(prefix="opsbus-bench-replicas-"))
    args = ["--durability", "full", "--log-level", "warning"]
    schema = None
    if backend == "postgresql":
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from tests.pg_support import create_schema, with_schema

        schema = create_schema()
        args += ["--store", with_schema(PG_URL, schema)]
    procs = [BrokerProcess(folder / f"replica{n}", args=args).start(timeout=300)
             for n in range(replicas)]
    return procs, schema


def stop(procs: list[BrokerProcess], schema: str | None) -> None:
    for proc in procs:
        proc.stop()
    if schema is not None:
        from tests.pg_support import drop_schema

        drop_schema(schema)


def spread_load(urls: list[str], batch: int, seconds: int, connections: int = 32) -> float:
    """Requests/s summed over one load generator per replica."""
    share = max(1, connections // len(urls))

    def one(url: str) -> float:
        if WRK:
            return wrk(url, BATCH_LUA if batch > 1 else SINGLE_LUA, connections=share,
                       seconds=seconds, threads=1)[0]
        return asyncio.run(python_load(url, batch, share, seconds))

    with ThreadPoolExecutor(len(urls)) as pool:
        return sum(pool.map(one, urls))


async def readers_process(urls: list[str], readers: int, expected: int, seconds: float
                          ) -> None:
    """SSE readers spread over the replicas (own process); prints the samples."""
    from urllib.parse import urlsplit

    loop = asyncio.get_running_loop()
    samples: list[int] = []
    done_events = []
    for n in range(readers):
        parts = urlsplit(urls[n % len(urls)])
        done = asyncio.Event()
        done_events.append(done)
        await loop.create_connection(
            lambda d=done: _SseReader("/v1/stream", samples, d, expected),
            parts.hostname, parts.port)
    await asyncio.sleep(0.5)  # let every stream subscribe before the first publish
    print("ready", flush=True)
    try:
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in done_events)), seconds + 30)
    except TimeoutError:
        pass
    print(json.dumps(samples), flush=True)


async def latency(urls: list[str], readers: int, rate: int, seconds: float
                  ) -> dict[str, float]:
    import aiohttp
    import orjson

    expected = int(rate * seconds)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--readers", json.dumps(urls), str(readers),
        str(expected), str(seconds), stdout=asyncio.subprocess.PIPE, limit=1 << 30)
    assert proc.stdout is not None
    assert (await proc.stdout.readline()).strip() == b"ready"
    prefix = uuid.uuid4().hex[:8]
    pending: set[asyncio.Task[None]] = set()
    async with aiohttp.ClientSession(
            headers=AUTH, connector=aiohttp.TCPConnector(limit=64)) as session:

        async def send(n: int) -> None:
            body = orjson.dumps(event_json(n, prefix, time.time_ns()))
            async with session.post(urls[n % len(urls)] + "/v1/events", data=body, headers={
                    "Content-Type": "application/cloudevents+json"}) as resp:
                await resp.read()

        start_at = time.monotonic()
        for n in range(expected):
            delay = start_at + n / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(send(n))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending)
    samples = sorted(json.loads(await proc.stdout.readline()))
    await proc.wait()
    if not samples:
        return {"p50_ms": float("nan"), "p99_ms": float("nan"), "samples": 0}
    pick = lambda q: samples[min(len(samples) - 1, int(q * len(samples)))] / 1e6  # noqa: E731
    return {"p50_ms": pick(0.50), "p99_ms": pick(0.99), "samples": len(samples),
            "expected": expected * readers}


def wait_idle(url: str, quiet_s: float = 1.0, timeout: float = 300.0) -> None:
    """Until the log's head stops moving (the ingest runs' queued work has committed), so
    the latency run does not queue behind it."""
    import urllib.request

    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        with urllib.request.urlopen(url + "/readyz", timeout=30) as resp:
            head = json.loads(resp.read())["last_seq"]
        if head != last:
            last, since = head, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
        time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--readers", type=int, default=30)
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--setups", default="sqlite:1,postgresql:1,postgresql:2,postgresql:3")
    args = parser.parse_args()
    setups = [(s.split(":")[0], int(s.split(":")[1])) for s in args.setups.split(",")]
    print(f"machine: {machine()}")
    print(f"load generator: {'wrk ' + WRK if WRK else 'python aiohttp client'}; 32"
          f" connections split over the replicas; latency at {args.rate} events/s with"
          f" {args.readers} SSE readers spread over the replicas; {args.seconds}s per figure\n")
    print(f"{'setup':<16} {'single ev/s':>12} {'batched ev/s':>13} {'SSE p50 ms':>11}"
          f" {'SSE p99 ms':>11} {'deliveries':>12}")
    for backend, count in setups:
        procs, schema = start(backend, count)
        try:
            urls = [p.url for p in procs]
            single = spread_load(urls, 1, args.seconds)
            batched = spread_load(urls, 100, args.seconds) * 100
            wait_idle(urls[0])
            lat = asyncio.run(latency(urls, args.readers, args.rate, args.seconds))
        finally:
            stop(procs, schema)
        print(f"{backend + ' x' + str(count):<16} {single:>12,.0f} {batched:>13,.0f}"
              f" {lat['p50_ms']:>11.1f} {lat['p99_ms']:>11.1f}"
              f" {lat['samples']:>6,}/{lat.get('expected', 0):,}", flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--readers":
        asyncio.run(readers_process(json.loads(sys.argv[2]), int(sys.argv[3]),
                                    int(sys.argv[4]), float(sys.argv[5])))
    else:
        main()
