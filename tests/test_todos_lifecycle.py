"""Todo items across restarts, from the command line, and with the sample day's config."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.broker_process import ROOT, BrokerProcess
from tests.conftest import BATCH
from tests.todos_support import (
    eventually,
    get_json,
    item_of,
    op,
    publish,
    todo,
    work_event,
    write_config,
)


@pytest.fixture
def configured(tmp_path: Path) -> Iterator[BrokerProcess]:
    proc = BrokerProcess(tmp_path / "data", config=write_config(tmp_path),
                         args=["--durability", "normal"]).start()
    try:
        yield proc
    finally:
        proc.stop()


async def test_items_history_and_silences_survive_a_restart(configured, http):
    url = configured.url
    a = await item_of(http, url, await publish(http, url, work_event("keep-a")))
    await publish(http, url, work_event("keep-a"))
    b = await item_of(http, url, await publish(http, url, work_event("keep-b")))
    await op(http, url, b, "claim", operator="alice")
    await op(http, url, b, "comment", operator="alice", note="on it")
    c = await item_of(http, url, await publish(http, url, work_event("keep-c")))
    await op(http, url, c, "resolve", operator="bob", note="fixed")
    d = await item_of(http, url, await publish(http, url, work_event("keep-d")))
    await op(http, url, d, "snooze", operator="bob", **{"for": "1h"})
    short = await item_of(http, url, await publish(http, url, work_event(type="test.short")),
                          "queue:short")
    await op(http, url, short, "claim", operator="carol")
    async with http.post(url + "/v1/silences", json={
            "matcher": {"key": "*/muted-*"}, "duration": "1h", "comment": "maintenance",
            "operator": "alice"}) as resp:
        assert resp.status == 201
    before = {i: await todo(http, url, i) for i in (a, b, c, d)}
    work_before = await get_json(http, url, "/v1/queues/work")

    configured.restart()
    url = configured.url

    for item_id, item in before.items():
        assert await todo(http, url, item_id) == item
    work_after = await get_json(http, url, "/v1/queues/work")
    assert work_after.pop("oldest_open_age_s") >= work_before.pop("oldest_open_age_s")
    assert work_after == work_before
    silences = (await get_json(http, url, "/v1/silences"))["silences"]
    assert [s["comment"] for s in silences] == ["maintenance"]
    # Grouping, the open silence and lease expiry carry on where they were.
    assert await item_of(http, url, await publish(http, url, work_event("keep-a"))) == a
    assert (await todo(http, url, a))["count"] == 3
    muted = await publish(http, url, work_event("muted-1"))
    assert "silenced" in (await get_json(http, url, f"/v1/events/{muted}"))["targets"][0][
        "detail"]

    async def lapsed() -> bool:
        return (await todo(http, url, short))["state"] == "open"

    await eventually(lapsed, timeout=6)


async def run_cli(*args: str) -> tuple[int, str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "160"}
    env.pop("OPSBUS_URL", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "broker", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_cli_lists_items_as_a_table_and_json_and_works_them(configured, http):
    url = configured.url
    item_id = await item_of(http, url, await publish(http, url, work_event("cli-host")))

    code, out, err = await run_cli("todo", "list", "--url", url)
    assert code == 0, err
    header, *rows = out.splitlines()
    assert header.split() == ["ID", "QUEUE", "PRIORITY", "STATE", "OWNER", "COUNT", "AGE",
                              "TITLE"]
    row = next(r for r in rows if r.split()[0] == str(item_id))
    assert row.split()[1] == "work" and row.split()[3:6] == ["open", "-", "1"]
    assert row.split()[6].endswith("s") and row.endswith("DiskFull on cli-host")

    code, out, _ = await run_cli("todo", "claim", str(item_id), "--operator", "zoe",
                                 "--url", url)
    assert code == 0 and "claimed by zoe" in out
    code, out, _ = await run_cli("todo", "list", "--url", url, "--json", "--owner", "zoe")
    page = json.loads(out)
    assert [i["id"] for i in page["items"]] == [item_id] and page["next"] is None
    code, _, err = await run_cli("todo", "claim", str(item_id), "--operator", "yan",
                                 "--url", url)
    assert code == 1 and "already claimed by zoe" in err
    code, _, _ = await run_cli("todo", "comment", str(item_id), "disk", "cleaned",
                               "--operator", "zoe", "--url", url)
    assert code == 0
    code, out, _ = await run_cli("todo", "resolve", str(item_id), "--note", "ok",
                                 "--operator", "zoe", "--url", url)
    assert code == 0 and "resolved" in out
    code, out, _ = await run_cli("todo", "show", str(item_id), "--url", url)
    assert "disk cleaned" in out and "resolved" in out

    code, out, _ = await run_cli("silence", "add", "--key", "tests/*", "--duration", "2h",
                                 "--comment", "noisy", "--operator", "zoe", "--url", url)
    assert code == 0 and out.startswith("silence ")
    silence_id = out.split()[1]
    code, out, _ = await run_cli("silence", "list", "--url", url)
    assert "noisy" in out and "zoe" in out
    code, out, _ = await run_cli("silence", "expire", silence_id, "--url", url)
    assert code == 0
    code, out, _ = await run_cli("silence", "list", "--url", url, "--json")
    assert json.loads(out) == []
    code, _, err = await run_cli("todo", "list", "--url", "http://127.0.0.1:9")
    assert code == 3 and "cannot reach" in err


SAMPLE = ROOT / "sample_events"
EXPECTED = {  # sample_events/README.md: the items a replay of the day leaves
    "alerts": (0, 8), "deploys": (0, 2), "access": (0, 3), "backups": (0, 1),
    "platform": (7, 0), "dba": (3, 0), "deadletter": (0, 0),
}


def sample_batches() -> list[list[dict]]:
    batches = []
    for path in sorted(SAMPLE.iterdir()):
        if path.suffix == ".ndjson":
            batches.append([orjson.loads(line) for line in path.read_text().splitlines()
                            if line.strip()])
        elif path.suffix == ".json":
            doc = orjson.loads(path.read_bytes())
            batches.append(doc if isinstance(doc, list) else [doc])
    return batches


async def test_sample_config_loads_and_the_sample_day_opens_and_resolves_items(
        tmp_path, http):
    config = tmp_path / "opsbus.toml"
    shutil.copy(SAMPLE / "opsbus.toml", config)
    proc = BrokerProcess(tmp_path / "data", config=config,
                         args=["--durability", "normal"]).start()
    try:
        for batch in sample_batches():
            async with http.post(proc.url + "/v1/events", data=orjson.dumps(batch),
                                 headers=BATCH) as resp:
                assert resp.status == 200, await resp.text()
        queues = {q["name"]: q for q in (await get_json(http, proc.url, "/v1/queues"))[
            "queues"]}
        assert {n: (q["open"], q["resolved"]) for n, q in queues.items()} == EXPECTED
        assert queues["alerts"]["lease"] == "30m"

        alerts = (await get_json(http, proc.url, "/v1/todos", queue="alerts"))["items"]
        assert all(i["resolution"] == {"by": "system", "auto": True, "note": i[
            "resolution"]["note"]} for i in alerts)
        by_title = {i["title"]: i for i in alerts}
        error_rate = by_title["OrdersApiHighErrorRate on orders-service.orders.svc:8080"]
        assert error_rate["count"] == 2 and error_rate["priority"] == "critical"
        detail = await todo(http, proc.url, error_rate["id"])
        assert [e["type"] for e in detail["events"]] == [
            "prometheus.alert.firing", "prometheus.alert.firing", "prometheus.alert.resolved"]
        platform = (await get_json(http, proc.url, "/v1/todos", queue="platform",
                                   state="open"))["items"]
        assert "orders/orders-service-7c9d8f6b54-x2kqp (k8s.pod.crashloop)" in {
            i["title"] for i in platform}
    finally:
        proc.stop()
