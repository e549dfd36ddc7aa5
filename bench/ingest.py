"""Ingest benchmark: durable single-event and batched publishing, and publish-to-SSE
latency, each beside a reference measured in the same run with the same load generator.

    .venv/bin/python bench/ingest.py [--seconds 10] [--repeat 3] [--prefill 10M]
    .venv/bin/python bench/ingest.py --todos [--repeat 3]   # every event updates an item
    .venv/bin/python bench/ingest.py --todos --in-process   # its CPU time per event
    .venv/bin/python bench/ingest.py --latency [--repeat 3]  # publish-to-SSE only
    .venv/bin/python bench/ingest.py --period-keys 0,600k,1.2M  # by keys in the period

References: an aiohttp server whose handler only reads the body and answers (the HTTP
ceiling, on the broker's event loop and, for single events, on asyncio's own too; for
latency it also fans the body out to SSE readers without storing it), one whose handler
only stores each event with a group commit (`durable_reference.py`: what durability
alone costs over HTTP), and raw SQLite
`executemany` inserts of the same rows with the same schema and fsync (the storage
ceiling: 3,200 rows per commit for batches; 32 per commit for single events, the most 32
connections awaiting their answers can put in one commit; and, for both, as many per
commit as the broker's own commits held in the run); with `--prefill`, a
fresh store whose current period first took as many events as the pre-filled store's
(what the stored log itself costs). Load comes from wrk
when installed, else a Python client process. Prints figures; asserts nothing about
speed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from _common import (
    AUTH,
    BATCH_LUA,
    PAYLOAD,
    ROOT,
    SINGLE_LUA,
    WRK,
    counter,
    discard,
    helper_server,
    load_average,
    machine,
    metric,
    parse_count,
    start_broker,
    thread_cpu_s,
    wrk,
)
from latency import add_load_arguments, describe, measure, run_reference_server
from latency import run as run_latency

# -- the reference server --------------------------------------------------------------


def loop_name() -> str:
    """The event loop the broker (and the reference beside it) runs on."""
    from broker.http.server import new_event_loop

    loop = new_event_loop()
    loop.close()
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio's loop"


def reference(default_loop: bool = False) -> contextlib.AbstractContextManager[tuple[int, str]]:
    """(pid, url) of the do-nothing handler on the broker's event loop, or on asyncio's
    own, stopped on leaving."""
    return helper_server(lambda port: [__file__, "--reference-server", str(port),
                                       *(["--default-loop"] if default_loop else [])])


def durable_reference(store: Path) -> contextlib.AbstractContextManager[tuple[int, str]]:
    """(pid, url) of the durable reference (`durable_reference.py`) storing into `store`
    (a fresh one, or the broker's while the broker is stopped), stopped on leaving."""
    return helper_server(lambda port: [str(Path(__file__).parent / "durable_reference.py"),
                                       str(port), str(store)])


# -- Python load generator (used when wrk is missing, and for latency) -----------------


def event_json(n: int, prefix: str, sent_ns: int | None = None) -> dict[str, object]:
    data: dict[str, object] = {"n": n, "severity": "warning", "payload": PAYLOAD}
    if sent_ns is not None:
        data["t"] = sent_ns
    # Random ids, as real publishers send; `prefix` only names the run.
    return {"specversion": "1.0", "id": str(uuid.uuid4()), "source": f"bench/{prefix}",
            "type": "bench.event", "subject": f"s{n % 50}", "time": "2026-11-25T10:00:00Z",
            "datacontenttype": "application/json", "data": data}


async def python_load(url: str, batch: int, connections: int, seconds: float) -> float:
    import aiohttp
    import orjson

    prefix = uuid.uuid4().hex[:8]
    counter = 0
    done = 0
    ctype = ("application/cloudevents-batch+json" if batch > 1
             else "application/cloudevents+json")
    deadline = time.monotonic() + seconds

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal counter, done
        while time.monotonic() < deadline:
            events = []
            for _ in range(batch):
                counter += 1
                events.append(event_json(counter, prefix))
            body = orjson.dumps(events if batch > 1 else events[0])
            async with session.post(url + "/v1/events", data=body,
                                    headers={"Content-Type": ctype}) as resp:
                await resp.read()
                if resp.status < 300:
                    done += 1

    async with aiohttp.ClientSession(
            headers=AUTH, connector=aiohttp.TCPConnector(limit=0)) as session:
        start = time.monotonic()
        await asyncio.gather(*(worker(session) for _ in range(connections)))
        return done / (time.monotonic() - start)


class CpuShare:
    """Appends the cores a broker process kept busy over the block: its event loop's
    thread and its other threads (the commit thread). Both run Python under one GIL, so
    together they stay near one core however the work is split between them."""

    def __init__(self, pid: int, into: list[tuple[float, float]]) -> None:
        self._pid, self._into = pid, into

    def __enter__(self) -> None:
        self._start = time.monotonic(), thread_cpu_s(self._pid)

    def __exit__(self, *exc: object) -> None:
        wall = time.monotonic() - self._start[0]
        (loop0, rest0), (loop1, rest1) = self._start[1], thread_cpu_s(self._pid)
        self._into.append(((loop1 - loop0) / wall, (rest1 - rest0) / wall))


def cpu_shares(shares: list[tuple[float, float]], rates: list[float]) -> str:
    """'loop 0.52 + threads 0.41 cores = 40.1 µs per event' per repeat."""
    return ", ".join(f"loop {loop:.2f} + threads {rest:.2f} cores"
                     f" = {(loop + rest) / rate * 1e6:.1f} µs per event"
                     for (loop, rest), rate in zip(shares, rates, strict=True))


def load(url: str, *, batch: int, seconds: int) -> tuple[float, str]:
    """Requests/s from wrk (or the Python client in a separate process)."""
    if WRK:
        rps, bad = wrk(url, BATCH_LUA if batch > 1 else SINGLE_LUA, seconds=seconds)
        return rps, f"wrk, {bad} non-2xx"
    out = subprocess.run(
        [sys.executable, __file__, "--python-load", url, str(batch), str(seconds)],
        capture_output=True, text=True, check=True).stdout
    return float(out.strip()), "python client"


# -- latency ----------------------------------------------------------------------------


class _SseReader(asyncio.Protocol):
    """A bare SSE reader (HTTP/1.0, so no chunked framing): only finds each frame's send
    timestamp, so the measuring client is not what limits the measurement."""

    marker = b'"t":'

    def __init__(self, path: str, samples: list[int], done: asyncio.Event, expected: int):
        self.path = path
        self.samples = samples
        self.done = done
        self.expected = expected
        self.buffer = b""
        self.got = 0
        self.connected = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(f"GET {self.path} HTTP/1.0\r\nHost: bench\r\n"
            f"Authorization: {AUTH['Authorization']}\r\n\r\n".encode())  # type: ignore[attr-defined]
        self.connected.set()

    def data_received(self, data: bytes) -> None:
        now = time.time_ns()
        self.buffer += data
        frames = self.buffer.split(b"\n\n")
        self.buffer = frames.pop()
        for frame in frames:
            at = frame.find(self.marker)
            if at < 0:
                continue
            end = frame.find(b",", at)
            if end < 0:
                end = frame.find(b"}", at)
            self.samples.append(now - int(frame[at + 4:end]))
            self.got += 1
        if self.got >= self.expected:
            self.done.set()


def latency(url: str, pid: int | None, args: argparse.Namespace) -> dict[str, float]:
    """Publish-to-SSE latency with `latency.py`'s harness (open-loop publisher, readers
    in `--reader-procs` processes)."""
    return measure(url, pid, readers=args.readers, rate=args.rate, seconds=args.seconds,
                   procs=args.reader_procs, pinned=args.pin)


def committed(url: str) -> tuple[int, int] | None:
    """(commits, events committed) so far, from the broker's metrics; None without."""
    commits, events = counter(url), counter(url, "opsbus_events_committed_total")
    return None if commits is None or events is None else (commits, events)


def group_size(before: tuple[int, int] | None, after: tuple[int, int] | None) -> int:
    """Mean events per commit between two `committed` readings; 0 if unknown."""
    if before is None or after is None:
        return 0
    return round((after[1] - before[1]) / max(after[0] - before[0], 1))


# -- raw SQLite ceiling -------------------------------------------------------------------


def fresh_store() -> Path:
    """A new store file in the broker's layout, as `opsbus serve` creates it."""
    from prefill import create_schema, store_path

    folder = Path(tempfile.mkdtemp(prefix="opsbus-sqlite-"))
    create_schema(folder)
    return store_path(folder)


def sqlite_ceiling(path: Path, seconds: float, batch: int = 3200,
                   cpu: list[float] | None = None) -> float:
    """Events/s inserting the broker's rows (random ids) with executemany into the
    broker's own store file and layout, one fsynced commit per `batch` rows (a full
    group commit of 32 publishers x 100 events): the event rows, and their identity keys
    into the current period's key table (the store's own `KeyPeriods` picks or opens
    it). Rows are made before the clock runs.

    What the broker does and this does not: HTTP, JSON decoding, validation and
    encoding of each event, its identity key, the dedupe probe (every identity looked
    up in the key tables the dedupe window reaches, on the event loop), routing,
    the answer. What this does less well: one statement run per row, where the broker
    inserts 64 rows per statement and reads their keys back from them in one.
    `cpu`, if given, gets the CPU µs this thread spent per row."""
    from durable_reference import event_row, insert_rows

    from broker.store.sqlite.periods import KeyPeriods
    from broker.store.window import DEFAULT_PERIOD_S

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA cache_size=-65536")
    conn.execute("PRAGMA wal_autocheckpoint=4000")
    periods = KeyPeriods(DEFAULT_PERIOD_S)
    recvtime = "2026-11-25T10:00:00.000000Z"
    batches = [[event_row(event_json(n, "sqlite"), recvtime) for n in range(batch)]
               for _ in range(max(1, int(seconds * 60_000 / batch)))]
    n = 0
    start, started_cpu = time.monotonic(), time.thread_time()
    for rows in batches:
        insert_rows(conn, periods, rows)
        conn.execute("COMMIT")
        n += len(rows)
        if time.monotonic() - start > seconds:
            break
    rate = n / (time.monotonic() - start)
    if cpu is not None:
        cpu.append((time.thread_time() - started_cpu) / n * 1e6)
    conn.close()
    return rate


def current_period_keys(store: Path) -> int:
    """Keys in the store's current key table, the one a random key of a new event lands
    in: what a batched commit's cost grows with (docs/storage.md, "Period")."""
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as conn:
        row = conn.execute("SELECT name FROM event_key_periods"
                           " ORDER BY first_seq DESC, starts_at DESC LIMIT 1").fetchone()
        return conn.execute(f"SELECT count(*) FROM {row[0]}").fetchone()[0] if row else 0


def fill_period(url: str, keys: int) -> int:
    """Batched load on a broker until it has committed at least `keys` events (each one
    identity key in the current period); returns how many it has."""
    while (stored := counter(url, "opsbus_events_committed_total") or 0) < keys:
        load(url, batch=100, seconds=2)
    return stored


def fresh_beside(keys: int, args: argparse.Namespace) -> tuple[float, float, int]:
    """(single events/s, batched events/s, keys in its current period when measured) of
    a broker on a fresh store whose current period first takes at least `keys` events of
    the batched load: the pre-filled store's twin with nothing stored before today but
    as much of today, so the ratio between them is what the stored log itself costs."""
    broker = start_broker(["--durability", args.durability, "--log-level", "warning"])
    try:
        stored = fill_period(broker.url, keys)
        single = load(broker.url, batch=1, seconds=args.seconds)[0]
        batched = load(broker.url, batch=100, seconds=args.seconds)[0] * 100
    finally:
        discard(broker)
    return single, batched, stored


def period_curve(args: argparse.Namespace) -> None:
    """Single and batched ingest on fresh stores whose current period first took each of
    `--period-keys` events: how a commit's cost follows the keys of the period it lands
    in (each random key dirties its own page of the key table once the table has more
    leaf pages than a commit has keys), with the disk writes per event behind it."""
    print("ingest by keys already in the current period, each on a fresh store: single"
          " events (32 connections), then batched (100/request)")
    for keys in (parse_count(k) for k in args.period_keys.split(",")):
        broker = start_broker(["--durability", args.durability, "--log-level", "warning"])
        try:
            assert broker.proc is not None
            stored = fill_period(broker.url, keys)
            single = load(broker.url, batch=1, seconds=args.seconds)[0]
            commits, events = committed(broker.url) or (0, 0)
            written = _written(broker.proc.pid)
            spent = metric(broker.url, "opsbus_commit_seconds_sum") or 0.0
            rate = load(broker.url, batch=100, seconds=args.seconds)[0] * 100
            commits_now, events_now = committed(broker.url) or (0, 0)
            commits, events = max(commits_now - commits, 1), max(events_now - events, 1)
            spent = (metric(broker.url, "opsbus_commit_seconds_sum") or 0.0) - spent
            print(f"  {stored:>10,} keys: single {single:>6,.0f} events/s; batched {rate:>7,.0f}"
                  f" events/s, {events / commits:,.0f} events per commit,"
                  f" {spent / commits * 1e3:.1f} ms per commit,"
                  f" {(_written(broker.proc.pid) - written) / events:,.0f} bytes"
                  f" written per event, {load_average()}")
        finally:
            discard(broker)


def _written(pid: int) -> int:
    """Bytes a process has had written to storage so far (Linux)."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    return 0


def spread(values: list[float], scale: float = 1.0) -> str:
    """'median (min-max)' of repeated runs."""
    values = sorted(v * scale for v in values)
    mid = values[len(values) // 2]
    if len(values) == 1:
        return f"{mid:,.0f}"
    return f"{mid:,.0f} ({values[0]:,.0f}-{values[-1]:,.0f})"


# -- the event catalog's share --------------------------------------------------------


def catalog_compare(args: argparse.Namespace, prefill: int) -> None:
    """Single and batched ingest with the catalog on and off, interleaved (on, off, off,
    on, ...) in one run, each on a store of its own; then the catalog's own work per
    event, in process, for the bench payload and for real webhook payloads."""
    print("event catalog: the same load with catalog on and off, interleaved")
    figures: dict[bool, dict[str, list[float]]] = {
        on: {"single": [], "batched": []} for on in (True, False)}
    brokers = {}
    for on in (True, False):
        brokers[on] = start_broker(["--durability", args.durability, "--log-level", "warning",
                                    "--catalog" if on else "--no-catalog"], prefill=prefill)
        brokers[on].stop()
    for round_ in range(args.repeat):
        for on in ((True, False) if round_ % 2 == 0 else (False, True)):
            broker = brokers[on]
            broker.start(timeout=300)
            try:
                figures[on]["single"].append(load(broker.url, batch=1,
                                                  seconds=args.seconds)[0])
                figures[on]["batched"].append(load(broker.url, batch=100,
                                                   seconds=args.seconds)[0] * 100)
            finally:
                broker.stop()
    med = lambda v: sorted(v)[len(v) // 2]  # noqa: E731
    for kind in ("single", "batched"):
        on, off = figures[True][kind], figures[False][kind]
        print(f"  {kind:<8} catalog on  {spread(on):>24} events/s")
        print(f"  {kind:<8} catalog off {spread(off):>24} events/s"
              f"   on/off {med(on) / med(off):.3f}")
    print("  the catalog's work per event, in process, commits of 100 events of one type,"
          " against parsing and\n  encoding the same event once (what ingest does to"
          " every event anyway), measured alternately:")
    print(f"    {'payload':<36} {'parse+encode':>12} {'every event':>12} {'default':>12}")
    for name, data in catalog_payloads():
        ref, every, sampled = [], [], []
        for _ in range(3):
            ref.append(parse_cost_us(data))
            every.append(tracker_cost_us(data, 100))
            sampled.append(tracker_cost_us(data))
        r, e, d = med(ref), med(every), med(sampled)
        print(f"    {name:<36} {r:>9.1f} µs {e:>9.1f} µs {d:>9.1f} µs"
              f"   ({e / r:.1f}x and {d / r:.2f}x of parse+encode)")


def catalog_payloads() -> list[tuple[str, object]]:
    payloads = ROOT / "tests" / "payloads"
    found: list[tuple[str, object]] = [
        ("bench event (3 fields)", {"n": 1, "severity": "warning", "payload": PAYLOAD})]
    for path in (payloads / "alertmanager" / "firing.json",
                 payloads / "github" / "push.1.payload.json"):
        if path.exists():
            data = json.loads(path.read_text())
            found.append((f"{path.parent.name}/{path.name} ({len(path.read_bytes()):,} B)",
                          data))
    return found


def parse_cost_us(data: object, rounds: int = 10_000) -> float:
    import orjson

    raw = orjson.dumps({"specversion": "1.0", "id": "1", "source": "bench/catalog",
                        "type": "bench.event", "data": data})
    start = time.perf_counter()
    for _ in range(rounds):
        orjson.dumps(orjson.loads(raw))
    return (time.perf_counter() - start) / rounds * 1e6


def tracker_cost_us(data: object, sample: int | None = None, batches: int = 100) -> float:
    sys.path.insert(0, str(ROOT))
    from broker.bus.log import StoredEvent, canonical
    from broker.catalog.tracker import CatalogSettings, Tracker

    settings = CatalogSettings()
    if sample is not None:  # catalog_sample_per_commit
        settings = CatalogSettings(sample_per_commit=sample)
    tracker = Tracker(settings)
    stamp = "2026-11-25T10:00:00.000000Z"
    batch = []
    for n in range(100):
        event = {"specversion": "1.0", "id": str(n), "source": "bench/catalog",
                 "type": "bench.event", "data": data}
        batch.append(StoredEvent(n, stamp, canonical(event), (), event))
    tracker.observe(batch, 0.0)  # learned: the steady state is what is measured
    start = time.perf_counter()
    for round_ in range(batches):
        tracker.observe(batch, float(round_ + 1))
    return (time.perf_counter() - start) / (batches * len(batch)) * 1e6


# -- every event updates a todo item ------------------------------------------------------


def todo_ingest(args: argparse.Namespace, prefill: int) -> None:
    """Ingest where one route sends every event to a queue (50 groups, so each event
    attaches to an item: the item update, its history and its audit event), beside the
    same broker with no route, the two alternating within each repeat."""
    from routes import queue_only

    config = queue_only()
    runs: dict[str, tuple[list[float], list[float]]] = {"no route": ([], []),
                                                        "every event to a queue": ([], [])}
    for _ in range(args.repeat):
        for name, cfg in (("no route", None), ("every event to a queue", config)):
            broker = start_broker(["--durability", args.durability, "--log-level",
                                   "warning"], cfg, prefill=prefill)
            try:
                runs[name][1].append(load(broker.url, batch=100, seconds=args.seconds)[0]
                                     * 100)
                runs[name][0].append(load(broker.url, batch=1, seconds=args.seconds)[0])
            finally:
                discard(broker)
            print(f"  ({name}: done, {load_average()})", flush=True)
    med = lambda v: sorted(v)[len(v) // 2]  # noqa: E731
    plain_single, plain_batched = runs["no route"]
    single, batched = runs["every event to a queue"]
    print("every event updates a todo item (1 route to a queue, 50 groups), 32 connections")
    print(f"  batched (100/request)  {spread(batched):>26} events/s"
          f"   no route: {spread(plain_batched)}"
          f"  ratio {med(batched) / med(plain_batched):.2f}  (goal >= 20,000 ev/s)")
    print(f"  single-event POST      {spread(single):>26} events/s"
          f"   no route: {spread(plain_single)}"
          f"  ratio {med(single) / med(plain_single):.2f}")


def todo_cpu_per_event(config: Path | None, durability: str, events: int = 64_000,
                       publishers: int = 32, batch: int = 100, store: str = "sqlite"
                       ) -> tuple[float, float, float]:
    """In process: a `Broker` on a fresh store with `config`, `publishers` concurrent
    callers of `bus.publish` with batches of `batch` bench events, until `events` are
    stored (after a warm-up of one round). Returns (CPU µs of the whole process per
    event, events/s of wall time, CPU µs per event of the event loop's thread): CPU
    time is steadier than wall time on a shared machine, and the loop's share is what
    bounds ingest on it (the rest, mostly the SQLite commit thread, overlaps it)."""
    sys.path.insert(0, str(ROOT))
    from broker.core import Broker
    from broker.settings import Settings
    from tests.pg_support import create_schema_async, drop_schema_async, with_schema

    on_pg = store.startswith(("postgresql:", "postgres:"))

    async def run() -> tuple[float, float, float]:
        folder = Path(tempfile.mkdtemp(prefix="opsbus-todo-cpu-"))
        schema = await create_schema_async(store) if on_pg else None  # each run starts empty
        broker = Broker(Settings(data_dir=str(folder / "data"), durability=durability,
                                 config=str(config) if config else None, auth=False,
                                 store=with_schema(store, schema) if schema else store))
        await broker.start()
        try:
            prefix = uuid.uuid4().hex[:8]
            counter = 0

            async def publisher(rounds: int) -> None:
                nonlocal counter
                for _ in range(rounds):
                    sent = [event_json(counter + n, prefix) for n in range(batch)]
                    counter += batch
                    await broker.bus.publish(sent)

            await asyncio.gather(*(publisher(1) for _ in range(publishers)))  # warm-up
            rounds = max(1, events // (publishers * batch))
            wall, cpu, loop = time.perf_counter(), time.process_time(), time.thread_time()
            await asyncio.gather(*(publisher(rounds) for _ in range(publishers)))
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            loop = time.thread_time() - loop
            n = rounds * publishers * batch
            return cpu / n * 1e6, n / wall, loop / n * 1e6
        finally:
            await broker.stop()
            if schema:
                await drop_schema_async(schema, store)

    return asyncio.run(run())


def todo_in_process(args: argparse.Namespace) -> None:
    """CPU per event in process, with and without the route to a queue, interleaved."""
    from routes import queue_only

    config = queue_only()
    runs: dict[str, list[tuple[float, float, float]]] = {"no route": [],
                                                         "every event to a queue": []}
    for round_ in range(args.repeat):
        order = (("no route", None), ("every event to a queue", config))
        for name, cfg in order if round_ % 2 == 0 else tuple(reversed(order)):
            runs[name].append(todo_cpu_per_event(cfg, args.durability, store=args.store))
            print(f"  ({name}: {runs[name][-1][0]:,.0f} µs CPU/event, {load_average()})",
                  flush=True)
    print(f"in process: Broker + bus.publish, 32 publishers x batches of 100,"
          f" 64,000 events, durability {args.durability}, store {args.store.split('@')[-1]}")
    for name, figures in runs.items():
        print(f"  {name:<24} {spread([f[0] for f in figures]):>22} µs CPU per event"
              f" (event loop {spread([f[2] for f in figures])})"
              f"   {spread([f[1] for f in figures]):>22} events/s wall")


# -- main -------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=1,
                        help="alternate reference and broker runs this many times")
    add_load_arguments(parser)
    parser.add_argument("--durability", default="full")
    parser.add_argument("--prefill", default="0",
                        help="events already stored, e.g. 1M or 10M (see prefill.py)")
    parser.add_argument("--no-latency", action="store_true")
    parser.add_argument("--catalog-compare", action="store_true",
                        help="only measure ingest with the event catalog on and off")
    parser.add_argument("--latency", action="store_true",
                        help="only publish-to-SSE latency, beside the no-store reference")
    parser.add_argument("--todos", action="store_true",
                        help="only ingest where every event updates a todo item")
    parser.add_argument("--in-process", action="store_true",
                        help="with --todos: CPU time per event of an in-process broker")
    parser.add_argument("--store", default="sqlite",
                        help="with --todos --in-process: a PostgreSQL URL (each run in a"
                             " schema of its own) instead of SQLite")
    parser.add_argument("--period-keys", metavar="N,N,...",
                        help="only ingest on fresh stores whose current period first"
                             " took each number of events, e.g. 0,250k,500k,1M")
    args = parser.parse_args()
    prefill = parse_count(args.prefill)

    print(f"machine: {machine()}, {load_average()}")
    print(f"load generator: {'wrk ' + WRK if WRK else 'python aiohttp client (wrk missing)'}")
    print(f"durability: {args.durability}, stored before the run: {prefill:,} events,"
          f" random UUID ids, {args.seconds}s per figure, {args.repeat} repeat(s)\n")
    if args.catalog_compare:
        catalog_compare(args, prefill)
        return
    if args.todos and args.in_process:
        todo_in_process(args)
        return
    if args.todos:
        todo_ingest(args, prefill)
        return
    if args.period_keys:
        period_curve(args)
        return
    if args.latency:
        # The broker and the no-store reference alternating within each repeat.
        run_latency(args, prefill)
        return

    http_single: list[float] = []
    http_default_loop: list[float] = []
    http_batch: list[float] = []
    durable_single: list[float] = []
    durable_batch: list[float] = []
    single: list[float] = []
    batched: list[float] = []
    ceiling: list[float] = []
    commit_ceiling: list[float] = []
    shares: dict[str, list[tuple[float, float]]] = {"single": [], "batched": []}
    ceiling_cpu: list[float] = []
    group_sizes: list[int] = []
    single_groups: list[int] = []
    single_at_size: list[float] = []
    at_size: list[float] = []
    period_keys: list[tuple[int, int]] = []  # (pre-filled store, fresh beside it)
    fresh_single: list[float] = []
    fresh_batched: list[float] = []
    ref_latency = lat = None
    for _ in range(args.repeat):
        # Without a pre-fill each repeat has a fresh store: from an empty period, as the
        # goal's "fresh store" means (a period's keys are what a commit's cost grows
        # with); a pre-filled store is the same one every repeat, as a live bus is.
        broker = start_broker(["--durability", args.durability, "--log-level", "warning"],
                              prefill=prefill)
        store_file = broker.data_dir / "opsbus.db"
        broker.stop()
        with reference() as (ref_pid, ref_url):
            http_single.append(load(ref_url, batch=1, seconds=args.seconds)[0])
            http_batch.append(load(ref_url, batch=100, seconds=args.seconds)[0] * 100)
            if ref_latency is None and not args.no_latency:
                ref_latency = latency(ref_url, ref_pid, args)
        with reference(default_loop=True) as (_, ref_url):
            http_default_loop.append(load(ref_url, batch=1, seconds=args.seconds)[0])
        keys_before = current_period_keys(store_file) if prefill else 0
        broker.start(timeout=300)
        try:
            assert broker.proc is not None
            before = committed(broker.url)
            with CpuShare(broker.proc.pid, shares["single"]):
                single.append(load(broker.url, batch=1, seconds=args.seconds)[0])
            single_groups.append(group_size(before, committed(broker.url)))
            before = committed(broker.url)
            with CpuShare(broker.proc.pid, shares["batched"]):
                batched.append(load(broker.url, batch=100, seconds=args.seconds)[0] * 100)
            group_sizes.append(group_size(before, committed(broker.url)))
            if lat is None and not args.no_latency:
                assert broker.proc is not None
                lat = latency(broker.url, broker.proc.pid, args)
        finally:
            broker.stop()
        # On a fresh store of its own, or after the broker on the pre-filled one (as the
        # raw ceilings): the broker's figures are for the store as it was.
        durable_store = store_file if prefill else fresh_store()
        with durable_reference(durable_store) as (_, durable_url):
            durable_single.append(load(durable_url, batch=1, seconds=args.seconds)[0])
            durable_batch.append(load(durable_url, batch=100, seconds=args.seconds)[0] * 100)
        if not prefill:
            shutil.rmtree(durable_store.parent, ignore_errors=True)
        ceiling.append(sqlite_ceiling(store_file, args.seconds, cpu=ceiling_cpu))
        # The load resends a request only once it is answered: while one commit runs,
        # the rest of the events in flight wait for the next, so the broker's commits
        # hold fewer than 3,200 and pay an fsync each. The ceiling at that size:
        if group_sizes[-1]:
            at_size.append(sqlite_ceiling(store_file, args.seconds, batch=group_sizes[-1]))
        # 32 connections each awaiting its answer put at most 32 events in one commit,
        # and one writer's fsynced commits run one after another: this is the most any
        # single-event publisher can get from this disk, with no other work at all.
        commit_ceiling.append(sqlite_ceiling(store_file, args.seconds, batch=32))
        # The broker's single-event commits hold about half the connections' events
        # (while one commits, the half answered before sends again): back-to-back
        # commits of that size are what a writer that cost nothing would reach.
        if single_groups[-1]:
            single_at_size.append(sqlite_ceiling(store_file, args.seconds,
                                                 batch=single_groups[-1]))
        if prefill:
            one, many, fresh_keys = fresh_beside(keys_before, args)
            fresh_single.append(one)
            fresh_batched.append(many)
            period_keys.append((keys_before, fresh_keys))
        discard(broker)

    med = lambda v: sorted(v)[len(v) // 2]  # noqa: E731
    print("single-event POST, 32 connections")
    print(f"  opsbus (durable)      {spread(single):>28} events/s")
    print(f"  HTTP ceiling          {spread(http_single):>28} requests/s (do-nothing handler,"
          f" {loop_name()})")
    print(f"  ratio                 {med(single) / med(http_single):>28.2f}   (goal >= 0.5)")
    print(f"  on asyncio's loop     {spread(http_default_loop):>28} requests/s (aiohttp's"
          f" default; opsbus vs it: {med(single) / med(http_default_loop):.2f})")
    print(f"  durable handler       {spread(durable_single):>28} events/s   (stores each event"
          " with a group commit, nothing else: durable_reference.py)")
    print(f"  its own ratio         {med(durable_single) / med(http_single):>28.2f}"
          f"   opsbus vs it: {med(single) / med(durable_single):.2f}")
    print(f"  fsync ceiling         {spread(commit_ceiling):>28} events/s   (raw SQLite, 32 rows"
          " per fsynced commit, back to back)")
    print(f"  ceiling's own ratio   {med(commit_ceiling) / med(http_single):>28.2f}"
          f"   opsbus vs it: {med(single) / med(commit_ceiling):.2f}")
    if single_at_size:
        print(f"  opsbus commits        {', '.join(f'{n:,}' for n in single_groups):>28}"
              " events each (mean)")
        print(f"  raw SQLite, that size {spread(single_at_size):>28} events/s   (back to back;"
              f" opsbus vs it: {med(single) / med(single_at_size):.2f})")
    print(f"  opsbus CPU            {cpu_shares(shares['single'], single)}")
    print("batched ingest, 100 events per request, 32 connections")
    print(f"  opsbus (durable)      {spread(batched):>28} events/s")
    print(f"  HTTP ceiling          {spread(http_batch):>28} events/s")
    print(f"  durable handler       {spread(durable_batch):>28} events/s   (opsbus vs it:"
          f" {med(batched) / med(durable_batch):.2f})")
    print(f"  raw SQLite ceiling    {spread(ceiling):>28} events/s   (same store, same layout,"
          " executemany, 3,200/commit)")
    print(f"  vs SQLite ceiling     {med(batched) / med(ceiling):>28.2f}   (goal >= 0.8;"
          " goal >= 100,000 ev/s fresh)")
    print(f"  opsbus CPU            {cpu_shares(shares['batched'], batched)}")
    if at_size:
        print(f"  opsbus commits        {', '.join(f'{n:,}' for n in group_sizes):>28}"
              " events each (mean)")
        print(f"  raw SQLite, that size {spread(at_size):>28} events/s   (opsbus vs it:"
              f" {med(batched) / med(at_size):.2f})")
    print(f"  raw SQLite CPU        {', '.join(f'{us:.1f} µs per event' for us in ceiling_cpu)}"
          " (one thread)")
    if period_keys:
        print(f"flat with size: {prefill:,} stored against a fresh store whose current period"
              " first took as many events")
        print("  current period keys   " + ", ".join(
            f"{stored:,} stored / {fresh:,} fresh" for stored, fresh in period_keys)
              + " (when measured)")
        print(f"  fresh single          {spread(fresh_single):>28} events/s   (stored vs it:"
              f" {med(single) / med(fresh_single):.2f})")
        print(f"  fresh batched         {spread(fresh_batched):>28} events/s   (stored vs it:"
              f" {med(batched) / med(fresh_batched):.2f}; goal >= 0.8)")
    if lat and ref_latency:
        print(f"publish-to-SSE latency, {args.rate} events/s, {args.readers} SSE readers"
              " (ms from each publish's write to each reader's receipt; goal p99 <= 10 ms)")
        print(describe("opsbus", lat))
        print(describe("reference", ref_latency))


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--reference-server":
        run_reference_server(int(sys.argv[2]), default_loop="--default-loop" in sys.argv)
    elif len(sys.argv) > 2 and sys.argv[1] == "--python-load":
        print(asyncio.run(python_load(sys.argv[2], int(sys.argv[3]), 32, float(sys.argv[4]))))
    else:
        main()
