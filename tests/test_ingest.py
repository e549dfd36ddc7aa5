"""Publishing over HTTP in every content mode, validation, dedupe and reading back."""

from __future__ import annotations

import asyncio
import base64

import aiohttp
import orjson
import pytest

from tests.broker_process import AUTH, BrokerProcess
from tests.conftest import BATCH, STRUCTURED, make_event


async def post(http: aiohttp.ClientSession, broker: BrokerProcess, body: object,
               headers: dict[str, str]) -> tuple[int, dict, str]:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    async with http.post(broker.url + "/v1/events", data=data, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None), resp.content_type


async def count(http: aiohttp.ClientSession, broker: BrokerProcess) -> int:
    async with http.get(broker.url + "/v1/events", params={"limit": "1000"}) as resp:
        return len((await resp.json())["events"])


async def test_structured_mode_stores_and_reads_back(broker, http):
    event = make_event(subject="orders", data={"severity": "critical"})
    status, body, _ = await post(http, broker, event, STRUCTURED)
    assert status == 201
    assert body["duplicate"] is False and body["id"] == event["id"]
    async with http.get(f"{broker.url}/v1/events/{body['seq']}") as resp:
        stored = await resp.json()
    assert stored["seq"] == body["seq"]
    assert stored["event"]["subject"] == "orders"
    assert stored["event"]["data"] == {"severity": "critical"}
    assert "recvtime" in stored and "seq" not in stored["event"]


async def test_binary_mode_takes_attributes_from_headers(broker, http):
    headers = {
        "ce-specversion": "1.0", "ce-id": "b-1", "ce-source": "tests/binary",
        "ce-type": "test.binary", "ce-subject": "caf%C3%A9", "ce-traceparent": "00-ab",
        "Content-Type": "application/json",
    }
    status, body, _ = await post(http, broker, b'{"ok": true}', headers)
    assert status == 201
    async with http.get(f"{broker.url}/v1/events/{body['seq']}") as resp:
        event = (await resp.json())["event"]
    assert event["subject"] == "café"
    assert event["traceparent"] == "00-ab"
    assert event["datacontenttype"] == "application/json"
    assert event["data"] == {"ok": True}


async def test_binary_mode_keeps_opaque_bytes_as_base64(broker, http):
    headers = {"ce-specversion": "1.0", "ce-id": "b-2", "ce-source": "tests/binary",
               "ce-type": "test.bytes", "Content-Type": "application/octet-stream"}
    status, body, _ = await post(http, broker, b"\x00\xffpayload", headers)
    assert status == 201
    async with http.get(f"{broker.url}/v1/events/{body['seq']}") as resp:
        event = (await resp.json())["event"]
    assert base64.b64decode(event["data_base64"]) == b"\x00\xffpayload"


async def test_batch_mode_returns_one_answer_per_event_in_order(broker, http):
    events = [make_event(id=f"batch-{i}") for i in range(5)]
    status, body, _ = await post(http, broker, events, BATCH)
    assert status == 200
    assert [b["id"] for b in body] == [e["id"] for e in events]
    seqs = [b["seq"] for b in body]
    assert seqs == sorted(seqs) and len(set(seqs)) == 5


@pytest.mark.parametrize(
    ("mutate", "attribute"),
    [
        (lambda e: e.pop("id"), "id"),
        (lambda e: e.update(id=""), "id"),
        (lambda e: e.pop("source"), "source"),
        (lambda e: e.pop("type"), "type"),
        (lambda e: e.update(specversion="0.3"), "specversion"),
        (lambda e: e.update(id=5), "id"),
        (lambda e: e.update(subject={"x": 1}), "subject"),
        (lambda e: e.update(time="yesterday"), "time"),
        (lambda e: e.update({"Bad-Name": "x"}), "Bad-Name"),
        (lambda e: e.update(data_base64="aGk="), None),
        (lambda e: e.update(myext=[1, 2]), "myext"),
    ],
)
async def test_invalid_event_gets_400_naming_the_attribute_and_stores_nothing(
    broker, http, mutate, attribute
):
    event = make_event()
    mutate(event)
    status, body, ctype = await post(http, broker, event, STRUCTURED)
    assert status == 400
    assert ctype == "application/problem+json"
    assert body["status"] == 400 and body["detail"]
    if attribute is not None:
        assert body["attribute"] == attribute
    else:
        assert body["attribute"] in ("data", "data_base64")
    assert await count(http, broker) == 0


async def test_null_subject_means_unset(broker, http):
    status, body, _ = await post(http, broker, make_event(subject=None), STRUCTURED)
    assert status == 201
    async with http.get(f"{broker.url}/v1/events/{body['seq']}") as resp:
        assert "subject" not in (await resp.json())["event"]


async def test_non_json_structured_body_is_400(broker, http):
    status, _body, ctype = await post(http, broker, b"{not json", STRUCTURED)
    assert status == 400 and ctype == "application/problem+json"
    assert await count(http, broker) == 0


async def test_bad_entry_rejects_whole_batch_and_names_it(broker, http):
    events = [make_event(), make_event(), make_event(type=""), make_event()]
    status, body, _ = await post(http, broker, events, BATCH)
    assert status == 400
    assert body["index"] == 2 and body["attribute"] == "type"
    assert "2" in body["detail"]
    assert await count(http, broker) == 0


