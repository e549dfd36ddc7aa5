"""Routes over HTTP: CRUD with validation problems, the matched routes stored with an event,
and `POST /v1/routes/test` on given events and on the stored history."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import aiohttp
import orjson
import pytest

from tests.broker_process import BrokerProcess
from tests.conftest import BATCH, STRUCTURED, make_event


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """One broker for the module: every test uses its own route names and sources."""
    proc = BrokerProcess(tmp_path_factory.mktemp("routes") / "data").start()
    try:
        yield proc
    finally:
        proc.stop()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def call(http: aiohttp.ClientSession, method: str, url: str, body: Any = None
               ) -> tuple[int, Any]:
    data = None if body is None else orjson.dumps(body)
    async with http.request(method, url, data=data,
                            headers={"Content-Type": "application/json"}) as resp:
        text = await resp.read()
        return resp.status, orjson.loads(text) if text else None


async def publish(http: aiohttp.ClientSession, url: str, event: dict[str, Any]) -> int:
    async with http.post(url + "/v1/events", data=orjson.dumps(event), headers=STRUCTURED) as r:
        assert r.status == 201, await r.text()
        return int((await r.json())["seq"])


async def test_bad_filter_is_a_400_naming_the_field_and_position(broker, http):
    status, problem = await call(http, "POST", broker.url + "/v1/routes", {
        "name": unique("bad"), "filter": {"sql": "type = 'a' AND"}, "targets": ["plugin:p"]})
    assert status == 400
    assert problem["title"] == "Invalid configuration"
    assert problem["field"] == "filter"
    assert problem["position"] == {"line": 1, "column": 15}
    assert "filter.sql" in problem["detail"]


@pytest.mark.parametrize(("targets", "field", "words"), [
    (["mailbox:ops"], "targets[0]", "unknown kind 'mailbox'"),
    (["plugin:ok", "queue"], "targets[1]", "must be 'kind:name'"),
    (["queue:has space"], "targets[0]", "invalid"),
    ([], "targets", "non-empty"),
])
async def test_bad_target_is_a_400_naming_it(broker, http, targets, field, words):
    status, problem = await call(http, "PUT", broker.url + "/v1/routes/t1", {
        "filter": {"exact": {"type": "x"}}, "targets": targets})
    assert status == 400, problem
    assert problem["field"] == field
    assert words in problem["detail"]


async def test_missing_filter_and_unknown_fields_are_refused(broker, http):
    status, problem = await call(http, "POST", broker.url + "/v1/routes",
                                 {"name": unique("nofilter"), "targets": ["plugin:p"]})
    assert status == 400 and problem["field"] == "filter"
    status, problem = await call(http, "POST", broker.url + "/v1/routes", {
        "name": unique("typo"), "filter": {}, "targets": ["plugin:p"], "enable": False})
    assert status == 400 and problem["field"] == "enable"


async def test_crud_round_trip_and_the_route_takes_effect(broker, http):
    name, source = unique("crud"), unique("tests/crud")
    spec = {"name": name, "filter": {"exact": {"source": source}}, "targets": ["plugin:p"]}
    status, created = await call(http, "POST", broker.url + "/v1/routes", spec)
    assert status == 201 and created["origin"] == "api" and created["enabled"] is True
    status, _ = await call(http, "POST", broker.url + "/v1/routes", spec)
    assert status == 409

    seq = await publish(http, broker.url, make_event(source=source))
    status, stored = await call(http, "GET", f"{broker.url}/v1/events/{seq}")
    assert stored["routes"] == [name]
    assert stored["targets"][0]["route"] == name and stored["targets"][0]["target"] == "plugin:p"

    status, listed = await call(http, "GET", broker.url + "/v1/routes")
    assert name in [r["name"] for r in listed["routes"]] and listed["config_error"] is None

    status, _ = await call(http, "PUT", f"{broker.url}/v1/routes/{name}",
                           {**spec, "enabled": False})
    assert status == 200
    seq = await publish(http, broker.url, make_event(source=source))
    status, stored = await call(http, "GET", f"{broker.url}/v1/events/{seq}")
    assert stored["routes"] == []

    status, _ = await call(http, "DELETE", f"{broker.url}/v1/routes/{name}")
    assert status == 204
    status, _ = await call(http, "GET", f"{broker.url}/v1/routes/{name}")
    assert status == 404


async def test_route_test_uses_the_live_table_and_the_draft_replaces_its_namesake(broker, http):
    name, source = unique("live"), unique("tests/live")
    await call(http, "PUT", f"{broker.url}/v1/routes/{name}", {
        "filter": {"sql": "type = 'a.b'"}, "targets": ["plugin:live"]})
    events = [make_event(source=source, type="a.b"), make_event(source=source, type="c.d"),
              {"specversion": "1.0", "id": "x"}]
    before = await call(http, "GET", broker.url + "/v1/events?order=desc&limit=1")

    status, answer = await call(http, "POST", broker.url + "/v1/routes/test",
                                {"events": events})
    assert status == 200, answer
    first, second, bad = answer["results"]
    assert name in first["routes"]
    assert {"route": name, "target": "plugin:live"} in first["targets"]
    assert name not in second["routes"]
    assert "missing required attribute 'source'" in bad["error"]
    assert answer["summary"]["invalid"] == 1

    draft = {"name": name, "filter": {"sql": "type = 'c.d'"}, "targets": ["plugin:draft"]}
    status, answer = await call(http, "POST", broker.url + "/v1/routes/test",
                                {"route": draft, "events": events[:2]})
    first, second = answer["results"]
    assert name not in first["routes"] and first["draft"] is False
    assert {"route": name, "target": "plugin:draft"} in second["targets"]
    assert second["draft"] is True
    # Nothing was stored by testing.
    assert await call(http, "GET", broker.url + "/v1/events?order=desc&limit=1") == before


async def test_route_test_reports_cesql_errors_and_over_limit_hops(broker, http):
    draft = {"name": unique("d"), "filter": {"sql": "INT(data.n) > 0"}, "targets": ["plugin:p"]}
    events = [make_event(data={"n": "many"}), make_event(hopcount=99)]
    status, answer = await call(http, "POST", broker.url + "/v1/routes/test",
                                {"route": draft, "events": events})
    assert status == 200
    assert answer["results"][0]["draft_error"]["kind"] == "cast"
    assert answer["results"][1]["loop"] is True and answer["summary"]["loops"] == 1


@pytest.mark.parametrize(("body", "field"), [
    ({"route": {"name": "x", "filter": {"sql": "type ="}, "targets": ["plugin:p"]},
      "events": []}, "route.filter"),
    ({"route": {"name": "x", "filter": {}, "targets": ["bad"]}, "events": []},
     "route.targets[0]"),
    ({"route": {"name": "bad name", "filter": {}, "targets": ["plugin:p"]}, "events": []},
     "route.name"),
    ({"events": [], "colour": 1}, "colour"),
    ({"history": {"since": "24h"}}, "route"),
    ({"route": {"name": "x", "filter": {}, "targets": ["plugin:p"]},
      "history": {"limit": 0}}, "history.limit"),
])
async def test_invalid_test_requests_are_400_naming_the_field(broker, http, body, field):
    status, problem = await call(http, "POST", broker.url + "/v1/routes/test", body)
    assert status == 400, problem
    assert problem["field"] == field


async def test_history_reports_matches_and_the_items_a_queue_target_would_open(broker, http):
    source = unique("tests/history")
    events = [
        make_event(source=source, type="alert.firing", subject="db-1", dedupkey="k1"),
        make_event(source=source, type="alert.firing", subject="db-1", dedupkey="k1"),
        make_event(source=source, type="alert.firing", subject="db-2"),
        make_event(source=source, type="other", subject="db-3"),
    ]
    async with http.post(broker.url + "/v1/events", data=orjson.dumps(events),
                         headers=BATCH) as resp:
        seqs = [r["seq"] for r in await resp.json()]
    draft = {"name": unique("hist"), "targets": ["queue:nowhere", "plugin:p"],
             "filter": {"all": [{"exact": {"source": source}}, {"prefix": {"type": "alert."}}]}}
    status, answer = await call(http, "POST", broker.url + "/v1/routes/test",
                                {"route": draft, "history": {"since": "1h"}})
    assert status == 200, answer
    report = answer["history"]
    assert report["matched"] == 3 and report["truncated"] is False
    assert [m["seq"] for m in report["matches"]] == seqs[:3]
    (queue,) = report["queues"]
    assert queue["queue"] == "nowhere" and queue["known"] is False
    assert queue["opened"] == 2 and queue["attached"] == 1
    assert [(i["key"], i["count"]) for i in queue["items"]] == [("k1", 2), (f"{source}/db-2", 1)]

    # A limit cuts the scan short and says so.
    status, answer = await call(http, "POST", broker.url + "/v1/routes/test",
                                {"route": draft, "history": {"since": "1h", "limit": 1}})
    assert answer["history"]["scanned"] == 1


async def test_config_status_without_a_file(broker, http):
    status, answer = await call(http, "GET", broker.url + "/v1/config/status")
    assert status == 200
    assert answer["file"] is None and answer["error"] is None


async def test_the_dry_run_groups_and_titles_items_as_the_engine_does(broker, http):
    # A configured queue with a group key template: the dedupkey extension still wins,
    # and the title is rendered the same way (a missing field shows as "-").
    queue = unique("grouped")
    status, _ = await call(http, "PUT", f"{broker.url}/v1/queues/{queue}", {
        "name": queue, "group_key": "{source}/{subject}", "title": "{data.what} on {subject}"})
    assert status in (200, 201)
    source = unique("tests/dryrun")
    route = {"name": unique("live"), "targets": [f"queue:{queue}"],
             "filter": {"exact": {"source": source}}}
    status, _ = await call(http, "PUT", f"{broker.url}/v1/routes/{route['name']}", route)
    assert status in (200, 201)
    events = [make_event(source=source, subject="host-1", dedupkey="alert-42",
                         data={"what": "disk"}),
              make_event(source=source, subject="host-1", dedupkey="alert-42",
                         data={"what": "disk"}),
              make_event(source=source, subject="host-3", data={})]
    for event in events:
        await publish(http, broker.url, event)
    status, engine = await call(http, "GET", f"{broker.url}/v1/todos?queue={queue}")
    assert status == 200, engine
    expected = sorted((i["key"], i["title"], i["count"]) for i in engine["items"])
    assert expected == [("alert-42", "disk on host-1", 2), (f"{source}/host-3", "- on host-3", 1)]

    status, answer = await call(http, "POST", broker.url + "/v1/routes/test",
                                {"route": {**route, "name": unique("draft")},
                                 "history": {"since": "1h"}})
    assert status == 200, answer
    (report,) = answer["history"]["queues"]
    predicted = sorted((i["key"], i["title"], i["count"]) for i in report["items"])
    assert predicted == expected
