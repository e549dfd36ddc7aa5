"""Todo reads that stay flat with size: kept queue counts and keyset pages, checked
against the items themselves through every kind of change."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from tests.broker_process import BrokerProcess
from tests.todos_support import (
    get_json,
    item_of,
    op,
    publish,
    work_event,
    write_config,
)

CONFIG = """
[[queues]]
name = "counted"
resolve_filter = { sql = "data.status = 'resolved'" }
lease = "1s"

[[queues]]
name = "paged"

[[routes]]
name = "counted"
filter = { exact = { type = "test.counted" } }
targets = ["queue:counted"]

[[routes]]
name = "paged"
filter = { exact = { type = "test.paged" } }
targets = ["queue:paged"]
"""

VIEWS = ("open", "claimed", "snoozed", "resolved")


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """One broker on the manual clock: leases end when a test moves time."""
    folder = tmp_path_factory.mktemp("todo-reads")
    proc = BrokerProcess(folder / "data", config=write_config(folder, CONFIG),
                         args=["--durability", "normal"], test_clock=True).start()
    try:
        yield proc
    finally:
        proc.stop()


async def every_page(http: aiohttp.ClientSession, url: str, limit: int,
                     **params: str) -> list[dict[str, Any]]:
    """All items of a listing, followed page by page through `next`."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        page = await get_json(http, url, "/v1/todos", limit=str(limit),
                              **params, **({"after": cursor} if cursor else {}))
        items += page["items"]
        cursor = page["next"]
        if cursor is None:
            return items


async def assert_counts_match_items(http: aiohttp.ClientSession, broker: BrokerProcess,
                                    queue: str) -> dict[str, int]:
    """The queue's counts equal what listing its items finds, view by view, and the
    store's own consistency check agrees; returns the counts."""
    listed = {view: len(await every_page(http, broker.url, 1000, queue=queue, state=view))
              for view in VIEWS}
    shown = await get_json(http, broker.url, f"/v1/queues/{queue}")
    assert {view: shown[view] for view in VIEWS} == listed
    async with http.post(broker.url + "/v1/admin/store/check") as resp:
        report = await resp.json()
    assert report["ok"], report
    return listed


async def test_queue_counts_follow_open_attach_claim_release_resolve_snooze_and_expiry(
        broker, http):
    def counted(subject: str, status: str = "firing") -> dict[str, Any]:
        return work_event(subject, status, type="test.counted")

    ids = [await item_of(http, broker.url, await publish(http, broker.url, counted(f"c{i}")),
                         "queue:counted") for i in range(6)]
    assert await assert_counts_match_items(http, broker, "counted") == {
        "open": 6, "claimed": 0, "snoozed": 0, "resolved": 0}

    await publish(http, broker.url, counted("c0"))  # attaches: no count moves
    await publish(http, broker.url, counted("c1"))
    for item, who in ((ids[0], "ann"), (ids[1], "bob"), (ids[2], "cy")):
        assert (await op(http, broker.url, item, "claim", operator=who))[0] == 200
    assert (await op(http, broker.url, ids[1], "release", operator="bob"))[0] == 200
    assert (await op(http, broker.url, ids[3], "resolve", operator="ann", note="done"))[0] == 200
    await publish(http, broker.url, counted("c4", "resolved"))  # auto-resolves c4
    status, _ = await op(http, broker.url, ids[5], "snooze", operator="ann", **{"for": "5s"})
    assert status == 200
    assert await assert_counts_match_items(http, broker, "counted") == {
        "open": 1, "claimed": 2, "snoozed": 1, "resolved": 2}

    await broker.advance(http, 1.5)  # both claims' 1 s leases end: the sweeper returns them
    assert await assert_counts_match_items(http, broker, "counted") == {
        "open": 3, "claimed": 0, "snoozed": 1, "resolved": 2}

    await broker.advance(http, 5)  # the snooze ends: the item counts as open again
    counts = await assert_counts_match_items(http, broker, "counted")
    assert counts == {"open": 4, "claimed": 0, "snoozed": 0, "resolved": 2}
    queue = await get_json(http, broker.url, "/v1/queues/counted")
    assert queue["oldest_open_age_s"] >= 6.5  # c0, opened before the clock moved 6.5 s

    again = await item_of(http, broker.url, await publish(http, broker.url, counted("c3")),
                          "queue:counted")  # c3's item is resolved: a new one opens
    assert again not in ids
    assert (await assert_counts_match_items(http, broker, "counted"))["open"] == 5


async def test_keyset_pages_hold_every_item_once_in_activity_order(broker, http):
    # On the manual clock, items opened without moving it share one updated_at: the id
    # decides between them, so pages must not lose or repeat an item at a tie.
    ids = [await item_of(http, broker.url, await publish(
        http, broker.url, work_event(f"p{i}", type="test.paged")), "queue:paged")
        for i in range(23)]
    await broker.advance(http, 1)
    for item in ids[::4]:
        assert (await op(http, broker.url, item, "claim", operator="pat"))[0] == 200

    everything = await every_page(http, broker.url, 1000, queue="paged")
    keys = [(i["updated_at"], i["id"]) for i in everything]
    assert keys == sorted(keys, reverse=True) and sorted(i["id"] for i in everything) == ids
    for view, expected in (("open", set(ids) - set(ids[::4])), ("claimed", set(ids[::4]))):
        for size in (1, 4, 7):
            paged = await every_page(http, broker.url, size, queue="paged", state=view)
            assert [i["id"] for i in paged] == [i["id"] for i in everything
                                                if i["id"] in expected], (view, size)

    # A change between two pages moves that item ahead of the cursor; the rest of the
    # walk neither repeats nor skips the items that did not change.
    first = await get_json(http, broker.url, "/v1/todos", queue="paged", state="open",
                           limit="5")
    moved = first["items"][-1]["id"]
    await broker.advance(http, 1)
    assert (await op(http, broker.url, moved, "claim", operator="pat"))[0] == 200
    rest = await every_page(http, broker.url, 5, queue="paged", state="open")
    seen = [i["id"] for i in first["items"][:-1]]
    after = await get_json(http, broker.url, "/v1/todos", queue="paged", state="open",
                           limit="100", after=first["next"])
    assert [i["id"] for i in after["items"]] == [
        i["id"] for i in rest if i["id"] not in seen]
