"""Retention on a real broker and the test clock: a count cap keeps the store bounded
while every event an open item or a pending delivery needs survives, removed seqs answer
410, and readers resuming below the retained range are told so."""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from tests.broker_process import BrokerProcess
from tests.conftest import BATCH, make_event
from tests.todos_support import get_json, item_of, op, publish, work_event

CAP = 2_000
PUBLISHED = 20_000
BATCH_SIZE = 1_000
ON_SQLITE = os.environ.get("OPSBUS_TEST_STORE", "sqlite") == "sqlite"

CONFIG = """
[[queues]]
name = "work"

[[routes]]
name = "work"
filter = { exact = { type = "test.work" } }
targets = ["queue:work"]

[[subscriptions]]
name = "puller"
type = "pull"
filter = { exact = { type = "test.pulled" } }
"""


@pytest.fixture
def capped(tmp_path: Path) -> Iterator[BrokerProcess]:
    config = tmp_path / "opsbus.toml"
    config.write_text(CONFIG)
    proc = BrokerProcess(tmp_path / "data", config=config, test_clock=True, args=[
        "--durability", "normal", "--retention-max-events", str(CAP),
        "--retention-resume-window", "1m", "--maintenance-interval-s", "5"]).start()
    try:
        yield proc
    finally:
        proc.stop()


async def publish_batch(http: aiohttp.ClientSession, url: str, events: list[dict[str, Any]]
                        ) -> list[int]:
    async with http.post(url + "/v1/events", data=orjson.dumps(events),
                         headers=BATCH) as resp:
        assert resp.status == 200, await resp.text()
        return [int(r["seq"]) for r in await resp.json()]


def database_bytes(path: Path) -> int:
    """The database's size in pages as a reader sees it, the write-ahead log included:
    what the file holds once the log is checkpointed into it."""
    conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
    try:
        (pages,) = conn.execute("PRAGMA page_count").fetchone()
        (size,) = conn.execute("PRAGMA page_size").fetchone()
        return int(pages) * int(size)
    finally:
        conn.close()


async def all_events(http: aiohttp.ClientSession, url: str, query: str = ""
                     ) -> list[dict[str, Any]]:
    """Every listed event, following `next_after` (a filtered listing answers within
    its scan budget)."""
    found: list[dict[str, Any]] = []
    after = 0
    while True:
        page = await get_json(http, url, f"/v1/events?after={after}&limit=1000{query}")
        found += page["events"]
        if page["next_after"] is None:
            return found
        after = page["next_after"]


async def test_a_count_cap_bounds_the_store_and_keeps_what_is_needed(capped, http):
    url = capped.url
    db = capped.data_dir / "opsbus.db"
    resolved_seq = await publish(http, url, work_event("done-soon"))
    await op(http, url, await item_of(http, url, resolved_seq), "resolve", operator="ana",
             note="fixed")
    needed: dict[int, str] = {}
    sizes: dict[int, int] = {}
    for start in range(0, PUBLISHED, BATCH_SIZE):
        events = [make_event(type="test.noise", subject=f"n{i % 50}")
                  for i in range(start, start + BATCH_SIZE)]
        events[7] = work_event(f"host-{start}")  # an item that stays open
        events[9] = make_event(type="test.pulled", subject=str(start))  # pending delivery
        seqs = await publish_batch(http, url, events)
        needed[seqs[7]] = "item"
        needed[seqs[9]] = "delivery"
        # The publishers' minute passes: retention runs every 5 s of it.
        await capped.advance(http, 65)
        if ON_SQLITE:
            sizes[start + BATCH_SIZE] = database_bytes(db)

    stored = await all_events(http, url)
    assert len(stored) <= CAP + 1  # the last pass's own `opsbus.retention.applied`
    seqs = {e["seq"] for e in stored}
    assert set(needed) <= seqs, "an event an open item or a pending delivery needs is gone"
    if ON_SQLITE:
        # Bounded: the file stops growing once the cap is reached (20,000 events without
        # retention take about ten times the size at the cap).
        steady = sizes[3 * CAP]
        assert sizes[PUBLISHED] <= steady * 1.25, sizes

    # A removed event answers 410 naming where the retained log starts.
    async with http.get(f"{url}/v1/events/{resolved_seq}") as resp:
        assert resp.status == 410, await resp.text()
        problem = await resp.json()
    retained_from = problem["retained_from"]
    assert retained_from > PUBLISHED - CAP and "retention" in problem["detail"]

    # The pull consumer still receives every pending event.
    async with http.post(url + "/v1/subscriptions/puller/receive",
                         json={"max": 100}) as resp:
        assert resp.status == 200, await resp.text()
        received = await resp.json()
    assert sorted(m["seq"] for m in received) == sorted(
        s for s, why in needed.items() if why == "delivery")

    # Retention announced itself, with counts (older announcements were removed too).
    applied = await all_events(http, url, "&type=opsbus.retention.applied")
    last = applied[-1]["event"]
    assert last["source"] == "opsbus/retention" and last["data"]["removed"] > 0
    assert last["data"]["retained_from"] == retained_from
    async with http.get(url + "/metrics") as resp:
        metrics = {line.split(" ")[0]: float(line.split(" ")[1])
                   for line in (await resp.text()).splitlines()
                   if line.startswith("opsbus_retention_")}
    assert metrics["opsbus_retention_retained_from"] == retained_from
    assert metrics["opsbus_retention_removed_total"] >= PUBLISHED - CAP
    assert metrics["opsbus_retention_kept_needed_total"] >= 1


