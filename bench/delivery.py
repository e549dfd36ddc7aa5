"""Delivery benchmark: webhook delivery throughput to a local receiver and pull
receive+ack throughput, each beside the ingest ceiling (single-event POSTs) measured in
the same run with the same Python client against the same broker (durability full).

    .venv/bin/python bench/delivery.py [--events 20000] [--seconds 8] [--in-flight 4,32]
        [--push-only] [--default-settings]
    .venv/bin/python bench/delivery.py --instructions [--events 1000]

The backlog for each delivery figure is published while the subscription is paused (or
before any consumer runs) and timed from resume to the last delivery, so the figure is
the dispatcher's drain rate, not ingest. Beside each push figure, the broker process's
CPU time (all threads) per delivery while draining: steadier than the rate on a shared
machine. Prints figures; asserts nothing about speed.

`--instructions` runs the broker under valgrind's callgrind instead and prints the
instructions of the broker process (all threads, user space) per push delivery while
draining the backlog (default in-flight and settings, after a warm-up drain): a count
that barely moves with the load of a shared machine, so two trees can be compared in
the same minutes. Needs valgrind.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import aiohttp
import orjson
from _common import (
    ADMIN_TOKEN,
    AUTH,
    PAYLOAD,
    discard,
    free_port,
    load_average,
    machine,
    parse_count,
    start_broker,
    wait_ready,
)

from broker.delivery.subscriptions import DEFAULT_MAX_IN_FLIGHT  # importable once _common ran
from broker.http.server import new_event_loop

IDLE_S = 10.0
"""Seconds the idle broker is measured for, under callgrind."""
STRUCTURED = {"Content-Type": "application/cloudevents+json"}
BATCH = {"Content-Type": "application/cloudevents-batch+json"}


def run_receiver(port: int) -> None:
    """The webhook receiver: counts deliveries, answers 204 at once."""
    from aiohttp import web

    count = 0

    async def hook(request: web.Request) -> web.Response:
        nonlocal count
        await request.read()
        count += 1
        return web.Response(status=204)

    async def counted(request: web.Request) -> web.Response:
        return web.json_response({"count": count})

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_get("/count", counted)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def start_receiver() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--receiver", str(port)])
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, "/count", timeout=60)  # a loaded machine starts Python slowly
    return proc, url


def client_ceiling(receiver: str, in_flight: int, seconds: float) -> float:
    """POSTs/s of a bare aiohttp client keeping `in_flight` requests open to the same
    receiver, with a delivery's body (in a process of its own and on the broker's event
    loop): what the HTTP client stack itself allows at that concurrency, round trips on
    loopback."""
    out = subprocess.run([sys.executable, __file__, "--client-ceiling", receiver,
                          str(in_flight), str(seconds)], capture_output=True, text=True,
                         check=True).stdout
    return float(out)


async def run_client_ceiling(receiver: str, in_flight: int, seconds: float) -> None:
    body = orjson.dumps(event("bench.ceiling", 0, "ceiling")["data"])
    headers = {"Content-Type": "application/json", "ce-specversion": "1.0",
               "ce-id": str(uuid.uuid4()), "ce-source": "bench/ceiling",
               "ce-type": "bench.ceiling"}
    done = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        deadline = time.monotonic() + seconds

        async def worker() -> None:
            nonlocal done
            while time.monotonic() < deadline:
                async with session.post(receiver + "/hook", data=body, headers=headers) as r:
                    await r.read()
                    done += r.status < 300

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(in_flight)))
    print(done / (time.monotonic() - started))


def event(kind: str, n: int, prefix: str) -> dict[str, object]:
    return {"specversion": "1.0", "id": str(uuid.uuid4()), "source": f"bench/{prefix}",
            "type": kind, "subject": f"s{n % 50}", "time": "2026-11-25T10:00:00Z",
            "datacontenttype": "application/json",
            "data": {"n": n, "severity": "warning", "payload": PAYLOAD}}


async def ingest_ceiling(session: aiohttp.ClientSession, url: str, seconds: float,
                         connections: int = 32) -> tuple[float, int]:
    """(single-event POSTs/s, events published) with `connections` concurrent clients
    (no route matches)."""
    prefix = uuid.uuid4().hex[:8]
    counter = done = 0
    deadline = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal counter, done
        while time.monotonic() < deadline:
            counter += 1
            body = orjson.dumps(event("bench.ingest", counter, prefix))
            async with session.post(url + "/v1/events", data=body, headers=STRUCTURED) as r:
                await r.read()
                done += r.status < 300

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return done / (time.monotonic() - started), done


async def backlog(session: aiohttp.ClientSession, url: str, kind: str, total: int) -> None:
    prefix = uuid.uuid4().hex[:8]
    for start in range(0, total, 500):
        batch = [event(kind, n, prefix) for n in range(start, min(total, start + 500))]
        async with session.post(url + "/v1/events", data=orjson.dumps(batch),
                                headers=BATCH) as resp:
            assert resp.status == 200, await resp.text()


async def api(session: aiohttp.ClientSession, method: str, url: str, body: object = None
              ) -> object:
    async with session.request(method, url, json=body) as resp:
        data = await resp.read()
        assert resp.status < 300, (url, resp.status, data[:300])
        return orjson.loads(data) if data else None


async def commits(session: aiohttp.ClientSession, url: str) -> int:
    """The broker's write transactions committed since start (its metrics)."""
    async with session.get(url + "/metrics") as resp:
        text = await resp.text()
    found = re.search(r"^opsbus_commits_total (\S+)$", text, re.M)
    return int(float(found.group(1))) if found else 0


