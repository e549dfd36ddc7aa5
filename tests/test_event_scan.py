"""Filtered event listings examine a bounded number of events per request and hand out
the cursor to continue from, so a rare match is found by following `next_after`."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest

from tests.broker_process import BrokerProcess
from tests.conftest import BATCH, make_event

BUDGET = 50


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    folder = tmp_path_factory.mktemp("scan")
    proc = BrokerProcess(folder / "data", args=[
        "--durability", "normal", "--scan-budget-events", str(BUDGET)]).start()
    try:
        yield proc
    finally:
        proc.stop()


async def test_a_rare_match_is_reached_through_next_after_past_the_budget(broker, http):
    events = [make_event(type="scan.needle" if i % 37 == 5 else "scan.hay", subject=f"s{i}")
              for i in range(300)]
    async with http.post(broker.url + "/v1/events", data=orjson.dumps(events),
                         headers=BATCH) as resp:
        assert resp.status == 200, await resp.text()
        seqs = [r["seq"] for r in await resp.json()]
    needles = [seq for seq, e in zip(seqs, events, strict=True) if e["type"] == "scan.needle"]

    found: list[int] = []
    cursors: list[int] = []
    after = 0
    while True:
        async with http.get(broker.url + "/v1/events", params={
                "filter": "type = 'scan.needle'", "after": str(after), "limit": "3"}) as resp:
            assert resp.status == 200, await resp.text()
            page = await resp.json()
        found += [e["seq"] for e in page["events"]]
        if page["next_after"] is None:
            break
        # Each answer examined at most the budget: the cursor moves at most that far.
        assert after < page["next_after"] <= after + BUDGET
        cursors.append(page["next_after"])
        after = page["next_after"]
    assert found == needles
    assert len(cursors) >= len(seqs) // BUDGET  # the budget, not the limit, ended most pages


async def test_an_unfiltered_page_is_not_cut_by_the_budget(broker, http):
    events = [make_event(type="scan.plain") for _ in range(250)]
    async with http.post(broker.url + "/v1/events", data=orjson.dumps(events),
                         headers=BATCH) as resp:
        first = (await resp.json())[0]["seq"]
    async with http.get(broker.url + "/v1/events", params={
            "limit": "200", "after": str(first - 1)}) as resp:
        page = await resp.json()
    assert len(page["events"]) == 200 and page["next_after"] == page["events"][-1]["seq"]
