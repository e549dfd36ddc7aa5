"""`opsbus replay`: folders of sample events into a running broker, fresh ids and times,
the replay marker, pacing, ordering and per-line error reports."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from broker.cli.replay import prepare, schedule
from broker.clock import SystemClock
from broker.eventfiles import read_events
from broker.timeutil import parse_rfc3339
from tests.broker_process import ROOT, BrokerProcess
from tests.conftest import make_event


def opsbus(*args: str, url: str | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "broker", *args, *(["--url", url] if url else [])]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=60)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    proc = BrokerProcess(tmp_path_factory.mktemp("replay") / "data").start()
    try:
        yield proc
    finally:
        proc.stop()


async def stored(http: Any, url: str, run: str) -> list[dict[str, Any]]:
    async with http.get(url + "/v1/events", params={
            "filter": f"replay = '{run}'", "limit": "1000"}) as resp:
        assert resp.status == 200, await resp.text()
        return (await resp.json())["events"]


def write_ndjson(path: Path, events: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    return path


async def test_replay_sample_folder_publishes_every_event_with_fresh_ids(broker, http):
    done = opsbus("replay", "sample_events/", "--json", "--run-id", "samples-1", url=broker.url)
    assert done.returncode == 0, done.stderr
    summary = orjson.loads(done.stdout)
    assert summary["files"] == 11 and summary["events"] == 79
    assert summary["sent"] == 79 and summary["duplicates"] == 0 and summary["rejected"] == []

    got = await stored(http, broker.url, "samples-1")
    assert len(got) == 79
    originals = [e.event for e in read_events([ROOT / "sample_events"])]
    # File order (name order, then line order) becomes seq order.
    assert [g["event"]["type"] for g in got] == [o["type"] for o in originals]
    first, last = got[0]["event"], got[-1]["event"]
    assert first["id"] != originals[0]["id"] and "replaylive" not in first
    # The first event is now; the recorded spacing is kept.
    assert abs(parse_rfc3339(first["time"]) - SystemClock().now()) < timedelta(seconds=30)
    recorded = parse_rfc3339(originals[-1]["time"]) - parse_rfc3339(originals[0]["time"])
    assert parse_rfc3339(last["time"]) - parse_rfc3339(first["time"]) == recorded

    # A second run is not deduplicated away: new ids again.
    done = opsbus("replay", "sample_events/", "--json", url=broker.url)
    assert orjson.loads(done.stdout)["sent"] == 79


async def test_keep_ids_replays_verbatim_and_live_marks_it(broker, http, tmp_path):
    events = [make_event(source="tests/keep", id=f"k{i}", time=f"2026-01-0{i + 1}T00:00:00Z")
              for i in range(3)]
    path = write_ndjson(tmp_path / "keep.ndjson", events)
    done = opsbus("replay", str(path), "--keep-ids", "--live", "--run-id", "keep-1", "--json",
                  url=broker.url)
    assert orjson.loads(done.stdout)["sent"] == 3
    got = [g["event"] for g in await stored(http, broker.url, "keep-1")]
    assert [(g["id"], g["time"]) for g in got] == [(e["id"], e["time"]) for e in events]
    assert all(g["replaylive"] is True for g in got)
    # Same ids again: already stored (the run id differs, so the content does).
    summary = orjson.loads(opsbus("replay", str(path), "--keep-ids", "--json",
                                  url=broker.url).stdout)
    assert summary["sent"] == 0 and summary["duplicates"] + summary["conflicts"] == 3
    summary = orjson.loads(opsbus("replay", str(path), "--keep-ids", "--live", "--run-id",
                                  "keep-1", "--json", url=broker.url).stdout)
    assert summary["duplicates"] == 3


async def test_bad_files_and_lines_are_reported_and_the_rest_still_goes(broker, http, tmp_path):
    folder = tmp_path / "mixed"
    (folder / "sub").mkdir(parents=True)
    write_ndjson(folder / "a.ndjson", [make_event(source="tests/mixed", type="first")])
    (folder / "b.ndjson").write_text(
        orjson.dumps(make_event(source="tests/mixed", type="second")).decode() + "\n"
        "{oops\n"
        '{"specversion": "1.0", "id": "x", "source": "tests/mixed", "type": "t", '
        '"time": "yesterday"}\n')
    (folder / "sub" / "c.json").write_text("[" + orjson.dumps(
        make_event(source="tests/mixed", type="third")).decode() + ", 42]")
    (folder / "notes.md").write_text("# not events")
    (folder / "opsbus.toml").write_text("[[routes]]")
    done = opsbus("replay", str(folder), "--run-id", "mixed-1", url=broker.url)
    assert done.returncode == 1
    assert "mixed-1: 6 events from 3 files" in done.stdout
    assert "3 sent, 0 duplicates, 3 rejected" in done.stdout
    assert f"{folder}/b.ndjson:line 2: not valid JSON" in done.stderr
    assert f"{folder}/b.ndjson:line 3: attribute 'time' must be an RFC 3339" in done.stderr
    assert f"{folder}/sub/c.json:item 1: not an event" in done.stderr
    got = await stored(http, broker.url, "mixed-1")
    assert [g["event"]["type"] for g in got] == ["first", "second", "third"]


async def test_order_time_interleaves_files_by_event_time(broker, http, tmp_path):
    write_ndjson(tmp_path / "a.ndjson", [
        make_event(type="a1", time="2026-01-01T00:00:01Z"),
        make_event(type="a2", time="2026-01-01T00:00:03Z")])
    write_ndjson(tmp_path / "b.ndjson", [
        make_event(type="b1", time="2026-01-01T00:00:02Z"),
        make_event(type="b2", time="2026-01-01T00:00:04+01:00")])  # earliest of all
    opsbus("replay", str(tmp_path), "--order", "time", "--run-id", "order-1", url=broker.url)
    got = await stored(http, broker.url, "order-1")
    assert [g["event"]["type"] for g in got] == ["b2", "a1", "b1", "a2"]


async def test_speed_keeps_the_recorded_spacing_scaled(broker, http, tmp_path):
    # Four events one minute apart at --speed 120: about 0.5 s apart, 1.5 s in all.
    write_ndjson(tmp_path / "paced.ndjson", [
        make_event(type="paced", time=f"2026-01-01T00:0{i}:00Z") for i in range(4)])
    # Sleeps never end early, so each event reaches the broker no sooner than its due time
    # after the replay started (how much later depends on the machine: not asserted).
    launched = datetime.now(UTC)
    done = opsbus("replay", str(tmp_path), "--speed", "120", "--run-id", "paced-1",
                  url=broker.url)
    assert done.returncode == 0, done.stderr
    got = await stored(http, broker.url, "paced-1")
    received = [parse_rfc3339(g["recvtime"]) for g in got]
    late = [(r - launched).total_seconds() - due for r, due in zip(received, [0, .5, 1, 1.5],
                                                                    strict=True)]
    assert all(lateness > -0.01 for lateness in late), late


def test_schedule_and_prepare_rules():
    events = [make_event(id="a", time="2026-01-01T00:00:00Z"),
              make_event(id="b", time="2026-01-01T00:00:10Z", causationid="a"),
              make_event(id="c", time="2026-01-01T00:00:05Z")]
    assert schedule(events, 0, None) == [0, 0, 0]
    assert schedule(events, 2, None) == [0, 5, 5]  # time going back sends at once
    assert schedule(events, 0, 4) == [0, 0.25, 0.5]
    fresh = prepare(events, "r1", keep_ids=False, live=False)
    assert fresh[1]["causationid"] == fresh[0]["id"] != "a"  # causation links survive
    assert {e["replay"] for e in fresh} == {"r1"}
    gap = parse_rfc3339(fresh[1]["time"]) - parse_rfc3339(fresh[0]["time"])
    assert gap == timedelta(seconds=10)
    again = prepare([{**events[0], "replaylive": True}], "r2", keep_ids=True, live=False)
    assert "replaylive" not in again[0] and again[0]["id"] == "a"


def test_unreachable_broker_is_one_line_and_exit_3(tmp_path):
    path = write_ndjson(tmp_path / "one.ndjson", [make_event()])
    done = opsbus("replay", str(path), url="http://127.0.0.1:9")
    assert done.returncode == 3
    assert done.stderr.strip().startswith("opsbus: cannot reach the broker")


async def test_the_sample_day_with_the_sample_config_fills_the_queues(tmp_path, http):
    """The sample README's end-of-day table, and a history run grouped like the queue."""
    proc = BrokerProcess(tmp_path / "data", config=ROOT / "sample_events" / "opsbus.toml")
    proc.start()
    try:
        done = opsbus("replay", "sample_events/", url=proc.url)
        assert done.returncode == 0, done.stderr
        queues = {q["name"]: q for q in (await (await http.get(
            proc.url + "/v1/queues")).json())["queues"]}
        assert {name: (q["open"], q["resolved"]) for name, q in queues.items()} == {
            "alerts": (0, 8), "deploys": (0, 2), "access": (0, 3), "backups": (0, 1),
            "platform": (7, 0), "dba": (3, 0), "deadletter": (0, 0)}

        draft = tmp_path / "alerts.toml"
        draft.write_text('name = "prod-alerts"\ntargets = ["queue:alerts"]\n'
                         "filter = { sql = \"type LIKE 'prometheus.alert.%' AND "
                         "data.labels.severity IN ('critical', 'warning')\" }\n")
        report = orjson.loads(opsbus("routes", "test", "--route", str(draft), "--history",
                                     "1h", "--json", url=proc.url).stdout)
        (alerts,) = report["queues"]
        assert alerts["grouping"] == "{dedupkey}"
        assert (alerts["opened"], alerts["attached"], alerts["resolved"]) == (8, 2, 8)
        assert alerts["items"][0]["title"] == "PostgresReplicationLagHigh on orders-replica-1:9187"
    finally:
        proc.stop()