def cpu_seconds(pid: int, thread: int | None = None) -> tuple[float, float]:
    """(user, system) CPU time of a process, all its threads, or of one of its threads
    (Linux)."""
    path = f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat"
    fields = open(path).read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


async def webhook_throughput(session: aiohttp.ClientSession, url: str, receiver: str,
                             total: int, in_flight: int | None, pid: int
                             ) -> tuple[float, float, float, float, float]:
    """(deliveries/s, broker CPU µs per delivery, the system (kernel) part of it, the
    part on its event loop's thread, commits per delivery); `in_flight` None: the
    default. The loop's part bounds the rate: the writer's commits run on other
    threads."""
    name = f"bench-push-{in_flight or 'default'}-{uuid.uuid4().hex[:6]}"
    kind = f"bench.{name}"
    spec: dict[str, object] = {
        "name": name, "url": receiver + "/hook", "filter": {"exact": {"type": kind}}}
    if in_flight is not None:
        spec["max_in_flight"] = in_flight
    await api(session, "PUT", f"{url}/v1/subscriptions/{name}", spec)
    await api(session, "POST", f"{url}/v1/subscriptions/{name}/pause")
    await backlog(session, url, kind, total)
    async with session.get(receiver + "/count") as resp:
        before = (await resp.json())["count"]
    if os.environ.get("BENCH_MARK_DRAIN"):  # for a profiler started on this line
        print(f"draining {name}", file=sys.stderr, flush=True)
    committed = await commits(session, url)
    started = time.monotonic()
    cpu = cpu_seconds(pid)
    loop = cpu_seconds(pid, pid)
    await api(session, "POST", f"{url}/v1/subscriptions/{name}/resume")
    while True:
        async with session.get(receiver + "/count") as resp:
            if (await resp.json())["count"] - before >= total:
                break
        await asyncio.sleep(0.02)
    elapsed = time.monotonic() - started
    # The receiver has everything; wait for the last acknowledgements to be stored too.
    while (await api(session, "GET", f"{url}/v1/subscriptions/{name}/status")
           )["counts"]["delivered"] < total:  # type: ignore[index]
        await asyncio.sleep(0.02)
    user, system = cpu_seconds(pid)
    return (total / elapsed, (user + system - sum(cpu)) / total * 1e6,
            (system - cpu[1]) / total * 1e6,
            (sum(cpu_seconds(pid, pid)) - sum(loop)) / total * 1e6,
            (await commits(session, url) - committed) / total)