async def test_oversize_event_and_request_answer_413(tmp_path, http):
    proc = BrokerProcess(tmp_path / "data", args=["--max-event-bytes", "2000",
                                                  "--max-request-bytes", "20000"]).start()
    try:
        big = make_event(data={"blob": "x" * 3000})
        status, _, ctype = await post(http, proc, big, STRUCTURED)
        assert status == 413 and ctype == "application/problem+json"
        many = [make_event(data={"blob": "y" * 1500}) for _ in range(20)]
        status, _body, ctype = await post(http, proc, many, BATCH)
        assert status == 413 and ctype == "application/problem+json"
        assert await count(http, proc) == 0
    finally:
        proc.stop()


async def test_repeat_is_idempotent_with_original_seq(broker, http):
    event = make_event()
    first = await post(http, broker, event, STRUCTURED)
    again = await post(http, broker, event, STRUCTURED)
    assert first[0] == 201 and again[0] == 200
    assert again[1] == {"seq": first[1]["seq"], "id": event["id"], "duplicate": True}
    assert await count(http, broker) == 1


async def test_concurrent_identical_publishes_store_one(broker, http):
    event = make_event()
    results = await asyncio.gather(*(post(http, broker, event, STRUCTURED) for _ in range(30)))
    seqs = {r[1]["seq"] for r in results}
    assert len(seqs) == 1
    assert sum(1 for r in results if r[1]["duplicate"] is False) == 1
    assert await count(http, broker) == 1


async def test_repeat_with_different_content_is_409_and_keeps_original(broker, http):
    event = make_event(data={"v": 1})
    first = await post(http, broker, event, STRUCTURED)
    changed = {**event, "data": {"v": 2}}
    status, body, ctype = await post(http, broker, changed, STRUCTURED)
    assert status == 409 and ctype == "application/problem+json"
    assert body["seq"] == first[1]["seq"]
    async with http.get(f"{broker.url}/v1/events/{first[1]['seq']}") as resp:
        assert (await resp.json())["event"]["data"] == {"v": 1}


async def test_dedupe_holds_across_restart(broker, http):
    event = make_event()
    first = await post(http, broker, event, STRUCTURED)
    broker.restart()
    async with aiohttp.ClientSession(headers=AUTH) as fresh:  # pooled ones died
        again = await post(fresh, broker, event, STRUCTURED)
    assert again[1] == {"seq": first[1]["seq"], "id": event["id"], "duplicate": True}


async def test_events_page_by_seq_and_filter_by_attributes(broker, http):
    events = [make_event(id=f"p{i}", type="a.b" if i % 2 else "c.d", subject=f"s{i % 3}")
              for i in range(10)]
    await post(http, broker, events, BATCH)
    async with http.get(broker.url + "/v1/events", params={"limit": "4"}) as resp:
        page1 = await resp.json()
    assert [e["event"]["id"] for e in page1["events"]] == ["p0", "p1", "p2", "p3"]
    async with http.get(broker.url + "/v1/events",
                        params={"after": str(page1["next_after"]), "limit": "4"}) as resp:
        page2 = await resp.json()
    assert [e["event"]["id"] for e in page2["events"]] == ["p4", "p5", "p6", "p7"]
    async with http.get(broker.url + "/v1/events", params={"type": "a.b"}) as resp:
        assert {e["event"]["type"] for e in (await resp.json())["events"]} == {"a.b"}
    async with http.get(broker.url + "/v1/events", params={"subject": "s1"}) as resp:
        assert [e["event"]["id"] for e in (await resp.json())["events"]] == ["p1", "p4", "p7"]


async def test_unknown_seq_and_bad_parameters_are_problems(broker, http):
    async with http.get(broker.url + "/v1/events/999") as resp:
        assert resp.status == 404 and resp.content_type == "application/problem+json"
    async with http.get(broker.url + "/v1/events", params={"limit": "lots"}) as resp:
        assert resp.status == 400 and "limit" in (await resp.json())["detail"]
    async with http.get(broker.url + "/v1/nothing-here") as resp:
        assert resp.status == 404 and resp.content_type == "application/problem+json"


async def test_health_and_readiness(broker, http):
    async with http.get(broker.url + "/healthz") as resp:
        assert resp.status == 200
    async with http.get(broker.url + "/readyz") as resp:
        assert resp.status == 200 and (await resp.json())["status"] == "ready"


async def test_openapi_lists_the_api(broker, http):
    async with http.get(broker.url + "/v1/openapi.json") as resp:
        doc = await resp.json()
    assert doc["openapi"].startswith("3.")
    assert "post" in doc["paths"]["/v1/events"]
    assert "get" in doc["paths"]["/v1/stream"]
    assert "/v1/todos/{id}" in doc["paths"] or any("/v1/todos/" in p for p in doc["paths"])


async def test_unknown_paths_and_methods_are_problems(broker, http):
    async with http.get(broker.url + "/no/such/thing") as resp:
        assert resp.status == 404 and resp.content_type == "application/problem+json"
    async with http.delete(broker.url + "/v1/events") as resp:
        assert resp.status == 405 and resp.content_type == "application/problem+json"
        assert "DELETE" in (await resp.json())["detail"]
