"""Routing benchmark: durable ingest with 0 routes, with 200 realistic routes, and with
200 routes of which one feeds a todo queue; plus the in-process cost of matching.

    .venv/bin/python bench/routes.py [--seconds 10] [--durability full]

Each scenario starts its own broker (a real `opsbus serve` process on a fresh SQLite
file) and loads it from a separate process: wrk with a Lua script when installed, else
the Python aiohttp client of bench/ingest.py. The 200 routes mix exact, prefix, CESQL
(LIKE, IN, data.* paths) and all/any filters; 4 of them match each benchmark event.
Prints figures; asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import atexit
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import ROOT, WRK, discard, machine, parse_count, start_broker
from ingest import event_json, load

MATCHING = 4
"""Routes each benchmark event (type bench.event, source bench/*, data.severity warning)
matches; the other 196 are near misses on type, source or data."""


def realistic_routes(queue: bool) -> list[dict[str, Any]]:
    """200 routes as an ops team would write them; `queue` sends one matching route to
    a todo queue, every other target is a cheap `plugin:` hit."""
    routes: list[dict[str, Any]] = []
    for i in range(50):
        routes.append({"name": f"exact-{i}", "filter": {"exact": {
            "type": f"svc{i}.alert.firing"}}, "targets": [f"plugin:pager-{i}"]})
    for i in range(49):
        routes.append({"name": f"prefix-{i}", "filter": {"prefix": {"type": f"team{i}."}},
                       "targets": [f"plugin:team-{i}"]})
    routes.append({"name": "prefix-bench", "filter": {"prefix": {"type": "bench."}},
                   "targets": ["queue:bench" if queue else "plugin:bench"]})
    for i in range(49):
        routes.append({"name": f"sql-{i}", "filter": {"sql": (
            f"type LIKE 'svc{i}.%' AND data.severity IN ('critical', 'warning')")},
            "targets": [f"plugin:sql-{i}"]})
    routes.append({"name": "sql-bench", "filter": {"sql": (
        "source LIKE 'bench/%' AND data.severity = 'warning'")}, "targets": ["plugin:sql"]})
    for i in range(48):
        routes.append({"name": f"combo-{i}", "filter": {"all": [
            {"exact": {"source": f"monitoring/cluster-{i}"}},
            {"sql": f"data.n > {i} AND subject LIKE 'node-%'"}]},
            "targets": [f"plugin:combo-{i}"]})
    routes.append({"name": "combo-bench", "filter": {"all": [
        {"prefix": {"source": "bench/"}}, {"sql": "INT(data.n) > 0"}]},
        "targets": ["plugin:combo"]})
    routes.append({"name": "any-bench", "filter": {"any": [
        {"exact": {"subject": "never"}}, {"sql": "data.n >= 0"}]},
        "targets": ["plugin:any"]})
    assert len(routes) == 200
    return routes


def write_config(routes: list[dict[str, Any]], queue: bool) -> Path:
    """An opsbus.toml holding the routes (inline JSON is valid TOML for these values)."""
    lines = []
    if queue:
        lines += ["[[queues]]", 'name = "bench"', 'group_key = "{source}/{subject}"',
                  'title = "{type} on {subject}"', ""]
    for route in routes:
        lines.append("[[routes]]")
        lines.append(f"name = {json.dumps(route['name'])}")
        lines.append(f"filter = {toml_value(route['filter'])}")
        lines.append(f"targets = {json.dumps(route['targets'])}")
        lines.append("")
    folder = tempfile.mkdtemp(prefix="opsbus-bench-routes-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)  # brokers read it until then
    path = Path(folder) / "opsbus.toml"
    path.write_text("\n".join(lines))
    return path


def toml_value(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(v)}"
                                for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value)


def matching_cost(routes: list[dict[str, Any]], events: int = 20_000) -> float:
    """Microseconds to evaluate the whole table against one event, in process."""
    sys.path.insert(0, str(ROOT))
    from broker.routing import Router, compile_route, validate_route

    router = Router()
    router.routes = tuple(compile_route(validate_route(r)) for r in routes)
    sample = [event_json(n, "m") for n in range(1, events + 1)]
    hits = 0
    start = time.perf_counter()
    for event in sample:
        hits += len(router.match(event))
    took = time.perf_counter() - start
    assert hits == MATCHING * events, hits
    return took / events * 1e6


def without_hits(routes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same table with the routes the benchmark events match turned into near
    misses: measures what the table itself costs, not the work its targets do."""
    sys.path.insert(0, str(ROOT))
    from broker.routing import compile_route, validate_route

    sample = event_json(1, "m")
    changed = []
    for route in routes:
        if compile_route(validate_route(route)).filter.matches(sample):
            route = {**route, "filter": {"exact": {"type": "bench.never-sent"}}}
        changed.append(route)
    return changed


def queue_only() -> Path:
    """One route sending every benchmark event to a todo queue: each event updates an
    item (grouped by source and subject, 50 subjects)."""
    return write_config([{"name": "all-to-queue", "filter": {"prefix": {"type": "bench."}},
                          "targets": ["queue:bench"]}], True)


PREFILL = 0


def scenario(name: str, config: Path | None, durability: str, seconds: int
             ) -> tuple[str, float, float, str]:
    broker = start_broker(["--durability", durability, "--log-level", "warning"], config,
                          prefill=PREFILL)
    try:
        single, note = load(broker.url, batch=1, seconds=seconds)
        batched, _ = load(broker.url, batch=100, seconds=seconds)
    finally:
        discard(broker)
    return name, single, batched * 100, note


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--durability", default="full")
    parser.add_argument("--prefill", type=parse_count, default=0,
                        help="events already stored, e.g. 1M (see prefill.py)")
    parser.add_argument("--scenarios", default="all",
                        help="comma-separated: zero,nohit,hits,queue,queue-only")
    args = parser.parse_args()
    global PREFILL
    PREFILL = args.prefill
    chosen = set(args.scenarios.split(",")) if args.scenarios != "all" else None

    print(f"machine: {machine()}")
    print(f"load generator: {'wrk ' + WRK if WRK else 'python aiohttp client (wrk missing)'}")
    print(f"durability: {args.durability}, {args.seconds}s per run, 32 connections,"
          f" {args.prefill:,} events stored before\n")

    plain = realistic_routes(queue=False)
    with_queue = realistic_routes(queue=True)
    cost = matching_cost(plain)
    print(f"matching 200 routes in process: {cost:.1f} µs per event "
          f"({MATCHING} hits each)\n")

    plans = [
        ("zero", "0 routes", lambda: None),
        ("nohit", "200 routes, no hit", lambda: write_config(without_hits(plain), False)),
        ("hits", "200 routes, 4 hits (plugin)", lambda: write_config(plain, False)),
        ("queue", "200 routes, 1 hit is a queue", lambda: write_config(with_queue, True)),
        ("queue-only", "1 route, every event to a queue", queue_only),
    ]
    runs = [scenario(name, make(), args.durability, args.seconds)
            for key, name, make in plans if chosen is None or key in chosen]
    base_single, base_batch = runs[0][1], runs[0][2]  # "vs 0" is vs the first scenario run
    print(f"{'scenario':<30} {'single POST ev/s':>17} {'vs 0':>6} "
          f"{'batch(100) ev/s':>16} {'vs 0':>6}")
    for name, single, batched, note in runs:
        print(f"{name:<30} {single:>17,.0f} {single / base_single:>6.0%} "
              f"{batched:>16,.0f} {batched / base_batch:>6.0%}   ({note})")


if __name__ == "__main__":
    main()