async def drain(session: aiohttp.ClientSession, url: str, receiver: str, total: int,
                before: Callable[[], None] = lambda: None) -> None:
    """Publish `total` events to a paused push subscription, call `before`, resume it
    and wait until every delivery is recorded as delivered."""
    name = f"bench-push-{uuid.uuid4().hex[:6]}"
    kind = f"bench.{name}"
    await api(session, "PUT", f"{url}/v1/subscriptions/{name}", {
        "name": name, "url": receiver + "/hook", "filter": {"exact": {"type": kind}}})
    await api(session, "POST", f"{url}/v1/subscriptions/{name}/pause")
    await backlog(session, url, kind, total)
    async with session.get(receiver + "/count") as resp:
        arrived = (await resp.json())["count"] + total
    before()
    await api(session, "POST", f"{url}/v1/subscriptions/{name}/resume")
    # The receiver is asked while the backlog drains: a status request to the broker
    # every 0.2 s (an HTTP request and a count of every delivery) was ~5 % of the
    # instructions counted per delivery under callgrind.
    while True:
        async with session.get(receiver + "/count") as resp:
            if (await resp.json())["count"] >= arrived:
                break
        await asyncio.sleep(0.2)
    while (await api(session, "GET", f"{url}/v1/subscriptions/{name}/status")
           )["counts"]["delivered"] < total:  # type: ignore[index]
        await asyncio.sleep(0.05)


