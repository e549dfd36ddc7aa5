"""`/v1/openapi.json` is a valid, complete description, and real answers match it."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterator

import orjson
import pytest
from openapi_spec_validator import validate

from broker.http.app import create_app
from broker.http.openapi import describe, served
from broker.http.openapi_ops import OPERATIONS
from broker.settings import Settings
from tests.broker_process import BrokerProcess
from tests.conftest import make_event
from tests.openapi_check import ApiChecker

CONFIG = textwrap.dedent("""
    [[queues]]
    name = "work"
    group_key = "{subject}"

    [[routes]]
    name = "work"
    filter = { exact = { type = "test.work" } }
    targets = ["queue:work", "subscription:pulled"]

    [[subscriptions]]
    name = "pulled"
    type = "pull"
    filter = { exact = { type = "test.work" } }

    [[actions]]
    name = "page"
    url = "http://127.0.0.1:9/page"

    [plugins.webhook.mappings.ticket]
    type = "helpdesk.ticket"
    source = "helpdesk"
    id = "{data.id}"
""")

NOT_CALLED = {
    # Streams never end, proxied answers are the upstream's own: checked by their tests.
    ("GET", "/v1/stream"), *((m, p) for m in ("GET", "POST", "PUT", "PATCH", "DELETE")
                             for p in ("/proxy/{name}", "/proxy/{name}/{tail}")),
    ("POST", "/v1/subscriptions/{name}/deliveries/{id}/retry"),
    ("GET", "/v1/subscriptions/{name}/deliveries/{id}"),
    ("POST", "/v1/todos/{id}/actions/{action}"),
    ("POST", "/v1/admin/backup"),  # a binary SQLite file: checked by the backup tests
}


def app_document() -> dict:
    return describe(create_app(Settings(data_dir="unused")))


def test_the_document_is_valid_openapi():
    doc = app_document()
    validate(doc)
    ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))


def test_every_route_is_described_and_every_description_is_served():
    # served() raises for a route without an OPERATIONS entry.
    used = {(method, key) for method, _path, key, _op, _h in
            served(create_app(Settings(data_dir="unused")))}
    assert set(OPERATIONS) - used == set()


def test_publish_documents_what_it_answers():
    post = app_document()["paths"]["/v1/events"]["post"]
    assert {"200", "201", "400", "413", "415"} <= set(post["responses"])
    source = app_document()["paths"]["/v1/sources/{name}"]["post"]
    assert source["security"] == [] and "signature" in source["description"]
    assert "schema" in source["responses"]["200"]["content"]["application/json"]


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    root = tmp_path_factory.mktemp("openapi")
    (root / "opsbus.toml").write_text(CONFIG)
    proc = BrokerProcess(root / "data", config=root / "opsbus.toml",
                         args=["--durability", "off"]).start()
    try:
        yield proc
    finally:
        proc.stop()


def template_of(doc: dict, method: str, path: str) -> str:
    """The documented path a concrete path falls under (literal paths first)."""
    candidates = sorted(doc["paths"], key=lambda p: p.count("{"))
    for template in candidates:
        pattern = "^" + re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path) and method.lower() in doc["paths"][template]:
            return template
    raise AssertionError(f"{method} {path} is not documented")


async def test_real_answers_match_the_document(broker, http):
    async with http.get(broker.url + "/v1/openapi.json") as resp:
        doc = await resp.json()
    api = ApiChecker(http, broker.url, doc, getattr(broker, "token", None))
    ce = {"Content-Type": "application/cloudevents+json"}

    await api.call("GET", "/healthz")
    await api.call("GET", "/readyz")
    await api.call("GET", "/metrics")
    await api.call("GET", "/v1/openapi.json")
    await api.call("GET", "/v1/plugins")
    await api.call("GET", "/v1/config/status")
    for method in ("GET", "POST"):  # only a broker started with --test-clock serves it
        status, _ = await api.call(method, "/v1/test/clock", json={"advance": 1})
        assert status == 404
    await api.call("POST", "/v1/admin/store/check", params={"quick": "true"})

    event = make_event(type="test.work", subject="disk-full")
    status, created = await api.call("POST", "/v1/events", data=orjson.dumps(event), headers=ce)
    assert status == 201 and created["duplicate"] is False
    status, again = await api.call("POST", "/v1/events", data=orjson.dumps(event), headers=ce)
    assert status == 200 and again["duplicate"] is True
    status, _ = await api.call("POST", "/v1/events", data=b"<ok/>", headers={
        "Content-Type": "application/xml", "ce-specversion": "1.0", "ce-id": "xml-1",
        "ce-source": "tests/openapi", "ce-type": "test.xml"})
    assert status == 201
    batch = [make_event(), make_event()]
    status, answers = await api.call("POST", "/v1/events", data=orjson.dumps(batch), headers={
        "Content-Type": "application/cloudevents-batch+json"})
    assert status == 200 and len(answers) == 2
    status, problem = await api.call("POST", "/v1/events", data=b"{}", headers=ce)
    assert status == 400 and problem["attribute"] == "specversion"
    big = orjson.dumps(make_event(data={"x": "y" * 300_000}))
    status, _ = await api.call("POST", "/v1/events", data=big, headers=ce)
    assert status == 413

    status, page = await api.call("GET", "/v1/events", params={"limit": "5"})
    seq = page["events"][0]["seq"]
    await api.call("GET", f"/v1/events/{seq}")
    status, _ = await api.call("GET", "/v1/events/99999999")
    assert status == 404
    await api.call("POST", "/v1/filters/evaluate",
                   json={"expression": "type = 'test.work'", "event": event})

    status, answer = await api.call("POST", "/v1/sources/webhook/ticket",
                                    json={"id": "T-1", "title": "printer"})
    assert status == 200 and answer["events"][0]["id"] == "T-1"
    status, _ = await api.call("POST", "/v1/sources/nosuch", json={})
    assert status == 404

    await api.call("GET", "/v1/catalog")
    status, entry = await api.call("GET", "/v1/catalog/tests%2Fsuite/test.work")
    assert status == 200 and entry["shape"], entry  # tests/suite/test.work works as well
    status, _ = await api.call("GET", "/v1/catalog/tests%2Fsuite/no.such.type")
    assert status == 404

    await api.call("GET", "/v1/queues")
    await api.call("GET", "/v1/queues/work")
    status, todos = await api.call("GET", "/v1/todos", params={"queue": "work"})
    todo = todos["items"][0]["id"]
    await api.call("GET", f"/v1/todos/{todo}")
    status, changed = await api.call("POST", f"/v1/todos/{todo}/claim", json={"operator": "ana"})
    assert changed["item"]["state"] == "claimed"

    status, silence = await api.call("POST", "/v1/silences", json={
        "operator": "ana", "matcher": {"key": "disk-*"}, "duration": "1h"})
    assert status == 201
    await api.call("GET", "/v1/silences")
    await api.call("GET", f"/v1/silences/{silence['id']}")
    await api.call("DELETE", f"/v1/silences/{silence['id']}", json={"operator": "ana"})

    await api.call("GET", "/v1/subscriptions")
    await api.call("GET", "/v1/subscriptions/pulled")
    await api.call("GET", "/v1/subscriptions/pulled/status")
    await api.call("GET", "/v1/subscriptions/pulled/deliveries")
    status, messages = await api.call("POST", "/v1/subscriptions/pulled/receive",
                                      json={"max": 5})
    leases = [m["lease"] for m in messages]
    await api.call("POST", "/v1/subscriptions/pulled/renew", json={"leases": leases})
    await api.call("POST", "/v1/subscriptions/pulled/release", json={"leases": leases})
    status, messages = await api.call("POST", "/v1/subscriptions/pulled/receive", json={})
    await api.call("POST", "/v1/subscriptions/pulled/ack",
                   json={"leases": [m["lease"] for m in messages]})
    status, _ = await api.call("POST", "/v1/subscriptions/pulled/reject", json={"leases": ["x"]})
    assert status == 400
    await api.call("POST", "/v1/subscriptions/pulled/pause", json={"operator": "ana"})
    await api.call("POST", "/v1/subscriptions/pulled/resume")
    await api.call("GET", "/v1/actions/page/jobs")

    await api.call("GET", "/v1/routes")
    await api.call("POST", "/v1/routes/test", json={"events": [event]})
    for kind, spec in (
        ("routes", {"name": "r2", "filter": {"exact": {"type": "x"}}, "targets": ["queue:work"]}),
        ("queues", {"name": "q2", "group_key": "{subject}"}),
        ("subscriptions", {"name": "s2", "type": "pull", "filter": {"exact": {"type": "x"}}}),
        ("actions", {"name": "a2", "url": "http://127.0.0.1:9/"}),
        ("proxy", {"name": "p2", "upstream": "http://erp.example.com:9"}),
    ):
        status, _ = await api.call("POST", f"/v1/{kind}", json=spec)
        assert status == 201, (kind, _)
        status, _ = await api.call("POST", f"/v1/{kind}", json=spec)
        assert status == 409
        await api.call("GET", f"/v1/{kind}")
        await api.call("GET", f"/v1/{kind}/{spec['name']}")
        status, _ = await api.call("PUT", f"/v1/{kind}/{spec['name']}", json=spec)
        assert status == 200
        status, _ = await api.call("DELETE", f"/v1/{kind}/{spec['name']}")
        assert status == 204
        status, _ = await api.call("PUT", f"/v1/{kind}/{spec['name']}", json=spec)
        assert status == 201

    status, me = await api.call("GET", "/v1/whoami")
    assert status == 200 and me["name"] == "admin" and "admin" in me["scopes"]
    status, created = await api.call("POST", "/v1/tokens",
                                     json={"name": "reader", "scopes": ["read"]})
    assert status == 201 and created["secret"].startswith("opsbus_")
    status, listed = await api.call("GET", "/v1/tokens")
    assert [t["name"] for t in listed["tokens"]] == ["reader"]
    status, _ = await api.call("DELETE", "/v1/tokens/reader")
    assert status == 204

    called = {(m, template_of(doc, m, p)) for m, p, _status in api.checked}
    documented = {(m.upper(), p) for p, item in doc["paths"].items() for m in item}
    assert documented - called - NOT_CALLED == set()
