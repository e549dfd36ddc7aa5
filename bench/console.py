"""Benchmark (not a test): how fast the console's Stream screen follows a burst, and its
memory after a long one. Starts a broker, runs the console headless, publishes from a
separate process; prints figures and asserts nothing.

    .venv/bin/python bench/console.py [--burst 20000] [--long 200000]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _common import machine as base_machine  # noqa: E402

from console.app import OpsbusConsole  # noqa: E402
from console.screens.stream import StreamScreen  # noqa: E402
from tests.broker_process import BrokerProcess  # noqa: E402

PUBLISHER = r"""
import json, sys, urllib.request
url, count, tag = sys.argv[1], int(sys.argv[2]), sys.argv[3]
batch, last = 1000, 0
for start in range(0, count, batch):
    events = [{"specversion": "1.0", "id": f"{tag}-{n}", "source": "bench/console",
               "type": "bench.event", "subject": f"host-{n % 50}",
               "time": "2026-11-25T10:00:00Z", "data": {"n": n, "summary": f"event {n}"}}
              for n in range(start, min(count, start + batch))]
    req = urllib.request.Request(url + "/v1/events", data=json.dumps(events).encode(),
                                 headers={"Content-Type": "application/cloudevents-batch+json"})
    with urllib.request.urlopen(req) as resp:
        last = json.loads(resp.read())[-1]["seq"]
print(last)
"""


def rss_mb() -> tuple[float, float]:
    """Current and peak resident memory of this process (Linux), in MiB."""
    values = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)


def machine() -> str:
    import textual

    return f"{base_machine()}, Textual {textual.__version__}"


async def follow(app: OpsbusConsole, pilot: object, url: str, count: int, tag: str
                 ) -> tuple[float, float, int]:
    """Publish `count` events from a child process; seconds until the last one is the
    newest row on screen, and the publishing time."""
    screen = app.screen
    assert isinstance(screen, StreamScreen)
    start = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", PUBLISHER, url, str(count), tag, stdout=subprocess.PIPE)
    out, _ = await proc.communicate()
    published = time.perf_counter() - start
    last = int(out.decode().strip())
    while screen.table.last_seq < last:
        await asyncio.sleep(0.005)
    await pilot.pause()  # type: ignore[attr-defined]
    return time.perf_counter() - start, published, len(screen.table.rows)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--burst", type=int, default=20_000)
    parser.add_argument("--long", type=int, default=200_000)
    args = parser.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        broker = BrokerProcess(Path(tmp) / "data", args=["--durability", "off"]).start()
        try:
            app = OpsbusConsole(broker.url, operator="bench")
            async with app.run_test(size=(160, 45)) as pilot:
                screen = app.screen
                assert isinstance(screen, StreamScreen)
                while not (screen.loaded and app.connection == "connected"):
                    await pilot.pause(0.05)
                before, _ = rss_mb()
                seconds, published, rows = await follow(app, pilot, broker.url, args.burst,
                                                        "burst")
                print(f"burst: {args.burst:,} events published in {published:.2f} s; "
                      f"last one on the Stream screen after {seconds:.2f} s "
                      f"({args.burst / seconds:,.0f} events/s end to end), {rows:,} rows held")
                seconds, published, rows = await follow(app, pilot, broker.url, args.long,
                                                        "long")
                now, peak = rss_mb()
                print(f"long: {args.long:,} events published in {published:.2f} s; "
                      f"shown after {seconds:.2f} s ({args.long / seconds:,.0f} events/s); "
                      f"{rows:,} rows held (window {app.window:,})")
                print(f"console process memory: RSS {before:.0f} MiB before, {now:.0f} MiB "
                      f"after {args.burst + args.long:,} events (peak {peak:.0f} MiB)")
        finally:
            broker.stop()


if __name__ == "__main__":
    asyncio.run(main())
