"""Micro-benchmark: events per second through a route table of 200 compiled filters.

Run: ``.venv/bin/python bench/filters.py [--seconds N]``. Prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from broker.filters import Filter, compile_filter  # noqa: E402

SOURCES = ["alertmanager/prod-eu1", "github/acme", "ci/jenkins", "k8s/prod", "backup/pg"]
SEVERITIES = ["critical", "warning", "info", "none", "page"]


def load_events() -> list[dict[str, Any]]:
    """The sample events shipped with opsbus, or a synthetic set when they are absent."""
    events: list[dict[str, Any]] = []
    for path in sorted((ROOT / "sample_events").glob("*.ndjson")):
        for line in path.read_text().splitlines():
            if line.strip():
                events.append(json.loads(line))
    if events:
        return events
    for i in range(100):
        events.append(
            {
                "specversion": "1.0",
                "id": f"e-{i}",
                "source": SOURCES[i % len(SOURCES)],
                "type": f"prometheus.alert.{'firing' if i % 3 else 'resolved'}",
                "subject": f"host-{i % 17}",
                "datacontenttype": "application/json",
                "data": {
                    "status": "firing",
                    "labels": {"alertname": f"Alert{i % 23}", "severity": SEVERITIES[i % 5]},
                    "count": i,
                },
            }
        )
    return events


def route_table() -> list[dict[str, Any] | str]:
    """200 filters of the kinds a real route table holds; most match few events."""
    specs: list[dict[str, Any] | str] = []
    for i in range(40):
        specs.append({"exact": {"type": f"prometheus.alert.firing{'' if i == 0 else i}"}})
    for i in range(30):
        specs.append({"prefix": {"source": SOURCES[i % 5] + ("" if i < 5 else f"-{i}")}})
    for i in range(20):
        specs.append({"suffix": {"type": ".failed" if i == 0 else f".failed{i}"}})
    for i in range(30):
        specs.append(
            {
                "all": [
                    {"prefix": {"type": "prometheus.alert."}},
                    {"exact": {"data.labels.severity": SEVERITIES[i % 5]}},
                    {"exact": {"data.labels.alertname": f"Alert{i}"}},
                ]
            }
        )
    for i in range(20):
        specs.append(
            {
                "any": [
                    {"exact": {"subject": f"host-{i}"}},
                    {"suffix": {"source": f"/team-{i}"}},
                    {"exact": {"data.status": "resolved" if i == 0 else f"state-{i}"}},
                ]
            }
        )
    for i in range(10):
        specs.append({"not": {"prefix": {"type": f"opsbus.internal.{i}"}}})
    sql = [
        "type LIKE 'prometheus.alert.%' AND data.labels.severity IN ('critical', 'page')",
        "source LIKE '%prod%' AND data.status = 'firing'",
        "subject = 'host-{i}' OR data.labels.alertname = 'Alert{i}'",
        "EXISTS dedupkey AND type = 'prometheus.alert.resolved'",
        "LOWER(data.labels.severity) = 'critical' AND NOT (source = 'ci/jenkins')",
        "INT(data.count) > {i} AND type LIKE '%.firing'",
        "data.labels.team IN ('storage', 'db', 'team-{i}')",
        "type LIKE 'github.%' AND data.action = 'opened'",
        "CONCAT(source, '/', subject) LIKE 'k8s/%/pod-{i}'",
        "time LIKE '2026-11-%' AND type LIKE 'backup.%'",
    ]
    for i in range(50):
        specs.append({"sql": sql[i % len(sql)].replace("{i}", str(i))})
    return specs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per run")
    args = parser.parse_args()

    print(
        f"machine: {platform.node()}, {os.cpu_count()} cpus, {platform.processor() or '?'}, "
        f"{platform.system()} {platform.release()}, "
        f"{platform.python_implementation()} {platform.python_version()}"
    )
    events = load_events()
    specs = route_table()
    started = time.perf_counter()
    filters: list[Filter] = [compile_filter(spec) for spec in specs]
    compile_ms = (time.perf_counter() - started) * 1000
    print(f"compiled {len(filters)} filters in {compile_ms:.1f} ms; {len(events)} distinct events")

    matchers = [f.matches for f in filters]
    matched = sum(m(e) for e in events for m in matchers)
    print(f"matches per event (average): {matched / len(events):.2f} of {len(filters)}")

    # Warm up, then count whole passes over the event list until the time is up.
    for event in events:
        for match in matchers:
            match(event)
    done = 0
    started = time.perf_counter()
    deadline = started + args.seconds
    while time.perf_counter() < deadline:
        for event in events:
            for match in matchers:
                match(event)
        done += len(events)
    elapsed = time.perf_counter() - started
    per_event = elapsed / done
    print(
        f"{done / elapsed:,.0f} events/s against {len(filters)} filters "
        f"({per_event * 1e6:.1f} us per event, "
        f"{per_event / len(filters) * 1e9:.0f} ns per filter evaluation)"
    )


if __name__ == "__main__":
    main()
