"""Helpers for the console tests: a broker config, waiting on the UI, publishing."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual.pilot import Pilot

from tests.broker_process import ADMIN_TOKEN, AUTH, ROOT

QUEUE_CONFIG = """
[[queues]]
name = "ops"
description = "Test alerts"
group_key = "{subject}"
title = "{type} on {subject}"
priority = "{data.severity}"
lease = "1h"

[[routes]]
name = "to-ops"
filter = { prefix = { type = "test.alert" } }
targets = ["queue:ops"]
"""


def no_plugins() -> str:
    """A `[plugins]` table disabling every shipped plugin: their start-up events would
    take seqs and carry real times, which fixed screenshots cannot have."""
    names = sorted(p.stem for p in (ROOT / "plugins").glob("*.py")
                   if not p.name.startswith(("_", ".")))
    return f"\n[plugins]\ndisabled = {json.dumps(names)}\n"


def write_config(folder: Path, body: str = QUEUE_CONFIG) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "opsbus.toml"
    path.write_text(body + no_plugins())
    return path


def http(url: str, method: str = "GET", body: Any = None,
         content_type: str = "application/json") -> Any:
    """A blocking JSON call (tests drive the broker beside the app, not through it)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": content_type, **AUTH})
    with urllib.request.urlopen(request, timeout=10) as resp:
        raw = resp.read()
    return json.loads(raw) if raw else None


def publish(url: str, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return http(url + "/v1/events", "POST", events, "application/cloudevents-batch+json")


def event(n: int, **extra: Any) -> dict[str, Any]:
    """A fixed event: id, time and data depend only on `n`."""
    return {"specversion": "1.0", "id": f"evt-{n:05d}", "source": "tests/console",
            "type": extra.pop("type", "test.event"), "subject": extra.pop("subject", f"s{n}"),
            "time": f"2026-11-25T10:{n // 60 % 60:02d}:{n % 60:02d}Z",
            "datacontenttype": "application/json", "data": {"n": n, "summary": f"event {n}"},
            **extra}


async def until(pilot: Pilot[Any], check: Callable[[], Any], timeout: float = 10.0,
                what: str = "condition") -> None:
    """Let the app run until `check()` is true."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)


async def in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """Blocking HTTP off the app's loop, so the app keeps running meanwhile."""
    return await asyncio.to_thread(fn, *args)


ONCALL_CONFIG = """
[[queues]]
name = "ops"
group_key = "{subject}"
title = "{data.alertname} on {subject}"
priority = "{data.severity}"
lease = "1h"

[[queues]]
name = "db"
group_key = "{subject}"
title = "{data.alertname} on {subject}"
priority = "{data.severity}"

[[routes]]
name = "to-ops"
filter = { prefix = { type = "test.alert" } }
targets = ["queue:ops"]

[[routes]]
name = "to-db"
filter = { prefix = { type = "test.db" } }
targets = ["queue:db"]
"""
"""Two queues whose items take their priority from the alert's severity."""


def alert(n: int, severity: str, subject: str, *, type: str = "test.alert",
          summary: str | None = None, **data: Any) -> dict[str, Any]:
    """An Alertmanager-like event: summary annotation, labels, a runbook link."""
    return event(n, id=f"alert-{subject}-{n}", type=type, subject=subject, data={
        "alertname": f"Alert{n}", "severity": severity,
        "labels": {"alertname": f"Alert{n}", "severity": severity, "namespace": "prod",
                   "instance": subject},
        "annotations": {"summary": summary or f"{subject} needs attention ({n})",
                        "runbook_url": f"https://runbooks.example/{subject}"},
        **data})


def todo_items(url: str, queue: str | None = None, state: str = "active") -> list[Any]:
    where = f"&queue={queue}" if queue else ""
    return list(http(f"{url}/v1/todos?state={state}&limit=1000{where}")["items"])


def item_id(url: str, key: str) -> int:
    """The id of the active item grouped under `key`."""
    return int(next(i["id"] for i in todo_items(url) if i["key"] == key))


PACED = r"""
import json, sys, time, urllib.request
url, rate, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
batch, sent, start = 100, 0, time.monotonic()
while sent < count:
    events = [{"specversion": "1.0", "id": f"paced-{sent + n}", "source": "tests/paced",
               "type": "test.alert" if (sent + n) % 20 == 0 else "test.event",
               "subject": f"paced-{(sent + n) % 40}", "time": "2026-11-25T10:00:00Z",
               "data": {"severity": "warning", "alertname": "Paced", "n": sent + n}}
              for n in range(batch)]
    req = urllib.request.Request(url + "/v1/events", data=json.dumps(events).encode(),
                                 headers={"Content-Type": "application/cloudevents-batch+json",
                                          "Authorization": "Bearer " + sys.argv[4]})
    urllib.request.urlopen(req).read()
    sent += batch
    ahead = start + sent / rate - time.monotonic()
    if ahead > 0:
        time.sleep(ahead)  # keeps to the rate
"""
"""A publisher at `rate` events/s (one in twenty an alert that opens or updates an item)."""


def paced_publisher(url: str, rate: int, count: int) -> Any:
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, "-c", PACED, url, str(rate), str(count),
                             ADMIN_TOKEN])
