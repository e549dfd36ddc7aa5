"""Instructions per published event of the broker process (valgrind's callgrind), over
HTTP with 32 publishes in flight: a count that, unlike CPU time, barely moves with the
load of a shared machine, so two trees can be compared in the same minutes.

    .venv/bin/python bench/publish_instructions.py [single|batch|reference] [--requests N]
        [--idle-seconds 5] [--keep callgrind.out] [--todos]

The broker is `opsbus serve` of the tree in the current directory (authentication on,
`durability = "full"`, a fresh store), run under `valgrind --tool=callgrind`; the count
covers all its threads from after a warm-up to the last answer, less what its timers
(sweeps, polls, maintenance) spend per second idle, measured just before over
`--idle-seconds`: otherwise a slower run counts more of them. Needs valgrind.
`reference` counts, the same way, single-event POSTs to the do-nothing aiohttp handler of
`bench/ingest.py` (the HTTP ceiling); `--keep` saves the dump for `callgrind_annotate`.
`--todos`: one route sends every event to a queue (`bench/routes.py` queue_only), so each
event updates a todo item, as in `bench/ingest.py --todos`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

import aiohttp
import orjson
from _common import ADMIN_TOKEN, AUTH, PAYLOAD, counter, free_port
from routes import queue_only


def body(n: int, size: int) -> bytes:
    def event(i: int) -> dict[str, object]:
        return {"specversion": "1.0", "id": str(uuid.uuid4()), "source": "bench/callgrind",
                "type": "bench.event", "subject": f"s{i % 50}",
                "time": "2026-11-25T10:00:00Z", "datacontenttype": "application/json",
                "data": {"n": i, "severity": "warning", "payload": PAYLOAD}}
    if size == 1:
        return orjson.dumps(event(n))
    return orjson.dumps([event(n * size + k) for k in range(size)])


async def publish(url: str, requests: int, size: int) -> None:
    ctype = ("application/cloudevents+json" if size == 1
             else "application/cloudevents-batch+json")
    pending = iter(range(requests))
    async with aiohttp.ClientSession(headers=AUTH) as session:
        async def publisher() -> None:
            for n in pending:
                async with session.post(url + "/v1/events", data=body(n, size),
                                        headers={"Content-Type": ctype}) as answer:
                    await answer.read()
                    assert answer.status in (200, 201), answer.status

        await asyncio.gather(*(publisher() for _ in range(32)))


def counted(pid: int, work: Path, run: Callable[[], object], keep: Path | None = None
            ) -> tuple[int, float]:
    """Instructions of the broker (all threads) while `run` runs, and its seconds."""
    subprocess.run(["callgrind_control", "-z", str(pid)], check=True, capture_output=True)
    started = time.perf_counter()
    run()
    took = time.perf_counter() - started
    subprocess.run(["callgrind_control", "-d", str(pid)], check=True, capture_output=True)
    dump = max(work.glob("callgrind.out*"), key=lambda p: p.stat().st_mtime)
    if keep is not None:
        shutil.copyfile(dump, keep)
    found = re.search(r"^(?:summary|totals): (\d+)", dump.read_text(errors="replace"), re.M)
    assert found, "no totals in the callgrind dump"
    return int(found.group(1)), took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("single", "batch", "reference"))
    parser.add_argument("--requests", type=int, default=None,
                        help="requests counted (default 400 single, 60 batched)")
    parser.add_argument("--idle-seconds", type=float, default=5.0,
                        help="seconds the idle rate is measured over (0: not taken off)")
    parser.add_argument("--keep", type=Path, default=None,
                        help="copy the counted dump here (for callgrind_annotate)")
    parser.add_argument("--todos", action="store_true",
                        help="every event routed to a todo queue (the broker only)")
    args = parser.parse_args()
    assert shutil.which("valgrind"), "valgrind is not installed"
    size = 100 if args.mode == "batch" else 1
    requests = args.requests or (400 if size == 1 else 60)
    work = Path(tempfile.mkdtemp(prefix="opsbus-callgrind-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    out = work / "callgrind.out"
    served = (["-m", "broker", "serve", "--listen", f"127.0.0.1:{port}", "--data-dir",
               str(work / "data"), "--token", ADMIN_TOKEN,
               *(["--config", str(queue_only())] if args.todos else [])]
              if args.mode != "reference"
              else [str(Path(__file__).with_name("ingest.py")), "--reference-server",
                    str(port)])
    broker = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
         *served],
        cwd=os.getcwd(), env={**os.environ, "PYTHONPATH": os.getcwd()},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 600
        while True:
            try:
                urllib.request.urlopen(url + "/readyz", timeout=5)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        asyncio.run(publish(url, max(requests // 4, 8), size))  # warm-up, not counted
        # The broker's timers (sweeps, polls, maintenance) run under load too, for as
        # long as the count lasts, which valgrind and a busy machine stretch: their rate,
        # measured idle just before, is taken off so trees compare by their requests.
        idle_rate = 0.0
        if args.idle_seconds > 0:
            idle, idle_took = counted(broker.pid, work, lambda: time.sleep(args.idle_seconds))
            idle_rate = idle / idle_took
        before = counter(url)
        total, took = counted(broker.pid, work, lambda: asyncio.run(publish(url, requests, size)),
                              keep=args.keep)
        after = counter(url)
        events = requests * size
        groups = ("" if before is None or after is None
                  else f", {events / max(after - before, 1):.1f} events per commit")
        print(f"{args.mode}: {(total - idle_rate * took) / events:,.0f} instructions per event"
              f" less the idle timers' ({total / events:,.0f} with them, {idle_rate:,.0f}"
              f" per second idle; {events:,} events, {took:.0f} s under valgrind{groups})")
    finally:
        broker.terminate()
        broker.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
