"""Benchmark (not a test): how fast the console's Stream screen follows a burst, its
memory after a long one, and (`--switch`) screen-switch and input-to-paint latency while
2,000 events/s flow. Starts a broker, publishes from a separate process; prints figures
and asserts nothing.

    .venv/bin/python bench/console.py [--burst 20000] [--long 200000]
    .venv/bin/python bench/console.py --switch [--rate 2000] [--rounds 20]

`--switch` runs `opsbus console` on a pseudo-terminal as a person would and times each
key from the moment it is written to the moment the terminal receives the new screen's
text: switching Queues ⇄ Stream, and pausing / resuming the Stream; first idle, then
while a child process publishes `--rate` events/s in batches of 100.
"""

from __future__ import annotations

import argparse
import asyncio
import os
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
from tests.broker_process import ADMIN_TOKEN, BrokerProcess  # noqa: E402

PUBLISHER = r"""
import json, sys, urllib.request
url, count, tag, token = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
batch, last = 1000, 0
for start in range(0, count, batch):
    events = [{"specversion": "1.0", "id": f"{tag}-{n}", "source": "bench/console",
               "type": "bench.event", "subject": f"host-{n % 50}",
               "time": "2026-11-25T10:00:00Z", "data": {"n": n, "summary": f"event {n}"}}
              for n in range(start, min(count, start + batch))]
    req = urllib.request.Request(url + "/v1/events", data=json.dumps(events).encode(),
                                 headers={"Content-Type": "application/cloudevents-batch+json",
                                          "Authorization": f"Bearer {token}"})
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
        sys.executable, "-c", PUBLISHER, url, str(count), tag, ADMIN_TOKEN,
        stdout=subprocess.PIPE)
    out, _ = await proc.communicate()
    published = time.perf_counter() - start
    last = int(out.decode().strip())
    while screen.table.last_seq < last:
        await asyncio.sleep(0.005)
    await pilot.pause()  # type: ignore[attr-defined]
    return time.perf_counter() - start, published, len(screen.table.rows)


PACED = r"""
import json, sys, time, urllib.request
url, rate, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
token = sys.argv[4]
batch = 100
start, sent = time.monotonic(), 0
while time.monotonic() - start < seconds:
    # One event in twenty is an alert the sample config routes to a queue (100 distinct
    # groups): items change and their audit events flow, as in a replayed day.
    events = [{"specversion": "1.0", "id": f"paced-{sent + n}", "source": "bench/console",
               "type": "bench.event", "subject": f"host-{n % 50}",
               "time": "2026-11-25T10:00:00Z", "data": {"n": sent + n}}
              if (sent + n) % 20 else
              {"specversion": "1.0", "id": f"paced-{sent + n}", "source": "alertmanager/bench",
               "type": "prometheus.alert.firing", "subject": f"fp-{(sent + n) % 100}",
               "dedupkey": f"fp-{(sent + n) % 100}", "time": "2026-11-25T10:00:00Z",
               "data": {"status": "firing", "labels": {
                   "alertname": "BenchAlert", "instance": f"host-{(sent + n) % 100}",
                   "severity": "critical" if (sent + n) % 60 == 0 else "warning"},
                   "annotations": {"summary": f"bench alert {(sent + n) % 100}"}}}
              for n in range(batch)]
    req = urllib.request.Request(url + "/v1/events", data=json.dumps(events).encode(),
                                 headers={"Content-Type": "application/cloudevents-batch+json",
                                          "Authorization": f"Bearer {token}"})
    urllib.request.urlopen(req).read()
    sent += batch
    print(sent, flush=True)
    ahead = start + sent / rate - time.monotonic()
    if ahead > 0:
        time.sleep(ahead)  # pacing: the publisher keeps to the rate
print(sent / (time.monotonic() - start))
"""

STEPS = (("1→2 Queues→Stream", "2", "FOLLOW"), ("pause Stream", "p", "PAUSED"),
         ("resume Stream", "p", "FOLLOW"), ("2→1 Stream→Queues", "1", "QUEUES"))
"""(what, key, text that only the new screen or state paints)."""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def cpu_ms(pid: int) -> float:
    """CPU time a process (all its threads) has used, in ms (Linux schedstat, ns)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass  # a thread that just ended
    return total / 1e6


