"""Todo items over real HTTP: grouping, auto-resolve, operations, conflicts, re-emit, audit."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import orjson
import pytest

from tests.broker_process import BrokerProcess
from tests.conftest import BATCH
from tests.sse import collect
from tests.todos_support import (
    get_json,
    item_of,
    op,
    publish,
    targets,
    todo,
    work_event,
    write_config,
)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """One broker for the module: every test works on its own group keys. It runs on
    the manual clock: leases and snoozes end when a test moves time, not before."""
    folder = tmp_path_factory.mktemp("todos")
    proc = BrokerProcess(folder / "data", config=write_config(folder),
                         args=["--durability", "normal"], test_clock=True).start()
    try:
        yield proc
    finally:
        proc.stop()


async def test_events_with_one_key_group_into_one_item_until_it_is_resolved(broker, http):
    first = await publish(http, broker.url, work_event("db-1"))
    item_id = await item_of(http, broker.url, first)
    second = await publish(http, broker.url, work_event("db-1"))
    assert await item_of(http, broker.url, second) == item_id
    other = await publish(http, broker.url, work_event("db-2"))
    assert await item_of(http, broker.url, other) != item_id

    item = await todo(http, broker.url, item_id)
    assert item["count"] == 2 and item["state"] == "open"
    assert item["key"] == "tests/suite/db-1"
    assert item["title"] == "DiskFull on db-1" and item["priority"] == "critical"
    assert [e["seq"] for e in item["events"]] == [first, second]
    assert (item["first_event_seq"], item["event_seq"]) == (first, second)
    assert item["first_seen"] <= item["last_seen"]
    assert [h["action"] for h in item["history"]] == ["opened", "updated"]

    status, _ = await op(http, broker.url, item_id, "resolve", operator="alice", note="fixed")
    assert status == 200
    again = await publish(http, broker.url, work_event("db-1"))
    new_id = await item_of(http, broker.url, again)
    assert new_id != item_id
    assert (await todo(http, broker.url, new_id))["count"] == 1


async def test_dedupkey_wins_over_the_group_key_template(broker, http):
    a = await publish(http, broker.url, work_event("x-1", dedupkey="fp-77"))
    b = await publish(http, broker.url, work_event("x-2", dedupkey="fp-77"))
    item_id = await item_of(http, broker.url, a)
    assert await item_of(http, broker.url, b) == item_id
    assert (await todo(http, broker.url, item_id))["key"] == "fp-77"


async def test_resolving_event_resolves_the_item_and_never_opens_one(broker, http):
    seq = await publish(http, broker.url, work_event("web-1"))
    item_id = await item_of(http, broker.url, seq)
    await publish(http, broker.url, work_event("web-1"))
    done = await publish(http, broker.url, work_event("web-1", status="resolved"))
    assert (await targets(http, broker.url, done))["queue:work"]["resolved"] is True

    item = await todo(http, broker.url, item_id)
    assert item["state"] == "resolved"
    assert item["resolution"]["by"] == "system" and item["resolution"]["auto"] is True
    assert item["history"][-1]["action"] == "resolved"
    assert item["history"][-1]["event_seq"] == done
    assert done in [e["seq"] for e in item["events"]]
    assert item["count"] == 2  # the resolving event is listed, not counted

    # With nothing open, a resolving event is recorded but opens nothing.
    lone = await publish(http, broker.url, work_event("web-9", status="resolved"))
    detail = (await targets(http, broker.url, lone))["queue:work"]
    assert detail == {"key": "tests/suite/web-9", "resolved": None}


async def test_twenty_concurrent_claims_have_exactly_one_winner(broker, http):
    item_id = await item_of(http, broker.url, await publish(http, broker.url, work_event()))
    answers = await asyncio.gather(*(
        op(http, broker.url, item_id, "claim", operator=f"op{i}") for i in range(20)))
    winners = [body for status, body in answers if status == 200]
    losers = [body for status, body in answers if status == 409]
    assert len(winners) == 1 and len(losers) == 19
    owner = winners[0]["item"]["owner"]
    assert all(b["owner"] == owner and owner in b["detail"] for b in losers)
    item = await todo(http, broker.url, item_id)
    assert item["state"] == "claimed" and item["owner"] == owner
    assert item["lease_expires"] > item["updated_at"]
    assert [h["action"] for h in item["history"]].count("claimed") == 1

    # The owner claiming again, a minute later, renews the lease.
    await broker.advance(http, 60)
    status, body = await op(http, broker.url, item_id, "claim", operator=owner)
    assert status == 200 and body["item"]["lease_expires"] > item["lease_expires"]


async def test_illegal_transitions_answer_409_with_the_reason(broker, http):
    item_id = await item_of(http, broker.url, await publish(http, broker.url, work_event()))
    url = broker.url

    status, body = await op(http, url, item_id, "release", operator="alice")
    assert status == 409 and "not claimed" in body["detail"]
    assert body["type"].endswith("/conflict")

    assert (await op(http, url, item_id, "claim", operator="alice"))[0] == 200
    status, body = await op(http, url, item_id, "claim", operator="bob")
    assert status == 409 and body["owner"] == "alice" and "alice" in body["detail"]
    status, body = await op(http, url, item_id, "release", operator="bob")
    assert status == 409 and body["owner"] == "alice" and "force" in body["detail"]
    status, body = await op(http, url, item_id, "release", operator="bob", force=True)
    assert status == 200 and body["item"]["state"] == "open" and body["item"]["owner"] is None
    assert (await todo(http, url, item_id))["history"][-1]["detail"] == {
        "forced": True, "previous_owner": "alice"}

    assert (await op(http, url, item_id, "resolve", operator="bob", note="done"))[0] == 200
    for name, body_extra in (("resolve", {}), ("claim", {}), ("release", {"force": True}),
                             ("snooze", {"for": "1h"})):
        status, body = await op(http, url, item_id, name, operator="carol", **body_extra)
        assert status == 409, (name, body)
        assert "resolved" in body["detail"], body
    # Commenting on (and re-emitting) a resolved item stays possible.
    assert (await op(http, url, item_id, "comment", operator="carol", note="post-mortem"))[0] \
        == 200


async def test_bad_requests_answer_400_or_404(broker, http):
    item_id = await item_of(http, broker.url, await publish(http, broker.url, work_event()))
    for body in ({"operator": ""}, {"operator": 7}):
        status, problem = await op(http, broker.url, item_id, "claim", **body)
        assert status == 400 and "operator" in problem["detail"]
    status, problem = await op(http, broker.url, item_id, "claim", operator="a", colour="red")
    assert status == 400 and "colour" in problem["detail"]
    assert (await op(http, broker.url, item_id, "comment", operator="a"))[0] == 400
    assert (await op(http, broker.url, item_id, "snooze", operator="a"))[0] == 400
    assert (await op(http, broker.url, item_id, "snooze", operator="a", **{"for": "x"}))[0] \
        == 400
    assert (await op(http, broker.url, item_id, "explode", operator="a"))[0] == 404
    assert (await op(http, broker.url, 999999, "claim", operator="a"))[0] == 404
    async with http.get(broker.url + "/v1/todos/999999") as resp:
        assert resp.status == 404
    async with http.get(broker.url + "/v1/todos", params={"state": "weird"}) as resp:
        assert resp.status == 400


async def test_reemit_routes_a_new_copy_with_edits(broker, http):
    original = work_event("api-1", correlationid="inc-7", team="db")
    seq = await publish(http, broker.url, original)
    item_id = await item_of(http, broker.url, seq)
    await op(http, broker.url, item_id, "resolve", operator="alice")

    status, body = await op(http, broker.url, item_id, "reemit", operator="alice",
                            note="retry the automation")
    assert status == 200, body
    copy_seq = body["event"]["seq"]
    copy = (await get_json(http, broker.url, f"/v1/events/{copy_seq}"))
    event = copy["event"]
    assert event["id"] != original["id"] and event["reemittedfrom"] == original["id"]
    assert event["causationid"] == original["id"] and event["correlationid"] == "inc-7"
    assert event["data"] == original["data"] and event["subject"] == "api-1"
    # Routed again: the old item is resolved, so the copy opens a new one.
    new_id = await item_of(http, broker.url, copy_seq)
    assert new_id != item_id
    history = (await todo(http, broker.url, item_id))["history"]
    assert history[-1]["action"] == "reemitted" and history[-1]["event_seq"] == copy_seq

    # Re-emitting again is not deduplicated away; while the new item is open the next
    # copy groups into it.
    status, again = await op(http, broker.url, item_id, "reemit", operator="alice")
    assert status == 200 and again["event"]["seq"] != copy_seq
    assert await item_of(http, broker.url, again["event"]["seq"]) == new_id

    # Edits: attributes (null removes one) and data.
    status, edited = await op(
        http, broker.url, item_id, "reemit", operator="alice", seq=seq,
        attributes={"subject": "api-2", "team": None},
        data={"status": "firing", "labels": {"alertname": "Edited", "severity": "warning"}})
    assert status == 200, edited
    event = (await get_json(http, broker.url, f"/v1/events/{edited['event']['seq']}"))["event"]
    assert event["subject"] == "api-2" and event["data"]["labels"]["alertname"] == "Edited"
    assert "team" not in event and event["correlationid"] == "inc-7"
    edited_item = await todo(http, broker.url,
                             await item_of(http, broker.url, edited["event"]["seq"]))
    assert edited_item["title"] == "Edited on api-2" and edited_item["priority"] == "warning"


async def test_reemit_validates_the_copy_and_the_chosen_event(broker, http):
    seq = await publish(http, broker.url, work_event())
    item_id = await item_of(http, broker.url, seq)
    url = broker.url
    status, body = await op(http, url, item_id, "reemit", operator="a",
                            attributes={"type": ""})
    assert status == 400 and body["attribute"] == "type"
    assert (await op(http, url, item_id, "reemit", operator="a", attributes={"id": "x"}))[0] \
        == 400
    other = await publish(http, url, work_event())  # an event of another item
    assert (await op(http, url, item_id, "reemit", operator="a", seq=other))[0] == 400


async def test_audit_events_arrive_on_the_stream_in_order(broker, http):
    seq = await publish(http, broker.url, work_event("audit-1"))
    item_id = await item_of(http, broker.url, seq)
    expected = ["opened", "updated", "claimed", "commented", "released", "snoozed",
                "claimed", "updated", "reemitted", "resolved"]
    # `opened` is committed right after the event that caused it, so `after=seq` has it.
    reader = asyncio.create_task(collect(
        http, broker.url, len(expected),
        params={"after": str(seq), "filter": f"todoid = {item_id}"}))
    attached = await publish(http, broker.url, work_event("audit-1"))
    steps = [("claim", {}), ("comment", {"note": "looking"}), ("release", {}),
             ("snooze", {"for": "1h"}), ("claim", {}), ("reemit", {}),
             ("resolve", {"note": "done"})]
    for name, body in steps:
        status, answer = await op(http, broker.url, item_id, name, operator="alice", **body)
        assert status == 200, answer
    got = await asyncio.wait_for(reader, 10)
    # The re-emitted copy groups into this item, so an `updated` precedes `reemitted`.
    assert [m["data"]["type"] for m in got] == [f"opsbus.todo.{t}" for t in expected]
    seqs = [int(m["id"]) for m in got]
    assert seqs == sorted(seqs)
    opened, updated, claimed = (m["data"] for m in got[:3])
    assert claimed["source"] == "opsbus/todos" and claimed["subject"] == str(item_id)
    assert claimed["todoid"] == item_id
    assert claimed["data"]["operator"] == "alice"
    assert claimed["data"]["item"]["state"] == "claimed"
    assert claimed["data"]["item"]["owner"] == "alice"
    # Changes caused by an event carry its lineage.
    attached_event = await get_json(http, broker.url, f"/v1/events/{attached}")
    assert updated["causationid"] == attached_event["event"]["id"]
    assert opened["data"]["item"]["event_seq"] == seq
    assert got[-1]["data"]["data"]["note"] == "done"


async def publish_batch(http, url: str, events: list[dict]) -> list[int]:
    """One request, so one unit of work: its events share one transaction."""
    async with http.post(url + "/v1/events", data=orjson.dumps(events), headers=BATCH) as resp:
        assert resp.status == 200, await resp.text()
        return [int(r["seq"]) for r in await resp.json()]


async def test_repeats_in_one_commit_are_announced_once_before_the_next_change(broker, http):
    """Events attached in one transaction make one `updated` (history entry and audit
    event) listing them; a resolve in the same transaction comes after it."""
    first, second, third, done, again = await publish_batch(http, broker.url, [
        work_event("batch-1"), work_event("batch-1"), work_event("batch-1"),
        work_event("batch-1", status="resolved"), work_event("batch-1")])
    item_id = await item_of(http, broker.url, first)
    item = await todo(http, broker.url, item_id)
    assert item["count"] == 3 and item["state"] == "resolved"
    assert [e["seq"] for e in item["events"]] == [first, second, third, done]
    assert [h["action"] for h in item["history"]] == ["opened", "updated", "resolved"]
    updated = item["history"][1]
    assert updated["detail"] == {"events": [second, third]}
    assert updated["event_seq"] == third
    for seq in (second, third):
        assert (await targets(http, broker.url, seq))["queue:work"]["attached"] is True

    audits = await collect(http, broker.url, 3,
                           params={"after": str(first - 1), "filter": f"todoid = {item_id}"})
    assert [m["data"]["type"] for m in audits] == [
        "opsbus.todo.opened", "opsbus.todo.updated", "opsbus.todo.resolved"]
    announced = audits[1]["data"]
    assert announced["data"]["item"]["count"] == 3
    assert announced["data"]["item"]["event_seq"] == third
    assert announced["data"]["detail"] == {"events": [second, third]}
    caused_by = await get_json(http, broker.url, f"/v1/events/{third}")
    assert announced["causationid"] == caused_by["event"]["id"]

    reopened = await todo(http, broker.url, await item_of(http, broker.url, again))
    assert reopened["id"] != item_id and reopened["count"] == 1
    assert [h["action"] for h in reopened["history"]] == ["opened"]


async def test_repeats_of_many_items_in_one_commit_are_announced_in_order(broker, http):
    """Several items attached to in one transaction: one `updated` each, in the order the
    items were first attached to, each after the transaction's events, caused by its
    item's latest event and listing exactly that item's attached events."""
    groups = [f"many-{uuid.uuid4().hex[:6]}-{n}" for n in range(4)]
    opened = await publish_batch(http, broker.url, [work_event(g) for g in groups])
    # Interleaved, and not in the order the items were opened.
    order = [2, 0, 2, 3, 1, 0, 3, 2]
    seqs = await publish_batch(http, broker.url, [work_event(groups[g]) for g in order])
    items = [await item_of(http, broker.url, seq) for seq in opened]
    first_attached = list(dict.fromkeys(order))
    audits = await collect(http, broker.url, 4, params={
        "after": str(seqs[-1]), "filter": "type = 'opsbus.todo.updated' AND todoid IN"
        f" ({', '.join(map(str, items))})"})
    assert [int(m["data"]["subject"]) for m in audits] == [items[g] for g in first_attached]
    assert [int(m["id"]) for m in audits] == sorted(int(m["id"]) for m in audits)
    for message in audits:
        announced = message["data"]
        group = items.index(int(announced["subject"]))
        mine = [seq for seq, g in zip(seqs, order, strict=True) if g == group]
        assert announced["data"]["detail"] == {"events": mine}
        assert announced["data"]["item"]["count"] == 1 + len(mine)
        caused_by = await get_json(http, broker.url, f"/v1/events/{mine[-1]}")
        assert announced["causationid"] == caused_by["event"]["id"]
        item = await todo(http, broker.url, items[group])
        assert [h["action"] for h in item["history"]] == ["opened", "updated"]
        assert item["history"][1]["detail"] == {"events": mine}
        assert item["history"][1]["audit_seq"] == int(message["id"])


async def test_list_filters_and_pages_newest_activity_first(broker, http):
    ids = []
    for _ in range(5):  # a second apart on the broker's clock: activity has an order
        seq = await publish(http, broker.url, work_event(type="test.other"))
        ids.append(await item_of(http, broker.url, seq, "queue:other"))
        await broker.advance(http, 1)
    for item, change, extra in ((ids[1], "claim", {}), (ids[3], "resolve", {}),
                                (ids[0], "snooze", {"for": "1h"})):
        await op(http, broker.url, item, change, operator="pat", **extra)
        await broker.advance(http, 1)

    async def page(**params: str) -> dict:
        return await get_json(http, broker.url, "/v1/todos", queue="other", **params)

    everything = await page(limit="100")
    assert [i["id"] for i in everything["items"]] == [ids[0], ids[3], ids[1], ids[4], ids[2]]
    assert [i["id"] for i in (await page(state="open"))["items"]] == [ids[4], ids[2]]
    assert [i["id"] for i in (await page(state="claimed"))["items"]] == [ids[1]]
    assert [i["id"] for i in (await page(state="active"))["items"]] == [ids[1], ids[4], ids[2]]
    assert [i["id"] for i in (await page(state="resolved"))["items"]] == [ids[3]]
    assert [i["id"] for i in (await page(state="snoozed"))["items"]] == [ids[0]]
    assert [i["id"] for i in (await page(owner="pat"))["items"]] == [ids[1]]

    first = await page(limit="2")
    assert len(first["items"]) == 2 and first["next"]
    second = await page(limit="2", after=first["next"])
    third = await page(limit="2", after=second["next"])
    assert third["next"] is None
    seen = [i["id"] for p in (first, second, third) for i in p["items"]]
    assert seen == [i["id"] for i in everything["items"]]

    queue = await get_json(http, broker.url, "/v1/queues/other")
    assert (queue["open"], queue["claimed"], queue["snoozed"], queue["resolved"]) == (2, 1, 1, 1)
    assert queue["oldest_open_age_s"] >= 0


async def test_queues_list_counts_settings_and_actions(broker, http):
    seq = await publish(http, broker.url, work_event())
    await item_of(http, broker.url, seq)
    queues = {q["name"]: q for q in (await get_json(http, broker.url, "/v1/queues"))["queues"]}
    assert {"work", "short", "other"} <= set(queues)
    work = queues["work"]
    assert work["open"] >= 1 and work["description"] == "Alert-like work items"
    assert work["lease"] == "30m" and work["configured"] is True
    assert work["actions"] == [
        {"name": "restart-pod", "runbook_url": None, "description": ""},
        {"name": "page-dba", "runbook_url": "https://runbooks.example/dba", "description": ""}]
    assert queues["short"]["open"] == 0 and queues["short"]["oldest_open_age_s"] is None
    async with http.get(broker.url + "/v1/queues/nope") as resp:
        assert resp.status == 404


async def test_queue_crud_through_the_config_api(broker, http):
    spec = {"name": "api-made", "title": "{type}", "lease": "5m",
            "resolve_filter": "data.status = 'ok'"}
    async with http.post(broker.url + "/v1/queues", json=spec) as resp:
        assert resp.status == 201, await resp.text()
        assert (await resp.json())["resolve_filter"] == {"sql": "data.status = 'ok'"}
    assert (await get_json(http, broker.url, "/v1/queues/api-made"))["lease"] == "5m"
    async with http.put(broker.url + "/v1/queues/api-made", json={**spec, "lease": "1h"}) as r:
        assert r.status == 200
    assert (await get_json(http, broker.url, "/v1/queues/api-made"))["lease"] == "1h"
    for bad in ({"name": "b", "title": "{data..x"}, {"name": "b", "lease": "soon"},
                {"name": "b", "resolve_filter": {"sql": "type ="}},
                {"name": "b", "actions": [{"name": "x", "runbook_url": "ftp://x"}]},
                {"name": "b", "colour": "red"}, {"name": "b", "title": "{__class__}"}):
        async with http.post(broker.url + "/v1/queues", json=bad) as resp:
            assert resp.status == 400, bad
    async with http.delete(broker.url + "/v1/queues/api-made") as resp:
        assert resp.status == 204
    async with http.get(broker.url + "/v1/queues/api-made") as resp:
        assert resp.status == 404


async def test_claim_lease_expires_and_returns_the_item(broker, http):
    seq = await publish(http, broker.url, work_event(type="test.short"))
    item_id = await item_of(http, broker.url, seq, "queue:short")
    status, body = await op(http, broker.url, item_id, "claim", operator="dana")
    assert status == 200 and body["item"]["lease_expires"]

    await broker.advance(http, 0.5)  # a sweep half-way through the 1 s lease
    assert (await todo(http, broker.url, item_id))["state"] == "claimed"
    await broker.advance(http, 0.75)  # the first sweep after it ended returns the item
    item = await todo(http, broker.url, item_id)
    assert item["state"] == "open"
    assert item["owner"] is None and item["lease_expires"] is None
    last = item["history"][-1]
    assert last["action"] == "released" and last["operator"] == "system"
    assert "lease expired" in last["note"]
    audit = await get_json(http, broker.url, f"/v1/events/{last['audit_seq']}")
    assert audit["event"]["type"] == "opsbus.todo.released"
    assert audit["event"]["data"]["operator"] == "system"


async def test_snooze_hides_the_item_until_the_sweeper_wakes_it(broker, http):
    seq = await publish(http, broker.url, work_event(type="test.short"))
    item_id = await item_of(http, broker.url, seq, "queue:short")
    status, body = await op(http, broker.url, item_id, "snooze", operator="eve",
                            **{"for": "1s"}, note="after the deploy")
    assert status == 200 and body["item"]["snoozed_until"]

    async def ids(state: str) -> list[int]:
        page = await get_json(http, broker.url, "/v1/todos", queue="short", state=state)
        return [i["id"] for i in page["items"]]

    assert item_id in await ids("snoozed") and item_id not in await ids("open")

    await broker.advance(http, 0.5)
    assert item_id in await ids("snoozed")
    await broker.advance(http, 0.75)  # the first sweep after the snooze ended wakes it
    item = await todo(http, broker.url, item_id)
    assert item["snoozed_until"] is None
    assert item_id in await ids("open")
    assert item["history"][-1]["note"] == "snooze ended"
