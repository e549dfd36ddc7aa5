"""Retention at full size: a count cap holds the store while a million events arrive.

    .venv/bin/python bench/retention.py [--cap 100k] [--events 1M] [--batch 1000]

Starts `opsbus serve` (durable, `synchronous=FULL`) on a fresh data directory with
`--retention-max-events CAP`, a queue whose items stay open and a pull subscription
whose deliveries stay pending. Publishes EVENTS random-id events in batches (4 requests
in flight); one event in 10,000 opens an item and one is delivered to the subscription.
Prints the database size (pages x page size, the write-ahead log included, i.e. what
the file holds once checkpointed) as events arrive, the ingest rate, the events kept
at the end, and checks that every event an open item or pending delivery needs is still
stored. The same assertions at a 2,000 cap run in `make test` (tests/test_retention.py).
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from _common import AUTH, PAYLOAD, discard, machine, parse_count, start_broker

CONFIG = """
[[queues]]
name = "work"

[[routes]]
name = "work"
filter = { exact = { type = "bench.work" } }
targets = ["queue:work"]

[[subscriptions]]
name = "puller"
type = "pull"
filter = { exact = { type = "bench.pulled" } }
"""
BATCH_CT = {"Content-Type": "application/cloudevents-batch+json"}


def database_bytes(path: Path) -> int:
    conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
    try:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        return int(pages) * int(conn.execute("PRAGMA page_size").fetchone()[0])
    finally:
        conn.close()


def event(n: int) -> dict[str, Any]:
    kind = ("bench.work" if n % 10_000 == 7 else "bench.pulled" if n % 10_000 == 9
            else "bench.noise")
    return {"specversion": "1.0", "id": str(uuid.uuid4()), "source": "bench/retention",
            "type": kind, "subject": f"s{n % 5000}" if kind == "bench.work" else f"s{n % 50}",
            "datacontenttype": "application/json",
            "data": {"n": n, "severity": "warning", "payload": PAYLOAD}}


async def run(url: str, db: Path, total: int, batch: int) -> None:
    needed: list[int] = []
    sizes: list[tuple[int, int]] = []
    sent = 0
    lock = asyncio.Lock()
    started = time.monotonic()

    async with aiohttp.ClientSession(headers=AUTH) as http:
        async def worker() -> None:
            nonlocal sent
            while True:
                async with lock:
                    if sent >= total:
                        return
                    first, sent = sent, min(total, sent + batch)
                events = [event(n) for n in range(first, sent)]
                async with http.post(url + "/v1/events", data=orjson.dumps(events),
                                     headers=BATCH_CT) as resp:
                    assert resp.status == 200, await resp.text()
                    answers = await resp.json()
                needed.extend(a["seq"] for e, a in zip(events, answers, strict=True)
                              if e["type"] != "bench.noise")

        async def sampler() -> None:
            mark = total // 10
            while sent < total:
                if sent >= mark:
                    sizes.append((sent, database_bytes(db)))
                    mark += total // 10
                await asyncio.sleep(0.5)

        sampling = asyncio.create_task(sampler())
        await asyncio.gather(*(worker() for _ in range(4)))
        elapsed = time.monotonic() - started
        sampling.cancel()
        # Let retention finish its last passes (it runs every second here).
        await asyncio.sleep(5)
        sizes.append((total, database_bytes(db)))
        kept = 0
        after = 0
        present: set[int] = set()
        while True:
            async with http.get(url + "/v1/events", params={"after": str(after),
                                                            "limit": "1000"}) as resp:
                page = await resp.json()
            kept += len(page["events"])
            present.update(e["seq"] for e in page["events"])
            if page["next_after"] is None or not page["events"]:
                break
            after = page["next_after"]
        async with http.get(url + "/metrics") as resp:
            metrics = {line.split(" ")[0]: line.split(" ")[1]
                       for line in (await resp.text()).splitlines()
                       if line.startswith("opsbus_retention_")}
    missing = [s for s in needed if s not in present]
    print(f"published {total:,} events in {elapsed:.0f}s ({total / elapsed:,.0f} ev/s,"
          f" batches of {batch}, 4 in flight, synchronous=FULL, retention running)")
    print("database size as events arrive (pages x page size, WAL included):")
    for count, size in sizes:
        print(f"  {count:>10,} published  {size / 2**20:8.1f} MiB")
    print(f"events stored at the end: {kept:,}; needed by open items or pending"
          f" deliveries: {len(needed):,}, missing: {len(missing)}")
    for name, value in sorted(metrics.items()):
        print(f"  {name} {value}")
    assert not missing, f"retention removed needed events: {missing[:10]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cap", default="100k")
    parser.add_argument("--events", default="1M")
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()
    cap, total = parse_count(args.cap), parse_count(args.events)
    print(f"machine: {machine()}")
    print(f"cap {cap:,} events, publishing {total:,}\n")
    config = Path(__file__).resolve().parent / ".retention-bench.toml"
    config.write_text(CONFIG)
    broker = start_broker(["--retention-max-events", str(cap), "--retention-resume-window",
                           "0s", "--maintenance-interval-s", "1", "--retention-batch",
                           "10000", "--log-level", "warning"], config=config)
    try:
        asyncio.run(run(broker.url, broker.data_dir / "opsbus.db", total, args.batch))
    finally:
        discard(broker)
        config.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
