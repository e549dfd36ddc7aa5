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


async def follow_pages(http, url: str, params: dict[str, str]) -> tuple[list[int], list[int]]:
    """Every seq found by following `next_after`, and the cursors handed out."""
    found: list[int] = []
    cursors: list[int] = []
    after = params.pop("after", "0")
    while True:
        async with http.get(url + "/v1/events", params={**params, "after": after}) as resp:
            assert resp.status == 200, await resp.text()
            page = await resp.json()
        found += [e["seq"] for e in page["events"]]
        if page["next_after"] is None:
            return found, cursors
        cursors.append(page["next_after"])
        after = str(page["next_after"])


@pytest.mark.parametrize("attribute", ["type", "subject", "id", "source"])
async def test_an_attribute_no_index_serves_is_scanned_within_the_budget(broker, http,
                                                                        attribute):
    tag = f"attr-{attribute}"
    events = [make_event(type=f"{tag}.hay", subject=f"{tag}-hay", source=f"{tag}/hay")
              for _ in range(240)]
    for n in (7, 130, 211):
        # Needles share the attribute asked for; (source, id) stays unique.
        same_id = {"id": f"{tag}-needle", "source": f"{tag}/needle-{n}"}
        events[n] = make_event(type=f"{tag}.needle", subject=f"{tag}-needle",
                               **(same_id if attribute == "id" else {"source": f"{tag}/needle"}))
    async with http.post(broker.url + "/v1/events", data=orjson.dumps(events),
                         headers=BATCH) as resp:
        seqs = [r["seq"] for r in await resp.json()]
    needles = [seqs[n] for n in (7, 130, 211)]
    value = {"type": f"{tag}.needle", "subject": f"{tag}-needle", "source": f"{tag}/needle",
             "id": f"{tag}-needle"}[attribute]

    found, cursors = await follow_pages(http, broker.url, {
        attribute: value, "after": str(seqs[0] - 1), "limit": "10"})
    assert found == needles
    steps = [b - a for a, b in zip([seqs[0] - 1, *cursors], cursors, strict=False)]
    assert steps and all(0 < step <= BUDGET for step in steps)

    # Newest first reaches the same events, each answer again within the budget.
    found, cursors = await follow_pages(http, broker.url, {
        attribute: value, "order": "desc", "after": str(seqs[-1] + 1), "limit": "10"})
    assert found[:3] == needles[::-1]
    steps = [a - b for a, b in zip([seqs[-1] + 1, *cursors], cursors, strict=False)]
    assert all(0 < step <= BUDGET for step in steps)


async def test_a_scan_starts_at_the_time_asked_for(broker, http):
    events = [make_event(type="since.hay") for _ in range(200)]
    async with http.post(broker.url + "/v1/events", data=orjson.dumps(events),
                         headers=BATCH) as resp:
        assert resp.status == 200
    async with http.post(broker.url + "/v1/events", data=orjson.dumps(
            [make_event(type="since.needle")]), headers=BATCH) as resp:
        needle = (await resp.json())[0]["seq"]
    async with http.get(broker.url + f"/v1/events/{needle}") as resp:
        recvtime = (await resp.json())["recvtime"]
    # From the start of the log, the time bound moves the scan to the events received
    # since: the needle is found in the first answer although far more than the budget
    # of events lie before it.
    assert needle > 4 * BUDGET
    async with http.get(broker.url + "/v1/events", params={
            "type": "since.needle", "since": recvtime}) as resp:
        page = await resp.json()
    assert [e["seq"] for e in page["events"]] == [needle]


async def test_the_time_budget_ends_an_answer_within_a_window(tmp_path, http):
    """With a time budget already spent, each answer examines one page of events, however
    many the event budget allows, and paging still reaches every match; a filter that
    requires a type is tested in SQL first, so its answers cover far more of the log."""
    proc = BrokerProcess(tmp_path / "data", args=[
        "--durability", "normal", "--scan-budget-events", "100000",
        "--scan-budget-ms", "0.000001"]).start()
    try:
        events = [make_event(type="slow.needle" if i % 97 == 3 else "slow.hay")
                  for i in range(1000)]
        async with http.post(proc.url + "/v1/events", data=orjson.dumps(events),
                             headers=BATCH) as resp:
            seqs = [r["seq"] for r in await resp.json()]
        needles = [s for s, e in zip(seqs, events, strict=True) if e["type"] == "slow.needle"]
        # Nothing required of type: every event is decoded and tested in Python.
        found, cursors = await follow_pages(http, proc.url, {
            "filter": "NOT (type = 'slow.hay')", "limit": "100"})
        assert found == needles
        steps = [b - a for a, b in zip([0, *cursors], cursors, strict=False)]
        assert len(cursors) >= 4 and max(steps) <= 200, steps
        for filter_ in ("type = 'slow.needle'", "type LIKE 'slow.n%' OR type = 'x'",
                        "type LIKE '%.needle'", "type LIKE 'slow._eedle'",
                        "type LIKE 'slow.n%' AND NOT (type = 'x')"):
            found, cursors = await follow_pages(http, proc.url, {
                "filter": filter_, "limit": "100"})
            assert found == needles, filter_
            assert len(cursors) <= 2, (filter_, cursors)
        # SQLite's LIKE folds case; the filter itself does not.
        found, _ = await follow_pages(http, proc.url, {"filter": "type LIKE 'SLOW.needle'"})
        assert found == []
        found, _ = await follow_pages(http, proc.url, {
            "filter": "type = 'slow.needle'", "limit": "3", "order": "desc",
            "after": str(seqs[-1] + 1)})
        assert found == needles[::-1]
    finally:
        proc.stop()
