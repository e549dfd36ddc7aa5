"""Publish-to-SSE latency: events published at a fixed rate, each timed from the moment
its request was written to the moment each SSE reader received it, beside a no-store
reference server measured the same way in the same run.

    .venv/bin/python bench/latency.py [--rate 1000] [--readers 100] [--seconds 8]
        [--repeat 3] [--prefill 10M] [--durability full] [--reader-procs 2]

The harness is built to cost little next to the server it measures, since all of it
shares the machine's cores with that server:

- The publisher is open-loop: event n is due at start + n / rate whatever the server
  answers, and is written on an idle keep-alive connection (or pipelined behind the
  fewest unanswered requests when all 128 are busy), so a slow answer never delays
  the next publish. Its body carries the
  CLOCK_MONOTONIC time it was written at (system-wide on Linux, so the readers'
  clock is the same clock). How late each send was against its schedule is reported.
- Readers are real SSE clients over HTTP/1.1 (chunked, as browsers read them), spread
  over a few processes, each a bare epoll loop over raw sockets: one clock read per
  wake-up, then only the `"t":` of each frame is looked at.
- The reference server answers publishes like the broker and writes the frames of the
  publishes handled in one turn of its loop straight to every reader's socket (bytes
  framed once, shared), the way the broker's live fan-out writes a commit's frames,
  without storing anything.

CPU seconds of the server, the publisher and the readers during the run are printed
beside the figures: on a shared two-core machine they say whether the harness or the
server was short of CPU. Prints figures; asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import select
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from array import array
from collections import deque
from pathlib import Path
from urllib.parse import urlsplit

import orjson
from _common import (
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

SENT = re.compile(rb'"t":(\d+)')
"""Every published event's data carries the time its request was written."""

# -- the reference server --------------------------------------------------------------


def run_reference_server(port: int, default_loop: bool = False) -> None:
    """Answers publishes like the broker and fans each body out to the SSE readers as it
    arrives: framed once, written to every reader's socket without awaiting (the broker's
    live path, minus storing). It runs on the event loop the broker runs on (uvloop), so
    it is the same HTTP stack; `default_loop`: on asyncio's own, which aiohttp uses
    unless given another."""
    from aiohttp import HttpVersion11, web

    from broker.http.server import new_event_loop

    readers: dict[asyncio.Transport, bool] = {}  # transport -> chunked
    seq = 0
    frames: list[bytes] = []

    def fan_out() -> None:
        # Once per turn of the loop, for every publish handled in it: the broker writes
        # once per commit, and one write per event per reader costs the kernel so much
        # more that the reference would measure its own sends.
        data = b"".join(frames)
        frames.clear()
        chunk = b"%x\r\n%b\r\n" % (len(data), data)
        for transport, chunked in readers.items():
            transport.write(chunk if chunked else data)

    async def publish(request: web.Request) -> web.Response:
        nonlocal seq
        body = await request.read()
        seq += 1
        if readers:  # nothing more as the HTTP ceiling (ingest.py), which has none
            if not frames:
                asyncio.get_running_loop().call_soon(fan_out)
            frames.append(b"id: %d\nevent: cloudevent\ndata: %s\n\n" % (seq, body))
        return web.json_response({"seq": seq, "id": "x", "duplicate": False}, status=201)

    async def stream(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        chunked = request.version >= HttpVersion11
        if chunked:
            resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(b": reference stream\n\n")
        transport = request.transport
        assert transport is not None
        readers[transport] = chunked
        try:
            while not transport.is_closing():
                # Frames are written by `publish`; this only notices the reader leaving.
                await asyncio.sleep(0.5)
        finally:
            readers.pop(transport, None)
        return resp

    async def ready(request: web.Request) -> web.Response:
        return web.json_response({"status": "ready"})

    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_post("/v1/events", publish)
    app.router.add_get("/v1/stream", stream)
    app.router.add_get("/readyz", ready)
    loop = asyncio.new_event_loop() if default_loop else new_event_loop()
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None, loop=loop)


class Reference:
    def __init__(self) -> None:
        port = free_port()
        self.proc = subprocess.Popen([sys.executable, __file__, "--reference-server",
                                      str(port)])
        self.url = f"http://127.0.0.1:{port}"
        self.pid = self.proc.pid
        wait_ready(self.url)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


# -- SSE readers -----------------------------------------------------------------------


