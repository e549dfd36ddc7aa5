"""Read benchmark: listing latency and SSE catch-up on a store of a given size.

    .venv/bin/python bench/reads.py [--prefill 10M] [--requests 200] [--catchup 100000]

Starts `opsbus serve` on a pre-filled store (see prefill.py: events over the past month,
one todo item per 10 events over 10 queues) and measures, one request at a time so the
figure is the server's latency, p50 and p99 of: `GET /v1/todos?queue=&state=open`,
`GET /v1/queues`, `GET /v1/events` (newest page), `GET /v1/events?type=` (exact
attribute), `GET /v1/events?filter=` with a CESQL filter matching ~1 % and one matching
nothing; then an SSE catch-up: `GET /v1/stream?after=<head - N>` read until the head
arrives, repeated. Reference in the same run: `GET /healthz` (the HTTP floor).
Beside each latency, the broker's CPU time per request (all its threads, from
/proc/<pid>/task/*/schedstat): on a shared machine the wall figures follow the load,
the CPU per request much less. Prints figures; asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from urllib.parse import quote

import aiohttp
from _common import AUTH, discard, machine, parse_count, start_broker


def cpu_ns(pid: int) -> int:
    """CPU time a process has run so far, all its threads (ns; 0 off Linux)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # a thread that just ended
    return total


def pct(samples: list[float], q: float) -> float:
    samples = sorted(samples)
    return samples[min(len(samples) - 1, int(q * len(samples)))]


async def timed_get(session: aiohttp.ClientSession, url: str, n: int) -> list[float]:
    took = []
    for _ in range(n):
        t0 = time.perf_counter()
        async with session.get(url) as resp:
            await resp.read()
            assert resp.status == 200, (url, resp.status)
        took.append((time.perf_counter() - t0) * 1000)
    return took


async def catch_up(host: str, port: int, after: int, head: int) -> float:
    """Seconds to receive every event from after+1 to head over SSE (raw socket)."""
    reader, writer = await asyncio.open_connection(host, port)
    t0 = time.perf_counter()
    writer.write(f"GET /v1/stream?after={after} HTTP/1.0\r\nHost: bench\r\n"
            f"Authorization: {AUTH['Authorization']}\r\n\r\n".encode())
    target = b"id: %d\n" % head
    tail = b""
    while True:
        chunk = await reader.read(1 << 20)
        if not chunk:
            raise RuntimeError("stream ended before the head")
        if target in tail + chunk:
            break
        tail = chunk[-64:]
    took = time.perf_counter() - t0
    writer.close()
    return took


async def run(args: argparse.Namespace) -> None:
    print(f"machine: {machine()}")
    broker = start_broker(["--log-level", "warning"], prefill=args.prefill)
    try:
        async with aiohttp.ClientSession(headers=AUTH) as session:
            async with session.get(broker.url + "/v1/events?order=desc&limit=1") as resp:
                head = (await resp.json())["events"][0]["seq"] if args.prefill else 0
            async with session.get(broker.url + "/v1/queues") as resp:
                queues = await resp.json()
            items = sum(q.get("open", 0) + q.get("claimed", 0) + q.get("resolved", 0)
                        + q.get("snoozed", 0) for q in (queues if isinstance(queues, list)
                                                        else queues.get("queues", [])))
            print(f"store: {head:,} events, {items:,} todo items; {args.requests} sequential"
                  " requests per figure\n")
            queue = "queue-3"
            cases = [
                ("GET /healthz (HTTP floor)", "/healthz"),
                ("GET /v1/todos?queue=&state=open", f"/v1/todos?queue={queue}&state=open"),
                ("GET /v1/queues", "/v1/queues"),
                ("GET /v1/events (newest 100)", "/v1/events?order=desc&limit=100"),
                ("GET /v1/events?type= (exact)",
                 "/v1/events?order=desc&limit=100&type=svc3.deploy.done"),
                ("GET /v1/events?filter= ~1 %",
                 "/v1/events?order=desc&limit=100&filter="
                 + quote("subject LIKE 'node-1_' OR subject = 's7'")),
                ("GET /v1/events?filter= none",
                 "/v1/events?order=desc&limit=100&filter=" + quote("type = 'never.sent'")),
            ]
            print(f"{'request':<36} {'p50 ms':>9} {'p99 ms':>9} {'CPU ms/req':>11}")
            pid = broker.proc.pid if broker.proc is not None else 0
            for name, path in cases:
                cpu0 = cpu_ns(pid)
                took = await timed_get(session, broker.url + path, args.requests)
                cpu = (cpu_ns(pid) - cpu0) / args.requests / 1e6
                print(f"{name:<36} {pct(took, .5):>9.2f} {pct(took, .99):>9.2f}"
                      f" {cpu:>11.3f}", flush=True)
        if head >= args.catchup:
            runs = [await catch_up("127.0.0.1", broker.port, head - args.catchup, head)
                    for _ in range(args.catchup_runs)]
            print(f"\nSSE catch-up of {args.catchup:,} events ({args.catchup_runs} runs): "
                  f"p50 {pct(runs, .5):.2f}s  p99 {pct(runs, .99):.2f}s  "
                  f"({args.catchup / pct(runs, .5):,.0f} events/s)")
        else:
            print(f"\nSSE catch-up skipped: the store holds fewer than {args.catchup:,} events")
    finally:
        discard(broker)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefill", type=parse_count, default=parse_count("1M"))
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--catchup", type=parse_count, default=100_000)
    parser.add_argument("--catchup-runs", type=int, default=5)
    asyncio.run(run(parser.parse_args()))
