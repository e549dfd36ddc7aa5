"""`opsbus export`: stored events as NDJSON, filtered and windowed, and read back by replay."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

from tests.broker_process import ROOT, BrokerProcess
from tests.conftest import BATCH, make_event


def opsbus(*args: str, url: str | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "broker", *args, *(["--url", url] if url else [])]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=60)


MINE = "source = 'tests/suite'"
"""The broker publishes events of its own (plugins loaded, ...): select the test's."""


async def all_events(http: Any, url: str) -> list[dict[str, Any]]:
    async with http.get(url + "/v1/events", params={"limit": "1000", "filter": MINE}) as resp:
        return [e["event"] for e in (await resp.json())["events"]]


async def test_export_then_replay_round_trips_the_events(tmp_path: Path, http):
    origin = BrokerProcess(tmp_path / "origin").start()
    copy = BrokerProcess(tmp_path / "copy").start()
    try:
        events = [
            make_event(type="deploy.finished", subject="orders", correlationid="rel-1"),
            make_event(type="deploy.finished", data="plain text", datacontenttype="text/plain"),
            make_event(type="blob.stored", data=..., datacontenttype="application/octet-stream",
                       data_base64="AAEC/w=="),
            make_event(type="noise", priority=3, urgent=True),
        ] + [make_event(type="bulk", id=f"bulk-{i}") for i in range(1500)]
        for start in range(0, len(events), 1000):
            async with http.post(origin.url + "/v1/events", headers=BATCH,
                                 data=orjson.dumps(events[start:start + 1000])) as resp:
                assert resp.status == 200

        out = tmp_path / "export.ndjson"
        done = opsbus("export", "--filter", f"{MINE} AND type <> 'noise'", "--output", str(out),
                      url=origin.url)
        assert done.returncode == 0, done.stderr
        assert done.stderr.startswith("exported 1503 events (seq ")
        assert done.stderr.strip().endswith(f") to {out}")
        lines = out.read_bytes().splitlines()
        assert len(lines) == 1503 and not (tmp_path / "export.ndjson.partial").exists()
        assert orjson.loads(lines[0]) == (await all_events(http, origin.url))[0]

        done = opsbus("replay", str(out), "--keep-ids", "--json", url=copy.url)
        assert orjson.loads(done.stdout)["sent"] == 1503
        async with http.get(copy.url + "/v1/events", params={"limit": "10",
                                                             "filter": MINE}) as resp:
            copied = [e["event"] for e in (await resp.json())["events"]]
        stripped = [{k: v for k, v in e.items() if k != "replay"} for e in copied]
        assert stripped == [e for e in (await all_events(http, origin.url))[:11]
                            if e["type"] != "noise"][:10]
    finally:
        origin.stop()
        copy.stop()


async def test_export_windows_and_standard_output(broker, http):
    async with http.post(broker.url + "/v1/events", headers=BATCH,
                         data=orjson.dumps([make_event(type=f"t{i}") for i in range(3)])) as r:
        seqs = [a["seq"] for a in await r.json()]
    done = opsbus("export", "--since", "1h", "--filter", MINE, url=broker.url)
    assert [orjson.loads(line)["type"] for line in done.stdout.splitlines()] == ["t0", "t1", "t2"]
    done = opsbus("export", "--until", "1h", url=broker.url)
    assert done.stdout == "" and "exported 0 events" in done.stderr
    done = opsbus("export", "--after", str(seqs[0]), "--limit", "1", url=broker.url)
    assert [orjson.loads(line)["type"] for line in done.stdout.splitlines()] == ["t1"]
    done = opsbus("export", "--filter", "type = ", url=broker.url)
    assert done.returncode == 1 and "column" in done.stderr