def instructions(events: int) -> None:
    """Instructions of the broker per push delivery, under callgrind."""
    assert shutil.which("valgrind"), "valgrind is not installed"
    work = Path(tempfile.mkdtemp(prefix="opsbus-callgrind-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    out = work / "callgrind.out"
    broker = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
         "-m", "broker", "serve", "--listen", f"127.0.0.1:{port}", "--data-dir",
         str(work / "data"), "--token", ADMIN_TOKEN, "--durability", "full",
         "--allow-private-targets"],
        cwd=os.getcwd(), env={**os.environ, "PYTHONPATH": os.getcwd()},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    receiver: subprocess.Popen[bytes] | None = None
    try:
        receiver, receiver_url = start_receiver()
        wait_ready(url, timeout=600)

        zeroed: list[float] = []

        def zero() -> None:
            subprocess.run(["callgrind_control", "-z", str(broker.pid)], check=True,
                           capture_output=True)
            zeroed.append(time.perf_counter())

        async def run() -> float:
            async with aiohttp.ClientSession(headers=AUTH) as session:
                await drain(session, url, receiver_url, max(events // 4, 50))  # warm-up
                await drain(session, url, receiver_url, events, zero)
                return time.perf_counter() - zeroed[-1]

        def dump(keep: bool = False) -> int:
            subprocess.run(["callgrind_control", "-d", str(broker.pid)], check=True,
                           capture_output=True)
            newest = max(work.glob("callgrind.out*"), key=lambda p: p.stat().st_mtime)
            found = re.search(r"^(?:summary|totals): (\d+)", newest.read_text(
                errors="replace"), re.M)
            assert found, "no totals in the callgrind dump"
            if keep and os.environ.get("BENCH_KEEP_CALLGRIND"):  # for callgrind_annotate
                shutil.copy(newest, os.environ["BENCH_KEEP_CALLGRIND"])
            return int(found.group(1))

        took = asyncio.run(run())
        total = dump(keep=True)  # the drain's dump, not the idle one after it
        # The broker's timers (sweeps, polls) run however fast the drain goes, and under
        # valgrind on a loaded machine it goes at very different speeds: their share is
        # measured on the idle broker and taken off, so trees compare across loads.
        zero()
        time.sleep(IDLE_S)
        idle = dump() / IDLE_S * took
        print(f"push: {(total - idle) / events:,.0f} instructions per delivery"
              f" ({total / events:,.0f} less {idle / events:,.0f} of idle timers over the"
              f" {took:.0f} s drain; {events:,} deliveries under valgrind)")
    finally:
        broker.terminate()
        broker.wait()
        if receiver is not None:
            receiver.terminate()
            receiver.wait()
        shutil.rmtree(work, ignore_errors=True)


async def pull_throughput(session: aiohttp.ClientSession, url: str, total: int,
                          batch: int, consumers: int) -> float:
    name = f"bench-pull-{batch}-{consumers}"
    kind = f"bench.{name}"
    await api(session, "PUT", f"{url}/v1/subscriptions/{name}", {
        "name": name, "type": "pull", "filter": {"exact": {"type": kind}}, "lease": "60s"})
    await backlog(session, url, kind, total)
    done = 0

    async def consumer() -> None:
        nonlocal done
        while done < total:
            got = await api(session, "POST", f"{url}/v1/subscriptions/{name}/receive",
                            {"max": batch, "wait_s": 0.2})
            if got:
                await api(session, "POST", f"{url}/v1/subscriptions/{name}/ack",
                          {"leases": [m["lease"] for m in got]})  # type: ignore[union-attr]
                done += len(got)  # type: ignore[arg-type]

    started = time.monotonic()
    await asyncio.gather(*(consumer() for _ in range(consumers)))
    return total / (time.monotonic() - started)


async def main(events: int, seconds: float, prefill: int, in_flights: list[int | None],
               push_only: bool, default_settings: bool) -> None:
    print(f"machine: {machine()}")
    print(f"platform: {platform.platform()}, cpu count: {os.cpu_count()}, {load_average()}")
    args = ["--durability", "full", "--allow-private-targets"]
    if not default_settings:
        args += ["--delivery-concurrency", "128"]
    broker = start_broker(args, prefill=prefill)
    assert broker.proc is not None
    receiver, receiver_url = start_receiver()
    try:
        async with aiohttp.ClientSession(
            headers=AUTH, connector=aiohttp.TCPConnector(limit=0)) as session:
            cpu = cpu_seconds(broker.proc.pid)
            ceiling, published = await ingest_ceiling(session, broker.url, seconds)
            ingest_cpu = (sum(cpu_seconds(broker.proc.pid)) - sum(cpu)) / published * 1e6
            print(f"\ningest ceiling (single-event POST, 32 connections): {ceiling:8.0f} events/s,"
                  f" broker CPU {ingest_cpu:6.0f} µs per event")
            print(f"\nwebhook delivery, {events} event backlog drained to a local receiver:")
            for in_flight in in_flights:
                rate, cpu, system, loop, per = await webhook_throughput(
                    session, broker.url, receiver_url, events, in_flight, broker.proc.pid)
                label = "default" if in_flight is None else str(in_flight)
                client = client_ceiling(receiver_url, in_flight or DEFAULT_MAX_IN_FLIGHT,
                                        min(seconds, 5.0))
                print(f"  max_in_flight {label:>7}: {rate:8.0f} deliveries/s"
                      f"  ({rate / ceiling:5.2f}x the ingest ceiling,"
                      f" {rate / client:4.2f}x a bare client's {client:6.0f} POSTs/s),"
                      f" broker CPU {cpu:6.0f} µs per delivery ({system:4.0f} in the kernel,"
                      f" {loop:4.0f} on the loop's thread), {per:4.2f} commits per delivery")
            if push_only:
                return
            print(f"\npull receive+ack, {events} event backlog:")
            for batch, consumers in ((1, 8), (10, 4), (100, 4)):
                rate = await pull_throughput(session, broker.url, events, batch, consumers)
                print(f"  max {batch:>3}, {consumers} consumers: {rate:8.0f} events/s"
                      f"  ({rate / ceiling:5.2f}x the ingest ceiling)")
    finally:
        discard(broker)
        receiver.terminate()
        receiver.wait()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--receiver":
        run_receiver(int(sys.argv[2]))
        sys.exit(0)
    if len(sys.argv) == 5 and sys.argv[1] == "--client-ceiling":
        # On the event loop the broker's deliveries run on: the same client stack.
        client_loop = new_event_loop()
        client_loop.run_until_complete(run_client_ceiling(sys.argv[2], int(sys.argv[3]),
                                                          float(sys.argv[4])))
        client_loop.close()
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000,
                        help="backlog drained per figure (at ~6,000 deliveries/s, ~3 s)")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--prefill", type=parse_count, default=0,
                        help="events already stored, e.g. 1M (see prefill.py)")
    parser.add_argument("--in-flight", default="4,32",
                        help="max_in_flight values, comma-separated ('default': unset)")
    parser.add_argument("--push-only", action="store_true", help="skip the pull figures")
    parser.add_argument("--default-settings", action="store_true",
                        help="the broker's default delivery_concurrency (not 128)")
    parser.add_argument("--instructions", action="store_true",
                        help="instructions per push delivery under callgrind (valgrind)")
    options = parser.parse_args()
    if options.instructions:
        instructions(options.events if "--events" in sys.argv else 1000)
        sys.exit(0)
    asyncio.run(main(options.events, options.seconds, options.prefill,
                     [None if v == "default" else int(v)
                      for v in options.in_flight.split(",")],
                     options.push_only, options.default_settings))
