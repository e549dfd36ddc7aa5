"""A commit's `opsbus.todo.updated` announcements, published together: each keeps its own
lineage (cause, correlation, hop count, its root's descendant budget), its history entry
names its seq, and routes still see it (real broker, test clock)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from tests.broker_process import BrokerProcess
from tests.conftest import BATCH
from tests.todos_support import get_json, item_of, todo, work_event, write_config

LIMIT = 3
"""Descendants per root: a root routed to two other queues has none left for the item's
announcement, one routed to one other queue none for what routing that announcement
makes."""

CONFIG = """
[[queues]]
name = "work"

[[queues]]
name = "each"
group_key = "{id}"

[[queues]]
name = "each2"
group_key = "{id}"

[[queues]]
name = "announced"

[[routes]]
name = "work"
filter = { exact = { type = "test.work" } }
targets = ["queue:work"]

[[routes]]
name = "once"
filter = { exact = { tag = "once" } }
targets = ["queue:each"]

[[routes]]
name = "twice"
filter = { exact = { tag = "twice" } }
targets = ["queue:each", "queue:each2"]

[[routes]]
name = "announced"
filter = { exact = { type = "opsbus.todo.updated" } }
targets = ["queue:announced"]
"""


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    folder = tmp_path_factory.mktemp("announcements")
    proc = BrokerProcess(folder / "data", config=write_config(folder, CONFIG),
                         args=["--durability", "normal", "--max-descendants", str(LIMIT)],
                         test_clock=True).start()
    try:
        yield proc
    finally:
        proc.stop()


async def publish_batch(http: Any, url: str, events: list[dict[str, Any]]) -> list[int]:
    """One request, so one unit of work: its events share one transaction."""
    async with http.post(url + "/v1/events", data=orjson.dumps(events), headers=BATCH) as resp:
        assert resp.status == 200, await resp.text()
        return [int(r["seq"]) for r in await resp.json()]


async def family(http: Any, url: str, root_id: str) -> list[dict[str, Any]]:
    """The events derived from the root `root_id` (they share its correlation), by seq."""
    page = await get_json(http, url, "/v1/events", correlationid=root_id, limit="100")
    return list(page["events"])


async def test_announcements_of_one_commit_keep_their_own_lineage_and_routes(broker, http):
    """Four items attached to in one commit. Each announcement is caused by its item's
    latest event, in that root's correlation, one hop on, its seq in the item's history
    entry, and routed on to the `announced` queue. B's latest event had used its root's
    budget (two other queues): its announcement is not stored, the root's one loop notice
    comes in its place, between A's and C's. C's latest event had used one more (one
    other queue): its announcement is stored and counted, so what routing it opens in
    `announced` has no budget left and the root's notice comes instead."""
    groups = [f"ann-{uuid.uuid4().hex[:6]}-{name}" for name in "ABCD"]
    opened = await publish_batch(http, broker.url, [work_event(g) for g in groups])
    items = [await item_of(http, broker.url, seq) for seq in opened]
    tags = {1: "twice", 2: "once"}
    order = [0, 1, 2, 3, 1, 0, 3, 2]
    events = []
    for at, g in enumerate(order):
        last = at == max(i for i, x in enumerate(order) if x == g)
        events.append(work_event(groups[g], **({"tag": tags[g]} if last and g in tags
                                               else {})))
    seqs = await publish_batch(http, broker.url, events)
    latest = {g: max(s for s, x in zip(seqs, order, strict=True) if x == g) for g in range(4)}
    latest_id = {g: events[seqs.index(latest[g])]["id"] for g in range(4)}

    announced: dict[int, dict[str, Any]] = {}
    for g in range(4):
        mine = [s for s, x in zip(seqs, order, strict=True) if x == g]
        item = await todo(http, broker.url, items[g])
        assert [h["action"] for h in item["history"]] == ["opened", "updated"]
        entry = item["history"][1]
        assert entry["detail"] == {"events": mine}
        assert entry["event_seq"] == latest[g]
        kin = await family(http, broker.url, latest_id[g])
        updated = [e for e in kin if e["event"]["type"] == "opsbus.todo.updated"]
        if g == 1:  # over its root's budget: not stored, no seq in the history
            assert updated == [] and entry["audit_seq"] is None
            continue
        [stored] = updated
        assert entry["audit_seq"] == stored["seq"]
        event = stored["event"]
        assert event["subject"] == str(items[g]) and event["todoid"] == items[g]
        assert event["causationid"] == latest_id[g]
        assert event["correlationid"] == latest_id[g]
        assert event["hopcount"] == 1
        assert event["data"]["detail"] == {"events": mine}
        assert event["data"]["item"]["count"] == 1 + len(mine)
        assert stored["routes"] == ["announced"]
        hits = await get_json(http, broker.url, f"/v1/events/{stored['seq']}")
        [hit] = [t for t in hits["targets"] if t["target"] == "queue:announced"]
        assert hit["detail"]["opened"] is True
        announced[g] = stored

    # In the order the items were first attached to, B's notice where B's would be.
    notices = {g: [e for e in await family(http, broker.url, latest_id[g])
                   if e["event"]["type"] == "opsbus.loop.detected"] for g in range(4)}
    assert not notices[0] and not notices[3]
    [b_notice], [c_notice] = notices[1], notices[2]
    assert announced[0]["seq"] < b_notice["seq"] < announced[2]["seq"] < announced[3]["seq"]
    for notice, g in ((b_notice, 1), (c_notice, 2)):
        assert notice["event"]["data"]["reason"] == "descendant_limit"
        assert notice["event"]["data"]["root"]["id"] == latest_id[g]

    # A's and D's announcements opened their items in `announced`, announced in turn
    # (the root's third descendant); C's root had none left for that.
    for g, kept in ((0, True), (3, True), (2, False)):
        kin = await family(http, broker.url, latest_id[g])
        opened_there = [e for e in kin if e["event"]["type"] == "opsbus.todo.opened"
                        and e["event"]["data"]["item"]["queue"] == "announced"]
        if kept:
            [there] = opened_there
            assert there["event"]["causationid"] == announced[g]["event"]["id"]
            assert there["event"]["hopcount"] == 2
        else:
            assert opened_there == []