def time_keys(term: object, rounds: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Milliseconds from each key written to its screen painted, per step; and the CPU
    time the console used meanwhile (what a busy machine does not inflate, live events
    handled in the same interval included)."""
    found: dict[str, list[float]] = {what: [] for what, _, _ in STEPS}
    cpu: dict[str, list[float]] = {what: [] for what, _, _ in STEPS}
    pid = term.proc.pid  # type: ignore[attr-defined]
    for _ in range(rounds):
        for what, key, marker in STEPS:
            term.read(0.05)  # type: ignore[attr-defined]
            term.output = b""  # type: ignore[attr-defined]
            used = cpu_ms(pid)
            started = time.perf_counter()
            term.type(key)  # type: ignore[attr-defined]
            term.wait_for(marker, timeout=30)  # type: ignore[attr-defined]
            found[what].append((time.perf_counter() - started) * 1000)
            cpu[what].append(cpu_ms(pid) - used)
    return found, cpu


def report(label: str, timed: tuple[dict[str, list[float]], dict[str, list[float]]]) -> None:
    found, cpu = timed
    for what, values in found.items():
        print(f"  {label:<14} {what:<20} p50 {percentile(values, 0.5):6.0f} ms   "
              f"p90 {percentile(values, 0.9):6.0f} ms   max {max(values):6.0f} ms   "
              f"console CPU p50 {percentile(cpu[what], 0.5):4.0f} ms")


def switch(args: argparse.Namespace) -> None:
    from tests.terminal import Terminal

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        config = (ROOT / "sample_events" / "opsbus.toml").read_text().replace(
            'listen = "127.0.0.1:8787"\n', "").replace('data_dir = ".opsbus"\n', "")
        (folder / "opsbus.toml").write_text(config)
        broker = BrokerProcess(folder / "data", config=folder / "opsbus.toml").start()
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPSBUS_")}
        env.update(PYTHONPATH=str(ROOT), TERM="xterm-256color", HOME=str(folder),
                   OPSBUS_TOKEN=broker.token or "",
                   XDG_CONFIG_HOME=str(folder / "config"), XDG_STATE_HOME=str(folder))
        try:
            subprocess.run([sys.executable, "-m", "broker", "replay", str(ROOT / "sample_events"),
                            "--url", broker.url], env=env, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            term = Terminal([sys.executable, "-m", "broker", "console", "--url", broker.url,
                             "--no-bell"], env=env, cwd=folder, size=(160, 45))
            try:
                term.wait_for("unclaimed critical")
                report("idle", time_keys(term, args.rounds))
                load_started = time.monotonic()
                load = subprocess.Popen(
                    [sys.executable, "-c", PACED, broker.url, str(args.rate), "3600",
                     broker.token or ""],
                    stdout=subprocess.PIPE)
                try:
                    warm = time.monotonic() + 3
                    while time.monotonic() < warm:  # let the rate settle
                        term.read(0.1)
                    report(f"{args.rate:,} ev/s", time_keys(term, args.rounds))
                finally:
                    load.terminate()
                    out, _ = load.communicate()
                sent = int((out.split() or [b"0"])[-1])
                print(f"  load: {sent:,} events published at "
                      f"{sent / (time.monotonic() - load_started):,.0f} ev/s on average; "
                      f"machine load average {os.getloadavg()[0]:.1f} at the end")
            finally:
                term.close()
        finally:
            broker.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--burst", type=int, default=20_000)
    parser.add_argument("--long", type=int, default=200_000)
    parser.add_argument("--switch", action="store_true",
                        help="time screen switches and key presses instead")
    parser.add_argument("--rate", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    print(machine())
    if args.switch:
        print("console on a pty, 160x45; key written → new screen's text received "
              f"(load average {os.getloadavg()[0]:.1f})")
        await asyncio.to_thread(switch, args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        broker = BrokerProcess(Path(tmp) / "data", args=["--durability", "off"]).start()
        try:
            app = OpsbusConsole(broker.url, token=broker.token, operator="bench", screen="stream")
            async with app.run_test(size=(160, 45)) as pilot:
                screen = app.screen
                assert isinstance(screen, StreamScreen)
                while not (screen.ready and app.connection == "connected"):
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
