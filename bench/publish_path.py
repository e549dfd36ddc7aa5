"""The publish path in process: parse, admit and `Bus.publish` with 32 concurrent
publishers, no HTTP. Prints events/s of wall time and CPU microseconds per event of this
process (its threads included), which is steadier than wall time on a shared machine.

    .venv/bin/python bench/publish_path.py [single|batch] [--requests N] [--durability full]

Run it from two trees (`cd <tree> && <venv>/bin/python bench/publish_path.py`) to
compare them; the broker is built from the tree in the current directory.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.getcwd())

import orjson

from broker.auth.principal import LOCAL, check_sources
from broker.core import Broker
from broker.events import Limits, parse_request
from broker.reserved import admit
from broker.settings import Settings

PAYLOAD = "x" * 300


def event(n: int) -> dict[str, object]:
    return {"specversion": "1.0", "id": str(uuid.uuid4()), "source": "bench/publish",
            "type": "bench.event", "subject": f"s{n % 50}", "time": "2026-11-25T10:00:00Z",
            "datacontenttype": "application/json",
            "data": {"n": n, "severity": "warning", "payload": PAYLOAD}}


async def run(mode: str, requests: int, durability: str) -> None:
    size = 100 if mode == "batch" else 1
    ctype = ("application/cloudevents-batch+json" if size > 1
             else "application/cloudevents+json")
    bodies = [orjson.dumps([event(i) for i in range(size)]) if size > 1
              else orjson.dumps(event(n)) for n in range(requests)]
    settings = Settings(data_dir=tempfile.mkdtemp(prefix="opsbus-publish-"),
                        durability=durability, listen="127.0.0.1:0")
    broker = Broker(settings)
    await broker.start()
    limits = Limits(settings.max_event_bytes, settings.max_request_bytes,
                    settings.max_batch_events)
    headers = {"Content-Type": ctype}
    pending = iter(bodies)
    try:
        # The publish handler's work, as far as each tree has it.
        from broker.events import parse_request_encoded
    except ImportError:
        parse_request_encoded = None

    async def publisher() -> None:
        for body in pending:
            encoded = None
            if parse_request_encoded is not None:
                events, encoded, batch = parse_request_encoded(ctype, headers, body, limits)
            else:
                events, batch = parse_request(ctype, headers, body, limits)
            admitted = admit(events, restore=False, batch=batch)
            check_sources(LOCAL, [str(e.get("source")) for e in admitted])
            if encoded is not None and admitted is events:
                answers = await broker.bus.publish(admitted, encoded=encoded)
            else:
                answers = await broker.bus.publish(admitted)
            orjson.dumps([a.to_dict() for a in answers])

    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(publisher() for _ in range(32)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    n = requests * size
    commits = max(broker.bus.commits, 1)
    print(f"{mode}: {n / wall:,.0f} ev/s wall, {cpu / n * 1e6:.1f} µs CPU per event"
          f" ({n:,} events, {n / commits:,.0f} per commit), load {os.getloadavg()[0]:.1f}")
    await broker.stop()
    shutil.rmtree(settings.data_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("single", "batch"))
    parser.add_argument("--requests", type=int, default=None,
                        help="requests to send (default 4,000 single, 300 batched)")
    parser.add_argument("--durability", default="full")
    args = parser.parse_args()
    requests = args.requests or (4000 if args.mode == "single" else 300)
    asyncio.run(run(args.mode, requests, args.durability))


if __name__ == "__main__":
    main()