async def test_readers_resuming_below_the_retained_range_are_told(capped, http):
    url = capped.url
    for _ in range(3 * CAP // BATCH_SIZE):
        await publish_batch(http, url, [make_event(id=str(uuid.uuid4()))
                                        for _ in range(BATCH_SIZE)])
    await capped.advance(http, 65)
    page = await get_json(http, url, "/v1/events?after=1&limit=5")
    gap = page["gap"]
    assert gap["after"] == 1 and gap["reason"] == "retention"
    assert page["events"][0]["seq"] >= gap["retained_from"]
    async with http.get(url + "/v1/events?after=1&limit=5") as resp:
        assert resp.headers["Opsbus-Retention-Gap"] == (
            f"after=1; retained_from={gap['retained_from']}")
    # Resuming inside the retained range says nothing.
    inside = await get_json(http, url, f"/v1/events?after={gap['retained_from']}&limit=5")
    assert "gap" not in inside

    async with http.get(url + "/v1/stream", headers={"Last-Event-ID": "1"}) as resp:
        messages = []
        block: dict[str, str] = {}
        async for raw in resp.content:
            line = raw.decode().rstrip("\n")
            if line:
                field, _, value = line.partition(":")
                block[field] = value.strip()
                continue
            if "event" in block:
                messages.append(block)
            block = {}
            if len(messages) == 2:
                break
    assert messages[0]["event"] == "gap" and "id" not in messages[0]
    assert orjson.loads(messages[0]["data"]) == gap
    assert messages[1]["event"] == "cloudevent"
    assert int(messages[1]["id"]) >= gap["retained_from"]


async def test_age_and_per_type_rules(tmp_path: Path, http):
    proc = BrokerProcess(tmp_path / "data", test_clock=True, args=[
        "--durability", "normal", "--retention-max-age", "1h",
        "--retention-types", "keep.*=3h, heartbeat.*=2m",
        # Hours pass on the test clock: fewer periodic wake-ups to play through.
        "--maintenance-interval-s", "60", "--todo-sweep-s", "60",
        "--delivery-poll-s", "60"]).start()
    try:
        url = proc.url
        kinds = ["keep.deploy", "heartbeat.ping", "plain.event"]
        seqs = dict(zip(kinds, await publish_batch(http, url, [make_event(type=k)
                                                                for k in kinds]), strict=True))

        async def stored() -> set[str]:
            return {e["event"]["type"] for e in await all_events(http, url)
                    if not e["event"]["type"].startswith("opsbus.")}

        await proc.advance(http, 60)
        assert await stored() == set(kinds)
        await proc.advance(http, 120)  # the heartbeat's 2 minutes are over
        assert await stored() == {"keep.deploy", "plain.event"}
        await proc.advance(http, 3600)  # the default hour
        assert await stored() == {"keep.deploy"}
        async with http.get(f"{url}/v1/events/{seqs['plain.event']}") as resp:
            assert resp.status == 410
        await proc.advance(http, 2 * 3600)
        assert await stored() == set()
    finally:
        proc.stop()


def test_retention_settings_are_checked_and_named(tmp_path: Path):
    from broker.errors import InvalidConfig
    from broker.retention.policy import policy_of
    from broker.settings import resolve_settings

    config = tmp_path / "opsbus.toml"
    config.write_text('[server]\nretention_max_events = 100_000\n'
                      'retention_types = { "deploy.*" = "365d", "heartbeat.*" = "1d" }\n')
    from_file = policy_of(resolve_settings({"config": str(config)}, environ={}))
    assert from_file.max_events == 100_000
    assert [(r.pattern, r.age_s) for r in from_file.types] == [
        ("deploy.*", 365 * 86400), ("heartbeat.*", 86400)]

    policy = policy_of(resolve_settings({"retention_types": "a.*=1d, b=2h",
                                         "dedupe_window": "forever"}, environ={}))
    assert [(r.pattern, r.age_s) for r in policy.types] == [("a.*", 86400), ("b", 7200)]
    assert policy.age_of("a.x") == 86400 and policy.age_of("ab") is None
    assert policy.window.forever
    for name, value in (("retention_types", "deploy.*"), ("retention_max_age", "soon"),
                        ("dedupe_window", "0"), ("log_partition", "1s"),
                        ("retention_max_events", "-1")):
        with pytest.raises(InvalidConfig) as refused:
            resolve_settings({name: value}, environ={})
        assert name in refused.value.detail