def run_readers(url: str, count: int, expected: int, seconds: float, out: str) -> None:
    """`count` SSE readers on one epoll loop; writes one latency sample (ns) per event
    per reader to `out`. Prints "ready" once every stream has opened."""
    parts = urlsplit(url)
    request = (f"GET /v1/stream HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n"
               f"Authorization: {AUTH['Authorization']}\r\n\r\n").encode()
    socks: dict[int, socket.socket] = {}
    tails: dict[int, bytes] = {}
    got: dict[int, int] = {}
    poller = select.epoll()
    for _ in range(count):
        sock = socket.create_connection((parts.hostname, parts.port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(request)
        head = b""
        while b"\r\n\r\n" not in head or b"\n\n" not in head.split(b"\r\n\r\n", 1)[1]:
            data = sock.recv(65536)
            if not data:
                raise SystemExit(f"stream closed while opening: {head!r}")
            head += data
        if not head.startswith(b"HTTP/1.1 200"):
            raise SystemExit(f"stream refused: {head[:200]!r}")
        sock.setblocking(False)
        fd = sock.fileno()
        socks[fd] = sock
        tails[fd] = b""
        got[fd] = 0
        poller.register(fd, select.EPOLLIN)
    print("ready", flush=True)
    samples = array("q")
    add = samples.append
    clock = time.monotonic_ns
    deadline = time.monotonic() + seconds + 30
    open_ = len(socks)
    while open_ and time.monotonic() < deadline:
        ready = poller.poll(1.0)
        now = clock()  # every byte handed over by this wake-up had arrived by now
        for fd, _ in ready:
            try:
                data = socks[fd].recv(262144)
            except BlockingIOError:
                continue
            if not data:
                poller.unregister(fd)
                open_ -= 1
                continue
            buf = tails[fd] + data
            end = buf.rfind(b"\n\n")
            if end < 0:
                tails[fd] = buf
                continue
            tails[fd] = buf[end + 2:]
            sent = SENT.findall(buf, 0, end)
            for t in sent:
                add(now - int(t))
            got[fd] += len(sent)
            if got[fd] >= expected:
                poller.unregister(fd)
                open_ -= 1
    samples.tofile(open(out, "wb"))
    print(f"done {sum(got.values())}", flush=True)


# -- the publisher ---------------------------------------------------------------------


class _Conn:
    __slots__ = ("buf", "sent", "sock")

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.buf = b""
        self.sent: deque[int] = deque()
        """When each request still unanswered on this connection was written."""


def publish(url: str, rate: int, total: int, start_ns: int,
            connections: int = 128) -> dict[str, object]:
    """Open-loop publisher: event n is written at start + n / rate (or at once when
    late), on an idle keep-alive connection, else pipelined behind the fewest unanswered
    requests (opening a connection mid-run could block on a full accept queue and stall
    every later send). Returns how late sends were and how long answers took."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    head = (f"POST /v1/events HTTP/1.1\r\nHost: bench\r\n"
            f"Content-Type: application/cloudevents+json\r\n"
            f"Authorization: {AUTH['Authorization']}\r\nContent-Length: ").encode()
    prefix = uuid.uuid4().hex[:8]
    conns = {c.sock.fileno(): c for c in (_Conn(host, port) for _ in range(connections))}
    idle = deque(conns.values())
    poller = select.epoll()
    for fd in conns:
        poller.register(fd, select.EPOLLIN)
    lateness = array("q")
    answers = array("q")
    failures = pipelined = 0
    period = 1_000_000_000 // rate
    clock = time.monotonic_ns

    def answered(timeout: float = 0) -> None:
        nonlocal failures
        ready = poller.poll(timeout)
        now = clock()
        for fd, _ in ready:
            conn = conns[fd]
            data = conn.sock.recv(65536)
            if not data:
                if conn.sent:
                    raise SystemExit("the server closed a publishing connection with"
                                     f" {len(conn.sent)} request(s) unanswered")
                # Idle past the server's keep-alive timeout: the run goes on without it.
                poller.unregister(fd)
                del conns[fd]
                idle.remove(conn)
                conn.sock.close()
                continue
            conn.buf += data
            while True:
                end = conn.buf.find(b"\r\n\r\n")
                if end < 0:
                    break
                headers = conn.buf[:end].lower()
                at = headers.find(b"content-length:")
                length = int(headers[at + 15:headers.find(b"\r\n", at)]) if at >= 0 else 0
                if len(conn.buf) < end + 4 + length:
                    break
                if not conn.buf.startswith(b"HTTP/1.1 2"):
                    failures += 1
                    if failures <= 3:
                        print(conn.buf[:300], file=sys.stderr)
                conn.buf = conn.buf[end + 4 + length:]
                answers.append(now - conn.sent.popleft())
                if not conn.sent:
                    idle.append(conn)
        if not conns:
            raise SystemExit("the server closed every publishing connection")

    for n in range(total):
        due = start_ns + n * period
        while True:
            answered()
            wait = due - clock()
            if wait <= 0:
                break
            if wait > 2_000_000:
                answered((wait - 1_000_000) / 1e9)  # answers arriving meanwhile
            else:
                time.sleep(wait / 1e9)  # nanosleep: finer than epoll's milliseconds
        if idle:
            # The longest idle first: every connection stays in use, so none sits idle
            # past the server's keep-alive timeout in a long run.
            conn = idle.popleft()
        else:
            conn = min(conns.values(), key=lambda c: len(c.sent))
            pipelined += 1
        sent = clock()
        body = orjson.dumps({
            "specversion": "1.0", "id": str(uuid.uuid4()), "source": f"bench/{prefix}",
            "type": "bench.event", "subject": f"s{n % 50}", "time": "2026-11-25T10:00:00Z",
            "datacontenttype": "application/json",
            "data": {"t": sent, "n": n, "severity": "warning", "payload": PAYLOAD}})
        conn.sent.append(sent)
        conn.sock.sendall(head + b"%d\r\n\r\n%b" % (len(body), body))
        lateness.append(sent - due)
    limit = clock() + 30_000_000_000
    while len(idle) < len(conns) and clock() < limit:
        answered(0.01)
    return {"lateness": lateness, "answers": answers, "failures": failures,
            "pipelined": pipelined, "unanswered": len(conns) - len(idle)}


# -- one measurement -------------------------------------------------------------------


def scheduled(pid: int) -> tuple[float, float]:
    """Seconds a process's threads have run on a CPU, and waited runnable for one."""
    run = wait = 0
    for task in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        try:
            on_cpu, queued, _ = task.read_text().split()
        except (OSError, ValueError):
            continue  # a thread that ended meanwhile
        run += int(on_cpu)
        wait += int(queued)
    return run / 1e9, wait / 1e9


def pin(pid: int, cpus: set[int]) -> None:
    """Every thread of `pid` (and threads it starts later) on `cpus` only."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            os.sched_setaffinity(int(task.name), cpus)


def pct(values: array[int] | list[int], q: float) -> float:
    """Quantile q of nanosecond samples, in ms."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6


def measure(url: str, server_pid: int | None, *, readers: int, rate: int, seconds: float,
            procs: int, pinned: bool = False) -> dict[str, float]:
    """One run: reader processes open their streams, then this process publishes.
    `pinned`: the server on the first CPU, the publisher and readers on the others."""
    total = int(rate * seconds)
    tmp = tempfile.mkdtemp(prefix="opsbus-latency-")
    groups = [readers // procs + (1 if i < readers % procs else 0) for i in range(procs)]
    everywhere = os.sched_getaffinity(0)
    if pinned and server_pid:
        first = min(everywhere)
        pin(server_pid, {first})
        os.sched_setaffinity(0, everywhere - {first} or everywhere)  # readers inherit it
    children = []
    try:
        for i, count in enumerate(g for g in groups if g):
            children.append((subprocess.Popen(
                [sys.executable, __file__, "--readers-proc", url, str(count), str(total),
                 str(seconds), f"{tmp}/r{i}"], stdout=subprocess.PIPE, text=True),
                f"{tmp}/r{i}"))
        for child, _ in children:
            assert child.stdout is not None
            line = child.stdout.readline().strip()
            if line != "ready":
                raise SystemExit(f"a reader process did not start: {line!r}")
        harness = [os.getpid(), *(c.pid for c, _ in children)]
        before = {pid: scheduled(pid) for pid in [*harness, server_pid or 0]}
        started = time.monotonic()
        result = publish(url, rate, total, time.monotonic_ns() + 200_000_000)
        wall = time.monotonic() - started
        after = {pid: scheduled(pid) for pid in [*harness, server_pid or 0]}
    finally:
        os.sched_setaffinity(0, everywhere)

    def used(pids: list[int], index: int) -> float:
        return sum(after[p][index] - before[p][index] for p in pids) / wall

    samples = array("q")
    for child, out in children:
        assert child.stdout is not None
        child.stdout.read()
        child.wait()
        with open(out, "rb") as f:
            samples.frombytes(f.read())
        os.unlink(out)
    os.rmdir(tmp)
    ordered = sorted(samples)
    lateness = result["lateness"]
    answers = result["answers"]
    assert isinstance(lateness, array) and isinstance(answers, array)
    return {
        "p50_ms": pct(ordered, 0.50), "p90_ms": pct(ordered, 0.90),
        "p99_ms": pct(ordered, 0.99), "p999_ms": pct(ordered, 0.999),
        "max_ms": ordered[-1] / 1e6 if ordered else float("nan"),
        "samples": len(ordered), "expected": total * readers,
        "answer_p50_ms": pct(answers, 0.5), "answer_p99_ms": pct(answers, 0.99),
        "late_p99_ms": pct(lateness, 0.99), "late_max_ms": pct(lateness, 1.0),
        "failures": float(result["failures"]),  # type: ignore[arg-type]
        "pipelined": float(result["pipelined"]),  # type: ignore[arg-type]
        "cpu_server": used([server_pid], 0) if server_pid else float("nan"),
        "wait_server": used([server_pid], 1) if server_pid else float("nan"),
        "cpu_harness": used(harness, 0), "wait_harness": used(harness, 1),
    }


def describe(name: str, r: dict[str, float]) -> str:
    return (f"  {name:<9} p50 {r['p50_ms']:6.2f}  p90 {r['p90_ms']:6.2f}  p99 {r['p99_ms']:6.2f}"
            f"  p99.9 {r['p999_ms']:6.2f}  max {r['max_ms']:7.1f} ms"
            f"   answer p50/p99 {r['answer_p50_ms']:.2f}/{r['answer_p99_ms']:.2f} ms"
            f"   send late p99/max {r['late_p99_ms']:.2f}/{r['late_max_ms']:.2f} ms"
            f"   CPU server {r['cpu_server']:.2f} (waited {r['wait_server']:.2f})"
            f" harness {r['cpu_harness']:.2f} (waited {r['wait_harness']:.2f})"
            f"   ({r['samples']:,.0f}/{r['expected']:,.0f} deliveries"
            + (f", {r['failures']:.0f} non-2xx" if r["failures"] else "")
            + (f", {r['pipelined']:.0f} sends pipelined" if r["pipelined"] else "") + ")")


def run(args: argparse.Namespace, prefill: int) -> None:
    print(f"publish-to-SSE latency: {args.rate} events/s for {args.seconds}s, {args.readers}"
          f" SSE readers in {args.reader_procs} process(es), durability {args.durability},"
          f" {prefill:,} events stored before")
    print("  (ms from the publish request's write to each reader's receipt; 'answer': the"
          " publisher's 2xx; 'CPU': cores used during the run, 'waited': runnable threads"
          " waiting for a CPU, in cores" + (", server pinned to one CPU" if args.pin else "")
          + ")")
    for _ in range(args.repeat):
        print(f"  {load_average()} before the pair", flush=True)
        ref = Reference()
        try:
            r = measure(ref.url, ref.pid, readers=args.readers, rate=args.rate,
                        seconds=args.seconds, procs=args.reader_procs, pinned=args.pin)
        finally:
            ref.stop()
        print(describe("reference", r), flush=True)
        broker = start_broker(["--durability", args.durability, "--log-level", "warning"],
                              prefill=prefill)
        try:
            assert broker.proc is not None
            b = measure(broker.url, broker.proc.pid, readers=args.readers, rate=args.rate,
                        seconds=args.seconds, procs=args.reader_procs, pinned=args.pin)
        finally:
            discard(broker)
        print(describe("opsbus", b), flush=True)


def add_load_arguments(parser: argparse.ArgumentParser) -> None:
    """The latency run's load and placement flags (`ingest.py --latency` takes them too)."""
    parser.add_argument("--readers", type=int, default=100)
    parser.add_argument("--reader-procs", type=int, default=2,
                        help="processes the SSE readers are spread over")
    parser.add_argument("--rate", type=int, default=1000, help="events published per second")
    parser.add_argument("--pin", action="store_true",
                        help="the server on the first CPU, publisher and readers on the others")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--repeat", type=int, default=1,
                        help="reference and broker runs, alternating, this many times")
    add_load_arguments(parser)
    parser.add_argument("--durability", default="full")
    parser.add_argument("--prefill", default="0",
                        help="events already stored, e.g. 1M or 10M (see prefill.py)")
    parser.add_argument("--url", help="measure this running server only (no reference)")
    parser.add_argument("--pid", type=int, help="with --url: the server's pid (its CPU)")
    args = parser.parse_args()
    print(f"machine: {machine()}, {load_average()}")
    if args.url:
        print(describe("server", measure(args.url, args.pid, readers=args.readers, rate=args.rate,
                                         seconds=args.seconds, procs=args.reader_procs,
                                         pinned=args.pin)))
        return
    run(args, parse_count(args.prefill))


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--reference-server":
        run_reference_server(int(sys.argv[2]))
    elif len(sys.argv) > 2 and sys.argv[1] == "--readers-proc":
        run_readers(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]),
                    sys.argv[6])
    else:
        main()
